package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/golora/lora/internal/cpu"
	"github.com/golora/lora/peft"
)

// A model that transformers saved quantized by bitsandbytes in 4 bits
// stores each quantized weight W as packed NF4 codes under W's own name,
// with the tensors of its quantization state beside it: W.absmax,
// W.quant_map, W.quant_state.bitsandbytes__nf4, and W.nested_absmax and
// W.nested_quant_map when it is double-quantized. merge writes such a
// model unquantized: every 4-bit weight dequantized to the dtype it had
// before quantization (its quant_state's, or -dtype), each value exactly
// NF4Table[code]·absmax before the one rounding to that dtype, and merged
// where the adapter targets it; the tensors of the quantization state left
// out, of the shards and of the index; config.json without its
// quantization_config.

// quantized is what merge and inspect know of the 4-bit weights of a
// model.
type quantized struct {
	// weights holds each 4-bit weight that could be read, checked, by the
	// name of the tensor of its codes, without its codes and absmax: those
	// are read again, a weight at a time, when it is written (the absmax of
	// a whole model can be gigabytes).
	weights map[string]*peft.QuantizedWeight
	errs    []error          // why the others could not be read, in order
	bytes   map[string]int64 // of each weight's tensors of quantization state
	aux     int              // the tensors of their quantization state
	// config is config.json without quantization_config, which merge
	// writes in place of a copy; nil to copy config.json as it is.
	config []byte
}

// scanQuantized finds the weights of m that bitsandbytes stores in 4 bits
// and reads the state of each, with every check of peft's reader: quant
// type nf4, a block size from 32 to 4096, a quant_map that is the NF4
// table, the lengths of the tensors against the state, every absmax
// finite. A model without a tensor of quantization state, the tensor that
// makes a weight a 4-bit one, has none: nil.
func scanQuantized(m *model) *quantized {
	if !hasQuantState(m) {
		return nil
	}
	q := &quantized{weights: map[string]*peft.QuantizedWeight{}, bytes: map[string]int64{}}
	files := m.files()
	names, err := files.QuantizedWeights()
	if err != nil {
		q.errs = append(q.errs, err)
	}
	for _, name := range names {
		w, err := files.QuantizedState(name)
		if err != nil {
			q.errs = append(q.errs, err)
			continue
		}
		w.Absmax = nil
		q.weights[name] = w
	}
	for name, ref := range m.where {
		if w, ok := peft.QuantizedAux(name); ok && q.weights[w] != nil {
			q.bytes[w] += ref.info.Length
			q.aux++
		}
	}
	return q
}

// findQuantized returns the 4-bit weights of m for a merge (nil for a
// model without any), refusing a model with one that it cannot read, so
// that nothing is written for a model that merge cannot write. A
// config.json beside such a model that has a quantization_config must say
// bitsandbytes, 4 bits, nf4; the merge writes it without.
func findQuantized(m *model) (*quantized, error) {
	q := scanQuantized(m)
	if q == nil {
		return nil, nil
	}
	if len(q.errs) > 0 {
		return nil, q.errs[0]
	}
	path := filepath.Join(m.dir, "config.json")
	if !exists(path) {
		return q, nil
	}
	data, err := readSmall(path, maxModelConfigSize)
	if err != nil {
		return nil, err
	}
	qc, err := peft.ParseQuantizationConfig(data)
	if err == nil && qc != nil {
		err = qc.Check()
	}
	if err == nil {
		q.config, err = peft.WithoutQuantizationConfig(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return q, nil
}

// hasQuantState reports whether m has a tensor that QuantizedAux names as
// the quant_state of a weight: a tensor named as part of a 4-bit weight
// that has none is an error for peft, but not a reason to refuse a model
// without 4-bit weights.
func hasQuantState(m *model) bool {
	for name := range m.where {
		if w, ok := peft.QuantizedAux(name); ok && strings.HasPrefix(name[len(w):], ".quant_state.") {
			return true
		}
	}
	return false
}

// files returns the safetensors files of m.
func (m *model) files() peft.Shards {
	sh := make(peft.Shards, len(m.shards))
	for i, s := range m.shards {
		sh[i] = s.st
	}
	return sh
}

// weight returns the 4-bit weight whose codes are the tensor called name,
// or nil.
func (q *quantized) weight(name string) *peft.QuantizedWeight {
	if q == nil {
		return nil
	}
	return q.weights[name]
}

// isAux reports whether the tensor called name is part of the quantization
// state of a 4-bit weight.
func (q *quantized) isAux(name string) bool {
	w, ok := peft.QuantizedAux(name)
	return ok && q.weight(w) != nil
}

// nf4Memory returns the bytes that a 4-bit weight needs while it is
// written, beyond what a float weight of its shape does: its absmax, 8
// bytes a block (read as float32, or as 8-bit codes resolved to float32).
// Its codes are read a block of rows at a time, into the scratch that a
// float weight's block reads its bytes into.
func nf4Memory(q *peft.QuantizedWeight) int64 {
	n := int64(q.Rows) * int64(q.Cols)
	return 8 * ((n + int64(q.BlockSize) - 1) / int64(q.BlockSize))
}

// withAbsmax returns j with its 4-bit weight read again, absmax and all but
// the codes, for the time its tensor is written.
func (w *writer) withAbsmax(j *job) (*job, error) {
	q, err := w.files.QuantizedState(j.in.Name)
	if err != nil {
		return nil, err
	}
	if p := j.nf4; q.Rows != p.Rows || q.Cols != p.Cols || q.BlockSize != p.BlockSize || q.DType != p.DType {
		return nil, fmt.Errorf("the 4-bit weight changed since it was checked: now %d×%d %s in blocks of %d, was %d×%d %s in blocks of %d",
			q.Rows, q.Cols, q.DType, q.BlockSize, p.Rows, p.Cols, p.DType, p.BlockSize)
	}
	jq := *j
	jq.nf4 = q
	return &jq, nil
}

// dequantize writes into vals the values of the elements at:at+len(vals)
// of the 4-bit weight q, whose packed codes r holds: NF4Table[code] times
// the absmax of its block, one float32 rounding, as package lora and
// bitsandbytes compute them. It reads the codes from the start of at's
// block, so that the codes and the absmax it passes on start together.
func (w *writer) dequantize(r io.ReaderAt, q *peft.QuantizedWeight, vals []float32, at int64) error {
	bs := int64(q.BlockSize)
	first, end := at/bs*bs, at+int64(len(vals)) // first is even, as block sizes are
	w.raw = grow(w.raw, int((end+1)/2-first/2))
	if _, err := r.ReadAt(w.raw, first/2); err != nil {
		return err
	}
	cpu.DequantizeNF4(vals, w.raw, q.Absmax[first/bs:], q.BlockSize, int(at-first))
	return nil
}

// quantNote describes the 4-bit weight q for inspect.
func quantNote(q *peft.QuantizedWeight) string {
	s := fmt.Sprintf("nf4, blocks of %d", q.BlockSize)
	if q.DoubleQuant {
		s += ", double-quantized"
	}
	return s + ", dequantized to " + string(q.DType)
}

// errors returns why 4-bit weights could not be read: none for a nil q.
func (q *quantized) errors() []error {
	if q == nil {
		return nil
	}
	return q.errs
}
