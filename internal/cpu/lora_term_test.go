package cpu

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
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

// TestForwardBF16 runs ForwardBF16 (x and y as BF16 patterns) against
// Forward on x widened, y rounded afterwards: the same sums, so the same
// patterns bit for bit, on rows of x below and past loraFusedTRows and
// bfNC, odd in (packed element by element) and even (packT16), blocks of
// W guarded by bf16Safe, and with GOMAXPROCS 7. ProductBF16 likewise
// against Product. Where a sum runs through gonum's Sdot (T's last r mod 4
// columns, the guarded blocks), its float32 result depends on where x
// lies in memory (its alignment), and ForwardBF16 reads a widened copy of
// x there: those sums may differ in their last bit, so y's patterns by one
// unit of bfloat16 after rounding; elsewhere they are equal. An x holding
// a subnormal is refused, y untouched.
func TestForwardBF16(t *testing.T) {
	rng := rand.New(rand.NewPCG(215, 216))
	shapes := []struct{ n, in, out, r int }{
		{gemmMinRows, 64, 301, 5}, {17, 77, 97, 16}, {loraFusedTRows, 96, 290, 20},
		{loraFusedTRows + 1, 40, 333, 33}, {bfNC + 9, 64, 300, 16}, {31, 33, 2*bfMC + 40, 1},
	}
	check := func(tag string, guard bool) {
		for _, c := range shapes {
			_, wb := randBF16(rng, c.out*c.in, 1)
			if guard {
				wb[(c.out/2)*c.in+1] = narrow1(BF16, 0x1p-130)
			}
			w := Mat{Rows: c.out, Cols: c.in, Type: BF16, Bits: wb}
			xv, xb := randBF16(rng, c.n*c.in, 1)
			a, b := randF32(rng, c.r*c.in, 1), randF32(rng, c.out*c.r, 1)
			what := fmt.Sprintf("%s n=%d in=%d out=%d r=%d", tag, c.n, c.in, c.out, c.r)
			yf := nanFill(c.n * c.out)
			Forward(yf, xv, w, a, b, c.n, c.r, 0.75)
			want := make([]uint16, len(yf))
			narrowHalf(BF16, want, yf)
			y := make([]uint16, len(yf))
			if !ForwardBF16(y, xb, w, a, b, c.n, c.r, 0.75) {
				if useBF16DP {
					t.Errorf("%s: ForwardBF16 refused", what)
				}
				continue
			}
			ulps := 0
			if guard || c.r%4 != 0 {
				ulps = 1
			}
			for i := range y {
				if d := int(y[i]) - int(want[i]); y[i]>>15 != want[i]>>15 || d > ulps || -d > ulps {
					t.Errorf("%s: ForwardBF16 y[%d] = %#04x, want %#04x (Forward) within %d units", what, i, y[i], want[i], ulps)
					break
				}
			}
			Product(yf, xv, w, c.n)
			narrowHalf(BF16, want, yf)
			if !ProductBF16(y, xb, w, c.n) {
				t.Errorf("%s: ProductBF16 refused", what)
				continue
			}
			for i := range y {
				if d := int(y[i]) - int(want[i]); y[i]>>15 != want[i]>>15 || d > b2i(guard) || -d > b2i(guard) {
					t.Errorf("%s: ProductBF16 y[%d] = %#04x, want %#04x (Product)", what, i, y[i], want[i])
					break
				}
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
