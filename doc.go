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
// matrix's dtype. A base weight W may also be NF4, bitsandbytes' 4-bit
// NormalFloat as QLoRA keeps it (Quantize, NewQuantizedFrom): its exact
// values take part in Forward, Linear and Backward, and Dequantize turns it
// into a float matrix to merge into. A Matrix lives where the backend
// computes: host memory for the CPU backend, GPU memory for the CUDA
// backend. Read, Write and their bits and quantized forms are the only
// copies between the host and a Matrix.
//
// # Backends
//
// One API, three builds, chosen by build tags:
//
//	default         pure Go on gonum; any machine           Backend() == "cpu"
//	-tags cudaemu   the CUDA kernels emulated on the CPU    Backend() == "cudaemu"
//	-tags cuda      the CUDA kernels on an NVIDIA GPU       Backend() == "cuda"
//
// The default build's kernels are Go with AVX2 and AVX-512 assembly on
// amd64 processors that have them (portable loops elsewhere, or with
// -tags purego). The environment variable LORA_CPU, read when the program
// starts, forces a lower level: generic (the portable loops), avx2 (no
// AVX-512 kernel), avx512 (no bf16 dot-product instruction), avx512bf16
// (VDPBF16PS, not AMX) or amx (the default: every kernel the processor
// has). A level the processor lacks, or an unknown value, is ignored. The
// level changes no result beyond the order of float32 sums, except that
// AMX's TDPBF16PS rounds its sums its own way, within the bound of a
// float32 sum (README, the contract).
//
// # Contract
//
// Every exported function and method reports bad input as an error and never
// panics. Errors start with "lora:" and wrap one of the sentinel errors
// (ErrShape, ErrNil, ErrFreed, ErrConfig, ErrMerged, ErrNotMerged,
// ErrNonFinite, ErrAlias, ErrMemory, ErrDevice, ErrDType, ErrFull,
// ErrAdapter; see errors.go), so callers test them with errors.Is. A NaN or
// ±Inf scale or Alpha is ErrNonFinite wherever it is given (NewLayer,
// NewLayerFrom, Bank.Add), as is a NaN or ±Inf where it would spread. A zero
// Matrix (&Matrix{}) is not a matrix: every function refuses it with ErrNil,
// as it refuses a nil one.
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
// must not be read while it is being merged. A merged W is the base of
// every user of W until Unmerge: a Bank over the same W computes with it.
// Matrix.Write and Matrix.Free need exclusive use of that matrix.
package lora
