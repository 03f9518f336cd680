package reftest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The hand-computed case: x = [1 2], W = [[1 0] [0.5 −1]], A = [[1 −1]],
// B = [[2] [−3]], s = 0.5. Then x·Wᵀ = [1 −1.5], T = x·Aᵀ = −1, s·T·Bᵀ =
// [−1 1.5]: y = [0 0], the adapter cancelling the base, which only the
// magnitudes show: Σ|x||W| = [1 2.5], |s|·Σ|x||A| = 1.5, so mag = [1+3
// 2.5+4.5]. The merged W + s·B·A = [[2 −1] [−1 0.5]] gives the same y,
// with the magnitudes of its own terms, [1·2 + 2·1, 1·1 + 2·0.5].
var (
	handSh         = Shape{N: 1, In: 2, Out: 2, R: 1}
	handX          = []float32{1, 2}
	handW          = []float32{1, 0, 0.5, -1}
	handA          = []float32{1, -1}
	handB          = []float32{2, -3}
	handS          = 0.5
	handMerged     = []float32{2, -1, -1, 0.5}
	handDelta      = []float64{1, -1, -1.5, 1.5}
	handMergedMag  = []float64{2, 1, 2, 2.5}
	handDY         = []float32{1, 2}
	handY, handMag = []float64{0, 0}, []float64{4, 7}
)

func equal(t *testing.T, what string, got, want []float64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestForwardByHand(t *testing.T) {
	y, mag := Forward(handSh, handS, handX, handW, handA, handB)
	equal(t, "y", y, handY)
	equal(t, "mag", mag, handMag)
	y, mag = Forward(handSh, handS, handX, handW, nil, nil)
	equal(t, "x·Wᵀ", y, []float64{1, -1.5})
	equal(t, "its mag", mag, []float64{1, 2.5})
	y, _ = Forward(Shape{1, 2, 2, 0}, handS, F64(handX), F64(handW), []float64{}, []float64{})
	equal(t, "x·Wᵀ with r = 0", y, []float64{1, -1.5})
	y, mag = Forward(handSh, handS, handX, handMerged, nil, nil)
	equal(t, "x·(W + s·B·A)ᵀ", y, handY)
	equal(t, "its mag", mag, []float64{4, 2})
}

// TestBackwardByHand, on the hand-computed case with dy = [1 2]: U = dy·B =
// −4 (Σ|dy||B| = 8), T = −1 (Σ|x||A| = 3); dB = s·dyᵀ·T = [−0.5 −1],
// magnitudes 0.5·[1 2]·3; dA = s·U·x = [−2 −4], magnitudes 0.5·8·[1 2];
// dx = dy·W + s·U·A = [2 −2] + [−2 2] = [0 0], magnitudes [2 2] + 4·[1 1];
// merged, dx = dy·(W + s·B·A) = [0 0], the magnitudes those of the merged
// W's terms alone: [1·2 + 2·1, 1·1 + 2·0.5] = [4 2].
func TestBackwardByHand(t *testing.T) {
	g := Backward(handSh, handS, handDY, handX, handW, handA, handB, false)
	equal(t, "dA", g.DA, []float64{-2, -4})
	equal(t, "|dA|", g.MagA, []float64{4, 8})
	equal(t, "dB", g.DB, []float64{-0.5, -1})
	equal(t, "|dB|", g.MagB, []float64{1.5, 3})
	equal(t, "dx", g.DX, []float64{0, 0})
	equal(t, "|dx|", g.MagX, []float64{6, 6})
	g = Backward(handSh, handS, handDY, handX, handMerged, handA, handB, true)
	equal(t, "merged dx", g.DX, []float64{0, 0})
	equal(t, "merged |dx|", g.MagX, []float64{4, 2})
	equal(t, "merged dA", g.DA, []float64{-2, -4})
	equal(t, "merged dB", g.DB, []float64{-0.5, -1})
}

func TestMergeByHand(t *testing.T) {
	merged, delta, mag := Merge(2, 2, 1, handS, handW, handA, handB)
	equal(t, "W + s·B·A", merged, F64(handMerged))
	equal(t, "s·B·A", delta, handDelta)
	equal(t, "mag", mag, handMergedMag)
}

// TestOracleAgrees checks the oracle against itself on random problems:
// Forward through the merged W equals Forward with the adapter, and
// Backward's gradients equal central differences of L = Σ dy ⊙ y, which
// is linear in each of x, A and B, so that a difference has no truncation
// error: only float64 rounding, far below the 10⁻¹² allowed.
func TestOracleAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range []Shape{{1, 1, 1, 1}, {3, 7, 5, 2}, {4, 5, 9, 3}} {
		t.Run(sh.String(), func(t *testing.T) {
			const s = -0.75
			x, w := F64(Normal(rng, sh.N*sh.In, 1)), F64(Normal(rng, sh.Out*sh.In, 1))
			a, b := F64(Normal(rng, sh.R*sh.In, 1)), F64(Normal(rng, sh.Out*sh.R, 1))
			dy := F64(Normal(rng, sh.N*sh.Out, 1))
			y, mag := Forward(sh, s, x, w, a, b)
			merged, _, _ := Merge(sh.Out, sh.In, sh.R, s, w, a, b)
			ym, _ := Forward(sh, s, x, merged, nil, nil)
			near(t, "merged y", ym, y, mag)

			loss := func() float64 {
				y, _ := Forward(sh, s, x, w, a, b)
				var l float64
				for i := range y {
					l += dy[i] * y[i]
				}
				return l
			}
			g := Backward(sh, s, dy, x, w, a, b, false)
			near(t, "dA", g.DA, diff(a, loss), g.MagA)
			near(t, "dB", g.DB, diff(b, loss), g.MagB)
			near(t, "dx", g.DX, diff(x, loss), g.MagX)
			gm := Backward(sh, s, dy, x, merged, a, b, true)
			near(t, "merged dx", gm.DX, g.DX, g.MagX)
		})
	}
}

// diff returns the central differences of loss in every element of theta.
func diff(theta []float64, loss func() float64) []float64 {
	const h = 0x1p-4
	d := make([]float64, len(theta))
	for i, v := range theta {
		theta[i] = v + h
		lp := loss()
		theta[i] = v - h
		lm := loss()
		theta[i] = v
		d[i] = (lp - lm) / (2 * h)
	}
	return d
}

func near(t *testing.T, what string, got, want, mag []float64) {
	t.Helper()
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= 1e-12*(mag[i]+1)) {
			t.Errorf("%s[%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

func TestShapeChecks(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || r != "reftest: W has 3 elements, the shape needs 4" {
			t.Errorf("Forward with a short W: recovered %v", r)
		}
	}()
	Forward(handSh, 1, handX, handW[:3], handA, handB)
}

func TestShapeString(t *testing.T) {
	if got, want := fmt.Sprint(Shape{3, 45, 37, 5}), "n=3,in=45,out=37,r=5"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestConv1DByHand checks Conv1D on the hand-computed case, its W stored
// transposed: x·W with W = handWᵀ is x·handWᵀ, so y and its magnitudes are
// those of Forward's case.
func TestConv1DByHand(t *testing.T) {
	stored := []float32{handW[0], handW[2], handW[1], handW[3]}
	y, mag := Conv1D(handSh, handS, handX, stored, handA, handB)
	equal(t, "y", y, handY)
	equal(t, "mag", mag, handMag)
	y, _ = Conv1D(handSh, handS, handX, stored, nil, nil)
	equal(t, "x·W", y, []float64{1, -1.5})
	// A non-square case: Conv1D on W equals Forward on Wᵀ within 10⁻¹² of
	// the magnitudes: the same float64 products, each sum off by at most a
	// few units of 2⁻⁵³.
	rng := rand.New(rand.NewPCG(5, 6))
	sh := Shape{N: 2, In: 5, Out: 3, R: 2}
	x, w := Normal(rng, 2*5, 1), Normal(rng, 5*3, 1)
	a, b := Normal(rng, 2*5, 1), Normal(rng, 3*2, 1)
	wt := make([]float32, len(w))
	for c := range 5 {
		for j := range 3 {
			wt[j*5+c] = w[c*3+j]
		}
	}
	gy, gmag := Conv1D(sh, 0.7, x, w, a, b)
	fy, fmag := Forward(sh, 0.7, x, wt, a, b)
	for i := range gy {
		if math.Abs(gy[i]-fy[i]) > 1e-12*fmag[i] || math.Abs(gmag[i]-fmag[i]) > 1e-12*fmag[i] {
			t.Errorf("y[%d]: Conv1D %v (mag %v), Forward on Wᵀ %v (mag %v)", i, gy[i], gmag[i], fy[i], fmag[i])
		}
	}
}
