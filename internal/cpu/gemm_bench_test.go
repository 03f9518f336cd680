package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
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

// BenchmarkGemmKernel6 times the kernel of six rows by 64 columns alone,
// as BenchmarkGemmKernel does the one of eight by 32.
func BenchmarkGemmKernel6(b *testing.B) {
	if !useGemm512 {
		b.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(1, 1))
	const k = gemmKC
	a := randF32(rng, k*6, 1)
	w := randF32(rng, 2*k*gemmNR, 1)
	c := make([]float32, 6*2*gemmNR)
	for b.Loop() {
		gemmKernel6x64(k, &a[0], &w[0], &c[0], 2*gemmNR, 1, 0, 0, 0, 0, gemmNR, 4*k*gemmNR)
	}
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(2*float64(k*6*2*gemmNR)/sec/1e9, "GFLOP/s")
}

// BenchmarkGemmKernelStream times the micro-kernel on one packed panel of
// W (in L1) over panels of x that stream from L1, L2, L3 or memory (x of
// 48 KiB to 16 MiB), each call adding to the same block of a y with rows
// 4096 floats apart, with gemmKC and twice gemmKC steps: the rate the
// packed product's kernel reaches without the packing and the reading of
// W. cpuGFLOP/s is the rate per CPU-second of the one goroutine.
func BenchmarkGemmKernelStream(b *testing.B) {
	if !useGemm512 {
		b.Skip("no AVX-512")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const ldc = 4096
	for _, k := range []int{gemmKC, 2 * gemmKC} {
		for _, xBytes := range []int{48 << 10, 1 << 20, 4 << 20, 16 << 20} {
			panels := xBytes / (4 * k * gemmMR)
			a := randF32(rng, panels*k*gemmMR, 1)
			w := randF32(rng, k*gemmNR, 1)
			c := make([]float32, gemmMR*ldc)
			b.Run(fmt.Sprintf("k=%d/x=%dKiB", k, xBytes>>10), func(b *testing.B) {
				c0 := cpuSeconds()
				for b.Loop() {
					for p := range panels {
						gemmKernelAVX512(k, &a[p*k*gemmMR], &w[0], &c[0], ldc, 1)
					}
				}
				flop := 2 * float64(panels*k*gemmMR*gemmNR)
				b.ReportMetric(flop/(b.Elapsed().Seconds()/float64(b.N))/1e9, "GFLOP/s")
				if cpu := (cpuSeconds() - c0) / float64(b.N); cpu > 0 {
					b.ReportMetric(flop/cpu/1e9, "cpuGFLOP/s")
				}
			})
		}
	}
}

// BenchmarkPackedProduct times y = x·Wᵀ on a 4096×4096 W of each type by
// the packed product (W in place where wideWins says so; packed-w: W
// packed always) and by the path of W's type (f32Product, halfProduct,
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
		for _, n := range []int{8, 16, 32, 60, 64, 256} {
			x := randF32(rng, n*in, 1)
			y := make([]float32, n*out)
			for _, p := range []struct {
				name string
				f    func()
			}{
				{"packed", func() { packedProduct(y, x, w, n) }},
				{"packed-w", func() { packedWProduct(y, x, w, n, nil) }},
				{"packed-gopack", func() {
					packedRunGo(y, x, n, in, out, &w)
				}},
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
					c0 := cpuSeconds()
					for b.Loop() {
						p.f()
					}
					sec := b.Elapsed().Seconds() / float64(b.N)
					b.ReportMetric(2*float64(n*out*in)/sec/1e9, "GFLOP/s")
					// The rate per CPU-second, times the goroutines: what
					// the wall-time rate would be with every core to itself.
					if cpu := (cpuSeconds() - c0) / float64(b.N); cpu > 0 {
						b.ReportMetric(2*float64(n*out*in)/cpu*float64(runtime.GOMAXPROCS(0))/1e9, "cpuGFLOP/s")
					}
				})
			}
		}
	}
}

// packWGo is packW as a plain loop over the panels (packPanel): the
// reference the packing benchmarks compare packW against.
func packWGo(dst []float32, w *Mat, j0, j1, p0, kc int, row []float32) {
	in := w.Cols
	for jp := j0; jp < j1; jp += gemmNR {
		packPanel(dst[(jp-j0)*kc:(jp-j0+gemmNR)*kc], gemmNR, min(gemmNR, j1-jp), kc, func(jj int) []float32 {
			off := (jp+jj)*in + p0
			if w.Type == F32 {
				return w.F32[off : off+kc]
			}
			w.widen(row[:kc], off, kc)
			return row[:kc]
		})
	}
}

// BenchmarkPackW times the packing of a whole 4096×4096 W, block by block
// as packedRun packs it, on one goroutine: by packW and by packWGo. GB/s
// counts W's bytes.
func BenchmarkPackW(b *testing.B) {
	const out, in = 4096, 4096
	rng := rand.New(rand.NewPCG(5, 7))
	h := newHalfW(rng, BF16, out, in, 0.02)
	for _, w := range []Mat{
		{Rows: out, Cols: in, Type: F32, F32: randF32(rng, out*in, 0.02)},
		{Rows: out, Cols: in, Type: BF16, Bits: h.bits},
	} {
		dst := make([]float32, gemmKC*gemmNC)
		row := make([]float32, gemmKC*gemmNR)
		for _, p := range []struct {
			name string
			f    func(dst []float32, w *Mat, j0, j1, p0, kc int, row []float32)
		}{{"packW", packW}, {"go", packWGo}} {
			b.Run(fmt.Sprintf("%v/%s", w.Type, p.name), func(b *testing.B) {
				for b.Loop() {
					for j0 := 0; j0 < out; j0 += gemmNC {
						for p0 := 0; p0 < in; p0 += gemmKC {
							p.f(dst, &w, j0, min(out, j0+gemmNC), p0, min(gemmKC, in-p0), row)
						}
					}
				}
				sec := b.Elapsed().Seconds() / float64(b.N)
				b.ReportMetric(float64(out*in*map[Type]int{F32: 4, BF16: 2}[w.Type])/sec/1e9, "GB/s")
			})
		}
	}
}

// packedRunGo is packedRun as it was before packT32 and the prefetches,
// with packWGo: the reference of the benchmarks.
func packedRunGo(y, x []float32, n, k, nc int, w *Mat) {
	np := gemmRowsPad(n, gemmMR)
	xb := getGemmBuf(np * k)
	defer gemmPool.Put(xb)
	ap := *xb
	packX(ap, x, n, k, gemmMR)
	blocks := (nc + gemmNC - 1) / gemmNC
	Parallel(blocks, n*k*nc, func(lo, hi int) {
		wb := getGemmBuf(gemmKC*gemmNC + gemmKC)
		defer gemmPool.Put(wb)
		bp, row := (*wb)[:gemmKC*gemmNC], (*wb)[gemmKC*gemmNC:]
		var tile [gemmMR * gemmNR]float32
		for blk := lo; blk < hi; blk++ {
			j0, j1 := blk*gemmNC, min(nc, (blk+1)*gemmNC)
			for p0 := 0; p0 < k; p0 += gemmKC {
				kc := min(gemmKC, k-p0)
				packWGo(bp, w, j0, j1, p0, kc, row)
				acc := 0
				if p0 > 0 {
					acc = 1
				}
				for i0 := 0; i0 < n; i0 += gemmMC {
					i1 := min(n, i0+gemmMC)
					for jr := j0; jr < j1; jr += gemmNR {
						b := &bp[(jr-j0)*kc]
						cols := min(gemmNR, j1-jr)
						for ir := i0; ir < i1; ir += gemmMR {
							a := &ap[p0*np+ir*kc]
							rows := min(gemmMR, n-ir)
							if rows == gemmMR && cols == gemmNR {
								gemmKernelAVX512(kc, a, b, &y[ir*nc+jr], nc, acc)
								continue
							}
							// An edge block: through tile, only its
							// rows and columns within y read and written.
							if acc != 0 {
								for i := range rows {
									copy(tile[i*gemmNR:i*gemmNR+cols], y[(ir+i)*nc+jr:])
								}
							}
							gemmKernelAVX512(kc, a, b, &tile[0], gemmNR, acc)
							for i := range rows {
								copy(y[(ir+i)*nc+jr:(ir+i)*nc+jr+cols], tile[i*gemmNR:])
							}
						}
					}
				}
			}
		}
	})
}
