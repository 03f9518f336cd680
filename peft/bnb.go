package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/cpu"
	"github.com/golora/lora/internal/natsort"
	"github.com/golora/lora/internal/sysmem"
)

// QuantizedWeight is a weight that bitsandbytes stores in 4 bits, NF4, as
// transformers saves a Linear4bit: Rows×Cols elements in blocks of
// BlockSize, the element of flat index i being
//
//	nf4[code i] · Absmax[i / BlockSize]
//
// where nf4 is bitsandbytes' table of 16 NormalFloat values, from −1 to 1,
// and code i is the high nibble of Codes[i/2] for an even i, the low one for
// an odd i. An odd element count leaves the last low nibble unused.
type QuantizedWeight struct {
	Name      string // the tensor of the packed codes, "model.layers.0.mlp.down_proj.weight"
	Rows      int    // out features: quant_state's shape[0]
	Cols      int    // in features: quant_state's shape[1]
	BlockSize int    // elements per absmax: a power of two from 32 to 4096
	// DType is quant_state's dtype, the weight's dtype before quantization
	// and the one bitsandbytes dequantizes it to: F32, F16 or BF16.
	DType DType
	// Codes holds the packed 4-bit codes, ⌈Rows·Cols/2⌉ bytes, read as
	// bytes whatever dtype the file gives the tensor (bnb_4bit_quant_storage).
	Codes []byte
	// Absmax holds the scale of each block, ⌈Rows·Cols/BlockSize⌉ of them,
	// finite; with double quantization, as bitsandbytes dequantizes it.
	Absmax []float32
	// DoubleQuant says the file stores Absmax double-quantized
	// (bnb_4bit_use_double_quant): 8-bit codes into nested_quant_map with a
	// float32 scale per nested_blocksize of them and an offset.
	DoubleQuant bool
}

// nf4 is bitsandbytes' NF4 table as float32, the code of each value its
// index: get_4bit_type("nf4") in bitsandbytes/functional.py, the same
// numbers as _NF4_QUANT_TABLE in bitsandbytes/backends/utils.py and the
// NF4 tables of csrc/kernels.cu and csrc/cpu_ops.cpp. Two of its Python
// literals there (0.24611230194568634, 0.44070982933044434) differ from
// the float64 values of these float32 numbers, but round to them. It is the
// table package lora computes with.
var nf4 = cpu.NF4Table

// The names bitsandbytes gives the tensors of a 4-bit weight W, beside W
// itself (Linear4bit._save_to_state_dict and QuantState.as_dict(packed=True)
// in bitsandbytes): W + one of these suffixes, and W + quantStateInfix + the
// quant type, the tensor of U8 bytes holding the rest of the state as JSON.
const (
	suffixAbsmax         = ".absmax"
	suffixQuantMap       = ".quant_map"
	suffixNestedAbsmax   = ".nested_absmax"
	suffixNestedQuantMap = ".nested_quant_map"
	quantStateInfix      = ".quant_state.bitsandbytes__"
)

// maxQuantState bounds the bytes of a quant_state tensor, JSON of about 200
// bytes.
const maxQuantState = 64 << 10

// nestedQuantMapLen is the length of nested_quant_map: one value per 8-bit
// code.
const nestedQuantMapLen = 256

// QuantizedAux reports whether the tensor called name is one that
// bitsandbytes saves beside a 4-bit weight (its .absmax, .quant_map,
// .nested_absmax, .nested_quant_map or .quant_state.bitsandbytes__*
// tensor), and returns the name of that weight. It looks at the name only.
// A model whose 4-bit weights are read as QuantizedWeights has no other use
// for these tensors: a copy of the model that stores those weights otherwise
// leaves them out.
func QuantizedAux(name string) (weight string, ok bool) {
	if i := strings.LastIndex(name, quantStateInfix); i > 0 {
		if t := name[i+len(quantStateInfix):]; t != "" && !strings.Contains(t, ".") {
			return name[:i], true
		}
	}
	for _, suffix := range []string{suffixAbsmax, suffixQuantMap, suffixNestedAbsmax, suffixNestedQuantMap} {
		if w, found := strings.CutSuffix(name, suffix); found && w != "" {
			return w, true
		}
	}
	return "", false
}

// Shards is the safetensors files of one model stored in several (the
// shards that model.safetensors.index.json lists), searched as one. A 4-bit
// weight and the tensors of its quantization state may lie in different
// shards.
type Shards []*Safetensors

// Tensor returns the tensor called name and the file that holds it, the
// first in order if several do.
func (sh Shards) Tensor(name string) (TensorInfo, *Safetensors, bool) {
	for _, s := range sh {
		if t, ok := s.Tensor(name); ok {
			return t, s, true
		}
	}
	return TensorInfo{}, nil, false
}

// check refuses nil files.
func (sh Shards) check() error {
	for i, s := range sh {
		if s == nil {
			return fmt.Errorf("peft: file %d of the shards is a nil Safetensors: %w", i, lora.ErrNil)
		}
	}
	return nil
}

// find returns the tensor called name and its file, ok false if no file
// has it, and an error wrapping ErrInconsistent if two do.
func (sh Shards) find(name string) (t TensorInfo, s *Safetensors, ok bool, err error) {
	for _, f := range sh {
		u, found := f.Tensor(name)
		if !found {
			continue
		}
		if ok {
			return t, s, false, fmt.Errorf("peft: tensor %s is in two of the shards: %w", quote(name), ErrInconsistent)
		}
		t, s, ok = u, f, true
	}
	return t, s, ok, nil
}

// withPrefix returns the tensors whose names start with prefix, by name.
func (s *Safetensors) withPrefix(prefix string) []TensorInfo {
	i, _ := slices.BinarySearchFunc(s.byName, prefix, func(i int32, p string) int {
		return strings.Compare(s.tensors[i].Name, p)
	})
	var out []TensorInfo
	for ; i < len(s.byName) && strings.HasPrefix(s.tensors[s.byName[i]].Name, prefix); i++ {
		out = append(out, s.tensors[s.byName[i]])
	}
	return out
}

// QuantizedWeights returns the names of the weights stored in 4 bits by
// bitsandbytes, those with a quant_state tensor, in natural order (h.2
// before h.10); see Shards.QuantizedWeights.
func (s *Safetensors) QuantizedWeights() ([]string, error) {
	if s == nil {
		return nil, errNilSafetensors
	}
	return Shards{s}.QuantizedWeights()
}

// QuantizedWeight reads the 4-bit weight whose packed codes are the tensor
// called name (a Module's Weight()); see Shards.QuantizedWeight.
func (s *Safetensors) QuantizedWeight(name string) (*QuantizedWeight, error) {
	if s == nil {
		return nil, errNilSafetensors
	}
	return Shards{s}.QuantizedWeight(name)
}

// QuantizedState reads the 4-bit weight called name but for its codes; see
// Shards.QuantizedState.
func (s *Safetensors) QuantizedState(name string) (*QuantizedWeight, error) {
	if s == nil {
		return nil, errNilSafetensors
	}
	return Shards{s}.QuantizedState(name)
}

// QuantizedWeights returns the names of the weights stored in 4 bits by
// bitsandbytes, in natural order: every W with a tensor
// W.quant_state.bitsandbytes__* in one of the files, whatever its quant
// type (QuantizedWeight refuses those it cannot read). It checks the names
// only, that they make whole weights: an error wraps ErrInconsistent for a
// quant_state without its W, for two quant_state tensors of one W, and for
// a tensor that QuantizedAux counts as part of a weight without a
// quant_state, which a reader of W alone would misread.
func (sh Shards) QuantizedWeights() ([]string, error) {
	if err := sh.check(); err != nil {
		return nil, err
	}
	states := map[string]string{} // the quant_state tensor of each weight
	var aux []string
	for _, s := range sh {
		for _, t := range s.Tensors() {
			w, ok := QuantizedAux(t.Name)
			if !ok {
				continue
			}
			if !strings.HasPrefix(t.Name[len(w):], quantStateInfix) {
				aux = append(aux, t.Name)
				continue
			}
			if prev, dup := states[w]; dup {
				return nil, fmt.Errorf("peft: weight %s has two quantization states, %s and %s: %w", quote(w), quote(prev), quote(t.Name), ErrInconsistent)
			}
			states[w] = t.Name
		}
	}
	weights := slices.SortedFunc(maps.Keys(states), natsort.Compare)
	for _, w := range weights {
		if _, _, ok, err := sh.find(w); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("peft: %s is the quantization state of %s, which is not there: %w", quote(states[w]), quote(w), ErrInconsistent)
		}
	}
	for _, name := range aux {
		if w, _ := QuantizedAux(name); states[w] == "" {
			return nil, fmt.Errorf("peft: tensor %s is named as part of the 4-bit weight %s, which has no quantization state (%s*): %w",
				quote(name), quote(w), quote(w+quantStateInfix), ErrInconsistent)
		}
	}
	return weights, nil
}

// QuantizedWeight reads the 4-bit weight whose packed codes are the tensor
// called name, as transformers saves a bitsandbytes Linear4bit M (name
// M.weight), from whichever files hold its tensors:
//
//	name                               the codes: U8 [⌈n/2⌉, 1], or the same bytes as
//	                                   another dtype (bnb_4bit_quant_storage)
//	name.quant_state.bitsandbytes__nf4 U8: JSON {"quant_type", "blocksize", "dtype",
//	                                   "shape", and with double quantization
//	                                   "nested_blocksize", "nested_dtype", "nested_offset"}
//	name.quant_map                     F32 [16]: the NF4 table
//	name.absmax                        F32 [blocks], or with double quantization U8 [blocks]
//	name.nested_absmax                 F32 [⌈blocks/nested_blocksize⌉]
//	name.nested_quant_map              F32 [256]
//
// with n = shape[0]·shape[1] and blocks = ⌈n/blocksize⌉. Double-quantized
// absmax is resolved to float32 as bitsandbytes' dequantize_4bit does it:
//
//	Absmax[i] = nested_quant_map[absmax[i]] · nested_absmax[i / nested_blocksize] + nested_offset
//
// in float32, the product rounded before the sum (see resolveAbsmax).
//
// It checks everything before it returns: the quant type, nf4 only (fp4
// and any other is an error wrapping ErrUnsupported), blocksize a power of
// two from 32 to 4096, dtype float32, float16 or bfloat16, shape two
// positive integers, quant_map bit for bit the NF4 table, nested_dtype
// float32, every tensor's dtype and length against the state, the state's
// JSON (no unknown, duplicate or missing field, no null, integers where
// bitsandbytes has them), and every Absmax finite (an error wrapping
// lora.ErrNonFinite otherwise). Each error names the tensor and the field;
// one for a weight with no quant_state wraps ErrNotFound. The pad nibble of
// an odd element count is not checked: bitsandbytes' backends write
// different values there and none reads it.
func (sh Shards) QuantizedWeight(name string) (*QuantizedWeight, error) {
	q, err := sh.quantizedWeight(name, true)
	if err != nil {
		return nil, err
	}
	_, codes, _, _ := sh.find(name) // found, and in one file, as quantizedWeight checked
	if q.Codes, err = codes.Bytes(name); err != nil {
		return nil, err
	}
	return q, nil
}

// QuantizedState is QuantizedWeight without reading the codes: it makes
// every check that QuantizedWeight makes and returns the same weight, but
// with Codes nil, for a reader that takes the codes from the tensor called
// name a few at a time (Safetensors.Section) instead of holding them all:
// the packed codes are ⌈n/2⌉ bytes, the Absmax returned 4 bytes a block.
func (sh Shards) QuantizedState(name string) (*QuantizedWeight, error) {
	return sh.quantizedWeight(name, false)
}

// quantizedWeight reads and checks the 4-bit weight called name, all but
// its codes; withCodes says whether the caller reads them next, for the
// check of the memory that needs.
func (sh Shards) quantizedWeight(name string, withCodes bool) (*QuantizedWeight, error) {
	if err := sh.check(); err != nil {
		return nil, err
	}
	codes, _, ok, err := sh.find(name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("peft: no tensor %s: %w", quote(name), ErrNotFound)
	}
	var states []TensorInfo
	var stateFile *Safetensors
	for _, s := range sh {
		for _, t := range s.withPrefix(name + quantStateInfix) {
			if w, _ := QuantizedAux(t.Name); w == name {
				states, stateFile = append(states, t), s
			}
		}
	}
	switch {
	case len(states) == 0:
		return nil, fmt.Errorf("peft: %s is not a 4-bit weight: no tensor %s*: %w", quote(name), quote(name+quantStateInfix), ErrNotFound)
	case len(states) > 1 && states[0].Name == states[1].Name:
		return nil, fmt.Errorf("peft: tensor %s is in two of the shards: %w", quote(states[0].Name), ErrInconsistent)
	case len(states) > 1:
		return nil, fmt.Errorf("peft: weight %s has two quantization states, %s and %s: %w", quote(name), quote(states[0].Name), quote(states[1].Name), ErrInconsistent)
	}
	qs := states[0]
	typ := qs.Name[len(name)+len(quantStateInfix):]
	switch typ {
	case "nf4":
	case "fp4":
		return nil, fmt.Errorf("peft: %s: quant type fp4 is not supported, only nf4: %w", quote(qs.Name), ErrUnsupported)
	default:
		return nil, fmt.Errorf("peft: %s: unknown quant type %s, want nf4: %w", quote(qs.Name), quote(typ), ErrUnsupported)
	}
	if qs.DType != U8 {
		return nil, fmt.Errorf("peft: %s: dtype %s, want U8 (bytes of JSON): %w", quote(qs.Name), qs.DType, ErrFormat)
	}
	if qs.Length > maxQuantState {
		return nil, fmt.Errorf("peft: %s: %d bytes, more than the %d a quantization state may have: %w", quote(qs.Name), qs.Length, maxQuantState, ErrFormat)
	}
	data, err := stateFile.bytes(qs, qs.Length)
	if err != nil {
		return nil, err
	}
	st, err := parseQuantState(data, qs.Name)
	if err != nil {
		return nil, err
	}
	n := int64(st.rows) * int64(st.cols) // parseQuantState bounds it
	if want := (n + 1) / 2; codes.Length != want {
		return nil, fmt.Errorf("peft: %s: %d bytes of codes (%s %v), want %d for shape [%d, %d] in %s: %w",
			quote(name), codes.Length, codes.DType, codes.Shape, want, st.rows, st.cols, quote(qs.Name), ErrInconsistent)
	}
	blocks := (n + int64(st.blockSize) - 1) / int64(st.blockSize)

	// The other tensors, checked before any is read.
	type part struct {
		suffix string
		dtype  DType
		count  int64
		info   TensorInfo
		file   *Safetensors
	}
	parts := []*part{{suffix: suffixQuantMap, dtype: F32, count: int64(len(nf4))}, {suffix: suffixAbsmax, dtype: F32, count: blocks}}
	quantMap, absmax := parts[0], parts[1]
	var nestedAbsmax, nestedMap *part
	if st.nested {
		absmax.dtype = U8
		nestedAbsmax = &part{suffix: suffixNestedAbsmax, dtype: F32, count: (blocks + int64(st.nestedBlockSize) - 1) / int64(st.nestedBlockSize)}
		nestedMap = &part{suffix: suffixNestedQuantMap, dtype: F32, count: nestedQuantMapLen}
		parts = append(parts, nestedAbsmax, nestedMap)
	} else {
		for _, suffix := range []string{suffixNestedAbsmax, suffixNestedQuantMap} {
			if _, _, ok, _ := sh.find(name + suffix); ok {
				return nil, fmt.Errorf("peft: %s has no nested_blocksize, nested_dtype nor nested_offset, but tensor %s is there: %w",
					quote(qs.Name), quote(name+suffix), ErrInconsistent)
			}
		}
	}
	var need int64
	if withCodes {
		need = codes.Length
	}
	for _, p := range parts {
		var ok bool
		p.info, p.file, ok, err = sh.find(name + p.suffix)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("peft: 4-bit weight %s has no tensor %s: %w", quote(name), quote(name+p.suffix), ErrInconsistent)
		}
		if p.info.DType != p.dtype {
			note := ""
			if p == absmax {
				note = " (U8 with nested_* fields in the quantization state, F32 without)"
			}
			return nil, fmt.Errorf("peft: %s: dtype %s, want %s%s: %w", quote(p.info.Name), p.info.DType, p.dtype, note, ErrFormat)
		}
		if p.info.Elements() != p.count {
			return nil, fmt.Errorf("peft: %s: %d elements (shape %v), want %d for %s: %w",
				quote(p.info.Name), p.info.Elements(), p.info.Shape, p.count, st.lengthNote(p.suffix), ErrInconsistent)
		}
		need = addBytes(need, 4*p.count, p.info.Length)
	}
	if err := sysmem.Check("peft: reading the 4-bit weight "+quote(name), need); err != nil {
		return nil, fmt.Errorf("%w: %w", err, lora.ErrMemory)
	}

	table, err := quantMap.file.Float32s(quantMap.info.Name)
	if err != nil {
		return nil, err
	}
	for i, v := range table {
		if math.Float32bits(v) != math.Float32bits(nf4[i]) {
			return nil, fmt.Errorf("peft: %s: element %d is %v, not %v: not bitsandbytes' NF4 table: %w",
				quote(quantMap.info.Name), i, v, nf4[i], ErrUnsupported)
		}
	}
	q := &QuantizedWeight{
		Name: name, Rows: st.rows, Cols: st.cols, BlockSize: st.blockSize, DType: st.dtype, DoubleQuant: st.nested,
	}
	var abs8 []byte
	if st.nested {
		if abs8, err = absmax.file.Bytes(absmax.info.Name); err != nil {
			return nil, err
		}
		scales, err := nestedAbsmax.file.Float32s(nestedAbsmax.info.Name)
		if err != nil {
			return nil, err
		}
		code, err := nestedMap.file.Float32s(nestedMap.info.Name)
		if err != nil {
			return nil, err
		}
		q.Absmax = resolveAbsmax(abs8, code, scales, st.nestedBlockSize, st.nestedOffset)
	} else if q.Absmax, err = absmax.file.Float32s(absmax.info.Name); err != nil {
		return nil, err
	}
	for i, v := range q.Absmax {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			if !st.nested {
				return nil, fmt.Errorf("peft: %s: block %d has absmax %v: %w", quote(absmax.info.Name), i, v, lora.ErrNonFinite)
			}
			return nil, fmt.Errorf("peft: 4-bit weight %s: block %d has absmax %v, from code %d of %s, %s[%d] and nested_offset %v in %s: %w",
				quote(name), i, v, abs8[i], quote(absmax.info.Name), quote(nestedAbsmax.info.Name), i/st.nestedBlockSize, st.nestedOffset, quote(qs.Name), lora.ErrNonFinite)
		}
	}
	return q, nil
}

// resolveAbsmax returns the absmax of each block of a double-quantized
// weight from its 8-bit codes:
//
//	code[abs8[i]] · scales[i / nestedBlockSize] + offset
//
// each operation in float32, the product rounded before the sum. This is
// what bitsandbytes computes. In bitsandbytes/functional.py,
// dequantize_4bit (and dequantize_blockwise) resolves a nested state as
// dequantize_blockwise(absmax, state2) followed by absmax +=
// quant_state.offset, a separate tensor operation; that dequantize_blockwise
// is code[A] · absmax[block] in the state's dtype, float32 (the default
// backend's _dequantize_blockwise_compute in
// bitsandbytes/backends/default/ops.py multiplies the looked-up codes by
// absmax.view(-1, 1); the CUDA kernel kDequantizeBlockwise in
// csrc/kernels.cu computes code[q] * local_abs_max in float), and the
// default backend's gemm_4bit writes the same order out:
// dequantize_blockwise(...) + absmax_offset. nested_offset comes from the
// JSON as a float64 rounded to float32, as torch.tensor(float(x)) makes it.
func resolveAbsmax(abs8 []byte, code, scales []float32, nestedBlockSize int, offset float32) []float32 {
	out := make([]float32, len(abs8))
	for i, c := range abs8 {
		// The conversion rounds the product to float32, so that the
		// compiler cannot fuse it with the sum.
		out[i] = float32(code[c]*scales[i/nestedBlockSize]) + offset
	}
	return out
}

// quantState is the JSON of a quant_state tensor, checked.
type quantState struct {
	quantType       string
	blockSize       int
	dtype           DType
	rows, cols      int
	nested          bool
	nestedBlockSize int
	nestedOffset    float32
}

// lengthNote says which fields of the state give the length of the tensor
// with the suffix, for an error message.
func (st *quantState) lengthNote(suffix string) string {
	switch suffix {
	case suffixAbsmax:
		return fmt.Sprintf("shape [%d, %d] in blocks of %d", st.rows, st.cols, st.blockSize)
	case suffixNestedAbsmax:
		return fmt.Sprintf("shape [%d, %d] in blocks of %d, nested_blocksize %d", st.rows, st.cols, st.blockSize, st.nestedBlockSize)
	case suffixQuantMap:
		return "the NF4 table"
	}
	return "one value per 8-bit code"
}

// The fields of a quant_state's JSON, as QuantState.as_dict writes them.
var quantStateFields = []string{"quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"}

// torchFloat gives the names of torch's floating-point dtypes as
// bitsandbytes writes a quant_state's dtype: str(torch.bfloat16) with the
// characters of "torch." stripped from both ends, "bfloat16".
// QuantState.from_dict reads it back with getattr(torch, name), so a name
// with its "torch." prefix does not load there, and is not accepted here.
var torchFloat = map[string]DType{"float32": F32, "float16": F16, "bfloat16": BF16, "float64": F64}

// parseQuantState decodes and checks the JSON of the quant_state tensor
// called tensor. It refuses what bitsandbytes' QuantState.from_dict refuses
// or reads differently (invalid UTF-8, unknown fields) and, beyond it,
// duplicate fields, nulls, values of other types than as_dict writes, and
// any value the reader cannot use.
func parseQuantState(data []byte, tensor string) (*quantState, error) {
	bad := func(field string, sentinel error, format string, args ...any) error {
		return fmt.Errorf("peft: %s: %s %s: %w", quote(tensor), field, fmt.Sprintf(format, args...), sentinel)
	}
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("peft: %s: the quantization state is not valid UTF-8: %w", quote(tensor), ErrFormat)
	}
	fields, err := jsonObject(data)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: the quantization state is not a JSON object: %v: %w", quote(tensor), err, ErrFormat)
	}
	for k := range fields {
		if !slices.Contains(quantStateFields, k) {
			return nil, fmt.Errorf("peft: %s: unknown field %s in the quantization state: %w", quote(tensor), quote(k), ErrUnsupported)
		}
	}
	_, nb := fields["nested_blocksize"]
	_, nd := fields["nested_dtype"]
	_, no := fields["nested_offset"]
	st := &quantState{nested: nb || nd || no}
	for _, k := range quantStateFields {
		v, ok := fields[k]
		if !ok {
			if strings.HasPrefix(k, "nested_") && !st.nested {
				continue
			}
			return nil, fmt.Errorf("peft: %s: the quantization state has no %s: %w", quote(tensor), k, ErrFormat)
		}
		if isNull(v) {
			return nil, bad(k, ErrFormat, "is null")
		}
		switch k {
		case "quant_type":
			if err := json.Unmarshal(v, &st.quantType); err != nil {
				return nil, bad(k, ErrFormat, "is %s, not a string", excerpt(string(v)))
			}
			if st.quantType != "nf4" {
				return nil, bad(k, ErrUnsupported, "is %s, want \"nf4\"", quote(st.quantType))
			}
		case "blocksize", "nested_blocksize":
			b, ok := jsonInt(v)
			if !ok {
				return nil, bad(k, ErrFormat, "is %s, not an integer", excerpt(string(v)))
			}
			if b < 32 || b > 4096 || b&(b-1) != 0 {
				return nil, bad(k, ErrFormat, "is %d, want a power of two from 32 to 4096", b)
			}
			if k == "blocksize" {
				st.blockSize = int(b)
			} else {
				st.nestedBlockSize = int(b)
			}
		case "dtype", "nested_dtype":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, bad(k, ErrFormat, "is %s, not a string", excerpt(string(v)))
			}
			d, known := torchFloat[s]
			switch {
			case !known:
				return nil, bad(k, ErrFormat, "is %s, not a floating-point dtype of torch", quote(s))
			case k == "dtype" && d == F64:
				return nil, bad(k, ErrUnsupported, "is %s: bitsandbytes quantizes float32, float16 and bfloat16 only", quote(s))
			case k == "nested_dtype" && d != F32:
				return nil, bad(k, ErrUnsupported, "is %s, want \"float32\"", quote(s))
			}
			if k == "dtype" {
				st.dtype = d
			}
		case "shape":
			dims, ok := jsonInts(v)
			if !ok || len(dims) != 2 {
				return nil, bad(k, ErrFormat, "is %s, want [rows, cols]", excerpt(string(v)))
			}
			if dims[0] < 1 || dims[1] < 1 || dims[0] > math.MaxInt32 || dims[1] > math.MaxInt32 {
				return nil, bad(k, ErrFormat, "is %v, want two integers from 1 to %d", dims, math.MaxInt32)
			}
			st.rows, st.cols = int(dims[0]), int(dims[1])
		case "nested_offset":
			var f float64
			if err := json.Unmarshal(v, &f); err != nil {
				return nil, bad(k, ErrFormat, "is %s, not a number", excerpt(string(v)))
			}
			st.nestedOffset = float32(f)
			if math.IsInf(float64(st.nestedOffset), 0) {
				return nil, bad(k, lora.ErrNonFinite, "is %s, beyond float32", excerpt(string(v)))
			}
		}
	}
	return st, nil
}

// jsonObject decodes a JSON object into its members, refusing duplicate
// keys and anything after the object.
func jsonObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil {
		return nil, err
	} else if tok != json.Delim('{') {
		return nil, fmt.Errorf("found %s", excerpt(fmt.Sprint(tok)))
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k := tok.(string) // an object's key is a string, or Token fails
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("duplicate key %s", quote(k))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[k] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("data after the object")
		}
		return nil, err
	}
	return m, nil
}

// jsonInt returns the integer v, written as one (digits, no fraction or
// exponent, as Python's json writes an int), within int64.
func jsonInt(v json.RawMessage) (int64, bool) {
	n, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	return n, err == nil
}

// jsonInts returns the array of integers v.
func jsonInts(v json.RawMessage) ([]int64, bool) {
	var raw []json.RawMessage
	if err := json.Unmarshal(v, &raw); err != nil || raw == nil {
		return nil, false
	}
	out := make([]int64, len(raw))
	for i, r := range raw {
		n, ok := jsonInt(r)
		if !ok {
			return nil, false
		}
		out[i] = n
	}
	return out, true
}

// Matrix returns a new NF4 lora.Matrix holding the weight's codes and
// absmax as they are (lora.NewQuantizedFrom): its values are exactly those
// bitsandbytes dequantizes the weight to, before rounding to DType. The
// caller frees it.
func (q *QuantizedWeight) Matrix() (*lora.Matrix, error) {
	m, err := lora.NewQuantizedFrom(lora.NF4, q.Rows, q.Cols, q.BlockSize, q.Codes, q.Absmax)
	if err != nil {
		return nil, fmt.Errorf("peft: %s: %w", q.Name, err)
	}
	return m, nil
}
