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
			gemmKernelPF(k, &a[0], &b[0], &pfc[0], ldc, acc, p0, p0+uintptr(4*len(pfBuf)), 4*37, 4*64, gemmNR)
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
		// dx reading a float32 W in place (n ≤ gemmInPlaceRows, blocks
		// of whole panels): rows of dy past a panel, steps past gemmKC.
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
			// size of x), and of 64 rows: panels of W past a block.
			for _, ncb := range []int{0, gemmNCSmall, 64, gemmNC} {
				y := nanFill(sh.n * sh.out)
				if ncb == 0 {
					packedProduct(y, x, w, sh.n)
				} else {
					packedRun(y, x, sh.n, sh.in, sh.out, &w, false, ncb)
				}
				// Each element: in products summed in float32, in runs of
				// gemmKC, each run added to the sum so far.
				within(t, fmt.Sprintf("%v n=%d out=%d in=%d blocks of %d", dt, sh.n, sh.out, sh.in, ncb), y, want, mag, accTol(sh.in))
			}

			// dx = dy·W: the columns of W packed as rows, the inner
			// dimension out.
			dy := randF32(rng, sh.n*sh.out, 1)
			dx := nanFill(sh.n * sh.in)
			packedGradX(dx, dy, w, sh.n)
			want, mag = refNN(dy, vals, sh.n, sh.in, sh.out)
			within(t, fmt.Sprintf("%v dx n=%d out=%d in=%d", dt, sh.n, sh.out, sh.in), dx, want, mag, accTol(sh.out))
		}
	}
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
			size := gemmRowsPad(n) * k
			want := make([]float32, size)
			packX(want, x, n, k)
			got := make([]float32, size)
			for i := range got {
				got[i] = float32(math.NaN())
			}
			packXT(got, src, n, k, ld)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d k=%d: element %d = %g, want %g", n, k, i, got[i], want[i])
				}
			}
		}
	}
}

// TestPackT8 checks the 8×8-transpose packing of x's panels against its
// definition, dst[p·8+i] = src[i·ld+p], with rows of odd stride.
func TestPackT8(t *testing.T) {
	for _, k8 := range []int{1, 2, 5} {
		ld := 8*k8 + 3
		src := make([]float32, 8*ld)
		for i := range src {
			src[i] = float32(i) + 0.5
		}
		dst := make([]float32, 64*k8+8)
		for i := range dst {
			dst[i] = float32(math.NaN())
		}
		packT8(&dst[0], &src[0], k8, ld)
		for p := range 8 * k8 {
			for i := range 8 {
				if dst[p*8+i] != src[i*ld+p] {
					t.Fatalf("k8=%d: dst[%d] = %g, want src[%d][%d] = %g", k8, p*8+i, dst[p*8+i], i, p, src[i*ld+p])
				}
			}
		}
		for _, v := range dst[64*k8:] {
			if !math.IsNaN(float64(v)) {
				t.Fatalf("k8=%d: written past the panel", k8)
			}
		}
	}
}
