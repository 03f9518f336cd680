package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
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
					least := amxTilesW(&w[0], ldw, &b[0], ldb, &got[0], mt, nt, k32, b2i(acc), p, p+uintptr(len(pfScratch)), 3000, 4160)
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
	if least := amxTilesW(&w[0], 64, &b[0], 512, &c[0], 2, 1, 2, 0, 0, 0, 0, 0); least != 0 {
		t.Errorf("zero tiles: least magnitude %#04x, want 0", least)
	}
}
