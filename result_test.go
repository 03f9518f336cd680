//go:build cuda || cudaemu

package lora

// The result tests of the GPU backend on the device at hand: every kernel
// the planner chooses on it, checked against float64 references on shapes
// that reach it (see result_plan_test.go), with one verdict a kernel family
// in the test's log:
//
//	FAMILY lora_forward_mma_bf16: PASS (3 shapes)
//
// On a GPU (-tags cuda) the planner plans for the GPU's own properties, and
// every family it chooses for a shape of the grid of result_plan_test.go
// runs; a tensor-core kernel (sm_80 and newer) is reported as skipped on an
// older GPU, naming its compute capability, and a planned kernel of the
// module that the planner picks for no shape on this GPU as not reached
// (TestResultShapesCoverCandidates checks that each is picked on some
// device of plan.Devices). Emulated (-tags cudaemu),
// the plans are for an H200 of one SM (its rates scaled to one SM), whose
// wave of the 128×128 tiles small shapes fill: a few seconds emulated.

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

// resultDevice returns the device the result tests plan for: the GPU's own
// properties, or, emulated (the driver reports no SMs), an H200 of one SM.
func resultDevice() plan.Device {
	if cuda.Properties().SMs > 0 {
		return planDevice()
	}
	d := plan.H200
	d.Name, d.SMs = "emulated H200 of one SM", 1
	d.Bandwidth, d.FLOPs, d.Tensor = d.Bandwidth/132, d.FLOPs/132, d.Tensor/132
	return d
}

// TestResultFamilies runs every kernel the planner chooses on the device at
// hand (Forward and Linear with W, x and y of every dtype, Backward's dx
// with W of every dtype, Merge) on the cheapest shapes of the grid that
// reach each variant, and an odd one (n, in, out odd), against float64
// references, and logs one FAMILY line a kernel: PASS, FAIL (a shape that
// reaches it failed), or SKIP (a tensor-core kernel on a GPU older than
// sm_80). It fails when a shape fails.
func TestResultFamilies(t *testing.T) {
	d := resultDevice()
	old := planDev
	t.Cleanup(func() { planDev = old })
	planDev = func() plan.Device { return d }
	c := chooseResultShapes(d)
	t.Logf("planning for %s (sm_%d, %d SMs): %d kernels in %d variants, %d shapes", d.Name, d.Arch, d.SMs,
		len(c.families), len(c.reaches), len(c.shapes))
	if len(c.missed) > 0 {
		t.Logf("the planner weighs %s on %s but picks none of them for a shape of the grid", strings.Join(c.missed, ", "), d.Name)
	}
	rng := rand.New(rand.NewPCG(201, 202))
	passed := map[resultShape]bool{}
	for _, s := range c.shapes {
		passed[s] = t.Run(s.String(), func(t *testing.T) { runResultShape(t, d, rng, s) })
	}

	// The verdicts, one a family, in the order of their names.
	var names []string
	for k := range c.families {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		var shapes []resultShape
		for _, split := range []bool{false, true} {
			for _, s := range c.reaches[resultVariant{k, split}] {
				if !slices.Contains(shapes, s) {
					shapes = append(shapes, s)
				}
			}
		}
		bad := 0
		for _, s := range shapes {
			if !passed[s] {
				bad++
			}
		}
		switch {
		case len(shapes) == 0: // not possible: every family comes with its shapes
			t.Errorf("FAMILY %s: FAIL (no shape reached it)", k)
		case bad > 0:
			t.Logf("FAMILY %s: FAIL (%d of %d shapes)", k, bad, len(shapes))
		default:
			t.Logf("FAMILY %s: PASS (%d shapes)", k, len(shapes))
		}
	}
	tc := tensorCoreFamilies(d, c)
	for _, k := range tc {
		why := "needs sm_80"
		if !strings.Contains(k, "_mma") {
			why = "planned only with the tensor-core kernels, which need sm_80"
		}
		t.Run(k, func(t *testing.T) {
			t.Logf("FAMILY %s: SKIP (%s; %s is sm_%d)", k, why, d.Name, d.Arch)
			t.Skipf("%s not run: %s; %s is sm_%d", k, why, d.Name, d.Arch)
		})
	}
	// The module's other planned kernels: those the planner weighs on d
	// but picks for no shape, and those it never plans on d.
	var rest []string
	for k := range kernels.Params {
		if resultPlanned(k) && !c.families[k] && !slices.Contains(tc, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		if slices.Contains(c.missed, k) {
			t.Logf("FAMILY %s: NOT REACHED (the planner weighs it on %s, and picks it for no shape of the grid)", k, d.Name)
		} else {
			t.Logf("FAMILY %s: NOT REACHED (the planner never plans it on %s)", k, d.Name)
		}
	}
}

// tensorCoresAbsent says why the tensor-core kernels (mma.sync, sm_80 and
// newer) cannot run on the GPU at hand, or returns "" where they can: on
// sm_80 and newer, and emulated.
func tensorCoresAbsent() string {
	if p := cuda.Properties(); p.SMs > 0 && p.Arch < 80 {
		return fmt.Sprintf("the tensor-core kernels need sm_80; %s is sm_%d", cuda.DeviceName(), p.Arch)
	}
	return ""
}

// skipMMA runs a subtest name that skips the plan f on tensor cores,
// naming its kernels and why (tensorCoresAbsent), and marks each of its
// launches "kernel split=bool" in skipped.
func skipMMA(t *testing.T, name string, f plan.Forward, skipped map[string]bool) {
	t.Helper()
	var names []string
	for _, l := range f.Launches() {
		skipped[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
		names = append(names, l.Kernel.Name)
	}
	t.Run(name, func(t *testing.T) {
		t.Skipf("%s not run: %s", strings.Join(names, " and "), tensorCoresAbsent())
	})
}

// resultRows are the rows of an n-row result the references are computed
// for: all of them up to 320, else the first and last 160 (every tile edge
// of the first and last tiles) and every 61st row between.
func resultRows(n int) []int {
	var rows []int
	for i := range n {
		if n <= 320 || i < 160 || i >= n-160 || i%61 == 0 {
			rows = append(rows, i)
		}
	}
	return rows
}

// pickRows returns the rows of the rows×cols matrix v listed in rows.
func pickRows(v []float32, cols int, rows []int) []float32 {
	p := make([]float32, 0, len(rows)*cols)
	for _, i := range rows {
		p = append(p, v[i*cols:(i+1)*cols]...)
	}
	return p
}

// resultW returns a device W of dt (out×in) of random values in [−1, 1],
// exactly representable in dt (NF4: random codes and scales in blocks of
// nf4ResultBlock), and its values.
func resultW(t *testing.T, rng *rand.Rand, dt DType, out, in int) (*Matrix, []float32) {
	t.Helper()
	if dt == NF4 {
		return devNF4(t, rng, out, in, nf4ResultBlock)
	}
	w, wb := halfOperand(rng, dt, out*in, 1)
	return newMatrixDT(t, dt, out, in, w, wb), w
}

func runResultShape(t *testing.T, d plan.Device, rng *rand.Rand, s resultShape) {
	switch s.op {
	case opForward:
		checkResultForward(t, d, rng, s)
	case opGradX:
		checkResultBackward(t, rng, s)
	case opMerge:
		checkResultMerge(t, rng, s)
	}
}

// checkResultForward runs Forward (r > 0) or Linear (r = 0) on s and
// compares y, on the rows of resultRows, with a float64 reference built
// from the rounded inputs: within the bound of float32 sums of in + r
// products and the staged T (in + r + 40 roundings of 2⁻²⁴ of the sum of
// the terms' magnitudes), where the tensor cores sum x·Wᵀ twice that for
// its in terms (they truncate: up to a unit in the last place an addition,
// not half of one), and for a half y one rounding to y's dtype more.
func checkResultForward(t *testing.T, d plan.Device, rng *rand.Rand, s resultShape) {
	n, in, out, r := s.n, s.in, s.out, s.r
	x, xb := halfOperand(rng, s.x, n*in, 1)
	mw, w := resultW(t, rng, s.w, out, in)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	const scale = 0.75
	mx := newMatrixDT(t, s.x, n, in, x, xb)
	my := newMatrixDT(t, s.y, n, out, make([]float32, n*out), make([]uint16, n*out))
	var err error
	if r == 0 {
		err = Linear(my, mx, mw)
	} else {
		var l *Layer
		l, err = NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), scale)
		if err == nil {
			err = l.Forward(my, mx)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, n*out)
	if err := my.Read(got); err != nil {
		t.Fatal(err)
	}
	rows := resultRows(n)
	want, mag := reftest.Forward(reftest.Shape{N: len(rows), In: in, Out: out, R: r}, scale, pickRows(x, in, rows), w, a, b)
	terms := in + r + 40
	ty := plan.Types{W: plan.Elem(s.w), X: plan.Elem(s.x), Y: plan.Elem(s.y), Block: nf4ResultBlock}
	if plan.ForwardPlanOf(d, n, in, out, r, ty).MMA {
		terms += in
	}
	e32 := float64(terms) * reftest.U32
	reftest.Check(t, fmt.Sprintf("y (rows %d of %d)", len(rows), n), pickRows(got, out, rows), want, func(i int) float64 {
		if s.y == F32 {
			return e32 * mag[i]
		}
		return reftest.Tol(dtFormatOf(s.y), want[i], e32*mag[i])
	})
}

// checkResultBackward runs Backward on s (W of s.w, every other operand
// F32) and compares dx, on the rows of resultRows, with a float64
// reference from W's values, within the bound of float32 sums of out + r
// products (and U's own sums); where every row is checked, dA and dB too,
// within γ of their sums' lengths.
func checkResultBackward(t *testing.T, rng *rand.Rand, s resultShape) {
	n, in, out, r := s.n, s.in, s.out, s.r
	mw, w := resultW(t, rng, s.w, out, in)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	dy, x := reftest.Uniform(rng, n*out, 1), reftest.Uniform(rng, n*in, 1)
	const scale = 0.5
	l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), scale)
	if err != nil {
		t.Fatal(err)
	}
	mdx, mdA, mdB := devMatrix(t, n, in, make([]float32, n*in)), devMatrix(t, r, in, make([]float32, r*in)),
		devMatrix(t, out, r, make([]float32, out*r))
	if err := l.Backward(mdx, mdA, mdB, devMatrix(t, n, out, dy), devMatrix(t, n, in, x)); err != nil {
		t.Fatal(err)
	}
	rows := resultRows(n)
	ref := reftest.Backward(reftest.Shape{N: len(rows), In: in, Out: out, R: r}, scale,
		pickRows(dy, out, rows), pickRows(x, in, rows), w, a, b, false)
	tol := float64(out+r+40) * reftest.U32
	reftest.Check(t, fmt.Sprintf("dx (rows %d of %d)", len(rows), n), pickRows(devRead(t, mdx), in, rows), ref.DX,
		func(i int) float64 { return tol * ref.MagX[i] })
	if len(rows) == n {
		reftest.Close(t, "dA", devRead(t, mdA), ref.DA, ref.MagA, reftest.Gamma(out+n+3))
		reftest.Close(t, "dB", devRead(t, mdB), ref.DB, ref.MagB, reftest.Gamma(in+n+3))
	}
}

// checkResultMerge merges a random adapter into a random W of s.w and
// compares W with a float64 reference from W's values: the float32 sum is
// within (r+3)·2⁻²⁴ of the magnitudes that make it, then rounded once to
// W's dtype.
func checkResultMerge(t *testing.T, rng *rand.Rand, s resultShape) {
	out, in, r := s.out, s.in, s.r
	mw, w := resultW(t, rng, s.w, out, in)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	const scale = 0.75
	l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), scale)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, out*in)
	if err := mw.Read(got); err != nil {
		t.Fatal(err)
	}
	ref, _, mag := reftest.Merge(out, in, r, scale, w, a, b)
	reftest.Check(t, "W", got, ref, func(i int) float64 {
		return reftest.Tol(dtFormatOf(s.w), ref[i], float64(r+3)*reftest.U32*mag[i])
	})
}
