package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// TestQuantizeNF4 checks QuantizeNF4 bit for bit against reftest.QuantizeNF4 at
// every block size from 32 to 4096, on counts that end inside a block, on
// an odd count, on blocks of zeros (a full one and a short last one), on
// values exactly on the midpoints (the lower code) and on both sides of
// them, and with GOMAXPROCS raised so that blocks are split among
// goroutines unevenly.
func TestQuantizeNF4(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for bs := 32; bs <= 4096; bs *= 2 {
		for _, n := range []int{1, 3, bs - 1, bs, bs + 1, 3*bs + 17, 5*bs - 3} {
			src := randF32(rng, n, 2)
			// A full block of zeros and, where there is one, a short last
			// block of zeros.
			if n >= 2*bs {
				clear(src[bs : 2*bs])
			}
			if n%bs != 0 && n > bs {
				clear(src[n/bs*bs:])
			}
			// Midpoints exactly: a block whose absmax is 1 (so that the
			// reciprocal and the products are exact) holding every
			// midpoint and its neighbours.
			if n >= bs && bs >= 64 {
				blk := src[:bs]
				clear(blk)
				blk[0] = 1
				for i, b := range nf4Bounds {
					blk[1+3*i] = b
					blk[2+3*i] = math.Nextafter32(b, 2)
					blk[3+3*i] = math.Nextafter32(b, -2)
				}
			}
			codes := make([]byte, (n+1)/2)
			absmax := make([]float32, (n+bs-1)/bs)
			QuantizeNF4(codes, absmax, src, bs)
			wc, wa := reftest.QuantizeNF4(src, bs)
			for i := range wc {
				if codes[i] != wc[i] {
					t.Fatalf("block %d, n %d: codes[%d] = %#02x, want %#02x (src %g, %g)", bs, n, i, codes[i], wc[i], src[2*i], src[min(n-1, 2*i+1)])
				}
			}
			for i := range wa {
				if math.Float32bits(absmax[i]) != math.Float32bits(wa[i]) {
					t.Fatalf("block %d, n %d: absmax[%d] = %g, want %g", bs, n, i, absmax[i], wa[i])
				}
			}
		}
	}
	// The midpoint itself takes the lower code.
	if k := nf4Code(nf4Bounds[3]); k != 3 {
		t.Errorf("code of the midpoint between codes 3 and 4 is %d, want 3", k)
	}
}

// TestQuantizeNF4Split quantizes 7 × 64 + 5 blocks with GOMAXPROCS 7
// against the reference.
func TestQuantizeNF4Split(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(43, 44))
	const bs = 64
	src := randF32(rng, (7*64+5)*bs+7, 1)
	codes := make([]byte, (len(src)+1)/2)
	absmax := make([]float32, (len(src)+bs-1)/bs)
	QuantizeNF4(codes, absmax, src, bs)
	wc, wa := reftest.QuantizeNF4(src, bs)
	for i := range wc {
		if codes[i] != wc[i] {
			t.Fatalf("codes[%d] = %#02x, want %#02x", i, codes[i], wc[i])
		}
	}
	for i := range wa {
		if absmax[i] != wa[i] {
			t.Fatalf("absmax[%d] = %g, want %g", i, absmax[i], wa[i])
		}
	}
}

// nf4W returns a random NF4 W (out×in): random codes (every code, the pad
// nibble included) and random positive scales, and its values
// (reftest.NF4Values).
func nf4W(rng *rand.Rand, out, in, block int) (Mat, []float32) {
	codes, absmax, vals := reftest.RandomNF4(rng, out*in, block)
	return Mat{Rows: out, Cols: in, Type: NF4, Codes: codes, Absmax: absmax, Block: block}, vals
}

// TestDequantizeNF4 checks DequantizeNF4 from every start, even and odd,
// over runs that cross blocks, against the table.
func TestDequantizeNF4(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	w, vals := nf4W(rng, 7, 37, 32)
	for flat0 := range 40 {
		for _, n := range []int{0, 1, 2, 31, 33, 7*37 - flat0} {
			dst := nanFill(n + 1)
			DequantizeNF4(dst[:n], w.Codes, w.Absmax, w.Block, flat0)
			for i := range n {
				if math.Float32bits(dst[i]) != math.Float32bits(vals[flat0+i]) {
					t.Fatalf("from %d: dst[%d] = %g, want %g", flat0, i, dst[i], vals[flat0+i])
				}
			}
			if !math.IsNaN(float64(dst[n])) {
				t.Fatalf("from %d, %d elements: wrote past the end", flat0, n)
			}
		}
	}
}

// TestNF4Products runs Product, Forward and Backward (dx by productNN and
// by the panels) with an NF4 W whose blocks straddle rows (in not a
// multiple of the block), at every block size's extremes and n across the
// matrix-vector threshold, against float64 references on its values.
func TestNF4Products(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	for _, c := range []struct{ n, in, out, r, block int }{
		{1, 37, 19, 3, 32}, {3, 100, 21, 5, 64}, {gemvRows + 1, 70, 33, 4, 32}, {9, 300, 41, 7, 128}, {2, 129, 70, 5, 4096},
	} {
		w, vals := nf4W(rng, c.out, c.in, c.block)
		what := fmt.Sprintf("n=%d in=%d out=%d block=%d", c.n, c.in, c.out, c.block)
		x := randF32(rng, c.n*c.in, 1)
		y := nanFill(c.n * c.out)
		Product(y, x, w, c.n)
		want, mag := refNT(x, vals, c.n, c.out, c.in)
		within(t, what+": Product y", y, want, mag, accTol(c.in))
		checkForwardOn(t, rng, w, vals, c.n, c.r)
		checkBackwardOn(t, rng, w, vals, c.n, c.r)
	}
}

// manyProcs raises GOMAXPROCS to 7 for the test.
func manyProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// TestNF4Table checks the table against reftest's copy, written out from
// bitsandbytes' constants, bit for bit.
func TestNF4Table(t *testing.T) {
	for i, v := range NF4Table {
		if math.Float32bits(v) != math.Float32bits(reftest.NF4[i]) {
			t.Errorf("NF4Table[%d] = %g, want %g", i, v, reftest.NF4[i])
		}
	}
}

// nf4Paths are the forms of y = x·Wᵀ for an NF4 W: the dispatch of
// Product, the fused matrix-vector driver (gemv4NF4 or gemv4NF4AVX512
// where nf4Fused holds, matGemvGo otherwise; the AVX-512 kernel only where
// the processor has it, or in its portable form), and the dequantized
// panels multiplied by the fused float32 kernel and by Sgemm.
func nf4Paths(n int) map[string]func(y, x []float32, w Mat) {
	paths := map[string]func(y, x []float32, w Mat){
		"Product":      func(y, x []float32, w Mat) { Product(y, x, w, n) },
		"gemv":         func(y, x []float32, w Mat) { nf4Gemv(y, x, w, n) },
		"gemv-avx2":    func(y, x []float32, w Mat) { nf4GemvBy(y, x, w, n, false) },
		"gemv-avx512":  func(y, x []float32, w Mat) { nf4GemvBy(y, x, w, n, true) },
		"panels-gemv":  func(y, x []float32, w Mat) { widenedPanels(y, x, w, n, true) },
		"panels-sgemm": func(y, x []float32, w Mat) { widenedPanels(y, x, w, n, false) },
	}
	if !useNF4AVX512 && !portableKernels {
		delete(paths, "gemv-avx512")
	}
	return paths
}

// checkNF4Product runs every path of y = x·Wᵀ on an NF4 W (out×in) against
// a float64 reference on its values.
func checkNF4Product(t *testing.T, rng *rand.Rand, n, out, in, block int) {
	t.Helper()
	w, vals := nf4W(rng, out, in, block)
	x := randF32(rng, n*in, 1)
	want, mag := refNT(x, vals, n, out, in)
	for name, f := range nf4Paths(n) {
		y := nanFill(n * out)
		f(y, x, w)
		within(t, fmt.Sprintf("%s n=%d out=%d in=%d block=%d: y", name, n, out, in, block), y, want, mag, accTol(in))
	}
}

// TestNF4Product checks every path of y = x·Wᵀ on NF4 W whose rows are
// whole blocks (the fused kernel's case) and whose rows are not (blocks
// straddling rows, every remainder of in after a multiple of 16), with
// rows leaving 0 to 3 after the kernel's groups of four, at n = 1 to 6
// (across nf4GemvRows and gemvRows); and rows of W past two column blocks
// of the fused driver (nf4BlockCols) with a batch past a chunk of x.
func TestNF4Product(t *testing.T) {
	rng := rand.New(rand.NewPCG(49, 50))
	type shape struct{ out, in, block int }
	shapes := []shape{
		// Rows of whole blocks.
		{4, 32, 32}, {5, 64, 32}, {6, 96, 32}, {7, 192, 64}, {9, 256, 128}, {3, 64, 64}, {13, 4096, 4096},
	}
	for r := range 16 {
		// Rows that end inside a block: in mod 16 = r.
		shapes = append(shapes, shape{4 + r%4, 48 + r, 32}, shape{5 + r%4, 161 + 16*(r%3) + r - 1, 64})
	}
	for _, sh := range shapes {
		for n := 1; n <= 6; n++ {
			checkNF4Product(t, rng, n, sh.out, sh.in, sh.block)
		}
	}
	in := 2*nf4BlockCols + 64
	for _, n := range []int{1, 2, gemvChunk(in) + 2} {
		checkNF4Product(t, rng, n, 6, in, 64)
		checkNF4Product(t, rng, n, 5, in+16, 64)
	}
}

// TestNF4ProductSplit runs every path with GOMAXPROCS 7 on shapes above the
// size at which groups of rows of W (66 of them, the last of 3 rows) and
// panels are split among goroutines, rows of whole blocks and not, then
// Forward and Backward on the same W.
func TestNF4ProductSplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(51, 52))
	for _, in := range []int{2048, 2000} {
		for _, n := range []int{1, 2, gemvRows + 1, 40} {
			checkNF4Product(t, rng, n, 263, in, 64)
		}
		w, vals := nf4W(rng, 263, in, 64)
		checkForwardOn(t, rng, w, vals, 1, 9)
		checkForwardOn(t, rng, w, vals, 40, 9)
		checkBackwardOn(t, rng, w, vals, 1, 9)
		checkBackwardOn(t, rng, w, vals, gemvRows+1, 9)
	}
}

// TestNF4Layers runs Forward and Backward on NF4 W whose rows are whole
// blocks, at n on both sides of nf4GemvRows and gemvRows.
func TestNF4Layers(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	for _, c := range []struct{ n, out, in, block int }{
		{1, 33, 128, 32}, {2, 21, 256, 64}, {gemvRows, 19, 64, 32}, {gemvRows + 1, 70, 512, 128}, {9, 41, 320, 64},
	} {
		w, vals := nf4W(rng, c.out, c.in, c.block)
		checkForwardOn(t, rng, w, vals, c.n, 5)
		checkBackwardOn(t, rng, w, vals, c.n, 5)
	}
}
