package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
)

// Tests of y = x·Wᵀ: the fused kernel (f32Gemv, gemv4F32 where the
// processor has it; halfGemv for a half W), its portable form, the
// widened panels of a half W, and the dispatch of Product, against the
// float64 reference refNT. Every bound is accTol(in): a float32 sum of in
// products in any order, which covers the kernel's lanes, its column blocks
// added in order and the columns left to Go.

// f32Paths are the forms of y = x·Wᵀ for a float32 W.
func f32Paths(n, out, in int) map[string]func(y, x, w []float32) {
	return map[string]func(y, x, w []float32){
		"gemv":    func(y, x, w []float32) { f32Gemv(y, x, w, n, out, in) },
		"gemv-go": func(y, x, w []float32) { f32GemvGo(y, x, w, 0, n, out, in, 0, out) },
		"product": func(y, x, w []float32) { f32Product(y, x, w, n, out, in) },
		"Product": func(y, x, w []float32) { Product(y, x, Mat{Rows: out, Cols: in, Type: F32, F32: w}, n) },
	}
}

func checkF32Product(t *testing.T, rng *rand.Rand, n, out, in int) {
	t.Helper()
	w := randF32(rng, out*in, 1)
	x := randF32(rng, n*in, 1)
	want, mag := refNT(x, w, n, out, in)
	for name, f := range f32Paths(n, out, in) {
		y := nanFill(n * out)
		f(y, x, w)
		within(t, fmt.Sprintf("%s n=%d out=%d in=%d: y", name, n, out, in), y, want, mag, accTol(in))
	}
}

// TestF32Product checks every path on shapes whose rows leave 0 to 3 rows
// after the kernel's groups of four, whose columns leave every remainder
// after its blocks of 16 (in < 16 has none) and, past gemvBlockCols(4),
// one to three column blocks with a partial last one or none, at n = 1 to
// 6.
func TestF32Product(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	kb := gemvBlockCols(4)
	shapes := [][2]int{{1, 1}, {3, 5}, {4, 15}, {4, 16}, {5, 17}, {6, 18}, {7, 19}, {8, 20},
		{4, 21}, {5, 22}, {6, 23}, {7, 24}, {8, 25}, {9, 26}, {10, 27}, {11, 28}, {12, 29},
		{13, 30}, {7, 31}, {8, 32}, {9, 33}, {13, 47}, {6, 64}, {7, 129},
		{5, kb}, {6, kb + 16}, {7, kb + 5}, {9, 2*kb + 31}, {4, 3 * kb}}
	for _, sh := range shapes {
		for n := 1; n <= 6; n++ {
			checkF32Product(t, rng, n, sh[0], sh[1])
		}
	}
}

// TestF32ProductChunks runs the fused path with more rows of x than one
// chunk (gemvChunk) holds: a whole second chunk and a partial third.
func TestF32ProductChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	in := gemvBlockCols(4) + 21
	nb := gemvChunk(in)
	checkF32Product(t, rng, 2*nb+3, 9, in)
	checkF32Product(t, rng, nb, 5, in)
}

// TestF32ProductSplit runs the fused path with GOMAXPROCS 7 on shapes above
// the size at which its groups of rows of W are split among goroutines
// (66 groups, the last of 3 rows), at n = 1 and at an n past a chunk of x.
func TestF32ProductSplit(t *testing.T) {
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(85, 86))
	checkF32Product(t, rng, 1, 263, 301)
	checkF32Product(t, rng, 1, 263, 2*gemvBlockCols(4)+7)
	in := 2*gemvBlockCols(4) + 7
	checkF32Product(t, rng, gemvChunk(in)+2, 263, in)
}

// TestHalfGemvBlocks runs halfGemv (for BF16 on x in pair order) on rows of
// W past two of its column blocks (gemvBlockCols(2)) and a remainder after
// its blocks of 16, rows of W leaving one after the groups of four, at
// n = 1 to 3.
func TestHalfGemvBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(87, 88))
	const out = 9
	in := 2*gemvBlockCols(2) + 16 + 5
	for _, dt := range halfTypes {
		h := newHalfW(rng, dt, out, in, 1)
		for n := 1; n <= 3; n++ {
			x := randF32(rng, n*in, 1)
			want, mag := refNT(x, h.val, n, out, in)
			y := nanFill(n * out)
			halfGemv(y, x, h.bits, dt, n, out, in)
			within(t, fmt.Sprintf("%v n=%d: y", dt, n), y, want, mag, accTol(in))
		}
	}
}

// productPaths are the forms of y = x·Wᵀ for a half W: the dispatch of
// Product, the fused matrix-vector form (the assembly kernel where the
// processor has it), its portable form, and the widened panels.
func productPaths(n int) map[string]func(y, x []float32, h halfW) {
	paths := map[string]func(y, x []float32, h halfW){
		"panels": func(y, x []float32, h halfW) {
			panelProduct(y, x, Mat{Rows: h.rows, Cols: h.cols, Type: h.dt, Bits: h.bits}, n)
		},
	}
	paths["gemv"] = func(y, x []float32, h halfW) { halfGemv(y, x, h.bits, h.dt, n, h.rows, h.cols) }
	paths["gemv-go"] = func(y, x []float32, h halfW) {
		matGemvGo(y, x, &Mat{Rows: h.rows, Cols: h.cols, Type: h.dt, Bits: h.bits}, 0, n, h.rows, 0, h.rows)
	}
	paths["Product"] = func(y, x []float32, h halfW) {
		Product(y, x, Mat{Rows: h.rows, Cols: h.cols, Type: h.dt, Bits: h.bits}, n)
	}
	return paths
}

// TestHalfProduct checks y = x·Wᵀ with an F16 or BF16 W on every path, for
// every n up to two past the fused path's threshold and shapes whose rows
// leave 1 to 3 rows after the kernel's groups of four and whose columns
// leave every remainder after its blocks of 16.
func TestHalfProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := [][2]int{{1, 1}, {3, 5}, {4, 15}, {4, 16}, {5, 17}, {7, 31}, {8, 32}, {9, 33}, {13, 47}, {6, 64}, {7, 129}}
	for _, dt := range halfTypes {
		for _, sh := range shapes {
			out, in := sh[0], sh[1]
			h := newHalfW(rng, dt, out, in, 1)
			for n := 1; n <= halfGemvRows+2; n++ {
				x := randF32(rng, n*in, 1)
				want, mag := refNT(x, h.val, n, out, in)
				for name, f := range productPaths(n) {
					y := nanFill(n * out)
					f(y, x, h)
					within(t, fmt.Sprintf("%v %s n=%d out=%d in=%d: y", dt, name, n, out, in), y, want, mag, accTol(in))
				}
			}
		}
	}
}
