package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// checkForwardX runs Forward on w (values wv) with x given (n rows),
// against forwardRef.
func checkForwardX(t *testing.T, rng *rand.Rand, what string, w Mat, wv, x []float32, n, r int) {
	t.Helper()
	in, out := w.Cols, w.Rows
	a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 1)
	const s = 0.75
	y := nanFill(n * out)
	Forward(y, x, w, a, b, n, r, s)
	want, mag := forwardRef(x, wv, a, b, s, n, in, out, r)
	within(t, fmt.Sprintf("%s %v n=%d in=%d out=%d r=%d: Forward y", what, w.Type, n, in, out, r), y, want, mag, accTol(in+r+3))
}

// TestForwardTerm runs Forward where the base product's goroutines add
// the adapter's term (loraTerm): the packed product for every W dtype and
// the bf16 product for a BF16 W with x of bfloat16 values. The rows of x
// cover T by the goroutines (n ≤ loraFusedTRows) and by Shrink (past it),
// every remainder of the micro-kernel's 8 rows and of the bf16 product's
// groups of 256 rows; the columns of y runs of the term past
// loraTermSlab with partial blocks and panels of 32 at the end; ranks below
// 16, whole 16s (packT32), their remainders and past gemmKC (one call over
// all r steps). Then with GOMAXPROCS 7, where most goroutines compute no
// group of T and wait for the others' before their first term.
func TestForwardTerm(t *testing.T) {
	rng := rand.New(rand.NewPCG(211, 212))
	shapes := []struct{ n, in, out, r int }{
		{gemmMinRows, 77, 301, 5}, {17, 64, 611, 16}, {loraFusedTRows, 100, 290, 20},
		{loraFusedTRows + 1, 40, 333, 33}, {47, 300, 97, 136}, {bfNC + 9, 64, 300, 16},
		{23, 33, 2*bfMC + 40, 1},
		// A float32 W read in place (wideProduct) by the goroutines
		// that compute T and add the term.
		{gemmXRows, wideMinCols + 5, 301, 16},
	}
	run := func(tag string) {
		for _, c := range shapes {
			for _, dt := range []Type{F32, F16, BF16, NF4} {
				w, wv := testW(rng, dt, c.out, c.in)
				checkForwardX(t, rng, tag, w, wv, randF32(rng, c.n*c.in, 1), c.n, c.r)
			}
			// x of bfloat16 values: the bf16 product where the
			// processor has it.
			w, wv := testW(rng, BF16, c.out, c.in)
			x, _ := randBF16(rng, c.n*c.in, 1)
			checkForwardX(t, rng, tag+" bf16 x", w, wv, x, c.n, c.r)
		}
	}
	run("")
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	run("GOMAXPROCS 7")
}

// TestForwardTermGuard runs Forward with a BF16 W one of whose blocks
// holds a subnormal, and x of bfloat16 values: the block, computed again
// by matGemvGo after the bf16 product wrote it and its term was added,
// gets its term once more, not twice.
func TestForwardTermGuard(t *testing.T) {
	rng := rand.New(rand.NewPCG(213, 214))
	for _, n := range []int{20, bfNC + 5} {
		const out, in, r = 3*bfMC + 5, 45, 7
		wv, wb := randBF16(rng, out*in, 1)
		o := bfMC + 1
		wb[o*in+3] = narrow1(BF16, 0x1p-130)
		wv[o*in+3] = widen1(BF16, wb[o*in+3])
		x, _ := randBF16(rng, n*in, 1)
		w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
		g := bf16Guarded.Load()
		checkForwardX(t, rng, "guarded", w, wv, x, n, r)
		if got := bf16Guarded.Load() - g; useBF16DP && got != 1 {
			t.Errorf("n=%d: %d blocks of W guarded, want 1", n, got)
		}
	}
}

// TestForwardBF16 runs ForwardBF16 (x and y as BF16 patterns) and
// ProductBF16 against the float64 reference (the float32 sums' bound, plus
// half a unit of bfloat16 for y's rounding), on rows of x below and past
// loraFusedTRowsBF16, loraFusedTRows and bfNC, odd in (packed element by element) and even
// (packT16), blocks of W guarded by bf16Safe, and with GOMAXPROCS 7. Where
// the two paths form the same float32 sums, it also asks for Forward's and
// Product's y on x widened, rounded afterwards, bit for bit: T by the same
// kernels (T's groups all of four rows of A, which the fused kernels sum
// whatever the rows computed with them, up to loraFusedTRowsBF16 rows;
// past loraFusedTRows the packed product, which widens x as it packs it), and no guarded block (those go
// through gonum's Sdot, whose float32 sum depends on where x lies in
// memory, and ForwardBF16 reads a widened copy of x there). An x holding
// a subnormal is refused, y untouched.
func TestForwardBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(215, 216))
	shapes := []struct{ n, in, out, r int }{
		{gemmMinRows, 64, 301, 5}, {17, 77, 97, 16}, {loraFusedTRowsBF16, 96, 290, 20},
		{loraFusedTRowsBF16 + 1, 40, 333, 33}, {loraFusedTRows + 1, 40, 97, 16},
		{bfNC + 9, 64, 300, 16}, {31, 33, 2*bfMC + 40, 1},
	}
	// near checks y's patterns against the reference want (mag: the sum
	// of its terms' magnitudes) over sums of k terms.
	near := func(what string, y []uint16, want, mag []float64, k int) {
		t.Helper()
		for i, h := range y {
			e := accTol(k) * mag[i]
			if d := reftest.Abs(float64(widen1(BF16, h)) - want[i]); !(d <= e+0x1p-8*(reftest.Abs(want[i])+e)) {
				t.Errorf("%s: y[%d] = %g, want %g", what, i, widen1(BF16, h), want[i])
				return
			}
		}
	}
	same := func(what string, y, want []uint16) {
		t.Helper()
		for i := range y {
			if y[i] != want[i] {
				t.Errorf("%s: y[%d] = %#04x, want %#04x", what, i, y[i], want[i])
				return
			}
		}
	}
	check := func(tag string, guard bool) {
		for _, c := range shapes {
			wv, wb := randBF16(rng, c.out*c.in, 1)
			if guard {
				at := (c.out/2)*c.in + 1
				wb[at] = narrow1(BF16, 0x1p-130)
				wv[at] = widen1(BF16, wb[at])
			}
			w := Mat{Rows: c.out, Cols: c.in, Type: BF16, Bits: wb}
			xv, xb := randBF16(rng, c.n*c.in, 1)
			a, b := randF32(rng, c.r*c.in, 1), randF32(rng, c.out*c.r, 1)
			what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d", tag, c.n, c.in, c.out, c.r)
			// T by the same kernels: both by the goroutines' fused
			// kernels, or both packed.
			exactT := c.r%4 == 0 && (c.n <= loraFusedTRowsBF16 || c.n > loraFusedTRows && gemmSmallWins(c.n, c.in, gemmNR))
			y := make([]uint16, c.n*c.out)
			if !ForwardBF16(y, xb, w, a, b, c.n, c.r, 0.75) {
				if useBF16DP {
					t.Errorf("%s: ForwardBF16 refused", what)
				}
				continue
			}
			want, mag := forwardRef(xv, wv, a, b, 0.75, c.n, c.in, c.out, c.r)
			near(what+": ForwardBF16", y, want, mag, c.in+c.r+3)
			yf := nanFill(c.n * c.out)
			yw := make([]uint16, len(yf))
			if !guard && exactT {
				Forward(yf, xv, w, a, b, c.n, c.r, 0.75)
				narrowHalf(BF16, yw, yf)
				same(what+": ForwardBF16 against Forward", y, yw)
			}
			if !ProductBF16(y, xb, w, c.n) {
				t.Errorf("%s: ProductBF16 refused", what)
				continue
			}
			want, mag = refNT(xv, wv, c.n, c.out, c.in)
			near(what+": ProductBF16", y, want, mag, c.in)
			if !guard {
				Product(yf, xv, w, c.n)
				narrowHalf(BF16, yw, yf)
				same(what+": ProductBF16 against Product", y, yw)
			}
		}
	}
	check("", false)
	check("guarded", true)
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	check("GOMAXPROCS 7", false)

	// A subnormal x, in either panel of rows, whole steps or the rest:
	// refused, y untouched.
	const n, in, out = 20, 70, 40
	_, wb := randBF16(rng, out*in, 1)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	for _, at := range []int{5*in + 7, 15*in + 66, n*in - 1} {
		_, xb := randBF16(rng, n*in, 1)
		xb[at] = 0x8001
		y := make([]uint16, n*out)
		for i := range y {
			y[i] = 0x7fc1
		}
		if ForwardBF16(y, xb, w, randF32(rng, 3*in, 1), randF32(rng, out*3, 1), n, 3, 1) {
			t.Errorf("ForwardBF16 took an x holding a subnormal at %d", at)
		}
		for i, h := range y {
			if h != 0x7fc1 {
				t.Fatalf("ForwardBF16 wrote y[%d] though it refused x", i)
			}
		}
	}
}

// TestBackwardTerm runs Backward where the packed product of dx = dy·W
// adds dx += U·A in its goroutines (newGradXTerm): dx's columns over
// several blocks of gemmNC with a partial panel of 32 at the end, rows
// below and past a panel of 8 and gemmInPlaceRows (W's panels read in
// place), ranks below and past gemmKC; every W dtype (NF4 from 32 rows),
// and a BF16 W with bf16 dy (the bf16 product of dx, which adds the term
// the same way); then with GOMAXPROCS 7.
func TestBackwardTerm(t *testing.T) {
	rng := rand.New(rand.NewPCG(219, 220))
	shapes := []struct{ n, in, out, r int }{
		{gemmMinRows, 600, 40, 16}, {23, 777, 70, 5}, {gemmKC + 1, 530, 33, 136}, {2 * gemmMinRows, 300, 64, 3},
	}
	run := func() {
		for _, c := range shapes {
			for _, dt := range []Type{F32, F16, BF16, NF4} {
				checkBackward(t, rng, dt, c.n, c.in, c.out, c.r)
			}
			// dy of bfloat16 values: dx by the bf16 product where the
			// processor has it.
			w, wv := testW(rng, BF16, c.out, c.in)
			x, _ := randBF16(rng, c.n*c.in, 1)
			g, _ := randBF16(rng, c.n*c.out, 1)
			checkBackwardXG(t, rng, w, wv, x, g, c.n, c.r)
		}
	}
	run()
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	run()
}
