package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// forwardRef returns y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ in float64 and the sum of the
// magnitudes of its terms.
// (No race instrumentation: a float64 reference on one goroutine, as
// reftest's oracle.)
//
//go:norace
func forwardRef(x, w, a, b []float32, s float64, n, in, out, r int) (y, mag []float64) {
	y, mag = refNT(x, w, n, out, in)
	t, tmag := refNT(x, a, n, r, in)
	for i := range n {
		for o := range out {
			for k := range r {
				y[i*out+o] += s * t[i*r+k] * float64(b[o*r+k])
				mag[i*out+o] += reftest.Abs(s) * tmag[i*r+k] * reftest.Abs(float64(b[o*r+k]))
			}
		}
	}
	return y, mag
}

// testW returns a random W (out×in) of dtype dt as Forward and Backward
// take it, and its values; an NF4 W has blocks of 32, which straddle rows
// unless in is a multiple of 32.
func testW(rng *rand.Rand, dt Type, out, in int) (Mat, []float32) {
	if dt == NF4 {
		return nf4W(rng, out, in, 32)
	}
	if dt == F32 {
		v := randF32(rng, out*in, 1)
		return Mat{Rows: out, Cols: in, Type: F32, F32: v}, v
	}
	h := newHalfW(rng, dt, out, in, 1)
	return Mat{Rows: out, Cols: in, Type: dt, Bits: h.bits}, h.val
}

// checkForward runs Forward on a W of dtype dt against forwardRef.
func checkForward(t *testing.T, rng *rand.Rand, dt Type, n, in, out, r int) {
	t.Helper()
	w, wv := testW(rng, dt, out, in)
	checkForwardOn(t, rng, w, wv, n, r)
}

// checkForwardOn runs Forward on w, whose values are wv, against forwardRef.
func checkForwardOn(t *testing.T, rng *rand.Rand, w Mat, wv []float32, n, r int) {
	t.Helper()
	in, out, dt := w.Cols, w.Rows, w.Type
	a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 1)
	x := randF32(rng, n*in, 1)
	const s = 0.75
	y := nanFill(n * out)
	Forward(y, x, w, a, b, n, r, s)
	want, mag := forwardRef(x, wv, a, b, s, n, in, out, r)
	within(t, fmt.Sprintf("%v n=%d in=%d out=%d r=%d: Forward y", dt, n, in, out, r), y, want, mag, accTol(in+r+3))
}

// TestForward runs Forward with every W dtype at batch sizes on both sides
// of the matrix-vector threshold (gemvRows), past the packed product's
// (gemmMinRows) and of the chunks of rows of x
// in gemvFused, and past the column blocks of the expansion y += T·Bᵀ.
func TestForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, dt := range []Type{F32, F16, BF16, NF4} {
		for _, c := range []struct{ n, in, out, r int }{
			{1, 37, 19, 3}, {3, 64, 21, 5}, {gemvRows, 70, 33, 4}, {gemvRows + 1, 70, 33, 4}, {9, 129, 41, 7},
			{40, 300, 131, 5}, {7, gemvX/3 + 5, 9, 2}, {6, 40, 1100, 64}, {gemmMinRows + 3, 300, 97, 6},
			// T by the packed product (gemmSmallWins): n from one panel,
			// r past whole panels of gemmMR, in past gemmKC.
			{gemmNR, gemmNR, 40, 8}, {gemmNR + 1, 33, 35, 17}, {gemmNR - 1, 300, 40, 9},
		} {
			checkForward(t, rng, dt, c.n, c.in, c.out, c.r)
		}
	}
}

// TestForwardFewRows runs Forward at n ≤ gemvRows on a W of every type, the
// fused path of T, W's rows and B's terms in one split (rankTerm; an NF4
// W's rows of whole blocks on its kernel, the others by the Go loop; a
// group of A weighed as several of a half or NF4 W's): ranks
// below, at and past a whole 16 (gemv4F32's part) with every remainder,
// rows of W leaving every remainder of a group of four, columns past the
// kernel's whole 16s; and with GOMAXPROCS 7, each goroutine's share ending
// mid-way, T's groups of rows of A (the first of the split) spread over
// several goroutines, some with none of W's (r = 64, few rows of W).
func TestForwardFewRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	shapes := []struct{ n, in, out, r int }{
		{1, 1024, 37, 16}, {2, 64, 38, 19}, {3, 70, 39, 35}, {gemvRows, 33, 40, 64},
		{1, 1030, 41, 1}, {2, 16, 9, 15}, {1, 2048, 130, 17}, {2, 1024, 9, 64},
	}
	for _, dt := range []Type{F32, F16, BF16, NF4} {
		for _, c := range shapes {
			checkForward(t, rng, dt, c.n, c.in, c.out, c.r)
		}
	}
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	for _, dt := range []Type{F32, F16, BF16, NF4} {
		for _, c := range shapes {
			checkForward(t, rng, dt, c.n, c.in, 4*c.out+3, c.r)
		}
	}
}

// checkBackward runs Backward with a W of dtype dt, unmerged and merged,
// and compares dx, dA and dB with float64 references; then the panel form
// of dx (panelGradX) for a half W.
func checkBackward(t *testing.T, rng *rand.Rand, dt Type, n, in, out, r int) {
	t.Helper()
	w, wv := testW(rng, dt, out, in)
	checkBackwardOn(t, rng, w, wv, n, r)
}

// checkBackwardOn is checkBackward on w, whose values are wv.
func checkBackwardOn(t *testing.T, rng *rand.Rand, w Mat, wv []float32, n, r int) {
	t.Helper()
	in, out := w.Cols, w.Rows
	checkBackwardXG(t, rng, w, wv, randF32(rng, n*in, 1), randF32(rng, n*out, 1), n, r)
}

// checkBackwardXG is checkBackwardOn with x and g (dy) given.
func checkBackwardXG(t *testing.T, rng *rand.Rand, w Mat, wv, x, g []float32, n, r int) {
	t.Helper()
	in, out, dt := w.Cols, w.Rows, w.Type
	a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 1)
	const s = 0.75
	// References: U = s·dy·B, T = s·x·Aᵀ, dx = dy·W + U·A, dA = Uᵀ·x, dB = dyᵀ·T.
	base, bmag := refNN(g, wv, n, in, out)
	u, umag := refNN(g, b, n, r, out)
	tt, tmag := refNT(x, a, n, r, in)
	dxWant, dxMag := make([]float64, n*in), make([]float64, n*in)
	for i := range n {
		for j := range in {
			dxWant[i*in+j], dxMag[i*in+j] = base[i*in+j], bmag[i*in+j]
			for k := range r {
				dxWant[i*in+j] += s * u[i*r+k] * float64(a[k*in+j])
				dxMag[i*in+j] += s * umag[i*r+k] * reftest.Abs(float64(a[k*in+j]))
			}
		}
	}
	dAWant, dAMag := make([]float64, r*in), make([]float64, r*in)
	for k := range r {
		for j := range in {
			for i := range n {
				dAWant[k*in+j] += s * u[i*r+k] * float64(x[i*in+j])
				dAMag[k*in+j] += s * umag[i*r+k] * reftest.Abs(float64(x[i*in+j]))
			}
		}
	}
	dBWant, dBMag := make([]float64, out*r), make([]float64, out*r)
	for o := range out {
		for k := range r {
			for i := range n {
				dBWant[o*r+k] += s * float64(g[i*out+o]) * tt[i*r+k]
				dBMag[o*r+k] += s * reftest.Abs(float64(g[i*out+o])) * tmag[i*r+k]
			}
		}
	}
	what := fmt.Sprintf("%v n=%d in=%d out=%d r=%d", dt, n, in, out, r)
	dx, dA, dB := nanFill(n*in), nanFill(r*in), nanFill(out*r)
	Backward(dx, dA, dB, g, x, w, a, b, n, r, s, false)
	within(t, what+": dx", dx, dxWant, dxMag, accTol(out+r+2))
	within(t, what+": dA", dA, dAWant, dAMag, accTol(out+n+2))
	within(t, what+": dB", dB, dBWant, dBMag, accTol(in+n+2))

	// Without dx: dA and dB alone.
	dA2, dB2 := nanFill(r*in), nanFill(out*r)
	Backward(nil, dA2, dB2, g, x, w, a, b, n, r, s, false)
	within(t, what+": dA without dx", dA2, dAWant, dAMag, accTol(out+n+2))
	within(t, what+": dB without dx", dB2, dBWant, dBMag, accTol(in+n+2))

	// Merged: dx = dy·W.
	dx = nanFill(n * in)
	Backward(dx, dA, dB, g, x, w, a, b, n, r, s, true)
	within(t, what+": merged dx", dx, base, bmag, accTol(out+1))
	if dt == F32 {
		return
	}
	// The panel form of dx, which runs without AVX2 + FMA or with a
	// threaded BLAS (and for an NF4 W in productNN's place).
	got := nanFill(n * in)
	panelGradX(got, g, w, n)
	within(t, what+": panelGradX dx", got, base, bmag, accTol(out+1))
}

// TestBackward covers dx = dy·W + U·A at n on both sides of productNN's
// fused path for a half W (halfFuseRows), of the matrix-vector path
// (gemvRows), of the packed products of the adapter's terms
// (gemmSmallWins) and of the packed product's (gemmMinRows), with inner
// dimensions that end inside productNN's blocks of rows and columns that
// end inside its blocks of columns and inside the kernels' blocks of 64
// and 8; dx at gemmMinRows in both blockings of gradXBlocks.
func TestBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, dt := range []Type{F32, F16, BF16, NF4} {
		for _, c := range []struct{ n, in, out, r int }{
			{1, 1, 1, 1}, {1, 37, 19, 3}, {1, 130, 70, 5}, {halfFuseRows, 129, 65, 7},
			{halfFuseRows + 1, 130, 70, 5}, {gemvRows + 1, 129, 65, 7}, {9, 257, 131, 4}, {gemmMinRows + 3, 97, 300, 6},
			// T, U, dA and dB by packed products (gemmSmallWins): n on
			// both sides of gemmMinRows, of a panel and past gemmKC (the
			// inner dimension of dA and dB), r past whole panels of
			// gemmMR, in and out past gemmNR.
			{gemmMinRows - 1, 40, 40, 3}, {gemmMinRows, 40, 33, 5}, {gemmNR, gemmNR, gemmNR, 8},
			{gemmNR + 1, 33, 290, 17}, {gemmNR - 1, 40, 40, 3}, {gemmKC + 37, 45, 70, 9},
		} {
			checkBackward(t, rng, dt, c.n, c.in, c.out, c.r)
			if c.n >= gemmMinRows && c.n <= gemmInPlaceRows {
				// dx by the packed product in gradXBlocks' other
				// blocking too (shortDXSlabs).
				withShortDXSlabs(!shortDXSlabs, func() { checkBackward(t, rng, dt, c.n, c.in, c.out, c.r) })
			}
		}
	}
}

// TestSplit runs every path on shapes above the size at which its work is
// split among goroutines, with GOMAXPROCS raised to an odd count so that
// shares are uneven: the fused product (groups of rows of W), the panels of
// a half W (9 of them), Forward's expansion (column blocks and groups of
// rows), productNN (spans of columns), the panel form of dx with its
// widening split, AbsMax, the rank-r update (column blocks and groups of
// rows) and RankFinite; for F16, BF16, NF4 and F32 W.
func TestSplit(t *testing.T) {
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(25, 26))
	for _, dt := range halfTypes {
		for _, c := range []struct{ n, in, out int }{
			{1, 301, 263}, {halfGemvRows, 301, 263}, {halfGemvRows + 1, 2000, 263}, {40, 2000, 263},
		} {
			h := newHalfW(rng, dt, c.out, c.in, 1)
			if c.n > halfGemvRows && (c.out+halfPanelRows(c.out, c.in)-1)/halfPanelRows(c.out, c.in) < 7 {
				t.Fatalf("n=%d: fewer panels than goroutines", c.n)
			}
			x := randF32(rng, c.n*c.in, 1)
			want, mag := refNT(x, h.val, c.n, c.out, c.in)
			for name, f := range productPaths(c.n) {
				y := nanFill(c.n * c.out)
				f(y, x, h)
				within(t, fmt.Sprintf("%v %s n=%d y", dt, name, c.n), y, want, mag, accTol(c.in))
			}
		}
		checkForward(t, rng, dt, 40, 700, 263, 9)
		checkBackward(t, rng, dt, 1, 700, 263, 9)
		checkBackward(t, rng, dt, halfFuseRows+1, 700, 263, 9)
		// panelGradX with a panel of 4 rows past the widening's split.
		const n, in, out = 2, 17000, 9
		h := newHalfW(rng, dt, out, in, 1)
		g := randF32(rng, n*out, 1)
		want, mag := refNN(g, h.val, n, in, out)
		got := nanFill(n * in)
		panelGradX(got, g, Mat{Rows: out, Cols: in, Type: dt, Bits: h.bits}, n)
		within(t, fmt.Sprintf("%v panelGradX dx", dt), got, want, mag, accTol(out+1))

		big := newHalfW(rng, dt, 700, 700, 1)
		var mx float32
		for _, v := range big.val {
			mx = max(mx, float32(reftest.Abs(float64(v))))
		}
		big.bits[len(big.bits)-1] = narrow1(dt, -2*mx)
		if got := absMaxHalf(big.bits, dt); got != 2*mx {
			t.Errorf("%v: AbsMax %g, want %g", dt, got, 2*mx)
		}
		checkRankUpdateBits(t, rng, dt, mergeCase{70, 1100, 64})
	}
	// An NF4 W: panels of rows dequantized (9 of them), productNN's spans,
	// and panelGradX's dequantization split.
	w, vals := nf4W(rng, 263, 2000, 64)
	for _, n := range []int{1, gemvRows + 1, 40} {
		x := randF32(rng, n*2000, 1)
		want, mag := refNT(x, vals, n, 263, 2000)
		y := nanFill(n * 263)
		Product(y, x, w, n)
		within(t, fmt.Sprintf("nf4 Product n=%d y", n), y, want, mag, accTol(2000))
	}
	checkForwardOn(t, rng, w, vals, 40, 9)
	checkBackwardOn(t, rng, w, vals, 1, 9)
	checkBackwardOn(t, rng, w, vals, halfFuseRows+1, 9)
	w, vals = nf4W(rng, 9, 17000, 256)
	g := randF32(rng, 2*9, 1)
	want, mag := refNN(g, vals, 2, 17000, 9)
	got := nanFill(2 * 17000)
	panelGradX(got, g, w, 2)
	within(t, "nf4 panelGradX dx", got, want, mag, accTol(10))

	f32 := randF32(rng, 700*700, 1)
	var mx float32
	for _, v := range f32 {
		mx = max(mx, float32(reftest.Abs(float64(v))))
	}
	f32[len(f32)-1] = -2 * mx
	if got := AbsMax(Mat{Rows: 700, Cols: 700, Type: F32, F32: f32}); got != 2*mx {
		t.Errorf("f32: AbsMax %g, want %g", got, 2*mx)
	}
	checkForward(t, rng, F32, 40, 700, 263, 9)
	checkBackward(t, rng, F32, 1, 700, 263, 9)
	checkBackward(t, rng, F32, gemvRows+1, 700, 263, 9)
	// The packed products (gemmSmallWins, gemmWins) and the rank-r term on
	// the micro-kernel, their blocks and strips split unevenly.
	checkBackward(t, rng, F32, 3*gemmNR+6, 700, 263, 9)
}

// TestTransposeBlocked checks the tiled transpose against the definition
// on shapes with every remainder of its 8×8 tiles and of packT16's 16
// columns (16 rows), and above the size at which its rows (or, for fewer
// than 128 rows, its columns) are split among goroutines (GOMAXPROCS 3:
// shares ending mid-tile; 16 rows with a share's whole 16s and a rest).
func TestTransposeBlocked(t *testing.T) {
	old := runtime.GOMAXPROCS(3)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	type shape struct{ rows, cols int }
	var shapes []shape
	for _, rows := range []int{1, 7, 8, 9, 16, 23, 1001} {
		for _, cols := range []int{1, 5, 8, 15, 16, 17, 64, 67} {
			shapes = append(shapes, shape{rows, cols})
		}
	}
	shapes = append(shapes, shape{16, 4096 + 27}, shape{16, 4099}, shape{3, 30001}, shape{127, 600}, shape{128, 515})
	for _, sh := range shapes {
		rows, cols := sh.rows, sh.cols
		{
			src := make([]float32, rows*cols)
			for i := range src {
				src[i] = float32(i) + 0.5
			}
			dst := make([]float32, rows*cols+1)
			dst[rows*cols] = -1 // a guard past the end
			transposeBlocked(dst[:rows*cols], src, rows, cols)
			for o := range rows {
				for k := range cols {
					if got := dst[k*rows+o]; got != src[o*cols+k] {
						t.Fatalf("%d×%d: dst[%d][%d] = %g, want %g", rows, cols, k, o, got, src[o*cols+k])
					}
				}
			}
			if dst[rows*cols] != -1 {
				t.Fatalf("%d×%d: wrote past the end", rows, cols)
			}
		}
	}
}
