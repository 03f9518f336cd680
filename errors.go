package lora

import "errors"

// The sentinel errors: every error the package returns wraps one of them,
// so that callers can test it with errors.Is.
var (
	ErrShape     = errors.New("shape mismatch")        // dimensions < 1, lengths or shapes that disagree
	ErrNil       = errors.New("nil argument")          // a nil *Matrix or *Layer, or a zero Matrix
	ErrFreed     = errors.New("use after Free")        // a freed Matrix or Layer
	ErrConfig    = errors.New("invalid configuration") // a setting that cannot be used: a Rank < 1, an unknown Init, an optimizer's or a Bank's, an NF4 block size
	ErrMerged    = errors.New("layer is merged")       // an operation that needs an unmerged layer
	ErrNotMerged = errors.New("layer is not merged")   // Unmerge of an unmerged layer
	ErrNonFinite = errors.New("non-finite value")      // NaN or ±Inf where it would spread: a scale or Alpha, an adapter to merge, a value a dtype cannot hold
	ErrAlias     = errors.New("aliased arguments")     // an output that is also an input
	ErrDevice    = errors.New("device error")          // a fault reported by the GPU
	// ErrMemory is wrapped when an allocation cannot be held: more than the
	// machine's physical memory on the CPU backend, more than the device
	// has free on the GPU. Nothing is allocated then, and the process goes on.
	ErrMemory = errors.New("out of memory")

	// ErrDType is wrapped when a DType is unknown, or is one an operation does
	// not take: ReadBits of an F32 matrix, an adapter A or B (or a gradient dA,
	// dB) that is not F32, a Bank over a half-precision matrix.
	ErrDType = errors.New("unsupported dtype")

	// ErrFull is wrapped by Bank.Add when every slot holds an adapter.
	ErrFull = errors.New("bank is full")
	// ErrAdapter is wrapped when an adapter id names no adapter of the Bank:
	// below -1 in Forward's ids, beyond Capacity, or a free slot.
	ErrAdapter = errors.New("no such adapter")
)
