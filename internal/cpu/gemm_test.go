package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestGemmKernel checks the micro-kernel alone (and gemmKernelPF against
// it, bit for bit), with and without acc, at
// k = 1, 2 and odd k (the loop takes two steps a pass, then the odd one),
// against a float64 reference, with ldc wider than the block (the rows of
// c it must not touch are checked untouched).
func TestGemmKernel(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	rng := rand.New(rand.NewPCG(7, 1))
	const ldc = gemmNR + 5
	for _, k := range []int{1, 2, 3, 16, 255, 256} {
		for _, acc := range []int{0, 1} {
			a := randF32(rng, k*gemmMR, 1)
			b := randF32(rng, k*gemmNR, 1)
			c := randF32(rng, gemmMR*ldc, 1)
			old := append([]float32(nil), c...)
			// gemmKernelPF, prefetching rows of a buffer, computes the
			// same, bit for bit.
			pfc := append([]float32(nil), c...)
			pfBuf := make([]float32, 64*100)
			p0 := uintptr(unsafe.Pointer(&pfBuf[0]))
			gemmKernelPF(k, &a[0], &b[0], &pfc[0], ldc, acc, p0, min(k&^1, len(pfBuf)/64), 4*37, 4*64, gemmNR)
			gemmKernelAVX512(k, &a[0], &b[0], &c[0], ldc, acc)
			for i, v := range c {
				if pfc[i] != v && v == v {
					t.Fatalf("k=%d acc=%d: gemmKernelPF c[%d] = %v, gemmKernelAVX512 %v", k, acc, i, pfc[i], v)
				}
			}
			for i := range gemmMR {
				for j := range ldc {
					got := c[i*ldc+j]
					if j >= gemmNR {
						if got != old[i*ldc+j] {
							t.Fatalf("k=%d acc=%d: c[%d,%d] beyond the block written", k, acc, i, j)
						}
						continue
					}
					var want, mag float64
					for p := range k {
						v := float64(a[p*gemmMR+i]) * float64(b[p*gemmNR+j])
						want += v
						mag += max(v, -v)
					}
					if acc != 0 {
						want += float64(old[i*ldc+j])
						mag += max(float64(old[i*ldc+j]), -float64(old[i*ldc+j]))
					}
					within(t, fmt.Sprintf("k=%d acc=%d c[%d,%d]", k, acc, i, j), []float32{got}, []float64{want}, []float64{mag}, accTol(k+1))
				}
			}
		}
	}
}

// TestGemmKernel6 checks the kernels of six rows (gemmKernel6x64 and
// gemmKernel6x32) with and without acc, at k = 1, 2, odd k and past
// gemmKC, b's steps 32 floats apart (packed) and further (W read in
// place), its second panel after the first's steps or 32 floats on,
// prefetching rows of a buffer, with ldc wider than the block: each
// element bit for bit as gemmKernelAVX512 forms it (on AVX-512) and within
// a float32 sum's bound of a float64 reference, and the columns of c past
// the block untouched.
func TestGemmKernel6(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	rng := rand.New(rand.NewPCG(7, 3))
	const ldc = 2*gemmNR + 5
	pfBuf := make([]float32, 64*100)
	p0 := uintptr(unsafe.Pointer(&pfBuf[0]))
	for _, k := range []int{1, 2, 3, 16, 127, 256} {
		for _, ldb := range []int{gemmNR, 3*gemmNR + 7} {
			for _, second := range []int{-1, gemmNR} { // -1: after the first panel's steps
				b2 := second
				if b2 < 0 {
					b2 = k * ldb
				}
				b := randF32(rng, b2+k*ldb+gemmNR, 1)
				a := randF32(rng, 6*k, 1)
				// a as a panel of eight rows (the last two zero), for
				// gemmKernelAVX512; b's panels packed for it.
				a8 := make([]float32, 8*k)
				for p := range k {
					copy(a8[8*p:8*p+6], a[6*p:6*p+6])
				}
				var b8 [2][]float32
				for q := range b8 {
					b8[q] = make([]float32, k*gemmNR)
					for p := range k {
						copy(b8[q][p*gemmNR:(p+1)*gemmNR], b[q*b2+p*ldb:])
					}
				}
				for _, wide := range []bool{true, false} {
					for _, acc := range []int{0, 1} {
						what := fmt.Sprintf("k=%d ldb=%d b2=%d wide=%v acc=%d", k, ldb, b2, wide, acc)
						c := randF32(rng, 6*ldc, 1)
						old := append([]float32(nil), c...)
						cols := gemmNR
						if wide {
							cols = 2 * gemmNR
							gemmKernel6x64(k, &a[0], &b[0], &c[0], ldc, acc, p0, min(k&^1, len(pfBuf)/64), 4*37, 4*64, ldb, 4*b2)
						} else {
							gemmKernel6x32(k, &a[0], &b[0], &c[0], ldc, acc, p0, min(k&^1, len(pfBuf)/64), 4*37, 4*64, ldb, 4*b2)
						}
						if MachineLevel() >= AVX512 {
							for q := range cols / gemmNR {
								c8 := make([]float32, 8*ldc)
								copy(c8, old)
								gemmKernelAVX512(k, &a8[0], &b8[q][0], &c8[q*gemmNR], ldc, acc)
								for i := range 6 {
									for j := q * gemmNR; j < (q+1)*gemmNR; j++ {
										if got, want := c[i*ldc+j], c8[i*ldc+j]; math.Float32bits(got) != math.Float32bits(want) {
											t.Fatalf("%s: c[%d,%d] = %v, gemmKernelAVX512 %v", what, i, j, got, want)
										}
									}
								}
							}
						}
						checkBlock6(t, what, c, old, ldc, cols, k, acc != 0,
							func(i, p int) float32 { return a[6*p+i] },
							func(p, j int) float32 { return b[j/gemmNR*b2+p*ldb+j%gemmNR] })
					}
				}
			}
		}
	}
}

// TestPackedProduct checks the packed products y = x·Wᵀ and dx = dy·W for every type of W against
// a float64 reference from W's exact values, on shapes that leave a
// remainder in every blocking of both: rows of x past gemmMR and gemmMC,
// rows and columns of W past gemmNR and gemmNC and past gemmKC (twice), odd;
// with GOMAXPROCS 7 so that the blocks of W split unevenly; y = x·Wᵀ in
// blocks of W of every size packedRun takes.
func TestPackedProduct(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	manyProcs(t)
	rng := rand.New(rand.NewPCG(7, 2))
	shapes := []struct{ n, out, in int }{
		{16, 32, 16}, {17, 45, 33}, {23, 300, 257}, {130, 97, 520}, {8, 64, 64}, {40, 600, 70}, {9, 70, 600},
		// dx reading a float32 W in place (n ≤ gemmInPlaceRows, at most
		// gemmKC rows of W, blocks of whole panels): rows of dy past a
		// panel, a lone panel after pairs; and past gemmKC rows, packed.
		{gemmInPlaceRows - 1, gemmKC, 2*gemmNC + gemmNR}, {gemmInPlaceRows, 77, 96},
		{gemmInPlaceRows - 1, gemmKC + 2, 2 * gemmNC}, {gemmInPlaceRows, 2*gemmKC + 1, 96},
	}
	if testing.Short() {
		shapes = shapes[:3]
	}
	for _, sh := range shapes {
		for _, dt := range []Type{F32, F16, BF16, NF4} {
			var w Mat
			var vals []float32
			switch dt {
			case F32:
				vals = randF32(rng, sh.out*sh.in, 1)
				w = Mat{Rows: sh.out, Cols: sh.in, Type: F32, F32: vals}
			case NF4:
				w, vals = nf4W(rng, sh.out, sh.in, 32)
			default:
				h := newHalfW(rng, dt, sh.out, sh.in, 1)
				w, vals = Mat{Rows: sh.out, Cols: sh.in, Type: dt, Bits: h.bits}, h.val
			}
			x := randF32(rng, sh.n*sh.in, 1)
			want, mag := refNT(x, vals, sh.n, sh.out, sh.in)
			// Blocks of W of either size (packedProduct picks one by the
			// size of x), of 32 rows (a lone panel a block) and of 96
			// (a pair of panels and a lone one): panels of W past a
			// block; x in panels of either height.
			for _, ncb := range []int{0, gemmNCSmall, 32, 96, gemmNC} {
				for _, mr := range []int{gemmMR, gemmMR6} {
					if ncb == 0 && mr == gemmMR {
						continue
					}
					y := nanFill(sh.n * sh.out)
					if ncb == 0 {
						packedProduct(y, x, w, sh.n)
					} else {
						packedRunMR(y, x, sh.n, sh.in, sh.out, &w, false, ncb, mr)
					}
					// Each element: in products summed in float32, in
					// runs of gemmKC, each run added to the sum so far.
					within(t, fmt.Sprintf("%v n=%d out=%d in=%d blocks of %d, panels of %d", dt, sh.n, sh.out, sh.in, ncb, mr), y, want, mag, accTol(sh.in))
				}
			}

			// dx = dy·W: the columns of W packed as rows, the inner
			// dimension out; x in panels of either height.
			dy := randF32(rng, sh.n*sh.out, 1)
			want, mag = refNN(dy, vals, sh.n, sh.in, sh.out)
			// In either blocking of gradXBlocks, whichever this
			// processor takes (shortDXSlabs).
			for _, short := range []bool{false, true} {
				dx := nanFill(sh.n * sh.in)
				withShortDXSlabs(short, func() { packedGradX(dx, dy, w, sh.n) })
				within(t, fmt.Sprintf("%v dx n=%d out=%d in=%d, short slabs %v", dt, sh.n, sh.out, sh.in, short), dx, want, mag, accTol(sh.out))
			}
			for _, mr := range []int{gemmMR, gemmMR6} {
				dx := nanFill(sh.n * sh.in)
				packedRunMR(dx, dy, sh.n, sh.out, sh.in, &w, true, gemmNC, mr)
				within(t, fmt.Sprintf("%v dx n=%d out=%d in=%d, panels of %d", dt, sh.n, sh.out, sh.in, mr), dx, want, mag, accTol(sh.out))
			}
		}
	}
}

// withShortDXSlabs runs f with shortDXSlabs set to short, then restores it.
func withShortDXSlabs(short bool, f func()) {
	defer func(v bool) { shortDXSlabs = v }(shortDXSlabs)
	shortDXSlabs = short
	f()
}

// packedRunMR is packedRun with x in panels of mr rows.
func packedRunMR(y, x []float32, n, k, nc int, w *Mat, trans bool, ncb, mr int) {
	ap := make([]float32, gemmRowsPad(n, mr)*k)
	packX(ap, x, n, k, mr)
	packedRunX(y, ap, n, k, nc, w, trans, ncb, gemmKC, mr, nil)
}

// TestPackT32 checks packT32, packT32BF16 and packT32F16 alone against
// the loop they compute (exact values of the half patterns), on
// columns in multiples of 16 up to gemmKC and beyond, rows wider than the
// columns packed (ld > kc), and that nothing past its panel is written.
func TestPackT32(t *testing.T) {
	if MachineLevel() < AVX512 && !portableKernels {
		t.Skipf("the processor lacks AVX-512 (level %v): the kernel cannot run", MachineLevel())
	}
	rng := rand.New(rand.NewPCG(7, 3))
	for _, kc := range []int{16, 32, 48, 240, 256, 272} {
		for _, ld := range []int{kc, kc + 5, 3*kc + 16} {
			for _, dt := range []Type{F32, BF16, F16} {
				src := randF32(rng, gemmNR*ld, 1)
				var bits []uint16
				dst := nanFill(kc*gemmNR + 40)
				switch dt {
				case F32:
					packT32(&dst[0], &src[0], kc, ld)
				default:
					h := newHalfW(rng, dt, gemmNR, ld, 1)
					bits, src = h.bits, h.val
					// Subnormals, signed zeros, infinities, the largest.
					for q, b := range []uint16{0x0001, 0x03ff, 0x8001, 0x8000, 0x0000, 0x7c00, 0xfc00, 0x7bff, 0x0080, 0x807f} {
						bits[q*ld+q%kc] = b
						src[q*ld+q%kc] = widen1(dt, b)
					}
					if dt == BF16 {
						packT32BF16(&dst[0], &bits[0], kc, ld)
					} else {
						packT32F16(&dst[0], &bits[0], kc, ld)
					}
				}
				for p := range kc {
					for i := range gemmNR {
						if got, want := dst[p*gemmNR+i], src[i*ld+p]; got != want {
							t.Fatalf("%v kc=%d ld=%d: dst[%d·32+%d] = %v, want %v", dt, kc, ld, p, i, got, want)
						}
					}
				}
				for j, v := range dst[kc*gemmNR:] {
					if v == v {
						t.Fatalf("%v kc=%d ld=%d: dst[%d] written past the panel", dt, kc, ld, kc*gemmNR+j)
					}
				}
			}
		}
	}
}

// TestPackXT checks that packXT lays out the transpose of a strided block
// exactly as packX lays out that transpose made explicit, on every
// remainder of the panels (gemmMR rows) and the steps (gemmKC columns).
func TestPackXT(t *testing.T) {
	for _, n := range []int{1, 7, 8, 9, 16, 21} {
		for _, k := range []int{1, 15, gemmKC, gemmKC + 3, 2*gemmKC + 17} {
			ld := n + 5
			src := make([]float32, k*ld)
			for i := range src {
				src[i] = float32(i) + 0.25
			}
			x := make([]float32, n*k) // the transpose, n×k
			for i := range n {
				for p := range k {
					x[i*k+p] = src[p*ld+i]
				}
			}
			for _, mr := range []int{gemmMR, gemmMR6} {
				size := gemmRowsPad(n, mr) * k
				want := make([]float32, size)
				packX(want, x, n, k, mr)
				got := make([]float32, size)
				for i := range got {
					got[i] = float32(math.NaN())
				}
				packXT(got, src, n, k, ld, mr)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("n=%d k=%d mr=%d: element %d = %g, want %g", n, k, mr, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestPackT8 checks the transpose packings of x's panels, packT8 (eight
// rows) and packT6 (six, where the processor has AVX-512), against their
// definition, dst[p·rows+i] = src[i·ld+p], with rows of odd stride, and
// that nothing past the panel is written.
func TestPackT8(t *testing.T) {
	for _, c := range []struct {
		rows   int
		pack   func(dst, src *float32, k8, ld int)
		avx512 bool
	}{{8, packT8, false}, {6, packT6, true}} {
		if c.avx512 && MachineLevel() < AVX512 && !portableKernels {
			t.Logf("packT6: the processor lacks AVX-512 (level %v)", MachineLevel())
			continue
		}
		for _, k8 := range []int{1, 2, 5} {
			ld := 8*k8 + 3
			src := make([]float32, c.rows*ld)
			for i := range src {
				src[i] = float32(i) + 0.5
			}
			size := 8 * c.rows * k8
			dst := make([]float32, size+8)
			for i := range dst {
				dst[i] = float32(math.NaN())
			}
			c.pack(&dst[0], &src[0], k8, ld)
			for p := range 8 * k8 {
				for i := range c.rows {
					if dst[p*c.rows+i] != src[i*ld+p] {
						t.Fatalf("rows=%d k8=%d: dst[%d] = %g, want src[%d][%d] = %g", c.rows, k8, p*c.rows+i, dst[p*c.rows+i], i, p, src[i*ld+p])
					}
				}
			}
			for _, v := range dst[size:] {
				if !math.IsNaN(float64(v)) {
					t.Fatalf("rows=%d k8=%d: written past the panel", c.rows, k8)
				}
			}
		}
	}
}
