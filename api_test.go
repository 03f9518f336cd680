package lora_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/internal/sysmem"
)

// noPanic runs f and turns a panic into a test failure.
func noPanic(t *testing.T, f func() error) (err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("panic: %v", p)
		}
	}()
	return f()
}

// TestZeroMatrix passes a zero Matrix (&lora.Matrix{}) in each matrix
// argument of every function and method, the others valid, and checks for an
// error wrapping ErrNil that names the argument, no panic, and no change to
// the valid arguments.
func TestZeroMatrix(t *testing.T) {
	const n, in, out, r = 3, 5, 4, 2
	rng := rand.New(rand.NewPCG(87, 88))
	mk := func(rows, cols int) *lora.Matrix { return newMat(t, rows, cols, reftest.Normal(rng, rows*cols, 1)) }
	type fn struct {
		name  string
		args  []string                     // the names of the matrix arguments, as messages give them
		valid func() []*lora.Matrix        // fresh valid arguments
		call  func(m []*lora.Matrix) error // the call on arguments m
	}
	layerOn := func(w *lora.Matrix) *lora.Layer {
		l, err := lora.NewLayerFrom(w, mk(r, in), mk(out, r), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Free)
		return l
	}
	fns := []fn{
		{"Read", []string{"m"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in)} },
			func(m []*lora.Matrix) error { return m[0].Read(make([]float32, n*in)) }},
		{"Read into nothing", []string{"m"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in)} },
			func(m []*lora.Matrix) error { return m[0].Read(nil) }},
		{"Write", []string{"m"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in)} },
			func(m []*lora.Matrix) error { return m[0].Write(make([]float32, n*in)) }},
		{"Write nothing", []string{"m"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in)} },
			func(m []*lora.Matrix) error { return m[0].Write(nil) }},
		{"ReadAll", []string{"m"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in)} },
			func(m []*lora.Matrix) error { _, err := m[0].ReadAll(); return err }},
		{"NewLayer", []string{"w"}, func() []*lora.Matrix { return []*lora.Matrix{mk(out, in)} },
			func(m []*lora.Matrix) error { _, err := lora.NewLayer(m[0], lora.Config{Rank: r}); return err }},
		{"NewLayerFrom", []string{"w", "a", "b"}, func() []*lora.Matrix { return []*lora.Matrix{mk(out, in), mk(r, in), mk(out, r)} },
			func(m []*lora.Matrix) error { _, err := lora.NewLayerFrom(m[0], m[1], m[2], 1); return err }},
		{"Forward", []string{"y", "x"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, out), mk(n, in)} },
			func(m []*lora.Matrix) error { return layerOn(mk(out, in)).Forward(m[0], m[1]) }},
		{"Linear", []string{"y", "x", "w"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, out), mk(n, in), mk(out, in)} },
			func(m []*lora.Matrix) error { return lora.Linear(m[0], m[1], m[2]) }},
		{"Axpy", []string{"y", "x"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in), mk(n, in)} },
			func(m []*lora.Matrix) error { return lora.Axpy(m[0], 2, m[1]) }},
		{"AddBias", []string{"y", "bias"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, in), mk(1, in)} },
			func(m []*lora.Matrix) error { return lora.AddBias(m[0], m[1]) }},
		{"Backward", []string{"dx", "dA", "dB", "dy", "x"},
			func() []*lora.Matrix { return []*lora.Matrix{mk(n, in), mk(r, in), mk(out, r), mk(n, out), mk(n, in)} },
			func(m []*lora.Matrix) error { return layerOn(mk(out, in)).Backward(m[0], m[1], m[2], m[3], m[4]) }},
		{"MSE", []string{"dy", "y", "target"}, func() []*lora.Matrix { return []*lora.Matrix{mk(n, out), mk(n, out), mk(n, out)} },
			func(m []*lora.Matrix) error { _, err := lora.MSE(m[0], m[1], m[2]); return err }},
		{"AdamW.Step", []string{"dA", "dB"}, func() []*lora.Matrix { return []*lora.Matrix{mk(r, in), mk(out, r)} },
			func(m []*lora.Matrix) error {
				o := lora.NewAdamW(1e-3)
				defer o.Free()
				return o.Step(layerOn(mk(out, in)), m[0], m[1])
			}},
		{"SGD.Step", []string{"dA", "dB"}, func() []*lora.Matrix { return []*lora.Matrix{mk(r, in), mk(out, r)} },
			func(m []*lora.Matrix) error {
				return (&lora.SGD{LR: 0.1, Momentum: 0.9}).Step(layerOn(mk(out, in)), m[0], m[1])
			}},
	}
	for _, f := range fns {
		for i, name := range f.args {
			t.Run(fmt.Sprintf("%s/%s", f.name, name), func(t *testing.T) {
				m := f.valid()
				m[i] = &lora.Matrix{}
				var others []*lora.Matrix
				for j, v := range m {
					if j != i {
						others = append(others, v)
					}
				}
				before := snap(t, others...)
				err := noPanic(t, func() error { return f.call(m) })
				if !errors.Is(err, lora.ErrNil) {
					t.Fatalf("error %v, want one wrapping ErrNil", err)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "lora: ") || !strings.Contains(msg, name+" is a zero Matrix") {
					t.Errorf("message %q, want it to say that %s is a zero Matrix", msg, name)
				}
				before.unchanged(t, f.name)
			})
		}
	}

	// The zero Matrix itself: Dims 0×0, Free a no-op, usable nowhere after.
	zero := &lora.Matrix{}
	if r, c := zero.Dims(); r != 0 || c != 0 {
		t.Errorf("zero Matrix Dims = %d×%d, want 0×0", r, c)
	}
	noPanic(t, func() error { zero.Free(); zero.Free(); return nil })
	if err := zero.Read(nil); !errors.Is(err, lora.ErrNil) {
		t.Errorf("Read after Free of a zero Matrix: %v, want ErrNil", err)
	}

	// A zero Layer: every method refuses it, naming W.
	zl := &lora.Layer{}
	x, y := mk(n, in), mk(n, out)
	for name, f := range map[string]func() error{
		"Forward":    func() error { return zl.Forward(y, x) },
		"Backward":   func() error { return zl.Backward(nil, mk(r, in), mk(out, r), y, x) },
		"Merge":      zl.Merge,
		"Unmerge":    zl.Unmerge,
		"AdamW.Step": func() error { return lora.NewAdamW(1e-3).Step(zl, mk(r, in), mk(out, r)) },
	} {
		err := noPanic(t, f)
		if !errors.Is(err, lora.ErrNil) || !strings.Contains(err.Error(), "W is nil") {
			t.Errorf("%s on a zero Layer: %v, want ErrNil naming W", name, err)
		}
	}
	noPanic(t, func() error { zl.Free(); return nil })
}

// TestAddBias checks y[i,:] += bias[0,:] against float64 on odd shapes,
// the last above the size at which rows are split among goroutines.
func TestAddBias(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(89, 90))
	for _, sh := range []struct{ n, m int }{{1, 1}, {1, 7}, {7, 1}, {37, 129}, {301, 263}} {
		t.Run(fmt.Sprintf("%d×%d", sh.n, sh.m), func(t *testing.T) {
			ys, bs := reftest.Normal(rng, sh.n*sh.m, 1), reftest.Normal(rng, sh.m, 10)
			y, bias := newMat(t, sh.n, sh.m, ys), newMat(t, 1, sh.m, bs)
			if err := lora.AddBias(y, bias); err != nil {
				t.Fatal(err)
			}
			got := read(t, y)
			for i := range sh.n {
				for j := range sh.m {
					want := float64(ys[i*sh.m+j]) + float64(bs[j])
					// One rounding of the sum.
					if d := math.Abs(float64(got[i*sh.m+j]) - want); d > reftest.U32*math.Abs(want) {
						t.Fatalf("y[%d,%d] = %g, want %g", i, j, got[i*sh.m+j], want)
					}
				}
			}
			if b := read(t, bias); !equalBits(b, bs) {
				t.Error("AddBias changed bias")
			}
		})
	}

	y := newMat(t, 3, 4, reftest.Normal(rng, 12, 1))
	row := newMat(t, 1, 4, reftest.Normal(rng, 4, 1))
	freed, _ := lora.NewMatrix(1, 4)
	freed.Free()
	all := snap(t, y, row)
	for _, c := range []struct {
		name    string
		f       func() error
		want    error
		message string
	}{
		{"bias too long", func() error { return lora.AddBias(y, newMat(t, 1, 5, nil)) }, lora.ErrShape, "bias is 1×5, want 1×4 for y 3×4"},
		{"bias a column", func() error { return lora.AddBias(y, newMat(t, 4, 1, nil)) }, lora.ErrShape, "bias is 4×1, want 1×4"},
		{"bias like y", func() error { return lora.AddBias(y, newMat(t, 3, 4, nil)) }, lora.ErrShape, "bias is 3×4, want 1×4"},
		{"y is bias", func() error { return lora.AddBias(row, row) }, lora.ErrAlias, "distinct"},
		{"nil y", func() error { return lora.AddBias(nil, row) }, lora.ErrNil, "y is nil"},
		{"nil bias", func() error { return lora.AddBias(y, nil) }, lora.ErrNil, "bias is nil"},
		{"freed bias", func() error { return lora.AddBias(y, freed) }, lora.ErrFreed, "bias is freed"},
		{"freed y", func() error { return lora.AddBias(freed, row) }, lora.ErrFreed, "y is freed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := noPanic(t, c.f)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want one wrapping %v", err, c.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "lora: AddBias: ") || !strings.Contains(msg, c.message) {
				t.Errorf("message %q, want prefix \"lora: AddBias: \" and %q", msg, c.message)
			}
			all.unchanged(t, c.name)
		})
	}
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestReadAll checks that ReadAll returns a new slice with the matrix, as
// written and as computed, and its errors.
func TestReadAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(91, 92))
	data := reftest.Normal(rng, 7*3, 1)
	m := newMat(t, 7, 3, data)
	got, err := m.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !equalBits(got, data) {
		t.Fatalf("ReadAll = %v, want %v", got, data)
	}
	got[0] = 42 // a copy: the matrix keeps its value
	if again := read(t, m); !equalBits(again, data) {
		t.Error("ReadAll's slice is the matrix's storage")
	}
	// After a computation: Axpy doubles m.
	if err := lora.Axpy(m, 1, newMat(t, 7, 3, data)); err != nil {
		t.Fatal(err)
	}
	got, err = m.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range got {
		if v != 2*data[i] {
			t.Fatalf("ReadAll after Axpy: [%d] = %g, want %g", i, v, 2*data[i])
		}
	}
	var nilM *lora.Matrix
	if _, err := nilM.ReadAll(); !errors.Is(err, lora.ErrNil) || !strings.Contains(err.Error(), "lora: ReadAll: m is nil") {
		t.Errorf("ReadAll on nil: %v, want ErrNil", err)
	}
	m.Free()
	if s, err := m.ReadAll(); !errors.Is(err, lora.ErrFreed) || s != nil {
		t.Errorf("ReadAll after Free: %v, %v; want nil and ErrFreed", s, err)
	}
}

// TestNewMatrixMemory asks for 2 TiB, more than any machine or GPU holds
// today, and for more than this machine's physical memory: an error wrapping
// ErrMemory that names the size, not the runtime's fatal "out of memory".
func TestNewMatrixMemory(t *testing.T) {
	_, err := lora.NewMatrix(1<<20, 1<<19)
	if !errors.Is(err, lora.ErrMemory) || !strings.Contains(err.Error(), "2 TiB") {
		t.Errorf("NewMatrix(2²⁰, 2¹⁹): %v, want ErrMemory naming 2 TiB", err)
	}
	if !strings.HasPrefix(fmt.Sprint(err), "lora: NewMatrix: 1048576×524288: ") {
		t.Errorf("message %q, want it to name the call and the shape", err)
	}
	_, err = lora.NewMatrixFrom(1<<20, 1<<19, nil)
	if !errors.Is(err, lora.ErrShape) {
		t.Errorf("NewMatrixFrom(2²⁰, 2¹⁹, nil): %v, want ErrShape for the data's length first", err)
	}
	if lora.Backend() != "cpu" {
		return // the GPU's memory is not the host's
	}
	phys := sysmem.Physical()
	if phys == 0 {
		t.Log("physical memory unknown: only the 2 TiB case ran")
		return
	}
	// The smallest square matrix larger than the machine.
	side := int(math.Sqrt(float64(phys)/4)) + 1
	_, err = lora.NewMatrix(side, side)
	if !errors.Is(err, lora.ErrMemory) || !strings.Contains(err.Error(), "more than this machine's") {
		t.Errorf("NewMatrix(%d, %d), %s: %v, want ErrMemory", side, side, sysmem.Bytes(4*int64(side)*int64(side)), err)
	}
	if phys < 64<<30 {
		// 64 GiB, more than this machine has.
		if _, err := lora.NewMatrix(1<<17, 1<<17); !errors.Is(err, lora.ErrMemory) || !strings.Contains(err.Error(), "64 GiB") {
			t.Errorf("NewMatrix(2¹⁷, 2¹⁷): %v, want ErrMemory naming 64 GiB", err)
		}
	}
}
