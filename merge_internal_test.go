package lora

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// TestMergeCyclesKeepBound checks that 1000 Merge/Unmerge cycles of an
// ordinary adapter take the one-pass path every time: the bound on max|W|
// stays known (the exact check would drop it) and stays above the true
// max|W|.
func TestMergeCyclesKeepBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(85, 86))
	const out, in, r = 37, 129, 5
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	w, err := NewMatrixFrom(out, in, rnd(out*in))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewMatrixFrom(r, in, rnd(r*in))
	b, _ := NewMatrixFrom(out, r, rnd(out*r))
	defer w.Free()
	l, err := NewLayerFrom(w, a, b, 3.7)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	if w.boundKnown {
		t.Fatal("a W made by NewMatrixFrom has a known bound before any Merge")
	}
	cycles := 1000
	if Backend() == "cudaemu" {
		cycles = 50 // each cycle waits for the emulated kernels
	}
	for c := range cycles {
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		if err := l.Unmerge(); err != nil {
			t.Fatal(err)
		}
		if !w.boundKnown {
			t.Fatalf("cycle %d: the bound on max|W| was dropped: the exact check ran", c)
		}
	}
	got, err := w.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var mx float64
	for _, v := range got {
		mx = math.Max(mx, math.Abs(float64(v)))
	}
	if !(w.bound >= mx) || w.bound > 1e6*mx {
		t.Errorf("bound %g on max|W| = %g", w.bound, mx)
	}
	if err := w.Write(got); err != nil {
		t.Fatal(err)
	}
	if w.boundKnown {
		t.Error("Write kept the bound on max|W|")
	}
}

// TestMergeBoundCoversHalfRounding checks that the bound Merge leaves on a
// half-precision W covers the final rounding to W's dtype: the sum below,
// formed in float32, rounds up by almost half an ulp of its dtype.
func TestMergeBoundCoversHalfRounding(t *testing.T) {
	for _, c := range []struct {
		dt    DType
		w, s  float32
		store float32 // the stored result, written out
	}{
		// 32768 + 16.125: F16's ulp there is 32, the sum rounds up to 32800.
		{F16, 32768, 16.125, 32800},
		// 256 + 1.0078125: BF16's ulp there is 2, the sum rounds up to 258.
		{BF16, 256, 1.0078125, 258},
	} {
		w, err := NewMatrixOf(c.dt, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]float32{c.w}); err != nil {
			t.Fatal(err)
		}
		a, _ := NewMatrixFrom(1, 1, []float32{1})
		b, _ := NewMatrixFrom(1, 1, []float32{1})
		l, err := NewLayerFrom(w, a, b, c.s)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, 1)
		if err := w.Read(got); err != nil {
			t.Fatal(err)
		}
		if got[0] != c.store {
			t.Fatalf("%v: merged W = %g, want %g", c.dt, got[0], c.store)
		}
		if !w.boundKnown || w.bound < float64(got[0]) {
			t.Errorf("%v: bound %g (known %v) below the stored %g", c.dt, w.bound, w.boundKnown, got[0])
		}
		l.Free()
		w.Free()
	}
}

// TestMergeExactPathForgetsBound merges, into one W, a first layer whose
// update the bound cannot prove finite (the exact check runs and the merge
// is finite) and then a second layer whose update, on the merged W,
// overflows. The exact check must leave W's bound unknown: a W keeping its
// bound from before the first merge would let the second merge take the
// one-pass path and write ±Inf. Each dtype's values are fractions of its
// largest finite value M: W = 0.9M, the first update 0.06M twice in a row
// (a bound of 1.02M: the exact check; the result 0.96M), the second 0.06M
// (1.02M on the merged W: refused; 0.96M on the stale bound).
func TestMergeExactPathForgetsBound(t *testing.T) {
	for _, dt := range []DType{F16, BF16, F32} {
		m := maxFinite(dt)
		w, err := NewMatrixOf(dt, 2, 2)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write([]float32{float32(0.9 * m), 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
		d := float32(0.06 * m)
		a1, _ := NewMatrixFrom(2, 2, []float32{1, 0, 0, 1})
		b1, _ := NewMatrixFrom(2, 2, []float32{d, d, 0, 0})
		l1, err := NewLayerFrom(w, a1, b1, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := l1.Merge(); err != nil {
			t.Fatalf("%v: first Merge: %v", dt, err)
		}
		before, err := w.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		a2, _ := NewMatrixFrom(1, 2, []float32{1, 0})
		b2, _ := NewMatrixFrom(2, 1, []float32{d, 0})
		l2, err := NewLayerFrom(w, a2, b2, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := l2.Merge(); !errors.Is(err, ErrNonFinite) {
			t.Errorf("%v: second Merge: %v, want ErrNonFinite", dt, err)
		}
		got, err := w.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(before[i]) {
				t.Errorf("%v: W[%d] = %g after a refused Merge, was %g", dt, i, got[i], before[i])
			}
		}
		l1.Free()
		l2.Free()
		w.Free()
	}
}

// TestMergeBoundCoversSubnormals merges tiny updates into a zero F16 or BF16
// W: 0.75 of the dtype's smallest subnormal rounds up to that subnormal, a
// value above the update times any relative margin, so the bound Merge
// leaves on max|W| must add an absolute term for the subnormals. The stored
// patterns are written out: 0x0001 is the smallest subnormal of both.
func TestMergeBoundCoversSubnormals(t *testing.T) {
	for _, c := range []struct {
		dt   DType
		tiny float64 // the smallest subnormal
	}{{F16, 0x1p-24}, {BF16, 0x1p-133}} {
		for _, frac := range []float64{0.75, 1, 1.25} {
			w, err := NewMatrixOf(c.dt, 1, 3)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := NewMatrixFrom(1, 3, []float32{1, 1, 1})
			b, _ := NewMatrixFrom(1, 1, []float32{float32(frac * c.tiny)})
			l, err := NewLayerFrom(w, a, b, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			bits := make([]uint16, 3)
			if err := w.ReadBits(bits); err != nil {
				t.Fatal(err)
			}
			if bits[0] != 0x0001 {
				t.Fatalf("%v: %g of the smallest subnormal stored as %#04x, want 0x0001", c.dt, frac, bits[0])
			}
			if !w.boundKnown || !(w.bound >= c.tiny) {
				t.Errorf("%v: after merging %g of the smallest subnormal %g: bound %g (known %v), below the stored value",
					c.dt, frac, c.tiny, w.bound, w.boundKnown)
			}
			l.Free()
			w.Free()
		}
	}
}
