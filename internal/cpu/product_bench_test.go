package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// BenchmarkF32Product times y = x·Wᵀ with a float32 W by the fused kernel
// (f32Gemv), by the same without its column blocks, and by GemmNT (gonum's Sgemm, Sgemv rows at n ≤ gemvRows), on
// the square 4096×4096 W of BenchmarkHalfForward and on a tall, narrow one
// (16384×512): the measurements behind f32GemvWins.
func BenchmarkF32Product(b *testing.B) {
	for _, sh := range [][2]int{{4096, 4096}, {16384, 512}} {
		out, in := sh[0], sh[1]
		rng := rand.New(rand.NewPCG(1, 2))
		w := randF32(rng, out*in, 0.02)
		for _, n := range []int{1, 4, 16, 64, 256, 1024} {
			x := randF32(rng, n*in, 1)
			y := make([]float32, n*out)
			for _, p := range []struct {
				name string
				f    func()
			}{
				{"gemv", func() { f32Gemv(y, x, w, n, out, in) }},
				{"gemv-unblocked", func() { // one block of all columns
					op := f32GemvOp(y, x, w, n, out, in, out)
					op.kb = in
					gemvFused(op)
				}},
				{"sgemm", func() { GemmNT(n, out, in, 1, x, w, 0, y) }},
				{"packed", func() {
					if n < gemmMinRows || !useGemm512 {
						b.Skip("the packed product serves n ≥ 16 with AVX-512")
					}
					packedProduct(y, x, Mat{Rows: out, Cols: in, Type: F32, F32: w}, n)
				}},
			} {
				b.Run(fmt.Sprintf("%dx%d/n=%d/%s", out, in, n, p.name), func(b *testing.B) {
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

// BenchmarkGemvBF16 times y = x·Wᵀ with a 4096×4096 BF16 W by halfGemv
// (gemv4BF16, x in pair order) and with the same W as float32 (f32Gemv).
func BenchmarkGemvBF16(b *testing.B) {
	if !useBF16FMA {
		b.Skip("no AVX2 + FMA")
	}
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(3, 4))
	h := newHalfW(rng, BF16, out, in, 0.02)
	for _, n := range []int{1, 4, 16, 64} {
		x := randF32(rng, n*in, 1)
		y := make([]float32, n*out)
		for _, p := range []struct {
			name string
			f    func()
		}{
			{"bf16", func() { halfGemv(y, x, h.bits, BF16, n, out, in) }},
			{"f32", func() { f32Gemv(y, x, h.val, n, out, in) }},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, p.name), func(b *testing.B) {
				for b.Loop() {
					p.f()
				}
			})
		}
	}
}

// BenchmarkNF4Product times y = x·Wᵀ with a 4096×4096 W in NF4 (blocks of
// 64), in BF16 and in float32, at n = 1, 16 and 64, reporting the bytes of
// W read per second.
func BenchmarkNF4Product(b *testing.B) {
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(7, 8))
	nf, _ := nf4W(rng, out, in, 64)
	h := newHalfW(rng, BF16, out, in, 0.02)
	f := Mat{Rows: out, Cols: in, Type: F32, F32: randF32(rng, out*in, 0.02)}
	for _, n := range []int{1, 16, 64} {
		x := randF32(rng, n*in, 1)
		y := make([]float32, n*out)
		for _, p := range []struct {
			name  string
			w     Mat
			bytes float64
		}{
			{"nf4", nf, float64(len(nf.Codes) + 4*len(nf.Absmax))},
			{"bf16", Mat{Rows: out, Cols: in, Type: BF16, Bits: h.bits}, 2 * out * in},
			{"f32", f, 4 * out * in},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, p.name), func(b *testing.B) {
				for b.Loop() {
					Product(y, x, p.w, n)
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(p.bytes/sec/1e9, "GB/s")
			})
		}
	}
}

// BenchmarkNF4Paths times y = x·Wᵀ with a 4096×4096 NF4 W (blocks of 64)
// by each path: the fused NF4 kernel (nf4Gemv: gemv4NF4AVX512 where the
// processor has AVX-512; fused-avx2 gemv4NF4), and panels dequantized
// into float32 then multiplied by the fused float32 kernel or by Sgemm
// (widenedPanels): the measurements behind nf4GemvRows and panelGemvWins.
func BenchmarkNF4Paths(b *testing.B) {
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(9, 10))
	w, _ := nf4W(rng, out, in, 64)
	for _, n := range []int{1, 2, 3, 4, 16, 64} {
		x := randF32(rng, n*in, 1)
		y := make([]float32, n*out)
		for _, p := range []struct {
			name string
			f    func()
		}{
			{"fused", func() { nf4Gemv(y, x, w, n) }},
			{"fused-avx2", func() { nf4GemvBy(y, x, w, n, false) }},
			{"panels-gemv", func() { widenedPanels(y, x, w, n, true) }},
			{"panels-sgemm", func() { widenedPanels(y, x, w, n, false) }},
		} {
			b.Run(fmt.Sprintf("n=%d/%s", n, p.name), func(b *testing.B) {
				for b.Loop() {
					p.f()
				}
			})
		}
	}
}

// BenchmarkRankUpdate times W += c·B·A on a 4096×4096 float32 W (Merge's
// update, c and −c in turn) by RankUpdate and by the blocked rankRow loop
// (rankUpdateBlocked and rankRow, as before the micro-kernel), against a
// streaming pass w[i] *= c over the same W on
// one goroutine, as the bench's Merge table compares. GB/s counts W read
// and written once.
func BenchmarkRankUpdate(b *testing.B) {
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(9, 10))
	w := randF32(rng, out*in, 1)
	m := Mat{Rows: out, Cols: in, Type: F32, F32: w}
	var c0 float64
	report := func(b *testing.B) {
		sec := b.Elapsed().Seconds() / float64(b.N)
		b.ReportMetric(8*float64(out*in)/sec/1e9, "GB/s")
		// Per CPU-second, times the goroutines (one for the stream): the
		// rate with every core to itself.
		procs := runtime.GOMAXPROCS(0)
		if strings.HasSuffix(b.Name(), "stream") {
			procs = 1
		}
		if cpu := (cpuSeconds() - c0) / float64(b.N); cpu > 0 {
			b.ReportMetric(cpu*1e3/float64(procs), "cpums/op")
		}
	}
	b.Run("stream", func(b *testing.B) {
		c := float32(1.0000001)
		c0 = cpuSeconds()
		for b.Loop() {
			for i := range w {
				w[i] *= c
			}
			c = 1 / c
		}
		report(b)
	})
	for _, r := range []int{8, 16, 64} {
		a := randF32(rng, r*in, 0.01)
		bm := randF32(rng, out*r, 0.01)
		b.Run(fmt.Sprintf("r=%d/RankUpdate", r), func(b *testing.B) {
			c := float32(0.5)
			c0 = cpuSeconds()
			for b.Loop() {
				RankUpdate(m, a, bm, r, c)
				c = -c
			}
			report(b)
		})
		b.Run(fmt.Sprintf("r=%d/rows", r), func(b *testing.B) {
			c := float32(0.5)
			c0 = cpuSeconds()
			for b.Loop() {
				coef, pack := adapterUpdate(a, bm, in, r, c)
				rankUpdateBlocked(out, in, r, coef, pack, func(i, j0, j1 int, slab, c []float32) {
					rankRow(w[i*in+j0:i*in+j1], slab, c, j1-j0)
				})
				c = -c
			}
			report(b)
		})
	}
}
