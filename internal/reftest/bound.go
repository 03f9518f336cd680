package reftest

import (
	"math"
	"testing"
)

// U32 is the unit roundoff of float32, 2⁻²⁴: the largest relative error of
// one rounding to nearest.
const U32 = 0x1p-24

// Gamma bounds the relative error, against the sum of the magnitudes of
// its terms, of a float32 sum of k products: Higham's γₖ = k·u/(1−k·u) with
// u = U32, doubled to leave room for fused multiply-adds and for sums
// reordered into blocks, as the kernels compute them.
func Gamma(k int) float64 {
	return 2 * float64(k) * U32 / (1 - float64(k)*U32)
}

// Tol is the bound on |got − want| for an element computed in float32 with
// error at most e32 and then rounded once to the format f: e32 plus half an
// ulp of f at |want| + e32, an upper bound on the float32 result's
// magnitude (the float32 result may lie in the binade above want's). For a
// float32 output the half ulp is already inside e32 (γₖ counts the final
// rounding); adding it again only loosens the bound by one rounding.
func Tol(f Format, want, e32 float64) float64 {
	return e32 + 0.5*f.ULP(math.Abs(want)+e32)
}

// Check fails t unless |got[i] − want[i]| ≤ bound(i) for every i (a NaN
// fails), naming the first three elements out of bound and how many there
// are.
func Check(t testing.TB, what string, got []float32, want []float64, bound func(i int) float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d elements, the reference has %d", what, len(got), len(want))
		return
	}
	bad := 0
	for i := range got {
		b := bound(i)
		if d := Abs(float64(got[i]) - want[i]); !(d <= b) {
			if bad < 3 {
				t.Errorf("%s[%d] = %g, want %g (error %.3g, bound %.3g)", what, i, got[i], want[i], d, b)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements out of bound", what, bad, len(got))
	}
}

// Close fails t unless |got[i] − want[i]| ≤ tol·mag[i] + 10⁻³⁰ for every i:
// a float32 result within the relative bound tol (Gamma(k), typically) of
// the magnitudes of its terms. The 10⁻³⁰, far below every value compared,
// spares a term that underflows in float32 and not in float64.
func Close(t testing.TB, what string, got []float32, want, mag []float64, tol float64) {
	t.Helper()
	Check(t, what, got, want, func(i int) float64 { return tol*mag[i] + 1e-30 })
}

// Rounded fails t unless |got[i] − want[i]| ≤ Tol(f, want[i], gam·mag[i])
// for every i: a result computed in float32 within gam of the magnitudes of
// its terms, then rounded once to f.
func Rounded(t testing.TB, what string, f Format, got []float32, want, mag []float64, gam float64) {
	t.Helper()
	Check(t, what+" ("+f.Name+")", got, want, func(i int) float64 { return Tol(f, want[i], gam*mag[i]) })
}

// Abs is math.Abs, |v|, as max(v, −v), for the oracles' and the checks'
// loops, which take it once per term: math.Abs goes through
// math.Float64bits, a conversion by unsafe.Pointer that the race build's
// pointer checks (checkptr) instrument at every call, several times the
// cost of the product it measures.
func Abs(v float64) float64 { return max(v, -v) }
