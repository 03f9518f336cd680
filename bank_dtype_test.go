package lora

// The Bank on every dtype of W (F32, F16, BF16, NF4), of x and y, and of the
// A and B given to Add, on every backend, against the float64 oracle of
// internal/reftest on the operands' stored values (W read back with Read:
// the exact NF4 values); ranks above min(in, out); refusals that must leave
// y as it was; concurrent Adds; and the last id of the largest Bank.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

var bankWDTypes = []DType{F32, F16, BF16, NF4}

// bankW returns an out×in base weight of dt and its values as stored. An
// NF4 W holds random codes in blocks of 32, which straddle rows when in is
// not a multiple of 32.
func bankW(t testing.TB, rng *rand.Rand, dt DType, out, in int) (*Matrix, []float64) {
	t.Helper()
	if dt != NF4 {
		return dtOperand(t, dt, out, in, reftest.Normal(rng, out*in, 1/math.Sqrt(float64(in))))
	}
	codes, absmax, _ := reftest.RandomNF4(rng, out*in, 32)
	w, err := NewQuantizedFrom(NF4, out, in, 32, codes, absmax)
	if err != nil {
		t.Fatalf("NewQuantizedFrom: %v", err)
	}
	t.Cleanup(w.Free)
	return w, reftest.F64(dtRead(t, w))
}

// bankWState returns W's stored state: its codes and absmax for NF4, its
// bits otherwise.
func bankWState(t testing.TB, w *Matrix) string {
	t.Helper()
	if w.DType() != NF4 {
		return fmt.Sprint(dtBits(t, w))
	}
	rows, cols := w.Dims()
	codes := make([]byte, (rows*cols+1)/2)
	absmax := make([]float32, (rows*cols+w.BlockSize()-1)/w.BlockSize())
	if err := w.ReadQuantized(codes, absmax); err != nil {
		t.Fatalf("ReadQuantized: %v", err)
	}
	return fmt.Sprint(codes, absmax)
}

// bankTestAdapter is one adapter as a test added it: its rank, scale and
// the values of A and B as stored in the matrices given to Add.
type bankTestAdapter struct {
	r      int
	s      float64
	av, bv []float64
}

// bankAddOf adds a random adapter of rank r, with A and B of dtype dt, to bk
// and returns its id and values.
func bankAddOf(t testing.TB, rng *rand.Rand, bk *Bank, dt DType, r int) (int32, *bankTestAdapter) {
	t.Helper()
	out, in := bk.W().Dims()
	a, av := dtOperand(t, dt, r, in, reftest.Normal(rng, r*in, 1/math.Sqrt(float64(in))))
	b, bv := dtOperand(t, dt, out, r, reftest.Normal(rng, out*r, 0.5))
	s := 0.5 + rng.Float64()
	id, err := bk.Add(a, b, float32(s))
	if err != nil {
		t.Fatalf("Add of a rank-%d adapter with %v A and B: %v", r, dt, err)
	}
	return int32(id), &bankTestAdapter{r: r, s: float64(float32(s)), av: av, bv: bv}
}

// bankWant returns the oracle's y for x (n×in) over W (out×in), each row
// with its own adapter from ads (none for -1), and the magnitudes of its
// terms.
func bankWant(x, w []float64, n, in, out int, ids []int32, ads map[int32]*bankTestAdapter) (y, mag []float64) {
	for i := range n {
		xi := x[i*in : (i+1)*in]
		sh := reftest.Shape{N: 1, In: in, Out: out}
		var yi, mi []float64
		if ad := ads[ids[i]]; ids[i] >= 0 {
			sh.R = ad.r
			yi, mi = reftest.Forward(sh, ad.s, xi, w, ad.av, ad.bv)
		} else {
			yi, mi = reftest.Forward(sh, 0, xi, w, nil, nil)
		}
		y, mag = append(y, yi...), append(mag, mi...)
	}
	return y, mag
}

// bankMixedIDs returns n ids cycling through held with a -1 every fourth
// row, so that rows of one adapter are not adjacent and some rows have none.
func bankMixedIDs(n int, held []int32) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		if i%4 == 2 {
			ids[i] = -1
		} else {
			ids[i] = held[(i*5+i/3)%len(held)]
		}
	}
	return ids
}

// TestBankDTypes runs Bank.Forward on every dtype of W, x and y: at n = 3
// (decode) and n = 17 (prefill) every combination of x and y, at n = 1, 16
// and 40 a Latin square of them (each dtype of x and of y once), on an odd
// W (67 columns, 45 rows; an NF4 W in blocks of 32 that straddle rows),
// adapters of every rank up to MaxRank with A and B of every float dtype,
// and ids mixing adapters and -1. Bound: each element of y is a float32 sum
// of in products of x and W, plus the adapter term Σₖ T[i,k]·B[j,k] (r
// products) with T[i,k] = s·Σ x·A (in products and the scale), plus the add
// of the two: γ(in+r+3) of the magnitudes, then rounded once to y's dtype
// (reftest.Rounded).
func TestBankDTypes(t *testing.T) {
	const in, out, maxRank = 67, 45, 6
	for _, wdt := range bankWDTypes {
		for _, n := range []int{1, 3, 16, 17, 40} {
			combos := dtCombos(2, n == 3 || n == 17)
			for _, c := range combos {
				xdt, ydt := c[0], c[1]
				t.Run(fmt.Sprintf("W=%v/n=%d/x=%v,y=%v", wdt, n, xdt, ydt), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(n), uint64(wdt)*16+uint64(xdt)*4+uint64(ydt)))
					w, wv := bankW(t, rng, wdt, out, in)
					bk, err := NewBank(w, BankConfig{MaxRank: maxRank, Capacity: 4})
					if err != nil {
						t.Fatalf("NewBank over a %v W: %v", wdt, err)
					}
					t.Cleanup(bk.Free)
					ads := map[int32]*bankTestAdapter{}
					var held []int32
					for i, r := range []int{1, 4, maxRank} {
						id, ad := bankAddOf(t, rng, bk, dtAll[(i+int(xdt))%3], r)
						ads[id] = ad
						held = append(held, id)
					}
					x, xv := dtOperand(t, xdt, n, in, reftest.Normal(rng, n*in, 1))
					ins, w0 := dtSnap(t, "x", x), bankWState(t, w)
					for _, ids := range [][]int32{bankMixedIDs(n, held), make([]int32, n)} {
						y := dtOutput(t, ydt, n, out) // NaN: an element not written shows
						if err := bk.Forward(y, x, ids); err != nil {
							t.Fatalf("Forward: %v", err)
						}
						want, mag := bankWant(xv, wv, n, in, out, ids, ads)
						reftest.Rounded(t, fmt.Sprintf("ids %v: y", ids), dtFormatOf(ydt), dtRead(t, y), want, mag,
							reftest.Gamma(in+maxRank+3))
					}
					ins.unchanged(t, "after Forward")
					if bankWState(t, w) != w0 {
						t.Error("Forward changed W")
					}
				})
			}
		}
	}
}

// TestBankRankAboveMin adds adapters whose rank exceeds min(in, out), as
// PEFT allows: rank 80 on a 64×64 W, and ranks 7 and 13 on a 6-column W,
// on every dtype of W, at n = 3 (decode) and n = 17 (prefill). Bound as in
// TestBankDTypes, γ(in+r+3) with y F32.
func TestBankRankAboveMin(t *testing.T) {
	for _, c := range []struct {
		in, out int
		ranks   []int
	}{{64, 64, []int{80}}, {6, 8, []int{7, 13, 2}}} {
		maxRank := slices.Max(c.ranks)
		for _, wdt := range bankWDTypes {
			for _, n := range []int{3, 17} {
				t.Run(fmt.Sprintf("%dx%d/r=%v/W=%v/n=%d", c.out, c.in, c.ranks, wdt, n), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(c.in), uint64(n)))
					w, wv := bankW(t, rng, wdt, c.out, c.in)
					bk, err := NewBank(w, BankConfig{MaxRank: maxRank, Capacity: len(c.ranks)})
					if err != nil {
						t.Fatalf("NewBank with MaxRank %d over a %d×%d W: %v", maxRank, c.out, c.in, err)
					}
					t.Cleanup(bk.Free)
					ads := map[int32]*bankTestAdapter{}
					var held []int32
					for _, r := range c.ranks {
						id, ad := bankAddOf(t, rng, bk, F32, r)
						ads[id] = ad
						held = append(held, id)
						if got := bk.Rank(int(id)); got != r {
							t.Fatalf("Rank(%d) = %d, want %d", id, got, r)
						}
					}
					x, xv := dtOperand(t, F32, n, c.in, reftest.Normal(rng, n*c.in, 1))
					ids := bankMixedIDs(n, held)
					y := dtOutput(t, F32, n, c.out)
					if err := bk.Forward(y, x, ids); err != nil {
						t.Fatalf("Forward: %v", err)
					}
					want, mag := bankWant(xv, wv, n, c.in, c.out, ids, ads)
					reftest.Close(t, "y", dtRead(t, y), want, mag, reftest.Gamma(c.in+maxRank+3))
				})
			}
		}
	}
}

// TestBankDTypeRefusals checks, on every dtype of W and of y, that a
// refused Forward leaves y as it was (half y are staged: nothing may be
// rounded into them), that NF4 is refused as x, y, A and B with ErrDType,
// and that a refused Add leaves the Bank as it was.
func TestBankDTypeRefusals(t *testing.T) {
	const n, in, out, r = 3, 40, 24, 2
	for _, wdt := range bankWDTypes {
		t.Run(fmt.Sprintf("W=%v", wdt), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(97, uint64(wdt)))
			w, _ := bankW(t, rng, wdt, out, in)
			bk, err := NewBank(w, BankConfig{MaxRank: r, Capacity: 3})
			if err != nil {
				t.Fatalf("NewBank over a %v W: %v", wdt, err)
			}
			t.Cleanup(bk.Free)
			id, _ := bankAddOf(t, rng, bk, F32, r)
			q, _ := bankW(t, rng, NF4, n, in) // an NF4 matrix where an activation goes
			qy, _ := bankW(t, rng, NF4, n, out)
			qa, _ := bankW(t, rng, NF4, r, in)
			qb, _ := bankW(t, rng, NF4, out, r)
			a32, _ := dtOperand(t, F32, r, in, reftest.Normal(rng, r*in, 1))
			b32, _ := dtOperand(t, F32, out, r, reftest.Normal(rng, out*r, 1))
			for _, ydt := range dtAll {
				x, _ := dtOperand(t, ydt, n, in, reftest.Normal(rng, n*in, 1))
				y, _ := dtOperand(t, ydt, n, out, reftest.Normal(rng, n*out, 1))
				wide, _ := dtOperand(t, ydt, n, in+1, reftest.Normal(rng, n*(in+1), 1))
				snap, w0 := dtSnap(t, "x", x, "y", y), bankWState(t, w)
				for _, c := range []struct {
					name string
					err  error
					want error
				}{
					{"x nf4", bk.Forward(y, q, []int32{id, -1, id}), ErrDType},
					{"y nf4", bk.Forward(qy, x, []int32{id, -1, id}), ErrDType},
					{"id of a free slot", bk.Forward(y, x, []int32{id, 1, -1}), ErrAdapter},
					{"id beyond Capacity", bk.Forward(y, x, []int32{id, 3, -1}), ErrAdapter},
					{"id below -1", bk.Forward(y, x, []int32{-2, id, id}), ErrAdapter},
					{"short ids", bk.Forward(y, x, []int32{id, id}), ErrShape},
					{"x of wrong width", bk.Forward(y, wide, []int32{id, id, id}), ErrShape},
				} {
					dtWantErr(t, fmt.Sprintf("y=%v: %s", ydt, c.name), c.err, c.want, "Bank.Forward")
					snap.unchanged(t, fmt.Sprintf("y=%v: refused Forward (%s)", ydt, c.name))
					if bankWState(t, w) != w0 {
						t.Errorf("y=%v: refused Forward (%s) changed W", ydt, c.name)
					}
				}
			}
			for _, c := range []struct {
				name string
				a, b *Matrix
			}{{"A nf4", qa, b32}, {"B nf4", a32, qb}} {
				got, err := bk.Add(c.a, c.b, 1)
				if got != -1 {
					t.Errorf("refused Add (%s) returned id %d", c.name, got)
				}
				dtWantErr(t, "Add with "+c.name, err, ErrDType, "Bank.Add")
				if bk.Len() != 1 {
					t.Errorf("refused Add (%s): Len = %d, want 1", c.name, bk.Len())
				}
			}
		})
	}
}

// TestBankConcurrentAdds runs two goroutines that each add 16 adapters
// into a Bank of Capacity 32: every id must be distinct, all 32 slots held,
// and each id must hold the adapter that its Add was given (a Forward of
// each id's rows against the oracle, bound as in TestBankDTypes). Run with
// -race: without the Bank's lock the two compete for the same free slot.
func TestBankConcurrentAdds(t *testing.T) {
	const in, out, per = 9, 7, 16
	rng := rand.New(rand.NewPCG(98, 99))
	w, wv := bankW(t, rng, F32, out, in)
	bk, err := NewBank(w, BankConfig{MaxRank: 3, Capacity: 2 * per})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bk.Free)
	type added struct {
		a, b *Matrix
		ad   *bankTestAdapter
	}
	var todo [2][per]added
	for g := range todo {
		for i := range todo[g] {
			r := 1 + (g+i)%3
			a, av := dtOperand(t, F32, r, in, reftest.Normal(rng, r*in, 1))
			b, bv := dtOperand(t, F32, out, r, reftest.Normal(rng, out*r, 1))
			s := float32(g*per + i + 1)
			todo[g][i] = added{a, b, &bankTestAdapter{r: r, s: float64(s), av: av, bv: bv}}
		}
	}
	var ids [2][per]int
	var errs [2]error
	var wg sync.WaitGroup
	for g := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, ad := range todo[g] {
				id, err := bk.Add(ad.a, ad.b, float32(ad.ad.s))
				if err != nil {
					errs[g] = err
					return
				}
				ids[g][i] = id
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	if bk.Len() != 2*per {
		t.Fatalf("Len = %d after %d Adds, want %d", bk.Len(), 2*per, 2*per)
	}
	seen := map[int]bool{}
	ads := map[int32]*bankTestAdapter{}
	var all []int32
	for g := range ids {
		for i, id := range ids[g] {
			if id < 0 || id >= 2*per || seen[id] {
				t.Fatalf("goroutine %d's Add %d returned id %d: out of range or already returned", g, i, id)
			}
			seen[id] = true
			ads[int32(id)] = todo[g][i].ad
			all = append(all, int32(id))
		}
	}
	x, xv := dtOperand(t, F32, per, in, reftest.Normal(rng, per*in, 1))
	for half := range 2 {
		batch := all[half*per : (half+1)*per]
		y := dtOutput(t, F32, per, out)
		if err := bk.Forward(y, x, batch); err != nil {
			t.Fatalf("Forward: %v", err)
		}
		want, mag := bankWant(xv, wv, per, in, out, batch, ads)
		reftest.Close(t, fmt.Sprintf("ids %v: y", batch), dtRead(t, y), want, mag, reftest.Gamma(in+3+3))
	}
}

// TestBankLastID uses id MaxBankCapacity−1 of a Bank of Capacity
// MaxBankCapacity in Forwards of n ≤ 16 rows, which the GPU's decode
// kernels take packed in their parameters, on an F32 W (the fused kernel)
// and an NF4 W (the base product, then the rows' expand). Adding a million
// adapters through Add would take minutes, so the test marks the first
// MaxBankCapacity−1 slots held (a placeholder that no Forward names) and
// lets Add find the last one. Bound as in TestBankDTypes.
func TestBankLastID(t *testing.T) {
	const in, out, r = 37, 21, 3
	for _, wdt := range []DType{F32, NF4} {
		t.Run(fmt.Sprintf("W=%v", wdt), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(100, uint64(wdt)))
			w, wv := bankW(t, rng, wdt, out, in)
			bk, err := NewBank(w, BankConfig{MaxRank: r, Capacity: MaxBankCapacity})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(bk.Free)
			placeholder := &Matrix{}
			bk.mu.Lock()
			for i := range bk.slots[:MaxBankCapacity-1] {
				bk.slots[i].a = placeholder
			}
			bk.held = MaxBankCapacity - 1
			bk.mu.Unlock()
			id, ad := bankAddOf(t, rng, bk, F32, r)
			if id != MaxBankCapacity-1 {
				t.Fatalf("Add into the last free slot returned %d, want %d", id, MaxBankCapacity-1)
			}
			ads := map[int32]*bankTestAdapter{id: ad}
			for _, n := range []int{1, 3, 16} {
				ids := make([]int32, n)
				for i := range ids {
					ids[i] = id
					if i%3 == 1 {
						ids[i] = -1
					}
				}
				x, xv := dtOperand(t, F32, n, in, reftest.Normal(rng, n*in, 1))
				y := dtOutput(t, F32, n, out)
				if err := bk.Forward(y, x, ids); err != nil {
					t.Fatalf("n = %d: Forward: %v", n, err)
				}
				want, mag := bankWant(xv, wv, n, in, out, ids, ads)
				reftest.Close(t, fmt.Sprintf("n = %d: y", n), dtRead(t, y), want, mag, reftest.Gamma(in+r+3))
			}
			bk.mu.Lock()
			for i := range bk.slots[:MaxBankCapacity-1] {
				bk.slots[i].a = nil
			}
			bk.held = 1
			bk.mu.Unlock()
		})
	}
}

// TestBankSharedW checks what the Bank's doc says of a W it shares with a
// Layer: the Bank reads W, so a Merge of the layer changes the Bank's base
// for every later Forward, and Unmerge restores it. Bound as in
// TestBankDTypes (W as stored after Merge, read back).
func TestBankSharedW(t *testing.T) {
	const n, in, out, r = 3, 13, 11, 2
	rng := rand.New(rand.NewPCG(101, 102))
	w, wv := bankW(t, rng, F32, out, in)
	l, err := NewLayer(w, Config{Rank: r, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Free)
	if err := l.B().Write(reftest.Normal(rng, out*r, 1)); err != nil {
		t.Fatal(err)
	}
	bk, err := NewBank(w, BankConfig{MaxRank: r, Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bk.Free)
	x, xv := dtOperand(t, F32, n, in, reftest.Normal(rng, n*in, 1))
	ids := []int32{-1, -1, -1}
	check := func(what string, wv []float64) {
		t.Helper()
		y := dtOutput(t, F32, n, out)
		if err := bk.Forward(y, x, ids); err != nil {
			t.Fatalf("%s: Forward: %v", what, err)
		}
		want, mag := bankWant(xv, wv, n, in, out, ids, nil)
		reftest.Close(t, what, dtRead(t, y), want, mag, reftest.Gamma(in+1))
	}
	check("before Merge", wv)
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	merged := reftest.F64(dtRead(t, w))
	if slices.Equal(merged, wv) {
		t.Fatal("Merge left W as it was: the test needs a nonzero ΔW")
	}
	check("after Merge", merged)
	if err := l.Unmerge(); err != nil {
		t.Fatal(err)
	}
	check("after Unmerge", reftest.F64(dtRead(t, w)))
}
