//go:build !cuda && !cudaemu

package lora

import (
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/cpu"
)

// TestBF16LeastForgotten checks the cache of a BF16 W's least magnitude
// that the CPU's bf16 product keeps in the Matrix (cpu.Mat.Least): a
// Forward on the bf16 product fills it; Write, WriteBits and Merge clear
// it; and a Forward after a Write that puts a subnormal into W computes
// that row of y exactly (through the product's check, not the cache of
// the W before).
func TestBF16LeastForgotten(t *testing.T) {
	if cpu.CurrentLevel() < cpu.AVX512BF16 {
		t.Skipf("level %v: no bf16 product", cpu.CurrentLevel())
	}
	rng := rand.New(rand.NewPCG(203, 204))
	const n, out, in, r = 32, 96, 64, 4
	rnd := func(m int, scale float64) []float32 {
		s := make([]float32, m)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * scale)
		}
		return s
	}
	wv := rnd(out*in, 1)
	w, _ := NewMatrixOf(BF16, out, in)
	if err := w.Write(wv); err != nil {
		t.Fatal(err)
	}
	a, _ := NewMatrixFrom(r, in, rnd(r*in, 0.1))
	b, _ := NewMatrixFrom(out, r, rnd(out*r, 0.1))
	l, err := NewLayerFrom(w, a, b, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	xv := rnd(n*in, 1)
	for i := range n {
		xv[i*in+7] = 1
	}
	x, _ := NewMatrixOf(BF16, n, in)
	x.Write(xv)
	y, _ := NewMatrixOf(BF16, n, out)
	forward := func(what string) {
		t.Helper()
		if err := l.Forward(y, x); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if w.least.Load() == 0 {
			t.Fatalf("%s: W's least magnitude not cached after Forward", what)
		}
	}
	forward("first Forward")
	for _, c := range []struct {
		what   string
		change func() error
	}{
		{"Write", func() error { return w.Write(wv) }},
		{"WriteBits", func() error {
			bits := make([]uint16, out*in)
			w.ReadBits(bits)
			return w.WriteBits(bits)
		}},
		{"Merge", l.Merge},
		{"Unmerge", l.Unmerge},
	} {
		if err := c.change(); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if got := w.least.Load(); got != 0 {
			t.Errorf("after %s the cached least magnitude is %#x, want none", c.what, got)
		}
		forward("Forward after " + c.what)
	}

	// Row 5 of W zero but for the subnormal 2⁻¹³⁰ at column 7 (x is 1
	// there), B's row 5 zero: y[:, 5] = 2⁻¹³⁰ exactly.
	for k := range in {
		wv[5*in+k] = 0
	}
	wv[5*in+7] = 0x1p-130
	if err := w.Write(wv); err != nil {
		t.Fatal(err)
	}
	bv, _ := b.ReadAll()
	clear(bv[5*r : 6*r])
	b.Write(bv)
	if err := l.Forward(y, x); err != nil {
		t.Fatal(err)
	}
	got, _ := y.ReadAll()
	for i := range n {
		if got[i*out+5] != 0x1p-130 {
			t.Fatalf("after W.Write of a subnormal: y[%d, 5] = %v, want 2⁻¹³⁰", i, got[i*out+5])
		}
	}
}
