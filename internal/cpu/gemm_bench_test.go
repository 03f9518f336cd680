package cpu

import (
	"fmt"
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

// BenchmarkPackedProduct times y = x·Wᵀ on a 4096×4096 W of each type by
// the packed product and by the path of W's type (f32Product, halfProduct,
// nf4Product), and dx = dy·W by packedGradX and by Backward's other path
// (productNN): the measurements behind gemmMinRows.
func BenchmarkPackedProduct(b *testing.B) {
	if !useGemm512 {
		b.Skip("no AVX-512")
	}
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(5, 6))
	ws := map[Type]Mat{F32: {Rows: out, Cols: in, Type: F32, F32: randF32(rng, out*in, 0.02)}}
	h := newHalfW(rng, BF16, out, in, 0.02)
	ws[BF16] = Mat{Rows: out, Cols: in, Type: BF16, Bits: h.bits}
	ws[NF4], _ = nf4W(rng, out, in, 64)
	for _, dt := range []Type{F32, BF16, NF4} {
		w := ws[dt]
		for _, n := range []int{8, 16, 32, 64, 256} {
			x := randF32(rng, n*in, 1)
			y := make([]float32, n*out)
			for _, p := range []struct {
				name string
				f    func()
			}{
				{"packed", func() { packedProduct(y, x, w, n) }},
				{"typed", func() {
					switch dt {
					case F32:
						f32Product(y, x, w.F32, n, out, in)
					case NF4:
						nf4Product(y, x, w, n)
					default:
						halfProduct(y, x, w, n)
					}
				}},
				{"dx-packed", func() { packedGradX(y, x, w, n) }},
				{"dx-nn", func() { productNN(y, n, in, []nnSegment{{coef: x, ldc: out, a: w.F32, w: &w, rows: out}}) }},
			} {
				b.Run(fmt.Sprintf("%s/n=%d/%s", map[Type]string{F32: "f32", BF16: "bf16", NF4: "nf4"}[dt], n, p.name), func(b *testing.B) {
					for b.Loop() {
						p.f()
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(n*out*in)/sec/1e9, "GFLOP/s")
				})
			}
		}
	}
}
