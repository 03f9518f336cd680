package peft

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"unicode/utf8"

	"github.com/golora/lora"
)

// Tensor is a tensor held in memory: its raw little-endian bytes with their
// dtype and shape.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Elements returns the number of elements, the product of Shape (0 for a
// nil Tensor).
func (t *Tensor) Elements() int {
	if t == nil {
		return 0
	}
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Float32s returns the tensor converted to float32; its dtype must be F64,
// F32, F16 or BF16.
func (t *Tensor) Float32s() ([]float32, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	v := make([]float32, t.Elements())
	if err := DecodeFloats(v, t.Data, t.DType); err != nil {
		return nil, fmt.Errorf("peft: tensor %s: %w", quote(t.Name), err)
	}
	return v, nil
}

// check reports whether Data has the length that DType and Shape call for.
func (t *Tensor) check() error {
	if t == nil {
		return fmt.Errorf("peft: the Tensor is nil: %w", lora.ErrNil)
	}
	info := TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	n, err := info.byteLen()
	if err != nil {
		return err
	}
	if int64(len(t.Data)) != n {
		return fmt.Errorf("peft: tensor %s: %d bytes of data, want %d for shape %v of %s: %w",
			quote(t.Name), len(t.Data), n, t.Shape, t.DType, ErrFormat)
	}
	return nil
}

// byteLen returns the number of bytes of t's shape and dtype, checking both.
func (t TensorInfo) byteLen() (int64, error) {
	if len(t.Shape) > maxDims {
		return 0, fmt.Errorf("peft: tensor %s: %d dimensions, more than %d: %w", quote(t.Name), len(t.Shape), maxDims, ErrFormat)
	}
	if !t.DType.Valid() {
		return 0, fmt.Errorf("peft: tensor %s: unknown dtype %s: %w", quote(t.Name), quote(string(t.DType)), ErrFormat)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("peft: tensor %s: negative dimension in shape %v: %w", quote(t.Name), t.Shape, ErrFormat)
		}
	}
	n, ok := shapeBytes(t.Shape, t.DType)
	if !ok {
		return 0, fmt.Errorf("peft: tensor %s: shape %v of %s is more than 2^62 bytes: %w", quote(t.Name), t.Shape, t.DType, ErrFormat)
	}
	return n, nil
}

// EncodeHeader lays out tensors back to back in the order given, setting
// each one's Offset (from the start of the file) and Length, and returns the
// first bytes of the safetensors file that holds them: the 8-byte length and
// the JSON header, with the keys in the same order, padded with spaces to a
// multiple of 8 bytes so that the data is aligned. metadata, if not nil,
// becomes "__metadata__".
//
// It refuses, with an error wrapping ErrFormat, every header that
// ReadSafetensors would refuse or read differently, so that what it writes
// always reads back as it was: names used twice or "__metadata__", names
// and metadata that are not valid UTF-8, names longer than MaxNameLen,
// shapes of more than 64 dimensions, more than 1024 metadata entries, and a
// header longer than MaxHeaderLen. On error the tensors' offsets are left
// as they were.
func EncodeHeader(tensors []TensorInfo, metadata map[string]string) ([]byte, error) {
	if len(metadata) > maxMetadata {
		return nil, fmt.Errorf("peft: metadata has %d entries, more than the %d the reader accepts: %w", len(metadata), maxMetadata, ErrFormat)
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("peft: metadata %s: %s: not valid UTF-8: %w", quote(k), quote(v), ErrFormat)
		}
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, 8))
	buf.WriteByte('{')
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	str := func(s string) {
		enc.Encode(s) // a string always encodes
		buf.Truncate(buf.Len() - 1)
	}
	first := true
	comma := func() {
		if !first {
			buf.WriteByte(',')
		}
		first = false
	}
	if metadata != nil {
		comma()
		str("__metadata__")
		buf.WriteString(":{")
		for i, k := range slices.Sorted(maps.Keys(metadata)) {
			if i > 0 {
				buf.WriteByte(',')
			}
			str(k)
			buf.WriteByte(':')
			str(metadata[k])
		}
		buf.WriteByte('}')
	}
	seen := make(map[string]bool, len(tensors))
	offsets := make([]int64, len(tensors))
	lengths := make([]int64, len(tensors))
	var at int64
	for i := range tensors {
		t := &tensors[i]
		if t.Name == "__metadata__" || seen[t.Name] {
			return nil, fmt.Errorf("peft: tensor name %s used twice or reserved: %w", quote(t.Name), ErrFormat)
		}
		if !utf8.ValidString(t.Name) {
			return nil, fmt.Errorf("peft: tensor name %s is not valid UTF-8: %w", quote(t.Name), ErrFormat)
		}
		if len(t.Name) > MaxNameLen {
			return nil, fmt.Errorf("peft: tensor name %s is longer than %d bytes: %w", quote(t.Name), MaxNameLen, ErrFormat)
		}
		seen[t.Name] = true
		n, err := t.byteLen()
		if err != nil {
			return nil, err
		}
		if at > maxBytes-n {
			return nil, fmt.Errorf("peft: tensors total more than %d bytes: %w", int64(maxBytes), ErrFormat)
		}
		offsets[i], lengths[i] = at, n
		comma()
		str(t.Name)
		fmt.Fprintf(&buf, `:{"dtype":"%s","shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				buf.WriteByte(',')
			}
			fmt.Fprintf(&buf, "%d", d)
		}
		fmt.Fprintf(&buf, `],"data_offsets":[%d,%d]}`, at, at+n)
		at += n
		if buf.Len()-8 > MaxHeaderLen {
			return nil, fmt.Errorf("peft: the header of %d tensors would be more than the reader's limit of %d bytes: %w", len(tensors), MaxHeaderLen, ErrFormat)
		}
	}
	buf.WriteByte('}')
	for buf.Len()%8 != 0 {
		buf.WriteByte(' ')
	}
	if buf.Len()-8 > MaxHeaderLen {
		return nil, fmt.Errorf("peft: the header of %d tensors would be more than the reader's limit of %d bytes: %w", len(tensors), MaxHeaderLen, ErrFormat)
	}
	h := buf.Bytes()
	binary.LittleEndian.PutUint64(h, uint64(len(h)-8))
	for i := range tensors {
		tensors[i].Offset, tensors[i].Length = offsets[i]+int64(len(h)), lengths[i]
	}
	return h, nil
}

// WriteSafetensors writes tensors as one safetensors file, in the order the
// reference implementation uses (larger dtypes first, then by name), with
// metadata as its "__metadata__". It checks every tensor and the header (see
// EncodeHeader) before it writes a byte, so that what it writes reads back
// as it was.
func WriteSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	if w == nil {
		return fmt.Errorf("peft: WriteSafetensors: the Writer is nil: %w", lora.ErrNil)
	}
	order := make([]*Tensor, len(tensors))
	for i := range tensors {
		order[i] = &tensors[i]
		if err := order[i].check(); err != nil {
			return err
		}
	}
	slices.SortStableFunc(order, func(a, b *Tensor) int {
		return cmp.Or(cmp.Compare(dtypeInfo[b.DType].rank, dtypeInfo[a.DType].rank), cmp.Compare(a.Name, b.Name))
	})
	infos := make([]TensorInfo, len(order))
	for i, t := range order {
		infos[i] = TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape}
	}
	h, err := EncodeHeader(infos, metadata)
	if err != nil {
		return err
	}
	if _, err := w.Write(h); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	for _, t := range order {
		if _, err := w.Write(t.Data); err != nil {
			return fmt.Errorf("peft: %w", err)
		}
	}
	return nil
}
