package lora

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/golora/lora/internal/sysmem"
)

// maxElements bounds the number of elements of one Matrix: 2^40 floats, 4 TiB,
// far beyond any device, small enough that every byte count fits an int64.
const maxElements = 1 << 40

// Backend returns the name of the backend compiled in: "cpu", "cuda" or "cudaemu".
func Backend() string { return be.name() }

// Sync waits for all queued work and reports a device fault from earlier
// calls, wrapping ErrDevice. On the CPU backend it returns nil.
func Sync() error { return be.sync() }

// Matrix is a dense, row-major matrix of float32 (or, made by NewMatrixOf,
// of F16 or BF16 elements) stored where the backend computes. The zero value is not a matrix: every function refuses it with
// an error wrapping ErrNil. Create one with NewMatrix or NewMatrixFrom.
type Matrix struct {
	rows, cols int
	dt         DType
	block      int // NF4: the elements per absmax (BlockSize)
	freed      bool
	buf        buffer // backend storage

	// bound ≥ max |element| when boundKnown: Merge and Unmerge keep it up
	// to date so that proving W + s·B·A finite needs no pass over W. Every
	// operation that writes the matrix otherwise clears boundKnown (forgetBound).
	bound      float64
	boundKnown bool

	// least caches, for a BF16 matrix on the CPU, the least nonzero
	// magnitude among its patterns for the bf16 product (cpu.Mat.Least): 0
	// while unknown. forgetBound and Merge's rank update clear it.
	least atomic.Uint32
}

// forgetBound records that m's elements changed in a way its bound does not
// follow, and that its cached least magnitude is unknown.
func (m *Matrix) forgetBound() {
	m.boundKnown = false
	m.least.Store(0)
}

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
	buf, err := be.newBuffer(rows*cols, dt)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %d×%d: %w", op, rows, cols, err)
	}
	// A zero-filled matrix has max |element| = 0; one filled from data is
	// bounded when a Merge first needs it.
	m := &Matrix{rows: rows, cols: cols, dt: dt, buf: buf, boundKnown: data == nil}
	be.releaseOnCollect(m)
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
// matrix. Into an F16 or BF16 matrix each value is rounded to nearest even,
// and a finite value that rounds to ±Inf is refused with ErrNonFinite and
// nothing is written: for F16 a magnitude of 65520 or more (65519 rounds to
// 65504, the largest finite F16), for BF16 one of 0x1.ffp127 or more. NaN
// and ±Inf are stored as they are.
func (m *Matrix) Write(src []float32) error {
	if err := m.usable("Write", "m"); err != nil {
		return err
	}
	if m.dt == NF4 {
		return fmt.Errorf("lora: Write: m is nf4, whose elements come from Quantize or NewQuantizedFrom: %w", ErrDType)
	}
	if len(src) != m.rows*m.cols {
		return fmt.Errorf("lora: Write: len(src) is %d, want %d×%d = %d: %w",
			len(src), m.rows, m.cols, m.rows*m.cols, ErrShape)
	}
	if err := checkRange("Write", m.dt, src); err != nil {
		return err
	}
	m.forgetBound()
	if err := m.buf.write(src); err != nil {
		return fmt.Errorf("lora: Write: %w", err)
	}
	return nil
}

// Free releases the matrix's storage. It is idempotent, and safe on nil
// and on a zero Matrix, which holds no storage; every later use of the
// matrix returns an error wrapping ErrFreed (ErrNil for a zero Matrix).
// On the GPU the free is stream-ordered: the work queued before it still
// reads the memory, and Free does not wait for that work.
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
	Rank   int     // r, the rank of ΔW = B·A: at least 1 (see NewLayer)
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
//
// A Rank above min(in, out) is taken, as PEFT takes it (an r = 80 adapter
// on a 64×64 weight): B·A then has rank at most min(in, out), and every
// operation computes with the r×in A and out×r B as they are, with the same
// arithmetic as at any rank. A Rank below 1 or an unknown Init is refused
// with ErrConfig, a NaN or ±Inf Alpha with ErrNonFinite.
func NewLayer(w *Matrix, cfg Config) (*Layer, error) {
	if err := w.usable("NewLayer", "w"); err != nil {
		return nil, err
	}
	out, in := w.rows, w.cols
	if cfg.Rank < 1 {
		return nil, fmt.Errorf("lora: NewLayer: Rank %d, want ≥ 1: %w", cfg.Rank, ErrConfig)
	}
	if a := float64(cfg.Alpha); math.IsNaN(a) || math.IsInf(a, 0) {
		return nil, fmt.Errorf("lora: NewLayer: Alpha is %v: %w", cfg.Alpha, ErrNonFinite)
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
//
// Several layers may adopt the same a and b (a loop that makes a layer for
// each block of a large W does): they then share one adapter. A Merge or an
// optimizer's Step through one is seen by all, and freeing any of them
// frees a and b for all: the others' later calls return an error wrapping
// ErrFreed, and their A and B are freed matrices. To give layers adapters
// of their own, give each a copy. Any rank r ≥ 1 is taken, above
// min(in, out) included (see NewLayer). A NaN or ±Inf scale is refused with
// ErrNonFinite, as Bank.Add refuses it.
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
	if s := float64(scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return nil, fmt.Errorf("lora: %s: scale is %v: %w", op, scale, ErrNonFinite)
	}
	return &Layer{w: w, a: a, b: b, scale: scale}, nil
}

// W returns the base weight (nil on a nil Layer). W belongs to the caller,
// so W still returns it after Free.
func (l *Layer) W() *Matrix {
	if l == nil {
		return nil
	}
	return l.w
}

// A returns the adapter's down-projection, r×in: nil on a nil or freed
// Layer, whose A is freed.
func (l *Layer) A() *Matrix {
	if l == nil {
		return nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.freed {
		return nil
	}
	return l.a
}

// B returns the adapter's up-projection, out×r: nil on a nil or freed
// Layer, whose B is freed.
func (l *Layer) B() *Matrix {
	if l == nil {
		return nil
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.freed {
		return nil
	}
	return l.b
}

// Scale returns s, the factor of B·A: 0 on a nil or freed Layer.
func (l *Layer) Scale() float32 {
	if l == nil {
		return 0
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.freed {
		return 0
	}
	return l.scale
}

// Rank returns r: 0 on a nil or freed Layer.
func (l *Layer) Rank() int {
	if l == nil {
		return 0
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.freed || l.a == nil {
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
	y.forgetBound()
	if l.merged {
		return linearIO(y, x, l.w)
	}
	if be.directIO(y, x) {
		return be.forward(y, x, l.w, l.a, l.b, l.scale)
	}
	return staged(op, []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
		return be.forward(out[0], in[0], l.w, l.a, l.b, l.scale)
	})
}

// linearIO computes y = x·Wᵀ, staging half-precision x and y unless the
// backend takes them as they are.
func linearIO(y, x, w *Matrix) error {
	if be.directIO(y, x) {
		return be.linear(y, x, w)
	}
	return staged("Linear", []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
		return be.linear(out[0], in[0], w)
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
	if err := wantFloat(op, "x", x); err != nil {
		return err
	}
	if err := wantFloat(op, "y", y); err != nil {
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
	y.forgetBound()
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
	if err := wantFloat(op, "y", y); err != nil {
		return err
	}
	if err := wantFloat(op, "x", x); err != nil {
		return err
	}
	if x.rows != y.rows || x.cols != y.cols {
		return fmt.Errorf("lora: %s: x is %s, want %s like y: %w", op, x.shape(), y.shape(), ErrShape)
	}
	if x == y {
		return fmt.Errorf("lora: %s: y must be distinct from x: %w", op, ErrAlias)
	}
	y.forgetBound()
	return staged(op, []*Matrix{x}, []*Matrix{y}, nil, func(in, io, _ []*Matrix) error {
		return be.axpy(io[0], alpha, in[0])
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
	if err := wantFloat(op, "y", y); err != nil {
		return err
	}
	if err := wantFloat(op, "bias", bias); err != nil {
		return err
	}
	if bias.rows != 1 || bias.cols != y.cols {
		return fmt.Errorf("lora: %s: bias is %s, want 1×%d for y %s: %w", op, bias.shape(), y.cols, y.shape(), ErrShape)
	}
	if y == bias {
		return fmt.Errorf("lora: %s: y must be distinct from bias: %w", op, ErrAlias)
	}
	y.forgetBound()
	if err := staged("", []*Matrix{bias}, []*Matrix{y}, nil, func(in, io, _ []*Matrix) error {
		return be.addBias(io[0], in[0])
	}); err != nil {
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	return nil
}

// Free releases A and B, never W, and the state every optimizer keeps for
// the layer. It is idempotent; a merged layer leaves W merged (Unmerge first
// to restore it). Every later use of the layer returns an error wrapping
// ErrFreed; afterwards A and B return nil and Rank and Scale 0, while W still
// returns the caller's W.
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
