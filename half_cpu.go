//go:build !cuda && !cudaemu

package lora

import (
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/golora/lora/internal/half"
)

// A half-precision W on the CPU backend. Every element is widened exactly
// to float32 where it is used, and never the whole of W at once:
//
//   - y = x·Wᵀ: matrix-vector products that read W's 16-bit rows directly
//     and widen them in registers (gemv4BF16, gemv4F16), four rows of W per
//     pass against every row of x (in chunks that stay in L2), in blocks of
//     columns that stay in L1, groups of rows of W split among goroutines:
//     gemvFused, the driver a float32 W shares (gemv4F32). A BF16 element
//     widens by a shift or a mask of the 32-bit lane holding it and its
//     neighbour, against x in pair order (pairOrder). Without the kernel
//     (or with a threaded BLAS) above n = halfGemvRows: panels of W's rows
//     widened into a float32 block that stays in the L2 cache, each
//     panel's product by the float32 Sgemm, panels split among goroutines.
//   - dx = dy·W: productNN widens each block of W it keeps in L1, or at
//     n ≤ halfFuseRows widens W in registers (rankRowFromBF16,
//     rankRowFromF16); without AVX2 + FMA, or with a threaded BLAS, panels
//     of W are widened for the float32 Sgemm (halfGradX).
//   - Merge: each row segment of W is widened, updated with the float32
//     arithmetic of rankRow and rounded back once (rankRowBF16, rankRowF16);
//     rankFinite checks the same float32 values against W's overflow
//     threshold; absMax takes the largest pattern with the sign cleared.
//
// Without the assembly (other processors, -tags purego) the same paths run
// through internal/half's slice conversions and rankRow's portable loop.

// halfGemvRows is the largest batch whose product with a half W takes the
// matrix-vector path in every build; above it, without the assembly kernel,
// W is widened panel by panel.
const halfGemvRows = gemvRows

// halfPanelBytes bounds the float32 panel of W that one goroutine widens
// for the products above halfGemvRows: small enough to stay in L2 while
// the product reads it.
const halfPanelBytes = 256 << 10

// widenHalf widens the patterns of src (dtype dt) into dst, exactly.
func widenHalf(dt DType, dst []float32, src []uint16) {
	if dt == F16 {
		half.F16ToF32(dst, src)
		return
	}
	half.BF16ToF32(dst, src)
}

// narrowHalf rounds src into the patterns of dst (dtype dt), to nearest even.
func narrowHalf(dt DType, dst []uint16, src []float32) {
	if dt == F16 {
		half.F32ToF16(dst, src)
		return
	}
	half.F32ToBF16(dst, src)
}

// widen1 returns the float32 value of one pattern of dtype dt.
func widen1(dt DType, h uint16) float32 {
	if dt == F16 {
		return half.F16ToFloat32(h)
	}
	return half.BF16ToFloat32(h)
}

// halfProduct computes y = x·Wᵀ for x (n×in), a half W (out×in) given by
// its patterns, and y (n×out): by the fused matrix-vector kernel at every n
// where the processor has it, as at n ≤ halfGemvRows everywhere; by widened
// panels of W otherwise. With a threaded BLAS installed the fused kernel
// still wins: panels would widen W at every call and hand the BLAS products
// too small to pay for its threads.
func halfProduct(y, x []float32, w []uint16, dt DType, n, out, in int) {
	if n <= halfGemvRows || useHalfKernel(dt) {
		halfGemv(y, x, w, dt, n, out, in)
		return
	}
	halfPanels(y, x, w, dt, n, out, in)
}

// halfGemvX bounds the elements of x that halfGemv runs against W in one
// pass (1 MiB of float32, in L2): above it the rows of x go in chunks, W
// read once per chunk.
const halfGemvX = 1 << 18

// halfGemvChunk returns the rows of x (of in columns) in one chunk.
func halfGemvChunk(in int) int { return max(1, halfGemvX/max(1, in)) }

// halfGemv computes y = x·Wᵀ for a half W by gemvFused on gemv4BF16 or
// gemv4F16 where the processor has them, by halfGemvGo otherwise.
func halfGemv(y, x []float32, w []uint16, dt DType, n, out, in int) {
	kern, kx := gemv4F16, x
	if dt == BF16 {
		kern = gemv4BF16
		if useBF16FMA && in >= 16 && n*in > 0 {
			// x in pair order for gemv4BF16.
			p := getPanel(n * in)
			defer panelPool.Put(p)
			kx = *p
			pairOrder(kx, x, n, in)
		}
	}
	gemvFused(y, x, kx, w, n, out, in, gemvBlockCols(2), kern, useHalfKernel(dt),
		func(h uint16) float32 { return widen1(dt, h) },
		func(i0, i1, o0, o1 int) { halfGemvGo(y, x, w, dt, i0, i1, out, in, o0, o1) })
}

// gemvBlockBytes bounds the block of a group of four rows of W that
// gemvFused keeps in the L1 cache while every row of a chunk of x takes its
// dot products with it: 16 KiB, 1024 columns of a float32 W, 2048 of a half
// one.
const gemvBlockBytes = 16 << 10

// gemvBlockCols returns the columns of W in one block of gemvFused for
// elements of size bytes: a positive multiple of 16.
func gemvBlockCols(size int) int { return max(16, gemvBlockBytes/(4*size)&^15) }

// gemvFused computes y = x·Wᵀ for x (n×in), W (out×in) of elements E and y
// (n×out), by groups of four rows of W split among goroutines: each group
// is read from memory once per chunk of rows of x (halfGemvChunk), in
// blocks of kb columns (gemvBlockCols: kept in L1 while every row of the
// chunk uses it), and the four rows' partial dot products with each row of
// the chunk formed in registers by kern: y[q] = Σⱼ x[j]·w[q·ldw+j] over the
// block's columns, a multiple of 16, x read by the kernel from kx (x, or
// x with its blocks of 16 columns reordered as the kernel reads them, as
// pairOrder does). The blocks' sums are added in order;
// the last in mod 16 columns are added in Go, value(e) giving the float32
// value of an element. Without the kernel (ok false), for the last out mod
// 4 rows of W and when in < 16, slow(i0, i1, o0, o1) computes rows o0…o1−1
// of W's products with rows i0…i1−1 of x. The sum of each element of y runs
// in the same order whatever the split and the chunking.
func gemvFused[E float32 | uint16](y, x, kx []float32, w []E, n, out, in, kb int,
	kern func(y, x *float32, w *E, n, ldw int), ok bool,
	value func(E) float32, slow func(i0, i1, o0, o1 int)) {
	if n == 0 || out == 0 || in == 0 {
		return
	}
	// Bounds: the kernels read within these.
	_, _, _, _ = x[n*in-1], kx[n*in-1], w[out*in-1], y[n*out-1]
	m := in &^ 15 // the kernel's columns; the rest in Go
	groups := (out + 3) / 4
	nb := halfGemvChunk(in)
	parallel(groups, n*out*in, func(lo, hi int) {
		for i0 := 0; i0 < n; i0 += nb {
			i1 := min(n, i0+nb)
			for g := lo; g < hi; g++ {
				o0, o1 := 4*g, min(out, 4*g+4)
				if !ok || o1-o0 < 4 || m == 0 {
					slow(i0, i1, o0, o1)
					continue
				}
				var s [4]float32
				for j0 := 0; j0 < m; j0 += kb {
					j1 := min(m, j0+kb)
					for i := i0; i < i1; i++ {
						kern(&s[0], &kx[i*in+j0], &w[o0*in+j0], j1-j0, in)
						yi := y[i*out+o0 : i*out+o0+4]
						if j0 == 0 {
							copy(yi, s[:])
							continue
						}
						for q, v := range s {
							yi[q] += v
						}
					}
				}
				if m == in {
					continue
				}
				for i := i0; i < i1; i++ {
					xi := x[i*in : (i+1)*in]
					for q := range 4 {
						row := w[(o0+q)*in : (o0+q+1)*in]
						v := y[i*out+o0+q]
						for j := m; j < in; j++ {
							v += xi[j] * value(row[j])
						}
						y[i*out+o0+q] = v
					}
				}
			}
		}
	})
}

// pairOrder writes into dst the rows of x (n×in) with each block of 16
// columns, up to the last whole one, in pair order: its eight even columns,
// then its eight odd ones (the order of gemv4BF16). The columns after the
// last whole block are not written.
func pairOrder(dst, x []float32, n, in int) {
	m := in &^ 15
	for i := range n {
		d, s := dst[i*in:i*in+m], x[i*in:i*in+m]
		for j := 0; j+16 <= len(s); j += 16 {
			b, e := s[j:j+16], d[j:j+16]
			for k := range 8 {
				e[k], e[8+k] = b[2*k], b[2*k+1]
			}
		}
	}
}

// halfGemvGo computes rows o0…o1−1 of W's products with rows i0…i1−1 of
// x, the portable way: each row of W widened 256 elements at a time into a
// block on the stack, then dot products with up to halfGemvRows rows of x
// at a time.
func halfGemvGo(y, x []float32, w []uint16, dt DType, i0, i1, out, in, o0, o1 int) {
	const chunk = 256
	var buf [chunk]float32
	impl := blas32.Implementation()
	for o := o0; o < o1; o++ {
		row := w[o*in : (o+1)*in]
		for a := i0; a < i1; a += halfGemvRows {
			b := min(i1, a+halfGemvRows)
			var sums [halfGemvRows]float32
			for j0 := 0; j0 < in; j0 += chunk {
				t := buf[:min(chunk, in-j0)]
				widenHalf(dt, t, row[j0:])
				for i := a; i < b; i++ {
					sums[i-a] += impl.Sdot(len(t), t, 1, x[i*in+j0:], 1)
				}
			}
			for i := a; i < b; i++ {
				y[i*out+o] = sums[i-a]
			}
		}
	}
}

// panelPool recycles the float32 panels of halfPanels and halfGradX.
var panelPool sync.Pool

func getPanel(n int) *[]float32 {
	p, _ := panelPool.Get().(*[]float32)
	if p == nil {
		p = new([]float32)
	}
	*p = grow(*p, n)
	return p
}

// halfPanelRows returns the rows of W, each of cols elements, in one
// widened panel: as many as halfPanelBytes holds, at least four.
func halfPanelRows(rows, cols int) int {
	return max(1, min(rows, max(4, halfPanelBytes/(4*cols))))
}

// halfPanels is halfProduct for n > halfGemvRows: the rows of W in panels
// of halfPanelRows, each widened into float32 and multiplied by the float32
// Sgemm into its columns of y. Panels are split among goroutines (taken
// whole, one after another, by a threaded BLAS).
func halfPanels(y, x []float32, w []uint16, dt DType, n, out, in int) {
	pr := halfPanelRows(out, in)
	panels := (out + pr - 1) / pr
	impl := blas32.Implementation()
	parallelBLAS(panels, n*out*in, func(lo, hi int) {
		buf := getPanel(pr * in)
		defer panelPool.Put(buf)
		for p := lo; p < hi; p++ {
			o0, o1 := p*pr, min(out, (p+1)*pr)
			pb := (*buf)[:(o1-o0)*in]
			widenHalf(dt, pb, w[o0*in:o1*in])
			impl.Sgemm(blas.NoTrans, blas.Trans, n, o1-o0, in, 1, x, in, pb, in, 0, y[o0:], out)
		}
	})
}

// halfGradX computes dx = dy·W for dy (n×out) and a half W (out×in) where
// productNN does not run (no AVX2 + FMA, or a threaded BLAS): the rows of W
// in panels widened into float32, each panel's share of the inner dimension
// added by the float32 Sgemm.
func halfGradX(dx, dy []float32, w []uint16, dt DType, n, out, in int) {
	pr := halfPanelRows(out, in)
	buf := getPanel(pr * in)
	defer panelPool.Put(buf)
	impl := blas32.Implementation()
	for k0 := 0; k0 < out; k0 += pr {
		k1 := min(out, k0+pr)
		pb := (*buf)[:(k1-k0)*in]
		widenHalfParallel(dt, pb, w[k0*in:k1*in])
		var beta float32 = 1
		if k0 == 0 {
			beta = 0
		}
		impl.Sgemm(blas.NoTrans, blas.NoTrans, n, in, k1-k0, 1, dy[k0:], out, pb, in, beta, dx, in)
	}
}

// widenHalfParallel is widenHalf split among goroutines.
func widenHalfParallel(dt DType, dst []float32, src []uint16) {
	const part = 1 << 14
	parts := (len(src) + part - 1) / part
	parallel(parts, len(src), func(lo, hi int) {
		widenHalf(dt, dst[lo*part:min(len(src), hi*part)], src[lo*part:min(len(src), hi*part)])
	})
}

// absMaxHalf is absMax for the patterns of an F16 or BF16 matrix: the
// patterns with the sign cleared are ordered as the magnitudes they encode
// (+Inf above every finite one, NaN above +Inf), so the largest, widened,
// is the largest magnitude, or NaN or +Inf when the matrix holds one.
func absMaxHalf(bits []uint16, dt DType) float32 {
	p := max(1, min(runtime.GOMAXPROCS(0), len(bits)/(1<<16)))
	parts := make([]uint16, p)
	parallel(p, len(bits), func(glo, ghi int) {
		for g := glo; g < ghi; g++ {
			parts[g] = maxMag(bits[g*len(bits)/p : (g+1)*len(bits)/p])
		}
	})
	var mx uint16
	for _, v := range parts {
		mx = max(mx, v)
	}
	return widen1(dt, mx)
}

// maxMag returns the largest of s[j] & 0x7fff: with AVX2 where the
// processor has it, in Go otherwise and for the last s mod 16.
func maxMag(s []uint16) uint16 {
	var mx uint16
	m := 0
	if halfAVX2 {
		m = len(s) &^ 15
		if m > 0 {
			mx = maxMag16(&s[0], m)
		}
	}
	for _, v := range s[m:] {
		mx = max(mx, v&0x7fff)
	}
	return mx
}

// rankRowHalf is rankRow for a half dst: dst[j] ← round(float32(dst[j]) +
// Σₖ coef[k]·a[k·lda+j]), the float32 value computed exactly as rankRow
// computes it on a float32 copy of dst, rounded once to nearest even. The
// columns rankRow gives its AVX2 kernel (a multiple of 8 from the start)
// go to the fused kernel; the rest, or all of them without it, through
// blocks of 256 widened on the stack, each a multiple of 8 but the last,
// so that every column takes the path it takes in rankRow.
func rankRowHalf(dt DType, dst []uint16, a, coef []float32, lda int) {
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := 0
	switch {
	case dt == BF16 && useBF16FMA:
		m = n &^ 7
		if m > 0 {
			rankRowBF16(&dst[0], &a[0], &coef[0], m, r, lda)
		}
	case dt == F16 && useF16FMA:
		m = n &^ 7
		if m > 0 {
			rankRowF16(&dst[0], &a[0], &coef[0], m, r, lda)
		}
	}
	const chunk = 256
	var buf [chunk]float32
	for j0 := m; j0 < n; j0 += chunk {
		j1 := min(n, j0+chunk)
		t := buf[:j1-j0]
		widenHalf(dt, t, dst[j0:j1])
		rankRow(t, a[j0:], coef, lda)
		narrowHalf(dt, dst[j0:j1], t)
	}
}

// fitsIn reports whether every element of s rounds to a finite value of
// the dtype whose overflow threshold is lim (overflowAt): |v| < lim, which
// NaN fails.
func fitsIn(s []float32, lim float32) bool {
	for _, v := range s {
		if !(v < lim && v > -lim) {
			return false
		}
	}
	return true
}

// useHalfKernel reports whether the processor has the assembly kernels for
// a W of dtype dt.
func useHalfKernel(dt DType) bool {
	if dt == F16 {
		return useF16FMA
	}
	return useBF16FMA
}

// rankRowFromHalf computes dst[j] += Σₖ coef[k]·a[k·lda+j] for j <
// len(dst), with a of dtype dt widened in registers, each sum accumulated
// from zero in k order and then added, as rankRow does. It needs the
// assembly kernels (useHalfKernel).
func rankRowFromHalf(dt DType, dst []float32, a []uint16, coef []float32, lda int) {
	kern := rankRowFromBF16
	if dt == F16 {
		kern = rankRowFromF16
	}
	n, r := len(dst), len(coef)
	if n == 0 || r == 0 {
		return
	}
	_ = a[(r-1)*lda+n-1] // bounds: the last element read
	m := n &^ 7
	if m > 0 {
		kern(&dst[0], &a[0], &coef[0], m, r, lda)
	}
	for j := m; j < n; j++ {
		var d float32
		for k, ck := range coef {
			d += ck * widen1(dt, a[k*lda+j])
		}
		dst[j] += d
	}
}

// halfFuseRows is the largest n at which productNN reads a half segment
// through rankRowFromHalf rather than widening blocks of it: each block of
// a is then used once, so widening it into memory is pure cost.
const halfFuseRows = 2
