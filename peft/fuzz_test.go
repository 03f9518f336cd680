package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/golora/lora"
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

// FuzzQuantState feeds arbitrary bytes to the reader of a 4-bit weight's
// quantization state, the JSON in its quant_state tensor. Whatever the
// input, it must not panic, and every error must wrap one of the package's
// sentinels; a state it accepts must hold what the reader relies on, read
// back the same once written as bitsandbytes writes it, and, for a small
// weight, make a whole weight that QuantizedWeight reads with tensors of the
// lengths it gives.
func FuzzQuantState(f *testing.F) {
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64]}`))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float16", "shape": [3, 5], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.012345678918063641}`))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 4096, "dtype": "float32", "shape": [1, 1], "nested_blocksize": 32, "nested_dtype": "float32", "nested_offset": -1e-05}`))
	f.Add([]byte(`{"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [4096, 4096]}`))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 64, "blocksize": 64}`))
	f.Add([]byte(`{"quant_type": "nf4", "blocksize": 48, "dtype": "torch.bfloat16", "shape": [0, -1], "nested_offset": NaN}`))
	f.Add([]byte(`{"shape": null}`))
	f.Add([]byte(`[1, 2]`))
	f.Add([]byte("{\"quant_type\": \"nf4\xff\"}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		const tensor = "w.quant_state.bitsandbytes__nf4"
		st, err := parseQuantState(data, tensor)
		if err != nil {
			if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, lora.ErrNonFinite) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tensor)) {
				t.Fatalf("error does not name the tensor: %v", err)
			}
			return
		}
		bs, nbs := st.blockSize, st.nestedBlockSize
		if st.quantType != "nf4" || bs < 32 || bs > 4096 || bs&(bs-1) != 0 || st.rows < 1 || st.cols < 1 ||
			!slices.Contains([]DType{F32, F16, BF16}, st.dtype) ||
			st.nested != (nbs != 0) || st.nested && (nbs < 32 || nbs > 4096 || nbs&(nbs-1) != 0) ||
			math.IsInf(float64(st.nestedOffset), 0) || math.IsNaN(float64(st.nestedOffset)) {
			t.Fatalf("accepted %+v", st)
		}
		var dtype string
		for name, d := range torchFloat {
			if d == st.dtype {
				dtype = name
			}
		}
		again, err := parseQuantState(quantStateJSON("nf4", bs, dtype, st.rows, st.cols, nbs, st.nestedOffset), tensor)
		if err != nil || *again != *st {
			t.Fatalf("%+v written and read became %+v, %v", st, again, err)
		}
		n := st.rows * st.cols
		if n > 1<<12 {
			return
		}
		blocks := (n + bs - 1) / bs
		absmax := make([]float32, blocks)
		for i := range absmax {
			absmax[i] = float32(i + 1)
		}
		tensors := []Tensor{
			{Name: "w", DType: U8, Shape: []int{(n + 1) / 2, 1}, Data: make([]byte, (n+1)/2)},
			{Name: tensor, DType: U8, Shape: []int{len(data)}, Data: data},
			f32Vector("w"+suffixQuantMap, nf4[:]),
		}
		if st.nested {
			tensors = append(tensors,
				Tensor{Name: "w" + suffixAbsmax, DType: U8, Shape: []int{blocks}, Data: make([]byte, blocks)},
				f32Vector("w"+suffixNestedAbsmax, make([]float32, (blocks+nbs-1)/nbs)),
				f32Vector("w"+suffixNestedQuantMap, nestedMap()))
		} else {
			tensors = append(tensors, f32Vector("w"+suffixAbsmax, absmax))
		}
		q, err := stOpen(t, tensors).QuantizedWeight("w")
		if err != nil {
			t.Fatalf("a weight of state %+v: %v", st, err)
		}
		if q.Rows != st.rows || q.Cols != st.cols || q.BlockSize != bs || q.DType != st.dtype || q.DoubleQuant != st.nested ||
			len(q.Codes) != (n+1)/2 || len(q.Absmax) != blocks {
			t.Fatalf("state %+v read as %d×%d, blocks of %d, %s, %d codes, %d absmax", st, q.Rows, q.Cols, q.BlockSize, q.DType, len(q.Codes), len(q.Absmax))
		}
		for i, v := range q.Absmax {
			want := absmax[i]
			if st.nested {
				want = st.nestedOffset // nested_absmax is 0
			}
			if math.Float32bits(v) != math.Float32bits(want) {
				t.Fatalf("absmax %d is %v, want %v", i, v, want)
			}
		}
	})
}

// FuzzWithoutQuantizationConfig checks that WithoutQuantizationConfig
// accepts exactly the JSON objects of valid UTF-8, and returns one with the
// same members less quantization_config.
func FuzzWithoutQuantizationConfig(f *testing.F) {
	f.Add([]byte("{\n  \"a\": 1,\n  \"quantization_config\": {\"load_in_4bit\": true},\n  \"b\": [2]\n}\n"))
	f.Add([]byte(`{"quantization_config":1,"quantization_config":2,"a":3}`))
	f.Add([]byte(`{ "quantization\u005fconfig" : null }`))
	f.Add([]byte(`{"a":{"quantization_config":1}} x`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := WithoutQuantizationConfig(in)
		var want map[string]any
		valid := utf8.Valid(in) && json.Unmarshal(in, &want) == nil && want != nil
		if err != nil {
			if valid || !errors.Is(err, ErrFormat) {
				t.Fatalf("%q: %v", in, err)
			}
			return
		}
		if !valid {
			t.Fatalf("%q accepted", in)
		}
		delete(want, QuantizationConfigKey)
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("%q became %q (%v)", in, out, err)
		}
	})
}
