package cpu

import "sync"

// scratch is the per-call workspace of Forward, T (n×r), and of Backward,
// T and U (n×r).
type scratch struct{ t, u []float32 }

var scratchPool sync.Pool

func getScratch() *scratch {
	sc, _ := scratchPool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	return sc
}

// Forward computes y = x·Wᵀ + (s·x·Aᵀ)·Bᵀ for x (n×in), W (out×in) of any
// type, A (r×in), B (out×r) and y (n×out): T = s·x·Aᵀ (n×r), the base
// product into y, and T·Bᵀ accumulated into y in place. Where the packed
// or the bf16 product serves W, its goroutines compute T and add the term
// to each part of y they write (loraTerm); for a few rows on the fused
// matrix-vector kernels (a W of any type), T, the product and the term in
// one split (smallRowsOp); otherwise T first, then the product, then the
// term over all of y. Measured (in = out = 4096, r = 16, n = 1, W read
// from memory, medians of 5) in one split against three steps: a BF16 W
// 1.37 against 1.45 ms, an NF4 W 0.54 against 0.59 ms. No temporary of
// y's size; the only scratch, T and the slabs of a transposed B, is
// recycled between calls.
func Forward(y, x []float32, w Mat, a, b []float32, n, r int, s float32) {
	in, out := w.Cols, w.Rows
	sc := getScratch()
	defer scratchPool.Put(sc)
	sc.t = grow(sc.t, n*r)
	t := sc.t
	if op, release := smallRowsOp(y, x, w, n); op != nil {
		// A few rows of W of a type whose product is the fused
		// matrix-vector driver's (Product would take it), in one split
		// among goroutines of the groups of four rows of A, then of W:
		// each computes its groups of T[i,:] = s·A·x[i,:] (the float32
		// fused kernel) and of y[i,:] = W·x[i,:] (W's), then adds
		// B·T[i,:] to the rows of y it wrote (rankTerm), once all of T
		// is done. A group of A counts as tw groups of W, the ratio of
		// their bytes, so that the goroutine with T's groups takes
		// fewer of W's.
		defer release()
		top := f32GemvOp(t, x, a, n, r, in, r)
		tg := (r + 3) / 4
		tw := 1
		switch {
		case w.Type.half():
			tw = 2
		case w.Type == NF4:
			tw = 7 // 4 bytes against 0.5 + 4/64
		}
		tu := tg * tw
		var ready sync.WaitGroup
		ready.Add(tg)
		Parallel(tu+(out+3)/4, n*(out+r)*in, func(lo, hi int) {
			if t0, t1 := (lo+tw-1)/tw, (min(hi, tu)+tw-1)/tw; t1 > t0 {
				top.groups(t0, t1)
				for i := range n {
					row := t[i*r+4*t0 : i*r+min(r, 4*t1)]
					for k := range row {
						row[k] *= s
					}
				}
				ready.Add(t0 - t1)
			}
			w0, w1 := max(lo, tu)-tu, hi-tu
			if w1 > w0 {
				op.groups(w0, w1)
			}
			ready.Wait()
			if w1 > w0 {
				rankTerm(y, t, b, 0, n, 4*w0, min(out, 4*w1), out, r)
			}
		})
		return
	}
	if n <= gemvRows {
		// A few rows: matrix-vector products, T[i,:] = s·A·x[i,:], then
		// y[i,:] = W·x[i,:] and y[i,:] += B·T[i,:].
		GemmNT(n, r, in, s, x, a, 0, t)
		Product(y, x, w, n)
		GemmNT(n, out, r, 1, t, b, 1, y)
		return
	}
	if bf16 := w.Type == BF16 && bf16Wins(n, out, in); bf16 || gemmWins(n, out, in) {
		// The adapter's term by the base product's goroutines (loraTerm).
		lt := newLoRATerm(t, x, a, b, n, in, r, s)
		switch {
		case bf16 && bf16ProductTerm(y, x, w, n, lt):
			return
		case gemmWins(n, out, in):
			packedProductTerm(y, x, w, n, lt)
			return
		}
		if lt.op == nil { // T done
			Product(y, x, w, n)
			addRankTerm(y, t, b, n, out, r)
			return
		}
	}
	Shrink(t, x, a, n, in, r, s)
	Product(y, x, w, n)
	addRankTerm(y, t, b, n, out, r)
}

// smallRowsOp returns, for n ≤ gemvRows rows of x, the product y = x·Wᵀ as
// the gemvOp that Product runs for them (f32Gemv, nf4Gemv or halfGemv),
// and the function that returns its scratch; nil where Product takes
// another path.
func smallRowsOp(y, x []float32, w Mat, n int) (*gemvOp, func()) {
	if n > gemvRows {
		return nil, nil
	}
	out, in := w.Rows, w.Cols
	switch {
	case w.Type == F32 && f32GemvWins(n, out, in):
		return f32GemvOp(y, x, w.F32, n, out, in, out), func() {}
	case w.Type == NF4 && n <= nf4GemvRows() && nf4Fused(w):
		return nf4GemvOp(y, x, w, n, useNF4AVX512)
	case w.Type.half() && useHalfKernel(w.Type):
		return halfGemvOp(y, x, w.Bits, w.Type, n, out, in)
	}
	return nil, nil
}

// ForwardBF16 is Forward for x (n×in) and y (n×out) held as BF16
// patterns and a BF16 W, on the bf16 product (gemm_bf16.go): x packed
// from its patterns, and each element of y, its float32 sum and the
// adapter's term formed as Forward forms them, rounded once to bfloat16
// (to nearest even, ±Inf beyond its range) as the block of y is written;
// no float32 copy of x or y. It reports whether it did: not where the
// bf16 product does not serve (bf16Wins), nor where x holds a subnormal
// (bf16Safe); y is then untouched, and the caller widens x for Forward.
func ForwardBF16(y, x []uint16, w Mat, a, b []float32, n, r int, s float32) bool {
	if w.Type != BF16 || !bf16Wins(n, w.Rows, w.Cols) {
		return false
	}
	sc := getScratch()
	defer scratchPool.Put(sc)
	sc.t = grow(sc.t, n*r)
	lt := newLoRATermBF16(sc.t, x, a, b, n, w.Cols, r, s)
	return bf16Run(&bf16IO{xb: x, yb: y}, w, n, lt)
}

// ProductBF16 is ForwardBF16 without the adapter: y = x·Wᵀ.
func ProductBF16(y, x []uint16, w Mat, n int) bool {
	return w.Type == BF16 && bf16Run(&bf16IO{xb: x, yb: y}, w, n, nil)
}

// addRankTerm adds T·Bᵀ to y (n×out), T n×r, B out×r: by the blocked row
// update of Merge, each slab of Bᵀ packed from B.
func addRankTerm(y, t, b []float32, n, out, r int) {
	rankUpdateF32(y, n, out, r,
		func(i int, c []float32) { copy(c, t[i*r:(i+1)*r]) },
		func(slab []float32, j0, j1 int) {
			// Bᵀ's columns j0…j1−1, by tiles (see transposeBlocked).
			transposeBlocked(slab, b[j0*r:j1*r], j1-j0, r)
		})
}

// rankTerm adds to y[i, o] (rows ldy apart) the dot product of T's row i
// and B's row o (r each) for i0 ≤ i < i1 and o0 ≤ o < o1: on gemv4F32 for
// four rows of B at a time and r's whole 16s, the rest in Go; each dot
// product formed whole, then added.
func rankTerm(y, t, b []float32, i0, i1, o0, o1, ldy, r int) {
	m := r &^ 15
	if !useFMA {
		m = 0
	}
	for i := i0; i < i1; i++ {
		ti := t[i*r : (i+1)*r]
		for o := o0; o < o1; o += 4 {
			q := min(4, o1-o)
			var d [4]float32
			if q == 4 && m > 0 {
				_ = b[(o+3)*r+m-1] // bounds: the last element read
				gemv4F32(&d[0], &ti[0], &b[o*r], m, r)
			}
			for k := range q {
				v := d[k]
				if q < 4 || m == 0 {
					v = 0
					for j, c := range b[(o+k)*r : (o+k)*r+r] {
						v += ti[j] * c
					}
				} else {
					for j, c := range b[(o+k)*r+m : (o+k)*r+r] {
						v += ti[m+j] * c
					}
				}
				y[i*ldy+o+k] += v
			}
		}
	}
}
