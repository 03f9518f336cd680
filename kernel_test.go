//go:build cuda || cudaemu

package lora_test

// Kernel-specific tests of the GPU backend (run emulated with -tags cudaemu):
// shapes on either side of every tile size and of the small-batch threshold,
// n = 1, r = 1 and 256, rows whose length is and is not a multiple of 4 (the
// float4 and scalar paths), all against the float64 references of
// lora_test.go.

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora"
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
	checkClose(t, "y", read(t, y), want, mag, gamma(p.in+p.r+3))
	if err := lora.Linear(y, x, w); err != nil {
		t.Fatal(err)
	}
	bw, bmag := p.refForward(false)
	checkClose(t, "x·Wᵀ", read(t, y), bw, bmag, gamma(p.in+1))
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	mw, mmag := p.refMerged(float64(p.s))
	checkClose(t, "merged W", read(t, w), mw, mmag, gamma(p.r+2))
	if err := l.Forward(y, x); err != nil {
		t.Fatal(err)
	}
	checkClose(t, "merged y", read(t, y), want, mag, gamma(p.in+p.r+3))
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
	x := randSlice(rng, n*d, 1)
	ref := make([]float64, len(x))
	for i, v := range x {
		ref[i] = float64(v)
	}
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
