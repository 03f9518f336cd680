//go:build !cuda && !cudaemu

package lora

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// Every test of the package runs with reused staging temporaries filled
// with NaN: an output element that a kernel leaves unwritten shows as NaN
// in the caller's result. A run with -test.bench does not, so that the
// benchmarks time what a program runs.
func init() {
	poisonTemps = !slices.ContainsFunc(os.Args, func(a string) bool {
		return strings.HasPrefix(a, "-test.bench=") || a == "-test.bench"
	})
}

// TestStageTempsReused checks that a staging temporary comes back from the
// pool NaN-filled, and that BF16 Forwards of several shapes, whose
// temporaries are reused from one call to the next, write every element of
// y and give the same y twice (from 16 rows the bf16 product takes x and y
// unstaged, its own scratch reused the same way).
func TestStageTempsReused(t *testing.T) {
	if !poisonTemps {
		t.Skip("run with -test.bench: the temporaries are not poisoned")
	}
	b, err := be.newTemp(100)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b.data {
		b.data[i] = float32(i)
	}
	m := &Matrix{rows: 10, cols: 10, dt: F32, buf: b, boundKnown: true}
	be.releaseTemp(m)
	if !m.freed {
		t.Fatal("releaseTemp left the temporary's Matrix usable")
	}
	b, err = be.newTemp(64)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.data) != 64 {
		t.Fatalf("newTemp(64) gave %d elements", len(b.data))
	}
	// sync.Pool may drop what it holds at any time: a fresh slice is zero.
	for i, v := range b.data {
		if v != 0 && !math.IsNaN(float64(v)) {
			t.Fatalf("a reused temporary holds %g at %d, want NaN", v, i)
		}
	}

	must := func(m *Matrix, err error) *Matrix {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	run := func(n, in, out int) []float32 {
		t.Helper()
		w := must(NewMatrixOf(BF16, out, in))
		x := must(NewMatrixOf(BF16, n, in))
		y := must(NewMatrixOf(BF16, n, out))
		defer func() { w.Free(); x.Free(); y.Free() }()
		vw := make([]float32, out*in)
		vx := make([]float32, n*in)
		for i := range vw {
			vw[i] = float32(math.Sin(float64(i)*0.37)) * 0.1
		}
		for i := range vx {
			vx[i] = float32(math.Cos(float64(i) * 0.11))
		}
		if err := w.Write(vw); err != nil {
			t.Fatal(err)
		}
		if err := x.Write(vx); err != nil {
			t.Fatal(err)
		}
		l, err := NewLayer(w, Config{Rank: 4, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Free()
		vb := make([]float32, out*4)
		for i := range vb {
			vb[i] = 0.01 * float32(i%7)
		}
		if err := l.B().Write(vb); err != nil {
			t.Fatal(err)
		}
		if err := l.Forward(y, x); err != nil {
			t.Fatal(err)
		}
		r := make([]float32, n*out)
		if err := y.Read(r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Each shape twice: its second call's temporaries are the NaN-filled
	// ones of its first (or of a larger shape before it).
	for _, s := range [][3]int{{40, 64, 64}, {33, 70, 41}, {5, 17, 90}, {1, 9, 300}, {64, 128, 96}} {
		first := run(s[0], s[1], s[2])
		again := run(s[0], s[1], s[2])
		for i := range first {
			if math.IsNaN(float64(first[i])) || math.Float32bits(again[i]) != math.Float32bits(first[i]) {
				t.Fatalf("n, in, out = %v: y[%d] = %g, then %g", s, i, first[i], again[i])
			}
		}
	}
}
