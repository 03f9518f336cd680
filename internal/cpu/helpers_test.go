package cpu

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/half"
)

// Tests of the CPU kernels: every path (the assembly kernels where the
// processor has them, their portable forms, the drivers' blocks, tails and
// splits among goroutines) against float64 references built from the
// operands as stored, or, for the rank-r updates of a half W, against the
// float32 path bit for bit. Run with -tags purego too: the portable forms
// of the kernels (kernels_other.go) then take the place of the assembly.

// unit is float32's unit roundoff, 2⁻²⁴.
const unit = 0x1p-24

// accTol returns the relative bound, on Σ|terms|, of a float32 sum of k
// products formed in any order (γ_k = k·u/(1−k·u)), doubled to cover the
// final rounding and the float64 reference's own error.
func accTol(k int) float64 { return 2 * float64(k+1) * unit / (1 - float64(k+1)*unit) }

var halfTypes = []Type{F16, BF16}

// halfW is a random W of a half dtype: its patterns and their values.
type halfW struct {
	dt         Type
	rows, cols int
	bits       []uint16
	val        []float32 // the widened patterns
}

func newHalfW(rng *rand.Rand, dt Type, rows, cols int, scale float64) halfW {
	h := halfW{dt: dt, rows: rows, cols: cols, bits: make([]uint16, rows*cols), val: make([]float32, rows*cols)}
	for i := range h.bits {
		h.bits[i] = narrow1(dt, float32(rng.NormFloat64()*scale))
		h.val[i] = widen1(dt, h.bits[i])
	}
	return h
}

func narrow1(dt Type, v float32) uint16 {
	if dt == F16 {
		return half.Float32ToF16(v)
	}
	return half.Float32ToBF16(v)
}

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * scale)
	}
	return s
}

// refNT returns c = a·bᵀ (a m×k, b nc×k) in float64 and Σ|a||b| per element.
func refNT(a, b []float32, m, nc, k int) (c, mag []float64) {
	c, mag = make([]float64, m*nc), make([]float64, m*nc)
	for i := range m {
		for j := range nc {
			for p := range k {
				v := float64(a[i*k+p]) * float64(b[j*k+p])
				c[i*nc+j] += v
				mag[i*nc+j] += math.Abs(v)
			}
		}
	}
	return c, mag
}

// refNN returns c = a·b (a m×k, b k×nc) in float64 and Σ|a||b| per element.
func refNN(a, b []float32, m, nc, k int) (c, mag []float64) {
	c, mag = make([]float64, m*nc), make([]float64, m*nc)
	for i := range m {
		for p := range k {
			for j := range nc {
				v := float64(a[i*k+p]) * float64(b[p*nc+j])
				c[i*nc+j] += v
				mag[i*nc+j] += math.Abs(v)
			}
		}
	}
	return c, mag
}

func within(t testing.TB, what string, got []float32, want, mag []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i, g := range got {
		if e := math.Abs(float64(g) - want[i]); !(e <= tol*mag[i]+1e-30) {
			t.Fatalf("%s[%d] = %g, want %g (error %.3g > %.3g)", what, i, g, want[i], e, tol*mag[i])
		}
	}
}

func nanFill(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}
