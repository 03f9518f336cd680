package peft

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadSafetensors feeds arbitrary bytes to the reader. Its seed corpus,
// in testdata/fuzz/FuzzReadSafetensors, holds pieces of the GPT-2 fixture:
// its real header cut short of its data, and small valid files made of its
// first tensor's values in F32, F16 and BF16. Whatever the input, the reader
// must not panic nor allocate more than its documented bound
// (AllocPerHeaderByte per header byte plus AllocSlack); what it accepts must
// satisfy the format's invariants, read back completely, and survive a
// write and a second read unchanged.
func FuzzReadSafetensors(f *testing.F) {
	f.Add([]byte{})
	f.Add(stFile(`{}`, nil))
	f.Add(stFile(`{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}`, []byte{0, 0x3f, 0x80, 0x3f}))
	f.Add(stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, make([]byte, 6)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s *Safetensors
		var err error
		if got, bound := allocated(func() { s, err = readBytes(b) }), allocBound(b); got > bound {
			t.Fatalf("a %d-byte file allocated %d bytes, more than the bound %d", len(b), got, bound)
		}
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		var total int64
		var tensors []Tensor
		for _, ti := range s.Tensors() {
			if ti.Offset < s.DataOffset() || ti.Length < 0 || ti.Offset+ti.Length > int64(len(b)) {
				t.Fatalf("%q: bytes [%d, %d) outside the data [%d, %d)", ti.Name, ti.Offset, ti.Offset+ti.Length, s.DataOffset(), len(b))
			}
			if n, err := ti.byteLen(); err != nil || n != ti.Length {
				t.Fatalf("%q: %d bytes for shape %v of %s (%v)", ti.Name, ti.Length, ti.Shape, ti.DType, err)
			}
			total += ti.Length
			data, err := s.Bytes(ti.Name)
			if err != nil || !bytes.Equal(data, b[ti.Offset:ti.Offset+ti.Length]) {
				t.Fatalf("%q: Bytes gave %d bytes, %v", ti.Name, len(data), err)
			}
			if ti.DType.Float() {
				v, err := s.Float32s(ti.Name)
				if err != nil || int64(len(v)) != ti.Elements() {
					t.Fatalf("%q: Float32s gave %d values, %v", ti.Name, len(v), err)
				}
			}
			tensors = append(tensors, Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: data})
		}
		if total != int64(len(b))-s.DataOffset() {
			t.Fatalf("tensors hold %d bytes of %d", total, int64(len(b))-s.DataOffset())
		}
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, tensors, s.Metadata()); err != nil {
			t.Fatalf("writing back what was read: %v", err)
		}
		s2, err := readBytes(buf.Bytes())
		if err != nil {
			t.Fatalf("reading back what was written: %v", err)
		}
		if len(s2.Tensors()) != len(tensors) || len(s2.Metadata()) != len(s.Metadata()) {
			t.Fatalf("%d tensors and %d metadata keys became %d and %d",
				len(tensors), len(s.Metadata()), len(s2.Tensors()), len(s2.Metadata()))
		}
		for k, v := range s.Metadata() {
			if s2.Metadata()[k] != v {
				t.Fatalf("metadata %q: %q became %q", k, v, s2.Metadata()[k])
			}
		}
		for _, want := range tensors {
			got, err := s2.Bytes(want.Name)
			if err != nil || !bytes.Equal(got, want.Data) {
				t.Fatalf("%q did not survive a write and a read: %v", want.Name, err)
			}
		}
	})
}

// TestSeedCorpus checks that the seed corpus still holds what its names
// say: the fixture's pieces that are valid files parse, the cut ones fail.
func TestSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzReadSafetensors")
	for name, valid := range map[string]bool{
		"fixture-first-tensor-f32":      true,
		"fixture-first-tensor-bf16-f16": true,
		"fixture-header-truncated":      false,
		"fixture-header-six-entries":    false,
	} {
		text, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(text)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a corpus file of one []byte", name)
		}
		b, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = readBytes([]byte(b))
		if valid && err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !valid && (err == nil || !strings.Contains(err.Error(), "run past")) {
			t.Errorf("%s: %v, want offsets that run past the end", name, err)
		}
	}
}
