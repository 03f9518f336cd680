package peft

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

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
	if err := p.expect('{', headerPos{part: "header"}); err != nil {
		return nil, err
	}
	seenMeta := false
	for more, err := p.more('}', headerPos{part: "header"}); more || err != nil; more, err = p.more('}', headerPos{part: "header"}) {
		if err != nil {
			return nil, err
		}
		name, err := p.str(headerPos{part: "header key"}, MaxNameLen)
		if err != nil {
			return nil, err
		}
		if err := p.expect(':', headerPos{tensor: name}); err != nil {
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
	p.skipSpace()
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

// headerPos says where in the header the scanner is, for error messages:
// the tensor and the part of it (or of the header). It is formatted only
// when there is an error.
type headerPos struct{ tensor, part string }

// String returns the position as it begins an error message:
// "name".part, or either alone.
func (c headerPos) String() string {
	switch {
	case c.tensor == "":
		return c.part
	case c.part == "":
		return quote(c.tensor)
	}
	return quote(c.tensor) + "." + c.part
}

// skipSpace moves past JSON whitespace.
func (p *scanner) skipSpace() {
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

// expect consumes the byte c, after whitespace, or returns an error saying
// what it found instead.
func (p *scanner) expect(c byte, pos headerPos) error {
	p.skipSpace()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return nil
	}
	if p.i >= len(p.s) {
		return formatErr("%v: unexpected end of header, want %q", pos, c)
	}
	return formatErr("%v: found %s at byte %d, want %q", pos, p.found(), p.i, c)
}

// more reports whether another member or element follows in an object or
// array that ends with end, consuming the comma between them.
func (p *scanner) more(end byte, pos headerPos) (bool, error) {
	p.skipSpace()
	if p.i >= len(p.s) {
		return false, formatErr("%v: unexpected end of header", pos)
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
			return false, formatErr("%v: found %s at byte %d, want ',' or %q", pos, p.found(), p.i, end)
		}
		p.i++
		p.skipSpace()
		if p.i < len(p.s) && p.s[p.i] == end {
			return false, formatErr("%v: trailing comma at byte %d", pos, p.i)
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
func (p *scanner) str(pos headerPos, limit int) (string, error) {
	p.skipSpace()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		if p.i >= len(p.s) {
			return "", formatErr("%v: unexpected end of header, want a string", pos)
		}
		return "", formatErr("%v: found %s at byte %d, want a string", pos, p.found(), p.i)
	}
	start := p.i + 1
	j := start
	for j < len(p.s) && p.s[j] != '"' && p.s[j] != '\\' {
		if p.s[j] < 0x20 {
			return "", formatErr("%v: control character in a string at byte %d", pos, j)
		}
		j++
	}
	if limit >= 0 && j-start > limit {
		return "", formatErr("%v: a string of more than %d bytes at byte %d", pos, limit, start-1)
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
		return "", formatErr("%v: unterminated string", pos)
	}
	if limit >= 0 && end-start > 12*limit { // \uXXXX\uXXXX is 12 bytes for 4
		return "", formatErr("%v: a string of more than %d bytes at byte %d", pos, limit, start-1)
	}
	b := make([]byte, 0, end-start)
	b = append(b, p.s[start:j]...)
	for {
		if limit >= 0 && len(b) > limit {
			return "", formatErr("%v: a string of more than %d bytes at byte %d", pos, limit, start-1)
		}
		c := p.s[j]
		switch {
		case c == '"':
			p.i = j + 1
			return unsafe.String(unsafe.SliceData(b), len(b)), nil
		case c < 0x20:
			return "", formatErr("%v: control character in a string at byte %d", pos, j)
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
				return "", formatErr("%v: bad \\u escape at byte %d", pos, j-2)
			}
			j += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if j+6 <= len(p.s) && p.s[j] == '\\' && p.s[j+1] == 'u' {
					r2, ok = p.hex4(j + 2)
				}
				if !ok || utf16.DecodeRune(r, r2) == utf8.RuneError {
					return "", formatErr("%v: unpaired surrogate \\u%04x at byte %d", pos, r, j-6)
				}
				r = utf16.DecodeRune(r, r2)
				j += 6
			}
			if len(b)+utf8.RuneLen(r) > cap(b) { // cannot happen: an escape is longer than its rune
				return "", formatErr("%v: bad escape at byte %d", pos, j)
			}
			b = utf8.AppendRune(b, r)
		default:
			return "", formatErr("%v: bad escape \\%c at byte %d", pos, e, j-2)
		}
	}
}

// hex4 decodes the four hexadecimal digits of a \u escape at byte j.
func (p *scanner) hex4(j int) (rune, bool) {
	if j+4 > len(p.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(p.s[j:j+4], 16, 32)
	return rune(v), err == nil
}

// uint reads a non-negative integer no larger than maxBytes: JSON's number
// syntax without sign, fraction or exponent.
func (p *scanner) uint(pos headerPos) (int64, error) {
	p.skipSpace()
	start := p.i
	for p.i < len(p.s) && '0' <= p.s[p.i] && p.s[p.i] <= '9' {
		p.i++
	}
	num := p.s[start:p.i]
	if p.i < len(p.s) {
		switch p.s[p.i] {
		case '.', 'e', 'E', '-', '+':
			return 0, formatErr("%v: %s is not an integer in [0, 2^62]", pos, p.found())
		}
	}
	if num == "" {
		return 0, formatErr("%v: found %s at byte %d, want a non-negative integer", pos, p.found(), start)
	}
	if len(num) > 1 && num[0] == '0' {
		return 0, formatErr("%v: %s: a number with a leading zero is not JSON", pos, num)
	}
	v, err := strconv.ParseUint(num, 10, 64)
	if err != nil || v > maxBytes {
		return 0, formatErr("%v: %s is not an integer in [0, 2^62]", pos, num)
	}
	return int64(v), nil
}

// metadata reads the "__metadata__" object, strings to strings, or null.
func (p *scanner) metadata() (map[string]string, error) {
	pos := headerPos{part: "__metadata__"}
	p.skipSpace()
	if strings.HasPrefix(p.s[p.i:], "null") {
		p.i += 4
		return nil, nil
	}
	if err := p.expect('{', pos); err != nil {
		return nil, err
	}
	m := make(map[string]string)
	for more, err := p.more('}', pos); more || err != nil; more, err = p.more('}', pos) {
		if err != nil {
			return nil, err
		}
		if len(m) == maxMetadata {
			return nil, formatErr("%v: more than %d entries", pos, maxMetadata)
		}
		k, err := p.str(headerPos{part: "__metadata__ key"}, -1)
		if err != nil {
			return nil, err
		}
		if _, dup := m[k]; dup {
			return nil, formatErr("%v: duplicate key %s", pos, quote(k))
		}
		if err := p.expect(':', pos); err != nil {
			return nil, err
		}
		if m[k], err = p.str(headerPos{part: "__metadata__ value"}, -1); err != nil {
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

// tensor reads the entry of the tensor called name: an object of exactly
// dtype, shape and data_offsets, whose offsets stay relative to the data
// until layout.
func (p *scanner) tensor(name string) (TensorInfo, error) {
	pos := headerPos{tensor: name}
	t := TensorInfo{Name: name}
	if err := p.expect('{', pos); err != nil {
		return t, err
	}
	var begin, end int64
	var haveDType, haveShape, haveOffsets bool
	for more, err := p.more('}', pos); more || err != nil; more, err = p.more('}', pos) {
		if err != nil {
			return t, err
		}
		field, err := p.str(headerPos{tensor: name, part: "field name"}, MaxNameLen)
		if err != nil {
			return t, err
		}
		if err := p.expect(':', pos); err != nil {
			return t, err
		}
		fieldPos := headerPos{tensor: name, part: field}
		dup := false
		switch field {
		case "dtype":
			dup, haveDType = haveDType, true
			s, err := p.str(fieldPos, MaxNameLen)
			if err != nil {
				return t, err
			}
			t.DType = DType(s)
			if !t.DType.Valid() {
				return t, formatErr("%v: unknown dtype %s", fieldPos, quote(s))
			}
		case "shape":
			dup, haveShape = haveShape, true
			if err := p.expect('[', fieldPos); err != nil {
				return t, err
			}
			dims := p.dims[:0]
			for more, err := p.more(']', fieldPos); more || err != nil; more, err = p.more(']', fieldPos) {
				if err != nil {
					return t, err
				}
				if len(dims) == maxDims {
					return t, formatErr("%v: more than %d dimensions", fieldPos, maxDims)
				}
				d, err := p.uint(fieldPos)
				if err != nil {
					return t, err
				}
				if d > math.MaxInt32 && strconv.IntSize == 32 {
					return t, formatErr("%v: dimension %d too large for this platform", fieldPos, d)
				}
				dims = append(dims, int(d))
			}
			p.dims = dims
			t.Shape = make([]int, len(dims))
			copy(t.Shape, dims)
		case "data_offsets":
			dup, haveOffsets = haveOffsets, true
			if err := p.expect('[', fieldPos); err != nil {
				return t, err
			}
			if begin, err = p.uint(fieldPos); err != nil {
				return t, err
			}
			if err := p.expect(',', fieldPos); err != nil {
				return t, formatErr("%v: want exactly two offsets", fieldPos)
			}
			if end, err = p.uint(fieldPos); err != nil {
				return t, err
			}
			if err := p.expect(']', fieldPos); err != nil {
				return t, formatErr("%v: want exactly two offsets", fieldPos)
			}
		default:
			return t, formatErr("%v: unknown field %s", pos, quote(field))
		}
		if dup {
			return t, formatErr("%v: duplicate field %s", pos, quote(field))
		}
	}
	if !haveDType || !haveShape || !haveOffsets {
		return t, formatErr("%v: want the fields dtype, shape and data_offsets", pos)
	}
	if end < begin {
		return t, formatErr("%v: data_offsets [%d, %d] end before they begin", pos, begin, end)
	}
	nb, ok := shapeBytes(t.Shape, t.DType)
	if !ok {
		return t, formatErr("%v: shape %v of %s is more than 2^62 bytes", pos, t.Shape, t.DType)
	}
	if end-begin != nb {
		return t, formatErr("%v: data_offsets [%d, %d] hold %d bytes, but shape %v of %s needs %d",
			pos, begin, end, end-begin, t.Shape, t.DType, nb)
	}
	t.Offset, t.Length = begin, end-begin // relative until layout
	return t, nil
}
