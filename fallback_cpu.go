//go:build !cuda && !cudaemu

package lora

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// The CPU backend: matrices in host memory, products through gonum's BLAS
// (blas32.Implementation, pure Go unless another implementation is installed
// with blas32.Use), the rank-r update of Merge by a row-parallel loop of its
// own. Every call completes before it returns.

const backendName = "cpu"

func backendSync() error { return nil }

// buffer is a Matrix's storage: host memory.
type buffer struct{ data []float32 }

func newBuffer(n int) (buffer, error) { return buffer{data: make([]float32, n)}, nil }

func (b *buffer) read(dst []float32) error  { copy(dst, b.data); return nil }
func (b *buffer) write(src []float32) error { copy(b.data, src); return nil }
func (b *buffer) free()                     { b.data = nil }

// gemvRows is the largest batch that the products treat row by row, as
// matrix-vector products split over goroutines: below it gonum's Sgemm pays
// more in set-up than the product costs.
const gemvRows = 4

// parallel calls f on consecutive parts of [0, n), one per goroutine, up to
// GOMAXPROCS of them, or once on [0, n) when work (multiply-adds) is too
// small to pay for a goroutine.
func parallel(n int, work int, f func(lo, hi int)) {
	p := min(runtime.GOMAXPROCS(0), n)
	if p < 2 || work < 1<<16 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	for g := range p {
		lo, hi := g*n/p, (g+1)*n/p
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi) }()
	}
	wg.Wait()
}

// gemmNT computes c = alpha·a·bᵀ + beta·c for a (m×k), b (nc×k), c (m×nc),
// all row-major and contiguous.
func gemmNT(m, nc, k int, alpha float32, a, b []float32, beta float32, c []float32) {
	impl := blas32.Implementation()
	if m > gemvRows {
		impl.Sgemm(blas.NoTrans, blas.Trans, m, nc, k, alpha, a, k, b, k, beta, c, nc)
		return
	}
	// Row by row: c[i,:] = alpha·b·a[i,:] + beta·c[i,:], the rows of b split
	// over goroutines so that b streams through every core.
	parallel(nc, m*nc*k, func(lo, hi int) {
		for i := range m {
			impl.Sgemv(blas.NoTrans, hi-lo, k, alpha, b[lo*k:hi*k], k, a[i*k:(i+1)*k], 1, beta, c[i*nc+lo:i*nc+hi], 1)
		}
	})
}

// linear computes y = x·Wᵀ.
func linear(y, x, w *Matrix) error {
	gemmNT(x.rows, w.rows, x.cols, 1, x.buf.data, w.buf.data, 0, y.buf.data)
	return nil
}

// scratch is the per-call workspace of forward: T (n×r) and Bᵀ (r×out).
type scratch struct{ t, bt []float32 }

var scratchPool sync.Pool

func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// forward computes y = x·Wᵀ + (s·x·Aᵀ)·Bᵀ: T = s·x·Aᵀ (n×r) first, then the
// base product into y, then T·Bᵀ accumulated into y in place. No temporary of
// y's size and no separate pass over y; the only scratch, T and a transposed
// B (r×out), is recycled between calls.
func forward(y, x, w, a, b *Matrix, s float32) error {
	n, in, out, r := x.rows, x.cols, w.rows, a.rows
	xd, yd, ad, bd := x.buf.data, y.buf.data, a.buf.data, b.buf.data
	sc, _ := scratchPool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer scratchPool.Put(sc)
	sc.t = grow(sc.t, n*r)
	t := sc.t
	if n <= gemvRows {
		// A few rows: matrix-vector products, T[i,:] = s·A·x[i,:], then
		// y[i,:] = W·x[i,:] and y[i,:] += B·T[i,:].
		gemmNT(n, r, in, s, xd, ad, 0, t)
		gemmNT(n, out, in, 1, xd, w.buf.data, 0, yd)
		gemmNT(n, out, r, 1, t, bd, 1, yd)
		return nil
	}
	// T is n×r, too narrow for Sgemm to split among cores: split its rows.
	parallel(n, n*r*in, func(lo, hi int) {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, hi-lo, r, in, s,
			xd[lo*in:hi*in], in, ad, in, 0, t[lo*r:hi*r], r)
	})
	gemmNT(n, out, in, 1, xd, w.buf.data, 0, yd)
	// y[i,:] += Σₖ T[i,k]·Bᵀ[k,:] by the row update of Merge, over a
	// transposed copy of B, columns split among goroutines so that each keeps
	// its slab of Bᵀ in cache.
	sc.bt = grow(sc.bt, r*out)
	bt := sc.bt
	for j := range out {
		for k, v := range bd[j*r : (j+1)*r] {
			bt[k*out+j] = v
		}
	}
	parallel(out, n*out*r, func(lo, hi int) {
		for i := range n {
			rankRow(yd[i*out+lo:i*out+hi], bt[lo:], t[i*r:(i+1)*r], out)
		}
	})
	return nil
}

// axpy computes y += alpha·x.
func axpy(y *Matrix, alpha float32, x *Matrix) error {
	blas32.Implementation().Saxpy(len(x.buf.data), alpha, x.buf.data, 1, y.buf.data, 1)
	return nil
}

// allFinite reports whether every element of the matrices is finite.
func allFinite(ms ...*Matrix) (bool, error) {
	for _, m := range ms {
		for _, v := range m.buf.data {
			if v-v != 0 { // NaN − NaN and Inf − Inf are NaN
				return false, nil
			}
		}
	}
	return true, nil
}

// rankUpdate computes W += c·B·A in place, each row of W read and written
// once: row i gets Σₖ (c·B[i,k])·A[k,:], accumulated from zero in k order and
// then added, so that c and −c add and remove bit for bit the same delta.
// Rows are split among goroutines; A stays in cache.
func rankUpdate(w, a, b *Matrix, c float32) error {
	out, in, r := w.rows, w.cols, a.rows
	wd, ad, bd := w.buf.data, a.buf.data, b.buf.data
	rows := func(lo, hi int) {
		coef := make([]float32, r)
		for i := lo; i < hi; i++ {
			for k, v := range bd[i*r : (i+1)*r] {
				coef[k] = c * v
			}
			rankRow(wd[i*in:(i+1)*in], ad, coef, in)
		}
	}
	parallel(out, out*in*r, rows)
	return nil
}

// rankRowGo computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j < len(dst), the
// sum accumulated from zero in k order. It is the portable form of rankRow.
func rankRowGo(dst, a, coef []float32, lda int) {
	const chunk = 256
	var delta [chunk]float32
	for j0 := 0; j0 < len(dst); j0 += chunk {
		d := delta[:min(chunk, len(dst)-j0)]
		clear(d)
		for k, ck := range coef {
			row := a[k*lda+j0 : k*lda+j0+len(d)]
			for j, v := range row {
				d[j] += ck * v
			}
		}
		out := dst[j0 : j0+len(d)]
		for j, v := range d {
			out[j] += v
		}
	}
}

// track does nothing: the collector reclaims host memory.
func track(*Matrix) {}
