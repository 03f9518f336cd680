//go:build !cuda && !cudaemu

package lora

import "gonum.org/v1/gonum/blas/blas32"

// A float32 W on the CPU backend: y = x·Wᵀ by the fused matrix-vector
// driver of the half-precision W (gemvFused) on the float32 kernel
// gemv4F32, four rows of W per pass sharing the loads of x, where the
// processor has AVX2 + FMA and no threaded BLAS is installed, and where
// f32GemvWins says it beats the Sgemm or Sgemv of gemmNT; gemmNT otherwise.

// f32GemvWins reports whether y = x·Wᵀ for x n×in and W out×in runs faster
// by the fused kernel than by gemmNT. Measured against gonum's Sgemm and
// Sgemv (BenchmarkF32Product, 2 cores): on 4096×4096 the kernel wins at
// every n from 1 to 1024, by 1.2× at n = 1 (both bound by memory) and 3.5
// to 5× from n = 4; on 16384×512 by 1.6× at n = 4 and 4 to 6× above, but
// Sgemv is ahead at n = 1 on rows shorter than a column block of the
// kernel (1.4 against 1.7 ms): there it keeps Sgemv.
func f32GemvWins(n, out, in int) bool {
	return useFMA && !blasThreaded && in >= 16 && out >= 4 && (n > 1 || in >= gemvBlockCols(4))
}

// f32Product computes y = x·Wᵀ for x (n×in), a float32 W (out×in) and y
// (n×out): by the fused kernel where f32GemvWins, by gemmNT otherwise.
func f32Product(y, x, w []float32, n, out, in int) {
	if f32GemvWins(n, out, in) {
		f32Gemv(y, x, w, n, out, in)
		return
	}
	gemmNT(n, out, in, 1, x, w, 0, y)
}

// f32Gemv computes y = x·Wᵀ by gemvFused on gemv4F32 where the processor
// has it, by f32GemvGo otherwise.
func f32Gemv(y, x, w []float32, n, out, in int) {
	gemvFused(y, x, x, w, n, out, in, gemvBlockCols(4), gemv4F32, useFMA,
		func(v float32) float32 { return v },
		func(i0, i1, o0, o1 int) { f32GemvGo(y, x, w, i0, i1, out, in, o0, o1) })
}

// f32GemvGo computes rows o0…o1−1 of W's products with rows i0…i1−1 of x
// by Sdot.
func f32GemvGo(y, x, w []float32, i0, i1, out, in, o0, o1 int) {
	impl := blas32.Implementation()
	for o := o0; o < o1; o++ {
		row := w[o*in : (o+1)*in]
		for i := i0; i < i1; i++ {
			y[i*out+o] = impl.Sdot(in, row, 1, x[i*in:(i+1)*in], 1)
		}
	}
}
