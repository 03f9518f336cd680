//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/kernels"
)

// The GPU backend: matrices in device memory, every operation a kernel of
// lora.fatbin (or, with -tags cudaemu, the same kernels emulated on the CPU)
// enqueued on one stream. Calls return once their work is queued; Read and
// Sync wait for it. This file picks the kernels, sizes their grids and packs
// their arguments, for both builds alike.

const backendName = cuda.Name

// devErr wraps an error of package cuda as a device error.
func devErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %v", ErrDevice, err)
}

func backendSync() error {
	if err := cuda.Sync(); err != nil {
		return fmt.Errorf("lora: Sync: %w", devErr(err))
	}
	return nil
}

// buffer is a Matrix's storage: device memory.
type buffer struct {
	p       cuda.Ptr
	n       int
	cleanup runtime.Cleanup
}

func newBuffer(n int) (buffer, error) {
	p, err := cuda.Alloc(int64(n) * 4)
	if err != nil {
		return buffer{}, devErr(err)
	}
	if err := cuda.Memset32(p, 0, int64(n)); err != nil {
		cuda.Free(p)
		return buffer{}, devErr(err)
	}
	return buffer{p: p, n: n}, nil
}

// track arranges for a Matrix collected without Free to say so on stderr and
// release its device memory. A finalizer is no substitute for Free: device
// memory runs out long before the Go heap notices.
func track(m *Matrix) {
	p, rows, cols := m.buf.p, m.rows, m.cols
	m.buf.cleanup = runtime.AddCleanup(m, func(p cuda.Ptr) {
		fmt.Fprintf(os.Stderr, "lora: a %d×%d Matrix was garbage-collected without Free; releasing its device memory\n", rows, cols)
		cuda.Free(p)
	}, p)
}

func (b *buffer) read(dst []float32) error {
	return devErr(cuda.CopyDtoH(unsafe.Pointer(unsafe.SliceData(dst)), b.p, int64(b.n)*4))
}

func (b *buffer) write(src []float32) error {
	return devErr(cuda.CopyHtoD(b.p, unsafe.Pointer(unsafe.SliceData(src)), int64(b.n)*4))
}

func (b *buffer) free() {
	b.cleanup.Stop()
	cuda.Free(b.p)
	b.p = 0
}

// ceilDiv returns ⌈a/b⌉.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// launch wraps cuda.Launch's error as a device error.
func launch(kernel string, grid, block cuda.Dim3, a *cuda.Args) error {
	return devErr(cuda.Launch(kernel, grid, block, 0, a))
}

// dev guards the backend's scratch memory: T of forward, T and U of
// backward, the flag of allFinite and the partial sums of mse. Work that
// uses them is enqueued under it, and the stream runs work in order, so one
// scratch serves every caller.
var dev struct {
	sync.Mutex
	t        cuda.Ptr // T (and U), n×r floats each
	tLen     int
	flag     cuda.Ptr // one int32
	flagv    int32
	partial  cuda.Ptr // kernels.MSEMaxBlocks floats
	partialv [kernels.MSEMaxBlocks]float32
}

// scratchT returns a device buffer of at least n floats. Called with dev held.
func scratchT(n int) (cuda.Ptr, error) {
	if dev.tLen >= n {
		return dev.t, nil
	}
	// The old buffer may still be read by queued kernels: drain them first.
	if dev.t != 0 {
		if err := cuda.Sync(); err != nil {
			return 0, devErr(err)
		}
		cuda.Free(dev.t)
		dev.t, dev.tLen = 0, 0
	}
	size := max(n, 1<<14)
	p, err := cuda.Alloc(int64(size) * 4)
	if err != nil {
		return 0, devErr(err)
	}
	dev.t, dev.tLen = p, size
	return p, nil
}

// forwardKernel enqueues y = x·Wᵀ + T·Bᵀ, choosing the bandwidth-bound
// kernel for small batches and the tiled one otherwise. r = 0 (t and b zero)
// is the base product alone.
func forwardKernel(y, x, w *Matrix, t, b cuda.Ptr, r int) error {
	n, in, out := x.rows, x.cols, w.rows
	var a cuda.Args
	a.Ptr(x.buf.p).Ptr(w.buf.p).Ptr(t).Ptr(b).Ptr(y.buf.p).Int(n).Int(in).Int(out).Int(r)
	if n <= kernels.SmallNMax {
		return launch("lora_forward_small",
			cuda.Dim3{X: ceilDiv(out, kernels.SmallRowsPerBlock), Y: 1, Z: 1},
			cuda.Dim3{X: kernels.SmallThreads, Y: 1, Z: 1}, &a)
	}
	if gy := ceilDiv(out, kernels.TileN); gy > 65535 {
		return fmt.Errorf("%w: out = %d needs %d tiles, above the GPU's grid limit", ErrShape, out, gy)
	}
	return launch("lora_forward_tiled",
		cuda.Dim3{X: ceilDiv(n, kernels.TileM), Y: ceilDiv(out, kernels.TileN), Z: 1},
		cuda.Dim3{X: kernels.TileThreads, Y: 1, Z: 1}, &a)
}

// linear enqueues y = x·Wᵀ.
func linear(y, x, w *Matrix) error {
	if err := forwardKernel(y, x, w, 0, 0, 0); err != nil {
		return fmt.Errorf("lora: Linear: %w", err)
	}
	return nil
}

// forward enqueues T = s·x·Aᵀ (the shrink kernel, into scratch), then
// y = x·Wᵀ + T·Bᵀ in one kernel that writes y once.
func forward(y, x, w, a, b *Matrix, s float32) error {
	n, r := x.rows, a.rows
	if gy := ceilDiv(r, kernels.ShrinkKs); gy > 65535 {
		return fmt.Errorf("lora: Forward: rank %d above the GPU's grid limit: %w", r, ErrShape)
	}
	dev.Lock()
	defer dev.Unlock()
	t, err := scratchT(n * r)
	if err != nil {
		return fmt.Errorf("lora: Forward: %w", err)
	}
	if err := shrinkKernel(t, x, a, s); err != nil {
		return fmt.Errorf("lora: Forward: %w", err)
	}
	if err := forwardKernel(y, x, w, t, b.buf.p, r); err != nil {
		return fmt.Errorf("lora: Forward: %w", err)
	}
	return nil
}

// shrinkKernel enqueues t = s·x·Aᵀ (n×r).
func shrinkKernel(t cuda.Ptr, x, a *Matrix, s float32) error {
	n, in, r := x.rows, x.cols, a.rows
	var sa cuda.Args
	sa.Ptr(x.buf.p).Ptr(a.buf.p).Ptr(t).Int(n).Int(in).Int(r).Float(s)
	return launch("lora_shrink",
		cuda.Dim3{X: ceilDiv(n, kernels.ShrinkRows), Y: ceilDiv(r, kernels.ShrinkKs), Z: 1},
		cuda.Dim3{X: kernels.ShrinkThreads, Y: 1, Z: 1}, &sa)
}

// axpy enqueues y += alpha·x.
func axpy(y *Matrix, alpha float32, x *Matrix) error {
	count := int64(y.rows) * int64(y.cols)
	var a cuda.Args
	a.Ptr(y.buf.p).Ptr(x.buf.p).Int64(count).Float(alpha)
	blocks := int(min((count+kernels.AxpyThreads-1)/kernels.AxpyThreads, kernels.AxpyMaxBlocks))
	if err := launch("lora_axpy", cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: kernels.AxpyThreads, Y: 1, Z: 1}, &a); err != nil {
		return fmt.Errorf("lora: Axpy: %w", err)
	}
	return nil
}

// allFinite reports whether every element of the matrices is finite: a
// reduction on the device into one flag, which is then read back (this waits
// for the queued work).
func allFinite(ms ...*Matrix) (bool, error) {
	dev.Lock()
	defer dev.Unlock()
	if dev.flag == 0 {
		p, err := cuda.Alloc(4)
		if err != nil {
			return false, devErr(err)
		}
		dev.flag = p
	}
	if err := cuda.Memset32(dev.flag, 0, 1); err != nil {
		return false, devErr(err)
	}
	for _, m := range ms {
		count := int64(m.rows) * int64(m.cols)
		per := int64(kernels.FiniteThreads * kernels.FinitePerThread)
		blocks := int(min(max((count+per-1)/per, 1), kernels.FiniteMaxBlocks))
		var a cuda.Args
		a.Ptr(m.buf.p).Int64(count).Ptr(dev.flag)
		if err := launch("lora_finite", cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: kernels.FiniteThreads, Y: 1, Z: 1}, &a); err != nil {
			return false, err
		}
	}
	if err := cuda.CopyDtoH(unsafe.Pointer(&dev.flagv), dev.flag, 4); err != nil {
		return false, devErr(err)
	}
	return dev.flagv == 0, nil
}

// rankUpdate enqueues W += c·B·A in place, each element of W read and
// written once.
func rankUpdate(w, a, b *Matrix, c float32) error {
	out, in, r := w.rows, w.cols, a.rows
	if gy := ceilDiv(out, kernels.MergeTileOut); gy > 65535 {
		return fmt.Errorf("out = %d above the GPU's grid limit: %w", out, ErrShape)
	}
	var args cuda.Args
	args.Ptr(w.buf.p).Ptr(a.buf.p).Ptr(b.buf.p).Int(out).Int(in).Int(r).Float(c)
	return launch("lora_merge",
		cuda.Dim3{X: ceilDiv(in, kernels.MergeTileIn), Y: ceilDiv(out, kernels.MergeTileOut), Z: 1},
		cuda.Dim3{X: kernels.MergeThreads, Y: 1, Z: 1}, &args)
}

// backward enqueues, with T = s·x·Aᵀ and U = s·dy·B in scratch (n×r each):
// lora_shrink and lora_grad_u for T and U, lora_grad_ab twice for
// dB = dyᵀ·T and dA = Uᵀ·x, and unless dx is nil dx = dy·W + U·A (dy·W when
// merged) by the small-batch or the tiled kernel. Every limit is checked
// before anything is enqueued.
func backward(dx, dA, dB, dy, x, w, a, b *Matrix, s float32, merged bool) error {
	n, in, out, r := x.rows, x.cols, w.rows, a.rows
	if n > math.MaxInt32 {
		return fmt.Errorf("n = %d does not fit the kernels' int: %w", n, ErrShape)
	}
	for _, gy := range []int{ceilDiv(r, kernels.ShrinkKs), ceilDiv(r, kernels.GradUKs), ceilDiv(r, kernels.GradABTR)} {
		if gy > 65535 {
			return fmt.Errorf("rank %d above the GPU's grid limit: %w", r, ErrShape)
		}
	}
	if dx != nil && n > kernels.SmallNMax && ceilDiv(in, kernels.TileN) > 65535 {
		return fmt.Errorf("in = %d needs %d tiles, above the GPU's grid limit: %w", in, ceilDiv(in, kernels.TileN), ErrShape)
	}
	dev.Lock()
	defer dev.Unlock()
	// U starts on a 64-byte boundary, so that its rows may be read as float4.
	uOff := (n*r + 15) &^ 15
	t, err := scratchT(uOff + n*r)
	if err != nil {
		return err
	}
	u := t + cuda.Ptr(4*uOff)
	if err := shrinkKernel(t, x, a, s); err != nil {
		return err
	}
	var ua cuda.Args
	ua.Ptr(dy.buf.p).Ptr(b.buf.p).Ptr(u).Int(n).Int(out).Int(r).Float(s)
	if err := launch("lora_grad_u",
		cuda.Dim3{X: ceilDiv(n, kernels.GradURows), Y: ceilDiv(r, kernels.GradUKs), Z: 1},
		cuda.Dim3{X: kernels.GradUThreads, Y: 1, Z: 1}, &ua); err != nil {
		return err
	}
	if err := gradAB(dy.buf.p, t, dB.buf.p, n, out, r, false); err != nil {
		return err
	}
	if err := gradAB(x.buf.p, u, dA.buf.p, n, in, r, true); err != nil {
		return err
	}
	if dx == nil {
		return nil
	}
	ap := a.buf.p
	if merged {
		u, ap, r = 0, 0, 0
	}
	var xa cuda.Args
	xa.Ptr(dy.buf.p).Ptr(w.buf.p).Ptr(u).Ptr(ap).Ptr(dx.buf.p).Int(n).Int(in).Int(out).Int(r)
	if n <= kernels.SmallNMax {
		return launch("lora_grad_x_small",
			cuda.Dim3{X: ceilDiv(in, kernels.GradXSmallCols), Y: 1, Z: 1},
			cuda.Dim3{X: kernels.GradXSmallThreads, Y: 1, Z: 1}, &xa)
	}
	return launch("lora_grad_x_tiled",
		cuda.Dim3{X: ceilDiv(n, kernels.TileM), Y: ceilDiv(in, kernels.TileN), Z: 1},
		cuda.Dim3{X: kernels.TileThreads, Y: 1, Z: 1}, &xa)
}

// gradAB enqueues c = gᵀ·h for g (n×p) and h (n×r): c is p×r, or r×p when
// trans.
func gradAB(g, h, c cuda.Ptr, n, p, r int, trans bool) error {
	tr := 0
	if trans {
		tr = 1
	}
	var a cuda.Args
	a.Ptr(g).Ptr(h).Ptr(c).Int(n).Int(p).Int(r).Int(tr)
	return launch("lora_grad_ab",
		cuda.Dim3{X: ceilDiv(p, kernels.GradABTP), Y: ceilDiv(r, kernels.GradABTR), Z: 1},
		cuda.Dim3{X: kernels.GradABThreads, Y: 1, Z: 1}, &a)
}

// optBlocks is the grid of an optimizer kernel over count parameters.
func optBlocks(count int64) cuda.Dim3 {
	return cuda.Dim3{X: int(min((count+kernels.OptThreads-1)/kernels.OptThreads, kernels.OptMaxBlocks)), Y: 1, Z: 1}
}

// adamw enqueues one AdamW step over A and B; state holds m then v, each
// over A's elements then B's.
func adamw(a, b, da, db, state *Matrix, h adamParams) error {
	ca, cb := int64(a.rows)*int64(a.cols), int64(b.rows)*int64(b.cols)
	var args cuda.Args
	args.Ptr(a.buf.p).Ptr(b.buf.p).Ptr(da.buf.p).Ptr(db.buf.p).Ptr(state.buf.p).Int64(ca).Int64(cb).
		Float(h.decay).Float(h.step).Float(h.invSqrtBC2).Float(h.eps).Float(h.beta1).Float(h.beta2)
	return launch("lora_adamw", optBlocks(ca+cb), cuda.Dim3{X: kernels.OptThreads, Y: 1, Z: 1}, &args)
}

// sgd enqueues one SGD step over A and B, with momentum when buf is not nil.
func sgd(a, b, da, db, buf *Matrix, lr, mom float32) error {
	ca, cb := int64(a.rows)*int64(a.cols), int64(b.rows)*int64(b.cols)
	var bp cuda.Ptr
	if buf != nil {
		bp = buf.buf.p
	}
	var args cuda.Args
	args.Ptr(a.buf.p).Ptr(b.buf.p).Ptr(da.buf.p).Ptr(db.buf.p).Ptr(bp).Int64(ca).Int64(cb).Float(lr).Float(mom)
	return launch("lora_sgd", optBlocks(ca+cb), cuda.Dim3{X: kernels.OptThreads, Y: 1, Z: 1}, &args)
}

// mse enqueues dy = scale·(y − t) (unless dy is nil) and the per-block sums
// of (y − t)², then reads those back, which waits for the queued work, and
// adds them in float64.
func mse(dy, y, t *Matrix, scale float32) (float64, error) {
	count := int64(y.rows) * int64(y.cols)
	per := int64(kernels.MSEThreads * kernels.MSEPerThread)
	blocks := int(min(max((count+per-1)/per, 1), kernels.MSEMaxBlocks))
	dev.Lock()
	defer dev.Unlock()
	if dev.partial == 0 {
		p, err := cuda.Alloc(4 * kernels.MSEMaxBlocks)
		if err != nil {
			return 0, devErr(err)
		}
		dev.partial = p
	}
	var dyp cuda.Ptr
	if dy != nil {
		dyp = dy.buf.p
	}
	var a cuda.Args
	a.Ptr(y.buf.p).Ptr(t.buf.p).Ptr(dyp).Int64(count).Float(scale).Ptr(dev.partial)
	if err := launch("lora_mse", cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: kernels.MSEThreads, Y: 1, Z: 1}, &a); err != nil {
		return 0, err
	}
	if err := cuda.CopyDtoH(unsafe.Pointer(&dev.partialv[0]), dev.partial, int64(4*blocks)); err != nil {
		return 0, devErr(err)
	}
	var sum float64
	for _, v := range dev.partialv[:blocks] {
		sum += float64(v)
	}
	return sum, nil
}

// readHost copies m into a new host slice, waiting for queued work.
func readHost(m *Matrix) ([]float32, error) {
	h := make([]float32, m.rows*m.cols)
	if err := m.buf.read(h); err != nil {
		return nil, err
	}
	return h, nil
}

// absMax returns max |m[i,j]|, or a non-finite value (NaN or +Inf) when m
// holds NaN or ±Inf.
func absMax(m *Matrix) (float32, error) {
	h, err := readHost(m)
	if err != nil {
		return 0, err
	}
	var mx float32
	for _, v := range h {
		if v != v {
			return v, nil
		}
		mx = max(mx, float32(math.Abs(float64(v))))
	}
	return mx, nil
}

// adapterBound returns maxA = max |A[k,j]| and maxRowB = max_i Σ_k |B[i,k]|,
// summed in float64; either is non-finite when A or B holds NaN or ±Inf.
// A and B are small, r·(in+out) elements: they are read back to the host.
func adapterBound(a, b *Matrix) (maxA, maxRowB float64, err error) {
	ha, err := readHost(a)
	if err != nil {
		return 0, 0, err
	}
	hb, err := readHost(b)
	if err != nil {
		return 0, 0, err
	}
	for _, v := range ha {
		av := math.Abs(float64(v))
		if av != av {
			return av, 0, nil
		}
		maxA = max(maxA, av)
	}
	r := b.cols
	for i := 0; i < b.rows; i++ {
		var s float64
		for _, v := range hb[i*r : (i+1)*r] {
			s += math.Abs(float64(v))
		}
		if s != s {
			return maxA, s, nil
		}
		maxRowB = max(maxRowB, s)
	}
	return maxA, maxRowB, nil
}

// rankFinite reports whether every element of W + c·B·A, computed exactly
// as rankUpdate computes it, is finite. W is not modified.
func rankFinite(w, a, b *Matrix, c float32) (bool, error) {
	tmp, err := newBuffer(w.rows * w.cols)
	if err != nil {
		return false, err
	}
	defer tmp.free()
	h, err := readHost(w)
	if err != nil {
		return false, err
	}
	if err := tmp.write(h); err != nil {
		return false, err
	}
	t := &Matrix{rows: w.rows, cols: w.cols, buf: tmp}
	if err := rankUpdate(t, a, b, c); err != nil {
		return false, err
	}
	return allFinite(t)
}

// addBias computes y[i,:] += bias[0,:] for every row i; bias is 1×cols(y).
func addBias(y, bias *Matrix) error {
	hy, err := readHost(y)
	if err != nil {
		return err
	}
	hb, err := readHost(bias)
	if err != nil {
		return err
	}
	for i := 0; i < y.rows; i++ {
		row := hy[i*y.cols : (i+1)*y.cols]
		for j := range row {
			row[j] += hb[j]
		}
	}
	return y.buf.write(hy)
}
