//go:build cuda || cudaemu

package lora_test

// Kernel-specific tests of training on the GPU backend (run emulated with
// -tags cudaemu): batches on either side of the small-batch threshold and of
// a tile, rows whose length is and is not a multiple of 4 (the float4 and
// scalar paths), ranks across the column blocks of lora_grad_u and
// lora_grad_ab, and optimizer and loss launches of many blocks, against the
// float64 references of train_test.go with the bounds derived there.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

func TestKernelBackwardPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	cases := []struct{ n, in, out, r int }{
		{1, 64, 36, 1}, // float4 paths, small kernel
		{kernels.SmallNMax, 64, 36, kernels.GradABTR + 1}, // the largest small batch
		{kernels.SmallNMax + 1, 64, 36, 4},                // the smallest tiled batch
		{kernels.SmallNMax + 1, kernels.TileN + 1, 67, kernels.GradUKs + 1},
		{kernels.TileM + 3, 33, kernels.TileN + 2, kernels.GradABTR + 1},
		{5, 2*kernels.GradXSmallCols + 1, 37, 7}, // odd in: scalar paths
		{3, 258, 261, 256},                       // many rank blocks
		{kernels.SmallNMax + 5, 258, 261, 256},
	}
	for _, c := range cases {
		p := newProblem(rng, c.n, c.in, c.out, c.r)
		g := reftest.Normal(rng, c.n*c.out, 1)
		t.Run(p.String(), func(t *testing.T) { checkBackwardRef(t, p, g) })
	}
}

// TestKernelOptimizerBlocks runs AdamW and SGD over more parameters than one
// block covers, and MSE over more elements than LORA_MSE_MAX_BLOCKS blocks
// cover in one sweep, against the references of train_test.go.
func TestKernelOptimizerBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 64))
	const in, out, r = 301, 203, 16 // r·(in+out) = 8064 parameters: 32 blocks
	p := newProblem(rng, 1, in, out, r)
	l, _ := p.layer(t)
	opt := lora.NewAdamW(0.01)
	defer opt.Free()
	ra, rb := newAdamRef(p.a), newAdamRef(p.b)
	for range 2 {
		ga, gb := reftest.Normal(rng, r*in, 1), reftest.Normal(rng, out*r, 1)
		if err := opt.Step(l, newMat(t, r, in, ga), newMat(t, out, r, gb)); err != nil {
			t.Fatal(err)
		}
		ra.step(ga, float64(float32(0.01)), float64(float32(0.9)), float64(float32(0.999)), float64(float32(1e-8)), float64(float32(0.01)))
		rb.step(gb, float64(float32(0.01)), float64(float32(0.9)), float64(float32(0.999)), float64(float32(1e-8)), float64(float32(0.01)))
	}
	reftest.Close(t, "A", read(t, l.A()), ra.p, ra.magP, 32*reftest.U32)
	reftest.Close(t, "B", read(t, l.B()), rb.p, rb.magP, 32*reftest.U32)

	l2, _ := p.layer(t)
	sgd := &lora.SGD{LR: 0.1, Momentum: 0.5}
	defer sgd.Free()
	ga, gb := reftest.Normal(rng, r*in, 1), reftest.Normal(rng, out*r, 1)
	for range 2 {
		if err := sgd.Step(l2, newMat(t, r, in, ga), newMat(t, out, r, gb)); err != nil {
			t.Fatal(err)
		}
	}
	// Two steps of the same g: p − 0.1·g − 0.1·(0.5·g + g) = p − 0.25·g.
	for q, pr := range []struct {
		got  []float32
		p, g []float32
	}{{read(t, l2.A()), p.a, ga}, {read(t, l2.B()), p.b, gb}} {
		want, mag := make([]float64, len(pr.p)), make([]float64, len(pr.p))
		for i := range pr.p {
			want[i] = float64(pr.p[i]) - 0.25*float64(pr.g[i])
			mag[i] = math.Abs(float64(pr.p[i])) + 0.25*math.Abs(float64(pr.g[i]))
		}
		reftest.Close(t, fmt.Sprintf("SGD parameter set %d", q), pr.got, want, mag, 8*reftest.U32)
	}

	const rows, cols = 600, 501 // 300600 elements: more than 64 blocks × 256 threads × 16
	ys, ts := reftest.Normal(rng, rows*cols, 1), reftest.Normal(rng, rows*cols, 1)
	var want float64
	for i := range ys {
		d := float64(ys[i]) - float64(ts[i])
		want += d * d
	}
	want /= rows * cols
	loss, err := lora.MSE(nil, newMat(t, rows, cols, ys), newMat(t, rows, cols, ts))
	if err != nil {
		t.Fatal(err)
	}
	if d := math.Abs(float64(loss) - want); d > (reftest.Gamma(rows*cols)+2*reftest.U32)*want {
		t.Errorf("MSE %g, want %g", loss, want)
	}
}
