package lora_test

// Tests of Bank, part of the suite every backend runs. Each result is
// checked against a float64 reference that applies each row's adapter
// separately.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// bankAdapter is the host copy of one adapter held by a Bank under test.
type bankAdapter struct {
	r    int
	s    float32
	a, b []float32
}

// bankRef is the float64 reference: W, x, the adapters by id, and each
// row's id.
type bankRef struct {
	n, in, out int
	w, x       []float32
	ads        map[int32]*bankAdapter
}

// forward returns y[i] = x[i]·Wᵀ + s·(x[i]·Aᵀ)·Bᵀ for each row's own
// adapter (x[i]·Wᵀ alone for id −1), from the oracle one row at a time,
// and the magnitudes Σ|terms| that bound its rounding error.
func (r *bankRef) forward(ids []int32) (y, mag []float64) {
	y = make([]float64, 0, r.n*r.out)
	mag = make([]float64, 0, r.n*r.out)
	for i := range r.n {
		xi := r.x[i*r.in : (i+1)*r.in]
		var yi, mi []float64
		if ad := r.ads[ids[i]]; ids[i] >= 0 {
			yi, mi = reftest.Forward(reftest.Shape{N: 1, In: r.in, Out: r.out, R: ad.r}, float64(ad.s), xi, r.w, ad.a, ad.b)
		} else {
			yi, mi = reftest.Forward(reftest.Shape{N: 1, In: r.in, Out: r.out}, 0, xi, r.w, nil, nil)
		}
		y, mag = append(y, yi...), append(mag, mi...)
	}
	return y, mag
}

// bankIDs returns the id patterns of a batch of n rows over the adapters
// held (ids, in the order they were added).
func bankIDs(rng *rand.Rand, n int, held []int32) map[string][]int32 {
	fill := func(f func(i int) int32) []int32 {
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = f(i)
		}
		return ids
	}
	pat := map[string][]int32{
		"none":     fill(func(int) int32 { return -1 }),
		"one":      fill(func(int) int32 { return held[0] }),
		"distinct": fill(func(i int) int32 { return held[i%len(held)] }),
		"runs":     fill(func(i int) int32 { return held[(i/3)%len(held)] }),
		"random": fill(func(int) int32 {
			if rng.IntN(5) == 0 {
				return -1
			}
			return held[rng.IntN(len(held))]
		}),
	}
	if n >= 2 {
		pat["reversed-runs"] = fill(func(i int) int32 { return held[((n-1-i)/2)%len(held)] })
	}
	return pat
}

// newBankAdapter returns a random adapter of rank r for W out×in.
func newBankAdapter(rng *rand.Rand, r, in, out int) *bankAdapter {
	return &bankAdapter{r: r, s: float32(0.5 + rng.Float64()),
		a: reftest.Normal(rng, r*in, 1/math.Sqrt(float64(in))), b: reftest.Normal(rng, out*r, 0.5)}
}

// add adds ad to bank, records it in ref and returns its id.
func (r *bankRef) add(t *testing.T, bank *lora.Bank, ad *bankAdapter) int32 {
	t.Helper()
	a := newMat(t, ad.r, r.in, ad.a)
	b := newMat(t, r.out, ad.r, ad.b)
	id, err := bank.Add(a, b, ad.s)
	if err != nil {
		t.Fatalf("Add rank %d: %v", ad.r, err)
	}
	// The Bank copied A and B: changing the caller's must not matter.
	if err := a.Write(make([]float32, ad.r*r.in)); err != nil {
		t.Fatal(err)
	}
	r.ads[int32(id)] = ad
	return int32(id)
}

// check runs Forward with every id pattern and compares with the reference.
func (r *bankRef) check(t *testing.T, rng *rand.Rand, bank *lora.Bank, held []int32, maxRank int) {
	t.Helper()
	x := newMat(t, r.n, r.in, r.x)
	y := newMat(t, r.n, r.out, nil)
	for name, ids := range bankIDs(rng, r.n, held) {
		// y starts with garbage: Forward must overwrite, not accumulate.
		if err := y.Write(reftest.Normal(rng, r.n*r.out, 100)); err != nil {
			t.Fatal(err)
		}
		if err := bank.Forward(y, x, ids); err != nil {
			t.Fatalf("%s: Forward: %v", name, err)
		}
		want, mag := r.forward(ids)
		reftest.Close(t, fmt.Sprintf("%s: y", name), read(t, y), want, mag, reftest.Gamma(r.in+maxRank+2))
	}
}

var bankShapes = []struct{ n, in, out, maxRank int }{
	{1, 9, 8, 8}, {3, 37, 129, 8}, {16, 130, 67, 9}, {17, 67, 130, 7}, {40, 300, 260, 16},
	{5, 64, 130, 12}, {16, 128, 17, 16}, {2, 4, 4, 4},
}

func TestBankForward(t *testing.T) {
	for _, sh := range bankShapes {
		t.Run(fmt.Sprintf("n%d/%dx%d", sh.n, sh.out, sh.in), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(sh.n), uint64(sh.in)))
			w := reftest.Normal(rng, sh.out*sh.in, 1/math.Sqrt(float64(sh.in)))
			ref := &bankRef{n: sh.n, in: sh.in, out: sh.out, w: w,
				x: reftest.Normal(rng, sh.n*sh.in, 1), ads: map[int32]*bankAdapter{}}
			wm := newMat(t, sh.out, sh.in, w)
			capacity := max(sh.n, 3)
			bank, err := lora.NewBank(wm, lora.BankConfig{MaxRank: sh.maxRank, Capacity: capacity})
			if err != nil {
				t.Fatal(err)
			}
			defer bank.Free()
			ranks := []int{1, min(7, sh.maxRank), sh.maxRank}
			var held []int32
			for i := range capacity {
				held = append(held, ref.add(t, bank, newBankAdapter(rng, ranks[i%3], sh.in, sh.out)))
			}
			if bank.Len() != capacity {
				t.Fatalf("Len = %d after %d Adds", bank.Len(), capacity)
			}
			for i, id := range held {
				if int(id) != i {
					t.Fatalf("Add %d returned id %d, want the lowest free slot %d", i, id, i)
				}
			}
			ref.check(t, rng, bank, held, sh.maxRank)

			// Remove two adapters, then add two of other ranks: the lowest
			// free slots come back, and the new adapters replace the old.
			for _, id := range []int{capacity - 1, 0} {
				if err := bank.Remove(id); err != nil {
					t.Fatalf("Remove(%d): %v", id, err)
				}
				delete(ref.ads, int32(id))
			}
			if got := bank.Len(); got != capacity-2 {
				t.Fatalf("Len = %d after two Removes, want %d", got, capacity-2)
			}
			x := newMat(t, sh.n, sh.in, ref.x)
			y := newMat(t, sh.n, sh.out, nil)
			ids := make([]int32, sh.n)
			ids[sh.n-1] = 0
			if err := bank.Forward(y, x, ids); !errors.Is(err, lora.ErrAdapter) {
				t.Fatalf("Forward naming a removed adapter: %v, want ErrAdapter", err)
			}
			id0 := ref.add(t, bank, newBankAdapter(rng, sh.maxRank, sh.in, sh.out))
			id1 := ref.add(t, bank, newBankAdapter(rng, 1, sh.in, sh.out))
			if id0 != 0 || id1 != int32(capacity-1) {
				t.Fatalf("Adds after Remove returned %d and %d, want 0 and %d", id0, id1, capacity-1)
			}
			ref.check(t, rng, bank, held, sh.maxRank)
		})
	}
}

// bankFixture is a small Bank with two adapters, an input and an output.
type bankFixture struct {
	w, x, y, a, b *lora.Matrix
	bank          *lora.Bank
	ids           []int32
}

func newBankFixture(t *testing.T) *bankFixture {
	t.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	const n, in, out, r = 4, 11, 6, 3
	f := &bankFixture{
		w: newMat(t, out, in, reftest.Normal(rng, out*in, 1)),
		x: newMat(t, n, in, reftest.Normal(rng, n*in, 1)),
		y: newMat(t, n, out, reftest.Normal(rng, n*out, 1)),
		a: newMat(t, r, in, reftest.Normal(rng, r*in, 1)),
		b: newMat(t, out, r, reftest.Normal(rng, out*r, 1)),
	}
	var err error
	f.bank, err = lora.NewBank(f.w, lora.BankConfig{MaxRank: 4, Capacity: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.bank.Free)
	for range 2 {
		if _, err := f.bank.Add(f.a, f.b, 0.5); err != nil {
			t.Fatal(err)
		}
	}
	f.ids = []int32{0, -1, 1, 0}
	return f
}

// state returns what a Bank computes: Len and a Forward over every adapter.
func (f *bankFixture) state(t *testing.T) string {
	t.Helper()
	y := newMat(t, 4, 6, nil)
	if err := f.bank.Forward(y, f.x, f.ids); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	return fmt.Sprint(f.bank.Len(), read(t, y))
}

func TestBankErrors(t *testing.T) {
	freedM := func(t *testing.T, r, c int) *lora.Matrix {
		m := newMat(t, r, c, nil)
		m.Free()
		return m
	}
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	withAt := func(t *testing.T, r, c, at int, v float32) *lora.Matrix {
		d := make([]float32, r*c)
		d[at] = v
		return newMat(t, r, c, d)
	}
	cases := []struct {
		name string
		call func(t *testing.T, f *bankFixture) error
		want error
		msg  string
	}{
		{"NewBank nil w", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(nil, lora.BankConfig{MaxRank: 1, Capacity: 1})
			return err
		}, lora.ErrNil, "w is nil"},
		{"NewBank freed w", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(freedM(t, 3, 3), lora.BankConfig{MaxRank: 1, Capacity: 1})
			return err
		}, lora.ErrFreed, "freed"},
		{"NewBank MaxRank 0", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(f.w, lora.BankConfig{MaxRank: 0, Capacity: 1})
			return err
		}, lora.ErrConfig, "MaxRank 0"},
		{"NewBank MaxRank above MaxBankRank", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(f.w, lora.BankConfig{MaxRank: lora.MaxBankRank + 1, Capacity: 1})
			return err
		}, lora.ErrConfig, fmt.Sprintf("MaxRank %d, want 1 ≤ MaxRank ≤ MaxBankRank = %d", lora.MaxBankRank+1, lora.MaxBankRank)},
		{"NewBank Capacity 0", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(f.w, lora.BankConfig{MaxRank: 1, Capacity: 0})
			return err
		}, lora.ErrConfig, "Capacity 0"},
		{"NewBank Capacity huge", func(t *testing.T, f *bankFixture) error {
			_, err := lora.NewBank(f.w, lora.BankConfig{MaxRank: 1, Capacity: lora.MaxBankCapacity + 1})
			return err
		}, lora.ErrConfig, "Capacity"},
		{"Add rank above MaxRank", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(newMat(t, 5, 11, nil), newMat(t, 6, 5, nil), 1)
			return err
		}, lora.ErrConfig, "rank 5"},
		{"Add a of wrong width", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(newMat(t, 2, 10, nil), newMat(t, 6, 2, nil), 1)
			return err
		}, lora.ErrShape, "a is 2×10"},
		{"Add b of wrong rank", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(newMat(t, 2, 11, nil), newMat(t, 6, 3, nil), 1)
			return err
		}, lora.ErrShape, "b is 6×3"},
		{"Add b of wrong height", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(newMat(t, 2, 11, nil), newMat(t, 5, 2, nil), 1)
			return err
		}, lora.ErrShape, "b is 5×2"},
		{"Add NaN in A", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(withAt(t, 2, 11, 13, nan), newMat(t, 6, 2, nil), 1)
			return err
		}, lora.ErrNonFinite, "a holds"},
		{"Add Inf in B", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(newMat(t, 2, 11, nil), withAt(t, 6, 2, 11, -inf), 1)
			return err
		}, lora.ErrNonFinite, "b holds"},
		{"Add NaN scale", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(f.a, f.b, nan)
			return err
		}, lora.ErrNonFinite, "scale is NaN"},
		{"Add Inf scale", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(f.a, f.b, inf)
			return err
		}, lora.ErrNonFinite, "scale is +Inf"},
		{"Add nil a", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(nil, f.b, 1)
			return err
		}, lora.ErrNil, "a is nil"},
		{"Add freed b", func(t *testing.T, f *bankFixture) error {
			_, err := f.bank.Add(f.a, freedM(t, 6, 3), 1)
			return err
		}, lora.ErrFreed, "b is freed"},
		{"Add to a full Bank", func(t *testing.T, f *bankFixture) error {
			if _, err := f.bank.Add(f.a, f.b, 1); err != nil {
				t.Fatal(err)
			}
			_, err := f.bank.Add(f.a, f.b, 1)
			if err := f.bank.Remove(2); err != nil { // back to the fixture's state
				t.Fatal(err)
			}
			return err
		}, lora.ErrFull, "all 3 slots"},
		{"Forward id below -1", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, []int32{0, 1, -2, 0})
		}, lora.ErrAdapter, "ids[2] is -2"},
		{"Forward id beyond Capacity", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, []int32{0, 1, 0, 3})
		}, lora.ErrAdapter, "ids[3] is 3"},
		{"Forward id huge", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, []int32{math.MaxInt32, 1, 0, 0})
		}, lora.ErrAdapter, "ids[0] is 2147483647"},
		{"Forward id of a free slot", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, []int32{0, 2, 0, 0})
		}, lora.ErrAdapter, "ids[1] is 2, a free slot"},
		{"Forward short ids", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, []int32{0, 1, 0})
		}, lora.ErrShape, "len(ids) is 3"},
		{"Forward nil ids", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, f.x, nil)
		}, lora.ErrShape, "len(ids) is 0"},
		{"Forward x of wrong width", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, newMat(t, 4, 10, nil), f.ids)
		}, lora.ErrShape, "x is 4×10"},
		{"Forward y of wrong shape", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(newMat(t, 4, 7, nil), f.x, f.ids)
		}, lora.ErrShape, "y is 4×7"},
		{"Forward y is x", func(t *testing.T, f *bankFixture) error {
			sq, err := lora.NewBank(newMat(t, 11, 11, nil), lora.BankConfig{MaxRank: 1, Capacity: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer sq.Free()
			return sq.Forward(f.x, f.x, make([]int32, 4))
		}, lora.ErrAlias, "distinct"},
		{"Forward y is W", func(t *testing.T, f *bankFixture) error {
			w := newMat(t, 4, 4, nil)
			sq, err := lora.NewBank(w, lora.BankConfig{MaxRank: 1, Capacity: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer sq.Free()
			return sq.Forward(w, newMat(t, 4, 4, nil), make([]int32, 4))
		}, lora.ErrAlias, "distinct"},
		{"Forward nil y", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(nil, f.x, f.ids)
		}, lora.ErrNil, "y is nil"},
		{"Forward zero x", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, &lora.Matrix{}, f.ids)
		}, lora.ErrNil, "zero Matrix"},
		{"Forward freed x", func(t *testing.T, f *bankFixture) error {
			return f.bank.Forward(f.y, freedM(t, 4, 11), f.ids)
		}, lora.ErrFreed, "x is freed"},
		{"Remove negative", func(t *testing.T, f *bankFixture) error {
			return f.bank.Remove(-1)
		}, lora.ErrAdapter, "id -1"},
		{"Remove beyond Capacity", func(t *testing.T, f *bankFixture) error {
			return f.bank.Remove(3)
		}, lora.ErrAdapter, "id 3"},
		{"Remove a free slot", func(t *testing.T, f *bankFixture) error {
			return f.bank.Remove(2)
		}, lora.ErrAdapter, "slot 2 is free"},
		{"nil Bank", func(t *testing.T, f *bankFixture) error {
			var b *lora.Bank
			if b.Len() != 0 || b.Remove(0) == nil {
				t.Error("nil Bank: Len or Remove did not refuse")
			}
			if _, err := b.Add(f.a, f.b, 1); !errors.Is(err, lora.ErrNil) {
				t.Errorf("nil Bank: Add: %v", err)
			}
			return b.Forward(f.y, f.x, f.ids)
		}, lora.ErrNil, "bank is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newBankFixture(t)
			before := f.state(t)
			inputs := snap(t, f.w, f.x, f.y, f.a, f.b)
			err := c.call(t, f)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "lora: ") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %q, want the prefix \"lora: \" and %q", err, c.msg)
			}
			inputs.unchanged(t, c.name)
			if after := f.state(t); after != before {
				t.Errorf("the Bank changed: %s, was %s", after, before)
			}
		})
	}
}

func TestBankFree(t *testing.T) {
	f := newBankFixture(t)
	wBefore := read(t, f.w)
	f.bank.Free()
	f.bank.Free() // idempotent
	if f.bank.Len() != 0 {
		t.Errorf("Len after Free = %d", f.bank.Len())
	}
	if err := f.bank.Forward(f.y, f.x, f.ids); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Forward after Free: %v", err)
	}
	if _, err := f.bank.Add(f.a, f.b, 1); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Add after Free: %v", err)
	}
	if err := f.bank.Remove(0); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Remove after Free: %v", err)
	}
	got := read(t, f.w) // W is the caller's: still usable, unchanged
	for i := range got {
		if got[i] != wBefore[i] {
			t.Fatalf("W changed at %d", i)
		}
	}
	// A freed W makes the Bank refuse.
	g := newBankFixture(t)
	g.w.Free()
	if err := g.bank.Forward(g.y, g.x, g.ids); !errors.Is(err, lora.ErrFreed) {
		t.Errorf("Forward with W freed: %v", err)
	}
}

// TestBankConcurrent runs Forward from many goroutines while a Remove and an
// Add of other adapters wait their turn; run it with -race.
func TestBankConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const n, in, out = 9, 65, 33
	w := reftest.Normal(rng, out*in, 0.2)
	ref := &bankRef{n: n, in: in, out: out, w: w, x: reftest.Normal(rng, n*in, 1), ads: map[int32]*bankAdapter{}}
	bank, err := lora.NewBank(newMat(t, out, in, w), lora.BankConfig{MaxRank: 5, Capacity: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer bank.Free()
	for _, r := range []int{1, 5, 3} {
		ref.add(t, bank, newBankAdapter(rng, r, in, out))
	}
	ids := []int32{0, 1, 1, -1, 0, 1, 0, 0, 1}
	x := newMat(t, n, in, ref.x)
	first := newMat(t, n, out, nil)
	if err := bank.Forward(first, x, ids); err != nil {
		t.Fatal(err)
	}
	want := read(t, first)
	const workers = 6
	ys := make([]*lora.Matrix, workers)
	for i := range ys {
		ys[i] = newMat(t, n, out, nil)
	}
	errs := make([]error, workers+1)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := append([]int32(nil), ids...)
			for range 10 {
				if err := bank.Forward(ys[g], x, own); err != nil {
					errs[g] = err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := bank.Remove(2); err != nil {
			errs[workers] = err
			return
		}
		ad := newBankAdapter(rand.New(rand.NewPCG(1, 2)), 4, in, out)
		a, _ := lora.NewMatrixFrom(4, in, ad.a)
		b, _ := lora.NewMatrixFrom(out, 4, ad.b)
		defer a.Free()
		defer b.Free()
		_, errs[workers] = bank.Add(a, b, ad.s)
	}()
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantRef, mag := ref.forward(ids)
	reftest.Close(t, "y", want, wantRef, mag, reftest.Gamma(in+8))
	for g, y := range ys {
		got := read(t, y)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("goroutine %d: y[%d] = %g, serial Forward gave %g", g, i, got[i], want[i])
			}
		}
	}
	if bank.Len() != 3 {
		t.Errorf("Len = %d, want 3", bank.Len())
	}
}
