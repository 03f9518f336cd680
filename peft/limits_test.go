package peft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/sysmem"
)

// allocated returns the bytes that f allocates (TotalAlloc counts every
// allocation, collected or not).
func allocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// allocBound is the documented bound of ReadSafetensors for a file: in
// terms of its header's length, as far as the file holds it.
func allocBound(file []byte) uint64 {
	n := uint64(0)
	if len(file) >= 8 {
		n = min(binary.LittleEndian.Uint64(file), uint64(len(file)-8))
	}
	return AllocPerHeaderByte*n + AllocSlack
}

// synthFile is a file made of a head, fill repeated count times, and a
// tail, generated as it is read, so that a test of a 100 MB header needs no
// 100 MB copy of it.
type synthFile struct {
	head, fill, tail string
	count            int64
}

func (f synthFile) size() int64 {
	return int64(len(f.head)) + f.count*int64(len(f.fill)) + int64(len(f.tail))
}

func (f synthFile) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	mid := f.count * int64(len(f.fill))
	for n < len(p) {
		at := off + int64(n)
		switch {
		case at < int64(len(f.head)):
			n += copy(p[n:], f.head[at:])
		case at < int64(len(f.head))+mid:
			i := (at - int64(len(f.head))) % int64(len(f.fill))
			end := min(int64(len(p)-n), int64(len(f.head))+mid-at)
			k := copy(p[n:int64(n)+end], f.fill[i:])
			n += k
		case at < f.size():
			n += copy(p[n:], f.tail[at-int64(len(f.head))-mid:])
		default:
			return n, io.EOF
		}
	}
	return n, nil
}

// header returns the 8-byte length of a header of n bytes.
func headerLen(n int64) string {
	return string(binary.LittleEndian.AppendUint64(nil, uint64(n)))
}

// TestLongNames reads files whose header is mostly one long name: refused
// beyond MaxNameLen, read within it, and in every case within the
// documented allocation bound and with a short error message.
func TestLongNames(t *testing.T) {
	const entry = `":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}`
	long := func(fill string, count int64) synthFile {
		n := int64(2) + count*int64(len(fill)) + int64(len(entry))
		return synthFile{head: headerLen(n) + `{"`, fill: fill, count: count, tail: entry}
	}
	cases := []struct {
		name string
		file synthFile
		ok   bool
	}{
		{"99 MB name", long("a", 99_000_000), false},
		{"99 MB escaped name", long(`\u0061`, 16_500_000), false},
		{"99 MB of escaped pairs", long(`\ud83d\ude00`, 8_250_000), false},
		{"99 MB of two-byte escapes", long(`\n`, 49_500_000), false},
		{"name of MaxNameLen bytes", long("a", MaxNameLen), true},
		{"escaped name of MaxNameLen bytes", long(`\u00e9`, MaxNameLen/2), true},
		{"name of MaxNameLen+1 bytes", long("a", MaxNameLen+1), false},
		{"escaped name of MaxNameLen+1 bytes", long(`\t`, MaxNameLen+1), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := c.file.size() - 8
			var err error
			got := allocated(func() { _, err = ReadSafetensors(c.file, c.file.size()) })
			if bound := uint64(AllocPerHeaderByte*n + AllocSlack); got > bound {
				t.Errorf("a %d-byte header allocated %d bytes, more than the bound %d", n, got, bound)
			}
			if c.ok != (err == nil) {
				t.Fatalf("error %v, want ok = %v", err, c.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), fmt.Sprint(MaxNameLen)) {
					t.Errorf("error %.300q does not wrap ErrFormat or name the limit", err)
				}
				if len(err.Error()) > 1024 {
					t.Errorf("a %d-byte error message", len(err.Error()))
				}
			}
		})
	}
	// Error messages quote at most an excerpt of a name.
	name := strings.Repeat("n", 60000)
	file := stFile(`{"`+name+`":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}`, make([]byte, 8))
	if _, err := readBytes(file); err == nil || len(err.Error()) > 1024 {
		t.Errorf("error of %d bytes: %.200q", len(err.Error()), err)
	}
	var buf bytes.Buffer
	err := WriteSafetensors(&buf, []Tensor{{Name: name + name, DType: U8, Shape: []int{0}}}, nil)
	if err == nil || len(err.Error()) > 1024 || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("writing a long name: %.300q", err)
	}
}

// TestWriterReaderAgree writes random sets of tensors and metadata, hostile
// ones included: whatever WriteSafetensors accepts, ReadSafetensors reads
// back as it was; whatever it refuses, it refuses with ErrFormat and
// without writing a byte.
func TestWriterReaderAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pieces := []string{"a", "model.layers.0.q_proj", "\xff", "\xfe", "é", "\U0001F600", "\"", "\\", "\n", "\x00", "\u2028",
		"<&>", "__metadata__", "\xed\xa0\x80", " ", "lora_A", strings.Repeat("x", 1000)}
	name := func() string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		if rng.IntN(200) == 0 {
			b.WriteString(strings.Repeat("L", MaxNameLen-1+rng.IntN(3)))
		}
		return b.String()
	}
	dtypes := []DType{F32, F16, BF16, F64, I8, U8, I64, BOOL, DType("F33"), ""}
	written, refused := 0, 0
	defer func() {
		if written < 500 || refused < 500 {
			t.Errorf("%d sets written and %d refused: the cases do not test both sides", written, refused)
		}
	}()
	for i := range 3000 {
		var tensors []Tensor
		for range rng.IntN(5) {
			d := dtypes[rng.IntN(len(dtypes))]
			shape := make([]int, rng.IntN(4))
			if rng.IntN(50) == 0 {
				shape = make([]int, 63+rng.IntN(4))
			}
			for j := range shape {
				shape[j] = 1 + rng.IntN(3)
				if rng.IntN(30) == 0 {
					shape[j] = rng.IntN(3) - 1
				}
			}
			n := d.Size() * max(0, (&Tensor{Shape: shape}).Elements())
			if rng.IntN(30) == 0 {
				n++
			}
			if len(shape) > 60 || n > 1<<16 {
				n = 0
			}
			data := make([]byte, n)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			tensors = append(tensors, Tensor{Name: name(), DType: d, Shape: shape, Data: data})
		}
		var meta map[string]string
		if rng.IntN(2) == 0 {
			meta = map[string]string{}
			for range rng.IntN(3) {
				meta[name()] = name()
			}
			if rng.IntN(100) == 0 {
				for j := range 1025 {
					meta[fmt.Sprint(j)] = ""
				}
			}
		}
		var buf bytes.Buffer
		err := WriteSafetensors(&buf, tensors, meta)
		if err != nil {
			if !errors.Is(err, ErrFormat) || buf.Len() != 0 {
				t.Fatalf("case %d: refused with %v after writing %d bytes", i, err, buf.Len())
			}
			refused++
			continue
		}
		written++
		s, err := readBytes(buf.Bytes())
		if err != nil {
			t.Fatalf("case %d: wrote a file the reader refuses: %v", i, err)
		}
		if len(s.Tensors()) != len(tensors) || len(s.Metadata()) != len(meta) {
			t.Fatalf("case %d: %d tensors and %d metadata entries read back as %d and %d", i, len(tensors), len(meta), len(s.Tensors()), len(s.Metadata()))
		}
		for k, v := range meta {
			if got, ok := s.Metadata()[k]; !ok || got != v {
				t.Fatalf("case %d: metadata %q: %q read back as %q", i, k, v, got)
			}
		}
		for _, want := range tensors {
			info, ok := s.Tensor(want.Name)
			got, err := s.Bytes(want.Name)
			if !ok || err != nil || info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) || !bytes.Equal(got, want.Data) {
				t.Fatalf("case %d: tensor %q did not read back (%v)", i, want.Name, err)
			}
		}
	}
}

// TestHeaderLimit checks that the writer refuses a header over
// MaxHeaderLen, which the reader would refuse, and accepts one just under.
func TestHeaderLimit(t *testing.T) {
	name := strings.Repeat("n", MaxNameLen-8)
	var infos []TensorInfo
	for i := 0; ; i++ {
		infos = append(infos, TensorInfo{Name: fmt.Sprintf("%08d", i) + name, DType: U8, Shape: []int{0}})
		if len(infos)*(MaxNameLen+60) > MaxHeaderLen+MaxNameLen {
			break
		}
	}
	if _, err := EncodeHeader(infos, nil); err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a header over the limit: %v", err)
	}
	if infos[0].Offset != 0 || infos[0].Length != 0 {
		t.Errorf("a refused header changed the offsets")
	}
	h, err := EncodeHeader(infos[:len(infos)/2], nil)
	if err != nil || len(h) > MaxHeaderLen {
		t.Errorf("half of it: %d bytes, %v", len(h), err)
	}
}

// TestSparseAdapter loads an adapter whose lora_A claims more than the
// machine's memory, in a sparse file that takes no disk: refused before
// anything is allocated for it.
func TestSparseAdapter(t *testing.T) {
	phys := sysmem.Physical()
	if phys == 0 {
		t.Skip("this system does not report its physical memory")
	}
	const in = 1 << 31
	r := 8 // 64 GiB of F32
	for uint64(r)*4*in <= phys {
		r *= 2
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"peft_type": "LORA", "r": %d, "lora_alpha": 8, "target_modules": ["q"]}`, r)
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	infos := []TensorInfo{
		{Name: Prefix + "q.lora_A.weight", DType: F32, Shape: []int{r, in}},
		{Name: Prefix + "q.lora_B.weight", DType: F32, Shape: []int{4, r}},
	}
	h, err := EncodeHeader(infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, WeightsFile)
	if err := os.WriteFile(path, h, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, infos[1].Offset+infos[1].Length); err != nil {
		t.Fatal(err)
	}
	var a *Adapter
	got := allocated(func() { a, err = Load(dir) })
	if err == nil {
		t.Fatalf("loaded %d modules", len(a.Modules))
	}
	if !errors.Is(err, lora.ErrMemory) || !strings.Contains(err.Error(), "memory") {
		t.Errorf("error %v does not wrap lora.ErrMemory", err)
	}
	if got > 1<<20 {
		t.Errorf("refusing allocated %d bytes", got)
	}
	// The file's tensors one at a time.
	st, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Float32s(infos[0].Name); !errors.Is(err, lora.ErrMemory) {
		t.Errorf("Float32s: %v", err)
	}
	if _, err := st.Bytes(infos[0].Name); !errors.Is(err, lora.ErrMemory) {
		t.Errorf("Bytes: %v", err)
	}
}
