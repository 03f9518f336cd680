package cpu

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// Tests of each kernel on its own, the assembly where the processor has it
// (the portable loop of kernels_other.go with -tags purego), against float64
// references: every count of columns the kernel takes up to a few blocks
// past its loop's width, rows of a stride longer than the row, and a guard
// element after every output that must stay as it was.

// kernelOK reports whether the kernel that needs feature can run here.
func kernelOK(t *testing.T, feature bool) {
	t.Helper()
	if !feature && !portableKernels {
		t.Skip("this processor lacks the kernel's instructions")
	}
}

// TestGemv4 checks gemv4F32, gemv4F16 and gemv4BF16 (x in pair order) on
// every n that is a multiple of 16 up to 160.
func TestGemv4(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []Type{F32, F16, BF16} {
		t.Run(fmt.Sprint(dt), func(t *testing.T) {
			kernelOK(t, map[Type]bool{F32: useFMA, F16: useF16FMA, BF16: useBF16FMA}[dt])
			for n := 16; n <= 160; n += 16 {
				ldw := n + 5
				w, wv := testW(rng, dt, 4, ldw)
				x := randF32(rng, n, 1)
				y := nanFill(5) // y[4] is the guard
				switch dt {
				case F32:
					gemv4F32(&y[0], &x[0], &w.F32[0], n, ldw)
				case F16:
					gemv4F16(&y[0], &x[0], &w.Bits[0], n, ldw)
				case BF16:
					kx := make([]float32, n)
					pairOrder(kx, x, 1, n)
					gemv4BF16(&y[0], &kx[0], &w.Bits[0], n, ldw)
				}
				for q := range 4 {
					var want, mag float64
					for j := range n {
						p := float64(x[j]) * float64(wv[q*ldw+j])
						want += p
						mag += reftest.Abs(p)
					}
					if d := reftest.Abs(float64(y[q]) - want); !(d <= accTol(n)*mag) {
						t.Fatalf("n=%d: y[%d] = %g, want %g", n, q, y[q], want)
					}
				}
				if !math.IsNaN(float64(y[4])) {
					t.Fatalf("n=%d: wrote past y[3]", n)
				}
			}
		})
	}
}

// TestGemv4x4 checks gemv4x4F32 against four calls of gemv4F32 (bit for
// bit: the same sums in the same order) and the float64 reference, on
// every n that is a multiple of 16 up to 160 and 1024, rows of x and W of
// strides longer than n, with a guard after y.
func TestGemv4x4(t *testing.T) {
	kernelOK(t, useGemm512)
	rng := rand.New(rand.NewPCG(33, 34))
	for n := 16; n <= 1024; n += 16 {
		if n > 160 && n != 1024 {
			continue
		}
		ldx, ldw := n+3, n+5
		x, w := randF32(rng, 4*ldx, 1), randF32(rng, 4*ldw, 1)
		y := nanFill(17) // y[16] is the guard
		gemv4x4F32(&y[0], &x[0], ldx, &w[0], n, ldw)
		for p := range 4 {
			s := nanFill(4)
			if useFMA {
				gemv4F32(&s[0], &x[p*ldx], &w[0], n, ldw)
			}
			for q := range 4 {
				if useFMA && y[4*p+q] != s[q] {
					t.Fatalf("n=%d: y[%d] = %v, gemv4F32's %v", n, 4*p+q, y[4*p+q], s[q])
				}
				var want, mag float64
				for j := range n {
					v := float64(x[p*ldx+j]) * float64(w[q*ldw+j])
					want += v
					mag += reftest.Abs(v)
				}
				if d := reftest.Abs(float64(y[4*p+q]) - want); !(d <= accTol(n)*mag) {
					t.Fatalf("n=%d: y[%d] = %g, want %g", n, 4*p+q, y[4*p+q], want)
				}
			}
		}
		if !math.IsNaN(float64(y[16])) {
			t.Fatalf("n=%d: wrote past y[15]", n)
		}
	}
}

// TestRankRowKernels checks rankRowFMA and rankRowFromF16/BF16 (float32
// dst) and rankRowF16/BF16 (half dst, rounded once) on every n that is a
// multiple of 8 up to 200 (past three of the kernels' blocks of 64), at
// ranks 1 to 5 and 17.
func TestRankRowKernels(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	for _, kind := range []string{"f32", "from f16", "from bf16", "f16", "bf16"} {
		t.Run(kind, func(t *testing.T) {
			dt := map[string]Type{"f32": F32, "from f16": F16, "from bf16": BF16, "f16": F16, "bf16": BF16}[kind]
			kernelOK(t, map[Type]bool{F32: useFMA, F16: useF16FMA, BF16: useBF16FMA}[dt])
			for _, r := range []int{1, 2, 3, 4, 5, 17} {
				for n := 8; n <= 200; n += 8 {
					lda := n + 3
					coef := randF32(rng, r, 1)
					var a []float32 // the values of the rows of a
					var abits []uint16
					if kind == "from f16" || kind == "from bf16" {
						m, v := testW(rng, dt, r, lda)
						a, abits = v, m.Bits
					} else {
						a = randF32(rng, r*lda, 1)
					}
					half := kind == "f16" || kind == "bf16"
					var d0 []float32 // dst's values before
					dbits := []uint16(nil)
					if half {
						m, v := testW(rng, dt, 1, n+1)
						d0, dbits = v, m.Bits
					} else {
						d0 = randF32(rng, n+1, 1)
					}
					dst := slices.Clone(d0)
					switch kind {
					case "f32":
						rankRowFMA(&dst[0], &a[0], &coef[0], n, r, lda)
					case "from f16":
						rankRowFromF16(&dst[0], &abits[0], &coef[0], n, r, lda)
					case "from bf16":
						rankRowFromBF16(&dst[0], &abits[0], &coef[0], n, r, lda)
					case "f16":
						rankRowF16(&dbits[0], &a[0], &coef[0], n, r, lda)
					case "bf16":
						rankRowBF16(&dbits[0], &a[0], &coef[0], n, r, lda)
					}
					if half {
						dst = make([]float32, n+1)
						widenHalf(dt, dst, dbits)
					}
					for j := range n {
						want, mag := float64(d0[j]), reftest.Abs(float64(d0[j]))
						for k := range r {
							p := float64(coef[k]) * float64(a[k*lda+j])
							want += p
							mag += reftest.Abs(p)
						}
						tol := accTol(r + 1)
						if half {
							// One more rounding, to the half format: a relative
							// 2⁻¹¹ (F16) or 2⁻⁸ (BF16) of the result, plus the
							// smallest subnormal's half.
							tol += map[Type]float64{F16: 0x1p-11, BF16: 0x1p-8}[dt]
						}
						if d := reftest.Abs(float64(dst[j]) - want); !(d <= tol*mag+0x1p-24) {
							t.Fatalf("r=%d n=%d: dst[%d] = %g, want %g", r, n, j, dst[j], want)
						}
					}
					if dst[n] != d0[n] {
						t.Fatalf("r=%d n=%d: wrote past the end", r, n)
					}
				}
			}
		})
	}
}

// TestMaxMag16 checks maxMag16 with the largest magnitude at every position
// of every n that is a multiple of 16 up to 96, negative and positive.
func TestMaxMag16(t *testing.T) {
	kernelOK(t, halfAVX2)
	rng := rand.New(rand.NewPCG(35, 36))
	for n := 16; n <= 96; n += 16 {
		for pos := range n {
			s := make([]uint16, n+1)
			for i := range s {
				s[i] = uint16(rng.IntN(0x4000)) | uint16(rng.IntN(2))<<15
			}
			s[pos] = 0x7bff | uint16(pos%2)<<15
			s[n] = 0x7fff // the guard: past the end, must not be read
			if got := maxMag16(&s[0], n); got != 0x7bff {
				t.Fatalf("n=%d pos=%d: maxMag16 = %#04x, want 0x7bff", n, pos, got)
			}
		}
	}
}

// TestMaxMag32 checks maxMag32 with the largest magnitude at every position
// of runs of 8 to 72 patterns (every remainder of its 32-wide loop), of
// either sign, among random smaller ones, with a larger guard past the end.
func TestMaxMag32(t *testing.T) {
	kernelOK(t, halfAVX2)
	rng := rand.New(rand.NewPCG(39, 40))
	for n := 8; n <= 72; n += 8 {
		for pos := range n {
			s := make([]uint32, n+1)
			for i := range s {
				s[i] = uint32(rng.IntN(0x7f000000)) | uint32(rng.IntN(2))<<31
			}
			s[pos] = 0x7f7fffff | uint32(pos%2)<<31
			s[n] = 0x7fffffff // the guard: past the end, must not be read
			if got := maxMag32(&s[0], n); got != 0x7f7fffff {
				t.Fatalf("n=%d pos=%d: maxMag32 = %#08x, want 0x7f7fffff", n, pos, got)
			}
		}
	}
}

// TestDequantNF4Kernel checks dequantNF4 bit for bit against the table's
// values (reftest.NF4Values) at blocks of 32 to 256 elements: every n that
// is a multiple of 32 up to three blocks and two passes past them, from
// every start it allows (a multiple of 32) in the first two blocks, with a
// guard element after the run.
func TestDequantNF4Kernel(t *testing.T) {
	kernelOK(t, useNF4FMA)
	rng := rand.New(rand.NewPCG(37, 38))
	for _, block := range []int{32, 64, 256} {
		shift := bits.TrailingZeros(uint(block))
		maxN := 3*block + 64
		w, vals := nf4W(rng, 1, 2*block+maxN, block)
		for flat0 := 0; flat0 < 2*block; flat0 += 32 {
			for n := 32; n <= maxN; n += 32 {
				dst := nanFill(n + 1)
				dequantNF4(&dst[0], &w.Codes[0], &w.Absmax[0], n, flat0, shift)
				for i := range n {
					if math.Float32bits(dst[i]) != math.Float32bits(vals[flat0+i]) {
						t.Fatalf("block %d, from %d, n %d: dst[%d] = %g, want %g", block, flat0, n, i, dst[i], vals[flat0+i])
					}
				}
				if !math.IsNaN(float64(dst[n])) {
					t.Fatalf("block %d, from %d, n %d: wrote past the end", block, flat0, n)
				}
			}
		}
	}
}

// TestGemv4NF4 checks gemv4NF4 (x in evenOdd order of 8) and
// gemv4NF4AVX512 (of 32) against a float64 reference on the table's values
// at blocks of 32 to 256 elements: every n that is a multiple of the block
// up to four blocks, rows one and three blocks longer than n, codes and
// absmax starting past W's first block, and a guard element after y.
func TestGemv4NF4(t *testing.T) {
	for _, k := range []struct {
		name  string
		ok    bool
		kern  func(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)
		width int
	}{
		{"avx2", useNF4FMA, gemv4NF4, 8},
		{"avx512", useNF4AVX512, gemv4NF4AVX512, 32},
	} {
		t.Run(k.name, func(t *testing.T) {
			kernelOK(t, k.ok)
			rng := rand.New(rand.NewPCG(39, 40))
			for _, block := range []int{32, 64, 256} {
				for n := block; n <= 4*block; n += block {
					for _, ldw := range []int{n + block, n + 3*block} {
						w, vals := nf4W(rng, 5, ldw, block)
						x := randF32(rng, n, 1)
						kx := make([]float32, n)
						evenOdd(kx, x, 1, n, k.width)
						y := nanFill(5) // y[4] is the guard
						// Rows 1 to 4 of W, from its second block on.
						flat0 := ldw + block
						k.kern(&y[0], &kx[0], &w.Codes[flat0/2], &w.Absmax[flat0/block], n, ldw, block)
						for q := range 4 {
							var want, mag float64
							for j := range n {
								p := float64(x[j]) * float64(vals[flat0+q*ldw+j])
								want += p
								mag += reftest.Abs(p)
							}
							if d := reftest.Abs(float64(y[q]) - want); !(d <= accTol(n)*mag) {
								t.Fatalf("block %d, n %d, ldw %d: y[%d] = %g, want %g", block, n, ldw, q, y[q], want)
							}
						}
						if !math.IsNaN(float64(y[4])) {
							t.Fatalf("block %d, n %d: wrote past y[3]", block, n)
						}
					}
				}
			}
		})
	}
}
