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
