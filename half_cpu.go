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
//   - y = x·Wᵀ at n ≤ halfGemvRows: matrix-vector products that read W's
//     16-bit rows directly and widen them in registers (gemv4BF16,
//     gemv4F16), four rows of W per pass, row ranges split among goroutines.
//   - y = x·Wᵀ above: panels of W's rows widened into a float32 block that
//     stays in the L2 cache, each panel's product by the float32 Sgemm,
//     panels split among goroutines; from n = halfBlocksRows with AVX2,
//     blocks of W widened and transposed for rankRow's kernel (halfBlocks).
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
// fused matrix-vector path; above it, W is widened panel by panel.
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
// its patterns, and y (n×out).
func halfProduct(y, x []float32, w []uint16, dt DType, n, out, in int) {
	switch {
	case n <= halfGemvRows:
		halfGemv(y, x, w, dt, n, out, in)
	case n >= halfBlocksRows && useFMA && !blasThreaded:
		halfBlocks(y, x, w, dt, n, out, in)
	default:
		halfPanels(y, x, w, dt, n, out, in)
	}
}

// halfBlocksRows is the smallest batch whose product with a half W takes
// halfBlocks: below it the panels cost less than widening W transposed.
const halfBlocksRows = 32

// halfBlockJ is the columns of W in one block of halfBlocks: rows of W are
// read 512 bytes at a time, and the widened block (128 KiB) stays in L2.
const halfBlockJ = 256

// halfBlocks is halfProduct for n ≥ halfBlocksRows on rankRow's AVX2
// kernel, productNN's scheme applied to Wᵀ: y[i, o0:o1] accumulates
// Σⱼ x[i,j]·Wᵀ[j, o0:o1] over blocks of halfBlockJ columns j of W, each
// block of W (nnCols rows o by halfBlockJ columns j) widened and transposed
// into a float32 block that every row i of x then uses. The blocks of
// nnCols columns of y are split among goroutines; each element's sum runs
// over the blocks of j in order, whatever the split.
func halfBlocks(y, x []float32, w []uint16, dt DType, n, out, in int) {
	blocks := (out + nnCols - 1) / nnCols
	parallel(blocks, n*out*in, func(lo, hi int) {
		buf := getPanel(min(halfBlockJ, in) * min(nnCols, out))
		defer panelPool.Put(buf)
		wide := *buf
		var row [halfBlockJ]float32
		for b := lo; b < hi; b++ {
			o0, o1 := b*nnCols, min((b+1)*nnCols, out)
			width := o1 - o0
			for i := range n {
				clear(y[i*out+o0 : i*out+o1])
			}
			for j0 := 0; j0 < in; j0 += halfBlockJ {
				j1 := min(j0+halfBlockJ, in)
				// wide[j−j0, o−o0] = W[o, j]
				for o := o0; o < o1; o++ {
					t := row[:j1-j0]
					widenHalf(dt, t, w[o*in+j0:o*in+j1])
					for jj, v := range t {
						wide[jj*width+o-o0] = v
					}
				}
				for i := range n {
					rankRow(y[i*out+o0:i*out+o1], wide, x[i*in+j0:i*in+j1], width)
				}
			}
		}
	})
}

// halfGemv is halfProduct for n ≤ halfGemvRows: groups of four rows of W
// split among goroutines, each group read from memory once and its rows'
// dot products with every row of x formed in registers.
func halfGemv(y, x []float32, w []uint16, dt DType, n, out, in int) {
	kern := gemv4BF16
	ok := useBF16FMA
	if dt == F16 {
		kern, ok = gemv4F16, useF16FMA
	}
	m := in &^ 15 // the kernel's columns; the rest in Go
	groups := (out + 3) / 4
	parallel(groups, n*out*in, func(lo, hi int) {
		for g := lo; g < hi; g++ {
			o0, o1 := 4*g, min(out, 4*g+4)
			if !ok || o1-o0 < 4 || m == 0 {
				halfGemvGo(y, x, w, dt, n, out, in, o0, o1)
				continue
			}
			var s [4]float32
			for i := range n {
				xi := x[i*in : (i+1)*in]
				kern(&s[0], &xi[0], &w[o0*in], m, in)
				for q, v := range s {
					row := w[(o0+q)*in : (o0+q+1)*in]
					for j := m; j < in; j++ {
						v += xi[j] * widen1(dt, row[j])
					}
					y[i*out+o0+q] = v
				}
			}
		}
	})
}

// halfGemvGo computes rows o0…o1−1 of W's products with the n ≤
// halfGemvRows rows of x, the portable way: each row of W widened 256
// elements at a time into a block on the stack, then dot products.
func halfGemvGo(y, x []float32, w []uint16, dt DType, n, out, in, o0, o1 int) {
	const chunk = 256
	var buf [chunk]float32
	impl := blas32.Implementation()
	for o := o0; o < o1; o++ {
		var sums [halfGemvRows]float32
		row := w[o*in : (o+1)*in]
		for j0 := 0; j0 < in; j0 += chunk {
			t := buf[:min(chunk, in-j0)]
			widenHalf(dt, t, row[j0:])
			for i := range n {
				sums[i] += impl.Sdot(len(t), t, 1, x[i*in+j0:], 1)
			}
		}
		for i := range n {
			y[i*out+o] = sums[i]
		}
	}
}

// panelPool recycles the float32 panels of halfPanels, halfBlocks and
// halfGradX.
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
