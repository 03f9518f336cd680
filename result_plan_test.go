package lora

// The choice of shapes for the result tests of the GPU backend
// (result_test.go): a grid of shapes and operand types is planned for a
// device, and for every kernel variant the planner chooses somewhere in the
// grid (a kernel's name, with and without a split of its inner dimension)
// the cheapest shapes that reach it are kept. This file has no build tag:
// the planner is pure Go, and TestResultShapesCoverCandidates checks the
// choice for every device of plan.Devices in every build.

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// resultOp is an operation of the result tests.
type resultOp int

const (
	opForward resultOp = iota // Forward (r > 0) or Linear (r = 0)
	opGradX                   // Backward, whose dx the planner plans
	opMerge                   // Merge, W += s·B·A
)

func (o resultOp) String() string {
	return [...]string{"forward", "backward", "merge"}[o]
}

// resultShape is one run of a result test: an operation, its shape and the
// types of W, x and y (Backward and Merge: x and y F32).
type resultShape struct {
	op            resultOp
	n, in, out, r int
	w, x, y       DType
}

// nf4ResultBlock is the NF4 block size of the result tests: 32 elements,
// so that blocks straddle the rows of every W whose in is not a multiple
// of 32.
const nf4ResultBlock = 32

func (s resultShape) String() string {
	if s.op == opMerge {
		return fmt.Sprintf("merge/out=%d,in=%d,r=%d/W=%v", s.out, s.in, s.r, s.w)
	}
	return fmt.Sprintf("%v/n=%d,in=%d,out=%d,r=%d/W=%v,x=%v,y=%v", s.op, s.n, s.in, s.out, s.r, s.w, s.x, s.y)
}

// cost is the multiply-adds of s, for choosing the cheapest shapes.
func (s resultShape) cost() int {
	if s.op == opMerge {
		return s.out * s.in * s.r
	}
	return max(s.n, 1) * s.in * (s.out + s.r)
}

// resultVariant is a kernel as launched and whether its launch splits its
// inner dimension; its family is the kernel alone.
type resultVariant struct {
	kernel string
	split  bool
}

func (v resultVariant) String() string { return fmt.Sprintf("%s split=%v", v.kernel, v.split) }

// halfSuffix is the suffix the backend adds to the name of a kernel that
// reads W (lora_grad_x_small_bf16, lora_merge_f16): "_" and W's dtype,
// nothing for F32.
func halfSuffix(dt DType) string {
	if dt == F32 {
		return ""
	}
	return "_" + dt.String()
}

// resultVariants returns the kernels the backend launches for s on d, as
// planned, with the launches every plan of s's operation makes.
func resultVariants(d plan.Device, s resultShape) []resultVariant {
	var v []resultVariant
	add := func(l *plan.Launch, suffix string) {
		if l != nil {
			v = append(v, resultVariant{l.Kernel.Name + suffix, l.Split > 1})
		}
	}
	switch s.op {
	case opForward:
		ty := plan.Types{W: plan.Elem(s.w), X: plan.Elem(s.x), Y: plan.Elem(s.y)}
		if s.w == NF4 {
			ty.Block = nf4ResultBlock
		}
		f := plan.ForwardPlanOf(d, s.n, s.in, s.out, s.r, ty)
		add(f.WidenX, "")
		for _, l := range f.Launches() {
			add(&l, "")
		}
		add(f.RoundY, "")
	case opGradX:
		// the plan the backend follows (device_backward.go): its kernels
		// are named for W's dtype
		g := plan.GradXOf(d, s.n, s.in, s.out, s.r, plan.Types{W: plan.Elem(s.w), Block: nf4ResultBlock})
		add(&g.Main, "")
		add(g.Reduce, "")
		for _, k := range []string{"lora_shrink", "lora_grad_u", "lora_grad_ab"} {
			v = append(v, resultVariant{k, false})
		}
	case opMerge:
		l := plan.Merge(d, s.out, s.in, s.r)
		v = append(v, resultVariant{"lora_absmax" + halfSuffix(s.w), false}, resultVariant{l.Kernel.Name + halfSuffix(s.w), l.Split > 1})
	}
	return v
}

// The grid of shapes the choice searches: n on either side of the small
// kernels' 16 rows and of every tile height, in and out odd and even,
// below one tile and across several, long rows for the splits; r = 0 (no
// rank term), one staged slice and more.
var (
	resultNs   = []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 97, 127, 128, 129, 191, 255, 257, 383, 513, 1025, 2047}
	resultIns  = []int{5, 64, 96, 257, 520, 1027, 1400, 2048, 4100}
	resultOuts = []int{3, 13, 64, 130, 257, 520, 1031, 2050, 4096}
	resultRs   = []int{0, 3, 16}
)

// resultGrid lists the shapes of the search, each operation with the
// combinations of types that reach every kernel: a forward with W of any
// dtype and x and y of F32 (no conversion), of W's 16-bit dtype (x read as
// it is, y rounded by the reduction) and of the two 16-bit dtypes crossed
// (x widened, y rounded after the product); Backward with W of any dtype
// (r >= 1); Merge with a W of F32, F16 or BF16.
func resultGrid() []resultShape {
	var g []resultShape
	ws := []DType{F32, F16, BF16, NF4}
	for _, n := range resultNs {
		for _, in := range resultIns {
			for _, out := range resultOuts {
				for _, r := range resultRs {
					for _, w := range ws {
						xy := [][2]DType{{F32, F32}, {F16, BF16}, {BF16, F16}}
						if w == F16 || w == BF16 {
							xy = append(xy, [2]DType{w, w})
						}
						for _, io := range xy {
							g = append(g, resultShape{opForward, n, in, out, r, w, io[0], io[1]})
						}
						if r > 0 {
							g = append(g, resultShape{opGradX, n, in, out, r, w, F32, F32})
						}
					}
				}
			}
		}
	}
	for _, in := range resultIns[:4] {
		for _, out := range resultOuts[:5] {
			for _, w := range ws[:3] {
				g = append(g, resultShape{opMerge, 0, in, out, 3, w, F32, F32})
			}
		}
	}
	return g
}

// odd reports whether n, in and out of s are all odd: no 16-byte loads
// line up, every tile has a ragged edge.
func (s resultShape) odd() bool {
	return (s.op == opMerge || s.n%2 == 1) && s.in%2 == 1 && s.out%2 == 1
}

// resultChoice is the outcome of the search on a device.
type resultChoice struct {
	shapes   []resultShape                   // the shapes to run, cheapest first
	reaches  map[resultVariant][]resultShape // the chosen shapes that reach each variant
	families map[string]bool                 // every kernel the planner chooses in the grid
	missed   []string                        // candidates of the planner no shape of the grid is planned onto
}

// chooseResultShapes plans the grid for d and keeps, for every variant
// reached, the cheapest shape reaching it and the cheapest odd one (see
// odd) where it differs. It lists in missed the kernels of
// ForwardCandidates and GradXNF4Candidates anywhere in the grid that no
// chosen plan of the grid launches: a kernel the planner weighs on d but
// picks for no shape of the grid (a larger grid might reach it, or d may
// never take it).
func chooseResultShapes(d plan.Device) resultChoice {
	grid := resultGrid()
	slices.SortStableFunc(grid, func(a, b resultShape) int { return cmp.Compare(a.cost(), b.cost()) })
	c := resultChoice{reaches: map[resultVariant][]resultShape{}, families: map[string]bool{}}
	candidates := map[string]bool{}
	first, firstOdd := map[resultVariant]bool{}, map[resultVariant]bool{}
	chosen := map[resultShape]bool{}
	for _, s := range grid {
		vs := resultVariants(d, s)
		for _, v := range vs {
			c.families[v.kernel] = true
		}
		for _, k := range resultCandidateKernels(d, s) {
			candidates[k] = true
		}
		keep := false
		for _, v := range vs {
			if !first[v] {
				first[v], keep = true, true
			}
			if s.odd() && !firstOdd[v] {
				firstOdd[v], keep = true, true
			}
		}
		if keep && !chosen[s] {
			chosen[s] = true
			c.shapes = append(c.shapes, s)
			for _, v := range vs {
				c.reaches[v] = append(c.reaches[v], s)
			}
		}
	}
	for k := range candidates {
		if !c.families[k] {
			c.missed = append(c.missed, k)
		}
	}
	slices.Sort(c.missed)
	return c
}

// resultCandidateKernels lists the kernels of every plan the planner
// weighs for s on d (the main kernels, their shrinks and reductions and
// conversions), not only of the plan it picks.
func resultCandidateKernels(d plan.Device, s resultShape) []string {
	var k []string
	add := func(l *plan.Launch) {
		if l != nil {
			k = append(k, l.Kernel.Name)
		}
	}
	switch s.op {
	case opForward:
		ty := plan.Types{W: plan.Elem(s.w), X: plan.Elem(s.x), Y: plan.Elem(s.y)}
		if s.w == NF4 {
			ty.Block = nf4ResultBlock
		}
		for _, f := range plan.ForwardCandidates(d, s.n, s.in, s.out, s.r, ty) {
			add(f.WidenX)
			for _, l := range f.Launches() {
				add(&l)
			}
			add(f.RoundY)
		}
	case opGradX:
		for _, g := range plan.GradXCandidates(d, s.n, s.in, s.out, s.r, plan.Types{W: plan.Elem(s.w), Block: nf4ResultBlock}) {
			add(&g.Main)
			add(g.Reduce)
		}
	}
	return k
}

// tensorCoreFamilies returns the kernels the planner would choose in the
// grid on d were it sm_90 with tensor cores, and not on d itself: the
// tensor-core kernels (sm_80 and newer), for a device older than sm_80.
func tensorCoreFamilies(d plan.Device, on resultChoice) []string {
	if d.Arch >= 80 && d.Tensor > 0 {
		return nil
	}
	d90 := d
	d90.Arch, d90.Tensor = 90, d.FLOPs*plan.TensorPerFP32(90)
	var k []string
	for f := range chooseResultShapes(d90).families {
		if !on.families[f] {
			k = append(k, f)
		}
	}
	slices.Sort(k)
	return k
}

// resultPlanned reports whether the backend launches the kernel k of the
// module as a plan of internal/plan decides: lora_forward_*, lora_grad_x_*,
// lora_merge and its 16-bit forms.
func resultPlanned(k string) bool {
	return strings.HasPrefix(k, "lora_forward_") || strings.HasPrefix(k, "lora_grad_x_") ||
		strings.HasPrefix(k, "lora_merge") && !strings.HasPrefix(k, "lora_merge_check")
}

// TestResultShapesCoverCandidates checks the choice of shapes for every
// device of plan.Devices: the tensor-core kernels are among the families
// on sm_80 and newer and are what an sm_70 device lacks, and every planned
// kernel of the module (kernels.Params: lora_forward_*, lora_grad_x_*,
// lora_merge and its 16-bit forms) is chosen for some shape of the grid on
// some device, so that the result tests reach it on a GPU where the
// planner picks it. It logs the kernels the planner weighs on a device
// but picks for no shape of the grid.
func TestResultShapesCoverCandidates(t *testing.T) {
	all := map[string]bool{}
	for _, d := range plan.Devices {
		c := chooseResultShapes(d)
		for k := range c.families {
			all[k] = true
		}
		if len(c.missed) > 0 {
			t.Logf("%s: the planner weighs %s, which it picks for no shape of the grid", d.Name, strings.Join(c.missed, ", "))
		}
		mma := c.families["lora_forward_mma_bf16"] && c.families["lora_forward_mma_f16"]
		tc := tensorCoreFamilies(d, c)
		if d.Arch >= 80 && (!mma || tc != nil) {
			t.Errorf("%s (sm_%d): families %v, tensor-core families it lacks %v; want both mma kernels and none lacking", d.Name, d.Arch, c.families, tc)
		}
		if d.Arch < 80 {
			// every tile of the mma kernels and their shrinks, nothing else
			ok := !mma && slices.Contains(tc, "lora_forward_mma_bf16") && slices.Contains(tc, "lora_forward_mma_f16") &&
				slices.Contains(tc, "lora_shrink_bf16") && slices.Contains(tc, "lora_shrink_f16")
			for _, k := range tc {
				ok = ok && (strings.HasPrefix(k, "lora_forward_mma_") || k == "lora_shrink_bf16" || k == "lora_shrink_f16")
			}
			if !ok {
				t.Errorf("%s (sm_%d): lacks %v, want the mma kernels and their shrinks", d.Name, d.Arch, tc)
			}
		}
		cost := 0
		for _, s := range c.shapes {
			cost += s.cost()
		}
		t.Logf("%s: %d kernels, %d variants, %d shapes, %.3g multiply-adds", d.Name, len(c.families), len(c.reaches), len(c.shapes), float64(cost))
	}
	for k := range kernels.Params {
		if resultPlanned(k) && !all[k] {
			t.Errorf("no shape of the result grid reaches %s on any device of plan.Devices", k)
		}
	}
}
