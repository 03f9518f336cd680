package peft

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// The quantizer below is bitsandbytes' default (pure PyTorch) backend, the
// kernels quantize_4bit and quantize_blockwise of
// bitsandbytes/backends/default/ops.py, written again in Go for the tests'
// fixtures: every operation in float32, in the same order.

// blockScale scales x block by block as the default backend does: a full
// block by the float32 reciprocal of max(absmax, 1e-38), its absmax stored
// as it is; a short last block divided by am = max(max|x|, 1e-38), am
// stored; both clamped to [−1, 1].
func blockScale(x []float32, blockSize int) (scaled, absmax []float32) {
	const tiny = float32(1e-38) // clamp(min=1e-38) on a float32 tensor
	scaled = make([]float32, len(x))
	for at := 0; at < len(x); at += blockSize {
		block := x[at:min(at+blockSize, len(x))]
		var am float32
		for _, v := range block {
			am = max(am, float32(math.Abs(float64(v))))
		}
		if len(block) == blockSize {
			recip := 1 / max(am, tiny)
			for i, v := range block {
				scaled[at+i] = min(max(v*recip, -1), 1)
			}
			absmax = append(absmax, am)
			continue
		}
		am = max(am, tiny)
		for i, v := range block {
			scaled[at+i] = min(max(v/am, -1), 1)
		}
		absmax = append(absmax, am)
	}
	return scaled, absmax
}

// midpoints returns (code[i] + code[i+1]) / 2 in float32, the bounds of
// torch.bucketize in the default backend.
func midpoints(code []float32) []float32 {
	b := make([]float32, len(code)-1)
	for i := range b {
		b[i] = float32(code[i]+code[i+1]) / 2
	}
	return b
}

// bucket returns the number of bounds strictly below v: torch.bucketize
// with right=False, a value equal to a bound going to the lower code.
func bucket(v float32, bounds []float32) byte {
	n := 0
	for n < len(bounds) && bounds[n] < v {
		n++
	}
	return byte(n)
}

// quantizeNF4 quantizes x as bitsandbytes' default backend quantizes a
// weight to nf4: codes packed two to a byte, the even element in the high
// nibble, an odd count padded with a scaled 0 (code 7 there).
func quantizeNF4(x []float32, blockSize int) (codes []byte, absmax []float32) {
	scaled, absmax := blockScale(x, blockSize)
	if len(scaled)%2 != 0 {
		scaled = append(scaled, 0)
	}
	bounds := midpoints(nf4[:])
	codes = make([]byte, len(scaled)/2)
	for i := range codes {
		codes[i] = bucket(scaled[2*i], bounds)<<4 | bucket(scaled[2*i+1], bounds)
	}
	return codes, absmax
}

// quantizeBlockwise quantizes v to 8-bit codes into the sorted map code, as
// the default backend's quantize_blockwise does.
func quantizeBlockwise(v, code []float32, blockSize int) (q []byte, absmax []float32) {
	scaled, absmax := blockScale(v, blockSize)
	bounds := midpoints(code)
	q = make([]byte, len(scaled))
	for i, s := range scaled {
		q[i] = bucket(s, bounds)
	}
	return q, absmax
}

// nestedMap is a stand-in for bitsandbytes' create_dynamic_map: 256 sorted
// values from −1 to 1. The reader takes any nested_quant_map.
func nestedMap() []float32 {
	m := make([]float32, nestedQuantMapLen)
	for i := range m {
		m[i] = float32(2*i-255) / 255
	}
	return m
}

// dequantize returns the elements of q as bitsandbytes' dequantize_4bit
// computes them in float32.
func dequantize(q *QuantizedWeight) []float32 {
	x := make([]float32, q.Rows*q.Cols)
	for i := range x {
		c := q.Codes[i/2] >> 4
		if i%2 == 1 {
			c = q.Codes[i/2] & 0xf
		}
		x[i] = nf4[c] * q.Absmax[i/q.BlockSize]
	}
	return x
}

// nf4Spec is a 4-bit weight for a test file, saved as transformers saves a
// bitsandbytes Linear4bit.
type nf4Spec struct {
	name            string // the weight: "m.weight"
	rows, cols      int
	blockSize       int
	dtype           string // quant_state's dtype: "bfloat16"
	nestedBlockSize int    // 0: absmax saved as F32, not double-quantized
	storage         DType  // the dtype the codes are viewed as; U8 when ""
	x               []float32
}

// quantStateJSON returns the JSON of a quant_state as bitsandbytes writes
// it: json.dumps of QuantState.as_dict's non-tensor items.
func quantStateJSON(quantType string, blockSize int, dtype string, rows, cols, nestedBlockSize int, offset float32) []byte {
	s := fmt.Sprintf(`{"quant_type": %q, "blocksize": %d, "dtype": %q, "shape": [%d, %d]`, quantType, blockSize, dtype, rows, cols)
	if nestedBlockSize > 0 {
		s += fmt.Sprintf(`, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`,
			nestedBlockSize, strconv.FormatFloat(float64(offset), 'g', -1, 64))
	}
	return []byte(s + "}")
}

// f32Vector returns the 1-dimensional F32 tensor of v.
func f32Vector(name string, v []float32) Tensor {
	data := make([]byte, 4*len(v))
	if err := EncodeFloats(data, v, F32); err != nil {
		panic(err)
	}
	return Tensor{Name: name, DType: F32, Shape: []int{len(v)}, Data: data}
}

// build quantizes the spec's weight and returns its tensors and the
// QuantizedWeight that the reader must return for them.
func (sp nf4Spec) build() ([]Tensor, *QuantizedWeight) {
	codes, absmax := quantizeNF4(sp.x, sp.blockSize)
	storage := cmpOr(sp.storage, U8)
	want := &QuantizedWeight{
		Name: sp.name, Rows: sp.rows, Cols: sp.cols, BlockSize: sp.blockSize,
		DType: torchFloat[sp.dtype], Codes: codes, Absmax: absmax, DoubleQuant: sp.nestedBlockSize > 0,
	}
	ts := []Tensor{
		{Name: sp.name, DType: storage, Shape: []int{len(codes) / storage.Size(), 1}, Data: codes},
		f32Vector(sp.name+suffixQuantMap, nf4[:]),
	}
	var offset float32
	if sp.nestedBlockSize > 0 {
		// quantize_4bit with compress_statistics: the offset is the mean
		// of absmax, and absmax − offset is quantized blockwise.
		var sum float64
		for _, v := range absmax {
			sum += float64(v)
		}
		offset = float32(sum / float64(len(absmax)))
		centred := make([]float32, len(absmax))
		for i, v := range absmax {
			centred[i] = v - offset
		}
		code := nestedMap()
		q, scales := quantizeBlockwise(centred, code, sp.nestedBlockSize)
		ts = append(ts,
			Tensor{Name: sp.name + suffixAbsmax, DType: U8, Shape: []int{len(q)}, Data: q},
			f32Vector(sp.name+suffixNestedAbsmax, scales),
			f32Vector(sp.name+suffixNestedQuantMap, code))
		// What bitsandbytes resolves: the float32 product, then the sum,
		// each rounded once. Products and sums of two float32 are exact or
		// rounded innocuously in float64, so this is an independent
		// reference for resolveAbsmax.
		want.Absmax = make([]float32, len(q))
		for i, c := range q {
			p := float32(float64(code[c]) * float64(scales[i/sp.nestedBlockSize]))
			want.Absmax[i] = float32(float64(p) + float64(offset))
		}
	} else {
		ts = append(ts, f32Vector(sp.name+suffixAbsmax, absmax))
	}
	state := quantStateJSON("nf4", sp.blockSize, sp.dtype, sp.rows, sp.cols, sp.nestedBlockSize, offset)
	ts = append(ts, Tensor{Name: sp.name + quantStateInfix + "nf4", DType: U8, Shape: []int{len(state)}, Data: state})
	return ts, want
}

func cmpOr(d, or DType) DType {
	if d == "" {
		return or
	}
	return d
}

// stBytes writes tensors as a safetensors file.
func stBytes(t testing.TB, tensors []Tensor) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// stOpen writes tensors as a safetensors file and reads it back.
func stOpen(t testing.TB, tensors []Tensor) *Safetensors {
	t.Helper()
	s, err := readBytes(stBytes(t, tensors))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// sameWeight fails the test unless got is want, bit for bit.
func sameWeight(t *testing.T, got, want *QuantizedWeight) {
	t.Helper()
	if got.Name != want.Name || got.Rows != want.Rows || got.Cols != want.Cols || got.BlockSize != want.BlockSize ||
		got.DType != want.DType || got.DoubleQuant != want.DoubleQuant {
		t.Fatalf("got %s %d×%d, blocks of %d, %s, double %v; want %s %d×%d, blocks of %d, %s, double %v",
			got.Name, got.Rows, got.Cols, got.BlockSize, got.DType, got.DoubleQuant,
			want.Name, want.Rows, want.Cols, want.BlockSize, want.DType, want.DoubleQuant)
	}
	if !bytes.Equal(got.Codes, want.Codes) {
		t.Errorf("codes differ")
	}
	if !slices.EqualFunc(got.Absmax, want.Absmax, func(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }) {
		t.Errorf("absmax %v, want %v", got.Absmax, want.Absmax)
	}
}

// TestQuantizeNF4 checks the tests' quantizer against values worked out by
// hand from the default backend's code.
func TestQuantizeNF4(t *testing.T) {
	mid78 := float32(nf4[7]+nf4[8]) / 2
	x := make([]float32, 64+3)
	x[0] = 2
	x[1] = -2
	x[2] = 0
	x[3] = 2 * nf4[13]                     // scaled exactly to a table value
	x[4] = 2 * mid78                       // exactly on a midpoint: the lower code
	x[5] = 2 * math.Nextafter32(mid78, 1)  // just above it: the upper one
	x[6] = -2 * float32(nf4[2]+nf4[3]) / 2 // a positive midpoint, mirrored: no symmetry in NF4
	x[7] = math.Nextafter32(2, 0)          // just below absmax: scaled to 1 − 2⁻²⁴
	x[64], x[65], x[66] = 0.1, -0.3, 0     // a short last block: x / 0.3
	codes, absmax := quantizeNF4(x, 64)
	if !slices.Equal(absmax, []float32{2, 0.3}) {
		t.Fatalf("absmax %v", absmax)
	}
	got := make([]byte, len(x))
	for i := range got {
		got[i] = codes[i/2] >> 4
		if i%2 == 1 {
			got[i] = codes[i/2] & 0xf
		}
	}
	// x[6]/2 = −(nf4[2]+nf4[3])/2 ≈ 0.46: between the midpoints of 12|13
	// (0.50) and 11|12 (0.39).
	want := map[int]byte{0: 15, 1: 0, 2: 7, 3: 13, 4: 7, 5: 8, 6: 12, 7: 15, 8: 7, 64: 11, 65: 0, 66: 7}
	for i, c := range want {
		if got[i] != c {
			t.Errorf("element %d (%v): code %d, want %d", i, x[i], got[i], c)
		}
	}
	if len(codes) != 34 || codes[33]&0xf != 7 {
		t.Errorf("%d bytes, last %#x: want 34, the pad nibble the code of 0", len(codes), codes[len(codes)-1])
	}
	// An all-zero block keeps absmax 0 when full, 1e-38 when short.
	_, absmax = quantizeNF4(make([]float32, 96), 64)
	if absmax[0] != 0 || absmax[1] != float32(1e-38) {
		t.Errorf("absmax of zeros %v, want [0 1e-38]", absmax)
	}
}

// nf4Specs returns one of each kind of 4-bit weight.
func nf4Specs(rng *rand.Rand) map[string]nf4Spec {
	spec := func(rows, cols, bs int, dtype string, nested int, storage DType) nf4Spec {
		return nf4Spec{name: "model.layers.0.mlp.down_proj.weight", rows: rows, cols: cols, blockSize: bs, dtype: dtype,
			nestedBlockSize: nested, storage: storage, x: reftest.Normal(rng, rows*cols, 0.02)}
	}
	return map[string]nf4Spec{
		"plain":               spec(8, 64, 64, "bfloat16", 0, ""),
		"plain float32":       spec(16, 48, 128, "float32", 0, ""),
		"double":              spec(64, 96, 64, "bfloat16", 256, ""), // 96 blocks: one short nested block
		"double nested":       spec(64, 520, 32, "float16", 256, ""), // 1040 blocks: 5 nested, the last short
		"double float16 view": spec(32, 64, 64, "float16", 256, F16),
		"bfloat16 view":       spec(32, 64, 64, "bfloat16", 0, BF16),
		"float32 view":        spec(16, 64, 4096, "bfloat16", 0, F32), // one short block
		"int8 view":           spec(4, 64, 32, "float32", 0, I8),
		"odd":                 spec(3, 5, 32, "bfloat16", 0, ""),
		"odd double":          spec(7, 77, 64, "bfloat16", 256, ""),
	}
}

func TestQuantizedWeightRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, sp := range nf4Specs(rng) {
		t.Run(name, func(t *testing.T) {
			tensors, want := sp.build()
			other := f32Vector("model.norm.weight", []float32{1, 2})
			s := stOpen(t, append(tensors, other))
			names, err := s.QuantizedWeights()
			if err != nil || !slices.Equal(names, []string{sp.name}) {
				t.Fatalf("QuantizedWeights: %q, %v", names, err)
			}
			got, err := s.QuantizedWeight(sp.name)
			if err != nil {
				t.Fatal(err)
			}
			sameWeight(t, got, want)
			state, err := s.QuantizedState(sp.name)
			if err != nil {
				t.Fatal(err)
			}
			if state.Codes != nil {
				t.Errorf("QuantizedState read %d bytes of codes", len(state.Codes))
			}
			state.Codes = want.Codes
			sameWeight(t, state, want)
			// Every element within half the widest gap of the table
			// (0.6961928 − 1) of its block's absmax, as the original
			// absmax or, double-quantized, the resolved one (the codes
			// were made with the original).
			_, orig := quantizeNF4(sp.x, sp.blockSize)
			for i, v := range dequantize(got) {
				b := i / sp.blockSize
				tol := 0.1520*float64(orig[b]) + math.Abs(float64(got.Absmax[b]-orig[b]))
				if math.Abs(float64(v-sp.x[i])) > tol {
					t.Fatalf("element %d: %v dequantized to %v, absmax %v (was %v)", i, sp.x[i], v, got.Absmax[b], orig[b])
				}
			}
		})
	}
}

// TestQuantizedWeightShards reads a weight whose tensors lie in two files,
// as a sharded checkpoint can leave them.
func TestQuantizedWeightShards(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	sp := nf4Specs(rng)["double nested"]
	tensors, want := sp.build()
	var a, b []Tensor
	for _, ts := range tensors {
		if ts.Name == sp.name || strings.HasSuffix(ts.Name, suffixNestedQuantMap) {
			a = append(a, ts)
		} else {
			b = append(b, ts)
		}
	}
	a = append(a, f32Vector("model.layers.0.mlp.up_proj.bias", []float32{1}))
	sh := Shards{stOpen(t, a), stOpen(t, b)}
	names, err := sh.QuantizedWeights()
	if err != nil || !slices.Equal(names, []string{sp.name}) {
		t.Fatalf("QuantizedWeights: %q, %v", names, err)
	}
	got, err := sh.QuantizedWeight(sp.name)
	if err != nil {
		t.Fatal(err)
	}
	sameWeight(t, got, want)
	if _, err := sh[0].QuantizedWeight(sp.name); !errors.Is(err, ErrNotFound) {
		t.Errorf("one shard alone: %v, want ErrNotFound", err)
	}
	if _, err := sh[1].QuantizedWeights(); !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "not there") {
		t.Errorf("the shard without the codes: %v, want a quant_state without its weight", err)
	}
	if _, err := (Shards{sh[0], sh[1], sh[1]}).QuantizedWeight(sp.name); !errors.Is(err, ErrInconsistent) {
		t.Errorf("a shard twice: %v, want ErrInconsistent", err)
	}
	if _, err := (Shards{sh[0], nil}).QuantizedWeight(sp.name); !errors.Is(err, lora.ErrNil) {
		t.Errorf("a nil shard: %v, want lora.ErrNil", err)
	}
	if _, _, ok := sh.Tensor(sp.name + suffixAbsmax); !ok {
		t.Error("Shards.Tensor does not find the absmax")
	}
}

func TestQuantizedWeightsList(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var tensors []Tensor
	for _, l := range []int{10, 2, 1} {
		sp := nf4Specs(rng)["plain"]
		sp.name = fmt.Sprintf("model.layers.%d.mlp.down_proj.weight", l)
		ts, _ := sp.build()
		tensors = append(tensors, ts...)
	}
	fp4 := nf4Specs(rng)["odd"]
	fp4.name = "lm_head.weight"
	ts, _ := fp4.build()
	ts[len(ts)-1].Name = fp4.name + quantStateInfix + "fp4"
	tensors = append(tensors, ts...)
	names, err := stOpen(t, tensors).QuantizedWeights()
	want := []string{"lm_head.weight", "model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight", "model.layers.10.mlp.down_proj.weight"}
	if err != nil || !slices.Equal(names, want) {
		t.Fatalf("%q, %v; want %q", names, err, want)
	}
	orphan := append(slices.Clone(tensors), f32Vector("embed.weight.absmax", []float32{1}))
	if _, err := stOpen(t, orphan).QuantizedWeights(); !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), `"embed.weight.absmax"`) {
		t.Errorf("an absmax without a quant_state: %v", err)
	}
	two := append(slices.Clone(tensors), Tensor{Name: "lm_head.weight" + quantStateInfix + "nf4", DType: U8, Shape: []int{1}, Data: []byte("{")})
	if _, err := stOpen(t, two).QuantizedWeights(); !errors.Is(err, ErrInconsistent) || !strings.Contains(err.Error(), "two quantization states") {
		t.Errorf("two quant_states: %v", err)
	}
	if names, err := stOpen(t, []Tensor{f32Vector("a", []float32{1})}).QuantizedWeights(); err != nil || names != nil {
		t.Errorf("a file without 4-bit weights: %q, %v", names, err)
	}
	var nilST *Safetensors
	if _, err := nilST.QuantizedWeights(); !errors.Is(err, lora.ErrNil) {
		t.Errorf("nil: %v", err)
	}
	if _, err := nilST.QuantizedWeight("w"); !errors.Is(err, lora.ErrNil) {
		t.Errorf("nil: %v", err)
	}
	if _, err := nilST.QuantizedState("w"); !errors.Is(err, lora.ErrNil) {
		t.Errorf("nil: %v", err)
	}
}

func TestQuantizedAux(t *testing.T) {
	for name, want := range map[string]string{
		"m.weight.absmax":                          "m.weight",
		"m.weight.quant_map":                       "m.weight",
		"m.weight.nested_absmax":                   "m.weight",
		"m.weight.nested_quant_map":                "m.weight",
		"m.weight.quant_state.bitsandbytes__nf4":   "m.weight",
		"m.weight.quant_state.bitsandbytes__fp4":   "m.weight",
		"a.b.weight.quant_state.bitsandbytes__x":   "a.b.weight",
		"m.weight":                                 "",
		"m.weight_absmax":                          "",
		".absmax":                                  "",
		"absmax":                                   "",
		"m.weight.quant_state.bitsandbytes__":      "",
		"m.weight.quant_state.bitsandbytes__nf4.x": "",
		".quant_state.bitsandbytes__nf4":           "",
		"m.weight.SCB":                             "",
		"m.lora_A.weight":                          "",
	} {
		w, ok := QuantizedAux(name)
		if w != want || ok != (want != "") {
			t.Errorf("QuantizedAux(%q) = %q, %v; want %q", name, w, ok, want)
		}
	}
}

// tensorEdit changes the tensors of a 4-bit weight "w".
type tensorEdit func(ts []Tensor) []Tensor

// edit returns an edit of the tensor with the suffix.
func edit(suffix string, f func(*Tensor)) tensorEdit {
	return func(ts []Tensor) []Tensor {
		for i := range ts {
			if strings.HasSuffix(ts[i].Name, suffix) {
				ts[i].Data = slices.Clone(ts[i].Data)
				f(&ts[i])
			}
		}
		return ts
	}
}

// drop returns an edit that removes the tensor with the suffix.
func drop(suffix string) tensorEdit {
	return func(ts []Tensor) []Tensor {
		return slices.DeleteFunc(ts, func(t Tensor) bool { return strings.HasSuffix(t.Name, suffix) })
	}
}

// state returns an edit that sets the quant_state's JSON.
func state(j string) tensorEdit {
	return edit(quantStateInfix+"nf4", func(t *Tensor) { t.Data, t.Shape = []byte(j), []int{len(j)} })
}

// setF32 returns an edit that sets element i of the F32 tensor with the
// suffix.
func setF32(suffix string, i int, v float32) tensorEdit {
	return edit(suffix, func(t *Tensor) { EncodeFloats(t.Data[4*i:4*i+4], []float32{v}, F32) })
}

func TestQuantizedWeightRefusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	plainSpec := nf4Spec{name: "w", rows: 4, cols: 64, blockSize: 64, dtype: "bfloat16", x: reftest.Normal(rng, 256, 1)}
	nestedSpec := plainSpec
	nestedSpec.nestedBlockSize = 256
	const qs = `"w.quant_state.bitsandbytes__nf4"`
	js := func(fields string) string {
		return `{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64]` + fields + `}`
	}
	for _, c := range []struct {
		name   string
		nested bool
		edit   tensorEdit
		err    error
		msg    []string // what the message must say
	}{
		{"fp4", false, edit("nf4", func(t *Tensor) { t.Name = "w" + quantStateInfix + "fp4" }), ErrUnsupported, []string{`"w.quant_state.bitsandbytes__fp4"`, "fp4"}},
		{"unknown type", false, edit("nf4", func(t *Tensor) { t.Name = "w" + quantStateInfix + "int4" }), ErrUnsupported, []string{"bitsandbytes__int4", `"int4"`}},
		{"no quant_state", false, drop("nf4"), ErrNotFound, []string{`"w"`, "quant_state"}},
		{"quant_state not U8", false, edit("nf4", func(t *Tensor) { t.DType, t.Shape = I8, []int{len(t.Data)} }), ErrFormat, []string{qs, "I8"}},
		{"quant_state too long", false, state(js(`, "x": "` + strings.Repeat("a", maxQuantState) + `"`)), ErrFormat, []string{qs, "bytes"}},
		{"quant_type fp4", false, state(`{"quant_type": "fp4", "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64]}`), ErrUnsupported, []string{qs, "quant_type", `"fp4"`}},
		{"quant_type number", false, state(`{"quant_type": 4, "blocksize": 64, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "quant_type", "not a string"}},
		{"blocksize 48", false, state(`{"quant_type": "nf4", "blocksize": 48, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize", "48", "power of two"}},
		{"blocksize 16", false, state(`{"quant_type": "nf4", "blocksize": 16, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize", "16"}},
		{"blocksize 8192", false, state(`{"quant_type": "nf4", "blocksize": 8192, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize", "8192"}},
		{"blocksize 64.0", false, state(`{"quant_type": "nf4", "blocksize": 64.0, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize", "not an integer"}},
		{"blocksize string", false, state(`{"quant_type": "nf4", "blocksize": "64", "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize"}},
		{"blocksize null", false, state(`{"quant_type": "nf4", "blocksize": null, "dtype": "bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "blocksize", "null"}},
		{"dtype with torch.", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "torch.bfloat16", "shape": [4, 64]}`), ErrFormat, []string{qs, "dtype", "torch.bfloat16"}},
		{"dtype float64", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "float64", "shape": [4, 64]}`), ErrUnsupported, []string{qs, "dtype", "float64"}},
		{"dtype int8", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "int8", "shape": [4, 64]}`), ErrFormat, []string{qs, "dtype", "int8"}},
		{"shape 1-D", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [256]}`), ErrFormat, []string{qs, "shape", "[256]"}},
		{"shape 3-D", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2, 2, 64]}`), ErrFormat, []string{qs, "shape"}},
		{"shape zero", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [0, 64]}`), ErrFormat, []string{qs, "shape", "[0 64]"}},
		{"shape negative", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [-4, -64]}`), ErrFormat, []string{qs, "shape"}},
		{"shape huge", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [4294967296, 1]}`), ErrFormat, []string{qs, "shape"}},
		{"shape strings", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": ["4", "64"]}`), ErrFormat, []string{qs, "shape"}},
		{"shape null", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": null}`), ErrFormat, []string{qs, "shape", "null"}},
		{"no shape", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16"}`), ErrFormat, []string{qs, "no shape"}},
		{"unknown field", false, state(js(`, "scale": 2`)), ErrUnsupported, []string{qs, `"scale"`}},
		{"duplicate field", false, state(js(`, "blocksize": 64`)), ErrFormat, []string{qs, "duplicate", "blocksize"}},
		{"malformed", false, state(`{"quant_type": "nf4", `), ErrFormat, []string{qs, "not a JSON object"}},
		{"array", false, state(`["nf4"]`), ErrFormat, []string{qs, "not a JSON object"}},
		{"trailing data", false, state(js("") + "{}"), ErrFormat, []string{qs, "after the object"}},
		{"invalid UTF-8", false, state("{\"quant_type\": \"nf4\xff\"}"), ErrFormat, []string{qs, "UTF-8"}},
		{"NaN offset", true, state(js(`, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": NaN`)), ErrFormat, []string{qs, "not a JSON object"}},
		{"codes short", false, edit("w", func(t *Tensor) { t.Data, t.Shape = t.Data[:126], []int{126, 1} }), ErrInconsistent, []string{`"w"`, "126 bytes", "want 128", "[4, 64]"}},
		{"shape disagrees with codes", false, state(`{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [8, 64]}`), ErrInconsistent, []string{`"w"`, "want 256", qs}},
		{"no quant_map", false, drop(suffixQuantMap), ErrInconsistent, []string{`"w.quant_map"`}},
		{"quant_map F16", false, edit(suffixQuantMap, func(t *Tensor) { t.DType, t.Shape = F16, []int{32} }), ErrFormat, []string{`"w.quant_map"`, "F16", "want F32"}},
		{"quant_map short", false, edit(suffixQuantMap, func(t *Tensor) { t.Data, t.Shape = t.Data[:60], []int{15} }), ErrInconsistent, []string{`"w.quant_map"`, "15 elements", "want 16"}},
		{"quant_map one ulp off", false, setF32(suffixQuantMap, 10, math.Nextafter32(nf4[10], 1)), ErrUnsupported, []string{`"w.quant_map"`, "element 10", "NF4"}},
		{"quant_map -0", false, setF32(suffixQuantMap, 7, float32(math.Copysign(0, -1))), ErrUnsupported, []string{`"w.quant_map"`, "element 7"}},
		{"quant_map fp4", false, edit(suffixQuantMap, func(t *Tensor) {
			EncodeFloats(t.Data, []float32{0, 0.0052, 0.6667, 1, 0.3333, 0.5, 0.1667, 0.25, 0, -0.0052, -0.6667, -1, -0.3333, -0.5, -0.1667, -0.25}, F32)
		}), ErrUnsupported, []string{`"w.quant_map"`, "element 0"}},
		{"no absmax", false, drop(suffixAbsmax), ErrInconsistent, []string{`"w.absmax"`}},
		{"absmax U8 without nesting", false, edit(suffixAbsmax, func(t *Tensor) { t.DType, t.Shape, t.Data = U8, []int{4}, t.Data[:4] }), ErrFormat, []string{`"w.absmax"`, "U8", "want F32"}},
		{"absmax short", false, edit(suffixAbsmax, func(t *Tensor) { t.Data, t.Shape = t.Data[:12], []int{3} }), ErrInconsistent, []string{`"w.absmax"`, "3 elements", "want 4", "blocks of 64"}},
		{"absmax NaN", false, setF32(suffixAbsmax, 2, float32(math.NaN())), lora.ErrNonFinite, []string{`"w.absmax"`, "block 2", "NaN"}},
		{"absmax Inf", false, setF32(suffixAbsmax, 0, float32(math.Inf(1))), lora.ErrNonFinite, []string{`"w.absmax"`, "block 0", "Inf"}},
		{"nested tensors without nested fields", false, func(ts []Tensor) []Tensor {
			return append(ts, f32Vector("w"+suffixNestedAbsmax, []float32{1}))
		}, ErrInconsistent, []string{qs, `"w.nested_absmax"`}},
		{"nested fields, plain absmax", false, state(js(`, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.5`)), ErrFormat, []string{`"w.absmax"`, "F32", "want U8"}},
		{"nested field alone", true, state(js(`, "nested_blocksize": 256`)), ErrFormat, []string{qs, "nested_dtype"}},
		{"nested_blocksize 100", true, state(js(`, "nested_blocksize": 100, "nested_dtype": "float32", "nested_offset": 0.5`)), ErrFormat, []string{qs, "nested_blocksize", "100"}},
		{"nested_dtype float16", true, state(js(`, "nested_blocksize": 256, "nested_dtype": "float16", "nested_offset": 0.5`)), ErrUnsupported, []string{qs, "nested_dtype", "float16"}},
		{"nested_offset string", true, state(js(`, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": "0.5"`)), ErrFormat, []string{qs, "nested_offset", "not a number"}},
		{"nested_offset beyond float32", true, state(js(`, "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 1e39`)), lora.ErrNonFinite, []string{qs, "nested_offset", "1e39"}},
		{"no nested_absmax", true, drop(suffixNestedAbsmax), ErrInconsistent, []string{`"w.nested_absmax"`}},
		{"no nested_quant_map", true, drop(suffixNestedQuantMap), ErrInconsistent, []string{`"w.nested_quant_map"`}},
		{"absmax F32 when nested", true, edit(suffixAbsmax, func(t *Tensor) { t.DType, t.Shape, t.Data = F32, []int{1}, t.Data[:4] }), ErrFormat, []string{`"w.absmax"`, "F32", "want U8"}},
		{"nested absmax long", true, edit(suffixAbsmax, func(t *Tensor) { t.Data, t.Shape = append(t.Data, 0), []int{5} }), ErrInconsistent, []string{`"w.absmax"`, "5 elements", "want 4"}},
		{"nested_absmax long", true, edit(suffixNestedAbsmax, func(t *Tensor) { t.Data, t.Shape = append(t.Data, 0, 0, 0, 0), []int{2} }), ErrInconsistent, []string{`"w.nested_absmax"`, "2 elements", "want 1", "nested_blocksize 256"}},
		{"nested_quant_map short", true, edit(suffixNestedQuantMap, func(t *Tensor) { t.Data, t.Shape = t.Data[:1020], []int{255} }), ErrInconsistent, []string{`"w.nested_quant_map"`, "255 elements", "want 256"}},
		{"nested_absmax F16", true, edit(suffixNestedAbsmax, func(t *Tensor) { t.DType, t.Shape = F16, []int{2} }), ErrFormat, []string{`"w.nested_absmax"`, "F16"}},
		{"nested_absmax Inf", true, setF32(suffixNestedAbsmax, 0, float32(math.Inf(1))), lora.ErrNonFinite, []string{`"w"`, "block", `"w.absmax"`, `"w.nested_absmax"`, "nested_offset"}},
		{"nested_quant_map NaN", true, func(ts []Tensor) []Tensor {
			ts = edit(suffixAbsmax, func(t *Tensor) { copy(t.Data, []byte{255, 3, 255, 255}) })(ts)
			return setF32(suffixNestedQuantMap, 3, float32(math.NaN()))(ts)
		}, lora.ErrNonFinite, []string{"block 1", "code 3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := plainSpec
			if c.nested {
				sp = nestedSpec
			}
			ts, _ := sp.build()
			s := stOpen(t, c.edit(ts))
			_, err := s.QuantizedWeight("w")
			if !errors.Is(err, c.err) {
				t.Fatalf("%v, want an error wrapping %v", err, c.err)
			}
			if _, serr := s.QuantizedState("w"); serr == nil || serr.Error() != err.Error() {
				t.Errorf("QuantizedState: %v, want QuantizedWeight's %v", serr, err)
			}
			if !strings.HasPrefix(err.Error(), "peft: ") {
				t.Errorf("%q does not start with peft:", err)
			}
			for _, m := range c.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not say %s", err, m)
				}
			}
		})
	}
	// Every fixture unedited reads.
	for _, sp := range []nf4Spec{plainSpec, nestedSpec} {
		ts, want := sp.build()
		got, err := stOpen(t, ts).QuantizedWeight("w")
		if err != nil {
			t.Fatal(err)
		}
		sameWeight(t, got, want)
	}
	ts, _ := plainSpec.build()
	if _, err := stOpen(t, ts).QuantizedWeight("v"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"v"`) {
		t.Errorf("a weight that is not there: %v", err)
	}
}

// TestResolveAbsmaxNoFusion checks that double-quantized absmax is the
// rounded product plus the offset, where a fused multiply-add, which Go
// allows for an unconverted product, gives another float32.
func TestResolveAbsmaxNoFusion(t *testing.T) {
	code := []float32{1 + 0x1p-23}
	scales := []float32{1 + 0x1p-23}
	offset := float32(-1)
	got := resolveAbsmax([]byte{0}, code, scales, 256, offset)
	// (1+2⁻²³)² = 1 + 2⁻²² + 2⁻⁴⁶ rounds to 1 + 2⁻²²; minus 1 is 2⁻²².
	// Fused, it would be 2⁻²² + 2⁻⁴⁶.
	if got[0] != 0x1p-22 {
		t.Errorf("got %g, want 2⁻²² = %g", got[0], float32(0x1p-22))
	}
}

// updateTestdata rewrites the fixture of the examples.
var updateTestdata = flag.Bool("update", false, "rewrite testdata/nf4-tiny.safetensors")

// nf4TinyFile is a small checkpoint of two 4-bit weights and a float one,
// which the examples read. TestNF4Testdata makes it.
const nf4TinyFile = "testdata/nf4-tiny.safetensors"

// nf4Tiny returns the tensors of nf4TinyFile. Its values come from integer
// arithmetic only, so that the file is the same on every machine.
func nf4Tiny() []Tensor {
	h := uint32(12345)
	values := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			h = h*1664525 + 1013904223
			v[i] = float32(int32(h)>>8) * 0x1p-23 * scale // uniform in [−scale, scale)
		}
		return v
	}
	down, _ := nf4Spec{name: "model.layers.0.mlp.down_proj.weight", rows: 8, cols: 64, blockSize: 64, dtype: "bfloat16",
		nestedBlockSize: 256, x: values(8*64, 0.05)}.build()
	q, _ := nf4Spec{name: "model.layers.0.self_attn.q_proj.weight", rows: 4, cols: 32, blockSize: 32, dtype: "float16",
		x: values(4*32, 0.1)}.build()
	return append(append(down, q...), f32Vector("model.norm.weight", values(8, 1)))
}

// TestNF4Testdata checks that nf4TinyFile is what nf4Tiny makes, and with
// -update writes it.
func TestNF4Testdata(t *testing.T) {
	want := stBytes(t, nf4Tiny())
	if *updateTestdata {
		if err := os.WriteFile(filepath.FromSlash(nf4TinyFile), want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.FromSlash(nf4TinyFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what nf4Tiny makes: run go test ./peft -run TestNF4Testdata -update", nf4TinyFile)
	}
}

func TestParseQuantizationConfig(t *testing.T) {
	// As transformers writes a BitsAndBytesConfig into config.json.
	const cfg = `{
  "architectures": ["LlamaForCausalLM"],
  "hidden_size": 64,
  "quantization_config": {
    "_load_in_4bit": true,
    "_load_in_8bit": false,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_storage": "uint8",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": true,
    "llm_int8_enable_fp32_cpu_offload": false,
    "llm_int8_has_fp16_weight": false,
    "llm_int8_skip_modules": null,
    "llm_int8_threshold": 6.0,
    "load_in_4bit": true,
    "load_in_8bit": false,
    "quant_method": "bitsandbytes"
  },
  "torch_dtype": "bfloat16"
}
`
	q, err := ParseQuantizationConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if q.QuantMethod != "bitsandbytes" || !q.LoadIn4bit || q.LoadIn8bit || q.QuantType != "nf4" || !q.DoubleQuant ||
		q.ComputeDType != BF16 || q.QuantStorage != U8 || q.SkipModules != nil {
		t.Errorf("%+v", q)
	}
	if string(q.Extra["llm_int8_threshold"]) != "6.0" || len(q.Extra) != 5 {
		t.Errorf("Extra %v", q.Extra)
	}
	if err := q.Check(); err != nil {
		t.Error(err)
	}

	// Defaults, as transformers' constructor gives them, and a
	// configuration without quant_method.
	q, err = ParseQuantizationConfig([]byte(`{"quantization_config": {"load_in_4bit": true, "bnb_4bit_quant_storage": "bfloat16", "llm_int8_skip_modules": ["lm_head"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if q.QuantMethod != "bitsandbytes" || q.QuantType != "fp4" || q.ComputeDType != F32 || q.QuantStorage != BF16 || !slices.Equal(q.SkipModules, []string{"lm_head"}) {
		t.Errorf("%+v", q)
	}
	if err := q.Check(); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "bnb_4bit_quant_type") {
		t.Errorf("fp4: %v", err)
	}

	for _, doc := range []string{`{}`, `{"quantization_config": null}`} {
		if q, err := ParseQuantizationConfig([]byte(doc)); q != nil || err != nil {
			t.Errorf("%s: %+v, %v", doc, q, err)
		}
	}
	for _, c := range []struct{ doc, msg string }{
		{`[]`, "config.json"},
		{`{"a": 1`, "config.json"},
		{"{\"a\": \"\xff\"}", "UTF-8"},
		{`{"quantization_config": 4}`, "quantization_config is 4"},
		{`{"quantization_config": {"load_in_4bit": "yes"}}`, "quantization_config.load_in_4bit"},
		{`{"quantization_config": {"load_in_4bit": null}}`, "quantization_config.load_in_4bit is null"},
		{`{"quantization_config": {"bnb_4bit_compute_dtype": "torch.float16"}}`, "bnb_4bit_compute_dtype"},
		{`{"quantization_config": {"bnb_4bit_quant_storage": "uint4"}}`, "bnb_4bit_quant_storage"},
		{`{"quantization_config": {"llm_int8_skip_modules": "lm_head"}}`, "llm_int8_skip_modules"},
	} {
		if _, err := ParseQuantizationConfig([]byte(c.doc)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want ErrFormat saying %s", c.doc, err, c.msg)
		}
	}

	for _, c := range []struct {
		q   QuantizationConfig
		err error
		msg string
	}{
		{QuantizationConfig{QuantMethod: "gptq"}, ErrUnsupported, "quant_method"},
		{QuantizationConfig{QuantMethod: "bitsandbytes", LoadIn8bit: true}, ErrUnsupported, "load_in_8bit"},
		{QuantizationConfig{QuantMethod: "bitsandbytes", LoadIn4bit: true, LoadIn8bit: true}, ErrFormat, "both"},
		{QuantizationConfig{QuantMethod: "bitsandbytes"}, ErrFormat, "neither"},
		{QuantizationConfig{QuantMethod: "bitsandbytes", LoadIn4bit: true, QuantType: "fp4"}, ErrUnsupported, "fp4"},
	} {
		if err := c.q.Check(); !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%+v: %v, want %v saying %s", c.q, err, c.err, c.msg)
		}
	}
	var nilQ *QuantizationConfig
	if err := nilQ.Check(); !errors.Is(err, lora.ErrNil) {
		t.Errorf("nil: %v", err)
	}
}

func TestWithoutQuantizationConfig(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"{\n  \"a\": 1,\n  \"quantization_config\": {\"load_in_4bit\": true},\n  \"b\": [2]\n}\n", "{\n  \"a\": 1,\n  \"b\": [2]\n}\n"},
		{"{\n  \"a\": 1,\n  \"quantization_config\": {}\n}", "{\n  \"a\": 1\n}"},
		{"{\n  \"quantization_config\": {},\n  \"a\": 1\n}", "{\n  \"a\": 1\n}"},
		{`{"quantization_config":{},"a":1,"b":2}`, `{"a":1,"b":2}`},
		{`{"a":1,"quantization_config":{},"b":2}`, `{"a":1,"b":2}`},
		{`{"a":1,"b":2,"quantization_config":{}}`, `{"a":1,"b":2}`},
		{`{ "quantization_config" : null }`, `{ }`},
		{`{"quantization_config":1,"quantization_config":2,"a":3}`, `{"a":3}`},
		{`{"quantization_config":1,"a":3,"quantization_config":2}`, `{"a":3}`},
		{`{"quantization\u005fconfig":{},"a":"quantization_config"}`, `{"a":"quantization_config"}`},
		{`{"a":{"quantization_config":1}}`, `{"a":{"quantization_config":1}}`},
		{"{}", "{}"},
		{" {\"a\" : 1 } \n", " {\"a\" : 1 } \n"},
	} {
		got, err := WithoutQuantizationConfig([]byte(c.in))
		if err != nil || string(got) != c.want {
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{``, `[]`, `{"a":1`, `{"a":1}{}`, `{"a":1} x`, "{\"a\":\"\xff\"}", `{"a" 1}`} {
		if _, err := WithoutQuantizationConfig([]byte(in)); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: %v, want ErrFormat", in, err)
		}
	}
}

// TestQuantizedWeightMatrix checks that the lora.Matrix of each weight of
// the testdata checkpoint holds its codes and absmax as they are, and that
// its values are the table's.
func TestQuantizedWeightMatrix(t *testing.T) {
	st, err := OpenSafetensors("testdata/nf4-tiny.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	names, err := st.QuantizedWeights()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		q, err := st.QuantizedWeight(name)
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.Matrix()
		if err != nil {
			t.Fatal(err)
		}
		codes, absmax := make([]byte, len(q.Codes)), make([]float32, len(q.Absmax))
		if err := m.ReadQuantized(codes, absmax); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(codes, q.Codes) || !slices.Equal(absmax, q.Absmax) {
			t.Errorf("%s: the matrix's stored state differs from the checkpoint's", name)
		}
		got, err := m.ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		want := reftest.NF4Values(q.Codes, q.Absmax, q.BlockSize, q.Rows*q.Cols)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: element %d = %g, want %g", name, i, got[i], want[i])
			}
		}
		m.Free()
	}
	bad := &QuantizedWeight{Name: "w", Rows: 2, Cols: 32, BlockSize: 32, Codes: make([]byte, 31), Absmax: make([]float32, 2)}
	if _, err := bad.Matrix(); !errors.Is(err, lora.ErrShape) || !strings.Contains(err.Error(), "w") {
		t.Errorf("short codes: %v, want ErrShape naming the weight", err)
	}
}
