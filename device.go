//go:build cuda || cudaemu

package lora

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/golora/lora/cuda"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/kernels"
)

// The GPU backend: matrices in device memory, every operation a kernel of
// lora.fatbin (or, with -tags cudaemu, the same kernels emulated on the CPU)
// enqueued on one stream. Calls return once their work is queued; Read and
// Sync wait for it. This file launches the kernels that package
// internal/plan chooses, with the grids it sizes, and packs their arguments,
// for both builds alike.
//
// Faults. A device fault (an illegal address, a kernel that traps, an
// uncorrectable memory error) leaves the CUDA context unusable for the rest
// of the process: package cuda records the first one, and every later call
// of this backend returns an error wrapping ErrDevice and that first fault.
// The process must be restarted to use the GPU again. Matrix.Free returns no
// error: a failed free of device memory is such a fault, so it is reported
// by the next call that uses the device (Sync, Read, any operation).
// Running out of device memory is not a fault: NewMatrix says so, wrapping
// ErrMemory and ErrDevice, and the device stays usable.
//
// Launches. Every launch packs its arguments in a launchArgs, which takes a
// Matrix, not its device address, and keeps every Matrix it packed alive
// until the launch is queued: without that, a Matrix its caller no longer
// references could be collected, and its cleanup free its device memory,
// between the packing of its address and the launch.

// gpuBackend is the GPU backend: the operations of backend (backend.go).
type gpuBackend struct{}

// be is the backend compiled in.
var be gpuBackend

func (gpuBackend) name() string { return cuda.Name }

// devErr wraps an error of package cuda as a device error; errors.Is finds
// both ErrDevice and what the cuda error wraps (the first fault of a faulted
// device, cuda.ErrOutOfMemory).
func devErr(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrDevice, err)
}

func (gpuBackend) sync() error {
	if err := cuda.Sync(); err != nil {
		return fmt.Errorf("lora: Sync: %w", devErr(err))
	}
	return nil
}

// nf4Absmax appends the device address of an NF4 matrix's absmax, which
// its buffer holds after the codes (see buffer), and keeps w alive until
// the launch is queued, as mat does.
func (k *launchArgs) nf4Absmax(w *Matrix) *launchArgs {
	k.a.Ptr(w.buf.p + cuda.Ptr(w.buf.absmaxAt))
	if k.n < len(k.keep) {
		k.keep[k.n] = w
		k.n++
	}
	return k
}

// ceilDiv returns ⌈a/b⌉.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// launchArgs packs the arguments of one launch (see Launches above). A Matrix
// goes in with mat, never as its device address; ptr is for the backend's
// scratch memory, which no Matrix owns and no cleanup frees.
type launchArgs struct {
	a    cuda.Args
	keep [16]*Matrix
	n    int
}

// mat appends m's device address, or a null pointer for a nil m, and keeps m
// alive until the launch is queued.
func (k *launchArgs) mat(m *Matrix) *launchArgs {
	if m == nil {
		k.a.Ptr(0)
		return k
	}
	k.a.Ptr(m.buf.p)
	if k.n < len(k.keep) { // as many as cuda.Args takes arguments
		k.keep[k.n] = m
		k.n++
	}
	return k
}

// ptr appends an address of the backend's scratch memory.
func (k *launchArgs) ptr(p cuda.Ptr) *launchArgs { k.a.Ptr(p); return k }

// int32 appends an int parameter.
func (k *launchArgs) int32(v int) *launchArgs { k.a.Int(v); return k }

// int64 appends a long long parameter.
func (k *launchArgs) int64(v int64) *launchArgs { k.a.Int64(v); return k }

// float appends a float parameter.
func (k *launchArgs) float(v float32) *launchArgs { k.a.Float(v); return k }

// launch enqueues kernel with the arguments of k, keeps the matrices of k
// alive until it is queued, and wraps cuda.Launch's error as a device error.
// It is the backend's only call of cuda.Launch.
func launch(kernel string, grid, block cuda.Dim3, k *launchArgs) error {
	err := cuda.Launch(kernel, grid, block, 0, &k.a)
	runtime.KeepAlive(k)
	return devErr(err)
}

// dev guards the backend's scratch memory: T of forward, T and U of
// backward, the word of absMax and rankFinite, and the partial
// sums of mse. Work that uses them is enqueued under it, and the stream runs
// work in order, so one scratch serves every caller.
var dev struct {
	sync.Mutex
	t        devBuf   // T (and U), n×r floats each
	flag     cuda.Ptr // one 32-bit word
	flagv    uint32
	partial  cuda.Ptr // kernels.MSEMaxBlocks floats
	partialv [kernels.MSEMaxBlocks]float32
}

// devBuf is a device buffer that grows on demand and is kept for later
// calls, used with dev held: the stream runs work in order, so one buffer
// serves every caller.
type devBuf struct {
	p cuda.Ptr
	n int // 32-bit words
}

// get returns the buffer, grown to at least n 32-bit words (and at least
// least words, so that small requests do not grow it step by step). Growing
// frees the old buffer in stream order (cuda.Free), without waiting: the
// work queued before still reads it.
func (s *devBuf) get(n, least int) (cuda.Ptr, error) {
	if s.n >= n {
		return s.p, nil
	}
	if s.p != 0 {
		err := cuda.Free(s.p)
		s.p, s.n = 0, 0
		if err != nil {
			return 0, devErr(err)
		}
	}
	size := max(n, least)
	p, err := cuda.Alloc(int64(size) * 4)
	if err != nil {
		return 0, devErr(err)
	}
	s.p, s.n = p, size
	return p, nil
}

// scratch returns a device buffer of at least n floats. Called with dev held.
func scratch(n int) (cuda.Ptr, error) { return dev.t.get(n, 1<<14) }

// planDevice is the device the launch planner plans for: the properties the
// driver reports (SMs, per-SM limits, bandwidth, fp32 rate), and an H200's
// for those it does not, as on the emulator. Every plan is valid on any
// device; the properties only tune it.
func planDevice() plan.Device {
	d := plan.H200
	if bw := cuda.PeakBandwidth(); bw > 0 {
		d.Bandwidth = bw
	}
	p := cuda.Properties()
	for _, f := range []struct {
		dst *int
		v   int
	}{{&d.SMs, p.SMs}, {&d.SharedPerSM, p.SharedPerSM}, {&d.ThreadsPerSM, p.ThreadsPerSM},
		{&d.RegsPerSM, p.RegsPerSM}, {&d.BlocksPerSM, p.BlocksPerSM}} {
		if f.v > 0 {
			*f.dst = f.v
		}
	}
	if p.FLOPs > 0 {
		d.FLOPs = p.FLOPs
	}
	if p.SMs > 0 {
		d.Name = cuda.DeviceName()
		// The compute capability decides the tensor-core kernels
		// (sm_80 and newer). Without it, the shared memory per SM tells
		// sm_80 and newer (100 KB and more) from Volta (96 KB) and
		// Turing (64 KB).
		switch {
		case p.Arch > 0:
			d.Arch = p.Arch
		case p.SharedPerSM >= 100<<10:
			d.Arch = 80
		default:
			d.Arch = 70
		}
	}
	if p.FLOPs > 0 {
		// The tensor cores' rate, for the choice between them and the
		// CUDA cores: the driver gives the fp32 rate alone.
		d.Tensor = p.FLOPs * plan.TensorPerFP32(d.Arch)
	}
	return d
}

// planDev is the device forwardKernels plans for; tests replace it to reach
// every variant of the plan on small shapes.
var planDev = planDevice

// forwardPlan is the planner forwardKernels follows; tests replace it to
// run each of the planner's candidates.
var forwardPlan = plan.ForwardPlanOf

func dim(g [3]int) cuda.Dim3 { return cuda.Dim3{X: g[0], Y: g[1], Z: g[2]} }

// align4 rounds a count of floats up to whole 16-byte vectors.
func align4(n int) int { return (n + 3) &^ 3 }

// forwardKernels enqueues y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ as planned by
// plan.ForwardPlanOf for the dtypes of W, x and y; a and b nil (r = 0) is
// the base product alone. Shapes past the grid limits are refused before
// anything is enqueued.
//
// W of any dtype is read as it is stored, by the kernel variant of its
// dtype; an NF4 W by lora_forward_small_nf4, lora_forward_m*_nf4 or
// lora_forward_tiled_nf4 (the plan's choice), which form each value from its
// code and absmax in registers or in a shared-memory tile. A half x in W's dtype is read as it is by the tensor-core kernels
// and by lora_forward_small (plan.Forward.XNative); the other kernels read
// float32, so their plans first widen a half x into the scratch memory
// (exactly). A
// half y is rounded by lora_forward_reduce where the plan is fused, and
// otherwise the main kernel writes float32 into the scratch memory, which
// one lora_convert then rounds into y.
func forwardKernels(y, x, w, a, b *Matrix, s float32) error {
	n, in, out, r := x.rows, x.cols, w.rows, 0
	if a != nil {
		r = a.rows
	}
	if n > math.MaxInt32 || in > math.MaxInt32 || out+r > math.MaxInt32 {
		return fmt.Errorf("%w: %d×%d by %d×%d with rank %d does not fit the kernels' int", ErrShape, n, in, out, in, r)
	}
	ty := plan.Types{W: plan.Elem(w.dt), X: plan.Elem(x.dt), Y: plan.Elem(y.dt)}
	if w.dt == NF4 {
		ty.Block = w.buf.block
	}
	f := forwardPlan(planDev(), n, in, out, r, ty)
	for _, l := range f.Launches() {
		if l.Grid[1] > 65535 || l.Grid[2] > 65535 {
			return fmt.Errorf("%w: out = %d, rank %d need a grid of %v blocks for %s, above the GPU's grid limit",
				ErrShape, out, r, l.Grid, l.Kernel.Name)
		}
	}
	// The plan's conversions: a 16-bit x that its kernels read in float32,
	// a 16-bit y that an unfused plan writes in float32.
	stageX, stageY := f.WidenX != nil, f.RoundY != nil
	// The scratch memory: the plan's workspace, then x widened, then y in
	// float32, each 16-byte aligned.
	xAt, yAt, total := align4(f.Workspace), 0, align4(f.Workspace)
	if stageX {
		total += align4(n * in)
	}
	yAt = total
	if stageY {
		total += align4(n * out)
	}
	if total > 0 || r > 0 {
		dev.Lock()
		defer dev.Unlock()
	}
	var ws cuda.Ptr
	if total > 0 {
		p, err := scratch(total)
		if err != nil {
			return err
		}
		ws = p
	}
	// operand appends m, or the scratch memory at floats off when staged.
	operand := func(k *launchArgs, m *Matrix, staged bool, off int) {
		if staged {
			k.ptr(ws + cuda.Ptr(4*off))
		} else {
			k.mat(m)
		}
	}
	if stageX {
		var k launchArgs
		k.mat(x).ptr(ws + cuda.Ptr(4*xAt)).int64(int64(n) * int64(in))
		if err := launch(f.WidenX.Kernel.Name, dim(f.WidenX.Grid), cuda.Dim3{X: f.WidenX.Kernel.Threads, Y: 1, Z: 1}, &k); err != nil {
			return err
		}
	}
	if !f.Fused {
		if f.Shrink != nil {
			var k launchArgs
			operand(&k, x, stageX, xAt)
			k.mat(a).ptr(ws).int32(n).int32(in).int32(r).float(s)
			l := f.Shrink
			if err := launch(l.Kernel.Name, dim(l.Grid), cuda.Dim3{X: l.Kernel.Threads, Y: 1, Z: 1}, &k); err != nil {
				return err
			}
		}
		// An NF4 W (lora_forward_tiled_nf4) adds its absmax after its codes
		// and its block size last.
		var k launchArgs
		operand(&k, x, stageX, xAt)
		k.mat(w)
		if w.dt == NF4 {
			k.nf4Absmax(w)
		}
		if r > 0 {
			k.ptr(ws)
		} else {
			k.ptr(0)
		}
		k.mat(b)
		operand(&k, y, stageY, yAt)
		k.int32(n).int32(in).int32(out).int32(r)
		if w.dt == NF4 {
			k.int32(w.buf.block)
		}
		if err := launch(f.Main.Kernel.Name, dim(f.Main.Grid), cuda.Dim3{X: f.Main.Kernel.Threads, Y: 1, Z: 1}, &k); err != nil {
			return err
		}
		if !stageY {
			return nil
		}
		var ck launchArgs
		ck.ptr(ws + cuda.Ptr(4*yAt)).mat(y).int64(int64(n) * int64(out))
		return launch(f.RoundY.Kernel.Name, dim(f.RoundY.Grid), cuda.Dim3{X: f.RoundY.Kernel.Threads, Y: 1, Z: 1}, &ck)
	}
	// An NF4 W (lora_forward_small_nf4 or lora_forward_m*_nf4) adds its
	// absmax after its codes and its block size last.
	var k launchArgs
	operand(&k, x, stageX, xAt)
	k.mat(w)
	if w.dt == NF4 {
		k.nf4Absmax(w)
	}
	k.mat(a)
	if f.Reduce == nil {
		k.mat(y)
	} else {
		k.ptr(ws)
	}
	k.int32(n).int32(in).int32(out).int32(r)
	if w.dt == NF4 {
		k.int32(w.buf.block)
	}
	if err := launch(f.Main.Kernel.Name, dim(f.Main.Grid), cuda.Dim3{X: f.Main.Kernel.Threads, Y: 1, Z: 1}, &k); err != nil {
		return err
	}
	if f.Reduce == nil {
		return nil
	}
	var rk launchArgs
	rk.ptr(ws).mat(b).mat(y).int32(n).int32(out).int32(r).int32(f.Main.Split).float(s)
	return launch(f.Reduce.Kernel.Name, dim(f.Reduce.Grid), cuda.Dim3{X: f.Reduce.Kernel.Threads, Y: 1, Z: 1}, &rk)
}

// linear enqueues y = x·Wᵀ.
func (gpuBackend) linear(y, x, w *Matrix) error {
	if err := forwardKernels(y, x, w, nil, nil, 0); err != nil {
		return fmt.Errorf("lora: Linear: %w", err)
	}
	return nil
}

// forward enqueues y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, writing y once (see
// forwardKernels and plan.Forward).
func (gpuBackend) forward(y, x, w, a, b *Matrix, s float32) error {
	if err := forwardKernels(y, x, w, a, b, s); err != nil {
		return fmt.Errorf("lora: Forward: %w", err)
	}
	return nil
}

// shrinkKernel enqueues t = s·x·Aᵀ (n×r).
func shrinkKernel(t cuda.Ptr, x, a *Matrix, s float32) error {
	n, in, r := x.rows, x.cols, a.rows
	var k launchArgs
	k.mat(x).mat(a).ptr(t).int32(n).int32(in).int32(r).float(s)
	return launch("lora_shrink",
		cuda.Dim3{X: ceilDiv(n, kernels.ShrinkRows), Y: ceilDiv(r, kernels.ShrinkKs), Z: 1},
		cuda.Dim3{X: kernels.ShrinkThreads, Y: 1, Z: 1}, &k)
}

// axpy enqueues y += alpha·x.
func (gpuBackend) axpy(y *Matrix, alpha float32, x *Matrix) error {
	count := int64(y.rows) * int64(y.cols)
	var k launchArgs
	k.mat(y).mat(x).int64(count).float(alpha)
	blocks := plan.AxpyBlocks(count)
	if err := launch("lora_axpy", cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: kernels.AxpyThreads, Y: 1, Z: 1}, &k); err != nil {
		return fmt.Errorf("lora: Axpy: %w", err)
	}
	return nil
}

// addBias computes y[i,:] += bias[0,:] for every row i; bias is 1×cols(y).
// The kernel sweeps columns over the grid's x (float4 when cols % 4 == 0)
// and rows over its y, with about kernels.BiasBlocks blocks in all.
func (gpuBackend) addBias(y, bias *Matrix) error {
	gx, gy := plan.BiasGrid(y.rows, y.cols)
	var k launchArgs
	k.mat(y).mat(bias).int64(int64(y.rows)).int64(int64(y.cols))
	return launch("lora_add_bias", cuda.Dim3{X: gx, Y: gy, Z: 1}, cuda.Dim3{X: kernels.BiasThreads, Y: 1, Z: 1}, &k)
}

// optBlocks is the grid of an optimizer kernel over count parameters.
func optBlocks(count int64) cuda.Dim3 {
	return cuda.Dim3{X: int(min((count+kernels.OptThreads-1)/kernels.OptThreads, kernels.OptMaxBlocks)), Y: 1, Z: 1}
}

// adamw enqueues one AdamW step over A and B; state holds m then v, each
// over A's elements then B's.
func (gpuBackend) adamw(a, b, da, db, state *Matrix, h adamParams) error {
	ca, cb := int64(a.rows)*int64(a.cols), int64(b.rows)*int64(b.cols)
	var k launchArgs
	k.mat(a).mat(b).mat(da).mat(db).mat(state).int64(ca).int64(cb).
		float(h.decay).float(h.step).float(h.invSqrtBC2).float(h.eps).float(h.beta1).float(h.beta2)
	return launch("lora_adamw", optBlocks(ca+cb), cuda.Dim3{X: kernels.OptThreads, Y: 1, Z: 1}, &k)
}

// sgd enqueues one SGD step over A and B, with momentum when buf is not nil.
func (gpuBackend) sgd(a, b, da, db, buf *Matrix, lr, mom float32) error {
	ca, cb := int64(a.rows)*int64(a.cols), int64(b.rows)*int64(b.cols)
	var k launchArgs
	k.mat(a).mat(b).mat(da).mat(db).mat(buf).int64(ca).int64(cb).float(lr).float(mom)
	return launch("lora_sgd", optBlocks(ca+cb), cuda.Dim3{X: kernels.OptThreads, Y: 1, Z: 1}, &k)
}

// mse enqueues dy = scale·(y − t) (unless dy is nil) and the per-block sums
// of (y − t)², then reads those back, which waits for the queued work, and
// adds them in float64.
func (gpuBackend) mse(dy, y, t *Matrix, scale float32) (float64, error) {
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
	var k launchArgs
	k.mat(y).mat(t).mat(dy).int64(count).float(scale).ptr(dev.partial)
	if err := launch("lora_mse", cuda.Dim3{X: blocks, Y: 1, Z: 1}, cuda.Dim3{X: kernels.MSEThreads, Y: 1, Z: 1}, &k); err != nil {
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
