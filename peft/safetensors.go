package peft

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/sysmem"
)

// MaxHeaderLen is the largest safetensors header accepted, in bytes: the
// limit of the reference implementation.
const MaxHeaderLen = 100_000_000

// MaxNameLen is the longest tensor name accepted, in bytes, by the reader
// and the writer: far above any real name, low enough that a name cannot be
// most of a header.
const MaxNameLen = 64 << 10

// The allocation bound of ReadSafetensors and OpenSafetensors: reading a
// header of n bytes allocates at most AllocPerHeaderByte·n + AllocSlack
// bytes, whatever the header holds.
const (
	AllocPerHeaderByte = 6
	AllocSlack         = 256 << 10
)

// maxBytes bounds the byte count of one tensor and of a whole file: 2^62.
const maxBytes = 1 << 62

// TensorInfo describes one tensor of a safetensors file.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int
	Offset int64 // of its first byte, from the start of the file
	Length int64 // in bytes: the product of Shape times DType.Size()
}

// shapeBytes returns the number of bytes of a tensor of shape and dtype d
// (a known dtype), and false if that is more than maxBytes.
func shapeBytes(shape []int, d DType) (int64, bool) {
	n := int64(d.Size())
	for _, k := range shape {
		if k == 0 {
			return 0, true
		}
	}
	for _, k := range shape {
		if k < 0 || n > maxBytes/int64(k) {
			return 0, false
		}
		n *= int64(k)
	}
	return n, true
}

// Elements returns the number of elements, the product of Shape (1 for a
// scalar).
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= int64(d)
	}
	return n
}

// Safetensors is a safetensors file whose header has been read and checked.
// Tensor data is read on demand, through ReadAt, so a file of any size costs
// only its header in memory.
type Safetensors struct {
	r        io.ReaderAt
	closer   io.Closer
	size     int64
	header   int64 // 8 + header length: where the data begins
	metadata map[string]string
	tensors  []TensorInfo // in header order
	byName   []int32      // indices into tensors, sorted by name
}

// OpenSafetensors opens and checks the safetensors file at path. Close it
// when done.
func OpenSafetensors(path string) (*Safetensors, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("peft: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("peft: %s is not a regular file: %w", path, ErrFormat)
	}
	s, err := ReadSafetensors(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	s.closer = f
	return s, nil
}

// ReadSafetensors reads and checks the header of the size-byte safetensors
// file r. It accepts what the reference implementation accepts:
//
//   - an 8-byte little-endian header length n, with 2 ≤ n ≤ MaxHeaderLen and
//     8 + n ≤ size;
//   - n bytes of valid UTF-8 holding one JSON object, optionally followed by
//     whitespace; its keys are unique; "__metadata__", if present, maps
//     strings to strings; every other key names a tensor whose value has
//     exactly the fields "dtype" (a known DType), "shape" (non-negative
//     integers) and "data_offsets" ([begin, end], relative to the data);
//   - end − begin equal to the tensor's element count times its dtype's size;
//   - tensors that, ordered by offset, tile the rest of the file exactly:
//     no overlap, no gap, nothing past the end, nothing left over;
//
// and, beyond it, refuses shapes of more than 64 dimensions (PyTorch's
// limit), metadata of more than 1024 entries and tensor names longer than
// MaxNameLen bytes.
//
// Every violation is an error wrapping ErrFormat that says what was found,
// quoting at most a few hundred bytes of it; ReadSafetensors never panics.
// It reads only the header, whose length is checked against size before
// anything is allocated for it, and no count, shape or offset taken from the
// file is used for an allocation: for a header of n bytes it allocates at
// most AllocPerHeaderByte·n + AllocSlack bytes in all (the header itself, a
// TensorInfo and a shape per tensor, names that hold escapes), and reading
// a tensor later allocates its length, which has been checked to lie within
// the file.
func ReadSafetensors(r io.ReaderAt, size int64) (*Safetensors, error) {
	if r == nil {
		return nil, fmt.Errorf("peft: ReadSafetensors: the ReaderAt is nil: %w", lora.ErrNil)
	}
	if size < 8 {
		return nil, formatErr("file is %d bytes, too short for the 8-byte header length", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, fmt.Errorf("peft: safetensors: reading header length: %w", err)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	if n > uint64(size-8) {
		return nil, formatErr("header length %d runs past the end of the %d-byte file", n, size)
	}
	if n > MaxHeaderLen {
		return nil, formatErr("header length %d is more than the limit of %d bytes", n, MaxHeaderLen)
	}
	if n < 2 {
		return nil, formatErr("header length %d is too short for a JSON object", n)
	}
	hdr := make([]byte, n)
	if _, err := r.ReadAt(hdr, 8); err != nil {
		return nil, fmt.Errorf("peft: safetensors: reading %d-byte header: %w", n, err)
	}
	s, err := parseHeader(hdr)
	if err != nil {
		return nil, err
	}
	s.r = r
	s.size = size
	s.header = 8 + int64(n)
	if err := s.layout(); err != nil {
		return nil, err
	}
	return s, nil
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("peft: safetensors: "+format+": %w", append(args, ErrFormat)...)
}

// layout checks that the tensors tile the data section exactly and makes
// their offsets absolute.
func (s *Safetensors) layout() error {
	order := make([]int32, len(s.tensors))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(i, j int32) int {
		a, b := s.tensors[i], s.tensors[j]
		return cmp.Or(cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Length, b.Length))
	})
	data := s.size - s.header
	var at int64
	for _, i := range order {
		t := s.tensors[i]
		if t.Offset > data || t.Length > data-t.Offset {
			return formatErr("%s: data_offsets [%d, %d] run past the %d bytes of data", quote(t.Name), t.Offset, t.Offset+t.Length, data)
		}
		if t.Offset < at {
			return formatErr("%s: data_offsets [%d, %d] overlap another tensor's, which ends at %d", quote(t.Name), t.Offset, t.Offset+t.Length, at)
		}
		if t.Offset > at {
			return formatErr("%s: data_offsets [%d, %d] leave bytes %d to %d unused", quote(t.Name), t.Offset, t.Offset+t.Length, at, t.Offset)
		}
		at = t.Offset + t.Length
	}
	if at != data {
		return formatErr("tensors end at byte %d of the data, but it has %d bytes", at, data)
	}
	for i := range s.tensors {
		s.tensors[i].Offset += s.header
	}
	return nil
}

// errNilSafetensors is returned by the methods of a nil *Safetensors.
var errNilSafetensors = fmt.Errorf("peft: safetensors: the Safetensors is nil: %w", lora.ErrNil)

// Close closes the file opened by OpenSafetensors; it does nothing for one
// made by ReadSafetensors, nor for a nil one.
func (s *Safetensors) Close() error {
	if s == nil || s.closer == nil {
		return nil
	}
	c := s.closer
	s.closer = nil
	return c.Close()
}

// Size returns the size of the file in bytes (0 for a nil Safetensors).
func (s *Safetensors) Size() int64 {
	if s == nil {
		return 0
	}
	return s.size
}

// DataOffset returns where the tensor data begins: 8 plus the header length
// (0 for a nil Safetensors).
func (s *Safetensors) DataOffset() int64 {
	if s == nil {
		return 0
	}
	return s.header
}

// Metadata returns the header's "__metadata__" map (nil when absent, and
// for a nil Safetensors). The map is the file's own: do not modify it.
func (s *Safetensors) Metadata() map[string]string {
	if s == nil {
		return nil
	}
	return s.metadata
}

// Tensors returns the tensors in header order (none for a nil
// Safetensors). The slice is the file's own: do not modify it.
func (s *Safetensors) Tensors() []TensorInfo {
	if s == nil {
		return nil
	}
	return s.tensors
}

// Tensor returns the tensor called name (none for a nil Safetensors).
func (s *Safetensors) Tensor(name string) (TensorInfo, bool) {
	if s == nil {
		return TensorInfo{}, false
	}
	i, ok := slices.BinarySearchFunc(s.byName, name, func(i int32, name string) int {
		return strings.Compare(s.tensors[i].Name, name)
	})
	if !ok {
		return TensorInfo{}, false
	}
	return s.tensors[s.byName[i]], true
}

func (s *Safetensors) lookup(name string) (TensorInfo, error) {
	if s == nil {
		return TensorInfo{}, errNilSafetensors
	}
	t, ok := s.Tensor(name)
	if !ok {
		return t, fmt.Errorf("peft: safetensors: no tensor %s: %w", quote(name), ErrNotFound)
	}
	return t, nil
}

// Section returns a reader of the bytes of the tensor called name.
func (s *Safetensors) Section(name string) (*io.SectionReader, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	return io.NewSectionReader(s.r, t.Offset, t.Length), nil
}

// Bytes returns a copy of the raw, little-endian bytes of the tensor called
// name. A tensor larger than the machine's memory is an error wrapping
// lora.ErrMemory, returned before anything is allocated.
func (s *Safetensors) Bytes(name string) ([]byte, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	return s.bytes(t, t.Length)
}

// bytes reads t, checking first that need bytes fit in memory.
func (s *Safetensors) bytes(t TensorInfo, need int64) ([]byte, error) {
	if t.Length > math.MaxInt {
		return nil, fmt.Errorf("peft: safetensors: %s: %d bytes do not fit in memory: %w", quote(t.Name), t.Length, lora.ErrMemory)
	}
	if err := sysmem.Check("peft: safetensors: reading "+quote(t.Name), need); err != nil {
		return nil, fmt.Errorf("%w: %w", err, lora.ErrMemory)
	}
	b := make([]byte, t.Length)
	if len(b) == 0 {
		return b, nil // some ReaderAts answer io.EOF to an empty read at the end
	}
	if _, err := s.r.ReadAt(b, t.Offset); err != nil {
		return nil, fmt.Errorf("peft: safetensors: reading %s: %w", quote(t.Name), err)
	}
	return b, nil
}

// Float32s returns the tensor called name converted to float32. Its dtype
// must be F64, F32, F16 or BF16. A tensor larger than the machine's memory
// is an error wrapping lora.ErrMemory, returned before anything is
// allocated.
func (s *Safetensors) Float32s(name string) ([]float32, error) {
	t, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	if !t.DType.Float() {
		return nil, fmt.Errorf("peft: safetensors: %s is %s, not a floating-point tensor: %w", quote(name), t.DType, ErrUnsupported)
	}
	b, err := s.bytes(t, addBytes(t.Length, 4*t.Elements()))
	if err != nil {
		return nil, err
	}
	v := make([]float32, t.Elements())
	if err := DecodeFloats(v, b, t.DType); err != nil {
		return nil, fmt.Errorf("peft: safetensors: %s: %w", quote(name), err)
	}
	return v, nil
}
