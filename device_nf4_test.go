//go:build cuda || cudaemu

package lora

// Tests of the GPU backend's NF4 kernels (run emulated with -tags cudaemu):
// lora_forward_small_nf4 and lora_grad_x_small_nf4 as planned for several
// devices, on shapes around their tile edges, against float64 references on
// W's values; lora_dequantize_nf4_* bit for bit.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
)

// devNF4 returns an NF4 matrix of random codes and positive scales in
// blocks of block, and its values.
func devNF4(t *testing.T, rng *rand.Rand, rows, cols, block int) (*Matrix, []float32) {
	t.Helper()
	codes, absmax, values := reftest.RandomNF4(rng, rows*cols, block)
	m, err := NewQuantizedFrom(NF4, rows, cols, block, codes, absmax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m, values
}

// nf4Shape is a forward or backward shape with an NF4 W in blocks of block.
type nf4Shape struct{ n, in, out, r, block int }

// nf4Shapes: in odd (element by element), even but not whole 16-byte
// vectors of codes, and whole vectors (in % 32 == 0), with blocks that
// straddle rows (block not dividing in), out not a multiple of the 16 rows
// of a block of lora_forward_small_nf4, and n on either side of the 16 rows
// of x each of its blocks takes.
var nf4Shapes = func() []nf4Shape {
	var s []nf4Shape
	for _, n := range []int{1, 2, 3, 5, 9, 16, 17, 33} {
		s = append(s, nf4Shape{n, 45, 13, 3, 32}, nf4Shape{n, 66, 37, 0, 64}, nf4Shape{n, 96, 19, 2, 64})
	}
	return append(s, nf4Shape{4, 1056, 21, 5, 128}, nf4Shape{2, 640, 3, 1, 4096}, nf4Shape{20, 1400, 20, 3, 64},
		nf4Shape{3, 4096, 17, 16, 64})
}()

// TestNF4ForwardPlannedVariants runs Forward (r > 0) and Linear (r = 0)
// with an NF4 W on nf4Shapes, planned for an H200, for a device so large
// that every launch splits its inner dimension as far as it may and for
// one so small that none does, against a float64 reference; it fails
// unless lora_forward_small_nf4 ran with and without a split.
func TestNF4ForwardPlannedVariants(t *testing.T) {
	_, huge, tiny := plannedDevices(t)
	rng := rand.New(rand.NewPCG(95, 96))
	reached := map[string]bool{}
	for _, d := range []plan.Device{plan.H200, huge, tiny} {
		planDev = func() plan.Device { return d }
		for _, sh := range nf4Shapes {
			f := plan.ForwardPlanOf(d, sh.n, sh.in, sh.out, sh.r, plan.Types{W: plan.NF4, Block: sh.block})
			for _, l := range f.Launches() {
				reached[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
			}
			checkNF4Forward(t, fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d,block=%d", d.Name, sh.n, sh.in, sh.out, sh.r, sh.block), rng, sh)
		}
	}
	for _, want := range []string{"lora_forward_small_nf4 split=false", "lora_forward_small_nf4 split=true",
		"lora_forward_reduce split=false"} {
		if !reached[want] {
			t.Errorf("no shape reached %s", want)
		}
	}
}

// TestNF4GradXPlannedVariants runs Backward's dx = dy·W + s·(dy·B)·A with
// an NF4 W on nf4Shapes with a rank, planned for an H200 and for a device
// so large that the rows of [W; A] are split as far as they may be, against
// a float64 reference; it fails unless both the split and the unsplit
// launch ran.
func TestNF4GradXPlannedVariants(t *testing.T) {
	_, huge, _ := plannedDevices(t)
	rng := rand.New(rand.NewPCG(97, 98))
	reached := map[bool]bool{}
	shapes := append(slices.Clone(nf4Shapes), nf4Shape{3, 130, 70, 5, 32}, nf4Shape{17, 132, 129, 2, 64})
	for _, d := range []plan.Device{plan.H200, huge} {
		planDev = func() plan.Device { return d }
		for _, sh := range shapes {
			if sh.r == 0 {
				sh.r = 1
			}
			n, in, out, r := sh.n, sh.in, sh.out, sh.r
			m, _, _ := plan.GradXNF4(d, n, in, out, r, sh.block)
			if m.Kernel.Name == plan.KGradXNF4.Name {
				reached[m.Split > 1] = true
			}
			checkNF4GradX(t, fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d,block=%d", d.Name, n, in, out, r, sh.block), rng, sh)
		}
	}
	if !reached[true] || !reached[false] {
		t.Errorf("lora_grad_x_small_nf4 ran split %v, unsplit %v; want both", reached[true], reached[false])
	}
}

// checkNF4Forward runs Forward (sh.r > 0) or Linear (sh.r = 0) with an NF4
// W of random codes on random x and compares y with a float64 reference
// computed from W's values, within the error bound of float32 sums of in + r
// products (each product exact in float64: W's value is formed once in
// float32, as the reference's is).
func checkNF4Forward(t *testing.T, name string, rng *rand.Rand, sh nf4Shape) {
	t.Helper()
	x := reftest.Uniform(rng, sh.n*sh.in, 1)
	a, b := reftest.Uniform(rng, sh.r*sh.in, 1), reftest.Uniform(rng, sh.out*sh.r, 1)
	mw, w := devNF4(t, rng, sh.out, sh.in, sh.block)
	mx, my := devMatrix(t, sh.n, sh.in, x), devMatrix(t, sh.n, sh.out, make([]float32, sh.n*sh.out))
	const s = 0.75
	var err error
	if sh.r == 0 {
		err = Linear(my, mx, mw)
	} else {
		var l *Layer
		l, err = NewLayerFrom(mw, devMatrix(t, sh.r, sh.in, a), devMatrix(t, sh.out, sh.r, b), s)
		if err == nil {
			err = l.Forward(my, mx)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want, mag := reftest.Forward(reftest.Shape{N: sh.n, In: sh.in, Out: sh.out, R: sh.r}, s, x, w, a, b)
	tol := float64(sh.in+sh.r+40) * reftest.U32
	reftest.Check(t, name+": y", devRead(t, my), want, func(i int) float64 { return tol * mag[i] })
}

// checkNF4GradX runs Backward with an NF4 W of random codes (sh.r >= 1) and
// compares dx = dy·W + s·(dy·B)·A with a float64 reference from W's values,
// within the error bound of float32 sums of out + r products.
func checkNF4GradX(t *testing.T, name string, rng *rand.Rand, sh nf4Shape) {
	t.Helper()
	n, in, out, r := sh.n, sh.in, sh.out, sh.r
	mw, w := devNF4(t, rng, out, in, sh.block)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	dy, x := reftest.Uniform(rng, n*out, 1), reftest.Uniform(rng, n*in, 1)
	const s = 0.5
	l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), s)
	if err != nil {
		t.Fatal(err)
	}
	mdx := devMatrix(t, n, in, make([]float32, n*in))
	mdA, mdB := devMatrix(t, r, in, make([]float32, r*in)), devMatrix(t, out, r, make([]float32, out*r))
	if err := l.Backward(mdx, mdA, mdB, devMatrix(t, n, out, dy), devMatrix(t, n, in, x)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ref := reftest.Backward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, dy, x, w, a, b, false)
	tol := float64(out+r+40) * reftest.U32
	reftest.Check(t, name+": dx", devRead(t, mdx), ref.DX, func(i int) float64 { return tol * ref.MagX[i] })
}

// nf4TiledShapes are the shapes of the tiled NF4 tests: n on either side
// of each tile height (16, 32, 64, 128 rows of x) and of the planner's
// choices between them; in odd (code by code), even but not a multiple of
// 8 (runs of codes straddling rows, read code by code), a multiple of 8 (one
// 32-bit word a run) and long enough to split; blocks of 32 to 128
// elements that straddle rows (none divides in but 32 | 1400's neighbours
// of 8), out on either side of the 128 rows of a tile.
var nf4TiledShapes = func() []nf4Shape {
	var s []nf4Shape
	for _, n := range []int{17, 31, 32, 33, 40, 48, 63, 64, 65, 127, 128, 129, 255, 256} {
		s = append(s, nf4Shape{n, 45, 13, 3, 32}, nf4Shape{n, 66, 130, 0, 64}, nf4Shape{n, 264, 37, 2, 128},
			nf4Shape{n, 1400, 20, 0, 64}, nf4Shape{n, 1400, 129, 1, 32})
	}
	return s
}()

// nf4SlowDevice is an H200 with sms SMs of a 67000th of its FLOPs each:
// compute-bound at every shape, where the cost of dequantizing W once per
// tile of rows of x decides between the NF4 kernels, so that small shapes
// reach the m-tile and 128×128 kernels the planner chooses at large ones on
// a real device (with one SM, a single block fills a wave of the 128×128
// tiles; with four, three m16 tiles leave room for a split).
func nf4SlowDevice(sms int) plan.Device {
	d := plan.H200
	d.Name, d.SMs, d.FLOPs = fmt.Sprintf("slow%d", sms), sms, 1e9*float64(sms)
	return d
}

// TestNF4TiledPlannedVariants runs Forward, Linear and Backward's dx with an
// NF4 W on nf4TiledShapes, planned for an H200 and for nf4SlowDevice(1, 4),
// against float64 references, and fails unless every tiled NF4 kernel ran:
// lora_forward_m16_nf4 (unsplit: the model gives its split to the small
// kernel, whose dequantizing costs the same at 33 to 48 rows; see
// TestNF4MTileSplits), _m32_ and _m64_ with and without a split of the
// inner dimension, lora_forward_tiled_nf4 after lora_shrink, and
// lora_grad_x_tiled_nf4.
func TestNF4TiledPlannedVariants(t *testing.T) {
	plannedDevices(t) // restores planDev
	rng := rand.New(rand.NewPCG(101, 102))
	reached := map[string]bool{}
	for _, d := range []plan.Device{plan.H200, nf4SlowDevice(1), nf4SlowDevice(4)} {
		planDev = func() plan.Device { return d }
		for _, sh := range nf4TiledShapes {
			f := plan.ForwardPlanOf(d, sh.n, sh.in, sh.out, sh.r, plan.Types{W: plan.NF4, Block: sh.block})
			for _, l := range f.Launches() {
				reached[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
			}
			name := fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d,block=%d", d.Name, sh.n, sh.in, sh.out, sh.r, sh.block)
			checkNF4Forward(t, name, rng, sh)
			gx := sh
			gx.r = max(sh.r, 1)
			m, _, _ := plan.GradXNF4(d, gx.n, gx.in, gx.out, gx.r, gx.block)
			reached[m.Kernel.Name] = true
			checkNF4GradX(t, name, rng, gx)
		}
	}
	for _, want := range []string{
		"lora_forward_m16_nf4 split=false",
		"lora_forward_m32_nf4 split=false", "lora_forward_m32_nf4 split=true",
		"lora_forward_m64_nf4 split=false", "lora_forward_m64_nf4 split=true",
		"lora_forward_tiled_nf4 split=false", "lora_shrink split=false",
		"lora_grad_x_tiled_nf4", "lora_grad_x_small_nf4",
	} {
		if !reached[want] {
			t.Errorf("no shape reached %s", want)
		}
	}
}

// TestNF4MTileSplits launches lora_forward_m16_nf4, _m32_ and _m64_
// directly, unsplit and with the inner dimension split in 3 (and in more
// parts than it has K-steps, which leaves splits empty), on shapes with in
// odd, even and a multiple of 8 and blocks straddling rows, and checks each
// sum of the splits' partial products P[z] = x·[W; A]ᵀ against a float64
// reference from W's values, within the bound of float32 sums of in
// products (the splits summed here in float64 add no error of note).
func TestNF4MTileSplits(t *testing.T) {
	rng := rand.New(rand.NewPCG(103, 104))
	for _, sh := range []nf4Shape{{40, 1400, 20, 3, 32}, {33, 66, 130, 2, 64}, {17, 45, 13, 1, 32}, {50, 264, 129, 0, 128}} {
		for _, bm := range []int{16, 32, 64} {
			for _, split := range []int{1, 3, 64} {
				name := fmt.Sprintf("lora_forward_m%d_nf4/n=%d,in=%d,out=%d,r=%d,block=%d,split=%d", bm, sh.n, sh.in, sh.out, sh.r, sh.block, split)
				n, in, out, r := sh.n, sh.in, sh.out, sh.r
				x, a := reftest.Uniform(rng, n*in, 1), reftest.Uniform(rng, r*in, 1)
				mw, w := devNF4(t, rng, out, in, sh.block)
				var ma *Matrix
				if r > 0 {
					ma = devMatrix(t, r, in, a)
				}
				rows := out + r
				mp := devMatrix(t, split*n, rows, make([]float32, split*n*rows))
				var k launchArgs
				k.mat(devMatrix(t, n, in, x)).mat(mw).nf4Absmax(mw).mat(ma).mat(mp).int32(n).int32(in).int32(out).int32(r).int32(sh.block)
				grid := [3]int{ceilDiv(n, bm), ceilDiv(out, plan.MTileN) + ceilDiv(r, plan.MTileN), split}
				if err := launch(fmt.Sprintf("lora_forward_m%d_nf4", bm), dim(grid), dim([3]int{plan.MTileThreads, 1, 1}), &k); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				p := devRead(t, mp)
				got := make([]float32, n*rows)
				for i := range n {
					for j := range rows {
						var sum float64
						for z := range split {
							sum += float64(p[(z*n+i)*rows+j])
						}
						got[i*rows+j] = float32(sum)
					}
				}
				// The reference: x·Wᵀ in the first out columns, x·Aᵀ in the others.
				yw, mw64 := reftest.Forward(reftest.Shape{N: n, In: in, Out: out}, 0, x, w, nil, nil)
				ya, ma64 := reftest.Forward(reftest.Shape{N: n, In: in, Out: r}, 0, x, a, nil, nil)
				want, mag := make([]float64, n*rows), make([]float64, n*rows)
				for i := range n {
					copy(want[i*rows:], yw[i*out:(i+1)*out])
					copy(mag[i*rows:], mw64[i*out:(i+1)*out])
					copy(want[i*rows+out:], ya[i*r:(i+1)*r])
					copy(mag[i*rows+out:], ma64[i*r:(i+1)*r])
				}
				tol := float64(in+40) * reftest.U32
				reftest.Check(t, name+": P", got, want, func(i int) float64 { return tol * mag[i] })
			}
		}
	}
}

// TestNF4DequantizeKernel checks lora_dequantize_nf4_* bit for bit against
// the NF4 values rounded once to each dtype, on counts that leave a tail of
// fewer than 8 elements (and an odd count, whose last byte is half used)
// and on more elements than one block of threads covers.
func TestNF4DequantizeKernel(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 100))
	for _, sh := range []struct{ rows, cols, block int }{{1, 1, 32}, {3, 45, 32}, {7, 96, 64}, {5, 13, 4096},
		{3, plan.ConvertThreads*8 + 5, 128}} {
		src, vals := devNF4(t, rng, sh.rows, sh.cols, sh.block)
		for _, dt := range []DType{F32, F16, BF16} {
			name := fmt.Sprintf("%dx%d block %d to %v", sh.rows, sh.cols, sh.block, dt)
			dst, err := NewMatrixOf(dt, sh.rows, sh.cols)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(dst.Free)
			if err := Dequantize(dst, src); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if dt == F32 {
				if got := devRead(t, dst); !slices.Equal(got, vals) {
					t.Errorf("%s: differs from the NF4 values", name)
				}
				continue
			}
			want, got := make([]uint16, len(vals)), make([]uint16, len(vals))
			if dt == F16 {
				half.F32ToF16(want, vals)
			} else {
				half.F32ToBF16(want, vals)
			}
			if err := dst.ReadBits(got); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s: differs from the NF4 values rounded once", name)
			}
		}
	}
}
