//go:build amd64 && !purego

package cpu

// packT32 sets dst[p·32+i] = src[i·ld+p] for i < 32 and p < kc, kc a
// positive multiple of 16: 32 rows of a float32 matrix packed as a panel of
// the packed product (packPanel's layout), by 16×16 transposes in registers
// (gemm_amd64.s). It needs AVX-512 (useGemm512).
//
//go:noescape
func packT32(dst, src *float32, kc, ld int)
