//go:build amd64 && !purego && !cuda && !cudaemu

package lora

import "golang.org/x/sys/cpu"

// useFMA selects the AVX2 + FMA form of rankRow when the processor has it.
var useFMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// rankRowFMA is rankRow for n columns, n a multiple of 8 and r ≥ 1, in AVX2
// with FMA: 64 columns at a time in eight registers, all r terms accumulated
// from zero, then added to dst. Implemented in rankrow_amd64.s.
//
//go:noescape
func rankRowFMA(dst, a, coef *float32, n, r, lda int)

// rankRow computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the sum
// accumulated from zero in k order and then added to dst, so that negating
// coef subtracts bit for bit what it added. a holds len(coef) rows of stride
// lda ≥ len(dst).
func rankRow(dst, a, coef []float32, lda int) {
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := n &^ 7
	if !useFMA {
		m = 0
	}
	if m > 0 {
		rankRowFMA(&dst[0], &a[0], &coef[0], m, r, lda)
	}
	if m < n {
		rankRowGo(dst[m:], a[m:], coef, lda)
	}
}
