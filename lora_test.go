package lora_test

// The one test suite every backend must pass: run it with `go test`,
// `go test -tags cudaemu` and `go test -tags cuda`. Results are checked
// against float64 references computed here, never against the code under test.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

func newMat(t testing.TB, rows, cols int, data []float32) *lora.Matrix {
	t.Helper()
	var m *lora.Matrix
	var err error
	if data == nil {
		m, err = lora.NewMatrix(rows, cols)
	} else {
		m, err = lora.NewMatrixFrom(rows, cols, data)
	}
	if err != nil {
		t.Fatalf("new %d×%d matrix: %v", rows, cols, err)
	}
	t.Cleanup(m.Free)
	return m
}

func read(t testing.TB, m *lora.Matrix) []float32 {
	t.Helper()
	r, c := m.Dims()
	out := make([]float32, r*c)
	if err := m.Read(out); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return out
}

// problem is one layer with random W, A, B and input x.
type problem struct {
	n, in, out, r int
	s             float32
	x, w, a, b    []float32
}

func newProblem(rng *rand.Rand, n, in, out, r int) *problem {
	return &problem{
		n: n, in: in, out: out, r: r,
		s: 0.75,
		x: reftest.Normal(rng, n*in, 1),
		w: reftest.Normal(rng, out*in, 1/math.Sqrt(float64(in))),
		a: reftest.Normal(rng, r*in, 1/math.Sqrt(float64(in))),
		b: reftest.Normal(rng, out*r, 1),
	}
}

func (p *problem) shape() reftest.Shape { return reftest.Shape{N: p.n, In: p.in, Out: p.out, R: p.r} }

func (p *problem) String() string { return p.shape().String() }

// layer builds the problem's layer on fresh matrices.
func (p *problem) layer(t testing.TB) (*lora.Layer, *lora.Matrix) {
	t.Helper()
	w := newMat(t, p.out, p.in, p.w)
	l, err := lora.NewLayerFrom(w, newMat(t, p.r, p.in, p.a), newMat(t, p.out, p.r, p.b), p.s)
	if err != nil {
		t.Fatalf("NewLayerFrom: %v", err)
	}
	t.Cleanup(l.Free)
	return l, w
}

// refForward returns the oracle's y of the problem's layer, x·Wᵀ alone
// without the adapter, and the magnitudes that bound its rounding.
func (p *problem) refForward(adapter bool) (y, mag []float64) {
	if !adapter {
		return reftest.Forward(p.shape(), 0, p.x, p.w, nil, nil)
	}
	return reftest.Forward(p.shape(), float64(p.s), p.x, p.w, p.a, p.b)
}

// refMerged returns the oracle's W + c·B·A, the update c·B·A alone and the
// magnitudes |W| + |c|·Σ|B||A|.
func (p *problem) refMerged(c float64) (merged, delta, mag []float64) {
	return reftest.Merge(p.out, p.in, p.r, c, p.w, p.a, p.b)
}

// shapes are odd on purpose: no dimension is a multiple of a tile.
var shapes = []struct{ in, out int }{{1, 1}, {7, 3}, {3, 7}, {129, 37}, {37, 129}, {130, 67}}

func ranks(in, out int) []int {
	rs := []int{1}
	if min(in, out) > 5 {
		rs = append(rs, 5)
	}
	if min(in, out) > 1 {
		rs = append(rs, min(in, out))
	}
	return rs
}

func TestForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, sh := range shapes {
		for _, r := range ranks(sh.in, sh.out) {
			for _, n := range []int{1, 3, 17, 300} {
				p := newProblem(rng, n, sh.in, sh.out, r)
				t.Run(p.String(), func(t *testing.T) {
					l, _ := p.layer(t)
					x, y := newMat(t, n, p.in, p.x), newMat(t, n, p.out, nil)
					if err := l.Forward(y, x); err != nil {
						t.Fatal(err)
					}
					want, mag := p.refForward(true)
					reftest.Close(t, "y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))

					// The base product alone, through Linear.
					if err := lora.Linear(y, x, l.W()); err != nil {
						t.Fatal(err)
					}
					want, mag = p.refForward(false)
					reftest.Close(t, "x·Wᵀ", read(t, y), want, mag, reftest.Gamma(p.in+1))
				})
			}
		}
	}
}

func TestMergeUnmerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range shapes {
		for _, r := range ranks(sh.in, sh.out) {
			p := newProblem(rng, 17, sh.in, sh.out, r)
			t.Run(p.String(), func(t *testing.T) {
				l, w := p.layer(t)
				x, yu, ym := newMat(t, p.n, p.in, p.x), newMat(t, p.n, p.out, nil), newMat(t, p.n, p.out, nil)
				if err := l.Forward(yu, x); err != nil {
					t.Fatal(err)
				}
				if err := l.Merge(); err != nil {
					t.Fatal(err)
				}
				if !l.Merged() {
					t.Fatal("Merged() is false after Merge")
				}
				want, _, mag := p.refMerged(float64(p.s))
				reftest.Close(t, "merged W", read(t, w), want, mag, reftest.Gamma(p.r+2))

				// Merged and unmerged Forward agree within their two error bounds.
				if err := l.Forward(ym, x); err != nil {
					t.Fatal(err)
				}
				ref, fmag := p.refForward(true)
				reftest.Close(t, "merged y", read(t, ym), ref, fmag, reftest.Gamma(p.in+p.r+3))
				reftest.Close(t, "merged y vs unmerged y", read(t, ym), reftest.F64(read(t, yu)), fmag, 2*reftest.Gamma(p.in+p.r+3))

				if err := l.Unmerge(); err != nil {
					t.Fatal(err)
				}
				if l.Merged() {
					t.Fatal("Merged() is true after Unmerge")
				}
				checkRestored(t, read(t, w), p, 2)
			})
		}
	}
}

// checkRestored fails unless every element of got is within maxULP ulps of
// max(|W|, |s·B·A|) of the original W, and returns the largest error in ulps.
func checkRestored(t testing.TB, got []float32, p *problem, maxULP float64) float64 {
	t.Helper()
	_, delta, _ := p.refMerged(float64(p.s))
	worst := 0.0
	for i, g := range got {
		u := reftest.F32.ULP(math.Max(math.Abs(float64(p.w[i])), math.Abs(delta[i])))
		e := math.Abs(float64(g)-float64(p.w[i])) / u
		worst = math.Max(worst, e)
		if e > maxULP {
			t.Fatalf("W[%d] = %g after Unmerge, was %g: %.1f ulps off, bound %g", i, g, p.w[i], e, maxULP)
		}
	}
	return worst
}

// TestMergeDrift runs 1000 Merge/Unmerge cycles. Merge and Unmerge add and
// subtract bit for bit the same s·B·A, so each cycle moves an element by at
// most one rounding, and a cycle that leaves an element unchanged leaves it
// unchanged forever after: the drift does not grow with the number of cycles.
// Bound: 2 ulps of max(|W|, |s·B·A|) after 1000 cycles, as after one.
func TestMergeDrift(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	p := newProblem(rng, 1, 129, 37, 5)
	p.s = 3.7 // a large update makes rounding show
	l, w := p.layer(t)
	const cycles = 1000
	for c := 0; c < cycles; c++ {
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		if err := l.Unmerge(); err != nil {
			t.Fatal(err)
		}
	}
	worst := checkRestored(t, read(t, w), p, 2)
	t.Logf("after %d cycles: largest drift %.2f ulps of max(|W|, |s·B·A|)", cycles, worst)
}

func TestFreshLayerIsBase(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, init := range []lora.Init{lora.InitKaiming, lora.InitGaussian} {
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%v/%dx%d", init, sh.out, sh.in), func(t *testing.T) {
				n := 5
				w := newMat(t, sh.out, sh.in, reftest.Normal(rng, sh.out*sh.in, 1))
				x := newMat(t, n, sh.in, reftest.Normal(rng, n*sh.in, 1))
				l, err := lora.NewLayer(w, lora.Config{Rank: min(sh.in, sh.out), Alpha: 16, Init: init, Seed: 42})
				if err != nil {
					t.Fatal(err)
				}
				defer l.Free()
				y, base := newMat(t, n, sh.out, nil), newMat(t, n, sh.out, nil)
				if err := l.Forward(y, x); err != nil {
					t.Fatal(err)
				}
				if err := lora.Linear(base, x, w); err != nil {
					t.Fatal(err)
				}
				gy, gb := read(t, y), read(t, base)
				for i := range gy {
					if gy[i] != gb[i] {
						t.Fatalf("y[%d] = %g, base output %g: a fresh layer (B = 0) must equal its base exactly", i, gy[i], gb[i])
					}
				}
				for i, v := range read(t, l.B()) {
					if v != 0 {
						t.Fatalf("B[%d] = %g, want 0", i, v)
					}
				}
			})
		}
	}
}

func TestInit(t *testing.T) {
	const in, out, r = 600, 40, 16
	w := newMat(t, out, in, nil)
	mk := func(cfg lora.Config) []float32 {
		l, err := lora.NewLayer(w, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Free()
		if rr, c := l.A().Dims(); rr != cfg.Rank || c != in {
			t.Fatalf("A is %d×%d, want %d×%d", rr, c, cfg.Rank, in)
		}
		if rr, c := l.B().Dims(); rr != out || c != cfg.Rank {
			t.Fatalf("B is %d×%d, want %d×%d", rr, c, out, cfg.Rank)
		}
		return read(t, l.A())
	}
	a1 := mk(lora.Config{Rank: r, Seed: 9})
	bound := float32(1 / math.Sqrt(in))
	var sum, sq float64
	for i, v := range a1 {
		if v < -bound || v > bound {
			t.Fatalf("A[%d] = %g outside ±1/√in = ±%g", i, v, bound)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	// U(−b, b) has mean 0 and variance b²/3; with 9600 draws the sample
	// moments are within a few percent.
	cnt := float64(len(a1))
	if mean := sum / cnt; math.Abs(mean) > 0.05*float64(bound) {
		t.Errorf("Kaiming A: mean %g, want ≈ 0", mean)
	}
	if v, want := sq/cnt, float64(bound*bound)/3; math.Abs(v-want) > 0.05*want {
		t.Errorf("Kaiming A: variance %g, want ≈ %g", v, want)
	}
	a2 := mk(lora.Config{Rank: r, Seed: 9})
	a3 := mk(lora.Config{Rank: r, Seed: 10})
	same, differ := true, 0
	for i := range a1 {
		if a1[i] != a2[i] {
			same = false
		}
		if a1[i] != a3[i] {
			differ++
		}
	}
	if !same {
		t.Error("the same Seed gave a different A")
	}
	if differ < len(a1)*99/100 {
		t.Errorf("seeds 9 and 10 share %d of %d elements of A", len(a1)-differ, len(a1))
	}

	g := mk(lora.Config{Rank: r, Init: lora.InitGaussian, Seed: 11})
	sum, sq = 0, 0
	for _, v := range g {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	std := math.Sqrt(sq/cnt - (sum/cnt)*(sum/cnt))
	if want := 1.0 / r; math.Abs(std-want) > 0.05*want {
		t.Errorf("Gaussian A: standard deviation %g, want ≈ 1/r = %g", std, want)
	}
}

func TestConfigScale(t *testing.T) {
	for _, c := range []struct {
		cfg  lora.Config
		want float32
	}{
		{lora.Config{Rank: 8}, 1},
		{lora.Config{Rank: 8, Alpha: 32}, 4},
		{lora.Config{Rank: 16, Alpha: 32, RSLoRA: true}, 8},
		{lora.Config{Rank: 4, RSLoRA: true}, 2},
		{lora.Config{Rank: 0, Alpha: 4}, 0},
	} {
		if got := c.cfg.Scale(); got != c.want {
			t.Errorf("%+v.Scale() = %g, want %g", c.cfg, got, c.want)
		}
	}
	w := newMat(t, 8, 8, nil)
	l, err := lora.NewLayer(w, lora.Config{Rank: 4, Alpha: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	if l.Scale() != 2 || l.Rank() != 4 {
		t.Errorf("layer scale %g rank %d, want 2 and 4", l.Scale(), l.Rank())
	}
}

// numericalRank counts singular values above max(m, n)·σ₁·float32 epsilon.
func numericalRank(rows, cols int, data []float32) int {
	d := make([]float64, len(data))
	for i, v := range data {
		d[i] = float64(v)
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(rows, cols, d), mat.SVDNone) {
		panic("SVD failed")
	}
	sv := svd.Values(nil)
	tol := float64(max(rows, cols)) * sv[0] * 2 * reftest.U32
	rank := 0
	for _, v := range sv {
		if v > tol {
			rank++
		}
	}
	return rank
}

// TestRank merges an adapter into W = 0, so W becomes s·B·A, and checks that
// its rank is r, never more: the rank limit of a LoRA update.
func TestRank(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 13))
	for _, r := range []int{1, 3, 8} {
		const in, out = 40, 30
		w := newMat(t, out, in, nil)
		l, err := lora.NewLayerFrom(w, newMat(t, r, in, reftest.Normal(rng, r*in, 1)), newMat(t, out, r, reftest.Normal(rng, out*r, 1)), 0.5)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		if got := numericalRank(out, in, read(t, w)); got != r {
			t.Errorf("rank(s·B·A) = %d for r = %d", got, r)
		}
	}

	// The seed's example: [[1,2,3],[4,5,6],[7,8,9]] has rank 2, and a rank-2
	// adapter represents it exactly: rows 1 and 2 are A, row 3 = 2·row 2 − row 1.
	w := newMat(t, 3, 3, nil)
	a := newMat(t, 2, 3, []float32{1, 2, 3, 4, 5, 6})
	b := newMat(t, 3, 2, []float32{1, 0, 0, 1, -1, 2})
	l, err := lora.NewLayerFrom(w, a, b, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	got := read(t, w)
	want := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("B·A = %v, want %v", got, want)
		}
	}
	if r := numericalRank(3, 3, got); r != 2 {
		t.Errorf("rank of [[1,2,3],[4,5,6],[7,8,9]] = %d, want 2", r)
	}
}

func TestAxpy(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 15))
	xs, ys := reftest.Normal(rng, 37*5, 1), reftest.Normal(rng, 37*5, 1)
	x, y := newMat(t, 37, 5, xs), newMat(t, 37, 5, ys)
	if err := lora.Axpy(y, -1.5, x); err != nil {
		t.Fatal(err)
	}
	got := read(t, y)
	for i := range got {
		want := float64(ys[i]) - 1.5*float64(xs[i])
		if d := math.Abs(float64(got[i]) - want); d > 2*reftest.U32*(math.Abs(float64(ys[i]))+1.5*math.Abs(float64(xs[i]))) {
			t.Fatalf("y[%d] = %g, want %g", i, got[i], want)
		}
	}
}

// TestConcurrentForward runs Forward from many goroutines on one layer, each
// into its own y, and checks every result equals the serial one.
func TestConcurrentForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 17))
	p := newProblem(rng, 9, 65, 33, 4)
	l, _ := p.layer(t)
	x := newMat(t, p.n, p.in, p.x)
	ref := newMat(t, p.n, p.out, nil)
	if err := l.Forward(ref, x); err != nil {
		t.Fatal(err)
	}
	want := read(t, ref)
	const workers = 8
	ys := make([]*lora.Matrix, workers)
	for i := range ys {
		ys[i] = newMat(t, p.n, p.out, nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if err := l.Forward(ys[g], x); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for g, y := range ys {
		if errs[g] != nil {
			t.Fatal(errs[g])
		}
		got := read(t, y)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("goroutine %d: y[%d] = %g, serial Forward gave %g", g, i, got[i], want[i])
			}
		}
	}
}

func TestFree(t *testing.T) {
	m, err := lora.NewMatrix(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	m.Free()
	m.Free() // idempotent
	var nilM *lora.Matrix
	nilM.Free()
	if err := m.Read(make([]float32, 6)); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Read after Free: %v, want ErrFreed", err)
	}
	if err := m.Write(make([]float32, 6)); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Write after Free: %v, want ErrFreed", err)
	}

	w := newMat(t, 4, 4, nil)
	l, err := lora.NewLayer(w, lora.Config{Rank: 2})
	if err != nil {
		t.Fatal(err)
	}
	a := l.A()
	l.Free()
	l.Free()
	if err := a.Read(make([]float32, 8)); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("A after Layer.Free: %v, want ErrFreed", err)
	}
	if err := w.Read(make([]float32, 16)); err != nil {
		t.Errorf("Layer.Free freed W: %v", err)
	}
	x, y := newMat(t, 1, 4, nil), newMat(t, 1, 4, nil)
	for name, err := range map[string]error{
		"Forward": l.Forward(y, x),
		"Merge":   l.Merge(),
		"Unmerge": l.Unmerge(),
	} {
		if !errors.Is(err, lora.ErrFreed) {
			t.Errorf("%s after Layer.Free: %v, want ErrFreed", name, err)
		}
	}
	var nilL *lora.Layer
	nilL.Free()
	if err := nilL.Forward(y, x); !errors.Is(err, lora.ErrNil) {
		t.Errorf("Forward on nil layer: %v, want ErrNil", err)
	}
	if err := nilL.Merge(); !errors.Is(err, lora.ErrNil) {
		t.Errorf("Merge on nil layer: %v, want ErrNil", err)
	}
	if nilL.Merged() || nilL.W() != nil || nilL.A() != nil || nilL.B() != nil || nilL.Scale() != 0 || nilL.Rank() != 0 {
		t.Error("a nil layer's accessors must return zero values")
	}
	if r, c := nilM.Dims(); r != 0 || c != 0 {
		t.Errorf("nil Matrix Dims = %d×%d", r, c)
	}
}

// snapshot records every matrix of a test so that a failed call can be
// checked to have modified nothing.
type snapshot struct {
	ms   []*lora.Matrix
	data [][]float32
}

func snap(t testing.TB, ms ...*lora.Matrix) *snapshot {
	t.Helper()
	s := &snapshot{ms: ms}
	for _, m := range ms {
		s.data = append(s.data, read(t, m))
	}
	return s
}

func (s *snapshot) unchanged(t testing.TB, what string) {
	t.Helper()
	for i, m := range s.ms {
		got := read(t, m)
		for j := range got {
			if math.Float32bits(got[j]) != math.Float32bits(s.data[i][j]) {
				t.Errorf("%s: matrix %d changed at %d: %g, was %g", what, i, j, got[j], s.data[i][j])
				return
			}
		}
	}
}

func TestErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 19))
	const n, in, out, r = 3, 4, 6, 2
	p := newProblem(rng, n, in, out, r)
	l, w := p.layer(t)
	x := newMat(t, n, in, p.x)
	y := newMat(t, n, out, reftest.Normal(rng, n*out, 1))
	freed, _ := lora.NewMatrix(n, in)
	freed.Free()
	wrongX := newMat(t, 3, 5, nil)
	wrongY := newMat(t, n, out+1, nil)
	shortY := newMat(t, n+1, out, nil)
	all := snap(t, w, l.A(), l.B(), x, y)

	type call struct {
		name    string
		f       func() error
		want    error
		message string // a fragment the message must contain
	}
	calls := []call{
		{"NewMatrix 0 rows", func() error { _, err := lora.NewMatrix(0, 3); return err }, lora.ErrShape, "0×3"},
		{"NewMatrix negative", func() error { _, err := lora.NewMatrix(2, -1); return err }, lora.ErrShape, "2×-1"},
		{"NewMatrix huge", func() error { _, err := lora.NewMatrix(1<<40, 1<<40); return err }, lora.ErrShape, "elements"},
		{"NewMatrixFrom short", func() error { _, err := lora.NewMatrixFrom(2, 3, make([]float32, 5)); return err }, lora.ErrShape, "len(data) is 5, want 2×3 = 6"},
		{"Read short", func() error { return x.Read(make([]float32, 11)) }, lora.ErrShape, "len(dst) is 11"},
		{"Write long", func() error { return x.Write(make([]float32, 13)) }, lora.ErrShape, "len(src) is 13"},
		{"Read nil", func() error { var m *lora.Matrix; return m.Read(nil) }, lora.ErrNil, "nil"},
		{"Forward x shape", func() error { return l.Forward(y, wrongX) }, lora.ErrShape, "x is 3×5, want n×4"},
		{"Forward y shape", func() error { return l.Forward(wrongY, x) }, lora.ErrShape, "y is 3×7, want 3×6"},
		{"Forward y rows", func() error { return l.Forward(shortY, x) }, lora.ErrShape, "y is 4×6, want 3×6"},
		{"Forward nil x", func() error { return l.Forward(y, nil) }, lora.ErrNil, "x is nil"},
		{"Forward nil y", func() error { return l.Forward(nil, x) }, lora.ErrNil, "y is nil"},
		{"Forward freed x", func() error { return l.Forward(y, freed) }, lora.ErrFreed, "x is freed"},
		{"Forward y is B", func() error {
			sq, err := lora.NewLayerFrom(newMat(t, 4, 4, nil), newMat(t, 4, 4, nil), newMat(t, 4, 4, nil), 1)
			if err != nil {
				return err
			}
			return sq.Forward(sq.B(), newMat(t, 4, 4, nil))
		}, lora.ErrAlias, "own A or B"},
		{"Linear y is x", func() error { sq := newMat(t, 4, 4, nil); return lora.Linear(sq, sq, newMat(t, 4, 4, nil)) }, lora.ErrAlias, "distinct"},
		{"Linear w shape", func() error { return lora.Linear(y, x, newMat(t, out, in+1, nil)) }, lora.ErrShape, "want n×5"},
		{"Axpy shape", func() error { return lora.Axpy(y, 1, x) }, lora.ErrShape, "x is 3×4, want 3×6"},
		{"Unmerge unmerged", l.Unmerge, lora.ErrNotMerged, "Unmerge"},
		{"NewLayer nil w", func() error { _, err := lora.NewLayer(nil, lora.Config{Rank: 1}); return err }, lora.ErrNil, "w is nil"},
		{"NewLayer freed w", func() error { _, err := lora.NewLayer(freed, lora.Config{Rank: 1}); return err }, lora.ErrFreed, "w is freed"},
		{"NewLayer rank 0", func() error { _, err := lora.NewLayer(w, lora.Config{Rank: 0}); return err }, lora.ErrConfig, "Rank 0"},
		{"NewLayer NaN alpha", func() error { _, err := lora.NewLayer(w, lora.Config{Rank: 1, Alpha: float32(math.NaN())}); return err }, lora.ErrNonFinite, "Alpha"},
		{"NewLayer Inf alpha", func() error {
			_, err := lora.NewLayer(w, lora.Config{Rank: 1, Alpha: float32(math.Inf(-1))})
			return err
		}, lora.ErrNonFinite, "Alpha is -Inf"},
		{"NewLayer unknown init", func() error { _, err := lora.NewLayer(w, lora.Config{Rank: 1, Init: 7}); return err }, lora.ErrConfig, "Init(7)"},
		{"NewLayerFrom A shape", func() error {
			_, err := lora.NewLayerFrom(w, newMat(t, r, in+1, nil), newMat(t, out, r, nil), 1)
			return err
		}, lora.ErrShape, "a is 2×5, want r×4"},
		{"NewLayerFrom B shape", func() error {
			_, err := lora.NewLayerFrom(w, newMat(t, r, in, nil), newMat(t, out, r+1, nil), 1)
			return err
		}, lora.ErrShape, "b is 6×3, want 6×2"},
		{"NewLayerFrom same a and b", func() error {
			sq := newMat(t, 4, 4, nil)
			_, err := lora.NewLayerFrom(newMat(t, 4, 4, nil), sq, sq, 1)
			return err
		}, lora.ErrAlias, "distinct"},
		{"NewLayerFrom Inf scale", func() error {
			_, err := lora.NewLayerFrom(w, newMat(t, r, in, nil), newMat(t, out, r, nil), float32(math.Inf(1)))
			return err
		}, lora.ErrNonFinite, "scale is +Inf"},
		{"NewLayerFrom NaN scale", func() error {
			_, err := lora.NewLayerFrom(w, newMat(t, r, in, nil), newMat(t, out, r, nil), float32(math.NaN()))
			return err
		}, lora.ErrNonFinite, "scale is NaN"},
	}
	for _, nonFinite := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		calls = append(calls, call{fmt.Sprintf("Merge %v in B", nonFinite), func() error {
			bad := append([]float32(nil), p.b...)
			bad[len(bad)-1] = nonFinite
			nan := newMat(t, out, r, bad)
			wcopy := newMat(t, out, in, p.w)
			ln, err := lora.NewLayerFrom(wcopy, newMat(t, r, in, p.a), nan, p.s)
			if err != nil {
				return err
			}
			before := snap(t, wcopy)
			err = ln.Merge()
			before.unchanged(t, "Merge with non-finite B")
			if ln.Merged() {
				t.Error("a refused Merge left the layer marked merged")
			}
			return err
		}, lora.ErrNonFinite, "NaN or Inf"})
	}
	calls = append(calls, call{"Merge NaN in A", func() error {
		bad := append([]float32(nil), p.a...)
		bad[0] = float32(math.NaN())
		wcopy := newMat(t, out, in, p.w)
		ln, err := lora.NewLayerFrom(wcopy, newMat(t, r, in, bad), newMat(t, out, r, p.b), p.s)
		if err != nil {
			return err
		}
		before := snap(t, wcopy)
		err = ln.Merge()
		before.unchanged(t, "Merge with NaN in A")
		return err
	}, lora.ErrNonFinite, "NaN or Inf"})

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.f()
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want one wrapping %v", err, c.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "lora: ") || !strings.Contains(msg, c.message) {
				t.Errorf("message %q, want prefix \"lora: \" and %q", msg, c.message)
			}
			all.unchanged(t, c.name)
		})
	}

	// Merge twice: the second is refused and W keeps the first merge.
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	merged := snap(t, w, l.A(), l.B())
	if err := l.Merge(); !errors.Is(err, lora.ErrMerged) {
		t.Errorf("second Merge: %v, want ErrMerged", err)
	}
	merged.unchanged(t, "second Merge")
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
}
