package lora

import (
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
