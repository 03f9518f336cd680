package cpu

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestAbsMaxShares checks AbsMax's split among goroutines on any machine:
// GOMAXPROCS is set to 2, 3, 5 and 7, the size makes that many shares (at
// least 2¹⁵ float32 or 2¹⁶ 16-bit elements each) and leaves a remainder (it
// is not a multiple of the count), and the largest magnitude, negative, is
// placed in turn in the last element, the first, and the first and last of
// every share. The expected value is that element's magnitude, widened by
// reftest's model for F16 and BF16: every other element is smaller.
func TestAbsMaxShares(t *testing.T) {
	old := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(301, 302))
	for _, procs := range []int{2, 3, 5, 7} {
		runtime.GOMAXPROCS(procs)
		for _, dt := range []Type{F32, F16, BF16} {
			name := map[Type]string{F32: "f32", F16: "f16", BF16: "bf16"}[dt]
			per := 1 << 15
			if dt != F32 {
				per = 1 << 16
			}
			n := procs*per + procs - 1 // procs shares, and a remainder of procs − 1
			if n/per != procs || n%procs == 0 {
				t.Fatalf("n = %d does not make %d uneven shares", n, procs)
			}
			var at []int
			for g := range procs {
				at = append(at, g*n/procs, (g+1)*n/procs-1)
			}
			at = append(at, n-1, 0)
			var f32 []float32
			var bits []uint16
			var big float32 // the planted magnitude
			if dt == F32 {
				f32 = randF32(rng, n, 1)
				big = 64 // far above every N(0, 1) draw
			} else {
				bits = newHalfW(rng, dt, 1, n, 1).bits
				big = float32(format(dt).Decode(narrow1(dt, 64)))
			}
			for _, i := range at {
				var got float32
				if dt == F32 {
					keep := f32[i]
					f32[i] = -big
					got = AbsMax(Mat{Rows: 1, Cols: n, Type: F32, F32: f32})
					f32[i] = keep
				} else {
					keep := bits[i]
					bits[i] = narrow1(dt, -big)
					got = AbsMax(Mat{Rows: 1, Cols: n, Type: dt, Bits: bits})
					bits[i] = keep
				}
				if got != big {
					t.Errorf("GOMAXPROCS %d, %v, n = %d, −%g at %d: AbsMax %g, want %g", procs, name, n, big, i, got, big)
				}
			}
		}
	}
}
