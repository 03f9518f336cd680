package lora

// Forward, Linear, MSE, Axpy and AddBias on every dtype of their operands,
// against the float64 oracle of internal/reftest (see dtype_test.go), and
// the layer problems the dtype tests share.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// dtShape is one layer problem: x is n×in, W out×in, rank r.
func dtShape(n, in, out, r int) reftest.Shape { return reftest.Shape{N: n, In: in, Out: out, R: r} }

// dtShapes returns the layer shapes: odd, none a multiple of a tile, but
// for a few whose rows are whole vectors. full tells whether every
// combination of operand dtypes runs on that shape (see dtCombos). Under the
// emulator, where the kernels are slow, fewer shapes run; those reach, on
// the H200 the emulator plans for, the GPU's matrix-vector kernels (n ≤ 16)
// and its tiles of 16, 32 and 64 rows of x (n = 40, 17 and 70, 100).
func dtShapes() []struct {
	reftest.Shape
	full bool
} {
	type sh = struct {
		reftest.Shape
		full bool
	}
	s := []sh{
		{dtShape(1, 45, 37, 5), true},
		{dtShape(3, 37, 45, 1), true},
		{dtShape(17, 45, 37, 1), false},
		{dtShape(17, 130, 67, 5), false},
		{dtShape(70, 130, 67, 5), false},
		{dtShape(100, 45, 37, 5), false},
		// in a multiple of 8 (rows of 16-byte vectors of a half W, and of
		// float4), and out and r multiples of 4 (rows of dy, U): the
		// kernels' vector paths.
		{dtShape(3, 120, 37, 5), false},
		{dtShape(40, 120, 40, 4), false},
	}
	if !dtEmulated() {
		s = append(s,
			sh{dtShape(70, 45, 37, 1), false},
			sh{dtShape(1, 130, 67, 1), false},
			sh{dtShape(3, 130, 67, 5), false},
			sh{dtShape(70, 120, 40, 4), false},
			// Wide rows: more than one 256-column block of the
			// portable loops (W in several panels: TestDTypeSplit).
			sh{dtShape(3, 301, 37, 1), false},
			sh{dtShape(17, 301, 37, 5), false},
			sh{dtShape(17, 264, 72, 4), false},
			sh{dtShape(1, 264, 67, 1), false},
		)
	}
	return s
}

// dtCombos returns the dtype combinations of k operands: all 3^k when full,
// else three, in which each operand takes each dtype once (a Latin square
// over the operands), so every dtype of every operand still runs.
func dtCombos(k int, full bool) [][]DType {
	var out [][]DType
	if !full {
		for i := range 3 {
			c := make([]DType, k)
			for j := range c {
				c[j] = dtAll[(i+j)%3]
			}
			out = append(out, c)
		}
		return out
	}
	n := 1
	for range k {
		n *= 3
	}
	for i := range n {
		c := make([]DType, k)
		for j, v := 0, i; j < k; j, v = j+1, v/3 {
			c[j] = dtAll[v%3]
		}
		out = append(out, c)
	}
	return out
}

// dtLayer returns a layer on a W of wdt with F32 A and B (PEFT's init scale
// for A, B normal), scale s, and the stored values of W, A and B.
func dtLayer(t testing.TB, rng *rand.Rand, wdt DType, sh reftest.Shape, s float32) (l *Layer, w *Matrix, wv, av, bv []float64) {
	t.Helper()
	w, wv = dtOperand(t, wdt, sh.Out, sh.In, reftest.Normal(rng, sh.Out*sh.In, 1/math.Sqrt(float64(sh.In))))
	a, av := dtOperand(t, F32, sh.R, sh.In, reftest.Normal(rng, sh.R*sh.In, 1/math.Sqrt(float64(sh.In))))
	b, bv := dtOperand(t, F32, sh.Out, sh.R, reftest.Normal(rng, sh.Out*sh.R, 1))
	l, err := NewLayerFrom(w, a, b, s)
	if err != nil {
		t.Fatalf("NewLayerFrom with a %v W: %v", wdt, err)
	}
	t.Cleanup(l.Free)
	return l, w, wv, av, bv
}

// TestDTypeForward runs Forward (unmerged and merged) and Linear with every
// dtype of x, y and W. Bounds: the unmerged y is a float32 sum of in
// products plus r adapter terms, each of those a sum of in products, plus the
// scale and the final add: γ(in+r+3) of the magnitudes; x·Wᵀ is a sum of in
// products: γ(in+1). Either rounded once more to y's dtype (reftest.Tol). The
// merged Forward is checked against W as it is stored after Merge.
func TestDTypeForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, sh := range dtShapes() {
		for _, wdt := range dtAll {
			for _, c := range dtCombos(2, sh.full) {
				xdt, ydt := c[0], c[1]
				seed := rng.Uint64()
				t.Run(fmt.Sprintf("%v/W=%v,x=%v,y=%v", sh.Shape, wdt, xdt, ydt), func(t *testing.T) {
					dtCheckForward(t, rand.New(rand.NewPCG(seed, 1)), sh.Shape, wdt, xdt, ydt)
				})
			}
		}
	}
}

func dtCheckForward(t *testing.T, rng *rand.Rand, sh reftest.Shape, wdt, xdt, ydt DType) {
	const s = 0.75
	l, w, wv, av, bv := dtLayer(t, rng, wdt, sh, s)
	x, xv := dtOperand(t, xdt, sh.N, sh.In, reftest.Normal(rng, sh.N*sh.In, 1))
	y := dtOutput(t, ydt, sh.N, sh.Out)
	ins := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x)

	if err := l.Forward(y, x); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	want, mag := reftest.Forward(sh, s, xv, wv, av, bv)
	reftest.Rounded(t, "Forward y", dtFormatOf(ydt), dtRead(t, y), want, mag, reftest.Gamma(sh.In+sh.R+3))

	y2 := dtOutput(t, ydt, sh.N, sh.Out)
	if err := Linear(y2, x, w); err != nil {
		t.Fatalf("Linear: %v", err)
	}
	want, mag = reftest.Forward(sh, s, xv, wv, nil, nil)
	reftest.Rounded(t, "Linear y", dtFormatOf(ydt), dtRead(t, y2), want, mag, reftest.Gamma(sh.In+1))
	ins.unchanged(t, "after Forward and Linear")

	if err := l.Merge(); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	wm := reftest.F64(dtRead(t, w))
	y3 := dtOutput(t, ydt, sh.N, sh.Out)
	if err := l.Forward(y3, x); err != nil {
		t.Fatalf("merged Forward: %v", err)
	}
	want, mag = reftest.Forward(sh, s, xv, wm, nil, nil)
	reftest.Rounded(t, "merged Forward y", dtFormatOf(ydt), dtRead(t, y3), want, mag, reftest.Gamma(sh.In+1))
	if err := l.Unmerge(); err != nil {
		t.Fatalf("Unmerge: %v", err)
	}
}

// TestDTypeMSE runs MSE with every dtype of dy, y and target. Bounds: the
// loss is a sum of n·m squares of float32 differences (each off by 3
// roundings relative at most), summed in float32 at worst and divided: γ(n·m+4)
// relative to the loss, all terms being positive; each element of dy is
// c·(y − t) with c = float32(2/(n·m)): three roundings, γ(3) relative, then
// rounded once to dy's dtype.
func TestDTypeMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	shapes := []struct {
		n, m int
		full bool
	}{{3, 37, true}, {1, 45, true}, {70, 67, false}}
	for _, sh := range shapes {
		for _, c := range dtCombos(3, sh.full) {
			dydt, ydt, tdt := c[0], c[1], c[2]
			t.Run(fmt.Sprintf("%d×%d/dy=%v,y=%v,target=%v", sh.n, sh.m, dydt, ydt, tdt), func(t *testing.T) {
				y, yv := dtOperand(t, ydt, sh.n, sh.m, reftest.Normal(rng, sh.n*sh.m, 1))
				tg, tv := dtOperand(t, tdt, sh.n, sh.m, reftest.Normal(rng, sh.n*sh.m, 1))
				dy := dtOutput(t, dydt, sh.n, sh.m)
				count := float64(sh.n * sh.m)
				var sum float64
				want, mag := make([]float64, len(yv)), make([]float64, len(yv))
				for i := range yv {
					d := yv[i] - tv[i]
					sum += d * d
					want[i] = 2 * d / count
					mag[i] = math.Abs(want[i])
				}
				ins := dtSnap(t, "y", y, "target", tg)
				loss, err := MSE(dy, y, tg)
				if err != nil {
					t.Fatalf("MSE: %v", err)
				}
				wantLoss := sum / count
				if d := math.Abs(float64(loss) - wantLoss); !(d <= reftest.Gamma(sh.n*sh.m+4)*wantLoss) {
					t.Errorf("loss = %g, want %g (error %.3g)", loss, wantLoss, d)
				}
				reftest.Rounded(t, "MSE dy", dtFormatOf(dydt), dtRead(t, dy), want, mag, reftest.Gamma(3))
				ins.unchanged(t, "after MSE")
				loss2, err := MSE(nil, y, tg)
				if err != nil {
					t.Fatalf("MSE without dy: %v", err)
				}
				if loss2 != loss {
					t.Errorf("loss without dy = %g, with dy %g", loss2, loss)
				}
			})
		}
	}
}

// TestDTypeAxpyAddBias runs Axpy and AddBias with every dtype of y and x (or
// bias). Bounds: y + α·x is a product and a sum, two float32 roundings
// (one with a fused multiply-add): γ(2) of |y| + |α·x|; y + bias one
// rounding, γ(1); then one rounding to y's dtype.
func TestDTypeAxpyAddBias(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	for _, sh := range []struct{ n, m int }{{1, 37}, {17, 45}, {70, 67}} {
		for _, c := range dtCombos(2, true) {
			ydt, xdt := c[0], c[1]
			t.Run(fmt.Sprintf("%d×%d/y=%v,x=%v", sh.n, sh.m, ydt, xdt), func(t *testing.T) {
				const alpha = -0.6875
				y, yv := dtOperand(t, ydt, sh.n, sh.m, reftest.Normal(rng, sh.n*sh.m, 1))
				x, xv := dtOperand(t, xdt, sh.n, sh.m, reftest.Normal(rng, sh.n*sh.m, 3))
				want, mag := make([]float64, len(yv)), make([]float64, len(yv))
				for i := range yv {
					want[i] = yv[i] + alpha*xv[i]
					mag[i] = math.Abs(yv[i]) + math.Abs(alpha*xv[i])
				}
				ins := dtSnap(t, "x", x)
				if err := Axpy(y, alpha, x); err != nil {
					t.Fatalf("Axpy: %v", err)
				}
				reftest.Rounded(t, "Axpy y", dtFormatOf(ydt), dtRead(t, y), want, mag, reftest.Gamma(2))
				ins.unchanged(t, "after Axpy")

				y2, y2v := dtOperand(t, ydt, sh.n, sh.m, reftest.Normal(rng, sh.n*sh.m, 1))
				bias, bv := dtOperand(t, xdt, 1, sh.m, reftest.Normal(rng, sh.m, 2))
				for i := range y2v {
					want[i] = y2v[i] + bv[i%sh.m]
					mag[i] = math.Abs(y2v[i]) + math.Abs(bv[i%sh.m])
				}
				if err := AddBias(y2, bias); err != nil {
					t.Fatalf("AddBias: %v", err)
				}
				reftest.Rounded(t, "AddBias y", dtFormatOf(ydt), dtRead(t, y2), want, mag, reftest.Gamma(1))
			})
		}
	}
}

// TestDTypeOutputOverflow: a computed output beyond its dtype's range
// becomes ±Inf, as in PyTorch (only Write refuses), and one just below the
// overflow tie rounds to the largest finite value. The sums are exact in
// float32 (multiples of 2⁻⁶ below 2²⁴·2⁻⁶), so each output is the model's
// rounding of the exact value: x = [1024, 1024] against rows of W.
func TestDTypeOutputOverflow(t *testing.T) {
	wrows := [][2]float32{{100, 100}, {32, 31.984375}, {32, 31.9765625}, {-100, -100}, {-32, -31.984375}}
	w := make([]float32, 0, 2*len(wrows))
	for _, r := range wrows {
		w = append(w, r[0], r[1])
	}
	for _, wdt := range dtAll {
		for _, ydt := range []DType{F16, BF16} {
			wm, _ := dtOperand(t, wdt, len(wrows), 2, w)
			x, _ := dtOperand(t, F16, 1, 2, []float32{1024, 1024})
			y := dtOutput(t, ydt, 1, len(wrows))
			if err := Linear(y, x, wm); err != nil {
				t.Fatalf("W %v, y %v: Linear: %v", wdt, ydt, err)
			}
			f := dtFormatOf(ydt)
			got := dtReadBits(t, y)
			wv := reftest.F64(dtRead(t, wm))
			for i := range wrows {
				want := f.Encode(f.Round(1024*wv[2*i] + 1024*wv[2*i+1]))
				if got[i] != want {
					t.Errorf("W %v, y %v: y[%d] is %#04x, want %#04x", wdt, ydt, i, got[i], want)
				}
			}
		}
	}
	// F16 y: 65504 + 16 through Axpy is +Inf; Forward over the layer too.
	y, _ := dtOperand(t, F16, 1, 2, []float32{65504, -65504})
	x, _ := dtOperand(t, F32, 1, 2, []float32{16, -15})
	if err := Axpy(y, 1, x); err != nil {
		t.Fatalf("Axpy: %v", err)
	}
	if got := dtReadBits(t, y); got[0] != 0x7C00 || got[1] != 0xFBFF {
		t.Errorf("F16 Axpy: 65504 + 16, −65504 − 15 stored %#04x, want [0x7c00 0xfbff]", got)
	}
}
