//go:build cuda || cudaemu

package lora_test

// Kernel-specific tests of the GPU backend (run emulated with -tags cudaemu):
// shapes on either side of every tile size and of the small-batch threshold,
// n = 1, r = 1 and 256, rows whose length is and is not a multiple of 4 (the
// float4 and scalar paths), all against the float64 references of
// lora_test.go.

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

func TestKernelForwardPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	ns := []int{1, kernels.SmallNMax - 1, kernels.SmallNMax, kernels.SmallNMax + 1, kernels.TileM + 3}
	dims := []struct{ in, out int }{
		{64, kernels.SmallRowsPerBlock + 1},            // in % 4 == 0: the float4 path
		{kernels.TileN + 2, kernels.TileN + 1},         // one row past a tile
		{kernels.MergeTileIn + 1, 2*kernels.TileN - 1}, // odd in: the scalar path
	}
	for _, d := range dims {
		for _, n := range ns {
			for _, r := range []int{1, 7} {
				p := newProblem(rng, n, d.in, d.out, r)
				t.Run(p.String(), func(t *testing.T) { checkForwardAndMerge(t, p) })
			}
		}
	}
}

func TestKernelRank256(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, n := range []int{3, kernels.SmallNMax + 5} {
		p := newProblem(rng, n, 258, 261, 256)
		t.Run(p.String(), func(t *testing.T) { checkForwardAndMerge(t, p) })
	}
}

// checkForwardAndMerge runs Forward, Linear, Merge, merged Forward and
// Unmerge on p and checks each against the float64 reference.
func checkForwardAndMerge(t *testing.T, p *problem) {
	l, w := p.layer(t)
	x, y := newMat(t, p.n, p.in, p.x), newMat(t, p.n, p.out, nil)
	if err := l.Forward(y, x); err != nil {
		t.Fatal(err)
	}
	want, mag := p.refForward(true)
	reftest.Close(t, "y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
	if err := lora.Linear(y, x, w); err != nil {
		t.Fatal(err)
	}
	bw, bmag := p.refForward(false)
	reftest.Close(t, "x·Wᵀ", read(t, y), bw, bmag, reftest.Gamma(p.in+1))
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	mw, _, mmag := p.refMerged(float64(p.s))
	reftest.Close(t, "merged W", read(t, w), mw, mmag, reftest.Gamma(p.r+2))
	if err := l.Forward(y, x); err != nil {
		t.Fatal(err)
	}
	reftest.Close(t, "merged y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, read(t, w), p, 2)
}

// TestKernelAsync chains layers back to back without reading in between,
// then reads once: the queued work must run in order.
func TestKernelAsync(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	const n, d, depth = 5, 33, 6
	x := reftest.Normal(rng, n*d, 1)
	ref := reftest.F64(x)
	cur := newMat(t, n, d, x)
	for range depth {
		p := newProblem(rng, n, d, d, 3)
		l, _ := p.layer(t)
		next := newMat(t, n, d, nil)
		if err := l.Forward(next, cur); err != nil {
			t.Fatal(err)
		}
		// The float64 reference of this layer on the previous reference
		// output, rounded to float32 as the device's input was.
		p.x = make([]float32, len(ref))
		for i := range ref {
			p.x[i] = float32(ref[i])
		}
		ref, _ = p.refForward(true)
		cur = next
	}
	if err := lora.Sync(); err != nil {
		t.Fatal(err)
	}
	got := read(t, cur)
	for i := range got {
		if d := math.Abs(float64(got[i]) - ref[i]); d > 1e-4*(1+math.Abs(ref[i])) {
			t.Fatalf("after %d chained layers y[%d] = %g, want %g", depth, i, got[i], ref[i])
		}
	}
}

// TestKernelAddBias runs lora_add_bias on one column, columns that are not a
// multiple of 4 (the scalar path), multiples of 4 (float4), more rows than
// the grid's y covers in one sweep, and more columns than its x does, against
// a float64 reference: y + b in float64 rounded once to float32 is the
// correctly rounded float32 sum, so the comparison is exact.
func TestKernelAddBias(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	wide := kernels.BiasThreads*kernels.BiasBlocks + 5
	for _, sh := range []struct{ rows, cols int }{
		{1, 1}, {5, 1}, {2, 3}, {3, 5}, {4, 4}, {7, 129}, {kernels.BiasBlocks + 3, 5},
		{kernels.BiasBlocks + 3, 4}, {33, 128}, {1, wide}, {2, 4 * wide},
	} {
		y, b := reftest.Normal(rng, sh.rows*sh.cols, 10), reftest.Normal(rng, sh.cols, 10)
		my, mb := newMat(t, sh.rows, sh.cols, y), newMat(t, 1, sh.cols, b)
		if err := lora.AddBias(my, mb); err != nil {
			t.Fatal(err)
		}
		got := read(t, my)
		for i := range sh.rows {
			for j := range sh.cols {
				want := float32(float64(y[i*sh.cols+j]) + float64(b[j]))
				if g := got[i*sh.cols+j]; g != want {
					t.Fatalf("%d×%d: y[%d,%d] = %g, want %g", sh.rows, sh.cols, i, j, g, want)
				}
			}
		}
		if bb := read(t, mb); !slicesEqual(bb, b) {
			t.Fatalf("%d×%d: AddBias changed bias", sh.rows, sh.cols)
		}
	}
}

func slicesEqual(a, b []float32) bool {
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

// TestKernelOutOfMemory asks for more device memory than the device (for the
// emulator, the machine) has: NewMatrix returns an error wrapping ErrMemory
// and ErrDevice that names the size, the process goes on, and the device
// stays usable.
func TestKernelOutOfMemory(t *testing.T) {
	m, err := lora.NewMatrix(1<<20, 1<<20) // 4 TiB
	if err == nil {
		m.Free()
		t.Fatal("NewMatrix of 4 TiB succeeded")
	}
	if !errors.Is(err, lora.ErrMemory) || !errors.Is(err, lora.ErrDevice) || !strings.Contains(err.Error(), "1048576×1048576") {
		t.Errorf("NewMatrix of 4 TiB: %v, want an error wrapping ErrMemory and ErrDevice that names the size", err)
	}
	if err := lora.Sync(); err != nil {
		t.Errorf("Sync after running out of device memory: %v", err)
	}
	x := newMat(t, 2, 2, []float32{1, 2, 3, 4})
	if got := read(t, x); got[3] != 4 {
		t.Errorf("a matrix made after running out of device memory reads %v", got)
	}
}
