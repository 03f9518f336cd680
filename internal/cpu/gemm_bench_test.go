package cpu

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkGemmKernel times the micro-kernel alone on panels in L1: the
// rate the packed product can reach on one core.
func BenchmarkGemmKernel(b *testing.B) {
	if !useGemm512 {
		b.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	const k = gemmKC
	a := randF32(rng, k*gemmMR, 1)
	w := randF32(rng, k*gemmNR, 1)
	c := make([]float32, gemmMR*gemmNR)
	for b.Loop() {
		gemmKernelAVX512(k, &a[0], &w[0], &c[0], gemmNR, 1)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(2*float64(k*gemmMR*gemmNR)/sec/1e9, "GFLOP/s")
}
