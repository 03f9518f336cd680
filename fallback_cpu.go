//go:build !cuda && !cudaemu

package lora

import (
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// The CPU backend: matrices in host memory, products through gonum's BLAS
// (blas32.Implementation, pure Go unless another implementation is installed
// with blas32.Use), but y = x·Wᵀ by fused matrix-vector kernels of its own
// where the processor has AVX2 + FMA (f32Product, halfProduct) and the
// rank-r update of Merge by a row-parallel loop of its own. Every call
// completes before it returns.

const backendName = "cpu"

func backendSync() error { return nil }

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

// blasThreaded is true when the installed BLAS runs each call on threads of
// its own (OpenBLAS, with -tags openblas): its calls are then made whole, not
// split among goroutines, and its products are preferred to the AVX2 loops.
var blasThreaded bool

// parallelBLAS is parallel for work done by BLAS calls.
func parallelBLAS(n int, work int, f func(lo, hi int)) {
	if blasThreaded {
		f(0, n)
		return
	}
	parallel(n, work, f)
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
	parallelBLAS(nc, m*nc*k, func(lo, hi int) {
		for i := range m {
			impl.Sgemv(blas.NoTrans, hi-lo, k, alpha, b[lo*k:hi*k], k, a[i*k:(i+1)*k], 1, beta, c[i*nc+lo:i*nc+hi], 1)
		}
	})
}

// linear computes y = x·Wᵀ.
func linear(y, x, w *Matrix) error {
	baseProduct(y.buf.data, x.buf.data, w, x.rows)
	return nil
}

// baseProduct computes y = x·Wᵀ for x n×in and W out×in of any dtype.
func baseProduct(y, x []float32, w *Matrix, n int) {
	if w.dt.half() {
		halfProduct(y, x, w.buf.bits, w.dt, n, w.rows, w.cols)
		return
	}
	f32Product(y, x, w.buf.data, n, w.rows, w.cols)
}

// scratch is the per-call workspace of forward, T (n×r) and Bᵀ (r×out),
// and of backward, T and U (n×r).
type scratch struct{ t, u []float32 }

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
		baseProduct(yd, xd, w, n)
		gemmNT(n, out, r, 1, t, bd, 1, yd)
		return nil
	}
	shrink(t, xd, ad, n, in, r, s)
	baseProduct(yd, xd, w, n)
	// y[i,:] += Σₖ T[i,k]·Bᵀ[k,:] by the blocked row update of Merge, each
	// slab of Bᵀ packed from B.
	rankUpdateF32(yd, n, out, r,
		func(i int, c []float32) { copy(c, t[i*r:(i+1)*r]) },
		func(slab []float32, j0, j1 int) {
			// Row by row of the slab, written in order: written column
			// by column, its rows (often 4 KiB apart) would all fall in
			// one set of the L1 cache.
			width := j1 - j0
			for k := range r {
				row := slab[k*width : (k+1)*width]
				for j := range row {
					row[j] = bd[(j0+j)*r+k]
				}
			}
		})
	return nil
}

// shrink computes t = s·x·aᵀ for x (n×in) and a (r×in). T is n×r, too
// narrow for Sgemm to split among cores: its rows are split instead.
func shrink(t, x, a []float32, n, in, r int, s float32) {
	parallelBLAS(n, n*r*in, func(lo, hi int) {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, hi-lo, r, in, s,
			x[lo*in:hi*in], in, a, in, 0, t[lo*r:hi*r], r)
	})
}

// axpy computes y += alpha·x.
func axpy(y *Matrix, alpha float32, x *Matrix) error {
	blas32.Implementation().Saxpy(len(x.buf.data), alpha, x.buf.data, 1, y.buf.data, 1)
	return nil
}

// absMax returns max |m[i,j]|, or a non-finite value (NaN or +Inf) when m
// holds NaN or ±Inf: one read pass, split among goroutines. The magnitudes
// are compared as bit patterns with the sign cleared, whose order is that
// of the numbers, +Inf above every finite one and NaN above +Inf.
func absMax(m *Matrix) (float32, error) {
	if m.dt.half() {
		return absMaxHalf(m.buf.bits, m.dt), nil
	}
	d := m.buf.data
	p := max(1, min(runtime.GOMAXPROCS(0), len(d)/(1<<15)))
	parts := make([]uint32, p)
	parallel(p, len(d), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			var mx uint32
			for _, v := range d[g*len(d)/p : (g+1)*len(d)/p] {
				mx = max(mx, math.Float32bits(v)&0x7fffffff)
			}
			parts[g] = mx
		}
	})
	var mx uint32
	for _, v := range parts {
		mx = max(mx, v)
	}
	return math.Float32frombits(mx), nil
}

// adapterBound returns maxA = max |A[k,j]| and maxRowB = max_i Σₖ |B[i,k]|,
// summed in float64; either is non-finite when A or B holds NaN or ±Inf.
func adapterBound(a, b *Matrix) (maxA, maxRowB float64, err error) {
	ma, err := absMax(a)
	if err != nil {
		return 0, 0, err
	}
	maxA = float64(ma)
	r := b.cols
	bd := b.buf.data
	for i := range b.rows {
		var s float64
		for _, v := range bd[i*r : (i+1)*r] {
			s += math.Abs(float64(v))
		}
		if s != s { // NaN stays NaN; +Inf compares above every finite sum
			return maxA, s, nil
		}
		maxRowB = max(maxRowB, s)
	}
	return maxA, maxRowB, nil
}

// rankFinite reports whether every element of W + c·B·A, computed exactly
// as rankUpdate computes it, is finite in W's dtype (for a half W: rounds
// to a finite value). W is not modified: its rows are copied (widened), a
// block of about 4 MiB at a time, and updated by the same blocked loop as
// rankUpdate's, whose float32 result for an element depends neither on the
// range of rows given nor on the split among goroutines.
func rankFinite(w, a, b *Matrix, c float32) (bool, error) {
	out, in, r := w.rows, w.cols, a.rows
	coef, pack := rankFuncs(a, b, c)
	chunk := max(1, min(out, (1<<20)/in))
	tmp := make([]float32, chunk*in)
	lim := overflowAt(w.dt)
	for i0 := 0; i0 < out; i0 += chunk {
		i1 := min(out, i0+chunk)
		t := tmp[:(i1-i0)*in]
		if w.dt.half() {
			widenHalfParallel(w.dt, t, w.buf.bits[i0*in:i1*in])
		} else {
			copy(t, w.buf.data[i0*in:i1*in])
		}
		rankUpdateF32(t, i1-i0, in, r, func(i int, c []float32) { coef(i0+i, c) }, pack)
		if !fitsIn(t, lim) {
			return false, nil
		}
	}
	return true, nil
}

// addBias computes y[i,:] += bias[0,:] for every row i, rows split among
// goroutines.
func addBias(y, bias *Matrix) error {
	yd, bd := y.buf.data, bias.buf.data
	cols := y.cols
	parallel(y.rows, y.rows*cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := yd[i*cols : (i+1)*cols]
			row = row[:len(bd)]
			for j, v := range bd {
				row[j] += v
			}
		}
	})
	return nil
}

// rankUpdate computes W += c·B·A in place, each element of W read and
// written once: row i gets Σₖ (c·B[i,k])·A[k,:], accumulated from zero in k
// order and then added, so that c and −c add and remove bit for bit the same
// delta. A half W is updated in float32, each element exactly as an F32 W
// holding its value would be, and rounded once to nearest even.
func rankUpdate(w, a, b *Matrix, c float32) error {
	coef, pack := rankFuncs(a, b, c)
	if w.dt.half() {
		bits, dt, cols := w.buf.bits, w.dt, w.cols
		rankUpdateBlocked(w.rows, cols, a.rows, coef, pack, func(i, j0, j1 int, slab, c []float32) {
			rankRowHalf(dt, bits[i*cols+j0:i*cols+j1], slab, c, j1-j0)
		})
		return nil
	}
	rankUpdateF32(w.buf.data, w.rows, w.cols, a.rows, coef, pack)
	return nil
}

// rankFuncs returns rankUpdateBlocked's coef and pack for W += c·B·A:
// coef_i = c·B[i,:], and the slabs of A.
func rankFuncs(a, b *Matrix, c float32) (coef func(i int, c []float32), pack func(slab []float32, j0, j1 int)) {
	in, r := a.cols, a.rows
	ad, bd := a.buf.data, b.buf.data
	coef = func(i int, coef []float32) {
		for k, v := range bd[i*r : (i+1)*r] {
			coef[k] = c * v
		}
	}
	pack = func(slab []float32, j0, j1 int) {
		width := j1 - j0
		for k := range r {
			copy(slab[k*width:(k+1)*width], ad[k*in+j0:k*in+j1])
		}
	}
	return coef, pack
}

// rankSlabBytes bounds the slab of a that rankUpdateBlocked keeps in the L2
// cache while every row uses it: whole rows of a up to r = 16 at in = 4096,
// so that W streams row after row; blocks of columns above that.
const rankSlabBytes = 256 << 10

// rankUpdateF32 computes dst[i,:] += Σₖ coef_i[k]·a[k,:] for the rows
// i < rows of dst (rows×cols, row-major, float32) by rankUpdateBlocked and
// rankRow.
func rankUpdateF32(dst []float32, rows, cols, r int, coef func(i int, c []float32), pack func(slab []float32, j0, j1 int)) {
	rankUpdateBlocked(rows, cols, r, coef, pack, func(i, j0, j1 int, slab, c []float32) {
		rankRow(dst[i*cols+j0:i*cols+j1], slab, c, j1-j0)
	})
}

// rankUpdateBlocked computes dst[i,:] += Σₖ coef_i[k]·a[k,:] for the rows
// i < rows of a matrix dst (rows×cols, row-major), with a r×cols. coef(i, c)
// writes coef_i into c; pack(slab, j0, j1) writes columns j0…j1−1 of a into
// slab, row-major r×(j1−j0); row(i, j0, j1, slab, c) applies the update to
// columns j0…j1−1 of row i of dst (rankRow's arithmetic). The columns go in
// blocks whose slab of a fits rankSlabBytes (at least 256 columns, each
// block starting at a multiple of 64): each block of a is packed once,
// contiguous, and used by every row from the cache. Blocks and ranges of
// rows are split among goroutines. Each element's sum runs in k order from
// zero, whatever the split.
func rankUpdateBlocked(rows, cols, r int, coef func(i int, c []float32), pack func(slab []float32, j0, j1 int), row func(i, j0, j1 int, slab, c []float32)) {
	width := min(cols, max(256, rankSlabBytes/(4*r)&^63))
	blocks := (cols + width - 1) / width
	groups := max(1, min(rows, runtime.GOMAXPROCS(0)/blocks)) // few blocks: split rows too
	parallel(blocks*groups, rows*cols*r, func(lo, hi int) {
		c := make([]float32, r)
		slab := make([]float32, r*width)
		for task := lo; task < hi; task++ {
			blk, g := task/groups, task%groups
			j0, j1 := blk*width, min(cols, (blk+1)*width)
			pack(slab, j0, j1)
			for i := g * rows / groups; i < (g+1)*rows/groups; i++ {
				coef(i, c)
				row(i, j0, j1, slab, c)
			}
		}
	})
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

// backward computes, with T = s·x·Aᵀ and U = s·dy·B (n×r, scratch),
// dB = dyᵀ·T, dA = Uᵀ·x and, unless dx is nil, dx = dy·W + U·A (dx = dy·W
// when merged). The two rank-r reductions over n are small Sgemms. dx, the
// only full-size product, is [dy | U]·[W ; A] by productNN on rankRow's AVX2
// kernel when the processor has it: the rank-r term is r more rows of the
// inner dimension; a half W is widened there block by block (in registers
// at n ≤ halfFuseRows). Elsewhere it is gonum's Sgemm (Sgemv rows at small
// n; panels of a half W widened by halfGradX), then the rank-r term
// accumulated in place by rankRow.
func backward(dx, dA, dB, dy, x, w, a, b *Matrix, s float32, merged bool) error {
	n, in, out, r := x.rows, x.cols, w.rows, a.rows
	xd, dyd, ad, bd := x.buf.data, dy.buf.data, a.buf.data, b.buf.data
	sc, _ := scratchPool.Get().(*scratch)
	if sc == nil {
		sc = new(scratch)
	}
	defer scratchPool.Put(sc)
	sc.t, sc.u = grow(sc.t, n*r), grow(sc.u, n*r)
	t, u := sc.t, sc.u
	impl := blas32.Implementation()

	shrink(t, xd, ad, n, in, r, s)
	parallelBLAS(n, n*r*out, func(lo, hi int) {
		impl.Sgemm(blas.NoTrans, blas.NoTrans, hi-lo, r, out, s,
			dyd[lo*out:hi*out], out, bd, r, 0, u[lo*r:hi*r], r)
	})
	impl.Sgemm(blas.Trans, blas.NoTrans, out, r, n, 1, dyd, out, t, r, 0, dB.buf.data, r)
	impl.Sgemm(blas.Trans, blas.NoTrans, r, in, n, 1, u, r, xd, in, 0, dA.buf.data, in)
	if dx == nil {
		return nil
	}

	dxd, wd := dx.buf.data, w.buf.data
	if useFMA && !blasThreaded {
		segs := []nnSegment{{coef: dyd, ldc: out, a: wd, bits: w.buf.bits, dt: w.dt, rows: out}}
		if !merged {
			segs = append(segs, nnSegment{coef: u, ldc: r, a: ad, rows: r})
		}
		productNN(dxd, n, in, segs)
		return nil
	}
	if w.dt.half() {
		halfGradX(dxd, dyd, w.buf.bits, w.dt, n, out, in)
	} else if n <= gemvRows {
		// dx[i,:] = Wᵀ·dy[i,:], the columns of W split over goroutines so
		// that W streams through every core once.
		parallelBLAS(in, n*in*out, func(lo, hi int) {
			for i := range n {
				impl.Sgemv(blas.Trans, out, hi-lo, 1, wd[lo:], in, dyd[i*out:(i+1)*out], 1, 0, dxd[i*in+lo:i*in+hi], 1)
			}
		})
	} else {
		impl.Sgemm(blas.NoTrans, blas.NoTrans, n, in, out, 1, dyd, out, wd, in, 0, dxd, in)
	}
	if merged {
		return nil
	}
	// dx[i,:] += Σₖ U[i,k]·A[k,:], columns split among goroutines so that
	// each keeps its slab of A in cache.
	parallel(in, n*in*r, func(lo, hi int) {
		for i := range n {
			rankRow(dxd[i*in+lo:i*in+hi], ad[lo:], u[i*r:(i+1)*r], in)
		}
	})
	return nil
}

// nnSegment is one part of the inner dimension of productNN: the n×rows
// coefficients coef (leading dimension ldc) and the rows×cols matrix a
// (leading dimension cols): float32 in a, or, when dt is F16 or BF16, the
// patterns in bits.
type nnSegment struct {
	coef []float32
	ldc  int
	a    []float32
	bits []uint16
	dt   DType
	rows int
}

// Blocking of productNN: a nnCols × nnRows block of a (32 KiB) stays in the
// L1 cache while every row of dst takes its share. A half-precision a is
// read in rows of halfNNCols 16-bit elements (as many bytes as a float32
// block's rows), widened in blocks of halfNNRows rows (as large as a
// float32 block), and each goroutine's task spans up to halfNNSpan columns:
// blocks side by side in the same rows of a, so that a's pages are read
// whole rather than a short piece of each of thousands of them.
const (
	nnCols = 128
	nnRows = 64

	halfNNCols = 2 * nnCols
	halfNNRows = nnRows / 2
	halfNNSpan = 8 * halfNNCols
)

// productNN computes dst = Σ over segments of coef·a for dst n×cols, each
// row by rankRow: dst[i, j0:j1] accumulates Σₖ coef[i,k]·a[k, j0:j1] over
// blocks of nnRows rows k of a, so that the block of a is read from memory
// once and from L1 by every row i; a half-precision block is first widened
// into a float32 block of its own, in L1. Spans of columns are split among
// goroutines. The sum of each element runs in a fixed order, whatever the
// split and the blocking: segment after segment, blocks of k in order.
func productNN(dst []float32, n, cols int, segs []nnSegment) {
	inner := 0
	for _, sg := range segs {
		inner += sg.rows
	}
	width, krows, span := nnCols, nnRows, nnCols
	for _, sg := range segs {
		if sg.dt.half() {
			// Spans of at most halfNNSpan, at least one per goroutine.
			procs := runtime.GOMAXPROCS(0)
			width, krows = halfNNCols, halfNNRows
			span = min(halfNNSpan, max(width, ((cols+procs-1)/procs+width-1)/width*width))
		}
	}
	spans := (cols + span - 1) / span
	parallel(spans, n*cols*inner, func(lo, hi int) {
		var wide []float32
		for sp := lo; sp < hi; sp++ {
			s0, s1 := sp*span, min((sp+1)*span, cols)
			for i := range n {
				clear(dst[i*cols+s0 : i*cols+s1])
			}
			for _, sg := range segs {
				for k0 := 0; k0 < sg.rows; k0 += krows {
					k1 := min(k0+krows, sg.rows)
					for j0 := s0; j0 < s1; j0 += width {
						j1 := min(j0+width, s1)
						if sg.dt.half() && n <= halfFuseRows && useHalfKernel(sg.dt) {
							// Few rows: a widened in registers.
							for i := range n {
								rankRowFromHalf(sg.dt, dst[i*cols+j0:i*cols+j1], sg.bits[k0*cols+j0:], sg.coef[i*sg.ldc+k0:i*sg.ldc+k1], cols)
							}
							continue
						}
						var a []float32
						lda := cols
						if sg.dt.half() {
							// Widen the block k0…k1−1 × j0…j1−1 of a.
							lda = j1 - j0
							if wide == nil {
								wide = make([]float32, krows*width)
							}
							for k := k0; k < k1; k++ {
								widenHalf(sg.dt, wide[(k-k0)*lda:(k-k0+1)*lda], sg.bits[k*cols+j0:k*cols+j1])
							}
							a = wide
						} else {
							a = sg.a[k0*cols+j0:]
						}
						for i := range n {
							rankRow(dst[i*cols+j0:i*cols+j1], a, sg.coef[i*sg.ldc+k0:i*sg.ldc+k1], lda)
						}
					}
				}
			}
		}
	})
}

// segments calls f on the parts of [lo, hi) of the concatenation of A's and
// B's elements, na of them A's: f(p, g, off) with p and g the parameters and
// gradients of the part and off its index in the concatenation.
func segments(a, b, da, db []float32, lo, hi int, f func(p, g []float32, off int)) {
	na := len(a)
	if lo < na {
		e := min(hi, na)
		f(a[lo:e], da[lo:e], lo)
	}
	if hi > na {
		s := max(lo, na)
		f(b[s-na:hi-na], db[s-na:hi-na], s)
	}
}

// adamw applies one AdamW update to A and B in a single pass over the
// parameters, gradients and moments: the state holds m for A then B in its
// first row, v in its second.
func adamw(a, b, da, db, state *Matrix, h adamParams) error {
	ad, bd := a.buf.data, b.buf.data
	total := len(ad) + len(bd)
	m, v := state.buf.data[:total], state.buf.data[total:2*total]
	omb1, omb2 := 1-h.beta1, 1-h.beta2
	parallel(total, 16*total, func(lo, hi int) {
		segments(ad, bd, da.buf.data, db.buf.data, lo, hi, func(p, g []float32, off int) {
			m, v := m[off:off+len(p)], v[off:off+len(p)]
			for i, gi := range g {
				mi := h.beta1*m[i] + omb1*gi
				vi := h.beta2*v[i] + omb2*gi*gi
				m[i], v[i] = mi, vi
				den := float32(math.Sqrt(float64(vi)))*h.invSqrtBC2 + h.eps
				p[i] = p[i]*h.decay - h.step*mi/den
			}
		})
	})
	return nil
}

// sgd applies one SGD update to A and B: with momentum (buf not nil, one row
// for A then B) buf ← mom·buf + g and p ← p − lr·buf, else p ← p − lr·g.
func sgd(a, b, da, db, buf *Matrix, lr, mom float32) error {
	ad, bd := a.buf.data, b.buf.data
	total := len(ad) + len(bd)
	parallel(total, 4*total, func(lo, hi int) {
		segments(ad, bd, da.buf.data, db.buf.data, lo, hi, func(p, g []float32, off int) {
			if buf == nil {
				for i, gi := range g {
					p[i] -= lr * gi
				}
				return
			}
			m := buf.buf.data[off : off+len(p)]
			for i, gi := range g {
				mi := mom*m[i] + gi
				m[i] = mi
				p[i] -= lr * mi
			}
		})
	})
	return nil
}

// mse returns Σ (y − t)², accumulated in float64, and writes
// dy = scale·(y − t) unless dy is nil.
func mse(dy, y, t *Matrix, scale float32) (float64, error) {
	yd, td := y.buf.data, t.buf.data
	var dyd []float32
	if dy != nil {
		dyd = dy.buf.data
	}
	p := max(1, min(runtime.GOMAXPROCS(0), len(yd)/(1<<15)))
	parts := make([]float64, p)
	parallel(p, 4*len(yd), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			lo, hi := g*len(yd)/p, (g+1)*len(yd)/p
			var sum float64
			for i := lo; i < hi; i++ {
				d := yd[i] - td[i]
				sum += float64(d) * float64(d)
				if dyd != nil {
					dyd[i] = scale * d
				}
			}
			parts[g] = sum
		}
	})
	var sum float64
	for _, v := range parts {
		sum += v
	}
	return sum, nil
}
