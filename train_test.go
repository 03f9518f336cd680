package lora_test

// Training tests of the shared suite: Backward against central finite
// differences, AdamW and SGD against float64 references of PyTorch's update
// rules, MSE, a teacher–student run that shows an adapter learning, the
// optimizer state's lifetime, and every error case.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

func fill(s []float32, v float32) []float32 {
	for i := range s {
		s[i] = v
	}
	return s
}

// gradLoss is L = Σ G ⊙ y for the oracle's y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, in
// float64: a loss whose gradient with respect to y is G, so that Backward
// with dy = G gives its gradients. It returns L and Σ |G|·(the magnitudes of
// y's terms), which bounds its rounding.
func gradLoss(sh reftest.Shape, s float64, g, x, w, a, b []float64) (loss, mag float64) {
	y, m := reftest.Forward(sh, s, x, w, a, b)
	for i := range y {
		loss += g[i] * y[i]
		mag += math.Abs(g[i]) * m[i]
	}
	return loss, mag
}

// centralDiff returns (L(θᵢ + h) − L(θᵢ − h)) / 2h for every element θᵢ of
// theta, a slice that loss reads, and a bound on its rounding error.
func centralDiff(theta []float64, h float64, loss func() (float64, float64)) (grad []float64, errBound float64) {
	grad = make([]float64, len(theta))
	for i, v := range theta {
		theta[i] = v + h
		lp, mp := loss()
		theta[i] = v - h
		lm, mm := loss()
		theta[i] = v
		grad[i] = (lp - lm) / (2 * h)
		// Each loss is a float64 sum: its error is below its term count
		// (bounded by 4096 here) times 2⁻⁵³ times its magnitude.
		errBound = math.Max(errBound, 4096*0x1p-53*(mp+mm)/(2*h))
	}
	return grad, errBound
}

// within is the bound tol·mag[i] + abs of reftest.Check.
func within(mag []float64, tol, abs float64) func(int) float64 {
	return func(i int) float64 { return tol*mag[i] + abs }
}

// TestBackward checks dA, dB and dx against central finite differences of
// L = Σ G ⊙ y in float64, with dy = G, on odd shapes, merged and unmerged.
//
// L is linear in each of A, B and x separately, so a central difference has
// no truncation error: what remains is float64 rounding, bounded by
// centralDiff and far below float32's. The float32 results are bounded by the
// classic error analysis of each product, with the magnitudes of its terms:
//
//	dB[j,k] = s·Σᵢ G[i,j]·T[i,k], T = x·Aᵀ:   Gamma(in+n+3)·|s|·Σᵢ|G||x|·|A|
//	dA[k,c] = s·Σᵢ U[i,k]·x[i,c], U = G·B:    Gamma(out+n+3)·|s|·Σᵢ(|G|·|B|)|x|
//	dx[i,c] = Σⱼ G·W + s·Σₖ U·A:              Gamma(out+r+3)·(Σ|G||W| + |s|·Σ(|G|·|B|)|A|)
//
// The merged dx, G·(W + s·B·A) with the merged W rounded once per element
// (Gamma(r+2)), obeys the same bound as the unmerged one.
func TestBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	shapes := []struct{ in, out int }{{7, 5}, {5, 9}, {33, 19}, {20, 12}}
	for _, sh := range shapes {
		for _, r := range []int{1, 4} {
			for _, n := range []int{1, 3, 17} {
				p := newProblem(rng, n, sh.in, sh.out, r)
				g := reftest.Normal(rng, n*sh.out, 1)
				t.Run(p.String(), func(t *testing.T) { checkBackward(t, p, g) })
			}
		}
	}
}

func checkBackward(t *testing.T, p *problem, g []float32) {
	n, in, out, r := p.n, p.in, p.out, p.r
	s := float64(p.s)
	gd, xd, wd, ad, bd := reftest.F64(g), reftest.F64(p.x), reftest.F64(p.w), reftest.F64(p.a), reftest.F64(p.b)
	loss := func() (float64, float64) { return gradLoss(p.shape(), s, gd, xd, wd, ad, bd) }
	const h = 0x1p-6
	wantA, errA := centralDiff(ad, h, loss)
	wantB, errB := centralDiff(bd, h, loss)
	wantX, errX := centralDiff(xd, h, loss)

	// The formulas in float64 agree with the finite differences, so that
	// the kernel tests may use them at sizes where differences cost too much.
	ref := p.refBackward(g)
	magA, magB, magX := ref.MagA, ref.MagB, ref.MagX
	for what, c := range map[string]struct {
		f, fd, mag []float64
		err        float64
	}{"dA": {ref.DA, wantA, magA, errA}, "dB": {ref.DB, wantB, magB, errB}, "dx": {ref.DX, wantX, magX, errX}} {
		for i := range c.f {
			if d := math.Abs(c.f[i] - c.fd[i]); d > c.err+1e-12*c.mag[i] {
				t.Fatalf("%s[%d]: formula %g, finite differences %g", what, i, c.f[i], c.fd[i])
			}
		}
	}

	for _, merged := range []bool{false, true} {
		t.Run(fmt.Sprintf("merged=%v", merged), func(t *testing.T) {
			l, w := p.layer(t)
			if merged {
				if err := l.Merge(); err != nil {
					t.Fatal(err)
				}
			}
			x, dy := newMat(t, n, in, p.x), newMat(t, n, out, g)
			// Outputs start as NaN: every element must be written.
			nan := float32(math.NaN())
			dA := newMat(t, r, in, fill(make([]float32, r*in), nan))
			dB := newMat(t, out, r, fill(make([]float32, out*r), nan))
			dx := newMat(t, n, in, fill(make([]float32, n*in), nan))
			inputs := snap(t, w, l.A(), l.B(), x, dy)
			if err := l.Backward(dx, dA, dB, dy, x); err != nil {
				t.Fatal(err)
			}
			inputs.unchanged(t, "Backward's inputs")
			gotA, gotB := read(t, dA), read(t, dB)
			reftest.Check(t, "dA", gotA, wantA, within(magA, reftest.Gamma(out+n+3), errA))
			reftest.Check(t, "dB", gotB, wantB, within(magB, reftest.Gamma(in+n+3), errB))
			reftest.Check(t, "dx", read(t, dx), wantX, within(magX, reftest.Gamma(out+r+3), errX))

			// Without dx: the same dA and dB, bit for bit.
			dA2, dB2 := newMat(t, r, in, nil), newMat(t, out, r, nil)
			if err := l.Backward(nil, dA2, dB2, dy, x); err != nil {
				t.Fatal(err)
			}
			for what, pair := range map[string][2][]float32{"dA": {gotA, read(t, dA2)}, "dB": {gotB, read(t, dB2)}} {
				for i := range pair[0] {
					if math.Float32bits(pair[0][i]) != math.Float32bits(pair[1][i]) {
						t.Fatalf("%s[%d] = %g without dx, %g with dx", what, i, pair[1][i], pair[0][i])
					}
				}
			}
		})
	}
}

// refBackward returns the oracle's dA, dB and dx of the problem's layer for
// dy = g, with the magnitudes of their terms that bound their rounding (see
// TestBackward).
func (p *problem) refBackward(g []float32) reftest.Grads {
	return reftest.Backward(p.shape(), float64(p.s), g, p.x, p.w, p.a, p.b, false)
}

// TestBackwardBlocks checks Backward on shapes larger than one block of every
// backend's dx product (several column blocks and several blocks of the
// inner dimension, ragged at both ends) against refBackward, merged and
// unmerged, with the bounds of TestBackward.
func TestBackwardBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(57, 58))
	for _, c := range []struct{ n, in, out, r int }{{17, 300, 150, 4}, {3, 260, 70, 5}, {40, 133, 201, 1}} {
		p := newProblem(rng, c.n, c.in, c.out, c.r)
		g := reftest.Normal(rng, c.n*c.out, 1)
		t.Run(p.String(), func(t *testing.T) { checkBackwardRef(t, p, g) })
	}
}

// checkBackwardRef runs Backward on p with upstream gradient g, unmerged and
// merged, into outputs filled with NaN beforehand (so that an element left
// unwritten fails), and checks dA, dB and dx against refBackward with the
// bounds of TestBackward.
func checkBackwardRef(t *testing.T, p *problem, g []float32) {
	ref := p.refBackward(g)
	nan := float32(math.NaN())
	for _, merged := range []bool{false, true} {
		l, _ := p.layer(t)
		if merged {
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
		}
		dA := newMat(t, p.r, p.in, fill(make([]float32, p.r*p.in), nan))
		dB := newMat(t, p.out, p.r, fill(make([]float32, p.out*p.r), nan))
		dx := newMat(t, p.n, p.in, fill(make([]float32, p.n*p.in), nan))
		if err := l.Backward(dx, dA, dB, newMat(t, p.n, p.out, g), newMat(t, p.n, p.in, p.x)); err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("merged=%v ", merged)
		reftest.Check(t, what+"dA", read(t, dA), ref.DA, within(ref.MagA, reftest.Gamma(p.out+p.n+3), 0))
		reftest.Check(t, what+"dB", read(t, dB), ref.DB, within(ref.MagB, reftest.Gamma(p.in+p.n+3), 0))
		reftest.Check(t, what+"dx", read(t, dx), ref.DX, within(ref.MagX, reftest.Gamma(p.out+p.r+3), 0))
	}
}

// adamRef is torch.optim.AdamW's update in float64 for one parameter
// tensor, and the magnitudes that bound the float32 update's rounding.
type adamRef struct {
	p, m, v, magP, magM []float64
	t                   int
}

func newAdamRef(p []float32) *adamRef {
	a := &adamRef{p: reftest.F64(p), m: make([]float64, len(p)), v: make([]float64, len(p)),
		magP: make([]float64, len(p)), magM: make([]float64, len(p))}
	for i, v := range a.p {
		a.magP[i] = math.Abs(v)
	}
	return a
}

func (a *adamRef) step(g []float32, lr, beta1, beta2, eps, wd float64) {
	a.t++
	bc1 := 1 - math.Pow(beta1, float64(a.t))
	bc2 := 1 - math.Pow(beta2, float64(a.t))
	for i, gv := range g {
		gi := float64(gv)
		a.p[i] *= 1 - lr*wd
		a.m[i] = beta1*a.m[i] + (1-beta1)*gi
		a.v[i] = beta2*a.v[i] + (1-beta2)*gi*gi
		den := math.Sqrt(a.v[i])/math.Sqrt(bc2) + eps
		a.p[i] -= lr / bc1 * a.m[i] / den
		a.magM[i] = beta1*a.magM[i] + (1-beta1)*math.Abs(gi)
		a.magP[i] = math.Abs(1-lr*wd)*a.magP[i] + lr/bc1*a.magM[i]/den
	}
}

// TestAdamW runs three AdamW steps with fresh random gradients and checks A
// and B against torch.optim.AdamW's formula in float64, given the same
// float32 hyperparameters, zero meaning zero (no momentum, no weight decay). Each step rounds about ten times; m may cancel,
// so its error is relative to the running sum of |g| (magM), and the update's
// to lr/(1−β₁ᵗ)·magM/den, accumulated with |p| in magP. Bound: 32u·magP.
func TestAdamW(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	const in, out, r = 13, 9, 3
	for _, opt := range []*lora.AdamW{
		lora.NewAdamW(1e-3), // PyTorch's defaults
		{LR: 0.05, Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0.1},
		{LR: 0.02, Beta2: 0.99, Eps: 1e-8},           // Beta1 0: no momentum; no weight decay
		{LR: 0.02, Beta1: 0.9, Beta2: 0, Eps: 1e-3},  // Beta2 0: v is g²
		{LR: 0, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}, // LR 0, as a schedule reaches: A and B stay
	} {
		t.Run(fmt.Sprintf("LR=%g,Beta1=%g,Beta2=%g,Eps=%g,WeightDecay=%g", opt.LR, opt.Beta1, opt.Beta2, opt.Eps, opt.WeightDecay), func(t *testing.T) {
			defer opt.Free()
			p := newProblem(rng, 1, in, out, r)
			l, w := p.layer(t)
			wBefore := snap(t, w)
			ra, rb := newAdamRef(p.a), newAdamRef(p.b)
			// The float32 hyperparameters, each meaning what it says.
			lr, b1, b2 := float64(opt.LR), float64(opt.Beta1), float64(opt.Beta2)
			eps, wd := float64(opt.Eps), float64(opt.WeightDecay)
			for step := 1; step <= 3; step++ {
				// Gradients of mixed scales, some tiny, so that Eps matters.
				ga, gb := reftest.Normal(rng, r*in, 1), reftest.Normal(rng, out*r, 1e-3)
				ga[0], gb[0] = 1e-9, 0
				dA, dB := newMat(t, r, in, ga), newMat(t, out, r, gb)
				if err := opt.Step(l, dA, dB); err != nil {
					t.Fatal(err)
				}
				ra.step(ga, lr, b1, b2, eps, wd)
				rb.step(gb, lr, b1, b2, eps, wd)
				reftest.Close(t, fmt.Sprintf("A after step %d", step), read(t, l.A()), ra.p, ra.magP, 32*reftest.U32)
				reftest.Close(t, fmt.Sprintf("B after step %d", step), read(t, l.B()), rb.p, rb.magP, 32*reftest.U32)
			}
			wBefore.unchanged(t, "W after AdamW steps")
			if got, want := opt.StateBytes(), int64(8*r*(in+out)); got != want {
				t.Errorf("StateBytes = %d, want %d: two floats per trainable parameter", got, want)
			}
		})
	}
}

// TestSGD checks three steps of SGD with and without momentum against
// torch.optim.SGD's rule in float64: buf ← μ·buf + g, p ← p − lr·buf. Bound:
// 8u·(|p| + lr·Σ magnitudes of buf). The zero value has LR 0: no change.
func TestSGD(t *testing.T) {
	rng := rand.New(rand.NewPCG(45, 46))
	const in, out, r = 11, 6, 2
	for _, opt := range []*lora.SGD{{LR: 0.1, Momentum: 0.9}, lora.NewSGD(0.05), {}} {
		t.Run(fmt.Sprintf("LR=%g,Momentum=%g", opt.LR, opt.Momentum), func(t *testing.T) {
			defer opt.Free()
			p := newProblem(rng, 1, in, out, r)
			l, _ := p.layer(t)
			lr, mom := float64(opt.LR), float64(opt.Momentum)
			params := [][]float64{reftest.F64(p.a), reftest.F64(p.b)}
			mag := [][]float64{reftest.F64(p.a), reftest.F64(p.b)}
			bufs := [][]float64{make([]float64, r*in), make([]float64, out*r)}
			bmag := [][]float64{make([]float64, r*in), make([]float64, out*r)}
			for step := 1; step <= 3; step++ {
				grads := [][]float32{reftest.Normal(rng, r*in, 1), reftest.Normal(rng, out*r, 1)}
				if err := opt.Step(l, newMat(t, r, in, grads[0]), newMat(t, out, r, grads[1])); err != nil {
					t.Fatal(err)
				}
				for q := range params {
					for i, g := range grads[q] {
						bufs[q][i] = mom*bufs[q][i] + float64(g)
						bmag[q][i] = mom*bmag[q][i] + math.Abs(float64(g))
						params[q][i] -= lr * bufs[q][i]
						mag[q][i] = math.Abs(mag[q][i]) + lr*bmag[q][i]
					}
				}
				reftest.Close(t, "A", read(t, l.A()), params[0], mag[0], 8*reftest.U32)
				reftest.Close(t, "B", read(t, l.B()), params[1], mag[1], 8*reftest.U32)
			}
			want := int64(0)
			if mom != 0 {
				want = int64(4 * r * (in + out))
			}
			if got := opt.StateBytes(); got != want {
				t.Errorf("StateBytes = %d, want %d", got, want)
			}
		})
	}
}

// TestMSE checks the loss against float64 and the gradient 2(y − t)/count
// elementwise: one subtraction and one product rounded (2u relative), the
// loss a sum of count squares (Gamma(count+2)).
func TestMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(47, 48))
	for _, sh := range []struct{ n, m int }{{1, 1}, {3, 7}, {37, 129}, {300, 300}} {
		t.Run(fmt.Sprintf("%d×%d", sh.n, sh.m), func(t *testing.T) {
			ys, ts := reftest.Normal(rng, sh.n*sh.m, 1), reftest.Normal(rng, sh.n*sh.m, 1)
			y, tg := newMat(t, sh.n, sh.m, ys), newMat(t, sh.n, sh.m, ts)
			dy := newMat(t, sh.n, sh.m, nil)
			count := float64(sh.n * sh.m)
			var want float64
			wantG, magG := make([]float64, len(ys)), make([]float64, len(ys))
			for i := range ys {
				d := float64(ys[i]) - float64(ts[i])
				want += d * d
				wantG[i], magG[i] = 2*d/count, math.Abs(2*d/count)
			}
			want /= count
			loss, err := lora.MSE(dy, y, tg)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(float64(loss) - want); d > (reftest.Gamma(sh.n*sh.m+2)+2*reftest.U32)*want {
				t.Errorf("loss %g, want %g", loss, want)
			}
			reftest.Close(t, "dy", read(t, dy), wantG, magG, 4*reftest.U32)
			lossOnly, err := lora.MSE(nil, y, tg)
			if err != nil {
				t.Fatal(err)
			}
			if lossOnly != loss {
				t.Errorf("loss without dy %g, with dy %g", lossOnly, loss)
			}
		})
	}
}

// teacher is the task of TestLearning: a frozen W, a teacher W* = W + ΔW*
// with ΔW* of rank 4, inputs x ~ N(0, 1) and the teacher's outputs.
type teacher struct {
	n, in, out     int
	w, delta, x, y []float32
}

func newTeacher(rng *rand.Rand, n, in, out, rank int) *teacher {
	tc := &teacher{n: n, in: in, out: out}
	tc.w = reftest.Normal(rng, out*in, 1/math.Sqrt(float64(in)))
	ba := mat.NewDense(out, rank, reftest.F64(reftest.Normal(rng, out*rank, 1)))
	aa := mat.NewDense(rank, in, reftest.F64(reftest.Normal(rng, rank*in, 1/math.Sqrt(float64(in)))))
	var d mat.Dense
	d.Mul(ba, aa)
	tc.delta = make([]float32, out*in)
	wstar := make([]float64, out*in)
	for i := range tc.delta {
		tc.delta[i] = float32(d.RawMatrix().Data[i])
		wstar[i] = float64(tc.w[i]) + float64(tc.delta[i])
	}
	tc.x = reftest.Normal(rng, n*in, 1)
	tc.y = make([]float32, n*out)
	for i := range n {
		for j := range out {
			var v float64
			for c := range in {
				v += float64(tc.x[i*in+c]) * wstar[j*in+c]
			}
			tc.y[i*out+j] = float32(v)
		}
	}
	return tc
}

// rankFloor returns the least mean squared error any adapter of rank r can
// reach on the teacher's data: the student's error is X·(ΔW* − s·B·A)ᵀ, and
// min over rank-r D of ‖X·(ΔW*ᵀ − D)‖² is the sum of the squared singular
// values of X·ΔW*ᵀ past the r-th (X has full column rank).
func (tc *teacher) rankFloor(r int) float64 {
	x := mat.NewDense(tc.n, tc.in, reftest.F64(tc.x))
	d := mat.NewDense(tc.out, tc.in, reftest.F64(tc.delta))
	var xd mat.Dense
	xd.Mul(x, d.T())
	var svd mat.SVD
	if !svd.Factorize(&xd, mat.SVDNone) {
		panic("SVD failed")
	}
	var tail float64
	for i, v := range svd.Values(nil) {
		if i >= r {
			tail += v * v
		}
	}
	return tail / float64(tc.n*tc.out)
}

// train trains a new rank-r adapter on the teacher's task with AdamW for
// steps steps and returns the loss before each step and after the last.
// W is checked bit for bit against its start every step.
func (tc *teacher) train(t *testing.T, r, steps int, opt *lora.AdamW) (*lora.Layer, []float32) {
	t.Helper()
	w := newMat(t, tc.out, tc.in, tc.w)
	l, err := lora.NewLayer(w, lora.Config{Rank: r, Init: lora.InitKaiming, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Free)
	x, target := newMat(t, tc.n, tc.in, tc.x), newMat(t, tc.n, tc.out, tc.y)
	y, dy := newMat(t, tc.n, tc.out, nil), newMat(t, tc.n, tc.out, nil)
	dA, dB := newMat(t, r, tc.in, nil), newMat(t, tc.out, r, nil)
	var losses []float32
	for step := 0; ; step++ {
		if err := l.Forward(y, x); err != nil {
			t.Fatal(err)
		}
		loss, err := lora.MSE(dy, y, target)
		if err != nil {
			t.Fatal(err)
		}
		losses = append(losses, loss)
		if step == steps {
			break
		}
		if err := l.Backward(nil, dA, dB, dy, x); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(l, dA, dB); err != nil {
			t.Fatal(err)
		}
		if step%25 == 0 {
			for i, v := range read(t, w) {
				if math.Float32bits(v) != math.Float32bits(tc.w[i]) {
					t.Fatalf("step %d: W[%d] = %g, was %g: W must stay frozen", step, i, v, tc.w[i])
				}
			}
		}
	}
	return l, losses
}

// TestLearning trains adapters on a teacher W* = W + ΔW* with ΔW* of rank 4.
// A rank-4 adapter from PEFT's init (B = 0, so it starts at the base layer's
// loss) reaches a loss below 1e-3 of its start within learnSteps steps of
// AdamW, W bit for bit unchanged; merged, it gives the trained outputs and
// the teacher's. A rank-1 adapter trained alike stays above the least loss
// any rank-1 adapter can reach, the tail of the singular values of X·ΔW*ᵀ,
// here more than a fifth of the starting loss: the rank limit of LoRA.
func TestLearning(t *testing.T) {
	const n, in, out, rank = 16, 12, 10, 4
	const learnSteps = 100
	rng := rand.New(rand.NewPCG(49, 50))
	tc := newTeacher(rng, n, in, out, rank)

	opt := lora.NewAdamW(0.1)
	defer opt.Free()
	l, losses := tc.train(t, rank, learnSteps, opt)
	start, end := losses[0], losses[len(losses)-1]
	t.Logf("rank %d: loss %.4g → %.4g in %d steps", rank, start, end, learnSteps)
	for i, v := range losses {
		if v < 1e-3*start {
			t.Logf("first below 1e-3 of the start at step %d", i)
			break
		}
	}
	if !(end < 1e-3*start) {
		t.Fatalf("rank %d: loss %g after %d steps, want below 1e-3 × %g", rank, end, learnSteps, start)
	}

	// Merged, the layer computes the trained outputs within the two forward
	// bounds, and the teacher's within the trained loss.
	x := newMat(t, n, in, tc.x)
	yu, ym := newMat(t, n, out, nil), newMat(t, n, out, nil)
	if err := l.Forward(yu, x); err != nil {
		t.Fatal(err)
	}
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	if err := l.Forward(ym, x); err != nil {
		t.Fatal(err)
	}
	p := &problem{n: n, in: in, out: out, r: rank, s: l.Scale(), x: tc.x, w: tc.w}
	p.a, p.b = read(t, l.A()), read(t, l.B())
	ref, mag := p.refForward(true)
	reftest.Close(t, "merged y", read(t, ym), ref, mag, reftest.Gamma(in+rank+3))
	reftest.Close(t, "unmerged y", read(t, yu), ref, mag, reftest.Gamma(in+rank+3))
	var se, base float64
	for i, v := range read(t, ym) {
		d := float64(v) - float64(tc.y[i])
		se += d * d
	}
	base = float64(start) * float64(n*out)
	if rel := math.Sqrt(se / base); rel > 0.04 {
		t.Errorf("merged layer vs teacher: relative RMS error %.3g, want ≤ 0.04 (√1e-3 ≈ 0.032)", rel)
	}
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}

	floor := tc.rankFloor(1)
	if floor < 0.2*float64(start) {
		t.Fatalf("rank-1 floor %g is below a fifth of the starting loss %g: a weak test", floor, start)
	}
	opt1 := lora.NewAdamW(0.1)
	defer opt1.Free()
	_, losses1 := tc.train(t, 1, learnSteps, opt1)
	lowest := float32(math.Inf(1))
	for _, v := range losses1 {
		lowest = min(lowest, v)
	}
	t.Logf("rank 1: loss %.4g → %.4g (lowest %.4g, floor %.4g)", losses1[0], losses1[len(losses1)-1], lowest, floor)
	if float64(lowest) < floor*(1-1e-4) {
		t.Errorf("rank 1: loss %g below the rank-1 floor %g", lowest, floor)
	}
	if lowest < 0.2*start {
		t.Errorf("rank 1: loss %g, want above a fifth of the start %g", lowest, start)
	}
}

// TestOptimizerState checks the state's lifetime: created by the first
// Step, released by Layer.Free and by the optimizer's Free, after which a
// Step starts afresh, bit for bit like a new optimizer's first.
func TestOptimizerState(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	p := newProblem(rng, 1, 10, 6, 2)
	ga, gb := reftest.Normal(rng, p.r*p.in, 1), reftest.Normal(rng, p.out*p.r, 1)
	dA, dB := newMat(t, p.r, p.in, ga), newMat(t, p.out, p.r, gb)
	per := int64(8 * p.r * (p.in + p.out))

	firstStep := func() ([]float32, []float32) {
		l, _ := p.layer(t)
		fresh := lora.NewAdamW(1e-3)
		defer fresh.Free()
		if err := fresh.Step(l, dA, dB); err != nil {
			t.Fatal(err)
		}
		return read(t, l.A()), read(t, l.B())
	}
	wantA, wantB := firstStep()

	opt := lora.NewAdamW(1e-3)
	l1, _ := p.layer(t)
	l2, _ := p.layer(t)
	for _, l := range []*lora.Layer{l1, l2, l1} {
		if err := opt.Step(l, dA, dB); err != nil {
			t.Fatal(err)
		}
	}
	if got := opt.StateBytes(); got != 2*per {
		t.Fatalf("StateBytes %d after stepping two layers, want %d", got, 2*per)
	}
	l2.Free()
	if got := opt.StateBytes(); got != per {
		t.Fatalf("StateBytes %d after one layer's Free, want %d", got, per)
	}
	if err := opt.Step(l2, dA, dB); !errors.Is(err, lora.ErrFreed) {
		t.Fatalf("Step on a freed layer: %v, want ErrFreed", err)
	}
	opt.Free()
	opt.Free() // idempotent
	if got := opt.StateBytes(); got != 0 {
		t.Fatalf("StateBytes %d after Free, want 0", got)
	}
	l3, _ := p.layer(t)
	if err := opt.Step(l3, dA, dB); err != nil {
		t.Fatal(err)
	}
	gotA, gotB := read(t, l3.A()), read(t, l3.B())
	for i := range gotA {
		if gotA[i] != wantA[i] {
			t.Fatalf("after Free, A[%d] = %g, a fresh optimizer's first step gives %g", i, gotA[i], wantA[i])
		}
	}
	for i := range gotB {
		if gotB[i] != wantB[i] {
			t.Fatalf("after Free, B[%d] = %g, a fresh optimizer's first step gives %g", i, gotB[i], wantB[i])
		}
	}
	l3.Free()
	if got := opt.StateBytes(); got != 0 {
		t.Fatalf("StateBytes %d after the last layer's Free, want 0", got)
	}
	var nilOpt *lora.AdamW
	nilOpt.Free()
	var nilSGD *lora.SGD
	nilSGD.Free()
	if nilOpt.StateBytes() != 0 || nilSGD.StateBytes() != 0 {
		t.Error("a nil optimizer holds state")
	}
}

// TestConcurrentTraining runs Backward from several goroutines on one layer
// while other layers are stepped by one shared optimizer, and checks every
// result against the serial one.
func TestConcurrentTraining(t *testing.T) {
	rng := rand.New(rand.NewPCG(53, 54))
	p := newProblem(rng, 5, 24, 16, 3)
	g := reftest.Normal(rng, p.n*p.out, 1)
	l, _ := p.layer(t)
	x, dy := newMat(t, p.n, p.in, p.x), newMat(t, p.n, p.out, g)
	type grads struct{ dx, dA, dB *lora.Matrix }
	mk := func() grads {
		return grads{newMat(t, p.n, p.in, nil), newMat(t, p.r, p.in, nil), newMat(t, p.out, p.r, nil)}
	}
	ref := mk()
	if err := l.Backward(ref.dx, ref.dA, ref.dB, dy, x); err != nil {
		t.Fatal(err)
	}

	// The serial result of two steps on a copy of the layer.
	serial := lora.NewAdamW(1e-3)
	defer serial.Free()
	ls, _ := p.layer(t)
	for range 2 {
		if err := serial.Step(ls, ref.dA, ref.dB); err != nil {
			t.Fatal(err)
		}
	}
	wantA := read(t, ls.A())

	const workers = 4
	outs := make([]grads, workers)
	stepped := make([]*lora.Layer, workers)
	for i := range outs {
		outs[i] = mk()
		stepped[i], _ = p.layer(t)
	}
	shared := lora.NewAdamW(1e-3)
	defer shared.Free()
	var wg sync.WaitGroup
	errs := make([]error, 2*workers)
	for i := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := l.Backward(outs[i].dx, outs[i].dA, outs[i].dB, dy, x); err != nil {
					errs[i] = err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 2 {
				if err := shared.Step(stepped[i], ref.dA, ref.dB); err != nil {
					errs[workers+i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	same := func(what string, got, want []float32) {
		t.Helper()
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s[%d] = %g, serially %g", what, i, got[i], want[i])
			}
		}
	}
	for i := range workers {
		same("dx", read(t, outs[i].dx), read(t, ref.dx))
		same("dA", read(t, outs[i].dA), read(t, ref.dA))
		same("dB", read(t, outs[i].dB), read(t, ref.dB))
		same("stepped A", read(t, stepped[i].A()), wantA)
	}
}

// TestTrainErrors checks that every bad call to the training API returns the
// right error, with a message naming what was given and wanted, and changes
// nothing: no gradient, no weight, no optimizer state.
func TestTrainErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(55, 56))
	const n, in, out, r = 3, 5, 4, 2
	p := newProblem(rng, n, in, out, r)
	l, w := p.layer(t)
	x, dy := newMat(t, n, in, p.x), newMat(t, n, out, reftest.Normal(rng, n*out, 1))
	dx := newMat(t, n, in, reftest.Normal(rng, n*in, 1))
	dA, dB := newMat(t, r, in, reftest.Normal(rng, r*in, 1)), newMat(t, out, r, reftest.Normal(rng, out*r, 1))
	y, target := newMat(t, n, out, reftest.Normal(rng, n*out, 1)), newMat(t, n, out, reftest.Normal(rng, n*out, 1))
	freed, _ := lora.NewMatrix(r, in)
	freed.Free()

	// adamWith returns a Step of PyTorch's defaults changed by set, on l.
	adamWith := func(set func(*lora.AdamW)) func() error {
		return func() error {
			o := lora.NewAdamW(1e-3)
			set(o)
			defer o.Free()
			return o.Step(l, dA, dB)
		}
	}
	// Every optimizer has stepped l once, so that a failed Step that touched
	// the state would show in the next one.
	adam, sgd := lora.NewAdamW(0.01), &lora.SGD{LR: 0.01, Momentum: 0.5}
	defer adam.Free()
	defer sgd.Free()
	for _, step := range []func(*lora.Layer, *lora.Matrix, *lora.Matrix) error{adam.Step, sgd.Step} {
		if err := step(l, dA, dB); err != nil {
			t.Fatal(err)
		}
	}
	all := snap(t, w, l.A(), l.B(), x, dy, dx, dA, dB, y, target)

	merged := func(f func(*lora.Layer) error) func() error {
		return func() error {
			lm, wm := p.layer(t)
			if err := lm.Merge(); err != nil {
				return err
			}
			before := snap(t, wm, lm.A(), lm.B())
			err := f(lm)
			before.unchanged(t, "merged layer")
			return err
		}
	}
	calls := []struct {
		name    string
		f       func() error
		want    error
		message string
	}{
		{"Backward nil layer", func() error { var nl *lora.Layer; return nl.Backward(dx, dA, dB, dy, x) }, lora.ErrNil, "layer is nil"},
		{"Backward nil dA", func() error { return l.Backward(dx, nil, dB, dy, x) }, lora.ErrNil, "dA is nil"},
		{"Backward nil dy", func() error { return l.Backward(dx, dA, dB, nil, x) }, lora.ErrNil, "dy is nil"},
		{"Backward freed dB", func() error { return l.Backward(dx, dA, freed, dy, x) }, lora.ErrFreed, "dB is freed"},
		{"Backward x shape", func() error { return l.Backward(dx, dA, dB, dy, newMat(t, n, in+1, nil)) }, lora.ErrShape, "x is 3×6, want n×5"},
		{"Backward dy shape", func() error { return l.Backward(dx, dA, dB, newMat(t, n+1, out, nil), x) }, lora.ErrShape, "dy is 4×4, want 3×4"},
		{"Backward dA shape", func() error { return l.Backward(dx, newMat(t, r+1, in, nil), dB, dy, x) }, lora.ErrShape, "dA is 3×5, want 2×5"},
		{"Backward dB shape", func() error { return l.Backward(dx, dA, newMat(t, out, r+1, nil), dy, x) }, lora.ErrShape, "dB is 4×3, want 4×2"},
		{"Backward dx shape", func() error { return l.Backward(newMat(t, n, in-1, nil), dA, dB, dy, x) }, lora.ErrShape, "dx is 3×4, want 3×5"},
		{"Backward dx is x", func() error { return l.Backward(x, dA, dB, dy, x) }, lora.ErrAlias, "dx is also x"},
		{"Backward dA is A", func() error { return l.Backward(dx, l.A(), dB, dy, x) }, lora.ErrAlias, "dA is also the layer's A"},
		{"Backward dA is dB", func() error {
			sq, err := lora.NewLayerFrom(newMat(t, 4, 4, nil), newMat(t, 4, 4, nil), newMat(t, 4, 4, nil), 1)
			if err != nil {
				return err
			}
			g := newMat(t, 4, 4, nil)
			return sq.Backward(nil, g, g, newMat(t, 1, 4, nil), newMat(t, 1, 4, nil))
		}, lora.ErrAlias, "dA and dB are the same"},
		{"AdamW nil layer", func() error { return adam.Step(nil, dA, dB) }, lora.ErrNil, "layer is nil"},
		{"AdamW nil optimizer", func() error { var o *lora.AdamW; return o.Step(l, dA, dB) }, lora.ErrNil, "optimizer is nil"},
		{"AdamW dA shape", func() error { return adam.Step(l, newMat(t, r, in+1, nil), dB) }, lora.ErrShape, "dA is 2×6, want 2×5 like A"},
		{"AdamW dB shape", func() error { return adam.Step(l, dA, newMat(t, out+1, r, nil)) }, lora.ErrShape, "dB is 5×2, want 4×2 like B"},
		{"AdamW freed dA", func() error { return adam.Step(l, freed, dB) }, lora.ErrFreed, "dA is freed"},
		{"AdamW dA is A", func() error { return adam.Step(l, l.A(), dB) }, lora.ErrAlias, "the layer's A is also dA"},
		{"AdamW merged", merged(func(lm *lora.Layer) error { return adam.Step(lm, dA, dB) }), lora.ErrMerged, "Unmerge first"},
		{"AdamW zero value", func() error { return (&lora.AdamW{}).Step(l, dA, dB) }, lora.ErrConfig, "Eps is 0, want > 0"},
		{"AdamW negative LR", adamWith(func(o *lora.AdamW) { o.LR = -1 }), lora.ErrConfig, "LR is -1"},
		{"AdamW Inf LR", adamWith(func(o *lora.AdamW) { o.LR = float32(math.Inf(1)) }), lora.ErrConfig, "LR is +Inf"},
		{"AdamW Beta1 1", adamWith(func(o *lora.AdamW) { o.Beta1 = 1 }), lora.ErrConfig, "Beta1 is 1"},
		{"AdamW Beta1 negative", adamWith(func(o *lora.AdamW) { o.Beta1 = -0.1 }), lora.ErrConfig, "Beta1 is -0.1"},
		{"AdamW Beta2 NaN", adamWith(func(o *lora.AdamW) { o.Beta2 = float32(math.NaN()) }), lora.ErrConfig, "Beta2 is NaN"},
		{"AdamW Eps negative", adamWith(func(o *lora.AdamW) { o.Eps = -1e-8 }), lora.ErrConfig, "Eps is -1e-08"},
		{"AdamW WeightDecay Inf", adamWith(func(o *lora.AdamW) { o.WeightDecay = float32(math.Inf(1)) }), lora.ErrConfig, "WeightDecay is +Inf"},
		{"AdamW WeightDecay negative", adamWith(func(o *lora.AdamW) { o.WeightDecay = -1 }), lora.ErrConfig, "WeightDecay is -1"},
		{"SGD nil layer", func() error { return sgd.Step(nil, dA, dB) }, lora.ErrNil, "layer is nil"},
		{"SGD dB shape", func() error { return sgd.Step(l, dA, newMat(t, out, r-1, nil)) }, lora.ErrShape, "dB is 4×1, want 4×2 like B"},
		{"SGD merged", merged(func(lm *lora.Layer) error { return sgd.Step(lm, dA, dB) }), lora.ErrMerged, "SGD.Step"},
		{"SGD momentum 1", func() error { return (&lora.SGD{Momentum: 1}).Step(l, dA, dB) }, lora.ErrConfig, "Momentum is 1"},
		{"SGD negative LR", func() error { return (&lora.SGD{LR: -0.1}).Step(l, dA, dB) }, lora.ErrConfig, "LR is -0.1"},
		{"SGD NaN LR", func() error { return lora.NewSGD(float32(math.NaN())).Step(l, dA, dB) }, lora.ErrConfig, "LR is NaN"},
		{"MSE shape", func() error { _, err := lora.MSE(dy, y, newMat(t, n, out+1, nil)); return err }, lora.ErrShape, "target is 3×5, want 3×4 like y"},
		{"MSE dy shape", func() error { _, err := lora.MSE(dx, y, target); return err }, lora.ErrShape, "dy is 3×5, want 3×4 like y"},
		{"MSE dy is y", func() error { _, err := lora.MSE(y, y, target); return err }, lora.ErrAlias, "dy is also y"},
		{"MSE nil target", func() error { _, err := lora.MSE(dy, y, nil); return err }, lora.ErrNil, "target is nil"},
		{"MSE freed y", func() error { _, err := lora.MSE(dy, freed, target); return err }, lora.ErrFreed, "y is freed"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.f()
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want one wrapping %v", err, c.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "lora: ") || !strings.Contains(msg, c.message) {
				t.Errorf("message %q, want prefix \"lora: \" and %q", msg, c.message)
			}
			all.unchanged(t, c.name)
		})
	}

	// The optimizers' state is untouched too: one more step of each on l
	// equals one more step on a twin layer that saw no failed call.
	twin, _ := p.layer(t)
	adam2, sgd2 := lora.NewAdamW(0.01), &lora.SGD{LR: 0.01, Momentum: 0.5}
	defer adam2.Free()
	defer sgd2.Free()
	for _, step := range []func(*lora.Layer, *lora.Matrix, *lora.Matrix) error{adam2.Step, sgd2.Step} {
		if err := step(twin, dA, dB); err != nil {
			t.Fatal(err)
		}
	}
	for _, pair := range [][2]func(*lora.Layer, *lora.Matrix, *lora.Matrix) error{{adam.Step, adam2.Step}, {sgd.Step, sgd2.Step}} {
		if err := pair[0](l, dA, dB); err != nil {
			t.Fatal(err)
		}
		if err := pair[1](twin, dA, dB); err != nil {
			t.Fatal(err)
		}
	}
	for what, m := range map[string][2]*lora.Matrix{"A": {l.A(), twin.A()}, "B": {l.B(), twin.B()}} {
		got, want := read(t, m[0]), read(t, m[1])
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s[%d] = %g after the failed calls, %g on a twin that saw none: the optimizer state changed", what, i, got[i], want[i])
			}
		}
	}
}
