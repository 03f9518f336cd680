package lora

// Backward on every dtype of dx, dy, x and W against the float64 oracle of
// internal/reftest (see dtype_test.go); dA and dB F32 only; Forward and
// Backward split among goroutines and run concurrently on half operands.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// TestDTypeBackward runs Backward with every dtype of dx, dy, x and W,
// unmerged and merged, dA and dB F32. Bounds, as in the F32 suite: dA is a
// float32 sum over n of terms that are each a sum over out (U = dy·B), with
// the scale: γ(out+n+3); dB likewise over n and in: γ(in+n+3); dx a sum of
// out products plus r adapter terms each a sum of out products: γ(out+r+3).
// dx is rounded once more to its dtype (reftest.Tol). On a merged layer dx is
// dy·W with W as stored after Merge, and its bound γ(out+1).
func TestDTypeBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, sh := range dtShapes() {
		for _, wdt := range dtAll {
			for _, c := range dtCombos(3, sh.full) {
				dxdt, dydt, xdt := c[0], c[1], c[2]
				seed := rng.Uint64()
				t.Run(fmt.Sprintf("%v/W=%v,dx=%v,dy=%v,x=%v", sh.Shape, wdt, dxdt, dydt, xdt), func(t *testing.T) {
					dtCheckBackward(t, rand.New(rand.NewPCG(seed, 2)), sh.Shape, wdt, dxdt, dydt, xdt)
				})
			}
		}
	}
}

func dtCheckBackward(t *testing.T, rng *rand.Rand, sh reftest.Shape, wdt, dxdt, dydt, xdt DType) {
	const s = 0.75
	l, w, wv, av, bv := dtLayer(t, rng, wdt, sh, s)
	x, xv := dtOperand(t, xdt, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
	dy, dyv := dtOperand(t, dydt, sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
	for _, merged := range []bool{false, true} {
		if merged {
			if err := l.Merge(); err != nil {
				t.Fatalf("Merge: %v", err)
			}
			wv = reftest.F64(dtRead(t, w))
		}
		dA, dB := dtOutput(t, F32, sh.R, sh.In), dtOutput(t, F32, sh.Out, sh.R)
		dx := dtOutput(t, dxdt, sh.N, sh.In)
		ins := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x, "dy", dy)
		if err := l.Backward(dx, dA, dB, dy, x); err != nil {
			t.Fatalf("merged=%v: Backward: %v", merged, err)
		}
		ins.unchanged(t, fmt.Sprintf("merged=%v: after Backward", merged))
		ref := reftest.Backward(sh, s, dyv, xv, wv, av, bv, merged)
		what := fmt.Sprintf("merged=%v ", merged)
		gotA, gotB := dtRead(t, dA), dtRead(t, dB)
		reftest.Rounded(t, what+"dA", dtFormatOf(F32), gotA, ref.DA, ref.MagA, reftest.Gamma(sh.Out+sh.N+3))
		reftest.Rounded(t, what+"dB", dtFormatOf(F32), gotB, ref.DB, ref.MagB, reftest.Gamma(sh.In+sh.N+3))
		gx := reftest.Gamma(sh.Out + sh.R + 3)
		if merged {
			gx = reftest.Gamma(sh.Out + 1)
		}
		reftest.Rounded(t, what+"dx", dtFormatOf(dxdt), dtRead(t, dx), ref.DX, ref.MagX, gx)

		// Without dx: dA and dB bit for bit the same.
		if dxdt == dydt {
			dA2, dB2 := dtOutput(t, F32, sh.R, sh.In), dtOutput(t, F32, sh.Out, sh.R)
			if err := l.Backward(nil, dA2, dB2, dy, x); err != nil {
				t.Fatalf("%sBackward without dx: %v", what, err)
			}
			for name, p := range map[string][2][]float32{"dA": {gotA, dtRead(t, dA2)}, "dB": {gotB, dtRead(t, dB2)}} {
				for i := range p[0] {
					if math.Float32bits(p[0][i]) != math.Float32bits(p[1][i]) {
						t.Fatalf("%s%s[%d] = %g without dx, %g with dx", what, name, i, p[1][i], p[0][i])
					}
				}
			}
		}
	}
	if err := l.Unmerge(); err != nil {
		t.Fatalf("Unmerge: %v", err)
	}
}

// TestDTypeGradientsF32: dA and dB must be F32 in Backward and in the
// optimizers' Step; A and B of NewLayerFrom too; NewLayer on a half W makes
// F32 A and B, and a fresh layer's Forward equals Linear (B = 0).
func TestDTypeGradientsF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	sh := dtShape(3, 13, 11, 2)
	for _, wdt := range dtAll {
		l, w, _, _, _ := dtLayer(t, rng, wdt, sh, 0.5)
		x, _ := dtOperand(t, F16, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
		dy, _ := dtOperand(t, BF16, sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
		for _, hdt := range []DType{F16, BF16} {
			dx := dtOutput(t, F16, sh.N, sh.In)
			okA, okB := dtOutput(t, F32, sh.R, sh.In), dtOutput(t, F32, sh.Out, sh.R)
			hA, hB := dtOutput(t, hdt, sh.R, sh.In), dtOutput(t, hdt, sh.Out, sh.R)
			outs := dtSnap(t, "dx", dx, "dA", okA, "dB", okB, "half dA", hA, "half dB", hB, "A", l.A(), "B", l.B())
			what := fmt.Sprintf("W %v, %v", wdt, hdt)
			dtWantErr(t, what+": Backward with a half dA", l.Backward(dx, hA, okB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": Backward with a half dB", l.Backward(dx, okA, hB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": Backward without dx, a half dA", l.Backward(nil, hA, okB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": AdamW.Step with a half dA", NewAdamW(1e-3).Step(l, hA, okB), ErrDType, "AdamW.Step")
			dtWantErr(t, what+": AdamW.Step with a half dB", NewAdamW(1e-3).Step(l, okA, hB), ErrDType, "AdamW.Step")
			dtWantErr(t, what+": SGD.Step with a half dA", NewSGD(1e-3).Step(l, hA, okB), ErrDType, "SGD.Step")
			dtWantErr(t, what+": SGD.Step with a half dB", NewSGD(1e-3).Step(l, okA, hB), ErrDType, "SGD.Step")
			outs.unchanged(t, what+": refused Backward and Step")

			a, _ := dtOperand(t, hdt, sh.R, sh.In, reftest.Normal(rng, sh.R*sh.In, 1))
			b, _ := dtOperand(t, hdt, sh.Out, sh.R, reftest.Normal(rng, sh.Out*sh.R, 1))
			a32, _ := dtOperand(t, F32, sh.R, sh.In, reftest.Normal(rng, sh.R*sh.In, 1))
			b32, _ := dtOperand(t, F32, sh.Out, sh.R, reftest.Normal(rng, sh.Out*sh.R, 1))
			bad, err := NewLayerFrom(w, a, b32, 1)
			dtWantErr(t, what+": NewLayerFrom with a half A", err, ErrDType, "NewLayerFrom")
			bad.Free()
			bad, err = NewLayerFrom(w, a32, b, 1)
			dtWantErr(t, what+": NewLayerFrom with a half B", err, ErrDType, "NewLayerFrom")
			bad.Free()
		}
		// The gradients with F32 dA and dB (and the F16 dx) are taken.
		dA, dB := dtOutput(t, F32, sh.R, sh.In), dtOutput(t, F32, sh.Out, sh.R)
		if err := l.Backward(dtOutput(t, F16, sh.N, sh.In), dA, dB, dy, x); err != nil {
			t.Errorf("W %v: Backward with F32 dA, dB: %v", wdt, err)
		}
		if err := NewSGD(1e-3).Step(l, dA, dB); err != nil {
			t.Errorf("W %v: SGD.Step with F32 dA, dB: %v", wdt, err)
		}

		nl, err := NewLayer(w, Config{Rank: 3, Seed: 7})
		if err != nil {
			t.Fatalf("NewLayer on a %v W: %v", wdt, err)
		}
		t.Cleanup(nl.Free)
		if nl.A().DType() != F32 || nl.B().DType() != F32 {
			t.Errorf("NewLayer on a %v W: A is %v, B is %v, want f32", wdt, nl.A().DType(), nl.B().DType())
		}
		// B = 0: Forward computes x·Wᵀ + 0, each element the same float32
		// sum as Linear's up to the kernels' order; both within their bound
		// of the same reference, so compare them with twice that bound.
		yf, yl := dtOutput(t, F32, sh.N, sh.Out), dtOutput(t, F32, sh.N, sh.Out)
		if err := nl.Forward(yf, x); err != nil {
			t.Fatalf("NewLayer on a %v W: Forward: %v", wdt, err)
		}
		if err := Linear(yl, x, w); err != nil {
			t.Fatal(err)
		}
		xv, wv := reftest.F64(dtRead(t, x)), reftest.F64(dtRead(t, w))
		want, mag := reftest.Forward(sh, 0, xv, wv, nil, nil)
		reftest.Rounded(t, "fresh layer's Forward", dtFormatOf(F32), dtRead(t, yf), want, mag, reftest.Gamma(sh.In+sh.R+3))
		reftest.Rounded(t, "Linear", dtFormatOf(F32), dtRead(t, yl), want, mag, reftest.Gamma(sh.In+1))
	}
}

// TestDTypeSplit runs the half-W paths of the CPU backend above the size at
// which it splits work among goroutines (2¹⁶ multiply-adds), with
// GOMAXPROCS at 7 so that the shares are several and uneven: Forward at n
// = 1 and 3 (rows of W in groups of four) and 20 (two panels of W), Linear,
// Backward, and Merge's exact rounding, with the bounds of the tests above.
func TestDTypeSplit(t *testing.T) {
	if Backend() != "cpu" {
		t.Skip("the split among goroutines is the CPU backend's")
	}
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(91, 92))
	for _, sh := range []reftest.Shape{dtShape(1, 700, 263, 16), dtShape(3, 251, 263, 9), dtShape(20, 130, 600, 8)} {
		for _, wdt := range []DType{F16, BF16} {
			xdt, ydt := BF16, F32
			if sh.N == 3 {
				xdt, ydt = F32, F16
			}
			t.Run(fmt.Sprintf("%v/W=%v", sh, wdt), func(t *testing.T) {
				dtCheckForward(t, rng, sh, wdt, xdt, ydt)
				dtCheckBackward(t, rng, sh, wdt, ydt, xdt, xdt)

				w, _ := dtOperand(t, wdt, sh.Out, sh.In, dtSpread(rng, sh.Out*sh.In))
				w32, _ := dtOperand(t, F32, sh.Out, sh.In, dtRead(t, w))
				adata, bdata := reftest.Normal(rng, sh.R*sh.In, 1/math.Sqrt(float64(sh.In))), reftest.Normal(rng, sh.Out*sh.R, 1)
				for _, m := range []*Matrix{w, w32} {
					a, _ := dtOperand(t, F32, sh.R, sh.In, adata)
					b, _ := dtOperand(t, F32, sh.Out, sh.R, bdata)
					l, err := NewLayerFrom(m, a, b, 1.5)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(l.Free)
					if err := l.Merge(); err != nil {
						t.Fatalf("Merge on %v W: %v", m.DType(), err)
					}
				}
				dtSameAsRounded(t, "Merge", dtFormatOf(wdt), dtReadBits(t, w), dtRead(t, w32))
			})
		}
	}
}

// TestDTypeConcurrent runs Forward and Backward with half operands from
// several goroutines at once on one layer over a half W, each with its own
// operands: every result must equal, bit for bit, the same call made alone
// (the float32 stand-ins of half operands are per call).
func TestDTypeConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(93, 94))
	sh := dtShape(5, 45, 37, 3)
	l, _, _, _, _ := dtLayer(t, rng, BF16, sh, 0.5)
	const workers = 6
	type job struct {
		x, dy, y, dx, dA, dB *Matrix
		y0, dx0, dA0, dB0    []uint32
	}
	jobs := make([]*job, workers)
	for i := range jobs {
		j := &job{}
		j.x, _ = dtOperand(t, dtAll[i%3], sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
		j.dy, _ = dtOperand(t, dtAll[(i+1)%3], sh.N, sh.Out, reftest.Normal(rng, sh.N*sh.Out, 1))
		j.y = dtOutput(t, dtAll[(i+2)%3], sh.N, sh.Out)
		j.dx = dtOutput(t, dtAll[(i+1)%3], sh.N, sh.In)
		j.dA, j.dB = dtOutput(t, F32, sh.R, sh.In), dtOutput(t, F32, sh.Out, sh.R)
		if err := l.Forward(j.y, j.x); err != nil {
			t.Fatal(err)
		}
		if err := l.Backward(j.dx, j.dA, j.dB, j.dy, j.x); err != nil {
			t.Fatal(err)
		}
		j.y0, j.dx0, j.dA0, j.dB0 = dtBits(t, j.y), dtBits(t, j.dx), dtBits(t, j.dA), dtBits(t, j.dB)
		jobs[i] = j
	}
	errs := make(chan error, workers)
	for _, j := range jobs {
		go func() {
			for range 5 {
				if err := l.Forward(j.y, j.x); err != nil {
					errs <- err
					return
				}
				if err := l.Backward(j.dx, j.dA, j.dB, j.dy, j.x); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := Sync(); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		for _, c := range []struct {
			name string
			m    *Matrix
			want []uint32
		}{{"y", j.y, j.y0}, {"dx", j.dx, j.dx0}, {"dA", j.dA, j.dA0}, {"dB", j.dB, j.dB0}} {
			got := dtBits(t, c.m)
			for k := range got {
				if got[k] != c.want[k] {
					t.Errorf("goroutine %d: %s (%v) [%d] is %#x run concurrently, %#x alone", i, c.name, c.m.DType(), k, got[k], c.want[k])
					break
				}
			}
		}
	}
}
