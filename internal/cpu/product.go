package cpu

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// y = x·Wᵀ for a float32 W: by the fused matrix-vector driver (gemvFused)
// on the kernel gemv4F32, four rows of W per pass sharing the loads of x,
// where the processor has AVX2 + FMA and no threaded BLAS is installed, and
// where f32GemvWins says it beats the Sgemm or Sgemv of GemmNT; GemmNT
// otherwise. A half W: see half.go.

// gemvRows is the largest batch that the products treat row by row, as
// matrix-vector products split over goroutines: below it gonum's Sgemm pays
// more in set-up than the product costs.
const gemvRows = 4

// Product computes y = x·Wᵀ for x (n×in) and W (out×in) of any type, y
// (n×out): by the packed product (gemm.go) for the batches gemmWins
// serves, else by the path of W's type.
func Product(y, x []float32, w Mat, n int) {
	switch {
	case w.Type == BF16 && bf16Product(y, x, w, n):
		// x of bfloat16 values on the bf16 instructions (gemm_bf16.go).
	case gemmWins(n, w.Rows, w.Cols):
		packedProduct(y, x, w, n)
	case w.Type == NF4:
		nf4Product(y, x, w, n)
	case w.Type.half():
		halfProduct(y, x, w, n)
	default:
		f32Product(y, x, w.F32, n, w.Rows, w.Cols)
	}
}

// GemmNT computes c = alpha·a·bᵀ + beta·c for a (m×k), b (nc×k), c (m×nc),
// all row-major and contiguous.
func GemmNT(m, nc, k int, alpha float32, a, b []float32, beta float32, c []float32) {
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

// Shrink computes t = s·x·aᵀ for x (n×in) and a (r×in): as Tᵀ = a·xᵀ by
// the packed product where gemmSmallWins, else by Sgemm. T is n×r, too
// narrow for Sgemm to split among cores: its rows are split instead.
func Shrink(t, x, a []float32, n, in, r int, s float32) {
	if gemmSmallWins(n, in, gemmNR) {
		shrinkPacked(t, &Mat{Rows: n, Cols: in, Type: F32, F32: x}, a, r, s)
		return
	}
	parallelBLAS(n, n*r*in, func(lo, hi int) {
		blas32.Implementation().Sgemm(blas.NoTrans, blas.Trans, hi-lo, r, in, s,
			x[lo*in:hi*in], in, a, in, 0, t[lo*r:hi*r], r)
	})
}

// shrinkPacked computes t = s·x·aᵀ for x (n×in, of any type: its rows
// widened as they are packed) and a (r×in) as Tᵀ = A·xᵀ by the packed
// product, the rows of x packed as W's.
func shrinkPacked(t []float32, x *Mat, a []float32, r int, s float32) {
	n, in := x.Rows, x.Cols
	buf := getGemmBuf(r * n)
	defer gemmPool.Put(buf)
	tt := *buf
	packedRun(tt, a, r, in, n, x, false, gemmNCSmall)
	for k := range r {
		for i, v := range tt[k*n : (k+1)*n] {
			t[i*r+k] = s * v
		}
	}
}

// f32GemvWins reports whether y = x·Wᵀ for x n×in and W out×in runs faster
// by the fused kernel than by GemmNT. Measured against gonum's Sgemm and
// Sgemv (BenchmarkF32Product, 2 cores): on 4096×4096 the kernel wins at
// every n from 1 to 1024, by 1.2× at n = 1 (both bound by memory) and 3.5
// to 5× from n = 4; on 16384×512 by 1.6× at n = 4 and 4 to 6× above, but
// Sgemv is ahead at n = 1 on rows shorter than a column block of the
// kernel (1.4 against 1.7 ms): there it keeps Sgemv.
func f32GemvWins(n, out, in int) bool {
	return useFMA && !blasThreaded && in >= 16 && out >= 4 && (n > 1 || in >= gemvBlockCols(4))
}

// f32Product computes y = x·Wᵀ for x (n×in), a float32 W (out×in) and y
// (n×out): by the fused kernel where f32GemvWins, by GemmNT otherwise.
func f32Product(y, x, w []float32, n, out, in int) {
	if f32GemvWins(n, out, in) {
		f32Gemv(y, x, w, n, out, in)
		return
	}
	GemmNT(n, out, in, 1, x, w, 0, y)
}

// f32Gemv computes y = x·Wᵀ by gemvFused on gemv4F32 where the processor
// has it, by f32GemvGo otherwise.
func f32Gemv(y, x, w []float32, n, out, in int) {
	gemvFused(f32GemvOp(y, x, w, n, out, in, out))
}

// f32GemvOp is the fused product y = x·Wᵀ for a float32 W (out×in), the
// rows of y ldy apart: on gemv4F32 where the processor has it, on
// f32GemvGo otherwise.
func f32GemvOp(y, x, w []float32, n, out, in, ldy int) *gemvOp {
	op := &gemvOp{y: y, x: x, kx: x, n: n, out: out, in: in, ldy: ldy, kb: gemvBlockCols(4),
		value: func(o, j int) float32 { return w[o*in+j] },
		slow:  func(i0, i1, o0, o1 int) { f32GemvGo(y, x, w, i0, i1, ldy, in, o0, o1) }}
	if useFMA {
		op.kern = func(s, x *float32, o, j, cols int) {
			gemv4F32(s, x, &w[o*in+j : (o+3)*in+j+cols][0], cols, in)
		}
	}
	if useGemm512 {
		op.kern4 = func(s, x *float32, o, j, cols int) {
			gemv4x4F32(s, x, in, &w[o*in+j : (o+3)*in+j+cols][0], cols, in)
		}
	}
	return op
}

// f32GemvGo computes rows o0…o1−1 of W's products with rows i0…i1−1 of x
// by Sdot, the rows of y ldy apart.
func f32GemvGo(y, x, w []float32, i0, i1, ldy, in, o0, o1 int) {
	impl := blas32.Implementation()
	for o := o0; o < o1; o++ {
		row := w[o*in : (o+1)*in]
		for i := i0; i < i1; i++ {
			y[i*ldy+o] = impl.Sdot(in, row, 1, x[i*in:(i+1)*in], 1)
		}
	}
}

// matGemvGo computes rows o0…o1−1 of W's products with rows i0…i1−1 of x
// for a W of any type, the rows of y ldy apart, the portable way: each row
// of W widened 256 elements at a time (Mat.widen) into a block on the
// stack, then dot products with up to gemvRows rows of x at a time.
func matGemvGo(y, x []float32, w *Mat, i0, i1, ldy, o0, o1 int) {
	const chunk = 256
	var buf [chunk]float32
	in := w.Cols
	impl := blas32.Implementation()
	for o := o0; o < o1; o++ {
		for a := i0; a < i1; a += gemvRows {
			b := min(i1, a+gemvRows)
			var sums [gemvRows]float32
			for j0 := 0; j0 < in; j0 += chunk {
				t := buf[:min(chunk, in-j0)]
				w.widen(t, o*in+j0, len(t))
				for i := a; i < b; i++ {
					sums[i-a] += impl.Sdot(len(t), t, 1, x[i*in+j0:], 1)
				}
			}
			for i := a; i < b; i++ {
				y[i*ldy+o] = sums[i-a]
			}
		}
	}
}

// gemvX bounds the elements of x that gemvFused runs against W in one pass
// (1 MiB of float32, in L2): above it the rows of x go in chunks, W read
// once per chunk.
const gemvX = 1 << 18

// gemvChunk returns the rows of x (of in columns) in one chunk.
func gemvChunk(in int) int { return max(1, gemvX/max(1, in)) }

// gemvBlockBytes bounds the block of a group of four rows of W that
// gemvFused keeps in the L1 cache while every row of a chunk of x takes its
// dot products with it: 16 KiB, 1024 columns of a float32 W, 2048 of a half
// one, 8192 of an NF4 one.
const gemvBlockBytes = 16 << 10

// gemvBlockCols returns the columns of W in one block of gemvFused for
// elements of size bytes: a positive multiple of 16.
func gemvBlockCols(size int) int { return max(16, gemvBlockBytes/(4*size)&^15) }

// gemvOp is a product y = x·Wᵀ for x (n×in), W (out×in) of any type and y
// (n rows ldy apart, out columns) as gemvFused computes it. kern, where the
// processor has the kernel, sets s[q] = Σⱼ x[j]·W[o+q, j0+j] for q < 4 and
// j < cols (cols a positive multiple of 16, a whole block of W's columns),
// x read from kx (x, or x with its columns reordered as the kernel reads
// them, as pairOrder does). value(o, j) is the float32 value of W[o, j].
// slow(i0, i1, o0, o1) computes rows o0…o1−1 of W's products with rows
// i0…i1−1 of x: without the kernel, for the last out mod 4 rows of W and
// when in < 16.
type gemvOp struct {
	y, x, kx        []float32
	n, out, in, ldy int
	kb              int // the columns of a block (gemvBlockCols)
	kern            func(s, x *float32, o, j0, cols int)
	kern4           func(s, x *float32, o, j0, cols int) // kern for four rows of x (in apart) at once, s[4p+q], bit for bit; or nil
	value           func(o, j int) float32
	slow            func(i0, i1, o0, o1 int)
}

// gemvFused computes op's product by groups of four rows of W split among
// goroutines (op.groups).
func gemvFused(op *gemvOp) {
	if op.n == 0 || op.out == 0 || op.in == 0 {
		return
	}
	Parallel((op.out+3)/4, op.n*op.out*op.in, op.groups)
}

// groups computes the groups lo…hi−1 of four rows of W: each group is read
// from memory once per chunk of rows of x (gemvChunk), in blocks of kb
// columns (kept in L1 while every row of the chunk uses it; whole rows for
// one row of x, which the kernels' prefetches of the next group follow),
// and the four
// rows' partial dot products with each row of the chunk formed in
// registers by kern. The blocks' sums are added in order; the last in mod
// 16 columns are added in Go. The sum of each element of y runs in the
// same order whatever the split and the chunking.
func (op *gemvOp) groups(lo, hi int) {
	y, x, kx, n, out, in, ldy := op.y, op.x, op.kx, op.n, op.out, op.in, op.ldy
	if n == 0 || out == 0 || in == 0 {
		return
	}
	// Bounds: the kernels read within these (sliced, not read: other
	// goroutines write other parts of y).
	_, _, _ = x[:n*in], kx[:n*in], y[:(n-1)*ldy+out]
	m := in &^ 15 // the kernel's columns; the rest in Go
	nb := gemvChunk(in)
	for i0 := 0; i0 < n; i0 += nb {
		i1 := min(n, i0+nb)
		for g := lo; g < hi; g++ {
			o0, o1 := 4*g, min(out, 4*g+4)
			if op.kern == nil || o1-o0 < 4 || m == 0 {
				op.slow(i0, i1, o0, o1)
				continue
			}
			var s [4]float32
			kb := op.kb
			if n == 1 {
				kb = m // no row of x to reuse a block: whole rows (gemv_amd64.s)
			}
			for j0 := 0; j0 < m; j0 += kb {
				j1 := min(m, j0+kb)
				i := i0
				for ; op.kern4 != nil && i+4 <= i1; i += 4 {
					var s16 [16]float32
					_ = kx[(i+3)*in+j1-1] // bounds: the last element read
					op.kern4(&s16[0], &kx[i*in+j0], o0, j0, j1-j0)
					for p := range 4 {
						yi := y[(i+p)*ldy+o0 : (i+p)*ldy+o0+4]
						if j0 == 0 {
							copy(yi, s16[4*p:4*p+4])
							continue
						}
						for q, v := range s16[4*p : 4*p+4] {
							yi[q] += v
						}
					}
				}
				for ; i < i1; i++ {
					op.kern(&s[0], &kx[i*in+j0], o0, j0, j1-j0)
					yi := y[i*ldy+o0 : i*ldy+o0+4]
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
					v := y[i*ldy+o0+q]
					for j := m; j < in; j++ {
						v += xi[j] * op.value(o0+q, j)
					}
					y[i*ldy+o0+q] = v
				}
			}
		}
	}
}

// pairOrder writes into dst the rows of x (n×in) in pair order, the order
// of gemv4BF16: evenOdd of 16.
func pairOrder(dst, x []float32, n, in int) { evenOdd(dst, x, n, in, 16) }

// evenOdd writes into dst the rows of x (n×in) with each block of width
// columns (even), up to the last whole one, as its width/2 even columns,
// then its odd ones: the order of gemv4BF16 (pairOrder) at 16, of
// gemv4NF4 at 8 and of gemv4NF4AVX512 at 32. The columns after the last
// whole block are not written.
func evenOdd(dst, x []float32, n, in, width int) {
	m := in - in%width
	h := width / 2
	for i := range n {
		d, s := dst[i*in:i*in+m], x[i*in:i*in+m]
		for j := 0; j+width <= len(s); j += width {
			b, e := s[j:j+width], d[j:j+width]
			for k := range h {
				e[k], e[h+k] = b[2*k], b[2*k+1]
			}
		}
	}
}
