package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestAMXTilesW checks amxTilesW, W's tiles read in W's rows (ldw values
// a row, more than the steps read), against amxTiles on the same tiles
// packed (bit for bit: the same instructions in the same order) and the
// float64 reference, on 2 and 4 tiles of W and 1 to 5 panels of x (the
// last of an odd count alone), 1 to 3 steps, from zero and onto old sums,
// prefetching a scratch block; and its least nonzero magnitude, with the
// least value in each row of each tile in turn, at a random step and
// column, and a smaller one just past the steps in the row, which must
// not count.
func TestAMXTilesW(t *testing.T) {
	if !useAMX {
		t.Skipf("level %v: no AMX", CurrentLevel())
	}
	rng := rand.New(rand.NewPCG(195, 196))
	p := uintptr(unsafe.Pointer(&pfScratch[0]))
	for _, mt := range []int{2, 4} {
		for _, nt := range []int{1, 2, 3, 4, 5} {
			for _, k32 := range []int{1, 2, 3} {
				ldw := 32*k32 + 32
				ldb := 512*k32 + 64
				bval, b := randBF16(rng, nt*ldb, 1)
				for row := range 16 * mt {
					acc := row%2 == 1
					wval, w := randBF16(rng, 16*mt*ldw, 1)
					// The least: 2⁻¹²⁰ (pattern 0x0380) in row, a
					// subnormal past the steps in the row after it.
					at := row*ldw + rng.IntN(32*k32)
					w[at], wval[at] = 0x8380, -0x1p-120
					w[(row+1)%(16*mt)*ldw+32*k32] = 0x0001
					c0 := randF32(rng, mt*nt*256, 4)
					want, mag := tilesRef(mt, nt, k32, func(ti, o, k int) float32 { return wval[(16*ti+o)*ldw+k] }, bval, ldb, c0, acc)
					what := fmt.Sprintf("mt=%d nt=%d k32=%d least in row %d acc=%v", mt, nt, k32, row, acc)
					got := append([]float32(nil), c0...)
					least := amxTilesW(&w[0], ldw, &b[0], ldb, &got[0], mt, nt, k32, b2i(acc), p, p+uintptr(len(pfScratch)), 3000, 4160, true)
					within(t, "amxTilesW "+what, got, want, mag, accTol(32*k32+1))
					if least != 0x0380 {
						t.Errorf("%s: least magnitude %#04x, want 0x0380", what, least)
					}
					// The same tiles packed, through amxTiles.
					packed := make([]uint16, mt*k32*512)
					for ti := range mt {
						packTilesGo(packed[ti*k32*512:], w[16*ti*ldw:], ldw, k32)
					}
					plain := append([]float32(nil), c0...)
					amxTiles(&packed[0], k32*512, &b[0], ldb, &plain[0], mt, nt, k32, b2i(acc))
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(plain[i]) {
							t.Fatalf("%s: c[%d] = %v, amxTiles %v", what, i, got[i], plain[i])
						}
					}
				}
			}
		}
	}
	// Tiles all zero: no least magnitude.
	w := make([]uint16, 32*64)
	b := make([]uint16, 512)
	c := make([]float32, 2*256)
	if least := amxTilesW(&w[0], 64, &b[0], 512, &c[0], 2, 1, 2, 0, 0, 0, 0, 0, true); least != 0 {
		t.Errorf("zero tiles: least magnitude %#04x, want 0", least)
	}
}

// TestBF16LeastCache checks the bf16 product's use of Mat.Least, W read in
// place (x of 40 rows, 96 columns) in three blocks and packed in the
// last: the first call stores W's least magnitude (and a W of zeros
// none), later calls give the same sums bit for bit without finding it
// again (a stale value claiming W safe is trusted: W's subnormal is then
// flushed), a known value that is not safe sends each block through its
// own check (the block holding the subnormal to matGemvGo, exactly), and
// a call whose block broke off stores nothing.
func TestBF16LeastCache(t *testing.T) {
	if !useAMX {
		t.Skipf("level %v: no AMX", CurrentLevel())
	}
	rng := rand.New(rand.NewPCG(197, 198))
	const n, out, in = 40, 200, 96
	wv, wb := randBF16(rng, out*in, 1)
	x, _ := randBF16(rng, n*in, 1)
	var least atomic.Uint32
	w := Mat{Rows: out, Cols: in, Type: BF16, Bits: wb, Least: &least}
	want, mag := refNT(x, wv, n, out, in)
	y := nanFill(n * out)
	if !bf16Product(y, x, w, n) {
		t.Fatal("bf16Product refused x of bfloat16 values")
	}
	within(t, "first call", y, want, mag, accTol(in))
	if got, wantL := least.Load(), 1<<16|uint32(minMagBF16(wb)); got != wantL {
		t.Fatalf("after the first call Least = %#x, want %#x", got, wantL)
	}
	y2 := nanFill(n * out)
	bf16Product(y2, x, w, n)
	for i := range y {
		if math.Float32bits(y[i]) != math.Float32bits(y2[i]) {
			t.Fatalf("y[%d] = %v with Least known, %v before", i, y2[i], y[i])
		}
	}

	// Row o of W zero but for a subnormal at column 5, every row of x 1
	// there: y[:, o] = w[o, 5] exactly, unless the instructions read W.
	const o = 70 // in the second block, read in place
	for k := range in {
		wv[o*in+k], wb[o*in+k] = 0, 0
	}
	wb[o*in+5], wv[o*in+5] = 0x0003, widen1(BF16, 0x0003)
	for i := range n {
		x[i*in+5] = 1
	}
	want, mag = refNT(x, wv, n, out, in)
	for _, c := range []struct {
		what    string
		cached  uint32 // Least before the call
		guarded int64
		flushed bool
		after   uint32
	}{
		{"stale, claiming W safe", 1<<16 | 0x3f80, 0, true, 1<<16 | 0x3f80},
		{"known, not safe", 1<<16 | 0x0001, 1, false, 1<<16 | 0x0001},
		{"unknown", 0, 1, false, 0},
	} {
		least.Store(c.cached)
		g := bf16Guarded.Load()
		y := nanFill(n * out)
		bf16Product(y, x, w, n)
		if got := bf16Guarded.Load() - g; got != c.guarded {
			t.Errorf("%s: %d blocks guarded, want %d", c.what, got, c.guarded)
		}
		if flushed := y[o] == 0; flushed != c.flushed {
			t.Errorf("%s: y[0, %d] = %v, want %v", c.what, o, y[o], map[bool]float32{true: 0, false: wv[o*in+5]}[c.flushed])
		}
		if !c.flushed {
			within(t, c.what, y, want, mag, accTol(in))
		}
		if got := least.Load(); got != c.after {
			t.Errorf("%s: Least %#x after the call, want %#x", c.what, got, c.after)
		}
	}

	// A W of zeros: known to hold no nonzero value.
	least.Store(0)
	clear(wb)
	bf16Product(y, x, w, n)
	if got := least.Load(); got != 1<<16 {
		t.Errorf("W of zeros: Least %#x, want %#x", got, 1<<16)
	}
}
