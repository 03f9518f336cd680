// Package peft reads and writes LoRA adapters in the format of Hugging Face
// PEFT, and the safetensors files they and their base models are stored in.
//
// A PEFT adapter is a directory with two files:
//
//	adapter_config.json         the configuration: r, lora_alpha, target_modules, ...
//	adapter_model.safetensors   for each adapted module M of the base model,
//	                            base_model.model.M.lora_A.weight  [r, in]
//	                            base_model.model.M.lora_B.weight  [out, r]
//	                            and any tensor saved whole (modules_to_save)
//
// Load turns such a directory into an Adapter: its Modules, each with A and B
// as float32 on the host and the scale the configuration gives it, and its
// Full tensors, which replace base-model tensors of the same name. As in
// PEFT, only the modules that target_modules selects, less exclude_modules,
// within layers_to_transform, are LoRA layers (Config.Selects); the pairs of
// any other module in the file are left out and named in Adapter.Ignored.
// Save writes one back, in a form PEFT loads, and only what Load reads back
// as it was. Module.NewLayer makes a module a lora.Layer
// on a base weight, and Module.AddTo adds it to a lora.Bank, so that an
// adapter runs, or merges, with package lora.
//
// # Base weights stored transposed
//
// PEFT's ΔW = s·B·A is out×in, the layout of nn.Linear. GPT-2 and a few
// other models use Conv1D, which stores its weight as [in, out] and computes
// y = x·W_stored; their adapters say fan_in_fan_out, PEFT's forward adds
// s·(x·Aᵀ)·Bᵀ to x·W_stored, and its merge adds s·(B·A)ᵀ to W_stored. LoRA on
// an nn.Embedding (lora_embedding_A, lora_embedding_B), whose weight is
// [num_embeddings, dim] = [in, out], is transposed in the same way.
// Module.Transposed reports both cases; WeightShape is the shape as stored.
//
// The rule: Module.NewLayer and Module.AddTo take the base weight in
// nn.Linear's layout, Out×In (LayerShape), for every module. For a
// transposed module that is W_storedᵀ, and then the layer's Forward and the
// Bank's Forward compute the model's forward, x·(W_storedᵀ)ᵀ + s·(x·Aᵀ)·Bᵀ =
// x·W_stored + s·(x·Aᵀ)·Bᵀ, and the layer's Merge leaves W_storedᵀ + s·B·A,
// the transpose of PEFT's merged weight: transpose it back to store it. The
// weight as stored, In×Out, is refused (lora.ErrShape) when In ≠ Out; a
// square weight cannot be told from its transpose, so for a square Conv1D
// module passing W_stored itself silently computes the transposed layer:
// transpose it first. (The lora merge command transposes for itself and
// writes the stored layout.)
//
// # Safetensors
//
// Safetensors is a small format: an 8-byte little-endian length, a JSON
// header of that length naming each tensor's dtype, shape and byte range, and
// the tensors' bytes. This package reads and writes it with its own code
// (encoding/binary, and a JSON scanner for the header) rather than through a
// third-party Go package, because its reader must meet a bar that a
// dependency would have to be shown, and kept, to meet, and the format is
// small enough that owning it costs less than auditing one: on hostile input
// the reader returns an error, never panics, and allocates nothing on the
// strength of a length, count or offset read from the file, only in
// proportion to the bytes actually present; it refuses duplicate names
// (which a decoder into a Go map silently merges), invalid UTF-8 (which
// encoding/json silently replaces), and offsets that overlap, leave gaps or
// run past the end, as the reference implementation does; names are at most
// MaxNameLen bytes, and what it allocates for a header is bounded by
// AllocPerHeaderByte and AllocSlack. Its writer refuses whatever the reader
// would refuse or read differently, so that every file this package writes
// reads back as it was. It is fuzzed (FuzzReadSafetensors, with
// a seed corpus cut from the GPT-2 fixture). It also reads a file's tensors
// one at a time through io.ReaderAt, which a model of many gigabytes needs,
// and writes headers for tensors streamed after them (EncodeHeader).
//
// Tensors in F32, F16 and BF16 (and F64) convert to and from float32; the
// narrowing conversions round to nearest even, as PyTorch does. Tensors of
// every other safetensors dtype are kept as bytes.
//
// # bitsandbytes 4-bit weights
//
// A model that transformers saved quantized by bitsandbytes in 4 bits
// (load_in_4bit, bnb_4bit_quant_type "nf4" in its config.json) stores each
// quantized weight W as packed 4-bit codes under W's own name, with W.absmax,
// W.quant_map and W.quant_state.bitsandbytes__nf4 beside it (and, when
// double-quantized, W.nested_absmax and W.nested_quant_map).
// Safetensors.QuantizedWeights lists such weights and
// Safetensors.QuantizedWeight reads one, checked, with its absmax resolved
// to float32 (QuantizedState all of it but the codes, for a reader that
// streams them); Shards does all three for a model stored in several
// files, whose tensors of one weight may lie in different ones.
// QuantizedAux tells the tensors of a weight's quantization state from the
// model's others.
// ParseQuantizationConfig reads config.json's quantization_config, and
// WithoutQuantizationConfig removes it, for a copy of the model stored
// unquantized. Only nf4 is read: fp4 and 8-bit weights are refused.
//
// # Errors
//
// Errors start with "peft:" and wrap ErrFormat (a file that breaks its
// format), ErrUnsupported (an adapter this package cannot apply, such as
// DoRA), ErrInconsistent (tensors that disagree with each other or with the
// configuration) or ErrNotFound (a module or tensor asked for by a name that
// is not there), or errors of package lora where they mean the same:
// lora.ErrNil for a nil argument or receiver, lora.ErrMemory for data the
// machine's memory cannot hold. Nothing in the package panics on a nil
// receiver or argument. Load and Save check everything before they return
// an adapter or write a file, so an error leaves nothing half-done.
package peft

import "errors"

// Sentinel errors, wrapped by the errors of this package.
var (
	ErrFormat       = errors.New("malformed file")
	ErrUnsupported  = errors.New("unsupported adapter")
	ErrInconsistent = errors.New("inconsistent adapter")
	ErrNotFound     = errors.New("not found")
)
