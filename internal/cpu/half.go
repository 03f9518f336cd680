package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// A half-precision W. Every element is widened exactly to float32 where it
// is used, and never the whole of W at once:
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
//     of W are widened for the float32 Sgemm (panelGradX).
//   - Merge: each row segment of W is widened, updated with the float32
//     arithmetic of rankRow and rounded back once (rankRowBF16, rankRowF16);
//     RankFinite checks the same float32 values against W's overflow
//     threshold; AbsMax takes the largest pattern with the sign cleared.
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

// useHalfKernel reports whether the processor has the assembly kernels for
// a W of dtype dt.
func useHalfKernel(dt Type) bool {
	if dt == F16 {
		return useF16FMA
	}
	return useBF16FMA
}

// halfProduct computes y = x·Wᵀ for x (n×in), a half W (out×in) given by
// its patterns, and y (n×out): by the fused matrix-vector kernel at every n
// where the processor has it, as at n ≤ halfGemvRows everywhere; by widened
// panels of W otherwise. With a threaded BLAS installed the fused kernel
// still wins: panels would widen W at every call and hand the BLAS products
// too small to pay for its threads.
func halfProduct(y, x []float32, w Mat, n int) {
	if n <= halfGemvRows || useHalfKernel(w.Type) {
		halfGemv(y, x, w.Bits, w.Type, n, w.Rows, w.Cols)
		return
	}
	panelProduct(y, x, w, n)
}

// halfGemv computes y = x·Wᵀ for a half W by gemvFused on gemv4BF16 or
// gemv4F16 where the processor has them, by matGemvGo otherwise.
func halfGemv(y, x []float32, w []uint16, dt Type, n, out, in int) {
	op, release := halfGemvOp(y, x, w, dt, n, out, in)
	defer release()
	gemvFused(op)
}

// halfGemvOp returns halfGemv's product as a gemvOp, and the function that
// returns its scratch (x reordered) once the product is done.
func halfGemvOp(y, x []float32, w []uint16, dt Type, n, out, in int) (*gemvOp, func()) {
	m := &Mat{Rows: out, Cols: in, Type: dt, Bits: w}
	op := &gemvOp{y: y, x: x, kx: x, n: n, out: out, in: in, ldy: out, kb: gemvBlockCols(2),
		value: func(o, j int) float32 { return widen1(dt, w[o*in+j]) },
		slow:  func(i0, i1, o0, o1 int) { matGemvGo(y, x, m, i0, i1, out, o0, o1) }}
	release := func() {}
	if useHalfKernel(dt) {
		kern := gemv4F16
		if dt == BF16 && in >= 16 && n*in > 0 {
			// x in pair order for gemv4BF16.
			kern = gemv4BF16
			p := getPanel(n * in)
			release = func() { panelPool.Put(p) }
			op.kx = *p
			pairOrder(op.kx, x, n, in)
		}
		op.kern = func(s, x *float32, o, j, cols int) {
			kern(s, x, &w[o*in+j : (o+3)*in+j+cols][0], cols, in)
		}
	}
	return op, release
}

// panelPool recycles the float32 panels of panelProduct and panelGradX,
// and the reordered x of halfGemv: f32Slabs.
var panelPool = &f32Slabs

func getPanel(n int) *[]float32 { return f32Slabs.get(n) }

// halfPanelRows returns the rows of W, each of cols elements, in one
// widened panel: as many as halfPanelBytes holds, at least four.
func halfPanelRows(rows, cols int) int {
	return max(1, min(rows, max(4, halfPanelBytes/(4*cols))))
}

// panelProduct computes y = x·Wᵀ for a W of any type by panels: the rows
// of W in panels of halfPanelRows (at most halfPanelBytes of float32, at
// least four rows), each widened into float32 (Mat.widen: exactly) and
// multiplied into its columns of y, by the fused float32 kernel where
// panelGemvWins, by the float32 Sgemm otherwise. Panels are split among
// goroutines (taken whole, one after another, by a threaded BLAS). It
// serves a half W above halfGemvRows without the fused kernel, and an NF4
// W where nf4Product does not take the fused NF4 kernel.
func panelProduct(y, x []float32, w Mat, n int) {
	widenedPanels(y, x, w, n, panelGemvWins(n, halfPanelRows(w.Rows, w.Cols), w.Cols))
}

// panelGemvWins reports whether the product of x (n×in) with a widened
// panel of W (rows×in, in L2) runs faster by the fused float32 kernel than
// by Sgemm. Measured on an NF4 W (BenchmarkNF4Paths, 2 cores): on
// 4096×4096, panels of 16 rows, the kernel wins at every n from 1 to 64.
func panelGemvWins(n, rows, in int) bool {
	return useFMA && !blasThreaded && in >= 16 && rows >= 4
}

// widenedPanels is panelProduct, each panel's product by the fused kernel
// (f32GemvOp's groups, on the goroutine of the panel) when gemv, by Sgemm
// otherwise.
func widenedPanels(y, x []float32, w Mat, n int, gemv bool) {
	out, in := w.Rows, w.Cols
	pr := halfPanelRows(out, in)
	panels := (out + pr - 1) / pr
	impl := blas32.Implementation()
	parallelBLAS(panels, n*out*in, func(lo, hi int) {
		buf := getPanel(pr * in)
		defer panelPool.Put(buf)
		for p := lo; p < hi; p++ {
			o0, o1 := p*pr, min(out, (p+1)*pr)
			pb := (*buf)[:(o1-o0)*in]
			w.widen(pb, o0*in, (o1-o0)*in)
			if gemv {
				f32GemvOp(y[o0:], x, pb, n, o1-o0, in, out).groups(0, (o1-o0+3)/4)
				continue
			}
			impl.Sgemm(blas.NoTrans, blas.Trans, n, o1-o0, in, 1, x, in, pb, in, 0, y[o0:], out)
		}
	})
}

// panelGradX computes dx = dy·W for dy (n×out) and a half or NF4 W
// (out×in) where productNN does not run (no AVX2 + FMA, or a threaded
// BLAS): the rows of W in panels widened into float32 (as panelProduct's,
// the widening split among goroutines), each panel's share of the inner
// dimension added by the float32 Sgemm.
func panelGradX(dx, dy []float32, w Mat, n int) {
	out, in := w.Rows, w.Cols
	pr := halfPanelRows(out, in)
	buf := getPanel(pr * in)
	defer panelPool.Put(buf)
	impl := blas32.Implementation()
	for k0 := 0; k0 < out; k0 += pr {
		k1 := min(out, k0+pr)
		pb := (*buf)[:(k1-k0)*in]
		widenParallel(&w, pb, k0*in)
		var beta float32 = 1
		if k0 == 0 {
			beta = 0
		}
		impl.Sgemm(blas.NoTrans, blas.NoTrans, n, in, k1-k0, 1, dy[k0:], out, pb, in, beta, dx, in)
	}
}

// widenParallel is w.widen of len(dst) elements from flat0 on, split among
// goroutines.
func widenParallel(w *Mat, dst []float32, flat0 int) {
	const part = 1 << 14
	parts := (len(dst) + part - 1) / part
	Parallel(parts, len(dst), func(lo, hi int) {
		a, b := lo*part, min(len(dst), hi*part)
		w.widen(dst[a:b], flat0+a, b-a)
	})
}
