package lora

// Merge and Unmerge on a half W: exactly the float32 result rounded once,
// within the float64 oracle's bound, and refused when a result would not
// be finite (see dtype_test.go).

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// dtSpread returns n values, normal with a scale that varies over 2^±4, so
// that W's elements fall in several binades.
func dtSpread(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Ldexp(rng.NormFloat64(), rng.IntN(9)-4))
	}
	return v
}

// TestDTypeMerge merges into a half W and checks, per element:
//
//   - exactly round(float32 result): a layer on an F32 copy of W (the stored
//     values, widened) merged on the same backend gives the float32 result of
//     the same arithmetic; rounded by the model to W's dtype, it must equal
//     the half W's bits. Unmerge likewise, through a layer of scale −s on an
//     F32 copy of the merged W (Unmerge adds c = −s).
//   - against float64: the float32 result is within γ(r+2) of |W| + |s|·Σ|B||A|
//     (the rounding of s·B[i,k], r products and sums, and the add, doubled
//     as in reftest.Gamma), then rounded once to W's dtype (reftest.Tol).
//   - Merge then Unmerge: within one ulp of W's dtype at max(|W|, |s·B·A|),
//     the contract; 100 cycles: within two. The ulp is taken at that
//     maximum grown by the float32 error of the update, γ(r+2)·|s|·Σ|B||A|
//     (the float32 update may exceed the float64 one by as much), and the
//     bound gets the float32 error of both operations, 2·γ(r+2) of the
//     magnitudes, for the float32 sums that are not on W's grid.
func TestDTypeMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	shapes := []reftest.Shape{dtShape(1, 45, 37, 5), dtShape(1, 130, 67, 1), dtShape(1, 130, 67, 5), dtShape(1, 120, 67, 5)}
	if !dtEmulated() {
		shapes = append(shapes, dtShape(1, 301, 450, 5))
	}
	for _, wdt := range []DType{F16, BF16} {
		f := dtFormatOf(wdt)
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%v/%v", wdt, sh), func(t *testing.T) {
				const s = 3.7 // a large update makes the roundings show
				out, in, r := sh.Out, sh.In, sh.R
				w, w0 := dtOperand(t, wdt, out, in, dtSpread(rng, out*in))
				adata, bdata := reftest.Normal(rng, r*in, 1/math.Sqrt(float64(in))), reftest.Normal(rng, out*r, 1)
				a, av := dtOperand(t, F32, r, in, adata)
				b, bv := dtOperand(t, F32, out, r, bdata)
				l, err := NewLayerFrom(w, a, b, s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Free)
				// The F32 twin: same stored W, same A and B.
				w32, _ := dtOperand(t, F32, out, in, dtRead(t, w))
				a2, _ := dtOperand(t, F32, r, in, adata)
				b2, _ := dtOperand(t, F32, out, r, bdata)
				l32, err := NewLayerFrom(w32, a2, b2, s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l32.Free)

				if err := l.Merge(); err != nil {
					t.Fatalf("Merge: %v", err)
				}
				if !l.Merged() {
					t.Fatal("Merged() is false after Merge")
				}
				if err := l32.Merge(); err != nil {
					t.Fatalf("Merge of the F32 twin: %v", err)
				}
				merged := dtReadBits(t, w)
				dtSameAsRounded(t, "Merge", f, merged, dtRead(t, w32))
				want, delta, mag := reftest.Merge(out, in, r, s, w0, av, bv)
				reftest.Rounded(t, "merged W", dtFormatOf(wdt), dtRead(t, w), want, mag, reftest.Gamma(r+2))

				// Unmerge, and its exact twin: scale −s on an F32 copy of the merged W.
				wm32, _ := dtOperand(t, F32, out, in, dtRead(t, w))
				a3, _ := dtOperand(t, F32, r, in, adata)
				b3, _ := dtOperand(t, F32, out, r, bdata)
				lu, err := NewLayerFrom(wm32, a3, b3, -s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(lu.Free)
				if err := l.Unmerge(); err != nil {
					t.Fatalf("Unmerge: %v", err)
				}
				if l.Merged() {
					t.Fatal("Merged() is true after Unmerge")
				}
				if err := lu.Merge(); err != nil {
					t.Fatal(err)
				}
				dtSameAsRounded(t, "Unmerge", f, dtReadBits(t, w), dtRead(t, wm32))

				dtRestored(t, "after Merge, Unmerge", f, dtRead(t, w), w0, delta, mag, sh.R, 1)
				for range 99 {
					if err := l.Merge(); err != nil {
						t.Fatalf("Merge: %v", err)
					}
					if err := l.Unmerge(); err != nil {
						t.Fatalf("Unmerge: %v", err)
					}
				}
				worst := dtRestored(t, "after 100 cycles", f, dtRead(t, w), w0, delta, mag, sh.R, 2)
				t.Logf("%v: after 100 cycles, the largest change is %.2f ulps of max(|W|, |s·B·A|)", wdt, worst)
			})
		}
	}
}

// dtSameAsRounded fails unless got (a half W's bits) is the model's rounding
// of the float32 results r32, element by element.
func dtSameAsRounded(t *testing.T, what string, f reftest.Format, got []uint16, r32 []float32) {
	t.Helper()
	bad := 0
	for i, v := range r32 {
		if want := f.Encode(f.Round(float64(v))); got[i] != want {
			if bad < 3 {
				t.Errorf("%s: W[%d] is %#04x, the float32 result %g rounds to %#04x", what, i, got[i], v, want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements are not the float32 result rounded once", what, bad, len(got))
	}
}

// dtRestored fails unless every element of got is within maxULP ulps (of the
// format, at max(|W|, |s·B·A|) grown by the update's float32 error) of w0,
// plus the float32 error of the two operations (see TestDTypeMerge), and
// returns the largest change in those ulps.
func dtRestored(t *testing.T, what string, f reftest.Format, got []float32, w0, delta, mag []float64, r int, maxULP float64) float64 {
	t.Helper()
	worst := 0.0
	g := reftest.Gamma(r + 2)
	for i, v := range got {
		dmag := mag[i] - math.Abs(w0[i]) // |s|·Σ|B||A|
		u := f.ULP(math.Max(math.Abs(w0[i]), math.Abs(delta[i])+g*dmag))
		e := math.Abs(float64(v) - w0[i])
		worst = math.Max(worst, e/u)
		if !(e <= maxULP*u+2*g*mag[i]) {
			t.Errorf("%s: W[%d] = %g, was %g, update %g: %.2f ulps off, bound %g", what, i, v, w0[i], delta[i], e/u, maxULP)
			return worst
		}
	}
	return worst
}

// dtTinyLayer returns a layer on a 3×5 W of dt holding w, with rank 1,
// A = e₂ (only column 2 nonzero, 1) and B = b, scale 1: W[i,2] gets + b[i]
// exactly (b[i]·1 is exact in float32), the other elements + 0.
func dtTinyLayer(t *testing.T, dt DType, w []float32, b [3]float32) (*Layer, *Matrix) {
	t.Helper()
	wm, _ := dtOperand(t, dt, 3, 5, w)
	a, _ := dtOperand(t, F32, 1, 5, []float32{0, 0, 1, 0, 0})
	bm, _ := dtOperand(t, F32, 3, 1, b[:])
	l, err := NewLayerFrom(wm, a, bm, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Free)
	return l, wm
}

// TestDTypeMergeOverflow: Merge refuses (ErrNonFinite, W bit-identical, the
// layer not merged) an update whose float32 result is finite but rounds to
// ±Inf in W's dtype, and the same update on an F32 W succeeds. Both ways of
// proving the result finite run: the bound (max|W| + |s|·max_i Σ|B|·max|A|,
// against W's dtype's largest finite) and, when the bound is too coarse, the
// exact check of every element; one element just below the limit with a
// large bound elsewhere goes through the exact check and is accepted.
func TestDTypeMergeOverflow(t *testing.T) {
	one := func(v float32) []float32 { // a 3×5 W of ones with W[1,2] = v
		w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
		w[7] = v
		return w
	}
	f16max, bf16max := float32(65504), float32(0x1.fep127)
	for _, c := range []struct {
		what   string
		dt     DType
		w      []float32
		b      [3]float32
		refuse bool
		want   uint16 // W[1,2] after Merge when accepted
	}{
		// F16: 65504 + 16 = 65520 is exact in float32 and the tie that rounds
		// to +Inf in F16; 65504 + 15 rounds back to 65504 (exact check, the
		// bound being above 65504); −65504 − 16 to −Inf.
		{"F16 max + 16 overflows", F16, one(f16max), [3]float32{0, 16, 0}, true, 0},
		{"F16 −max − 16 overflows", F16, one(-f16max), [3]float32{0, -16, 0}, true, 0},
		{"F16 max + 15.99 rounds to max", F16, one(f16max), [3]float32{0, 15.99, 0}, false, 0x7BFF},
		{"F16 max − 16 with a large bound", F16, one(f16max), [3]float32{1000, -16, 0}, false, 0x7BFE},
		{"F16 max + 0 with a large update elsewhere", F16, one(f16max), [3]float32{30000, 0, 0}, false, 0x7BFF},
		{"F16 large update elsewhere overflows", F16, one(f16max), [3]float32{65520 - 1, 0, 0}, true, 0},
		// The bound proves it: max|W| = 60000, update 100.
		{"F16 bound proves finite", F16, one(60000), [3]float32{0, 100, 50}, false, 0x7B56},
		// BF16: 0x1.fep127 + 2¹¹⁹ = 0x1.ffp127, a float32, rounds to +Inf;
		// + 2¹¹⁸ rounds back to the largest finite.
		{"BF16 max + half ulp overflows", BF16, one(bf16max), [3]float32{0, 0x1p119, 0}, true, 0},
		{"BF16 −max − half ulp overflows", BF16, one(-bf16max), [3]float32{0, -0x1p119, 0}, true, 0},
		{"BF16 max + quarter ulp rounds to max", BF16, one(bf16max), [3]float32{0, 0x1p118, 0}, false, 0x7F7F},
		{"BF16 bound proves finite", BF16, one(0x1p126), [3]float32{0, 0x1p120, 0}, false, 0x7E82},
	} {
		t.Run(c.what, func(t *testing.T) {
			l, w := dtTinyLayer(t, c.dt, c.w, c.b)
			before := dtReadBits(t, w)
			err := l.Merge()
			if c.refuse {
				dtWantErr(t, "Merge", err, ErrNonFinite, "Merge")
				if got := dtReadBits(t, w); !dtEqual16(got, before) {
					t.Errorf("a refused Merge changed W: %#04x, was %#04x", got, before)
				}
				if l.Merged() {
					t.Error("Merged() is true after a refused Merge")
				}
				// The same update on an F32 W is finite: accepted.
				l32, w32 := dtTinyLayer(t, F32, c.w, c.b)
				if err := l32.Merge(); err != nil {
					t.Errorf("the same Merge on an F32 W: %v", err)
				}
				if got, want := dtRead(t, w32)[7], c.w[7]+c.b[1]; got != want {
					t.Errorf("F32 W[1,2] = %g after Merge, want %g", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			got := dtReadBits(t, w)
			if got[7] != c.want {
				t.Errorf("W[1,2] is %#04x after Merge, want %#04x", got[7], c.want)
			}
			// Every element: the model's rounding of w + b·1 (one rounding
			// from float64; the float32 sum's extra rounding, in the 15.99
			// case only, is far from a tie of W's dtype).
			f := dtFormatOf(c.dt)
			for i, v := range c.w {
				want := f.Encode(f.Round(float64(v) + float64(c.b[i/5])*float64(dtBtoi(i%5 == 2))))
				if got[i] != want {
					t.Errorf("W[%d] is %#04x after Merge, want %#04x", i, got[i], want)
				}
			}
		})
	}
}

// TestDTypeMergeOverflowLarge: on a W of 450 rows (several parts for the
// backends' passes over W), the only element near F16's limit, 65504, is
// the one where the update's only nonzero element lands: at the very end,
// and inside a row of a W whose rows are whole 16-byte vectors (the
// kernels' vector path). 65504 + 16 is refused, W bit-identical; 65504 − 16
// is accepted (65488, a tie, rounds to the even 65472, 0x7BFE).
func TestDTypeMergeOverflowLarge(t *testing.T) {
	const out = 450
	for _, pos := range []struct{ in, row, col int }{{301, out - 1, 300}, {304, 300, 16}, {304, 7, 303}} {
		for _, c := range []struct {
			b      float32
			refuse bool
		}{{16, true}, {-16, false}} {
			in := pos.in
			what := fmt.Sprintf("450×%d, W[%d,%d] = 65504, update %g", in, pos.row, pos.col, c.b)
			wd := make([]float32, out*in)
			for i := range wd {
				wd[i] = float32(i%7) - 3
			}
			at := pos.row*in + pos.col
			wd[at] = 65504
			w, _ := dtOperand(t, F16, out, in, wd)
			ad := make([]float32, in)
			ad[pos.col] = 1
			bd := make([]float32, out)
			bd[pos.row] = c.b
			a, _ := dtOperand(t, F32, 1, in, ad)
			b, _ := dtOperand(t, F32, out, 1, bd)
			l, err := NewLayerFrom(w, a, b, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Free)
			before := dtReadBits(t, w)
			err = l.Merge()
			got := dtReadBits(t, w)
			if c.refuse {
				dtWantErr(t, what, err, ErrNonFinite, "Merge")
				if !dtEqual16(got, before) {
					t.Errorf("%s: a refused Merge changed W", what)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Merge: %v", what, err)
			}
			want := append([]uint16(nil), before...)
			want[at] = 0x7BFE
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: W[%d] is %#04x after Merge, want %#04x", what, i, got[i], want[i])
				}
			}
		}
	}
}

// TestDTypeMergeNonFiniteW: a half W holding ±Inf or a NaN (any payload,
// signalling ones included) in its last element is refused by Merge with
// ErrNonFinite, W bit-identical, even when the update there is zero.
func TestDTypeMergeNonFiniteW(t *testing.T) {
	const out, in = 450, 301
	for dt, pats := range map[DType][]uint16{
		F16:  {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x7FFF},
		BF16: {0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0xFFFF},
	} {
		for _, p := range pats {
			w := dtNew(t, dt, out, in)
			bits := make([]uint16, out*in)
			for i := range bits {
				bits[i] = 0x3C00 // 1 in F16, 1.171875 in BF16
			}
			bits[out*in-1] = p
			if err := w.WriteBits(bits); err != nil {
				t.Fatal(err)
			}
			a, _ := dtOperand(t, F32, 1, in, reftest.Normal(rand.New(rand.NewPCG(uint64(p), 1)), in, 0.1))
			b, _ := dtOperand(t, F32, out, 1, make([]float32, out))
			l, err := NewLayerFrom(w, a, b, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Free)
			dtWantErr(t, fmt.Sprintf("%v: Merge of a W holding %#04x", dt, p), l.Merge(), ErrNonFinite, "Merge")
			if got := dtReadBits(t, w); !dtEqual16(got, bits) {
				t.Errorf("%v: a refused Merge of a W holding %#04x changed W", dt, p)
			}
			if l.Merged() {
				t.Errorf("%v: Merged() is true after a refused Merge", dt)
			}
		}
	}
}

func dtBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDTypeMergeBoundFollowsWrites: Merge's cached bound on max|W| must not
// outlive a write. After a Merge/Unmerge cycle on small values (the bound
// known and small), W[1,2] is set to F16's largest finite by WriteBits (or
// Write); the next Merge, adding 16 there, must be refused, not written as
// +Inf through a stale bound. Likewise Unmerge after a write into a merged W.
func TestDTypeMergeBoundFollowsWrites(t *testing.T) {
	for _, how := range []string{"WriteBits", "Write"} {
		t.Run(how, func(t *testing.T) {
			w0 := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
			l, w := dtTinyLayer(t, F16, w0, [3]float32{0, 16, 0})
			for range 2 {
				if err := l.Merge(); err != nil {
					t.Fatal(err)
				}
				if err := l.Unmerge(); err != nil {
					t.Fatal(err)
				}
			}
			set := func(v float32, bits uint16) {
				var err error
				if how == "WriteBits" {
					cur := dtReadBits(t, w)
					cur[7] = bits
					err = w.WriteBits(cur)
				} else {
					cur := dtRead(t, w)
					cur[7] = v
					err = w.Write(cur)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			set(65504, 0x7BFF)
			before := dtReadBits(t, w)
			dtWantErr(t, "Merge after "+how, l.Merge(), ErrNonFinite, "Merge")
			if got := dtReadBits(t, w); !dtEqual16(got, before) {
				t.Errorf("a refused Merge changed W: %#04x, was %#04x", got, before)
			}
			if l.Merged() {
				t.Error("Merged() is true after a refused Merge")
			}
			// Unmerge: merge on ones, then write −65504 where −16 goes.
			set(1, 0x3C00)
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			set(-65504, 0xFBFF)
			before = dtReadBits(t, w)
			dtWantErr(t, "Unmerge after "+how, l.Unmerge(), ErrNonFinite, "Unmerge")
			if got := dtReadBits(t, w); !dtEqual16(got, before) {
				t.Errorf("a refused Unmerge changed W: %#04x, was %#04x", got, before)
			}
			if !l.Merged() {
				t.Error("Merged() is false after a refused Unmerge")
			}
		})
	}
}
