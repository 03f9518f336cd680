package lora_test

// Merge and Unmerge never create a NaN or ±Inf in W: an update that cannot
// be proved finite is computed exactly, and refused, W untouched, when any
// element would overflow.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

const maxF32 = math.MaxFloat32

// full returns n copies of v.
func full(n int, v float32) []float32 { return fill(make([]float32, n), v) }

// refuseMerge checks that f (a Merge or Unmerge) returns ErrNonFinite with a
// message holding want, and that W, A and B are bit for bit unchanged.
func refuseMerge(t *testing.T, l *lora.Layer, f func() error, want string) {
	t.Helper()
	before := snap(t, l.W(), l.A(), l.B())
	merged := l.Merged()
	err := f()
	if !errors.Is(err, lora.ErrNonFinite) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want ErrNonFinite saying %q", err, want)
	}
	before.unchanged(t, "refused update")
	if l.Merged() != merged {
		t.Errorf("Merged() = %v after a refused update, was %v", l.Merged(), merged)
	}
}

// finiteMerged checks that W is finite and within the rounding of
// W₀ + s·B·A computed in float64.
func finiteMerged(t *testing.T, l *lora.Layer, w0, a, b []float32) {
	t.Helper()
	out, in := l.W().Dims()
	r := l.Rank()
	want, _, mag := reftest.Merge(out, in, r, float64(l.Scale()), w0, a, b)
	got := read(t, l.W())
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("W[%d] = %g after Merge", i, v)
		}
	}
	reftest.Close(t, "merged W", got, want, mag, reftest.Gamma(r+2))
}

// TestMergeOverflow covers the update of issue's hostile case, A = B = 1e20
// (s·B·A = 1e40·r), an update that is tiny next to W but tips an element
// near MaxFloat32 over, the same with an element near −MaxFloat32, and
// Unmerge of a W written after Merge.
func TestMergeOverflow(t *testing.T) {
	t.Run("A=B=1e20", func(t *testing.T) {
		const out, in, r = 5, 7, 2
		w := newMat(t, out, in, full(out*in, 0.5))
		l, err := lora.NewLayerFrom(w, newMat(t, r, in, full(r*in, 1e20)), newMat(t, out, r, full(out*r, 1e20)), 1)
		if err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Merge, "overflows float32")
	})
	t.Run("near MaxFloat32", func(t *testing.T) {
		// W[1,2] = MaxFloat32·(1 − 2⁻²³) and an update of 1e32 there (4 ulps
		// of W at that size): the sum exceeds MaxFloat32 by more than half an
		// ulp and rounds to +Inf.
		const out, in, r = 3, 4, 1
		w0 := full(out*in, 1)
		w0[1*in+2] = maxF32 * (1 - 0x1p-23)
		a, b := full(r*in, 1e16), full(out*r, 0)
		b[1] = 1e16
		l, err := lora.NewLayerFrom(newMat(t, out, in, w0), newMat(t, r, in, a), newMat(t, out, r, b), 1)
		if err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Merge, "overflows float32")
		// Negative: −MaxFloat32 and a negative update.
		w0[1*in+2] = -w0[1*in+2]
		if err := l.W().Write(w0); err != nil {
			t.Fatal(err)
		}
		b[1] = -1e16
		if err := l.B().Write(b); err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Merge, "overflows float32")
		// The same update of the other sign moves away from the edge.
		b[1] = 1e16
		if err := l.B().Write(b); err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		finiteMerged(t, l, w0, a, b)
	})
	t.Run("Unmerge after a Write", func(t *testing.T) {
		const out, in, r = 4, 4, 1
		a, b := full(r*in, 1e19), full(out*r, 1e19)
		l, err := lora.NewLayerFrom(newMat(t, out, in, full(out*in, 1)), newMat(t, r, in, a), newMat(t, out, r, b), 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		// W − s·B·A = −2.5e38 − 1e38 overflows.
		if err := l.W().Write(full(out*in, -2.5e38)); err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Unmerge, "W − s·B·A overflows float32")
	})
	t.Run("s·B overflows", func(t *testing.T) {
		// s·B = 1e40 overflows before the product with A = 1e-30 brings the
		// update back to 1e10.
		l, err := lora.NewLayerFrom(newMat(t, 2, 2, nil), newMat(t, 1, 2, full(2, 1e-30)), newMat(t, 2, 1, full(2, 1e10)), 1e30)
		if err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Merge, "overflows float32")
	})
	t.Run("non-finite W", func(t *testing.T) {
		for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			w0 := full(12, 1)
			w0[11] = v
			l, err := lora.NewLayerFrom(newMat(t, 3, 4, w0), newMat(t, 1, 4, full(4, 1)), newMat(t, 3, 1, full(3, 1)), 1)
			if err != nil {
				t.Fatal(err)
			}
			refuseMerge(t, l, l.Merge, "W holds NaN or Inf")
		}
	})
}

// TestMergeExactCheck has updates for which the bound
// max|W| + |s|·max_i Σₖ|B[i,k]|·max|A| exceeds MaxFloat32 while every
// element stays finite, because the largest elements of W and of the
// update are in different rows, or because they have opposite signs: Merge
// computes them exactly, and succeeds, and Unmerge restores W.
func TestMergeExactCheck(t *testing.T) {
	const out, in, r = 6, 5, 2
	for _, c := range []struct {
		name  string
		wrow  float32 // W's row 0
		brow  float32 // B's rows 1…: the update is 2·brow·1e19 there
		bzero bool    // B's row 0 is zero (else brow)
	}{
		{"rows apart", 3e38, 1e19, true},
		{"opposite signs", 3e38, -1e19, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w0 := full(out*in, 1)
			copy(w0, full(in, c.wrow))
			a, b := full(r*in, 1e19), full(out*r, c.brow)
			if c.bzero {
				b[0], b[1] = 0, 0
			}
			l, err := lora.NewLayerFrom(newMat(t, out, in, w0), newMat(t, r, in, a), newMat(t, out, r, b), 0.5)
			if err != nil {
				t.Fatal(err)
			}
			for cycle := range 3 {
				if err := l.Merge(); err != nil {
					t.Fatalf("cycle %d: %v", cycle, err)
				}
				finiteMerged(t, l, w0, a, b)
				if err := l.Unmerge(); err != nil {
					t.Fatalf("cycle %d: %v", cycle, err)
				}
				p := &problem{out: out, in: in, r: r, s: 0.5, w: w0, a: a, b: b}
				checkRestored(t, read(t, l.W()), p, 2)
			}
		})
	}
}

// TestMergeLargeElementAnywhere puts one large element of W at the start,
// the middle or the end of a W large enough for its largest magnitude to be
// found by several goroutines, and a row of large elements in the last rows
// of a W that the exact check goes through in several blocks of rows.
func TestMergeLargeElementAnywhere(t *testing.T) {
	manyProcs(t)
	const in, r = 600, 1
	// 2000 rows: the CPU's exact check goes through 1747 rows at a time.
	// The emulated kernels take the same path far more slowly.
	out := 2000
	if lora.Backend() == "cudaemu" {
		out = 200
	}
	n := out * in
	a := full(r*in, 1e19)
	// 400 rows: 240000 elements, 7 shares of the search for max|W|.
	outS := min(400, out)
	nS := outS * in
	b := full(outS*r, 1e19) // the update is 1e38 everywhere
	for _, at := range []int{0, nS / 2, nS/3 + 1, nS - 1} {
		t.Run(fmt.Sprintf("W[%d]", at), func(t *testing.T) {
			w0 := full(nS, 1)
			w0[at] = 2.5e38
			l, err := lora.NewLayerFrom(newMat(t, outS, in, w0), newMat(t, r, in, a), newMat(t, outS, r, b), 1)
			if err != nil {
				t.Fatal(err)
			}
			refuseMerge(t, l, l.Merge, "overflows float32")
		})
	}
	// The update is 1e38 in the last row only, W is 2.5e38 in the first:
	// the bound fails, and the exact check must find the last row finite
	// (W 1 there) or not (W 2.5e38 there).
	for _, last := range []float32{1, 2.5e38} {
		t.Run(fmt.Sprintf("last row %g", last), func(t *testing.T) {
			w0 := full(n, 1)
			copy(w0, full(in, 2.5e38))
			copy(w0[n-in:], full(in, last))
			bl := full(out*r, 0)
			bl[out-1] = 1e19
			l, err := lora.NewLayerFrom(newMat(t, out, in, w0), newMat(t, r, in, a), newMat(t, out, r, bl), 1)
			if err != nil {
				t.Fatal(err)
			}
			if last == 1 {
				if err := l.Merge(); err != nil {
					t.Fatal(err)
				}
				got := read(t, l.W())
				if got[0] != 2.5e38 || got[n-1] != 1e38 {
					t.Fatalf("merged W[0] = %g, W[%d] = %g, want 2.5e38 and 1e38", got[0], n-1, got[n-1])
				}
				return
			}
			refuseMerge(t, l, l.Merge, "overflows float32")
		})
	}
}

// TestMergeBoundFollowsWrites merges and unmerges once, so that the layer
// knows a bound on max|W|, then writes W ≈ 2.5e38 through each operation
// that can write a matrix, and checks that the next Merge, whose update is
// 1e38, is refused: the operation must have made the bound unknown.
func TestMergeBoundFollowsWrites(t *testing.T) {
	type setup struct {
		w     *lora.Matrix // the W of the layer under test
		write func() error // writes ≈ 2.5e38 into w
	}
	ones := func(r, c int) *lora.Matrix { return newMat(t, r, c, full(r*c, 1)) }
	for _, c := range []struct {
		name string
		make func(t *testing.T) setup
	}{
		{"Write", func(t *testing.T) setup {
			w := ones(4, 4)
			return setup{w, func() error { return w.Write(full(16, 2.5e38)) }}
		}},
		{"Axpy", func(t *testing.T) setup {
			w := ones(4, 4)
			return setup{w, func() error { return lora.Axpy(w, 1, newMat(t, 4, 4, full(16, 2.5e38))) }}
		}},
		{"AddBias", func(t *testing.T) setup {
			w := ones(4, 4)
			return setup{w, func() error { return lora.AddBias(w, newMat(t, 1, 4, full(4, 2.5e38))) }}
		}},
		{"Linear", func(t *testing.T) setup {
			w := ones(4, 4)
			return setup{w, func() error { return lora.Linear(w, ones(4, 1), newMat(t, 4, 1, full(4, 2.5e38))) }}
		}},
		{"Forward", func(t *testing.T) setup {
			w := ones(4, 4)
			l2, err := lora.NewLayerFrom(newMat(t, 4, 1, full(4, 2.5e38)), ones(1, 1), newMat(t, 4, 1, nil), 1)
			if err != nil {
				t.Fatal(err)
			}
			return setup{w, func() error { return l2.Forward(w, ones(4, 1)) }}
		}},
		{"Backward dx", func(t *testing.T) setup {
			w := ones(4, 4) // dx = dy·W₂ = 2.5e38
			l2, err := lora.NewLayerFrom(newMat(t, 1, 4, full(4, 2.5e38)), newMat(t, 1, 4, nil), newMat(t, 1, 1, nil), 1)
			if err != nil {
				t.Fatal(err)
			}
			return setup{w, func() error {
				return l2.Backward(w, newMat(t, 1, 4, nil), newMat(t, 1, 1, nil), ones(4, 1), ones(4, 4))
			}}
		}},
		{"Backward dA", func(t *testing.T) setup {
			w := ones(4, 4) // dA = Uᵀ·x, U = dy·B = 4e19: dA = 4e19·6.25e18
			l2, err := lora.NewLayerFrom(ones(4, 4), ones(4, 4), newMat(t, 4, 4, full(16, 1e19)), 1)
			if err != nil {
				t.Fatal(err)
			}
			return setup{w, func() error {
				return l2.Backward(nil, w, newMat(t, 4, 4, nil), ones(1, 4), newMat(t, 1, 4, full(4, 6.25e18)))
			}}
		}},
		{"Backward dB", func(t *testing.T) setup {
			w := ones(4, 4) // dB = dyᵀ·T, T = x·Aᵀ = 4e19: dB = 6.25e18·4e19
			l2, err := lora.NewLayerFrom(ones(4, 4), newMat(t, 4, 4, full(16, 1e19)), ones(4, 4), 1)
			if err != nil {
				t.Fatal(err)
			}
			return setup{w, func() error {
				return l2.Backward(nil, newMat(t, 4, 4, nil), w, newMat(t, 1, 4, full(4, 6.25e18)), ones(1, 4))
			}}
		}},
		{"MSE dy", func(t *testing.T) setup {
			w := ones(1, 1) // dy = 2·(y − t) = 2.5e38
			return setup{w, func() error {
				_, err := lora.MSE(w, newMat(t, 1, 1, []float32{1.25e38}), newMat(t, 1, 1, nil))
				return err
			}}
		}},
		{"SGD A", func(t *testing.T) setup {
			l2, err := lora.NewLayerFrom(ones(4, 4), ones(1, 4), ones(4, 1), 1)
			if err != nil {
				t.Fatal(err)
			}
			opt := lora.NewSGD(1)
			t.Cleanup(opt.Free)
			return setup{l2.A(), func() error { return opt.Step(l2, newMat(t, 1, 4, full(4, -2.5e38)), ones(4, 1)) }}
		}},
		{"AdamW B", func(t *testing.T) setup {
			l2, err := lora.NewLayerFrom(ones(1, 4), ones(1, 4), ones(1, 1), 1)
			if err != nil {
				t.Fatal(err)
			}
			// Beta1 = Beta2 = 0: the step is LR·g/(|g| + Eps) ≈ −LR for g = −1.
			opt := &lora.AdamW{LR: 2.5e38, Eps: 1e-8}
			t.Cleanup(opt.Free)
			return setup{l2.B(), func() error { return opt.Step(l2, ones(1, 4), newMat(t, 1, 1, []float32{-1})) }}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := c.make(t)
			out, in := s.w.Dims()
			l, err := lora.NewLayerFrom(s.w, newMat(t, 1, in, full(in, 1e19)), newMat(t, out, 1, full(out, 1e19)), 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			if err := l.Unmerge(); err != nil {
				t.Fatal(err)
			}
			if err := s.write(); err != nil {
				t.Fatal(err)
			}
			for i, v := range read(t, s.w) {
				if !(v > 2.4e38 && v < 2.6e38) {
					t.Fatalf("the operation wrote W[%d] = %g, want ≈ 2.5e38", i, v)
				}
			}
			refuseMerge(t, l, l.Merge, "overflows float32")
		})
	}
}

// TestMergeRandomNearEdge merges random updates into random W scaled close
// to MaxFloat32: each Merge either succeeds with a finite W within rounding
// of the float64 result, or is refused, W untouched, only when the float64
// result is within rounding of overflowing.
func TestMergeRandomNearEdge(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	const out, in, r = 9, 13, 3
	refused, merged := 0, 0
	for trial := range 200 {
		scale := maxF32 * (0.2 + 0.75*rng.Float64())
		w0 := reftest.Uniform(rng, out*in, scale)
		up := maxF32 * 0.4 * rng.Float64() / float64(r)
		a, b := reftest.Normal(rng, r*in, math.Sqrt(up)), reftest.Normal(rng, out*r, math.Sqrt(up))
		l, err := lora.NewLayerFrom(newMat(t, out, in, w0), newMat(t, r, in, a), newMat(t, out, r, b), 1)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _ := reftest.Merge(out, in, r, 1, w0, a, b)
		big := 0.0
		for _, v := range want {
			big = math.Max(big, math.Abs(v))
		}
		before := snap(t, l.W())
		err = l.Merge()
		switch {
		case err == nil:
			merged++
			finiteMerged(t, l, w0, a, b)
		case errors.Is(err, lora.ErrNonFinite):
			refused++
			before.unchanged(t, "refused Merge")
			if big < maxF32*(1-reftest.Gamma(r+2)) {
				t.Fatalf("trial %d: refused, but the largest element of W + s·B·A is %g: %v", trial, big, err)
			}
		default:
			t.Fatal(err)
		}
		l.Free()
	}
	t.Logf("%d merged, %d refused", merged, refused)
	if merged < 20 || refused < 20 {
		t.Errorf("%d merged, %d refused: the trials do not straddle the edge", merged, refused)
	}
}

// TestMergeMargin builds rank-1 updates whose exact value s·B·A is below
// MaxFloat32 while float32 arithmetic, which rounds s·B up before the
// product, overflows: Merge's bound must leave room for those roundings,
// and the update is refused.
func TestMergeMargin(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	found := 0
	for try := 0; try < 100000 && found < 8; try++ {
		c := float32(1 + rng.Float64())
		b := float32(1 + rng.Float64())
		cb := c * b // rounded to float32
		if float64(cb) <= float64(c)*float64(b) {
			continue // rounded down: no overflow to find
		}
		a := float32(maxF32 / (float64(c) * float64(b)))
		exact := float64(c) * float64(b) * float64(a) // exact to 2⁻⁵³
		if exact >= maxF32 || !math.IsInf(float64(cb*a), 0) {
			continue
		}
		found++
		l, err := lora.NewLayerFrom(newMat(t, 1, 1, nil), newMat(t, 1, 1, []float32{a}), newMat(t, 1, 1, []float32{b}), c)
		if err != nil {
			t.Fatal(err)
		}
		refuseMerge(t, l, l.Merge, "overflows float32")
	}
	if found < 8 {
		t.Fatalf("found %d updates below MaxFloat32 that overflow in float32, want 8", found)
	}
}
