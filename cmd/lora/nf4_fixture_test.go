package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/peft"
)

// nf4Spec is a weight that a test model stores in 4 bits, as transformers
// saves a bitsandbytes Linear4bit.
type nf4Spec struct {
	name       string
	rows, cols int
	block      int
	dtype      string     // the quant_state's dtype: "bfloat16", "float16" or "float32"
	nested     int        // nested_blocksize; 0 for an absmax that is not double-quantized
	storage    peft.DType // the dtype the codes are viewed as; U8 when ""
	shard      int        // of the codes
	auxShard   int        // of the tensors of the quantization state
}

// tensors quantizes rows×cols values of r with internal/reftest's
// quantizer and returns the tensors of the weight in the codes' shard and
// in the other's, and the values it dequantizes to: NF4[code]·absmax in
// float32, with the absmax that a double-quantized weight resolves to,
// computed here in float64 and rounded where bitsandbytes rounds.
func (sp nf4Spec) tensors(r *rng) (codes, aux []peft.Tensor, values []float32) {
	n := sp.rows * sp.cols
	x := make([]float32, n)
	r.fill(x)
	c, absmax := reftest.QuantizeNF4(x, sp.block)
	storage := sp.storage
	if storage == "" {
		storage = peft.U8
	}
	codes = []peft.Tensor{{Name: sp.name, DType: storage, Shape: []int{len(c) / storage.Size(), 1}, Data: c}}
	aux = []peft.Tensor{f32Tensor(sp.name+".quant_map", reftest.NF4[:])}
	state := fmt.Sprintf(`{"quant_type": "nf4", "blocksize": %d, "dtype": %q, "shape": [%d, %d]`, sp.block, sp.dtype, sp.rows, sp.cols)
	resolved := absmax
	if sp.nested > 0 {
		// Double quantization as bitsandbytes does it: absmax less its
		// mean, in 8-bit codes into a map of 256 values from −1 to 1 with a
		// scale for each nested_blocksize of them.
		var sum float64
		for _, v := range absmax {
			sum += float64(v)
		}
		offset := float32(sum / float64(len(absmax)))
		qmap := make([]float32, 256)
		for i := range qmap {
			qmap[i] = float32(2*i-255) / 255
		}
		q8 := make([]byte, len(absmax))
		var scales []float32
		resolved = make([]float32, len(absmax))
		for b0 := 0; b0 < len(absmax); b0 += sp.nested {
			b1 := min(b0+sp.nested, len(absmax))
			scale := float32(1e-38)
			for _, v := range absmax[b0:b1] {
				scale = max(scale, float32(math.Abs(float64(v-offset))))
			}
			scales = append(scales, scale)
			for i := b0; i < b1; i++ {
				k := math.Round((float64(absmax[i]-offset)/float64(scale) + 1) * 127.5)
				q8[i] = byte(min(max(k, 0), 255))
				p := float32(float64(qmap[q8[i]]) * float64(scale))
				resolved[i] = float32(float64(p) + float64(offset))
			}
		}
		aux = append(aux,
			peft.Tensor{Name: sp.name + ".absmax", DType: peft.U8, Shape: []int{len(q8)}, Data: q8},
			f32Tensor(sp.name+".nested_absmax", scales),
			f32Tensor(sp.name+".nested_quant_map", qmap))
		state += fmt.Sprintf(`, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %v`, sp.nested, float64(offset))
	} else {
		aux = append(aux, f32Tensor(sp.name+".absmax", absmax))
	}
	state += "}"
	aux = append(aux, peft.Tensor{Name: sp.name + ".quant_state.bitsandbytes__nf4", DType: peft.U8, Shape: []int{len(state)}, Data: []byte(state)})
	return codes, aux, reftest.NF4Values(c, resolved, sp.block, n)
}

// f32Tensor returns the F32 tensor of v, one-dimensional.
func f32Tensor(name string, v []float32) peft.Tensor {
	data := make([]byte, 4*len(v))
	peft.EncodeFloats(data, v, peft.F32)
	return peft.Tensor{Name: name, DType: peft.F32, Shape: []int{len(v)}, Data: data}
}

// nf4Specs returns the 4-bit weights of the test model: layer 0's
// projections, which smallAdapter targets, one with codes viewed as BF16
// (which must not be taken for a BF16 weight), two double-quantized, of
// which one has its quantization state in the other shard; and a gate_proj
// that it does not target, of an odd element count with a short last
// block.
func nf4Specs() []nf4Spec {
	return []nf4Spec{
		{name: "model.layers.0.self_attn.q_proj.weight", rows: 16, cols: 16, block: 64, dtype: "bfloat16", storage: peft.BF16},
		{name: "model.layers.0.self_attn.v_proj.weight", rows: 8, cols: 16, block: 32, dtype: "float32", nested: 256},
		{name: "model.layers.0.mlp.down_proj.weight", rows: 16, cols: 24, block: 64, dtype: "bfloat16", nested: 256, auxShard: 1},
		{name: "model.layers.0.mlp.gate_proj.weight", rows: 5, cols: 7, block: 32, dtype: "float16", shard: 1, auxShard: 1},
	}
}

// nf4Config is the config.json of the test model, as transformers writes
// it for a model loaded with a BitsAndBytesConfig.
const nf4Config = `{
  "architectures": ["LlamaForCausalLM"],
  "model_type": "llama",
  "quantization_config": {
    "_load_in_4bit": true,
    "_load_in_8bit": false,
    "bnb_4bit_compute_dtype": "bfloat16",
    "bnb_4bit_quant_storage": "uint8",
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": true,
    "llm_int8_skip_modules": null,
    "llm_int8_threshold": 6.0,
    "load_in_4bit": true,
    "load_in_8bit": false,
    "quant_method": "bitsandbytes"
  },
  "torch_dtype": "bfloat16"
}
`

// nf4Model is a test model with 4-bit weights and an adapter for it.
type nf4Model struct {
	base, adapter string
	values        map[string][]float32 // of each 4-bit weight, dequantized
	dtype         map[string]peft.DType
	aux           []string // the tensors of quantization state
}

// nf4Setup writes the test model in two shards (in one file when single),
// with config.json config, changing its tensors with edit first, and
// smallAdapter for it. The model is the small model of smallSpecs (less its
// integer tensor), with the weights of nf4Specs stored in 4 bits.
func nf4Setup(t *testing.T, single bool, config string, edit func([]peft.Tensor) []peft.Tensor) *nf4Model {
	t.Helper()
	dir := t.TempDir()
	nm := &nf4Model{base: filepath.Join(dir, "base"), adapter: filepath.Join(dir, "adapter"),
		values: map[string][]float32{}, dtype: map[string]peft.DType{}}
	r := &rng{9}
	var shards [2][]peft.Tensor
	for _, f := range []struct {
		name  string
		shape []int
		shard int
	}{
		{"model.embed_tokens.weight", []int{32, 16}, 0},
		{"model.layers.0.input_layernorm.weight", []int{16}, 0},
		{"lm_head.weight", []int{32, 16}, 1},
		{"model.layers.1.self_attn.q_proj.weight", []int{16, 16}, 1},
		{"model.layers.1.self_attn.v_proj.weight", []int{8, 16}, 1},
		{"model.norm.weight", []int{16}, 1},
	} {
		n := 1
		for _, d := range f.shape {
			n *= d
		}
		v := make([]float32, n)
		r.fill(v)
		ft := f32Tensor(f.name, v)
		ft.Shape = f.shape
		shards[f.shard] = append(shards[f.shard], ft)
	}
	dtypes := map[string]peft.DType{"bfloat16": peft.BF16, "float16": peft.F16, "float32": peft.F32}
	for _, sp := range nf4Specs() {
		codes, aux, values := sp.tensors(r)
		shards[sp.shard] = append(shards[sp.shard], codes...)
		shards[sp.auxShard] = append(shards[sp.auxShard], aux...)
		nm.values[sp.name], nm.dtype[sp.name] = values, dtypes[sp.dtype]
		for _, a := range aux {
			nm.aux = append(nm.aux, a.Name)
		}
	}
	if edit != nil {
		shards[0], shards[1] = edit(shards[0]), edit(shards[1])
	}
	files := shards[:]
	if single {
		files = [][]peft.Tensor{append(shards[0], shards[1]...)}
	}
	writeTensors(t, nm.base, files)
	if config != "" {
		if err := os.WriteFile(filepath.Join(nm.base, "config.json"), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := peft.Save(nm.adapter, smallAdapter()); err != nil {
		t.Fatal(err)
	}
	return nm
}

// writeTensors writes the tensors of each shard into dir: one
// model.safetensors, or model-0000k-of-0000n.safetensors and
// model.safetensors.index.json, whose weight_map names every tensor.
func writeTensors(t *testing.T, dir string, shards [][]peft.Tensor) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	weightMap := map[string]string{}
	for k, ts := range shards {
		name := singleName
		if len(shards) > 1 {
			name = fmt.Sprintf("model-%05d-of-%05d.safetensors", k+1, len(shards))
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := peft.WriteSafetensors(f, ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		for _, ts := range ts {
			weightMap[ts.Name] = name
		}
	}
	if len(shards) > 1 {
		writeIndex(t, dir, weightMap)
	}
}

// formats are the reftest models of the float dtypes.
var formats = map[peft.DType]reftest.Format{peft.F32: reftest.F32, peft.F16: reftest.F16, peft.BF16: reftest.BF16}

// configKeys returns the top-level keys of the config.json in dir.
func configKeys(t *testing.T, dir string) map[string]json.RawMessage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
