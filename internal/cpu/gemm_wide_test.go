package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmKernelW6x64 checks the kernel that reads six rows of W where they
// lie, with and without acc, at k = 1, 2, odd k, past gemmKC and past
// wideKC, rows lda floats apart with NaN between their steps (a value read
// past a row's k steps, or from a wrong row, turns its sums to NaN), its
// second panel of x after the first's steps or apart, and ldc wider than
// the block: each element bit for bit as gemmKernel6x64 forms it from the
// same rows packed (on AVX-512) and within a float32 sum's bound of a
// float64 reference, and the columns of c past the block untouched.
func TestGemmKernelW6x64(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	rng := rand.New(rand.NewPCG(7, 31))
	const ldc = gemmXRows + 5
	for _, k := range []int{1, 2, 3, 16, 127, 1025} {
		for _, gap := range []int{0, 13} {
			lda := k + gap
			a := randF32(rng, 5*lda+k, 1)
			for i := range 5 {
				for p := k; p < lda; p++ {
					a[i*lda+p] = float32(math.NaN())
				}
			}
			a6 := make([]float32, 6*k) // the rows packed, for gemmKernel6x64
			for i := range 6 {
				for p := range k {
					a6[p*6+i] = a[i*lda+p]
				}
			}
			for _, b2 := range []int{k * gemmNR, k*gemmNR + 96} {
				b := randF32(rng, b2+k*gemmNR, 1)
				for _, acc := range []int{0, 1} {
					what := fmt.Sprintf("k=%d lda=%d b2=%d acc=%d", k, lda, b2, acc)
					c := randF32(rng, 6*ldc, 1)
					old := append([]float32(nil), c...)
					gemmKernelW6x64(k, &a[0], lda, &b[0], &c[0], ldc, acc, 4*b2)
					if MachineLevel() >= AVX512 {
						c6 := append([]float32(nil), old...)
						gemmKernel6x64(k, &a6[0], &b[0], &c6[0], ldc, acc, 0, 0, 0, 0, gemmNR, 4*b2)
						for e := range c {
							if math.Float32bits(c[e]) != math.Float32bits(c6[e]) {
								t.Fatalf("%s: c[%d,%d] = %v, gemmKernel6x64 %v", what, e/ldc, e%ldc, c[e], c6[e])
							}
						}
					}
					checkBlock6(t, what, c, old, ldc, gemmXRows, k, acc != 0,
						func(i, p int) float32 { return a[i*lda+p] },
						func(p, j int) float32 { return b[j/gemmNR*b2+p*gemmNR+j%gemmNR] })
				}
			}
		}
	}
}

// TestWideProduct checks y = x·Wᵀ with W in place (wideProduct) against a
// float64 reference, each element in float32 runs of wideKC products added
// to the sum so far: rows of x below, at and past one panel of 32 and one
// call's 64 (the rest of the last panel zero), past gemmXRows (two and
// three calls a group); rows of W leaving every remainder of a group of six
// (the last group read from a copy); columns one, within a run, at one
// run, past one and two (a lone last column); with GOMAXPROCS 7, so that
// groups split unevenly and the last goroutine's share ends in the short
// group, and shares of more than wideChunk groups, in chunks. y starts
// NaN: every element must be written. Then the packed product at the rows
// on either side of wideMinRows and gemmXRows (rows of W past
// wideMinCols), which picks this product or packs W.
func TestWideProduct(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	manyProcs(t)
	rng := rand.New(rand.NewPCG(7, 32))
	shapes := []struct{ n, out, in int }{
		{64, 12, 1}, {wideMinRows, 13, 16}, {gemmXRows, 301, wideKC + 6}, {63, 6*7*5 + 5, 700},
		{1, 12, 5}, {31, 20, 33}, {gemmNR, 18, 2*wideKC + 1}, {33, 17, 100}, {gemmXRows + 1, 25, 70},
		{2*gemmXRows + 3, 41, 300}, {60, 6 * 40, wideKC},
		// Shares of more than wideChunk groups (seven goroutines), in
		// two chunks each, the last ending in the short group.
		{gemmXRows, 7*wideGroup*(wideChunk+15) + 1, 20},
	}
	if testing.Short() {
		shapes = shapes[:4]
	}
	for _, sh := range shapes {
		w := Mat{Rows: sh.out, Cols: sh.in, Type: F32, F32: randF32(rng, sh.out*sh.in, 1)}
		x := randF32(rng, sh.n*sh.in, 1)
		want, mag := refNT(x, w.F32, sh.n, sh.out, sh.in)
		y := nanFill(sh.n * sh.out)
		wideProduct(y, x, w, sh.n, nil)
		within(t, fmt.Sprintf("n=%d out=%d in=%d", sh.n, sh.out, sh.in), y, want, mag, accTol(sh.in))
	}
	for _, n := range []int{wideMinRows - 1, wideMinRows, gemmXRows, gemmXRows + 1} {
		const out, in = 97, wideMinCols + 3
		w := Mat{Rows: out, Cols: in, Type: F32, F32: randF32(rng, out*in, 1)}
		x := randF32(rng, n*in, 1)
		want, mag := refNT(x, w.F32, n, out, in)
		y := nanFill(n * out)
		packedProduct(y, x, w, n)
		within(t, fmt.Sprintf("packedProduct n=%d (W in place: %v)", n, wideWins(F32, n, out, in)), y, want, mag, accTol(in))
	}
}
