package peft

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

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

// parseHeader decodes the JSON header with a scanner of its own rather than
// encoding/json, for three reasons: duplicate keys, unknown fields and wrong
// types must be seen rather than silently merged or skipped; names can be
// substrings of the header instead of one allocation each; and no token is
// boxed. Parsing then allocates, beyond the header itself, one TensorInfo
// and one shape per tensor, each name with escapes once, and nothing per
// token: within the bound documented at ReadSafetensors for a header made of
// nothing but tiny tensors or long shapes, a few hundredths of the header
// for a real file. hdr must not be modified afterwards.
func parseHeader(hdr []byte) (*Safetensors, error) {
	if !utf8.Valid(hdr) {
		i := 0
		for i < len(hdr) {
			r, w := utf8.DecodeRune(hdr[i:])
			if r == utf8.RuneError && w <= 1 {
				break
			}
			i += w
		}
		return nil, formatErr("header is not valid UTF-8 (byte %d)", i)
	}
	if hdr[0] != '{' {
		return nil, formatErr("header does not start with '{'")
	}
	// The header is never written again: its names can be substrings of it.
	p := &scanner{s: unsafe.String(unsafe.SliceData(hdr), len(hdr))}
	// The smallest tensor entry, "":{"dtype":"U8","shape":[],"data_offsets":[0,0]},
	// is 48 bytes: a bound on the number of tensors.
	st := &Safetensors{tensors: make([]TensorInfo, 0, min(bytes.Count(hdr, []byte{'{'}), len(hdr)/48+1))}
	if err := p.expect('{', ctx{part: "header"}); err != nil {
		return nil, err
	}
	seenMeta := false
	for more, err := p.more('}', ctx{part: "header"}); more || err != nil; more, err = p.more('}', ctx{part: "header"}) {
		if err != nil {
			return nil, err
		}
		name, err := p.str(ctx{part: "header key"}, MaxNameLen)
		if err != nil {
			return nil, err
		}
		if err := p.expect(':', ctx{tensor: name}); err != nil {
			return nil, err
		}
		if name == "__metadata__" {
			if seenMeta {
				return nil, formatErr("duplicate key %s", quote(name))
			}
			seenMeta = true
			if st.metadata, err = p.metadata(); err != nil {
				return nil, err
			}
			continue
		}
		t, err := p.tensor(name)
		if err != nil {
			return nil, err
		}
		st.tensors = append(st.tensors, t)
	}
	p.ws()
	if p.i < len(p.s) {
		return nil, formatErr("unexpected %q after the header object (byte %d)", p.s[p.i], p.i)
	}
	// Names sorted, for lookups and to find duplicates.
	st.byName = make([]int32, len(st.tensors))
	for i := range st.byName {
		st.byName[i] = int32(i)
	}
	slices.SortFunc(st.byName, func(a, b int32) int { return strings.Compare(st.tensors[a].Name, st.tensors[b].Name) })
	for i := 1; i < len(st.byName); i++ {
		if n := st.tensors[st.byName[i]].Name; n == st.tensors[st.byName[i-1]].Name {
			return nil, formatErr("duplicate tensor name %s", quote(n))
		}
	}
	return st, nil
}

// scanner reads the JSON of a safetensors header.
type scanner struct {
	s    string
	i    int
	dims []int // scratch for a shape
}

// ctx says where in the header the scanner is, for error messages; it is
// formatted only when there is an error.
type ctx struct{ tensor, part string }

func (c ctx) String() string {
	switch {
	case c.tensor == "":
		return c.part
	case c.part == "":
		return quote(c.tensor)
	}
	return quote(c.tensor) + "." + c.part
}

func (p *scanner) ws() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// found describes the next token for an error message.
func (p *scanner) found() string {
	if p.i >= len(p.s) {
		return "the end of the header"
	}
	end := min(p.i+16, len(p.s))
	for end < len(p.s) && !utf8.RuneStart(p.s[end]) {
		end++
	}
	return strconv.Quote(p.s[p.i:end])
}

func (p *scanner) expect(c byte, w ctx) error {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return nil
	}
	if p.i >= len(p.s) {
		return formatErr("%v: unexpected end of header, want %q", w, c)
	}
	return formatErr("%v: found %s at byte %d, want %q", w, p.found(), p.i, c)
}

// more reports whether another member or element follows in an object or
// array that ends with end, consuming the comma between them.
func (p *scanner) more(end byte, w ctx) (bool, error) {
	p.ws()
	if p.i >= len(p.s) {
		return false, formatErr("%v: unexpected end of header", w)
	}
	c := p.s[p.i]
	if c == end {
		p.i++
		return false, nil
	}
	// The first member follows the opening bracket directly; later ones a
	// comma.
	if prev := p.prev(); prev != '{' && prev != '[' {
		if c != ',' {
			return false, formatErr("%v: found %s at byte %d, want ',' or %q", w, p.found(), p.i, end)
		}
		p.i++
		p.ws()
		if p.i < len(p.s) && p.s[p.i] == end {
			return false, formatErr("%v: trailing comma at byte %d", w, p.i)
		}
	}
	return true, nil
}

// prev returns the last byte before the current position that is not
// whitespace.
func (p *scanner) prev() byte {
	for j := p.i - 1; j >= 0; j-- {
		switch c := p.s[j]; c {
		case ' ', '\t', '\n', '\r':
		default:
			return c
		}
	}
	return 0
}

// str reads a JSON string of at most limit bytes once decoded (no limit
// when limit < 0). Without escapes it is a substring of the header; with
// them, a new string allocated once, no longer than its JSON.
func (p *scanner) str(w ctx, limit int) (string, error) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		if p.i >= len(p.s) {
			return "", formatErr("%v: unexpected end of header, want a string", w)
		}
		return "", formatErr("%v: found %s at byte %d, want a string", w, p.found(), p.i)
	}
	start := p.i + 1
	j := start
	for j < len(p.s) && p.s[j] != '"' && p.s[j] != '\\' {
		if p.s[j] < 0x20 {
			return "", formatErr("%v: control character in a string at byte %d", w, j)
		}
		j++
	}
	if limit >= 0 && j-start > limit {
		return "", formatErr("%v: a string of more than %d bytes at byte %d", w, limit, start-1)
	}
	if j < len(p.s) && p.s[j] == '"' {
		p.i = j + 1
		return p.s[start:j], nil
	}
	// Escapes: find the end, then decode into one buffer of that size.
	end := j
	for end < len(p.s) && p.s[end] != '"' {
		if p.s[end] == '\\' {
			end++
		}
		end++
	}
	if end >= len(p.s) {
		return "", formatErr("%v: unterminated string", w)
	}
	if limit >= 0 && end-start > 12*limit { // \uXXXX\uXXXX is 12 bytes for 4
		return "", formatErr("%v: a string of more than %d bytes at byte %d", w, limit, start-1)
	}
	b := make([]byte, 0, end-start)
	b = append(b, p.s[start:j]...)
	for {
		if limit >= 0 && len(b) > limit {
			return "", formatErr("%v: a string of more than %d bytes at byte %d", w, limit, start-1)
		}
		c := p.s[j]
		switch {
		case c == '"':
			p.i = j + 1
			return unsafe.String(unsafe.SliceData(b), len(b)), nil
		case c < 0x20:
			return "", formatErr("%v: control character in a string at byte %d", w, j)
		case c != '\\':
			b = append(b, c)
			j++
			continue
		}
		e := p.s[j+1] // j+1 < end: the pre-scan skipped it
		j += 2
		switch e {
		case '"', '\\', '/':
			b = append(b, e)
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'u':
			r, ok := p.hex4(j)
			if !ok {
				return "", formatErr("%v: bad \\u escape at byte %d", w, j-2)
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if j+6 <= len(p.s) && p.s[j] == '\\' && p.s[j+1] == 'u' {
					r2, ok = p.hex4(j + 2)
				}
				if !ok || utf16.DecodeRune(r, r2) == utf8.RuneError {
					return "", formatErr("%v: unpaired surrogate \\u%04x at byte %d", w, r, j-6)
				}
				r = utf16.DecodeRune(r, r2)
				j += 6
			}
			if len(b)+utf8.RuneLen(r) > cap(b) { // cannot happen: an escape is longer than its rune
				return "", formatErr("%v: bad escape at byte %d", w, j)
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", formatErr("%v: bad escape \\%c at byte %d", w, e, j-2)
		}
	}
}

func (p *scanner) hex4(j int) (rune, bool) {
	if j+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(p.s[j:j+4], 16, 32)
	return rune(v), err == nil
}

// uint reads a non-negative integer no larger than maxBytes: JSON's number
// syntax without sign, fraction or exponent.
func (p *scanner) uint(w ctx) (int64, error) {
	p.ws()
	start := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	num := p.s[start:p.i]
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case '.', 'e', 'E', '-', '+':
			return 0, formatErr("%v: %s is not an integer in [0, 2^62]", w, p.found())
		}
	}
	if num == "" {
		return 0, formatErr("%v: found %s at byte %d, want a non-negative integer", w, p.found(), start)
	}
	if len(num) > 1 && num[0] == '0' {
		return 0, formatErr("%v: %s: a number with a leading zero is not JSON", w, num)
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || v > maxBytes {
		return 0, formatErr("%v: %s is not an integer in [0, 2^62]", w, num)
	}
	return int64(v), nil
}

// metadata reads the "__metadata__" object, strings to strings, or null.
func (p *scanner) metadata() (map[string]string, error) {
	w := ctx{part: "__metadata__"}
	p.ws()
	if strings.HasPrefix(p.s[p.i:], "null") {
		p.i += 4
		return nil, nil
	}
	if err := p.expect('{', w); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for more, err := p.more('}', w); more || err != nil; more, err = p.more('}', w) {
		if err != nil {
			return nil, err
		}
		if len(m) == maxMetadata {
			return nil, formatErr("%v: more than %d entries", w, maxMetadata)
		}
		k, err := p.str(ctx{part: "__metadata__ key"}, -1)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, formatErr("%v: duplicate key %s", w, quote(k))
		}
		if err := p.expect(':', w); err != nil {
			return nil, err
		}
		if m[k], err = p.str(ctx{part: "__metadata__ value"}, -1); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Bounds on what a header may hold: the dimensions of a tensor (PyTorch's
// own limit) and the entries of its metadata (a few in practice).
const (
	maxDims     = 64
	maxMetadata = 1024
)

func (p *scanner) tensor(name string) (TensorInfo, error) {
	w := ctx{tensor: name}
	t := TensorInfo{Name: name}
	if err := p.expect('{', w); err != nil {
		return t, err
	}
	var begin, end int64
	var haveDType, haveShape, haveOffsets bool
	for more, err := p.more('}', w); more || err != nil; more, err = p.more('}', w) {
		if err != nil {
			return t, err
		}
		field, err := p.str(ctx{tensor: name, part: "field name"}, MaxNameLen)
		if err != nil {
			return t, err
		}
		if err := p.expect(':', w); err != nil {
			return t, err
		}
		fw := ctx{tensor: name, part: field}
		dup := false
		switch field {
		case "dtype":
			dup, haveDType = haveDType, true
			s, err := p.str(fw, MaxNameLen)
			if err != nil {
				return t, err
			}
			t.DType = DType(s)
			if !t.DType.Valid() {
				return t, formatErr("%v: unknown dtype %s", fw, quote(s))
			}
		case "shape":
			dup, haveShape = haveShape, true
			if err := p.expect('[', fw); err != nil {
				return t, err
			}
			dims := p.dims[:0]
			for more, err := p.more(']', fw); more || err != nil; more, err = p.more(']', fw) {
				if err != nil {
					return t, err
				}
				if len(dims) == maxDims {
					return t, formatErr("%v: more than %d dimensions", fw, maxDims)
				}
				d, err := p.uint(fw)
				if err != nil {
					return t, err
				}
				if d > math.MaxInt32 && strconv.IntSize == 32 {
					return t, formatErr("%v: dimension %d too large for this platform", fw, d)
				}
				dims = append(dims, int(d))
			}
			p.dims = dims
			t.Shape = make([]int, len(dims))
			copy(t.Shape, dims)
		case "data_offsets":
			dup, haveOffsets = haveOffsets, true
			if err := p.expect('[', fw); err != nil {
				return t, err
			}
			if begin, err = p.uint(fw); err != nil {
				return t, err
			}
			if err := p.expect(',', fw); err != nil {
				return t, formatErr("%v: want exactly two offsets", fw)
			}
			if end, err = p.uint(fw); err != nil {
				return t, err
			}
			if err := p.expect(']', fw); err != nil {
				return t, formatErr("%v: want exactly two offsets", fw)
			}
		default:
			return t, formatErr("%v: unknown field %s", w, quote(field))
		}
		if dup {
			return t, formatErr("%v: duplicate field %s", w, quote(field))
		}
	}
	if !haveDType || !haveShape || !haveOffsets {
		return t, formatErr("%v: want the fields dtype, shape and data_offsets", w)
	}
	if end < begin {
		return t, formatErr("%v: data_offsets [%d, %d] end before they begin", w, begin, end)
	}
	nb, ok := shapeBytes(t.Shape, t.DType)
	if !ok {
		return t, formatErr("%v: shape %v of %s is more than 2^62 bytes", w, t.Shape, t.DType)
	}
	if end-begin != nb {
		return t, formatErr("%v: data_offsets [%d, %d] hold %d bytes, but shape %v of %s needs %d",
			w, begin, end, end-begin, t.Shape, t.DType, nb)
	}
	t.Offset, t.Length = begin, end-begin // relative until layout
	return t, nil
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
