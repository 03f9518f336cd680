//go:build amd64 && !purego && !cuda && !cudaemu

package lora

// gemv4F32 sets y[q] = Σⱼ x[j]·w[q·ldw+j] for q < 4 and j < n, W float32,
// n a positive multiple of 16, in AVX2 with FMA (useFMA). Implemented in
// f32_cpu_amd64.s.
//
//go:noescape
func gemv4F32(y, x, w *float32, n, ldw int)
