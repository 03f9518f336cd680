//go:build !cuda && !cudaemu

package lora

import (
	"math"
	"math/rand/v2"
	"testing"
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
					want, mag := float64(orig[j]), math.Abs(float64(orig[j]))
					for k := 0; k < r; k++ {
						p := float64(coef[k]) * float64(a[k*lda+j])
						delta[j] += p
						mag += math.Abs(p)
					}
					want += delta[j]
					if d := math.Abs(float64(dst[j]) - want); d > 2*float64(r+1)*0x1p-24*mag {
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
					big := math.Max(math.Abs(float64(orig[j])), math.Abs(delta[j]))
					if d := math.Abs(float64(dst[j]) - float64(orig[j])); d > 2*0x1p-23*big {
						t.Fatalf("%s r=%d n=%d: dst[%d] = %g after taking back, was %g", name, r, n, j, dst[j], orig[j])
					}
				}
			}
		}
	}
}
