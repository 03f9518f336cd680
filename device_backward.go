//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// The GPU backend of Backward.

// backward enqueues, with T = s·x·Aᵀ and U = s·dy·B in scratch (n×r each):
// lora_shrink and lora_grad_u for T and U, lora_grad_ab twice for
// dB = dyᵀ·T and dA = Uᵀ·x, and unless dx is nil dx = dy·W + U·A (dy·W when
// merged) by the kernel plan.GradXOf chooses: the small-batch one, the
// m-tiles or the tiled one. W may be F32, F16, BF16 or NF4
// (lora_grad_x_small_nf4 or lora_grad_x_tiled_nf4); every other operand is
// F32. Every limit is checked before anything
// is enqueued.
func (gpuBackend) backward(dx, dA, dB, dy, x, w, a, b *Matrix, s float32, merged bool) error {
	n, in, out, r := x.rows, x.cols, w.rows, a.rows
	if n > math.MaxInt32 {
		return fmt.Errorf("n = %d does not fit the kernels' int: %w", n, ErrShape)
	}
	for _, gy := range []int{ceilDiv(r, kernels.ShrinkKs), ceilDiv(r, kernels.GradUKs), ceilDiv(r, kernels.GradABTR)} {
		if gy > 65535 {
			return fmt.Errorf("rank %d above the GPU's grid limit: %w", r, ErrShape)
		}
	}
	var gx plan.Launch
	var gxReduce *plan.Launch
	var gxWork int
	if dx != nil {
		rx := r // the rank term of dx: none for a merged layer
		if merged {
			rx = 0
		}
		if in > math.MaxInt32 || out+rx > math.MaxInt32 {
			return fmt.Errorf("in = %d, out = %d, rank %d do not fit the kernels' int: %w", in, out, rx, ErrShape)
		}
		g := gradXPlan(planDev(), n, in, out, rx, plan.Types{W: plan.Elem(w.dt), Block: w.buf.block})
		gx, gxReduce, gxWork = g.Main, g.Reduce, g.Workspace
		if gx.Grid[1] > 65535 || gx.Grid[2] > 65535 {
			return fmt.Errorf("in = %d, n = %d need a grid of %v blocks, above the GPU's grid limit: %w", in, n, gx.Grid, ErrShape)
		}
	}
	dev.Lock()
	defer dev.Unlock()
	// U starts on a 64-byte boundary, so that its rows may be read as float4.
	uOff := (n*r + 15) &^ 15
	pOff := uOff + (n*r+15)&^15
	t, err := scratch(pOff + gxWork)
	if err != nil {
		return err
	}
	u := t + cuda.Ptr(4*uOff)
	ws := t + cuda.Ptr(4*pOff)
	if err := shrinkKernel(t, x, a, s); err != nil {
		return err
	}
	var uk launchArgs
	uk.mat(dy).mat(b).ptr(u).int32(n).int32(out).int32(r).float(s)
	if err := launch("lora_grad_u",
		cuda.Dim3{X: ceilDiv(n, kernels.GradURows), Y: ceilDiv(r, kernels.GradUKs), Z: 1},
		cuda.Dim3{X: kernels.GradUThreads, Y: 1, Z: 1}, &uk); err != nil {
		return err
	}
	if err := gradAB(dy, t, dB, n, out, r, false); err != nil {
		return err
	}
	if err := gradAB(x, u, dA, n, in, r, true); err != nil {
		return err
	}
	if dx == nil {
		return nil
	}
	am := a
	if merged {
		u, am, r = 0, nil, 0
	}
	// dx = dy·W + U·A as planned by plan.GradXOf: the small-batch kernel or
	// the m-tiles, their split over the rows of [W; A] summed by
	// lora_forward_reduce, or the tiled kernel. An F16 or BF16 W goes to
	// their _f16 or _bf16 forms (the plan names them), on the same geometry,
	// which read its 16-bit elements and widen them in registers.
	// An NF4 W goes to lora_grad_x_small_nf4 or lora_grad_x_tiled_nf4
	// (plan.GradXNF4), which take W's absmax after its codes and its block
	// size last.
	var xk launchArgs
	xk.mat(dy).mat(w)
	if w.dt == NF4 {
		xk.nf4Absmax(w)
	}
	xk.ptr(u).mat(am)
	if gxReduce != nil {
		xk.ptr(ws)
	} else {
		xk.mat(dx)
	}
	xk.int32(n).int32(in).int32(out).int32(r)
	name := gx.Kernel.Name
	if w.dt == NF4 {
		xk.int32(w.buf.block)
	}
	if err := launch(name, dim(gx.Grid), cuda.Dim3{X: gx.Kernel.Threads, Y: 1, Z: 1}, &xk); err != nil {
		return err
	}
	if gxReduce == nil {
		return nil
	}
	var rk launchArgs
	rk.ptr(ws).mat(nil).mat(dx).int32(n).int32(in).int32(0).int32(gx.Split).float(0)
	return launch(gxReduce.Kernel.Name, dim(gxReduce.Grid), cuda.Dim3{X: gxReduce.Kernel.Threads, Y: 1, Z: 1}, &rk)
}

// gradXPlan is the planner backward follows for dx; tests replace it to run
// each of the planner's candidates.
var gradXPlan = plan.GradXOf

// gradAB enqueues c = gᵀ·h for g (n×p) and h (n×r, scratch): c is p×r, or
// r×p when trans.
func gradAB(g *Matrix, h cuda.Ptr, c *Matrix, n, p, r int, trans bool) error {
	tr := 0
	if trans {
		tr = 1
	}
	var k launchArgs
	k.mat(g).ptr(h).mat(c).int32(n).int32(p).int32(r).int32(tr)
	return launch("lora_grad_ab",
		cuda.Dim3{X: ceilDiv(p, kernels.GradABTP), Y: ceilDiv(r, kernels.GradABTR), Z: 1},
		cuda.Dim3{X: kernels.GradABThreads, Y: 1, Z: 1}, &k)
}
