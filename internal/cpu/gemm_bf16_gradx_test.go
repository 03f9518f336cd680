package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// checkBF16GradX runs bf16GradX on a BF16 W (out×in) and a dy of n rows of
// bfloat16 values against the float64 reference dx = dy·W, where the level
// has the bf16 instructions (it must take dy), and checks that nothing past
// dx's end is written. It returns the number of blocks guarded.
func checkBF16GradX(t *testing.T, rng *rand.Rand, n, out, in int) {
	t.Helper()
	wv, wb := randBF16(rng, out*in, 1)
	dy, _ := randBF16(rng, n*out, 1)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	want, mag := refNN(dy, wv, n, in, out)
	what := fmt.Sprintf("n=%d out=%d in=%d", n, out, in)
	dxb := nanFill((n+1)*in + 16)
	dx := dxb[:n*in]
	if !bf16Wins(n, in, out) {
		t.Fatalf("%s: not a shape of the bf16 product", what)
	}
	if !bf16GradX(dx, dy, w, n) {
		t.Fatalf("%s: bf16GradX refused dy of bfloat16 values", what)
	}
	within(t, "bf16GradX "+what, dx, want, mag, accTol(out))
	for i, v := range dxb[n*in:] {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("%s: written past dx's end, at %d after it", what, i)
		}
	}
}

// TestBF16GradX runs dx = dy·W on the bf16 instructions for batches from
// 16 to 70 (every remainder of dy's tiles of 16 and pairs of tiles), rows
// of W (dy's columns) below, at and past a step of 32 and a packed chunk
// of bfGXSteps steps, columns of W with every remainder of a panel of 16
// and past blocks of bfGXCols; and Backward on it, against the float64
// reference.
func TestBF16GradX(t *testing.T) {
	if !useBF16DP {
		t.Skip("no bf16 instructions at this level")
	}
	rng := rand.New(rand.NewPCG(301, 302))
	for n := bfMinRows; n <= 70; n += 3 {
		checkBF16GradX(t, rng, n, []int{16, 17, 31, 32, 33, 63, 95}[n%7], 16+n%35)
	}
	for _, sh := range [][3]int{{16, 64, 64}, {17, 32*bfGXSteps + 5, 545}, {33, 2 * 32 * bfGXSteps, bfGXCols},
		{48, 3*32*bfGXSteps + 31, bfGXCols + 1}, {70, 97, 3*bfGXCols + 17}, {31, 1000, 33}} {
		checkBF16GradX(t, rng, sh[0], sh[1], sh[2])
	}
}

// TestBF16GradXSplit runs it with GOMAXPROCS 7, above the size at which
// blocks of W's columns are split among goroutines (and dy's tiles packed
// by several).
func TestBF16GradXSplit(t *testing.T) {
	if !useBF16DP {
		t.Skip("no bf16 instructions at this level")
	}
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(303, 304))
	checkBF16GradX(t, rng, 150, 77, 9*bfGXCols+21)
	checkBF16GradX(t, rng, 37, 300, 2*bfGXCols)
}

// TestBF16GradXGuard checks that values the instructions would flush take
// an exact path: a block of W's columns holding a subnormal or a tiny
// value is computed by gradXColsGo (and counted), a dy holding a
// subnormal, or a value that is not bfloat16, is refused (bf16GradX
// reports false, dx untouched); values at the bound take the instructions.
func TestBF16GradXGuard(t *testing.T) {
	if !useBF16DP {
		t.Skip("no bf16 instructions at this level")
	}
	rng := rand.New(rand.NewPCG(305, 306))
	const n, out, in = 20, 45, 3*bfGXCols + 5
	for _, c := range []struct {
		what    string
		wv, dv  float32 // placed at W[3, j] and dy[i, 3]
		guarded int64   // blocks of W's columns sent to gradXColsGo; −1: dy refused
	}{
		{"subnormal w", 0x1p-130, 1, 1},
		{"tiny product", 0x1p-70, 0x1p-70, 1},
		{"at the bound", 0x1p-52, 0x1p-51, 0},
		{"a normal w below the bound", 0x1p-80, 0x1p-24, 1},
		{"subnormal dy", 0x1p10, 0x1p-129, -1},
	} {
		wv, wb := randBF16(rng, out*in, 1)
		dy, _ := randBF16(rng, n*out, 1)
		// Column j = bfGXCols+1 of W: zero but for wv in row 3, so that
		// dx[:, j] = dv·wv exactly; every row of dy holds dv at column 3.
		j := bfGXCols + 1
		for o := range out {
			wv[o*in+j], wb[o*in+j] = 0, 0
		}
		wb[3*in+j] = narrow1(BF16, c.wv)
		wv[3*in+j] = widen1(BF16, wb[3*in+j])
		for i := range n {
			dy[i*out+3] = widen1(BF16, narrow1(BF16, c.dv))
		}
		w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
		dx := nanFill(n * in)
		g := bf16GradXGuarded.Load()
		took := bf16GradX(dx, dy, w, n)
		if c.guarded < 0 {
			if took || !math.IsNaN(float64(dx[0])) {
				t.Errorf("%s: bf16GradX took dy (or wrote dx) though it holds a subnormal", c.what)
			}
			continue
		}
		if !took {
			t.Fatalf("%s: bf16GradX refused dy", c.what)
		}
		if got := bf16GradXGuarded.Load() - g; got != c.guarded {
			t.Errorf("%s: %d blocks guarded, want %d", c.what, got, c.guarded)
		}
		want, mag := refNN(dy, wv, n, in, out)
		within(t, c.what, dx, want, mag, accTol(out))
		exact := float32(float64(wv[3*in+j]) * float64(dy[3]))
		for i := range n {
			if dx[i*in+j] != exact || exact == 0 {
				t.Errorf("%s: dx[%d, %d] = %v, want %v", c.what, i, j, dx[i*in+j], exact)
				break
			}
		}
	}
	// A dy not all of bfloat16 values.
	_, wb := randBF16(rng, out*in, 1)
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
	for _, at := range []int{0, 63, n*out - 1} {
		dy, _ := randBF16(rng, n*out, 1)
		dy[at] = math.Nextafter32(dy[at], 10)
		dx := nanFill(n * in)
		if bf16GradX(dx, dy, w, n) || !math.IsNaN(float64(dx[0])) {
			t.Errorf("bf16GradX took dy with a float32 value at %d", at)
		}
	}
}

// TestPackPairs checks the packing of W's columns in pairs of rows
// (packPairsRows for the whole steps and panels) against packPairsBF16's
// definition, written out here.
func TestPackPairs(t *testing.T) {
	rng := rand.New(rand.NewPCG(307, 308))
	for _, sh := range [][4]int{{64, 48, 0, 2}, {100, 40, 1, 2}, {37, 33, 0, 2}, {300, 70, 3, 5}} {
		out, in, s0, k32 := sh[0], sh[1], sh[2], sh[3]
		_, wb := randBF16(rng, out*in, 1)
		w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb}
		for _, j0 := range []int{0, 16, in - 17} {
			j1 := in
			nt := round16(j1-j0) / 16
			got := make([]uint16, nt*k32*512)
			packPairsBF16(got, &w, s0, k32, j0, j1)
			for tj := range nt {
				for s := range k32 {
					for p := range 16 {
						for r := range 16 {
							for e := range 2 {
								var want uint16
								o, j := 32*(s0+s)+2*p+e, j0+16*tj+r
								if o < out && j < j1 {
									want = wb[o*in+j]
								}
								if g := got[tj*k32*512+s*512+32*p+2*r+e]; g != want {
									t.Fatalf("out=%d in=%d s0=%d k32=%d j0=%d: panel %d step %d pair %d column %d half %d = %#x, want %#x",
										out, in, s0, k32, j0, tj, s, p, r, e, g, want)
								}
							}
						}
					}
				}
			}
		}
	}
}
