// Package lora implements LoRA, low-rank adaptation of neural-network weights.
//
// A frozen weight W (out×in) gets a trainable update ΔW = B·A of rank r, with
// A (r×in) and B (out×r). The adapted layer computes, for a batch x (n×in),
//
//	y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ                (unmerged)
//	y = x·Wᵀ   after W ← W + s·B·A        (merged)
//
// where s is the scale Alpha/Rank (Alpha/√Rank with rsLoRA). Merging folds the
// update into W in place, so a merged layer costs exactly what the base layer
// costs; Unmerge takes it out again.
//
// Training changes A and B only: Backward gives their gradients (and the
// gradient of the layer's input), MSE a loss and its gradient, and AdamW or
// SGD update A and B in place, with their state kept on the backend.
//
// All matrices are dense and row-major, in the layout of PyTorch's
// nn.Linear and of PEFT adapter files. Their elements are float32, or, for a
// Matrix made by NewMatrixOf, IEEE binary16 (F16) or bfloat16 (BF16): a base
// weight W and the activations x, y, dy, dx may be of any of the three
// dtypes, each independently, while an adapter's A and B (and dA, dB) are
// float32, as PEFT keeps them over a half-precision model. Every computation
// reads half-precision elements widened exactly to float32, accumulates in
// float32, and rounds each element it writes once, to nearest even, to its
// matrix's dtype. A Matrix lives where the backend
// computes: host memory for the CPU backend, GPU memory for the CUDA backend.
// Read and Write are the only copies between the host and a Matrix.
//
// # Backends
//
// One API, three builds, chosen by build tags:
//
//	default         pure Go on gonum; any machine           Backend() == "cpu"
//	-tags cudaemu   the CUDA kernels emulated on the CPU    Backend() == "cudaemu"
//	-tags cuda      the CUDA kernels on an NVIDIA GPU       Backend() == "cuda"
//
// # Contract
//
// Every exported function and method reports bad input as an error and never
// panics. Errors start with "lora:" and wrap one of the sentinel errors below
// (ErrShape, ErrNil, ErrFreed, ErrConfig, ErrMerged, ErrNotMerged,
// ErrNonFinite, ErrAlias, ErrMemory, ErrDevice), so callers test them with
// errors.Is. A zero Matrix (&Matrix{}) is not a matrix: every function
// refuses it with ErrNil, as it refuses a nil one.
// Shape errors name the shapes that were given and the ones wanted, e.g.
// "lora: Forward: x is 3×5, want n×4".
//
// When a call returns an error, nothing has been modified: no output, no
// weight, no optimizer state.
//
// A backend may run work asynchronously. On the GPU, Forward, Merge, Unmerge
// and the other computing calls check their arguments on the host, enqueue the
// work on the backend's stream and return; argument errors are immediate,
// while a fault of the device itself (an illegal address, an unrecoverable
// error) surfaces, wrapping ErrDevice, at the next Read or Sync. Read and Sync
// wait for all queued work. On the CPU backend every call completes before it
// returns and Sync returns nil.
//
// A device fault is sticky, as CUDA's are: once one has happened, every later
// call that uses the GPU returns an error wrapping ErrDevice and that first
// fault, and the process has to restart to use the GPU again. A Matrix.Free
// that the device fails is such a fault, reported by the next call.
//
// # Concurrency
//
// Forward, Backward and Linear may be called from many goroutines at once, on
// one layer or many, as long as their outputs are distinct. Merge, Unmerge
// and an optimizer's Step modify the layer and need exclusive use of it: a
// Layer serialises them against its own Forward and Backward calls, but W
// belongs to the caller, so a W shared with another Layer or used elsewhere
// must not be read while it is being merged. Matrix.Write and Matrix.Free
// need exclusive use of that matrix.
package lora

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/golora/lora/internal/sysmem"
)

// Sentinel errors, wrapped by every error the package returns.
var (
	ErrShape     = errors.New("shape mismatch")        // dimensions < 1, lengths or shapes that disagree
	ErrNil       = errors.New("nil argument")          // a nil *Matrix or *Layer, or a zero Matrix
	ErrFreed     = errors.New("use after Free")        // a freed Matrix or Layer
	ErrConfig    = errors.New("invalid configuration") // a Config or scale that cannot be used
	ErrMerged    = errors.New("layer is merged")       // an operation that needs an unmerged layer
	ErrNotMerged = errors.New("layer is not merged")   // Unmerge of an unmerged layer
	ErrNonFinite = errors.New("non-finite value")      // NaN or ±Inf where it would spread
	ErrAlias     = errors.New("aliased arguments")     // an output that is also an input
	ErrDevice    = errors.New("device error")          // a fault reported by the GPU
	// ErrMemory is wrapped when an allocation cannot be held: more than the
	// machine's physical memory on the CPU backend, more than the device
	// has free on the GPU. Nothing is allocated then, and the process goes on.
	ErrMemory = errors.New("out of memory")
)

// maxElements bounds the number of elements of one Matrix: 2^40 floats, 4 TiB,
// far beyond any device, small enough that every byte count fits an int64.
const maxElements = 1 << 40

// Backend returns the name of the backend compiled in: "cpu", "cuda" or "cudaemu".
func Backend() string { return backendName }

// Sync waits for all queued work and reports a device fault from earlier
// calls, wrapping ErrDevice. On the CPU backend it returns nil.
func Sync() error { return backendSync() }

// Matrix is a dense, row-major matrix of float32 (or, made by NewMatrixOf,
// of F16 or BF16 elements) stored where the backend computes. The zero value is not a matrix: every function refuses it with
// an error wrapping ErrNil. Create one with NewMatrix or NewMatrixFrom.
type Matrix struct {
	rows, cols int
	dt         DType
	freed      bool
	buf        buffer // backend storage

	// bound ≥ max |element| when boundKnown: Merge and Unmerge keep it up
	// to date so that proving W + s·B·A finite needs no pass over W. Every
	// operation that writes the matrix otherwise clears boundKnown (wrote).
	bound      float64
	boundKnown bool
}

// wrote records that m's elements changed in a way its bound does not follow.
func (m *Matrix) wrote() { m.boundKnown = false }

// NewMatrix returns a zero-filled rows×cols matrix.
func NewMatrix(rows, cols int) (*Matrix, error) { return newMatrix("NewMatrix", rows, cols, nil) }

// newMatrix allocates a rows×cols F32 matrix for op, filled from data unless
// data is nil.
func newMatrix(op string, rows, cols int, data []float32) (*Matrix, error) {
	return newMatrixOf(op, F32, rows, cols, data)
}

// NewMatrixFrom returns a rows×cols matrix holding a copy of data, which is
// row-major and must have exactly rows·cols elements.
func NewMatrixFrom(rows, cols int, data []float32) (*Matrix, error) {
	if data == nil {
		data = []float32{} // nil means "zero-filled" to newMatrix
	}
	return newMatrix("NewMatrixFrom", rows, cols, data)
}

// newMatrixOf allocates a rows×cols matrix of dtype dt for op, filled from
// data unless data is nil.
func newMatrixOf(op string, dt DType, rows, cols int, data []float32) (*Matrix, error) {
	if err := checkDims(op, rows, cols); err != nil {
		return nil, err
	}
	if data != nil && len(data) != rows*cols {
		return nil, fmt.Errorf("lora: %s: len(data) is %d, want %d×%d = %d: %w",
			op, len(data), rows, cols, rows*cols, ErrShape)
	}
	if err := checkRange(op, dt, data); err != nil {
		return nil, err
	}
	buf, err := newBuffer(rows*cols, dt)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %d×%d: %w", op, rows, cols, err)
	}
	// A zero-filled matrix has max |element| = 0; one filled from data is
	// bounded when a Merge first needs it.
	m := &Matrix{rows: rows, cols: cols, dt: dt, buf: buf, boundKnown: data == nil}
	track(m)
	if data != nil {
		if err := m.buf.write(data); err != nil {
			m.Free()
			return nil, fmt.Errorf("lora: %s: %w", op, err)
		}
	}
	return m, nil
}

func checkDims(op string, rows, cols int) error {
	if rows < 1 || cols < 1 {
		return fmt.Errorf("lora: %s: dimensions %d×%d, want both ≥ 1: %w", op, rows, cols, ErrShape)
	}
	if rows > maxElements/cols {
		return fmt.Errorf("lora: %s: %d×%d is more than %d elements: %w", op, rows, cols, maxElements, ErrShape)
	}
	return nil
}

// Dims returns the number of rows and columns. A nil or zero Matrix has 0×0.
func (m *Matrix) Dims() (rows, cols int) {
	if m == nil {
		return 0, 0
	}
	return m.rows, m.cols
}

// Read copies the matrix, row-major, into dst, which must have exactly
// rows·cols elements. F16 and BF16 elements are widened exactly. On an asynchronous backend it first waits for all
// queued work, and reports a device fault as an error wrapping ErrDevice.
func (m *Matrix) Read(dst []float32) error {
	if err := m.usable("Read", "m"); err != nil {
		return err
	}
	if len(dst) != m.rows*m.cols {
		return fmt.Errorf("lora: Read: len(dst) is %d, want %d×%d = %d: %w",
			len(dst), m.rows, m.cols, m.rows*m.cols, ErrShape)
	}
	if err := m.buf.read(dst); err != nil {
		return fmt.Errorf("lora: Read: %w", err)
	}
	return nil
}

// ReadAll returns a new slice holding the matrix, row-major, rows·cols
// elements. Like Read, it first waits for all queued work on an asynchronous
// backend. It refuses (ErrMemory) a copy larger than the machine's memory.
func (m *Matrix) ReadAll() ([]float32, error) {
	if err := m.usable("ReadAll", "m"); err != nil {
		return nil, err
	}
	n := m.rows * m.cols
	if n >= 1<<24 { // 64 MiB and more: worth a look at the machine's memory
		if err := sysmem.Check(fmt.Sprintf("a host copy of %s", m.shape()), 4*int64(n)); err != nil {
			return nil, fmt.Errorf("lora: ReadAll: %w: %w", err, ErrMemory)
		}
	}
	dst := make([]float32, n)
	if err := m.buf.read(dst); err != nil {
		return nil, fmt.Errorf("lora: ReadAll: %w", err)
	}
	return dst, nil
}

// Write copies src, row-major with exactly rows·cols elements, into the
// matrix. Into an F16 or BF16 matrix each value is rounded to nearest even;
// a finite value beyond the dtype's range (1e5 into F16) is refused with
// ErrNonFinite and nothing is written. NaN and ±Inf are stored as they are.
func (m *Matrix) Write(src []float32) error {
	if err := m.usable("Write", "m"); err != nil {
		return err
	}
	if len(src) != m.rows*m.cols {
		return fmt.Errorf("lora: Write: len(src) is %d, want %d×%d = %d: %w",
			len(src), m.rows, m.cols, m.rows*m.cols, ErrShape)
	}
	if err := checkRange("Write", m.dt, src); err != nil {
		return err
	}
	m.wrote()
	if err := m.buf.write(src); err != nil {
		return fmt.Errorf("lora: Write: %w", err)
	}
	return nil
}

// Free releases the matrix's storage. It is idempotent, and safe on nil
// and on a zero Matrix, which holds no storage; every later use of the
// matrix returns an error wrapping ErrFreed (ErrNil for a zero Matrix).
func (m *Matrix) Free() {
	if m == nil || m.freed || m.rows < 1 {
		return
	}
	m.freed = true
	m.buf.free()
}

// usable reports whether m can be used as argument name of op.
func (m *Matrix) usable(op, name string) error {
	if m == nil {
		return fmt.Errorf("lora: %s: %s is nil: %w", op, name, ErrNil)
	}
	if m.rows < 1 || m.cols < 1 {
		return fmt.Errorf("lora: %s: %s is a zero Matrix, not one made by NewMatrix or NewMatrixFrom: %w", op, name, ErrNil)
	}
	if m.freed {
		return fmt.Errorf("lora: %s: %s is freed: %w", op, name, ErrFreed)
	}
	return nil
}

func (m *Matrix) shape() string { return fmt.Sprintf("%d×%d", m.rows, m.cols) }

// Init selects how NewLayer initialises A. B always starts at zero, so a new
// layer computes exactly what its base layer computes.
type Init int

const (
	// InitKaiming draws A from U(−1/√in, 1/√in): PEFT's default,
	// kaiming-uniform with a = √5.
	InitKaiming Init = iota
	// InitGaussian draws A from a normal distribution with mean 0 and
	// standard deviation 1/r, as PEFT's init_lora_weights="gaussian".
	InitGaussian
)

func (i Init) String() string {
	switch i {
	case InitKaiming:
		return "InitKaiming"
	case InitGaussian:
		return "InitGaussian"
	}
	return fmt.Sprintf("Init(%d)", int(i))
}

// Config describes a new adapter.
type Config struct {
	Rank   int     // r, the rank of ΔW = B·A; 1 ≤ Rank ≤ min(in, out)
	Alpha  float32 // scale numerator; 0 means Alpha = Rank (scale 1)
	RSLoRA bool    // scale Alpha/√Rank instead of Alpha/Rank
	Init   Init    // how A is drawn; B starts at zero
	Seed   uint64  // the same Seed gives the same A on every backend
}

// Scale returns s: Alpha/Rank, or Alpha/√Rank with RSLoRA, where an Alpha of
// 0 stands for Rank. It returns 0 when Rank < 1.
func (c Config) Scale() float32 {
	if c.Rank < 1 {
		return 0
	}
	alpha := float64(c.Alpha)
	if alpha == 0 {
		alpha = float64(c.Rank)
	}
	if c.RSLoRA {
		return float32(alpha / math.Sqrt(float64(c.Rank)))
	}
	return float32(alpha / float64(c.Rank))
}

// Layer is a LoRA-adapted linear layer: the frozen base weight W (out×in),
// owned by the caller, and the adapter A (r×in) and B (out×r), owned by the
// layer.
type Layer struct {
	mu     sync.RWMutex // Forward and Backward hold it shared; Merge, Unmerge, Step and Free exclusively
	w      *Matrix
	a, b   *Matrix
	scale  float32
	merged bool
	freed  bool
	opts   []optimizer // the optimizers holding state for this layer
}

// NewLayer returns a layer on the base weight w (out×in) with a new adapter
// of cfg.Rank: A drawn as cfg.Init says from cfg.Seed, B zero. w is not
// copied: the layer computes with it, and Merge modifies it.
func NewLayer(w *Matrix, cfg Config) (*Layer, error) {
	if err := w.usable("NewLayer", "w"); err != nil {
		return nil, err
	}
	out, in := w.rows, w.cols
	if cfg.Rank < 1 || cfg.Rank > min(in, out) {
		return nil, fmt.Errorf("lora: NewLayer: Rank %d, want 1 ≤ Rank ≤ min(in, out) = %d for w %s: %w",
			cfg.Rank, min(in, out), w.shape(), ErrConfig)
	}
	if a := float64(cfg.Alpha); math.IsNaN(a) || math.IsInf(a, 0) {
		return nil, fmt.Errorf("lora: NewLayer: Alpha is %v: %w", cfg.Alpha, ErrConfig)
	}
	if cfg.Init != InitKaiming && cfg.Init != InitGaussian {
		return nil, fmt.Errorf("lora: NewLayer: unknown %v: %w", cfg.Init, ErrConfig)
	}
	host := make([]float32, cfg.Rank*in)
	switch cfg.Init {
	case InitKaiming:
		fillUniform(host, float32(1/math.Sqrt(float64(in))), cfg.Seed)
	case InitGaussian:
		fillNormal(host, 1/float64(cfg.Rank), cfg.Seed)
	}
	a, err := newMatrix("NewLayer: A", cfg.Rank, in, host)
	if err != nil {
		return nil, err
	}
	b, err := newMatrix("NewLayer: B", out, cfg.Rank, nil)
	if err != nil {
		a.Free()
		return nil, err
	}
	return &Layer{w: w, a: a, b: b, scale: cfg.Scale()}, nil
}

// NewLayerFrom returns a layer on the base weight w (out×in) that adopts a
// (r×in) and b (out×r) as its adapter, with scale s. The layer then owns a
// and b: Layer.Free frees them. w must not already hold s·B·A.
func NewLayerFrom(w, a, b *Matrix, scale float32) (*Layer, error) {
	const op = "NewLayerFrom"
	for _, m := range []struct {
		m    *Matrix
		name string
	}{{w, "w"}, {a, "a"}, {b, "b"}} {
		if err := m.m.usable(op, m.name); err != nil {
			return nil, err
		}
	}
	if w == a || w == b || a == b {
		return nil, fmt.Errorf("lora: %s: w, a and b must be three distinct matrices: %w", op, ErrAlias)
	}
	if err := wantF32(op, "a", a); err != nil {
		return nil, err
	}
	if err := wantF32(op, "b", b); err != nil {
		return nil, err
	}
	out, in := w.rows, w.cols
	r := a.rows
	if a.cols != in {
		return nil, fmt.Errorf("lora: %s: a is %s, want r×%d for w %s: %w", op, a.shape(), in, w.shape(), ErrShape)
	}
	if b.rows != out || b.cols != r {
		return nil, fmt.Errorf("lora: %s: b is %s, want %d×%d for w %s and a %s: %w",
			op, b.shape(), out, r, w.shape(), a.shape(), ErrShape)
	}
	if r > min(in, out) {
		return nil, fmt.Errorf("lora: %s: rank %d, want ≤ min(in, out) = %d for w %s: %w",
			op, r, min(in, out), w.shape(), ErrShape)
	}
	if s := float64(scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("lora: %s: scale is %v: %w", op, scale, ErrConfig)
	}
	return &Layer{w: w, a: a, b: b, scale: scale}, nil
}

// W returns the base weight (nil on a nil Layer).
func (l *Layer) W() *Matrix {
	if l == nil {
		return nil
	}
	return l.w
}

// A returns the adapter's down-projection, r×in (nil on a nil Layer).
func (l *Layer) A() *Matrix {
	if l == nil {
		return nil
	}
	return l.a
}

// B returns the adapter's up-projection, out×r (nil on a nil Layer).
func (l *Layer) B() *Matrix {
	if l == nil {
		return nil
	}
	return l.b
}

// Scale returns s, the factor of B·A.
func (l *Layer) Scale() float32 {
	if l == nil {
		return 0
	}
	return l.scale
}

// Rank returns r.
func (l *Layer) Rank() int {
	if l == nil || l.a == nil {
		return 0
	}
	return l.a.rows
}

// Merged reports whether W currently holds W + s·B·A.
func (l *Layer) Merged() bool {
	if l == nil {
		return false
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.merged
}

// check reports whether the layer and its matrices can be used by op.
func (l *Layer) check(op string) error {
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	if l.freed {
		return fmt.Errorf("lora: %s: layer is freed: %w", op, ErrFreed)
	}
	if err := l.w.usable(op, "W"); err != nil {
		return err
	}
	if err := l.a.usable(op, "A"); err != nil {
		return err
	}
	return l.b.usable(op, "B")
}

// Forward computes y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ for x (n×in) into y (n×out), or
// y = x·Wᵀ when the layer is merged. y must be distinct from x and from the
// layer's matrices. x, y and W may each be F32, F16 or BF16: each element of
// y is accumulated in float32 and rounded once to y's dtype (a value beyond
// that dtype's range becomes ±Inf, as in PyTorch).
func (l *Layer) Forward(y, x *Matrix) error {
	const op = "Forward"
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.check(op); err != nil {
		return err
	}
	if err := checkIO(op, y, x, l.w); err != nil {
		return err
	}
	if y == l.a || y == l.b {
		return fmt.Errorf("lora: %s: y is the layer's own A or B: %w", op, ErrAlias)
	}
	y.wrote()
	if l.merged {
		return linearIO(y, x, l.w)
	}
	if nativeIO(op, y, x) {
		return forward(y, x, l.w, l.a, l.b, l.scale)
	}
	return staged(op, []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
		return forward(out[0], in[0], l.w, l.a, l.b, l.scale)
	})
}

// linearIO computes y = x·Wᵀ, staging half-precision x and y unless the
// backend takes them as they are.
func linearIO(y, x, w *Matrix) error {
	if nativeIO("Linear", y, x) {
		return linear(y, x, w)
	}
	return staged("Linear", []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
		return linear(out[0], in[0], w)
	})
}

// checkIO validates y = x·Wᵀ: x is n×in, y is n×out for w out×in, y distinct
// from x and w.
func checkIO(op string, y, x, w *Matrix) error {
	if err := x.usable(op, "x"); err != nil {
		return err
	}
	if err := y.usable(op, "y"); err != nil {
		return err
	}
	out, in := w.rows, w.cols
	if x.cols != in {
		return fmt.Errorf("lora: %s: x is %s, want n×%d: %w", op, x.shape(), in, ErrShape)
	}
	if y.rows != x.rows || y.cols != out {
		return fmt.Errorf("lora: %s: y is %s, want %d×%d for x %s: %w", op, y.shape(), x.rows, out, x.shape(), ErrShape)
	}
	if y == x || y == w {
		return fmt.Errorf("lora: %s: y must be distinct from x and W: %w", op, ErrAlias)
	}
	return nil
}

// Linear computes y = x·Wᵀ for x (n×in) and w (out×in) into y (n×out): the
// base layer alone, nn.Linear without bias. y must be distinct from x and w.
func Linear(y, x, w *Matrix) error {
	const op = "Linear"
	if err := w.usable(op, "w"); err != nil {
		return err
	}
	if err := checkIO(op, y, x, w); err != nil {
		return err
	}
	y.wrote()
	return linearIO(y, x, w)
}

// Axpy computes y += alpha·x for matrices of equal shape, e.g. a residual
// connection. y must be distinct from x.
func Axpy(y *Matrix, alpha float32, x *Matrix) error {
	const op = "Axpy"
	if err := y.usable(op, "y"); err != nil {
		return err
	}
	if err := x.usable(op, "x"); err != nil {
		return err
	}
	if x.rows != y.rows || x.cols != y.cols {
		return fmt.Errorf("lora: %s: x is %s, want %s like y: %w", op, x.shape(), y.shape(), ErrShape)
	}
	if x == y {
		return fmt.Errorf("lora: %s: y must be distinct from x: %w", op, ErrAlias)
	}
	y.wrote()
	return staged(op, []*Matrix{x}, []*Matrix{y}, nil, func(in, io, _ []*Matrix) error {
		return axpy(io[0], alpha, in[0])
	})
}

// AddBias computes y[i,:] += bias[0,:] for every row i of y (n×m): the bias
// of PyTorch's nn.Linear, broadcast over a batch. bias is 1×m and must be
// distinct from y.
func AddBias(y, bias *Matrix) error {
	const op = "AddBias"
	if err := y.usable(op, "y"); err != nil {
		return err
	}
	if err := bias.usable(op, "bias"); err != nil {
		return err
	}
	if bias.rows != 1 || bias.cols != y.cols {
		return fmt.Errorf("lora: %s: bias is %s, want 1×%d for y %s: %w", op, bias.shape(), y.cols, y.shape(), ErrShape)
	}
	if y == bias {
		return fmt.Errorf("lora: %s: y must be distinct from bias: %w", op, ErrAlias)
	}
	y.wrote()
	if err := staged("", []*Matrix{bias}, []*Matrix{y}, nil, func(in, io, _ []*Matrix) error {
		return addBias(io[0], in[0])
	}); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// Merge folds the adapter into the base weight in place: W ← W + s·B·A.
// Afterwards Forward computes x·Wᵀ alone. It refuses, leaving W untouched, a
// merged layer (ErrMerged), and with ErrNonFinite an adapter holding NaN or
// ±Inf (as PEFT's safe_merge does), a W holding NaN or ±Inf, and an update
// that would overflow W's dtype in any element: Merge never creates a NaN or
// ±Inf in W. The proof of finiteness costs no pass over W in the common
// case (see mergeOp); Merge needs exclusive use of W (see the package
// documentation).
//
// On an F16 or BF16 W each element becomes round(W + s·B·A): the stored value
// widened to float32, s·B·A and the sum formed in float32, and the sum
// rounded once, to nearest even, to W's dtype. Merge then Unmerge restores
// each element to within one ulp (of W's dtype) of max(|W|, |s·B·A|), and
// repeated cycles do not drift further than two.
//
// On the GPU, Merge waits for the queued work: it reads back
// A and B, and W's largest magnitude when it is not known, before it
// enqueues the update.
func (l *Layer) Merge() error { return l.mergeOp("Merge", true) }

// Unmerge takes the adapter out of the base weight in place: W ← W − s·B·A.
// It returns an error wrapping ErrNotMerged on a layer that is not merged.
// The subtraction uses bit for bit the same s·B·A that Merge added, so W is
// restored to within one rounding of each element. Like Merge, it refuses
// (ErrNonFinite, W untouched, the layer still merged) a result that would
// hold NaN or ±Inf, which only a W written since Merge can cause.
func (l *Layer) Unmerge() error { return l.mergeOp("Unmerge", false) }

// mergeMargin returns the factor that covers the float32 roundings of a
// rank-r update of W, and the float64 roundings of the bound itself.
//
// rankUpdate computes each element as w' = fl(w + d), with coefficients
// γₖ = fl(c·B[i,k]) and d accumulated from zero in k order,
// dₘ = fl(dₘ₋₁ + fl(γₘ·A[m,j])) (or one fused rounding per step). With
// u = 2⁻²⁴ and every exact intermediate below MaxFloat32, each rounding
// multiplies a magnitude by at most (1 + u), so by induction over the steps
//
//	|γₖ|  ≤ |c|·|B[i,k]|·(1+u)
//	|dₘ|  ≤ Σₖ≤ₘ |γₖ|·|A[k,j]|·(1+u)ᵐ ≤ |c|·Σₖ|B[i,k]|·max|A|·(1+u)ʳ⁺¹
//	|w'|  ≤ (|w| + |d|)·(1+u) ≤ (max|W| + |c|·maxRowB·max|A|)·(1+u)ʳ⁺²
//
// (any other order of the r additions, as a GPU may use, has the same bound).
// (1+u)ʳ⁺² ≤ 1 + 2(r+2)u while (r+2)u ≤ 1, and the float64 sums and
// products that compute the bound are off by less than (r+4)·2⁻⁵³ relative:
// 1 + (2r+8)u covers both. So when that product is below MaxFloat32 no step
// can round to ±Inf, and with finite inputs no NaN can arise either.
func mergeMargin(r int) float64 { return 1 + float64(2*r+8)*0x1p-24 }

// mergeOp applies W ← W + c·B·A with c = ±s. It first proves the result
// finite: with maxA = max|A|, maxRowB = max_i Σₖ|B[i,k]| (adapterBound, a
// pass over the small A and B) and W's cached bound on max|W| (absMax, one
// read pass, only when no bound is known), the bound of mergeMargin decides
// in the common case, and W's cached bound becomes the bound of the result:
// repeated Merge/Unmerge cycles stay one pass over W each. When the bound
// is too coarse, rankFinite computes the result exactly without writing W,
// and the update is refused if any element is not finite.
func (l *Layer) mergeOp(op string, merge bool) error {
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(op); err != nil {
		return err
	}
	if merge && l.merged {
		return fmt.Errorf("lora: %s: %w", op, ErrMerged)
	}
	if !merge && !l.merged {
		return fmt.Errorf("lora: %s: %w", op, ErrNotMerged)
	}
	c := l.scale
	if !merge {
		c = -c
	}
	w := l.w
	maxA, maxRowB, err := adapterBound(l.a, l.b)
	if err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	if !isFinite(maxA) || !isFinite(maxRowB) {
		return fmt.Errorf("lora: %s: A or B holds NaN or Inf, W left unchanged: %w", op, ErrNonFinite)
	}
	if !w.boundKnown {
		m, err := absMax(w)
		if err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		w.bound, w.boundKnown = float64(m), true
	}
	if !isFinite(w.bound) {
		return fmt.Errorf("lora: %s: W holds NaN or Inf, W left unchanged: %w", op, ErrNonFinite)
	}
	grow := mergeMargin(l.a.rows)
	absC := math.Abs(float64(c))
	delta := absC * maxRowB * maxA
	total := (w.bound + delta) * grow
	// A float32 result at most maxFinite(w.dt) rounds to at most that in
	// W's dtype, itself representable: the bound needs no further margin.
	if absC*maxRowB*grow < math.MaxFloat32 && total < maxFinite(w.dt) {
		if err := rankUpdate(w, l.a, l.b, c); err != nil {
			w.wrote()
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		w.bound = roundedBound(w.dt, total)
	} else {
		ok, err := rankFinite(w, l.a, l.b, c)
		if err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
		if !ok {
			sign := "+"
			if !merge {
				sign = "−"
			}
			return fmt.Errorf("lora: %s: W %s s·B·A overflows %s (max|W| ≤ %.4g, |s|·max_i Σₖ|B[i,k]|·max|A| = %.4g), W left unchanged: %w",
				op, sign, w.dt.long(), w.bound, delta, ErrNonFinite)
		}
		w.wrote()
		if err := rankUpdate(w, l.a, l.b, c); err != nil {
			return fmt.Errorf("lora: %s: %w", op, err)
		}
	}
	l.merged = merge
	return nil
}

// isFinite reports whether v is neither NaN nor ±Inf.
func isFinite(v float64) bool { return v-v == 0 }

// Free releases A and B, never W, and the state every optimizer keeps for
// the layer. It is idempotent; a merged layer leaves W merged (Unmerge first
// to restore it). Every later use of the layer returns an error wrapping
// ErrFreed.
func (l *Layer) Free() {
	if l == nil {
		return
	}
	l.mu.Lock()
	if l.freed {
		l.mu.Unlock()
		return
	}
	l.freed = true
	l.a.Free()
	l.b.Free()
	opts := l.opts
	l.opts = nil
	l.mu.Unlock()
	// An optimizer's lock comes before a layer's: release after unlocking.
	for _, o := range opts {
		o.release(l)
	}
}
