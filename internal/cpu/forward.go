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
// type, A (r×in), B (out×r) and y (n×out): T = s·x·Aᵀ (n×r) first, then
// the base product into y, then T·Bᵀ accumulated into y in place. No
// temporary of y's size and no separate pass over y; the only scratch, T
// and the slabs of a transposed B, is recycled between calls.
func Forward(y, x []float32, w Mat, a, b []float32, n, r int, s float32) {
	in, out := w.Cols, w.Rows
	sc := getScratch()
	defer scratchPool.Put(sc)
	sc.t = grow(sc.t, n*r)
	t := sc.t
	if n <= gemvRows {
		// A few rows: matrix-vector products, T[i,:] = s·A·x[i,:], then
		// y[i,:] = W·x[i,:] and y[i,:] += B·T[i,:].
		GemmNT(n, r, in, s, x, a, 0, t)
		Product(y, x, w, n)
		GemmNT(n, out, r, 1, t, b, 1, y)
		return
	}
	Shrink(t, x, a, n, in, r, s)
	Product(y, x, w, n)
	// y[i,:] += Σₖ T[i,k]·Bᵀ[k,:] by the blocked row update of Merge, each
	// slab of Bᵀ packed from B.
	rankUpdateF32(y, n, out, r,
		func(i int, c []float32) { copy(c, t[i*r:(i+1)*r]) },
		func(slab []float32, j0, j1 int) {
			// Bᵀ's columns j0…j1−1, by tiles (see transposeBlocked).
			transposeBlocked(slab, b[j0*r:j1*r], j1-j0, r)
		})
}
