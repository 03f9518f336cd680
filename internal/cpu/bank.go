package cpu

import (
	"runtime"
	"sync"
	"time"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// A bank of adapters over one float32 W: the base product once for all
// rows, by the cheapest of three strategies (BankProduct), then the rows
// grouped by adapter, each group's T = s·x_g·Aᵀ by a small Sgemm and
// y_g += T·Bᵀ by rankRow over a Bᵀ packed once (BankExpand).

// BankProduct computes y = x·Wᵀ for x (n×in), a float32 W (out×in) and y
// (n×out): by the packed product for the batches gemmWins serves, by the
// fused kernel where it wins, else by a loop of small products or one
// large one, whichever bankModel expects to be cheaper.
func BankProduct(y, x, w []float32, n, in, out int) {
	switch {
	case gemmWins(n, out, in):
		packedProduct(y, x, Mat{Rows: out, Cols: in, Type: F32, F32: w}, n)
	case f32GemvWins(n, out, in):
		f32Gemv(y, x, w, n, out, in)
	case bankUseRows(n, in, out):
		rowsProduct(y, x, w, n, in, out)
	default:
		GemmNT(n, out, in, 1, x, w, 0, y)
	}
}

// BankGroup is one adapter's share of a batch: the rows Perm[Start:End]
// of BankExpand's permutation, its A (R×in), its Bᵀ (R×out) and its scale.
type BankGroup struct {
	Start, End int
	A, BT      []float32
	R          int
	Scale      float32
}

// bankChunkRows is the most rows of one group that one task expands: the
// group's A and Bᵀ are read once per task and stay in cache for its rows.
const bankChunkRows = 16

// BankExpand adds to each row i of y (n×out) its adapter's term
// s·(x[i,:]·Aᵀ)·Bᵀ, for the rows of x (n×in) that perm lists group by
// group.
func BankExpand(y, x []float32, in, out int, perm []int32, groups []BankGroup) {
	if len(perm) == 0 {
		return
	}
	// Tasks: runs of at most chunk rows of one group, small enough that
	// every core gets some.
	procs := runtime.GOMAXPROCS(0)
	chunk := min(bankChunkRows, max(1, len(perm)/(2*procs)))
	type task struct{ g, p0, p1 int }
	var tasks []task
	work, maxR := 0, 0
	for g, gr := range groups {
		maxR = max(maxR, gr.R)
		for p := gr.Start; p < gr.End; p += chunk {
			tasks = append(tasks, task{g, p, min(gr.End, p+chunk)})
		}
		work += (gr.End - gr.Start) * gr.R * (in + out)
	}
	impl := blas32.Implementation()
	Parallel(len(tasks), work, func(lo, hi int) {
		xg := make([]float32, chunk*in)
		t := make([]float32, chunk*maxR)
		for _, tk := range tasks[lo:hi] {
			gr := &groups[tk.g]
			r, m := gr.R, tk.p1-tk.p0
			rows := perm[tk.p0:tk.p1]
			xs := xg[:m*in]
			if int(rows[m-1])-int(rows[0]) == m-1 { // a run of consecutive rows
				xs = x[int(rows[0])*in : (int(rows[0])+m)*in]
			} else {
				for q, i := range rows {
					copy(xs[q*in:(q+1)*in], x[int(i)*in:(int(i)+1)*in])
				}
			}
			tt := t[:m*r]
			impl.Sgemm(blas.NoTrans, blas.Trans, m, r, in, gr.Scale, xs, in, gr.A, in, 0, tt, r)
			for q, i := range rows {
				rankRow(y[int(i)*out:(int(i)+1)*out], gr.BT, tt[q*r:(q+1)*r], out)
			}
		}
	})
}

// rowsBlockBytes bounds the block of W rows that rowsProduct multiplies by
// every row of x while it stays in the L2 cache.
const rowsBlockBytes = 128 << 10

// rowsProduct computes y = x·Wᵀ as a loop of small products: W in blocks
// of rows, each block times all n rows of x by one small Sgemm while it is
// in cache, the blocks split among goroutines. W is read from memory once,
// however many rows x has, and no call is large enough for Sgemm's own
// blocking and goroutines.
func rowsProduct(yd, xd, wd []float32, n, in, out int) {
	jb := max(1, rowsBlockBytes/(4*in))
	blocks := (out + jb - 1) / jb
	impl := blas32.Implementation()
	Parallel(blocks, n*in*out, func(lo, hi int) {
		for blk := lo; blk < hi; blk++ {
			j0, j1 := blk*jb, min(out, (blk+1)*jb)
			impl.Sgemm(blas.NoTrans, blas.Trans, n, j1-j0, in, 1, xd, in, wd[j0*in:j1*in], in, 0, yd[j0:], out)
		}
	})
}

// bankModel is the cost model that picks the base product's strategy,
// calibrated once per process on first use (about 30 ms): the seconds per
// multiply-add of GemmNT's one large Sgemm (tGemm) and of rowsProduct's
// small ones (tRows), both on operands that fit in cache, and the seconds per
// byte of W streamed from memory (tByte, rowsProduct at n = 1 over 32 MiB).
// A product of n rows then costs
//
//	one large product  n ≤ gemvRows: n·bytes(W)·tByte (GemmNT's Sgemv, W read n times)
//	                   otherwise:    max(n·in·out·tGemm, bytes(W)·tByte)
//	loop of small ones               max(n·in·out·tRows, bytes(W)·tByte)
//
// and the cheaper is used. With a threaded BLAS (OpenBLAS) the large
// product is always used: its Sgemm is faster than any loop of ours.
var bankModel struct {
	once               sync.Once
	tGemm, tRows, tByt float64
}

// bankCalibrate measures the constants of bankModel.
func bankCalibrate() {
	best := func(f func()) float64 {
		d := time.Duration(1 << 62)
		for range 3 {
			t0 := time.Now()
			f()
			d = min(d, time.Since(t0))
		}
		return max(d.Seconds(), 1e-9)
	}
	const m, in, out = 64, 512, 1024
	x := make([]float32, m*in)
	w := make([]float32, out*in)
	y := make([]float32, m*out)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	macs := float64(m * in * out)
	bankModel.tGemm = best(func() { GemmNT(m, out, in, 1, x, w, 0, y) }) / macs
	bankModel.tRows = best(func() { rowsProduct(y, x, w, m, in, out) }) / macs
	const big = 8 << 20 // floats: 32 MiB, beyond the caches
	wb := make([]float32, big)
	for i := range wb {
		wb[i] = 1
	}
	bankModel.tByt = best(func() { rowsProduct(y, x, wb, 1, 4096, big/4096) }) / (4 * big)
}

// bankUseRows reports whether the loop of small products is expected to
// beat the one large product for y = x·Wᵀ with x n×in and W out×in.
func bankUseRows(n, in, out int) bool {
	if blasThreaded {
		return false
	}
	bankModel.once.Do(bankCalibrate)
	macs := float64(n) * float64(in) * float64(out)
	stream := 4 * float64(in) * float64(out) * bankModel.tByt
	var large float64
	if n <= gemvRows {
		large = float64(n) * stream
	} else {
		large = max(macs*bankModel.tGemm, stream)
	}
	rows := max(macs*bankModel.tRows, stream)
	return rows < large
}
