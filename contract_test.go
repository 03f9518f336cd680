package lora_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// TestRankAboveMinInOut runs layers whose rank exceeds min(in, out), as PEFT
// allows (r = 80 on a 64×64 weight), through NewLayerFrom and NewLayer:
// Forward, Merge, Unmerge and Backward against the float64 oracle, with the
// bounds of the tests at ordinary ranks (TestForward, TestMergeUnmerge,
// TestBackward): a float32 sum of in + r + 3 terms for y, of r + 2 for the
// merged W (the r products, the add to W, the scale).
func TestRankAboveMinInOut(t *testing.T) {
	rng := rand.New(rand.NewPCG(201, 202))
	for _, c := range []struct{ n, in, out, r int }{{3, 64, 64, 80}, {5, 7, 5, 9}, {2, 3, 11, 13}, {1, 1, 1, 2}} {
		p := newProblem(rng, c.n, c.in, c.out, c.r)
		t.Run(p.String(), func(t *testing.T) {
			l, w := p.layer(t)
			if l.Rank() != c.r {
				t.Fatalf("Rank() = %d, want %d", l.Rank(), c.r)
			}
			x, y := newMat(t, p.n, p.in, p.x), newMat(t, p.n, p.out, nil)
			if err := l.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			want, mag := p.refForward(true)
			reftest.Close(t, "y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			merged, _, mmag := p.refMerged(float64(p.s))
			reftest.Close(t, "merged W", read(t, w), merged, mmag, reftest.Gamma(p.r+2))
			if err := l.Unmerge(); err != nil {
				t.Fatal(err)
			}
			checkRestored(t, read(t, w), p, 2)
			checkBackwardRef(t, p, reftest.Normal(rng, p.n*p.out, 1))

			// NewLayer takes the rank too: a fresh layer (B = 0) computes
			// the base layer's x·Wᵀ.
			fresh, err := lora.NewLayer(w, lora.Config{Rank: c.r, Seed: 7})
			if err != nil {
				t.Fatalf("NewLayer with Rank %d on %d×%d: %v", c.r, c.out, c.in, err)
			}
			defer fresh.Free()
			if ar, ac := fresh.A().Dims(); ar != c.r || ac != c.in {
				t.Errorf("A is %d×%d, want %d×%d", ar, ac, c.r, c.in)
			}
			if err := fresh.Forward(y, x); err != nil {
				t.Fatal(err)
			}
			want, mag = p.refForward(false)
			reftest.Close(t, "fresh y", read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
		})
	}
}

// TestNonFiniteScaleSentinel checks that a NaN or ±Inf scale or Alpha is
// ErrNonFinite wherever it is given, NewLayer, NewLayerFrom and Bank.Add
// alike, and never ErrConfig.
func TestNonFiniteScaleSentinel(t *testing.T) {
	w := newMat(t, 3, 4, nil)
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
		errs := map[string]error{}
		_, errs["NewLayer"] = lora.NewLayer(w, lora.Config{Rank: 2, Alpha: v})
		_, errs["NewLayerFrom"] = lora.NewLayerFrom(w, newMat(t, 2, 4, nil), newMat(t, 3, 2, nil), v)
		bank, err := lora.NewBank(w, lora.BankConfig{MaxRank: 2, Capacity: 1})
		if err != nil {
			t.Fatal(err)
		}
		_, errs["Bank.Add"] = bank.Add(newMat(t, 2, 4, nil), newMat(t, 3, 2, nil), v)
		bank.Free()
		for op, err := range errs {
			if !errors.Is(err, lora.ErrNonFinite) || errors.Is(err, lora.ErrConfig) {
				t.Errorf("%s with %v: %v, want ErrNonFinite", op, v, err)
			}
		}
	}
}

// TestSentinelsDocumented parses errors.go and doc.go: every sentinel that
// errors.go declares must be named in the package documentation's list of
// sentinels, and every name in that list must be declared, so that a
// sentinel added later without its documentation fails here.
func TestSentinelsDocumented(t *testing.T) {
	fset := token.NewFileSet()
	ef, err := parser.ParseFile(fset, "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range ef.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.VAR {
			continue
		}
		for _, s := range g.Specs {
			for _, n := range s.(*ast.ValueSpec).Names {
				if strings.HasPrefix(n.Name, "Err") {
					declared = append(declared, n.Name)
				}
			}
		}
	}
	if len(declared) < 10 {
		t.Fatalf("errors.go declares %d sentinels (%v): the parse found too few", len(declared), declared)
	}
	df, err := parser.ParseFile(fset, "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	doc := df.Doc.Text()
	// The list: the parenthesis after "wrap one of the sentinel errors".
	i := strings.Index(doc, "sentinel errors")
	if i < 0 {
		t.Fatal(`the package documentation has no "sentinel errors"`)
	}
	open := strings.Index(doc[i:], "(")
	end := strings.Index(doc[i:], ")")
	if open < 0 || end < open {
		t.Fatal("the package documentation has no parenthesised list after \"sentinel errors\"")
	}
	var listed []string
	for _, f := range strings.FieldsFunc(doc[i+open+1:i+end], func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\n' }) {
		if strings.HasPrefix(f, "Err") {
			listed = append(listed, f)
		}
	}
	for _, name := range declared {
		if !slices.Contains(listed, name) {
			t.Errorf("errors.go declares %s, which the package documentation's list of sentinels omits", name)
		}
	}
	for _, name := range listed {
		if !slices.Contains(declared, name) {
			t.Errorf("the package documentation lists %s, which errors.go does not declare", name)
		}
	}
}

// TestLayerAfterFree checks that a freed layer's accessors no longer answer
// as if it were alive: A and B nil, Rank and Scale 0, while W, the caller's,
// is still returned.
func TestLayerAfterFree(t *testing.T) {
	w := newMat(t, 5, 3, nil)
	for name, mk := range map[string]func() (*lora.Layer, error){
		"NewLayer": func() (*lora.Layer, error) { return lora.NewLayer(w, lora.Config{Rank: 2, Alpha: 6}) },
		"NewLayerFrom": func() (*lora.Layer, error) {
			a, _ := lora.NewMatrix(2, 3)
			b, _ := lora.NewMatrix(5, 2)
			return lora.NewLayerFrom(w, a, b, 3)
		},
	} {
		l, err := mk()
		if err != nil {
			t.Fatal(err)
		}
		if l.A() == nil || l.B() == nil || l.Rank() != 2 || l.Scale() != 3 {
			t.Fatalf("%s: a live layer: A %p, B %p, Rank %d, Scale %g", name, l.A(), l.B(), l.Rank(), l.Scale())
		}
		l.Free()
		if l.A() != nil || l.B() != nil || l.Rank() != 0 || l.Scale() != 0 {
			t.Errorf("%s: after Free: A %p, B %p, Rank %d, Scale %g; want nil, nil, 0, 0", name, l.A(), l.B(), l.Rank(), l.Scale())
		}
		if l.W() != w {
			t.Errorf("%s: after Free, W() = %p, want the caller's %p", name, l.W(), w)
		}
	}
}

// TestSharedAdapter makes two layers, on two copies of W, adopt the same A
// and B, as the documentation of NewLayerFrom allows: both compute the
// oracle's y, and once one is freed the other's calls return ErrFreed (its
// A and B are freed matrices), never a result computed from freed memory,
// and freeing it too is safe.
func TestSharedAdapter(t *testing.T) {
	rng := rand.New(rand.NewPCG(203, 204))
	p := newProblem(rng, 3, 6, 5, 2)
	a, b := newMat(t, p.r, p.in, p.a), newMat(t, p.out, p.r, p.b)
	var ls [2]*lora.Layer
	for i := range ls {
		l, err := lora.NewLayerFrom(newMat(t, p.out, p.in, p.w), a, b, p.s)
		if err != nil {
			t.Fatalf("layer %d adopting the shared A and B: %v", i, err)
		}
		ls[i] = l
	}
	x, y := newMat(t, p.n, p.in, p.x), newMat(t, p.n, p.out, nil)
	want, mag := p.refForward(true)
	for i, l := range ls {
		if err := l.Forward(y, x); err != nil {
			t.Fatal(err)
		}
		reftest.Close(t, fmt.Sprintf("layer %d y", i), read(t, y), want, mag, reftest.Gamma(p.in+p.r+3))
	}
	ls[0].Free()
	if err := ls[1].Forward(y, x); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Forward of a layer whose shared adapter was freed: %v, want ErrFreed", err)
	}
	if err := ls[1].Merge(); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Merge of a layer whose shared adapter was freed: %v, want ErrFreed", err)
	}
	if err := ls[1].A().Read(make([]float32, p.r*p.in)); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("its A: %v, want ErrFreed", err)
	}
	ls[1].Free()
	if ls[1].A() != nil || ls[1].Rank() != 0 {
		t.Error("the second layer answers as alive after its Free")
	}
}

// TestWriteRangeEdges writes the values at the edge of F16's and BF16's
// range: the largest float32 that rounds to the largest finite value is
// stored as that value, the smallest that rounds to ±Inf (the tie above it,
// which goes to the even neighbour, Inf) is refused with ErrNonFinite and
// nothing written, and the message says it rounds to ±Inf. The patterns are
// written out: 0x7bff and 0x7f7f are the largest finite F16 and BF16.
func TestWriteRangeEdges(t *testing.T) {
	for _, c := range []struct {
		dt       lora.DType
		maxBits  uint16
		below    float32 // the largest float32 that rounds to the largest finite value
		overflow float32 // the smallest float32 that rounds to +Inf
	}{
		{lora.F16, 0x7bff, math.Nextafter32(65520, 0), 65520},
		{lora.F16, 0x7bff, 65519, 65520},
		{lora.BF16, 0x7f7f, math.Nextafter32(0x1.ffp127, 0), 0x1.ffp127},
	} {
		for _, sign := range []float32{1, -1} {
			m, err := lora.NewMatrixOf(c.dt, 1, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if err := m.Write([]float32{sign * c.below, 1}); err != nil {
				t.Errorf("%v: Write(%g): %v, want it stored", c.dt, sign*c.below, err)
				continue
			}
			bits := make([]uint16, 2)
			if err := m.ReadBits(bits); err != nil {
				t.Fatal(err)
			}
			want := c.maxBits
			if sign < 0 {
				want |= 0x8000
			}
			if bits[0] != want {
				t.Errorf("%v: Write(%g) stored %#04x, want %#04x", c.dt, sign*c.below, bits[0], want)
			}
			err = m.Write([]float32{2, sign * c.overflow})
			if !errors.Is(err, lora.ErrNonFinite) {
				t.Errorf("%v: Write(%g): %v, want ErrNonFinite", c.dt, sign*c.overflow, err)
				continue
			}
			inf := "+Inf"
			if sign < 0 {
				inf = "-Inf"
			}
			if msg := err.Error(); !strings.Contains(msg, "rounds to "+inf) || !strings.Contains(msg, "src[1]") {
				t.Errorf("%v: Write(%g): message %q, want it to say src[1] rounds to %s", c.dt, sign*c.overflow, msg, inf)
			}
			if err := m.ReadBits(bits); err != nil {
				t.Fatal(err)
			}
			one := uint16(0x3c00) // 1 in F16
			if c.dt == lora.BF16 {
				one = 0x3f80
			}
			if bits[0] != want || bits[1] != one {
				t.Errorf("%v: a refused Write changed the matrix: %#04x", c.dt, bits)
			}
		}
	}
}
