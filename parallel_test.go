package lora_test

// Shapes above the size at which the CPU backend splits its work among
// goroutines (2¹⁶ multiply-adds), with GOMAXPROCS raised to an odd count so
// that every split has several uneven shares, checked against the float64
// references of the suite. Smaller tests run every loop on one share, where
// a share that starts at the wrong offset cannot show.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// splitProcs is the GOMAXPROCS of these tests: odd, so that shares are
// uneven, and more than the two cores of a small machine.
const splitProcs = 7

// manyProcs sets GOMAXPROCS to splitProcs for the test.
func manyProcs(t *testing.T) {
	old := runtime.GOMAXPROCS(splitProcs)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// TestForwardSplit runs Forward and Linear at batch sizes that take the
// matrix-vector path (n ≤ 4: the rows of W, A and B split among
// goroutines, each product above the threshold, r·in included) and the
// matrix path (rows of x split for x·Aᵀ; the rank-r update of y in two
// column blocks of B and groups of rows).
func TestForwardSplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(71, 72))
	for _, c := range []struct{ n, in, out, r int }{
		{1, 700, 263, 100}, {3, 251, 263, 90}, {4, 251, 263, 90}, {60, 130, 600, 128},
	} {
		p := newProblem(rng, c.n, c.in, c.out, c.r)
		t.Run(p.String(), func(t *testing.T) {
			l, _ := p.layer(t)
			x := newMat(t, p.n, p.in, p.x)
			y := newMat(t, p.n, p.out, fill(make([]float32, p.n*p.out), float32(math.NaN())))
			if err := l.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			want, mag := p.refForward(true)
			reftest.Close(t, "y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
			if err := lora.Linear(y, x, l.W()); err != nil {
				t.Fatal(err)
			}
			want, mag = p.refForward(false)
			reftest.Close(t, "x·Wᵀ", read(t, y), want, mag, reftest.Gamma(p.in+1))
		})
	}
}

// TestBackwardSplit runs Backward, unmerged and merged, at n ≤ 4 (dx by
// rows of W split among goroutines, the columns of A for the rank-r term;
// or the column blocks of the AVX2 product) and above, every product past
// the threshold.
func TestBackwardSplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(73, 74))
	for _, c := range []struct{ n, in, out, r int }{{1, 700, 263, 100}, {3, 263, 251, 90}, {4, 263, 251, 90}, {40, 301, 203, 40}} {
		p := newProblem(rng, c.n, c.in, c.out, c.r)
		g := reftest.Normal(rng, c.n*c.out, 1)
		t.Run(p.String(), func(t *testing.T) { checkBackwardRef(t, p, g) })
	}
}

// TestMergeSplit merges into a W whose rank-r update is split in column
// blocks (r = 64: 1024 columns of A fit the cache) and groups of rows,
// and takes it out again.
func TestMergeSplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(75, 76))
	p := newProblem(rng, 1, 1100, 70, 64)
	l, w := p.layer(t)
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	want, _, mag := p.refMerged(float64(p.s))
	reftest.Close(t, "merged W", read(t, w), want, mag, reftest.Gamma(p.r+2))
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, read(t, w), p, 2)
}

// TestOptimizerSplit steps AdamW and SGD (with and without momentum) on
// layers whose A and B together are split among goroutines with a share
// starting inside A and crossing into B, and shares starting inside B:
// with in < out (B the larger) and in > out (A the larger).
func TestOptimizerSplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(77, 78))
	for _, c := range []struct{ in, out, r int }{{100, 500, 32}, {500, 200, 32}, {50, 300, 16}, {300, 120, 16}} {
		// The shares of the r·(in+out) parameters; at least one starts in B.
		na, total := c.r*c.in, c.r*(c.in+c.out)
		inB := false
		for g := 1; g < splitProcs; g++ {
			inB = inB || g*total/splitProcs > na
		}
		if !inB {
			t.Fatalf("in=%d out=%d r=%d: no share starts inside B", c.in, c.out, c.r)
		}
		t.Run(fmt.Sprintf("AdamW/in=%d,out=%d,r=%d", c.in, c.out, c.r), func(t *testing.T) {
			p := newProblem(rng, 1, c.in, c.out, c.r)
			l, _ := p.layer(t)
			opt := &lora.AdamW{LR: 0.01, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0.1}
			defer opt.Free()
			ra, rb := newAdamRef(p.a), newAdamRef(p.b)
			for step := 1; step <= 2; step++ {
				ga, gb := reftest.Normal(rng, c.r*c.in, 1), reftest.Normal(rng, c.out*c.r, 1)
				if err := opt.Step(l, newMat(t, c.r, c.in, ga), newMat(t, c.out, c.r, gb)); err != nil {
					t.Fatal(err)
				}
				f := func(v float32) float64 { return float64(v) }
				ra.step(ga, f(opt.LR), f(opt.Beta1), f(opt.Beta2), f(opt.Eps), f(opt.WeightDecay))
				rb.step(gb, f(opt.LR), f(opt.Beta1), f(opt.Beta2), f(opt.Eps), f(opt.WeightDecay))
				reftest.Close(t, fmt.Sprintf("A after step %d", step), read(t, l.A()), ra.p, ra.magP, 32*reftest.U32)
				reftest.Close(t, fmt.Sprintf("B after step %d", step), read(t, l.B()), rb.p, rb.magP, 32*reftest.U32)
			}
		})
		for _, mom := range []float32{0, 0.9} {
			t.Run(fmt.Sprintf("SGD/momentum=%g/in=%d,out=%d,r=%d", mom, c.in, c.out, c.r), func(t *testing.T) {
				p := newProblem(rng, 1, c.in, c.out, c.r)
				l, _ := p.layer(t)
				opt := &lora.SGD{LR: 0.1, Momentum: mom}
				defer opt.Free()
				params := [][]float64{reftest.F64(p.a), reftest.F64(p.b)}
				mag := [][]float64{reftest.F64(p.a), reftest.F64(p.b)}
				bufs := [][]float64{make([]float64, len(p.a)), make([]float64, len(p.b))}
				bmag := [][]float64{make([]float64, len(p.a)), make([]float64, len(p.b))}
				for range 2 {
					grads := [][]float32{reftest.Normal(rng, len(p.a), 1), reftest.Normal(rng, len(p.b), 1)}
					if err := opt.Step(l, newMat(t, c.r, c.in, grads[0]), newMat(t, c.out, c.r, grads[1])); err != nil {
						t.Fatal(err)
					}
					for q := range params {
						for i, g := range grads[q] {
							bufs[q][i] = float64(mom)*bufs[q][i] + float64(g)
							bmag[q][i] = float64(mom)*bmag[q][i] + math.Abs(float64(g))
							params[q][i] -= 0.1 * bufs[q][i]
							mag[q][i] = math.Abs(mag[q][i]) + 0.1*bmag[q][i]
						}
					}
				}
				reftest.Close(t, "A", read(t, l.A()), params[0], mag[0], 8*reftest.U32)
				reftest.Close(t, "B", read(t, l.B()), params[1], mag[1], 8*reftest.U32)
			})
		}
	}
}

// TestMSESplit checks MSE over enough elements for every goroutine to sum
// a part of its own.
func TestMSESplit(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(79, 80))
	const n, m = 500, 461
	ys, ts := reftest.Normal(rng, n*m, 1), reftest.Normal(rng, n*m, 1)
	y, tg := newMat(t, n, m, ys), newMat(t, n, m, ts)
	dy := newMat(t, n, m, fill(make([]float32, n*m), float32(math.NaN())))
	loss, err := lora.MSE(dy, y, tg)
	if err != nil {
		t.Fatal(err)
	}
	count := float64(n * m)
	var sum float64
	got := read(t, dy)
	for i := range ys {
		d := float64(ys[i]) - float64(ts[i])
		sum += d * d
		want := 2 * d / count
		if e := math.Abs(float64(got[i]) - want); e > 4*reftest.U32*math.Abs(want)+1e-30 {
			t.Fatalf("dy[%d] = %g, want %g", i, got[i], want)
		}
	}
	if want := sum / count; math.Abs(float64(loss)-want) > 8*reftest.U32*want {
		t.Errorf("loss %g, want %g", loss, want)
	}
}
