package cpu

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Backward computes, for x (n×in), dy (n×out), W (out×in) of any type, A
// (r×in) and B (out×r), with T = s·x·Aᵀ and U = s·dy·B (n×r, scratch),
// dB = dyᵀ·T, dA = Uᵀ·x and, unless dx is nil, dx = dy·W + U·A (dx = dy·W
// when merged). T, U, dA and dB are four packed products (gradsPacked)
// where gemmSmallWins, small Sgemms otherwise. dx, the
// only full-size product, is [dy | U]·[W ; A] by productNN on rankRow's
// AVX2 kernel when the processor has it: the rank-r term is r more rows of
// the inner dimension; a half W is widened there block by block (in
// registers at n ≤ halfFuseRows); by the packed product (packedGradX) at
// the batches gemmGradXWins serves, the rank-r term then accumulated in place
// by rankUpdateF32 (the same micro-kernel). Elsewhere it is gonum's Sgemm (Sgemv rows
// at small n; panels of a half or NF4 W widened by panelGradX), then the rank-r
// term accumulated in place by rankRow.
func Backward(dx, dA, dB, dy, x []float32, w Mat, a, b []float32, n, r int, s float32, merged bool) {
	in, out := w.Cols, w.Rows
	sc := getScratch()
	defer scratchPool.Put(sc)
	sc.t, sc.u = grow(sc.t, n*r), grow(sc.u, n*r)
	t, u := sc.t, sc.u
	impl := blas32.Implementation()

	if gemmSmallWins(n, in, out) {
		// T and U transposed (r×n), the form in which the packed product
		// gives them and dA and dB take them; U is then copied out for dx.
		gradsPacked(t, u, dA, dB, dy, x, a, b, n, in, out, r, s)
	} else {
		Shrink(t, x, a, n, in, r, s)
		parallelBLAS(n, n*r*out, func(lo, hi int) {
			impl.Sgemm(blas.NoTrans, blas.NoTrans, hi-lo, r, out, s,
				dy[lo*out:hi*out], out, b, r, 0, u[lo*r:hi*r], r)
		})
		impl.Sgemm(blas.Trans, blas.NoTrans, out, r, n, 1, dy, out, t, r, 0, dB, r)
		impl.Sgemm(blas.Trans, blas.NoTrans, r, in, n, 1, u, r, x, in, 0, dA, in)
	}
	if dx == nil {
		return
	}

	// The rank term, where the batch products take it, by their
	// goroutines (loraTerm).
	var lt *loraTerm
	if !merged {
		lt = newGradXTerm(u, a, n, in, r)
	}
	switch {
	case w.Type == BF16 && bf16GradXTerm(dx, dy, w, n, lt):
		// dy of bfloat16 values on the bf16 instructions
		// (gemm_bf16_gradx.go).
		return
	case gemmGradXWins(w.Type, n, in, out):
		packedGradXTerm(dx, dy, w, n, lt)
		return
	case useFMA && !blasThreaded:
		segs := []nnSegment{{coef: dy, ldc: out, a: w.F32, w: &w, rows: out}}
		if !merged {
			segs = append(segs, nnSegment{coef: u, ldc: r, a: a, rows: r})
		}
		productNN(dx, n, in, segs)
		return
	case w.Type != F32:
		panelGradX(dx, dy, w, n)
	case n <= gemvRows:
		// dx[i,:] = Wᵀ·dy[i,:], the columns of W split over goroutines so
		// that W streams through every core once.
		parallelBLAS(in, n*in*out, func(lo, hi int) {
			for i := range n {
				impl.Sgemv(blas.Trans, out, hi-lo, 1, w.F32[lo:], in, dy[i*out:(i+1)*out], 1, 0, dx[i*in+lo:i*in+hi], 1)
			}
		})
	default:
		impl.Sgemm(blas.NoTrans, blas.NoTrans, n, in, out, 1, dy, out, w.F32, in, 0, dx, in)
	}
	if merged {
		return
	}
	// dx[i,:] += Σₖ U[i,k]·A[k,:]: on the packed product's micro-kernel
	// where rankGemmWins, else columns split among goroutines so that each
	// keeps its slab of A in cache.
	if rankGemmWins(n, in) {
		rankUpdateF32(dx, n, in, r,
			func(i int, c []float32) { copy(c, u[i*r:(i+1)*r]) },
			func(slab []float32, j0, j1 int) {
				for k := range r {
					copy(slab[k*(j1-j0):(k+1)*(j1-j0)], a[k*in+j0:k*in+j1])
				}
			})
		return
	}
	Parallel(in, n*in*r, func(lo, hi int) {
		for i := range n {
			rankRow(dx[i*in+lo:i*in+hi], a[lo:], u[i*r:(i+1)*r], in)
		}
	})
}

// nnSegment is one part of the inner dimension of productNN: the n×rows
// coefficients coef (leading dimension ldc) and the rows×cols matrix a
// (leading dimension cols): float32 in a, or, when w is not nil and not
// F32, w's elements, widened (exactly) block by block.
type nnSegment struct {
	coef []float32
	ldc  int
	a    []float32
	w    *Mat
	rows int
}

// widened reports whether the segment's a is widened from w.
func (sg *nnSegment) widened() bool { return sg.w != nil && sg.w.Type != F32 }

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

// halfFuseRows is the largest n at which productNN reads a half segment
// through rankRowFromHalf rather than widening blocks of it: each block of
// a is then used once, so widening it into memory is pure cost.
const halfFuseRows = 2

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
		if sg.widened() {
			// Spans of at most halfNNSpan, at least one per goroutine.
			procs := runtime.GOMAXPROCS(0)
			width, krows = halfNNCols, halfNNRows
			span = min(halfNNSpan, max(width, ((cols+procs-1)/procs+width-1)/width*width))
		}
	}
	spans := (cols + span - 1) / span
	Parallel(spans, n*cols*inner, func(lo, hi int) {
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
						if sg.widened() && sg.w.Type.half() && n <= halfFuseRows && useHalfKernel(sg.w.Type) {
							// Few rows: a widened in registers.
							for i := range n {
								rankRowFromHalf(sg.w.Type, dst[i*cols+j0:i*cols+j1], sg.w.Bits[k0*cols+j0:], sg.coef[i*sg.ldc+k0:i*sg.ldc+k1], cols)
							}
							continue
						}
						var a []float32
						lda := cols
						if sg.widened() {
							// Widen the block k0…k1−1 × j0…j1−1 of a.
							lda = j1 - j0
							if wide == nil {
								wide = make([]float32, krows*width)
							}
							for k := k0; k < k1; k++ {
								sg.w.widen(wide[(k-k0)*lda:(k-k0+1)*lda], k*cols+j0, j1-j0)
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

// gemmSmallWins reports whether the products of a rank-r adapter with a
// batch of n rows (T = s·x·Aᵀ, U = s·dy·B, dA = Uᵀ·x, dB = dyᵀ·T) run as
// packed products (gradsPacked, Shrink): on processors with AVX-512, for
// batches of gemmMinRows rows or more, as the base product, never with a
// threaded BLAS. At n = 16 they take 0.85× the time of the Sgemms
// (Backward without dx, 4096×4096, r = 16).
func gemmSmallWins(n, in, out int) bool {
	return useGemm512 && !blasThreaded && n >= gemmMinRows && in >= gemmNR && out >= gemmNR
}

// transposeBlocked writes the transpose of src (rows×cols) into dst
// (cols×rows) in tiles of 8×8: element by element down a column, the rows
// of dst (or of src), often 4 KiB apart, would all fall in one set of the
// L1 cache and every access miss it; a tile touches 8 lines of each, fewer
// than the set's ways. Sixteen rows (a rank-16 adapter's dBᵀ) go by
// packT16's 16×16 transposes in registers where the processor has AVX-512,
// the columns past its whole 16s by tiles. Above 64Ki elements the rows
// of src are split among goroutines, or its columns where it has fewer
// than 128 rows. Measured (16×4096, two cores): 59 µs by tiles on one
// goroutine, 9.7 µs by packT16 on two (16×1024: 15 against 1.7 µs).
func transposeBlocked(dst, src []float32, rows, cols int) {
	if rows < 128 {
		Parallel((cols+63)/64, rows*cols, func(lo, hi int) {
			transposeCols(dst, src, 64*lo, min(cols, 64*hi), rows, cols)
		})
		return
	}
	Parallel((rows+63)/64, rows*cols, func(lo, hi int) {
		transposeRows(dst, src, 64*lo, min(rows, 64*hi), rows, cols)
	})
}

// transposeCols is transposeBlocked for the columns [k0, k1) of src.
func transposeCols(dst, src []float32, k0, k1, rows, cols int) {
	if rows == 16 && useGemm512 && k1-k0 >= 16 {
		m := (k1 - k0) &^ 15
		_ = src[15*cols+k0+m-1] // bounds: the last element read
		_ = dst[(k0+m)*16-1]    // and written
		packT16(&dst[k0*16], &src[k0], m/16, cols)
		k0 += m
	}
	for ; k0 < k1; k0 += 8 {
		e := min(k1, k0+8)
		for o0 := 0; o0 < rows; o0 += 8 {
			transposeTile(dst, src, o0, min(rows, o0+8), k0, e, rows, cols)
		}
	}
}

// transposeRows is transposeBlocked for the rows [o0, o1) of src.
func transposeRows(dst, src []float32, o0, o1, rows, cols int) {
	for ; o0 < o1; o0 += 8 {
		e := min(o1, o0+8)
		for k0 := 0; k0 < cols; k0 += 8 {
			transposeTile(dst, src, o0, e, k0, min(cols, k0+8), rows, cols)
		}
	}
}

// transposeTile writes element (o, k) of src into dst for o0 ≤ o < o1 and
// k0 ≤ k < k1: a tile of at most 8×8.
func transposeTile(dst, src []float32, o0, o1, k0, k1, rows, cols int) {
	for k := k0; k < k1; k++ {
		d := dst[k*rows+o0 : k*rows+o1]
		for o := range d {
			d[o] = src[(o0+o)*cols+k]
		}
	}
}

// gradsPacked computes T = s·x·Aᵀ and U = s·dy·B into t and u (n×r) and
// dA = Uᵀ·x, dB = dyᵀ·T, each by the packed product with the r-row
// operand in the place of x: Tᵀ = A·xᵀ and Uᵀ = Bᵀ·dyᵀ with the rows of x
// and dy packed as W's (Bᵀ packed straight from B's columns), dA = Uᵀ·x
// and dBᵀ = Tᵀ·dy with their columns packed (as for dx = dy·W).
func gradsPacked(t, u, dA, dB, dy, x, a, b []float32, n, in, out, r int, s float32) {
	xm := Mat{Rows: n, Cols: in, Type: F32, F32: x}
	dym := Mat{Rows: n, Cols: out, Type: F32, F32: dy}
	mr := gemmPanelRows(r)
	buf := getGemmBuf(2*r*n + gemmRowsPad(r, mr)*out)
	defer gemmPool.Put(buf)
	tt, ut, bp := (*buf)[:r*n], (*buf)[r*n:2*r*n], (*buf)[2*r*n:]
	// Tᵀ and Uᵀ at once: each is one block of the packed product for up
	// to 32 rows of x, which Parallel does not split.
	var tDone sync.WaitGroup
	tDone.Go(func() { packedRun(tt, a, r, in, n, &xm, false, gemmNCSmall) })
	packXT(bp, b, r, out, r, mr)
	packedRunX(ut, bp, r, out, n, &dym, false, gemmNCSmall, gemmKC, mr, nil)
	tDone.Wait()
	for i := range tt {
		tt[i] *= s
		ut[i] *= s
	}
	packedRun(dA, ut, r, n, in, &xm, true, gemmNC)
	dbt := bp[:r*out] // Bᵀ's packing is spent
	packedRun(dbt, tt, r, n, out, &dym, true, gemmNC)
	transposeBlocked(dB, dbt, r, out)
	transposeBlocked(t, tt, r, n)
	transposeBlocked(u, ut, r, n)
}
