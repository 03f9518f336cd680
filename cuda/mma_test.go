//go:build cuda || cudaemu

package cuda

// The tensor-core kernels launched directly, emulated (-tags cudaemu) and
// on a GPU of sm_80 or newer (-tags cuda), against float64 references.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/reftest"
)

// devBuf copies the bytes of s to a new device allocation of at least
// len(s) elements, which the test frees at its end.
func devBuf[T any](t *testing.T, s []T) Ptr {
	t.Helper()
	size := int64(len(s)) * int64(unsafe.Sizeof(*new(T)))
	if size == 0 {
		size = 4
	}
	p, err := Alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Free(p) })
	if len(s) > 0 {
		if err := CopyHtoD(p, unsafe.Pointer(&s[0]), size); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// readBuf copies len(dst) elements of device memory at p into dst.
func readBuf[T any](t *testing.T, dst []T, p Ptr) {
	t.Helper()
	if err := CopyDtoH(unsafe.Pointer(&dst[0]), p, int64(len(dst))*int64(unsafe.Sizeof(dst[0]))); err != nil {
		t.Fatal(err)
	}
}

// forwardMMARef returns y = x·Wᵀ + T·Bᵀ in float64 from the 16-bit
// patterns of x (n x in) and W (out x in) and the float32 T (n x r) and B
// (out x r), and for each element the sum of the magnitudes of its terms.
func forwardMMARef(widen func(uint16) float32, x, w []uint16, tm, bm []float32, n, in, out, r int) (ref, mag []float64) {
	ref, mag = make([]float64, n*out), make([]float64, n*out)
	xf, wf := make([]float64, len(x)), make([]float64, len(w))
	for i, v := range x {
		xf[i] = float64(widen(v))
	}
	for i, v := range w {
		wf[i] = float64(widen(v))
	}
	for i := range n {
		for j := range out {
			var s, m float64
			for c := range in {
				p := xf[i*in+c] * wf[j*in+c]
				s += p
				m += math.Abs(p)
			}
			for k := range r {
				p := float64(tm[i*r+k]) * float64(bm[j*r+k])
				s += p
				m += math.Abs(p)
			}
			ref[i*out+j], mag[i*out+j] = s, m
		}
	}
	return
}

// TestForwardMMA runs lora_forward_mma_bf16 and lora_forward_mma_f16,
// emulated or on a GPU of sm_80 or newer (skipped, naming the device's
// compute capability, on an older one), on odd shapes (edges in every
// dimension, in not a multiple of 8: the element-wise loads; in a multiple
// of 8: the 16-byte loads; shapes above one tile in every dimension; r = 0,
// a null T, and r above one staged slice; in = 0; x and W not 16-byte
// aligned: the element-wise loads) against a float64 reference built from
// the same 16-bit inputs. Each element of y is written once (y starts as
// NaN) and nothing past y is. It logs one verdict a kernel:
//
//	FAMILY lora_forward_mma_bf16 (direct launches): PASS (18 shapes)
func TestForwardMMA(t *testing.T) {
	if p := Properties(); p.SMs > 0 && p.Arch < 80 {
		t.Skipf("lora_forward_mma_bf16 and lora_forward_mma_f16 need sm_80 (mma.sync); %s is sm_%d", DeviceName(), p.Arch)
	}
	const (
		bm = 128 // LORA_MMA_BM
		bn = 128 // LORA_MMA_BN
	)
	shapes := []struct {
		n, in, out, r int
		shift         bool // x and W start 2 bytes into their allocations
	}{
		{37, 70, 45, 0, false},
		{37, 70, 45, 5, false},
		{1, 7, 3, 1, false},
		{16, 64, 8, 4, false},
		{16, 64, 8, 4, true},
		{5, 0, 7, 3, false},
		{131, 72, 133, 37, false},
		{150, 90, 257, 0, false},
		{129, 101, 130, 16, false},
		{130, 96, 129, 8, true},
	}
	for _, dt := range []struct {
		name   string
		kernel string
		narrow func(float32) uint16
		widen  func(uint16) float32
	}{
		{"bf16", "lora_forward_mma_bf16", half.Float32ToBF16, half.BF16ToFloat32},
		{"f16", "lora_forward_mma_f16", half.Float32ToF16, half.F16ToFloat32},
	} {
		runs, failed := 0, 0
		for _, s := range shapes {
			for _, nullT := range []bool{false, true} {
				if nullT && s.r == 0 {
					continue
				}
				name := fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d", dt.name, s.n, s.in, s.out, s.r)
				if nullT {
					name += ",T=null"
				}
				if s.shift {
					name += ",unaligned"
				}
				runs++
				ok := t.Run(name, func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(s.n*1000+s.in), uint64(s.out*1000+s.r)))
					x, w := make([]uint16, s.n*s.in), make([]uint16, s.out*s.in)
					for i := range x {
						x[i] = dt.narrow(float32(rng.NormFloat64()))
					}
					for i := range w {
						w[i] = dt.narrow(float32(rng.NormFloat64() / 8))
					}
					tm := reftest.Normal(rng, s.n*s.r, 1)
					bmat := reftest.Normal(rng, s.out*s.r, 0.25)
					const guard = 64
					y := make([]float32, s.n*s.out+guard)
					for i := range y {
						y[i] = float32(math.NaN())
					}
					py := devBuf(t, y)
					pt, pb := devBuf(t, tm), devBuf(t, bmat)
					if nullT {
						pt = 0
					}
					px, pw := devBuf(t, x), devBuf(t, w)
					if s.shift {
						px = devBuf(t, append([]uint16{0}, x...)) + 2
						pw = devBuf(t, append([]uint16{0}, w...)) + 2
					}
					var a Args
					a.Ptr(px).Ptr(pw).Ptr(pt).Ptr(pb).Ptr(py).
						Int(s.n).Int(s.in).Int(s.out).Int(s.r)
					grid := Dim3{X: (s.n + bm - 1) / bm, Y: (s.out + bn - 1) / bn, Z: 1}
					if err := Launch(dt.kernel, grid, Dim3{X: 256, Y: 1, Z: 1}, 0, &a); err != nil {
						t.Fatal(err)
					}
					readBuf(t, y, py)
					r := s.r
					if nullT {
						r = 0
					}
					ref, mag := forwardMMARef(dt.widen, x, w, tm, bmat, s.n, s.in, s.out, r)
					bad := 0
					for i := range s.n * s.out {
						// fp32 accumulation of in + r terms (the tensor cores'
						// sums, then the LoRA term): the tensor cores add with
						// truncation (emu.h, MmaMode, as the hardware does), up
						// to 2⁻²³ of the sum of the terms' magnitudes an
						// addition, the LoRA term's fused steps and the final
						// rounding 2⁻²⁴ each: (2·in + r + 1)·2⁻²⁴ of the sum of
						// the magnitudes. Measured emulated on these shapes: at
						// most a third of (in + r + 1)·2⁻²⁴ (n = 1, in = 7),
						// elsewhere under 1/8 of it truncating, 1/16 with
						// LORA_EMU_MMA=exact.
						tol := float64(2*s.in+r+1) * 0x1p-24 * mag[i]
						if got := float64(y[i]); !(math.Abs(got-ref[i]) <= tol) {
							t.Errorf("y[%d][%d] = %v, want %v (±%.3g)", i/s.out, i%s.out, got, ref[i], tol)
							if bad++; bad > 10 {
								t.FailNow()
							}
						}
					}
					for i := s.n * s.out; i < len(y); i++ {
						if !math.IsNaN(float64(y[i])) {
							t.Fatalf("y[%d], past the end of y, was written: %v", i, y[i])
						}
					}
				})
				if !ok {
					failed++
				}
			}
		}
		if failed > 0 {
			t.Logf("FAMILY %s (direct launches): FAIL (%d of %d shapes)", dt.kernel, failed, runs)
		} else {
			t.Logf("FAMILY %s (direct launches): PASS (%d shapes)", dt.kernel, runs)
		}
	}
}
