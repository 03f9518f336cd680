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

// TestForwardMMATiles runs Forward (r > 0) and Linear (r = 0) with x and W
// of one 16-bit type on each tensor-core tile of the planner (every one of
// plan.MMATiles, each the planner's own candidate for its shape, in F16 and
// BF16), on shapes on either side of every tile edge: n across 32, 64 and
// 128 rows, out across 64 and 128 rows of W, in a multiple of 8 (16-byte
// loads) and not (element loads) with a partial last K-step, rank 0, 5 and
// 33 (two slices of the staged rank term). Each y is checked against a
// float64 reference from the 16-bit inputs. The bound: the emulated mma
// truncates (emu.h): each group of 8 products and the accumulator drops
// less than 2^(E−23) from each of its 9 terms and its sum, E the group's
// largest exponent, 2^E at most y's magnitude, so 20·2⁻²⁴ of it a group,
// 2.5·in·2⁻²⁴ over in/8 groups; and the float32 rank term, (r + 40)·2⁻²⁴.
// It fails unless every tile ran in both types.
func TestForwardMMATiles(t *testing.T) {
	oldPlan, oldDev := forwardPlan, planDev
	t.Cleanup(func() { forwardPlan, planDev = oldPlan, oldDev })
	rng := rand.New(rand.NewPCG(193, 194))
	reached := map[string]bool{}
	type shape struct{ n, in, out, r int }
	shapes := []shape{{17, 40, 130, 5}, {31, 72, 65, 0}, {33, 37, 64, 33}, {63, 64, 129, 5}, {65, 72, 63, 0}, {129, 45, 130, 3}}
	for _, tile := range plan.MMATiles {
		want := tile.Kernel.Name
		forwardPlan = func(d plan.Device, n, in, out, r int, ty plan.Types) plan.Forward {
			for _, f := range plan.ForwardCandidates(d, n, in, out, r, ty) {
				if f.MMA && strings.TrimSuffix(f.Main.Kernel.Name, ty.W.String()) == want+"_" {
					return f
				}
			}
			t.Fatalf("n=%d in=%d out=%d r=%d %v: no candidate on %s", n, in, out, r, ty, want)
			return plan.Forward{}
		}
		for _, dt := range []DType{F16, BF16} {
			for _, sh := range shapes {
				name := fmt.Sprintf("%s_%v/n=%d,in=%d,out=%d,r=%d", want, dt, sh.n, sh.in, sh.out, sh.r)
				checkMMAForward(t, name, rng, dt, sh.n, sh.in, sh.out, sh.r)
				reached[fmt.Sprintf("%s_%v", want, dt)] = true
			}
		}
	}
	for _, tile := range plan.MMATiles {
		for _, dt := range []DType{F16, BF16} {
			if k := fmt.Sprintf("%s_%v", tile.Kernel.Name, dt); !reached[k] {
				t.Errorf("%s not reached", k)
			}
		}
	}
}

// checkMMAForward runs Forward (Linear at r = 0) with x and W of dt, y in
// float32, planned by forwardPlan on an H200, and checks y (see
// TestForwardMMATiles for the bound).
func checkMMAForward(t *testing.T, name string, rng *rand.Rand, dt DType, n, in, out, r int) {
	t.Helper()
	planDev = func() plan.Device { return plan.H200 }
	operand := func(rows, cols int) ([]float32, *Matrix) {
		v := reftest.Uniform(rng, rows*cols, 1)
		bits := make([]uint16, len(v))
		if dt == F16 {
			half.F32ToF16(bits, v)
			half.F16ToF32(v, bits)
		} else {
			half.F32ToBF16(bits, v)
			half.BF16ToF32(v, bits)
		}
		m, err := NewMatrixOf(dt, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Free)
		if err := m.WriteBits(bits); err != nil {
			t.Fatal(err)
		}
		return v, m
	}
	x, mx := operand(n, in)
	w, mw := operand(out, in)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	const s = 0.75
	my := devMatrix(t, n, out, make([]float32, n*out))
	var err error
	if r == 0 {
		err = Linear(my, mx, mw)
	} else {
		var l *Layer
		if l, err = NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), s); err == nil {
			err = l.Forward(my, mx)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want, mag := reftest.Forward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, x, w, a, b)
	tol := (2.5*float64(in) + float64(r) + 40) * reftest.U32
	reftest.Check(t, name+": y", devRead(t, my), want, func(i int) float64 { return tol * mag[i] })
}
