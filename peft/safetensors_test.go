package peft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixtureDir is the PEFT adapter for GPT-2 in the repository's testdata
// (testdata/README.md says where it comes from).
const fixtureDir = "../testdata/peft-gpt2-lora"

// fixture returns fixtureDir, failing the test if it is missing.
func fixture(t testing.TB) string {
	t.Helper()
	for _, f := range []string{ConfigFile, WeightsFile} {
		if _, err := os.Stat(filepath.Join(fixtureDir, f)); err != nil {
			t.Fatalf("the GPT-2 PEFT fixture is missing (%v): the tests need "+
				"testdata/peft-gpt2-lora of the repository", err)
		}
	}
	return fixtureDir
}

// stFile returns a safetensors file with the given JSON header and data.
func stFile(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func readBytes(b []byte) (*Safetensors, error) {
	return ReadSafetensors(bytes.NewReader(b), int64(len(b)))
}

func TestReadSafetensorsValid(t *testing.T) {
	data := make([]byte, 4*2*3+2+4)
	for i := range data {
		data[i] = byte(i)
	}
	hdr := `{"__metadata__":{"format":"pt"},` +
		`"b":{"dtype":"BF16","shape":[1],"data_offsets":[24,26]},` +
		`"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},` +
		`"empty":{"dtype":"F16","shape":[0,5],"data_offsets":[26,26]},` +
		`"scalar":{"dtype":"I32","shape":[],"data_offsets":[26,30]}}    `
	s, err := readBytes(stFile(hdr, data))
	if err != nil {
		t.Fatal(err)
	}
	if s.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v", s.Metadata())
	}
	var names []string
	for _, ti := range s.Tensors() {
		names = append(names, ti.Name)
	}
	if got := strings.Join(names, " "); got != "b a empty scalar" {
		t.Errorf("tensors in order %q, want header order", got)
	}
	a, ok := s.Tensor("a")
	if !ok || a.DType != F32 || a.Elements() != 6 || a.Offset != 8+int64(len(hdr)) || a.Length != 24 {
		t.Errorf("a = %+v", a)
	}
	got, err := s.Bytes("scalar")
	if err != nil || !bytes.Equal(got, data[26:30]) {
		t.Errorf("scalar bytes %v, %v", got, err)
	}
	sec, err := s.Section("b")
	if err != nil || sec.Size() != 2 {
		t.Fatalf("Section(b): %v", err)
	}
	bb, _ := io.ReadAll(sec)
	if !bytes.Equal(bb, data[24:26]) {
		t.Errorf("section of b read %v", bb)
	}
	if _, ok := s.Tensor("missing"); ok {
		t.Error("found a tensor that is not there")
	}
	if _, err := s.Float32s("scalar"); err == nil {
		t.Error("Float32s of an I32 tensor succeeded")
	}
	if _, err := s.Bytes("nope"); err == nil {
		t.Error("Bytes of a missing tensor succeeded")
	}
	v, err := s.Float32s("empty")
	if err != nil || len(v) != 0 {
		t.Errorf("empty: %v, %v", v, err)
	}
}

func TestReadSafetensorsEscapes(t *testing.T) {
	hdr := "{\"__metadata__\" : null ,\n \"caf\\u00e9 \\\"\\ud83d\\ude00\\\"\\n\" : {\"shape\":[ 1 ],\"dtype\":\"U8\",\"data_offsets\":[0,1]}}"
	s, err := readBytes(stFile(hdr, []byte{7}))
	if err != nil {
		t.Fatal(err)
	}
	want := "café \"\U0001F600\"\n"
	if _, ok := s.Tensor(want); !ok || s.Metadata() != nil {
		t.Errorf("tensors %+v, metadata %v; want %q", s.Tensors(), s.Metadata(), want)
	}
}

// TestReadSafetensorsHostile feeds headers that lie; each must be refused
// with an error wrapping ErrFormat that says what is wrong.
func TestReadSafetensorsHostile(t *testing.T) {
	data8 := make([]byte, 8)
	ok := func(name, body string) string { return `"` + name + `":` + body }
	f32 := func(off string) string { return `{"dtype":"F32","shape":[2],"data_offsets":` + off + `}` }
	cases := []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"length past the end", binary.LittleEndian.AppendUint64(nil, 100), "past the end"},
		{"length huge", binary.LittleEndian.AppendUint64(nil, 1<<63), "past the end"},
		{"header too short", stFile("{", nil), "too short"},
		{"not an object", stFile(`[1,2]`, nil), "start with '{'"},
		{"invalid JSON", stFile(`{"a":}`, nil), "want '{'"},
		{"missing comma", stFile("{"+ok("a", f32("[0,8]"))+" "+ok("b", f32("[8,16]"))+"}", make([]byte, 16)), "want ','"},
		{"trailing comma", stFile("{"+ok("a", f32("[0,8]"))+",}", data8), "trailing comma"},
		{"trailing comma in shape", stFile(`{"a":{"dtype":"F32","shape":[2,],"data_offsets":[0,8]}}`, data8), "trailing comma"},
		{"unterminated string", stFile(`{"a\`, nil), "unterminated"},
		{"bad escape", stFile(`{"a\x":`+f32("[0,8]")+"}", data8), "bad escape"},
		{"unpaired surrogate", stFile(`{"a\ud800":`+f32("[0,8]")+"}", data8), "surrogate"},
		{"control character", stFile("{\"a\tb\":"+f32("[0,8]")+"}", data8), "control character"},
		{"duplicate through an escape", stFile("{"+ok("a", f32("[0,8]"))+","+ok(`\u0061`, f32("[8,16]"))+"}", make([]byte, 16)), "duplicate tensor name"},
		{"leading zero", stFile(`{"a":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}`, data8), "leading zero"},
		{"too many dimensions", stFile(`{"a":{"dtype":"F32","shape":[`+strings.Repeat("1,", 64)+`2],"data_offsets":[0,8]}}`, data8), "more than 64 dimensions"},
		{"metadata not an object", stFile(`{"__metadata__":[]}`, nil), "want '{'"},
		{"truncated JSON", stFile(`{"a":{"dtype":"F32"`, nil), "end of header"},
		{"non-UTF-8", stFile("{\"a\xff\":"+f32("[0,8]")+"}", data8), "UTF-8"},
		{"duplicate names", stFile("{"+ok("a", f32("[0,8]"))+","+ok("a", f32("[8,16]"))+"}", make([]byte, 16)), "duplicate tensor name"},
		{"duplicate metadata", stFile(`{"__metadata__":{},"__metadata__":{}}`, nil), "duplicate key"},
		{"metadata not strings", stFile(`{"__metadata__":{"a":1}}`, nil), "want a string"},
		{"metadata duplicate key", stFile(`{"__metadata__":{"a":"1","a":"2"}}`, nil), "duplicate key"},
		{"unknown dtype", stFile(`{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}`, data8), "unknown dtype"},
		{"unknown field", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, data8), "unknown field"},
		{"duplicate field", stFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, data8), "duplicate field"},
		{"missing field", stFile(`{"a":{"dtype":"F32","shape":[2]}}`, data8), "want the fields"},
		{"shape not numbers", stFile(`{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, data8), "non-negative integer"},
		{"negative dimension", stFile(`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, data8), "not an integer"},
		{"fractional dimension", stFile(`{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, data8), "not an integer"},
		{"huge dimension", stFile(`{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}}`, data8), "not an integer"},
		{"shape overflow", stFile(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, data8), "more than 2^62"},
		{"three offsets", stFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, data8), "exactly two"},
		{"offsets reversed", stFile("{"+ok("a", f32("[8,0]"))+"}", data8), "end before"},
		{"byte count mismatch", stFile("{"+ok("a", f32("[0,12]"))+"}", make([]byte, 12)), "needs 8"},
		{"dtype mismatch", stFile(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}}`, data8), "needs 4"},
		{"offsets past the end", stFile("{"+ok("a", f32("[0,8]"))+","+ok("b", f32("[8,16]"))+"}", make([]byte, 12)), "run past"},
		{"offsets far past the end", stFile("{"+ok("a", f32("[4611686018427387896,4611686018427387904]"))+"}", data8), "run past"},
		{"overlap", stFile("{"+ok("a", f32("[0,8]"))+","+ok("b", f32("[4,12]"))+"}", make([]byte, 12)), "overlap"},
		{"same offsets", stFile("{"+ok("a", f32("[0,8]"))+","+ok("b", f32("[0,8]"))+"}", data8), "overlap"},
		{"gap", stFile("{"+ok("a", f32("[4,12]"))+"}", make([]byte, 12)), "unused"},
		{"trailing data", stFile("{"+ok("a", f32("[0,8]"))+"}", make([]byte, 9)), "has 9 bytes"},
		{"garbage after the object", stFile("{"+ok("a", f32("[0,8]"))+"}x", data8), "after the header"},
		{"tensor not an object", stFile(`{"a":[1]}`, nil), "want '{'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := readBytes(c.file)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrFormat) {
				t.Errorf("error %q does not wrap ErrFormat", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// hugeFile claims to be size bytes long but holds only head; the rest reads
// as an error.
type hugeFile struct{ head []byte }

func (h hugeFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(h.head)) {
		return 0, io.ErrUnexpectedEOF
	}
	n := copy(p, h.head[off:])
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}

// TestReadSafetensorsAllocations checks that lengths, shapes and offsets
// taken from a file are not trusted for allocations, and that what parsing
// a header allocates stays within the documented bound.
func TestReadSafetensorsAllocations(t *testing.T) {
	// A header length above the limit, in a file that claims to be 1 TB.
	head := binary.LittleEndian.AppendUint64(nil, MaxHeaderLen+1)
	if got := allocated(func() {
		if _, err := ReadSafetensors(hugeFile{head}, 1<<40); err == nil || !strings.Contains(err.Error(), "limit") {
			t.Errorf("header over the limit: %v", err)
		}
	}); got > 64<<10 {
		t.Errorf("a %d-byte header length allocated %d bytes", MaxHeaderLen+1, got)
	}
	// A 1 MB header length in a file that claims to be 1 TB but ends early.
	head = binary.LittleEndian.AppendUint64(nil, 1<<20)
	if got := allocated(func() {
		if _, err := ReadSafetensors(hugeFile{append(head, '{')}, 1<<40); err == nil {
			t.Error("read a header past the end of the data")
		}
	}); got > 2<<20 {
		t.Errorf("a 1 MB header allocated %d bytes", got)
	}
	// A tensor of 2^61 bytes in a small file.
	hdr := `{"a":{"dtype":"F64","shape":[268435456,1073741824],"data_offsets":[0,2305843009213693952]}}`
	file := stFile(hdr, data(16))
	if got := allocated(func() {
		if _, err := readBytes(file); err == nil {
			t.Error("accepted a 2^61-byte tensor in a small file")
		}
	}); got > 64<<10 {
		t.Errorf("a small file with a huge tensor allocated %d bytes", got)
	}
	// Headers of nothing but tiny tensors, of long shapes, of metadata, of
	// escaped names, all within the bound.
	build := func(prefix string, n int, entry func(i int) string) []byte {
		var sb strings.Builder
		sb.WriteString("{" + prefix)
		for i := range n {
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString(entry(i))
		}
		sb.WriteString("}")
		if prefix != "" {
			sb.WriteString("}")
		}
		return stFile(sb.String(), nil)
	}
	for name, file := range map[string][]byte{
		"tiny tensors": build("", 20000, func(i int) string {
			return fmt.Sprintf(`"%d":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`, i)
		}),
		"long shapes": build("", 2000, func(i int) string {
			return fmt.Sprintf(`"%d":{"dtype":"U8","shape":[0%s],"data_offsets":[0,0]}`, i, strings.Repeat(",1", 63))
		}),
		"metadata": build(`"__metadata__":{`, 1000, func(i int) string { return fmt.Sprintf(`"%d":""`, i) }),
		"escaped names": build("", 2000, func(i int) string {
			return fmt.Sprintf(`"%d\u00%02x%s":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}`, i, i%100, strings.Repeat(`\t`, i%300))
		}),
		"escaped metadata": build(`"__metadata__":{`, 1000, func(i int) string {
			return fmt.Sprintf(`"%d":"%s"`, i, strings.Repeat(`\u00e9`, 1000))
		}),
	} {
		got := allocated(func() {
			if _, err := readBytes(file); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		if bound := allocBound(file); got > bound {
			t.Errorf("%s: a %d-byte file allocated %d bytes, more than the bound %d", name, len(file), got, bound)
		}
	}
}

func data(n int) []byte { return make([]byte, n) }

func TestWriteSafetensorsRoundTrip(t *testing.T) {
	tensors := []Tensor{
		{Name: "z.weight", DType: F16, Shape: []int{2, 2}, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{Name: "a<&>\"name\"", DType: F32, Shape: []int{1}, Data: []byte{9, 10, 11, 12}},
		{Name: "ids", DType: I64, Shape: []int{1, 1}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0}},
		{Name: "nothing", DType: BF16, Shape: []int{0}, Data: nil},
		{Name: "scalar", DType: U8, Shape: []int{}, Data: []byte{7}},
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, tensors, map[string]string{"format": "pt", "k": "v"}); err != nil {
		t.Fatal(err)
	}
	s, err := readBytes(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if s.DataOffset()%8 != 0 {
		t.Errorf("data begins at %d, not a multiple of 8", s.DataOffset())
	}
	if len(s.Tensors()) != len(tensors) || s.Metadata()["k"] != "v" {
		t.Fatalf("read back %d tensors, metadata %v", len(s.Tensors()), s.Metadata())
	}
	for _, want := range tensors {
		got, err := s.Bytes(want.Name)
		if err != nil || !bytes.Equal(got, want.Data) {
			t.Errorf("%s: %v, %v; want %v", want.Name, got, err, want.Data)
		}
		info, _ := s.Tensor(want.Name)
		if info.DType != want.DType || len(info.Shape) != len(want.Shape) {
			t.Errorf("%s: %+v", want.Name, info)
		}
	}
	// Larger dtypes first, then by name, as the reference implementation.
	var order []string
	for _, ti := range s.Tensors() {
		order = append(order, ti.Name)
	}
	if got := strings.Join(order, ","); got != `ids,a<&>"name",nothing,z.weight,scalar` {
		t.Errorf("order %s", got)
	}
	bad := []Tensor{{Name: "x", DType: F32, Shape: []int{2}, Data: []byte{1}}}
	if err := WriteSafetensors(io.Discard, bad, nil); err == nil {
		t.Error("wrote a tensor whose data does not fit its shape")
	}
	dup := []Tensor{{Name: "x", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "x", DType: U8, Shape: []int{1}, Data: []byte{1}}}
	if err := WriteSafetensors(io.Discard, dup, nil); err == nil {
		t.Error("wrote a name twice")
	}
}

// TestFixtureSafetensors reads the real adapter file and writes it back
// byte for byte.
func TestFixtureSafetensors(t *testing.T) {
	path := filepath.Join(fixture(t), WeightsFile)
	s, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(s.Tensors()); n != 72 {
		t.Fatalf("%d tensors, want 72", n)
	}
	var tensors []Tensor
	for _, ti := range s.Tensors() {
		b, err := s.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b})
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, tensors, s.Metadata()); err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), orig) {
		t.Error("writing the fixture's tensors back gives a different file")
	}
}
