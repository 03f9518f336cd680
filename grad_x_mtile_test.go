//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
)

// TestGradXMTileVariants runs Backward's dx = dy·W + s·(dy·B)·A for a
// float32, an F16 and a BF16 W at n on either side of every m-tile height
// and of the 128×128 tiles (17, 31, 33, 63, 65, 127, 129, 511, 512, 513),
// planned for an H200 (where these small shapes are compute-bound and the
// m-tiles split their inner dimension as far as it may be split) and for a
// device of one SM with a short memory latency (which the 128×128 tiles
// fill), on two shapes: out + r
// of 4 K-steps (unsplit: dx written directly), in past a tile of columns
// with a multiple of 8 (16-byte loads); and of 18 K-steps (a split of 4, one
// of its parts across the end of W's rows into A's), in odd (element
// loads). Each unmerged, and merged at three n (r = 0: dy·W alone), against
// a float64 reference over the widened W with the bound of float32 sums of
// out + r products; and for an NF4 W (blocks straddling its rows) on the
// planner's m-tile candidate, unsplit and split. It fails unless each of lora_grad_x_m16, _m32 and _m64 ran split
// and unsplit for every type of W, and lora_grad_x_tiled ran for every type
// but NF4.
func TestGradXMTileVariants(t *testing.T) {
	h200, huge, tiny := plannedDevices(t)
	// one SM whose memory latency is short enough for every kernel's loads
	// in flight: the 128×128 tiles fill it, and win the ties of the model
	tiny.Latency = 1e-9
	rng := rand.New(rand.NewPCG(191, 192))
	reached := map[string]bool{}
	type shape struct{ in, out, r int }
	for _, d := range []plan.Device{h200, tiny} {
		planDev = func() plan.Device { return d }
		for _, dt := range []DType{F32, F16, BF16} {
			for _, n := range []int{17, 31, 33, 63, 65, 127, 129, 511, 512, 513} {
				if d.Name == tiny.Name && n != 129 && n != 512 {
					continue
				}
				for _, sh := range []shape{{136, 70, 5}, {67, 520, 3}} {
					for _, merged := range []bool{false, true} {
						if merged && n != 17 && n != 65 && n != 129 {
							continue
						}
						r := sh.r
						if merged {
							r = 0
						}
						g := plan.GradXOf(d, n, sh.in, sh.out, r, plan.Types{W: plan.Elem(dt)})
						reached[fmt.Sprintf("%s split %v", g.Main.Kernel.Name, g.Main.Split > 1)] = true
						name := fmt.Sprintf("%s/%v/n=%d,in=%d,out=%d,r=%d,merged=%v", d.Name, dt, n, sh.in, sh.out, sh.r, merged)
						checkGradXOf(t, name, rng, dt, n, sh.in, sh.out, sh.r, merged)
					}
				}
			}
		}
	}
	// An NF4 W in blocks that straddle its rows, in a multiple of 8 (one
	// 32-bit word of codes a run) and odd (code by code), on the planner's
	// m-tile candidate (at these small shapes the model prefers
	// lora_grad_x_small_nf4 or the 128×128 tiles, which other tests run):
	// unsplit on the H200 (4 K-steps) and split as far as it may be on a
	// device of very many SMs (18 K-steps, 4 splits).
	oldPlan := gradXPlan
	t.Cleanup(func() { gradXPlan = oldPlan })
	gradXPlan = func(d plan.Device, n, in, out, r int, ty plan.Types) plan.GradXPlan {
		c := plan.GradXCandidates(d, n, in, out, r, ty)
		g := c[len(c)-1]
		if !strings.HasPrefix(g.Main.Kernel.Name, "lora_grad_x_m") {
			t.Fatalf("n=%d in=%d out=%d r=%d %v: the last candidate is %s", n, in, out, r, ty, g.Main.Kernel.Name)
		}
		return g
	}
	for _, d := range []plan.Device{h200, huge} {
		planDev = func() plan.Device { return d }
		for _, n := range []int{17, 33, 63, 65, 129} {
			for _, sh := range []nf4Shape{{n, 136, 70, 5, 32}, {n, 67, 520, 3, 64}} {
				g := gradXPlan(d, n, sh.in, sh.out, sh.r, plan.Types{W: plan.NF4, Block: sh.block})
				reached[fmt.Sprintf("%s split %v", g.Main.Kernel.Name, g.Main.Split > 1)] = true
				checkNF4GradX(t, fmt.Sprintf("%s/nf4/n=%d,in=%d,out=%d,r=%d,block=%d", d.Name, n, sh.in, sh.out, sh.r, sh.block), rng, sh)
			}
		}
	}
	gradXPlan = oldPlan
	for _, dt := range []DType{F32, F16, BF16, NF4} {
		suffix := ""
		if dt != F32 {
			suffix = "_" + dt.String()
		}
		if dt == NF4 {
			for _, bm := range []int{16, 32, 64} {
				for _, split := range []bool{false, true} {
					if k := fmt.Sprintf("lora_grad_x_m%d_nf4 split %v", bm, split); !reached[k] {
						t.Errorf("%s not reached", k)
					}
				}
			}
			continue
		}
		for _, bm := range []int{16, 32, 64} {
			for _, split := range []bool{false, true} {
				if k := fmt.Sprintf("lora_grad_x_m%d%s split %v", bm, suffix, split); !reached[k] {
					t.Errorf("%s not reached", k)
				}
			}
		}
		if k := "lora_grad_x_tiled" + suffix + " split false"; !reached[k] {
			t.Errorf("%s not reached", k)
		}
	}
	for k := range reached {
		if !strings.HasPrefix(k, "lora_grad_x_m") && !strings.HasPrefix(k, "lora_grad_x_tiled") {
			t.Errorf("planned %s at n > 16", k)
		}
	}
}

// checkGradXOf runs Backward on a layer whose W is of type dt (random
// values rounded to it) and checks dx against a float64 reference over W
// as stored.
func checkGradXOf(t *testing.T, name string, rng *rand.Rand, dt DType, n, in, out, r int, merged bool) {
	t.Helper()
	w := reftest.Uniform(rng, out*in, 1)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	dy, x := reftest.Uniform(rng, n*out, 1), reftest.Uniform(rng, n*in, 1)
	const s = 0.5
	var mw *Matrix
	bits := make([]uint16, out*in)
	switch dt {
	case F32:
		mw = devMatrix(t, out, in, w)
	case F16, BF16:
		if dt == F16 {
			half.F32ToF16(bits, w)
		} else {
			half.F32ToBF16(bits, w)
		}
		var err error
		if mw, err = NewMatrixOf(dt, out, in); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(mw.Free)
		if err := mw.WriteBits(bits); err != nil {
			t.Fatal(err)
		}
	}
	l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), s)
	if err != nil {
		t.Fatal(err)
	}
	if merged {
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
	}
	// W as stored, widened
	switch dt {
	case F32:
		w = devRead(t, mw)
	case F16, BF16:
		if err := mw.ReadBits(bits); err != nil {
			t.Fatal(err)
		}
		if dt == F16 {
			half.F16ToF32(w, bits)
		} else {
			half.BF16ToF32(w, bits)
		}
	}
	mdx, mdA, mdB := devMatrix(t, n, in, make([]float32, n*in)), devMatrix(t, r, in, make([]float32, r*in)),
		devMatrix(t, out, r, make([]float32, out*r))
	if err := l.Backward(mdx, mdA, mdB, devMatrix(t, n, out, dy), devMatrix(t, n, in, x)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ref := reftest.Backward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, dy, x, w, a, b, merged)
	// float32 accumulation of out + r products, in any order, and U's own
	// sums of out products: (out + r + 40)·2⁻²⁴ of the magnitudes.
	tol := float64(out+r+40) * reftest.U32
	reftest.Check(t, name+": dx", devRead(t, mdx), ref.DX, func(i int) float64 { return tol * ref.MagX[i] })
}
