package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// Tests of the CPU kernels: every path (the assembly kernels where the
// processor has them, their portable forms, the drivers' blocks, tails and
// splits among goroutines) against float64 references built from the
// operands as stored, or, for the rank-r updates of a half W, against the
// float32 path bit for bit. Run with -tags purego too: the portable forms
// of the kernels (kernels_other.go) then take the place of the assembly.

// accTol returns the relative bound, on Σ|terms|, of a float32 sum of k
// products formed in any order, doubled to cover the final rounding and the
// float64 reference's own error: γ_{k+1} (reftest.Gamma).
func accTol(k int) float64 { return reftest.Gamma(k + 1) }

var halfTypes = []Type{F16, BF16}

// format returns reftest's model of the 16-bit type dt.
func format(dt Type) reftest.Format {
	if dt == F16 {
		return reftest.F16
	}
	return reftest.BF16
}

// halfW is a random W of a half dtype: its patterns and their values.
type halfW struct {
	dt         Type
	rows, cols int
	bits       []uint16
	val        []float32 // the widened patterns
}

func newHalfW(rng *rand.Rand, dt Type, rows, cols int, scale float64) halfW {
	bits, val := reftest.NormalHalf(rng, format(dt), rows*cols, scale)
	return halfW{dt: dt, rows: rows, cols: cols, bits: bits, val: val}
}

// narrow1 returns the pattern of v rounded to dt, by reftest's model.
func narrow1(dt Type, v float32) uint16 { f := format(dt); return f.Encode(f.Round(float64(v))) }

// randF32 returns n normal values times scale.
func randF32(rng *rand.Rand, n int, scale float64) []float32 { return reftest.Normal(rng, n, scale) }

// refNT returns c = a·bᵀ (a m×k, b nc×k) in float64 and Σ|a||b| per element.
func refNT(a, b []float32, m, nc, k int) (c, mag []float64) {
	return reftest.Forward(reftest.Shape{N: m, In: k, Out: nc}, 0, a, b, nil, nil)
}

// refNN returns c = a·b (a m×k, b k×nc) in float64 and Σ|a||b| per element.
// (No race instrumentation: a float64 reference on one goroutine, as
// reftest's oracle.)
//
//go:norace
func refNN(a, b []float32, m, nc, k int) (c, mag []float64) {
	c, mag = make([]float64, m*nc), make([]float64, m*nc)
	for i := range m {
		for p := range k {
			for j := range nc {
				v := float64(a[i*k+p]) * float64(b[p*nc+j])
				c[i*nc+j] += v
				mag[i*nc+j] += reftest.Abs(v)
			}
		}
	}
	return c, mag
}

func within(t testing.TB, what string, got []float32, want, mag []float64, tol float64) {
	t.Helper()
	reftest.Close(t, what, got, want, mag, tol)
}

func nanFill(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// checkBlock6 checks a six-row kernel's block of C (rows ldc apart, cols
// columns, c; old its values before the call): each element within a
// float32 sum's bound of the float64 reference Σₚ a(i, p)·b(p, j) for
// p < k (plus the old value when acc), and the columns past the block
// untouched.
func checkBlock6(t *testing.T, what string, c, old []float32, ldc, cols, k int, acc bool, a func(i, p int) float32, b func(p, j int) float32) {
	t.Helper()
	for i := range 6 {
		for j := range ldc {
			got := c[i*ldc+j]
			if j >= cols {
				if got != old[i*ldc+j] {
					t.Fatalf("%s: c[%d,%d] beyond the block written", what, i, j)
				}
				continue
			}
			var want, mag float64
			if acc {
				want, mag = float64(old[i*ldc+j]), reftest.Abs(float64(old[i*ldc+j]))
			}
			for p := range k {
				v := float64(a(i, p)) * float64(b(p, j))
				want += v
				mag += reftest.Abs(v)
			}
			within(t, fmt.Sprintf("%s c[%d,%d]", what, i, j), []float32{got}, []float64{want}, []float64{mag}, accTol(k+1))
		}
	}
}
