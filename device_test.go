//go:build cuda || cudaemu

package lora

// Tests of the GPU backend's own functions (run emulated with -tags cudaemu):
// the reductions and checks that Merge builds on (absMax, adapterBound,
// rankFinite) on odd shapes and on more than one block, against float64
// references; that a device fault is sticky; and that every launch keeps the
// matrices it packed alive.

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

// devShapes are odd shapes for the kernel tests: one column, columns that
// are not a multiple of 4 (the scalar paths), a multiple of 4 (float4), more
// rows than one merge tile, and more elements than one block of lora_absmax
// covers (kernels.FiniteThreads·kernels.FinitePerThread).
var devShapes = []struct{ rows, cols int }{
	{1, 1}, {1, 3}, {3, 5}, {7, 1}, {kernels.MergeTileOut + 1, 129}, {kernels.MergeTileOut + 1, 128},
	{70, 129}, {3, kernels.FiniteThreads*kernels.FinitePerThread + 5},
}

func devMatrix(t *testing.T, rows, cols int, data []float32) *Matrix {
	t.Helper()
	m, err := NewMatrixFrom(rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func devRead(t *testing.T, m *Matrix) []float32 {
	t.Helper()
	h := make([]float32, m.rows*m.cols)
	if err := m.Read(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// refAbsMax is max |v| in float64, NaN if v holds one, +Inf if v holds ±Inf.
func refAbsMax(v []float32) float64 {
	m, inf := 0.0, false
	for _, x := range v {
		switch a := math.Abs(float64(x)); {
		case math.IsNaN(a):
			return math.NaN()
		case math.IsInf(a, 1):
			inf = true
		default:
			m = math.Max(m, a)
		}
	}
	if inf {
		return math.Inf(1)
	}
	return m
}

func TestAbsMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	for _, sh := range devShapes {
		n := sh.rows * sh.cols
		cases := []struct {
			name string
			set  func([]float32)
		}{
			{"random", func([]float32) {}},
			{"zero", func(v []float32) { clear(v) }},
			{"negative zero", func(v []float32) {
				for i := range v {
					v[i] = float32(math.Copysign(0, -1))
				}
			}},
			{"largest first, negative", func(v []float32) { v[0] = -7 }},
			{"largest last", func(v []float32) { v[n-1] = 7 }},
			{"largest in the middle, negative", func(v []float32) { v[n/2] = -7 }},
			{"+Inf last", func(v []float32) { v[n-1] = inf }},
			{"-Inf first", func(v []float32) { v[0] = -inf }},
			{"NaN last", func(v []float32) { v[n-1] = nan }},
			{"NaN and +Inf", func(v []float32) { v[0], v[n-1] = inf, nan }},
			{"-NaN in the middle", func(v []float32) { v[n/2] = -nan }},
			{"MaxFloat32 and a subnormal", func(v []float32) { v[0], v[n-1] = 1e-45, -math.MaxFloat32 }},
		}
		for _, c := range cases {
			v := reftest.Uniform(rng, n, 3)
			c.set(v)
			m := devMatrix(t, sh.rows, sh.cols, v)
			got, err := be.absMax(m)
			if err != nil {
				t.Fatal(err)
			}
			want := refAbsMax(v)
			if g := float64(got); !(g == want || math.IsNaN(g) && math.IsNaN(want)) {
				t.Errorf("%d×%d %s: absMax = %g, want %g", sh.rows, sh.cols, c.name, got, want)
			}
		}
	}
}

func TestAdapterBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(83, 84))
	for _, d := range []struct{ r, in, out int }{{1, 1, 1}, {1, 3, 5}, {3, 129, 7}, {16, 5, 129}, {64, 33, 70}} {
		a, b := reftest.Uniform(rng, d.r*d.in, 2), reftest.Uniform(rng, d.out*d.r, 3)
		wantA, wantB := 0.0, 0.0
		for _, v := range a {
			wantA = math.Max(wantA, math.Abs(float64(v)))
		}
		for i := range d.out {
			s := 0.0
			for k := range d.r {
				s += math.Abs(float64(b[i*d.r+k]))
			}
			wantB = math.Max(wantB, s)
		}
		ma, mb := devMatrix(t, d.r, d.in, a), devMatrix(t, d.out, d.r, b)
		gotA, gotB, err := be.adapterBound(ma, mb)
		if err != nil {
			t.Fatal(err)
		}
		if gotA != wantA || math.Abs(gotB-wantB) > 1e-14*wantB {
			t.Errorf("r=%d in=%d out=%d: adapterBound = %g, %g, want %g, %g", d.r, d.in, d.out, gotA, gotB, wantA, wantB)
		}
	}
	// Non-finite entries: the bound they enter is not finite.
	for _, c := range []struct {
		name   string
		a, b   []float32
		aFinit bool // whether maxA must be finite
	}{
		{"NaN in A", []float32{1, float32(math.NaN()), 2}, []float32{1, 2, 3}, false},
		{"-Inf in A", []float32{-float32(math.Inf(1)), 1, 2}, []float32{1, 2, 3}, false},
		{"+Inf in B", []float32{1, 2, 3}, []float32{1, float32(math.Inf(1)), 3}, true},
		{"NaN in B", []float32{1, 2, 3}, []float32{1, 2, float32(math.NaN())}, true},
	} {
		ma, mb := devMatrix(t, 1, 3, c.a), devMatrix(t, 3, 1, c.b)
		gotA, gotB, err := be.adapterBound(ma, mb)
		if err != nil {
			t.Fatal(err)
		}
		finA := !math.IsNaN(gotA) && !math.IsInf(gotA, 0)
		finB := !math.IsNaN(gotB) && !math.IsInf(gotB, 0)
		if c.aFinit && (!finA || finB) || !c.aFinit && finA {
			t.Errorf("%s: adapterBound = %g, %g: want the bound of the non-finite matrix not finite", c.name, gotA, gotB)
		}
	}
}

// TestRankFinite checks rankFinite's verdict on W + c·B·A against the
// result rankUpdate actually writes into a copy of W, on shapes across the
// merge kernel's float4 and scalar paths, with W near ±MaxFloat32 so that
// some updates overflow and some do not; W must come back bit for bit. The
// fixed cases have outcomes known independently: MaxFloat32 plus less than
// half its ulp (2¹⁰³) rounds back to MaxFloat32, plus more rounds to +Inf,
// and a NaN in W stays a NaN.
func TestRankFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(85, 86))
	const maxF = math.MaxFloat32
	outcomes := map[bool]int{}
	check := func(name string, out, in, r int, w, a, b []float32, c float32, want *bool) {
		t.Helper()
		mw, ma, mb := devMatrix(t, out, in, w), devMatrix(t, r, in, a), devMatrix(t, out, r, b)
		ok, err := be.rankFinite(mw, ma, mb, c)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range devRead(t, mw) {
			if math.Float32bits(v) != math.Float32bits(w[i]) {
				t.Fatalf("%s: rankFinite changed W[%d] from %g to %g", name, i, w[i], v)
			}
		}
		cp := devMatrix(t, out, in, w)
		if err := be.rankUpdate(cp, ma, mb, c); err != nil {
			t.Fatal(err)
		}
		fin := true
		for _, v := range devRead(t, cp) {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				fin = false
			}
		}
		if ok != fin {
			t.Errorf("%s: rankFinite = %v, but the update writes finite = %v", name, ok, fin)
		}
		if want != nil && ok != *want {
			t.Errorf("%s: rankFinite = %v, want %v", name, ok, *want)
		}
		outcomes[ok]++
	}
	yes, no := true, false
	for _, sh := range devShapes[:7] {
		out, in := sh.rows, sh.cols
		for _, r := range []int{1, 3, kernels.MergeTileOut + 1} {
			for trial := range 3 {
				w := reftest.Uniform(rng, out*in, 1)
				for i := range w {
					w[i] *= maxF
				}
				a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
				c := float32(maxF / 4 / float64(r) * float64(trial)) // 0, then updates of order W
				check(sh2(out, in, r, trial), out, in, r, w, a, b, c, nil)
			}
			// Every element at MaxFloat32 and an update of +2¹⁰² (below half
			// an ulp): finite. The float64 bound says it may overflow.
			w := make([]float32, out*in)
			for i := range w {
				w[i] = maxF
			}
			a, b := make([]float32, r*in), make([]float32, out*r)
			for i := range a {
				a[i] = 1
			}
			b[0] = 0x1p102 // row 0 only
			check(sh2(out, in, r, -1)+" +2¹⁰²", out, in, r, w, a, b, 1, &yes)
			// The same with +2¹⁰⁴ on the last row: that row overflows.
			clear(b)
			b[(out-1)*r+r-1] = 0x1p104
			check(sh2(out, in, r, -1)+" +2¹⁰⁴ on the last row", out, in, r, w, a, b, 1, &no)
			// Overflow only in the last column of the last row (the tail of
			// a row that is not a multiple of 4).
			clear(w)
			w[out*in-1] = -maxF
			clear(a)
			a[(r-1)*in+in-1] = 1
			check(sh2(out, in, r, -1)+" −2¹⁰⁴ in the last element", out, in, r, w, a, b, -1, &no)
			// A NaN in W stays NaN.
			clear(w)
			w[out*in/2] = float32(math.NaN())
			check(sh2(out, in, r, -1)+" NaN in W", out, in, r, w, a, b, 1, &no)
		}
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Errorf("outcomes %v: want both", outcomes)
	}
}

func sh2(out, in, r, trial int) string {
	if trial < 0 {
		return fmt.Sprintf("%d×%d r=%d", out, in, r)
	}
	return fmt.Sprintf("%d×%d r=%d trial %d", out, in, r, trial)
}

// TestLaunchKeepsMatricesAlive checks, on the source of device.go, that no
// call site can pack a Matrix's device address without keeping the Matrix
// alive through the launch: the address (m.buf.p) is read only by launchArgs.mat
// and launchArgs.nf4Absmax (which record the Matrix) and by releaseOnCollect (the cleanup), cuda.Launch is
// called only by launch (which keeps the launchArgs alive), and cuda.Args is
// used only inside launchArgs.
func TestLaunchKeepsMatricesAlive(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "device.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string][]string{
		"buf.p":       {"mat", "nf4Absmax", "releaseOnCollect"},
		"cuda.Launch": {"launch"},
		"cuda.Args":   {"launchArgs"},
	}
	found := map[string]bool{}
	check := func(where string, n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			var name string
			switch x := sel.X.(type) {
			case *ast.SelectorExpr:
				name = x.Sel.Name + "." + sel.Sel.Name
			case *ast.Ident:
				name = x.Name + "." + sel.Sel.Name
			}
			ok = true
			if list, guarded := allowed[name]; guarded {
				ok = false
				for _, fn := range list {
					ok = ok || fn == where
				}
				found[name] = true
			}
			if !ok {
				t.Errorf("%s: %s used in %s: pack matrices with launchArgs.mat and launch with launch", fset.Position(sel.Pos()), name, where)
			}
			return true
		})
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			check(d.Name.Name, d)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok {
					check(ts.Name.Name, ts)
				} else {
					check("a declaration", s)
				}
			}
		}
	}
	for name := range allowed {
		if !found[name] {
			t.Errorf("device.go never uses %s: the test no longer looks at the right names", name)
		}
	}
}

// TestDeviceFaultIsSticky injects a device fault (a launch whose pointer
// argument lies outside device memory, an illegal address) and checks that
// every later call returns an error wrapping ErrDevice and that first
// fault, a second fault included. A faulted device stays faulted for the
// life of the process, so the test runs in a child process.
func TestDeviceFaultIsSticky(t *testing.T) {
	if os.Getenv("LORA_TEST_FAULT_CHILD") != "1" {
		reftest.RunChild(t, "LORA_TEST_FAULT_CHILD=1")
		return
	}
	m, err := NewMatrixFrom(2, 3, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewMatrix(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	bias, err := NewMatrix(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if cuda.Fault() != nil {
		t.Fatalf("a fault before any was injected: %v", cuda.Fault())
	}
	// lora_axpy(y, x, count, alpha) with x far outside every allocation.
	inject := func(p cuda.Ptr) error {
		var a cuda.Args
		a.Ptr(m.buf.p).Ptr(p).Int64(6).Float(1)
		err := cuda.Launch("lora_axpy", cuda.Dim3{X: 1, Y: 1, Z: 1}, cuda.Dim3{X: kernels.AxpyThreads, Y: 1, Z: 1}, 0, &a)
		if err == nil {
			err = cuda.Sync() // a GPU reports the fault when the kernel has run
		}
		return err
	}
	first := inject(m.buf.p + 1<<40)
	if first == nil {
		t.Fatal("a launch through an illegal address succeeded")
	}
	if f := cuda.Fault(); f == nil || !errors.Is(first, f) {
		t.Fatalf("cuda.Fault() = %v after the launch failed with %v", f, first)
	}
	fault := cuda.Fault()
	if second := inject(m.buf.p + 1<<41); !errors.Is(second, fault) {
		t.Errorf("a second fault reports %v, want the first, %v", second, fault)
	}
	if cuda.Fault() != fault {
		t.Errorf("the second fault replaced the first: %v", cuda.Fault())
	}
	calls := map[string]func() error{
		"Sync":      Sync,
		"Read":      func() error { return m.Read(make([]float32, 6)) },
		"Write":     func() error { return m.Write(make([]float32, 6)) },
		"NewMatrix": func() error { _, err := NewMatrix(2, 2); return err },
		"Axpy":      func() error { return Axpy(m, 2, n) },
		"AddBias":   func() error { return AddBias(m, bias) },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, ErrDevice) || !errors.Is(err, fault) {
			t.Errorf("%s after a fault: %v, want an error wrapping ErrDevice and the first fault", name, err)
		} else if !strings.Contains(err.Error(), "restart the process") {
			t.Errorf("%s after a fault: %v, want it to say that the process must restart", name, err)
		}
	}
	for _, x := range []*Matrix{m, n, bias} {
		x.Free() // returns nothing and must not panic
	}
	if err := Sync(); !errors.Is(err, fault) {
		t.Errorf("Sync after Free: %v", err)
	}
}

// plannedDevices returns the devices the planned-variant tests plan for:
// an H200, one so large ("huge") that every launch splits its inner
// dimension as far as it may, and one so small ("tiny", one SM) that none
// does; planDev is restored when t ends.
func plannedDevices(t *testing.T) (h200, huge, tiny plan.Device) {
	t.Helper()
	huge, tiny = plan.H200, plan.H200
	huge.Name, huge.SMs = "huge", 100000
	tiny.Name, tiny.SMs = "tiny", 1
	old := planDev
	t.Cleanup(func() { planDev = old })
	return plan.H200, huge, tiny
}

// TestForwardPlannedVariants runs Forward and Linear on shapes on either
// side of every tile edge of the planned kernels (n = 15/16/17, 31/32/33,
// 63/64/65, rows of [W; A] around 16 and 128, in not a multiple of 4 for the
// scalar path), each planned for three devices: an H200, a device so large
// that every launch splits its inner dimension as far as it may, and one so
// small that the 128×128 tiles fill it. Each result is checked against a
// float64 reference, and the test fails unless every kernel variant was
// reached with and without a split.
func TestForwardPlannedVariants(t *testing.T) {
	_, huge, tiny := plannedDevices(t)
	rng := rand.New(rand.NewPCG(91, 92))
	reached := map[string]bool{}
	type shape struct{ n, in, out, r int }
	var shapes []shape
	for _, n := range []int{1, 2, 3, 5, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65} {
		shapes = append(shapes, shape{n, 516, 13, 3}, shape{n, 257, 130, 0})
	}
	shapes = append(shapes, shape{129, 96, 129, 16}, shape{4, 1027, 17, 16}, shape{40, 640, 3, 1}, shape{17, 100, 125, 3},
		// long enough rows for the workspace budget to allow a split
		shape{17, 1400, 20, 3}, shape{40, 1700, 13, 2}, shape{65, 2700, 13, 3}, shape{100, 4100, 13, 3})
	for _, d := range []plan.Device{plan.H200, huge, tiny} {
		planDev = func() plan.Device { return d }
		for _, sh := range shapes {
			f := plan.ForwardPlan(d, sh.n, sh.in, sh.out, sh.r)
			for _, l := range f.Launches() {
				reached[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
			}
			name := fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d", d.Name, sh.n, sh.in, sh.out, sh.r)
			checkPlannedForward(t, name, rng, sh.n, sh.in, sh.out, sh.r)
		}
	}
	for _, want := range []string{
		"lora_forward_small split=false", "lora_forward_small split=true",
		"lora_forward_m16 split=false", "lora_forward_m16 split=true",
		"lora_forward_m32 split=false", "lora_forward_m32 split=true",
		"lora_forward_m64 split=false", "lora_forward_m64 split=true",
		"lora_forward_tiled split=false", "lora_shrink split=false", "lora_forward_reduce split=false",
	} {
		if !reached[want] {
			t.Errorf("no shape reached %s", want)
		}
	}
}

// checkPlannedForward runs Forward (r > 0) or Linear (r = 0) on random data
// and compares with a float64 reference, within the error bound of fp32
// sums of that length.
func checkPlannedForward(t *testing.T, name string, rng *rand.Rand, n, in, out, r int) {
	t.Helper()
	x, w := reftest.Uniform(rng, n*in, 1), reftest.Uniform(rng, out*in, 1)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	const s = 0.75
	mx, mw, my := devMatrix(t, n, in, x), devMatrix(t, out, in, w), devMatrix(t, n, out, make([]float32, n*out))
	var err error
	if r == 0 {
		err = Linear(my, mx, mw)
	} else {
		ma, mb := devMatrix(t, r, in, a), devMatrix(t, out, r, b)
		var l *Layer
		l, err = NewLayerFrom(mw, ma, mb, s)
		if err == nil {
			err = l.Forward(my, mx)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want, mag := reftest.Forward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, x, w, a, b)
	tol := float64(in+r+40) * reftest.U32
	reftest.Check(t, name+": y", devRead(t, my), want, func(i int) float64 { return tol * mag[i] })
}

// TestGradXPlannedVariants runs Backward's dx = dy·W + s·(dy·B)·A on small
// batches planned for an H200 and for a device so large that the rows of
// [W; A] are split as far as they may be, with in a multiple of 4 (float4)
// and not (scalars), on an unmerged and a merged layer, against a float64
// reference; it fails unless both the split and the unsplit launch ran.
func TestGradXPlannedVariants(t *testing.T) {
	_, huge, _ := plannedDevices(t)
	rng := rand.New(rand.NewPCG(93, 94))
	reached := map[bool]bool{}
	for _, d := range []plan.Device{plan.H200, huge} {
		planDev = func() plan.Device { return d }
		for _, sh := range []struct{ n, in, out, r int }{{1, 256, 300, 3}, {3, 130, 70, 5}, {9, 132, 129, 2}, {16, 260, 140, 16}} {
			for _, merged := range []bool{false, true} {
				m, _, _ := plan.GradX(d, sh.n, sh.in, sh.out, sh.r)
				reached[m.Split > 1] = true
				name := fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d,merged=%v", d.Name, sh.n, sh.in, sh.out, sh.r, merged)
				checkPlannedGradX(t, name, rng, sh.n, sh.in, sh.out, sh.r, merged)
			}
		}
	}
	if !reached[true] || !reached[false] {
		t.Errorf("lora_grad_x_small ran split %v, unsplit %v; want both", reached[true], reached[false])
	}
}

func checkPlannedGradX(t *testing.T, name string, rng *rand.Rand, n, in, out, r int, merged bool) {
	t.Helper()
	w, a, b := reftest.Uniform(rng, out*in, 1), reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	dy, x := reftest.Uniform(rng, n*out, 1), reftest.Uniform(rng, n*in, 1)
	const s = 0.5
	mw, ma, mb := devMatrix(t, out, in, w), devMatrix(t, r, in, a), devMatrix(t, out, r, b)
	l, err := NewLayerFrom(mw, ma, mb, s)
	if err != nil {
		t.Fatal(err)
	}
	if merged {
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		w = devRead(t, mw) // dx = dy·(W + s·B·A) as stored
	}
	mdx, mdA, mdB := devMatrix(t, n, in, make([]float32, n*in)), devMatrix(t, r, in, make([]float32, r*in)),
		devMatrix(t, out, r, make([]float32, out*r))
	if err := l.Backward(mdx, mdA, mdB, devMatrix(t, n, out, dy), devMatrix(t, n, in, x)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ref := reftest.Backward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, dy, x, w, a, b, merged)
	tol := float64(out+r+40) * reftest.U32
	reftest.Check(t, name+": dx", devRead(t, mdx), ref.DX, func(i int) float64 { return tol * ref.MagX[i] })
}
