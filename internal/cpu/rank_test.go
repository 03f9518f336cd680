package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// TestRankRow checks both forms of rankRow (assembly where the processor
// has AVX2 and FMA, and the portable loop) against a float64 reference, on
// every column count from 0 to 150 so that each block and tail size is hit,
// and checks that negated coefficients take back exactly what was added.
func TestRankRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	forms := map[string]func(dst, a, coef []float32, lda int){"portable": rankRowGo}
	if useFMA {
		forms["fma"] = rankRow
	} else {
		t.Log("no AVX2+FMA form in this build or on this processor: testing the portable form only")
	}
	for name, f := range forms {
		for _, r := range []int{1, 2, 7, 16, 64} {
			for n := 0; n <= 150; n++ {
				lda := n + 3
				a := make([]float32, r*lda)
				for i := range a {
					a[i] = float32(rng.NormFloat64())
				}
				coef := make([]float32, r)
				neg := make([]float32, r)
				for k := range coef {
					coef[k] = float32(rng.NormFloat64())
					neg[k] = -coef[k]
				}
				dst := make([]float32, n+1) // the extra element must stay untouched
				for i := range dst {
					dst[i] = float32(rng.NormFloat64())
				}
				orig := append([]float32(nil), dst...)
				f(dst[:n], a, coef, lda)
				delta := make([]float64, n)
				for j := 0; j < n; j++ {
					want, mag := float64(orig[j]), reftest.Abs(float64(orig[j]))
					for k := 0; k < r; k++ {
						p := float64(coef[k]) * float64(a[k*lda+j])
						delta[j] += p
						mag += reftest.Abs(p)
					}
					want += delta[j]
					if d := reftest.Abs(float64(dst[j]) - want); d > 2*float64(r+1)*0x1p-24*mag {
						t.Fatalf("%s r=%d n=%d: dst[%d] = %g, want %g", name, r, n, j, dst[j], want)
					}
				}
				if dst[n] != orig[n] {
					t.Fatalf("%s r=%d n=%d: wrote past the end", name, r, n)
				}
				f(dst[:n], a, neg, lda)
				for j := 0; j < n; j++ {
					// One rounding of w + d, one of (w + d) − d: within two ulps
					// of max(|w|, |d|), an ulp being 2⁻²³ of the binade.
					big := math.Max(reftest.Abs(float64(orig[j])), reftest.Abs(delta[j]))
					if d := reftest.Abs(float64(dst[j]) - float64(orig[j])); d > 2*0x1p-23*big {
						t.Fatalf("%s r=%d n=%d: dst[%d] = %g after taking back, was %g", name, r, n, j, dst[j], orig[j])
					}
				}
			}
		}
	}
}

// TestAbsMaxHalf checks AbsMax over F16 and BF16 patterns: the largest
// magnitude whatever its sign and position, subnormals, and NaN and ±Inf
// (written out as patterns) giving a non-finite result, as for F32.
func TestAbsMaxHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	type special struct {
		name string
		bits uint16
		want float32 // NaN: any NaN
	}
	specials := map[Type][]special{
		F16: {
			{"largest negative", 0xfbff, 65504}, {"+Inf", 0x7c00, float32(math.Inf(1))},
			{"−Inf", 0xfc00, float32(math.Inf(1))}, {"quiet NaN", 0x7e00, float32(math.NaN())},
			{"signalling NaN", 0xfc01, float32(math.NaN())},
		},
		BF16: {
			{"largest negative", 0xff7f, 0x1.fep127}, {"+Inf", 0x7f80, float32(math.Inf(1))},
			{"−Inf", 0xff80, float32(math.Inf(1))}, {"quiet NaN", 0x7fc0, float32(math.NaN())},
			{"signalling NaN", 0xff81, float32(math.NaN())},
		},
	}
	for _, dt := range halfTypes {
		for _, size := range []int{1, 7, 1000, 3<<16 + 5} {
			h := newHalfW(rng, dt, 1, size, 1)
			var want float32
			for _, v := range h.val {
				want = max(want, float32(reftest.Abs(float64(v))))
			}
			if got := absMaxHalf(h.bits, dt); got != want {
				t.Fatalf("%v size %d: AbsMax %g, want %g", dt, size, got, want)
			}
			for _, sp := range specials[dt] {
				for _, pos := range []int{0, size / 2, size - 1} {
					b := append([]uint16(nil), h.bits...)
					b[pos] = sp.bits
					got := absMaxHalf(b, dt)
					if sp.want != sp.want {
						if got == got {
							t.Fatalf("%v size %d: %s at %d: AbsMax %g, want NaN", dt, size, sp.name, pos, got)
						}
					} else if got != max(sp.want, want) {
						t.Fatalf("%v size %d: %s at %d: AbsMax %g, want %g", dt, size, sp.name, pos, got, max(sp.want, want))
					}
				}
			}
		}
		// The largest magnitude at every position of sizes that end in
		// each of the kernel's loops and in its tail.
		for _, size := range []int{37, 200} {
			h := newHalfW(rng, dt, 1, size, 1)
			for pos := range size {
				b := append([]uint16(nil), h.bits...)
				b[pos] = specials[dt][0].bits
				if got := absMaxHalf(b, dt); got != specials[dt][0].want {
					t.Fatalf("%v size %d: largest at %d: AbsMax %g, want %g", dt, size, pos, got, specials[dt][0].want)
				}
			}
		}
		// Subnormals only: the smallest positive is the largest magnitude
		// of a matrix of it and zeros.
		b := []uint16{0x8000, 0x0001, 0x0000}
		if got, want := absMaxHalf(b, dt), widen1(dt, 1); got != want {
			t.Errorf("%v subnormal: AbsMax %g, want %g", dt, got, want)
		}
	}
}

// mergeCase is W ← W + c·B·A on a half W of the given shape.
type mergeCase struct{ out, in, r int }

// TestRankUpdateHalfBits checks that rankUpdate on a half W gives, bit for
// bit, the float32 update of a float32 copy of W rounded once to nearest
// even, for c and then −c; and that rankFinite agrees. Shapes: single
// elements, columns that are not a multiple of 8 or 64, and in = 1100 at
// r = 64 (two blocks of columns).
func TestRankUpdateHalfBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, dt := range halfTypes {
		for _, c := range []mergeCase{{1, 1, 1}, {5, 7, 3}, {13, 130, 5}, {33, 300, 16}, {17, 1100, 64}} {
			t.Run(fmt.Sprintf("%v/%d×%d,r=%d", dt, c.out, c.in, c.r), func(t *testing.T) {
				checkRankUpdateBits(t, rng, dt, c)
			})
		}
	}
}

func checkRankUpdateBits(t *testing.T, rng *rand.Rand, dt Type, c mergeCase) {
	h := newHalfW(rng, dt, c.out, c.in, 1)
	a := randF32(rng, c.r*c.in, 1)
	b := randF32(rng, c.out*c.r, 0.5)
	w := Mat{Rows: c.out, Cols: c.in, Type: dt, Bits: h.bits}
	wf := Mat{Rows: c.out, Cols: c.in, Type: F32, F32: append([]float32(nil), h.val...)}
	lim := map[Type]float32{F16: 65520, BF16: 0x1.ffp127}[dt]
	for _, coef := range []float32{0.37, -0.37} {
		if !RankFinite(w, a, b, c.r, coef, lim) {
			t.Fatalf("c = %g: RankFinite = false, want true", coef)
		}
		RankUpdate(wf, a, b, c.r, coef)
		RankUpdate(w, a, b, c.r, coef)
		want := make([]uint16, len(h.bits))
		narrowHalf(dt, want, wf.F32)
		for i, v := range w.Bits {
			if v != want[i] {
				t.Fatalf("c = %g: W[%d] = %#04x, want %#04x (float32 %g)", coef, i, v, want[i], wf.F32[i])
			}
		}
		// Keep the float32 copy on the rounded values, as W is.
		for i, v := range want {
			wf.F32[i] = widen1(dt, v)
		}
	}
}

// TestRankRowHalf checks rankRowHalf (the fused kernel where the processor
// has it) against rankRow on a widened copy, rounded, on every column count
// from 0 to 150, and that it writes nothing past the end.
func TestRankRowHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range halfTypes {
		for _, r := range []int{1, 2, 7, 16} {
			for n := 0; n <= 150; n++ {
				lda := n + 3
				a := randF32(rng, r*lda, 1)
				coef := randF32(rng, r, 1)
				h := newHalfW(rng, dt, 1, n+1, 4)
				dst := append([]uint16(nil), h.bits...)
				rankRowHalf(dt, dst[:n], a, coef, lda)
				ref := append([]float32(nil), h.val[:n]...)
				rankRow(ref, a, coef, lda)
				want := make([]uint16, n)
				narrowHalf(dt, want, ref)
				for j := range n {
					if dst[j] != want[j] {
						t.Fatalf("%v r=%d n=%d: dst[%d] = %#04x, want %#04x", dt, r, n, j, dst[j], want[j])
					}
				}
				if dst[n] != h.bits[n] {
					t.Fatalf("%v r=%d n=%d: wrote past the end", dt, r, n)
				}
			}
		}
	}
}

// TestRankFiniteEdge checks RankFinite at the edge of each half dtype's
// range: a float32 result just below the overflow threshold (which rounds
// to the largest finite value) passes, the threshold itself (a tie that
// rounds to Inf) fails, for both signs, and W is left as it was.
func TestRankFiniteEdge(t *testing.T) {
	for _, c := range []struct {
		dt        Type
		w         float32 // the largest finite value
		over, fit float32 // deltas: w + over = lim, w + fit below it
		lim       float32 // the overflow threshold
	}{
		{F16, 65504, 16, 15, 65520},
		{BF16, 0x1.fep127, 0x1p119, 0x1p118, 0x1.ffp127},
	} {
		for _, sign := range []float32{1, -1} {
			const out, in = 3, 20
			bits := make([]uint16, out*in)
			bits[1*in+13] = narrow1(c.dt, sign*c.w)
			if widen1(c.dt, bits[1*in+13]) != sign*c.w || c.w+c.over != c.lim {
				t.Fatalf("%v: test values wrong", c.dt)
			}
			w := Mat{Rows: out, Cols: in, Type: c.dt, Bits: append([]uint16(nil), bits...)}
			// A = e₁₃ᵀ (1×in), B = δ·e₁ (out×1), c = 1: W[1,13] + δ.
			a := make([]float32, in)
			a[13] = 1
			for _, d := range []struct {
				delta float32
				want  bool
			}{{c.fit, true}, {c.over, false}} {
				b := make([]float32, out)
				b[1] = sign * d.delta
				if ok := RankFinite(w, a, b, 1, 1, c.lim); ok != d.want {
					t.Errorf("%v sign %g δ %g: RankFinite = %v, want %v", c.dt, sign, d.delta, ok, d.want)
				}
				for i := range bits {
					if w.Bits[i] != bits[i] {
						t.Fatalf("%v: RankFinite modified W[%d]", c.dt, i)
					}
				}
			}
		}
	}
}

// TestRankUpdateF32 checks RankUpdate on a float32 W (the packed product's
// micro-kernel where the processor has AVX-512, rankRow around it and
// elsewhere) against a float64 reference, and bit for bit against rankRow
// row by row, the arithmetic it must reproduce; then that −c takes back
// what c added within two ulps, and that RankFinite agrees. Shapes: rows
// and columns past whole blocks (gemmMR, gemmNR), fewer than a block, r
// above gemmKC; with GOMAXPROCS raised so that the strips split unevenly.
func TestRankUpdateF32(t *testing.T) {
	manyProcs(t)
	rng := rand.New(rand.NewPCG(23, 24))
	for _, c := range []mergeCase{{1, 1, 1}, {7, 40, 3}, {8, 32, 1}, {9, 33, 16}, {27, 100, 64}, {64, 96, 5}, {40, 200, 300}, {131, 1100, 16}} {
		w := randF32(rng, c.out*c.in, 1)
		orig := append([]float32(nil), w...)
		a := randF32(rng, c.r*c.in, 1)
		b := randF32(rng, c.out*c.r, 0.5)
		const coef = 0.37
		if !RankFinite(Mat{Rows: c.out, Cols: c.in, Type: F32, F32: w}, a, b, c.r, coef, math.MaxFloat32) {
			t.Fatalf("%d×%d r=%d: RankFinite = false, want true", c.out, c.in, c.r)
		}
		RankUpdate(Mat{Rows: c.out, Cols: c.in, Type: F32, F32: w}, a, b, c.r, coef)
		ref := append([]float32(nil), orig...)
		cb := make([]float32, c.r)
		delta := make([]float64, len(w))
		for i := range c.out {
			for k := range c.r {
				cb[k] = coef * b[i*c.r+k]
			}
			rankRow(ref[i*c.in:(i+1)*c.in], a, cb, c.in)
			for j := range c.in {
				want, mag := float64(orig[i*c.in+j]), reftest.Abs(float64(orig[i*c.in+j]))
				for k := range c.r {
					p := float64(cb[k]) * float64(a[k*c.in+j])
					delta[i*c.in+j] += p
					mag += reftest.Abs(p)
				}
				want += delta[i*c.in+j]
				if d := reftest.Abs(float64(w[i*c.in+j]) - want); d > 2*float64(c.r+1)*0x1p-24*mag {
					t.Fatalf("%d×%d r=%d: W[%d,%d] = %g, want %g", c.out, c.in, c.r, i, j, w[i*c.in+j], want)
				}
				if w[i*c.in+j] != ref[i*c.in+j] {
					t.Fatalf("%d×%d r=%d: W[%d,%d] = %g, rankRow gives %g", c.out, c.in, c.r, i, j, w[i*c.in+j], ref[i*c.in+j])
				}
			}
		}
		RankUpdate(Mat{Rows: c.out, Cols: c.in, Type: F32, F32: w}, a, b, c.r, -coef)
		for i, v := range w {
			big := math.Max(reftest.Abs(float64(orig[i])), reftest.Abs(delta[i]))
			if d := reftest.Abs(float64(v) - float64(orig[i])); d > 2*0x1p-23*big {
				t.Fatalf("%d×%d r=%d: W[%d] = %g after taking back, was %g", c.out, c.in, c.r, i, v, orig[i])
			}
		}
		// RankFinite computes the same values: a limit just below the
		// largest magnitude of the result fails, just above passes.
		RankUpdate(Mat{Rows: c.out, Cols: c.in, Type: F32, F32: w}, a, b, c.r, coef)
		var big float32
		for _, v := range w {
			big = max(big, float32(reftest.Abs(float64(v))))
		}
		copy(w, orig)
		m := Mat{Rows: c.out, Cols: c.in, Type: F32, F32: w}
		if RankFinite(m, a, b, c.r, coef, big) || !RankFinite(m, a, b, c.r, coef, math.Nextafter32(big, float32(math.Inf(1)))) {
			t.Fatalf("%d×%d r=%d: RankFinite disagrees with RankUpdate at its largest magnitude %g", c.out, c.in, c.r, big)
		}
	}
}
