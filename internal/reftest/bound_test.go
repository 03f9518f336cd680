package reftest

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// recorder is a testing.TB that keeps the errors reported to it.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestGammaTol(t *testing.T) {
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"Gamma(0)", Gamma(0), 0},
		{"Gamma(1)", Gamma(1), 2 * 0x1p-24 / (1 - 0x1p-24)},
		{"Gamma(1000)", Gamma(1000), 2000 * 0x1p-24 / (1 - 1000*0x1p-24)},
		// want 1, e32 0: half an ulp of F16 at 1.
		{"Tol(F16, 1, 0)", Tol(F16, 1, 0), 0x1p-11},
		// want just below 2 grown by e32 into the next binade: that ulp.
		{"Tol(BF16, −1.99, 0.02)", Tol(BF16, -1.99, 0.02), 0.02 + 0x1p-7},
		{"Tol(F32, 0, 0)", Tol(F32, 0, 0), 0x1p-150},
	} {
		if c.got != c.want {
			t.Errorf("%s = %g, want %g", c.what, c.got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	want := []float64{1, -2, 0, 4}
	mag := []float64{1, 2, 0, 4}
	nan := float32(math.NaN())
	for _, c := range []struct {
		what string
		run  func(t testing.TB)
		errs int // how many errors, the count included
		has  string
	}{
		{"Close, exact", func(t testing.TB) { Close(t, "v", []float32{1, -2, 0, 4}, want, mag, 0) }, 0, ""},
		{"Close, within", func(t testing.TB) { Close(t, "v", []float32{1.0001, -2.0002, 0, 4}, want, mag, 2e-4) }, 0, ""},
		{"Close, one out", func(t testing.TB) { Close(t, "v", []float32{1.001, -2, 0, 4}, want, mag, 1e-4) }, 2, "v[0] = 1.001, want 1"},
		{"Close, NaN", func(t testing.TB) { Close(t, "v", []float32{1, nan, 0, 4}, want, mag, 1) }, 2, "v[1] = NaN"},
		{"Close, a short result", func(t testing.TB) { Close(t, "v", []float32{1, -2, 0}, want, mag, 1) }, 1, "3 elements, the reference has 4"},
		{"Close, all out: three named", func(t testing.TB) { Close(t, "v", []float32{2, 2, 2, 2}, want, mag, 0) }, 4, "4 of 4 elements out of bound"},
		// 1 + 2⁻¹¹ is half an ulp of F16 from 1: within Tol, not beyond.
		{"Rounded, half an ulp", func(t testing.TB) { Rounded(t, "v", F16, []float32{1 + 0x1p-11}, want[:1], mag[:1], 0) }, 0, ""},
		{"Rounded, beyond", func(t testing.TB) { Rounded(t, "v", F16, []float32{1 + 0x1p-10}, want[:1], mag[:1], 0) }, 2, "v (f16)[0]"},
		{"Check, own bound", func(t testing.TB) {
			Check(t, "v", []float32{1.5}, want[:1], func(int) float64 { return 0.5 })
		}, 0, ""},
	} {
		r := &recorder{TB: t}
		c.run(r)
		if len(r.errs) != c.errs || c.has != "" && !strings.Contains(strings.Join(r.errs, "\n"), c.has) {
			t.Errorf("%s: reported %q, want %d errors, one saying %q", c.what, r.errs, c.errs, c.has)
		}
	}
}

// TestAbs checks Abs against math.Abs, bit for bit, on zeros of both
// signs, subnormals, infinities and a NaN (a NaN for a NaN).
func TestAbs(t *testing.T) {
	for _, v := range []float64{0, math.Copysign(0, -1), 1.5, -1.5, 5e-324, -1e-310, math.MaxFloat64, -math.MaxFloat64,
		math.Inf(1), math.Inf(-1), math.NaN()} {
		got, want := Abs(v), math.Abs(v)
		if math.Float64bits(got) != math.Float64bits(want) && !(math.IsNaN(got) && math.IsNaN(want)) {
			t.Errorf("Abs(%g) = %g (%#x), math.Abs: %g (%#x)", v, got, math.Float64bits(got), want, math.Float64bits(want))
		}
	}
}
