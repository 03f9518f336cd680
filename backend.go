package lora

// The boundary between the API and a backend. The API (lora.go, dtype.go,
// merge.go, train.go, optim.go, bank.go) checks every argument, takes the
// locks and keeps the bounds; a backend only computes, on arguments already
// checked. Exactly one backend is compiled in, as the variable be:
//
//	fallback_cpu.go   //go:build !cuda && !cudaemu   cpuBackend, on internal/cpu
//	device.go         //go:build cuda || cudaemu     gpuBackend, on package cuda
//
// The operations are an interface, not a table of functions: the
// assertions below make the compiler check, in every build, that the
// backend compiled in provides each of them with exactly these signatures
// (a table's field left unset would compile, and fail only when called).
// The API calls them on be, whose type is concrete, so every call is
// direct, as a plain function call is.

// backend is what a backend computes. Matrices are checked by the API:
// usable, of matching shapes and of the dtypes the operation takes.
type backend interface {
	// name returns the backend's name, which Backend returns.
	name() string
	// sync waits for all queued work and reports a device fault.
	sync() error

	// newBuffer allocates the storage of n elements of dt, zeroed, or
	// refuses with ErrMemory.
	newBuffer(n int, dt DType) (buffer, error)
	// newQuantized allocates the storage of n NF4 elements holding a copy of
	// codes and absmax (checked), or refuses with ErrMemory.
	newQuantized(n, block int, codes []byte, absmax []float32) (buffer, error)
	// newTemp returns float32 storage of n elements for a staging
	// temporary (stage), its contents undefined: every element is written
	// before it is read. releaseTemp gives it back once its Matrix is done.
	newTemp(n int) (buffer, error)
	releaseTemp(m *Matrix)
	// releaseOnCollect arranges for m's storage to be released if m is
	// garbage-collected without Free, where the collector alone would not.
	releaseOnCollect(m *Matrix)
	// convert sets dst ← src (same shape), rounded to dst's dtype.
	convert(dst, src *Matrix) error

	// dequantize writes the values of the NF4 matrix src into dst (F32, F16
	// or BF16, the same shape), each rounded once to dst's dtype.
	dequantize(dst, src *Matrix) error
	// nf4Beyond returns the index and value of the first element of the NF4
	// matrix m whose magnitude is lim or more, or −1 when there is none.
	nf4Beyond(m *Matrix, lim float32) (int, float32, error)

	// directIO reports whether forward and linear take y and x as they are
	// stored; otherwise the API stages them to float32.
	directIO(y, x *Matrix) bool
	// linear computes y = x·Wᵀ.
	linear(y, x, w *Matrix) error
	// forward computes y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ.
	forward(y, x, w, a, b *Matrix, s float32) error
	// backward computes dA, dB and, unless dx is nil, dx (Backward).
	backward(dx, dA, dB, dy, x, w, a, b *Matrix, s float32, merged bool) error
	// axpy computes y += alpha·x.
	axpy(y *Matrix, alpha float32, x *Matrix) error
	// addBias computes y[i,:] += bias[0,:] for every row i.
	addBias(y, bias *Matrix) error

	// absMax returns max |m[i,j]|, non-finite when m holds NaN or ±Inf.
	absMax(m *Matrix) (float32, error)
	// adapterBound returns max|A| and max_i Σₖ|B[i,k]|, in float64.
	adapterBound(a, b *Matrix) (maxA, maxRowB float64, err error)
	// rankFinite reports whether W + c·B·A, as rankUpdate computes it, is
	// finite in W's dtype, without modifying W.
	rankFinite(w, a, b *Matrix, c float32) (bool, error)
	// rankUpdate computes W += c·B·A in place (see mergeMargin).
	rankUpdate(w, a, b *Matrix, c float32) error

	// adamw applies one AdamW step to A and B; state holds m then v.
	adamw(a, b, da, db, state *Matrix, h adamParams) error
	// sgd applies one SGD step to A and B, with momentum when buf is not nil.
	sgd(a, b, da, db, buf *Matrix, lr, mom float32) error
	// mse returns Σ (y − t)² and writes dy = scale·(y − t) unless dy is nil.
	mse(dy, y, t *Matrix, scale float32) (float64, error)
}

// storage is what a Matrix's buffer provides: copies between the host and
// the storage, in float32 values, in 16-bit patterns or as NF4's codes and
// absmax, and its release.
type storage interface {
	readQuantized(codes []byte, absmax []float32) error
	read(dst []float32) error
	write(src []float32) error
	readBits(dst []uint16) error
	writeBits(src []uint16) error
	free()
}

// bankOps is what a backend provides for a Bank (bank_cpu.go,
// bank_device.go): its state, an adapter's slot, and the batched forward.
type bankOps interface {
	backendInit() error
	backendFree()
	backendSet(id int, s *bankSlot, hostB []float32) error
	forward(y, x *Matrix, ids []int32) error
}

var (
	_ backend = be
	_ storage = (*buffer)(nil)
	_ bankOps = (*Bank)(nil)
)
