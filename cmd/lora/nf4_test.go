package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora/peft"
)

// TestMergeNF4 merges the small adapter into the small model with layer
// 0's q_proj, v_proj and down_proj (targets) and a gate_proj (not one)
// stored as bitsandbytes 4-bit weights, sharded and in one file, keeping
// the dtypes and with -dtype; layer 1's targets are F32, and the adapter
// replaces lm_head. Every 4-bit weight comes
// out in its quant_state's dtype (or -dtype) and its shape: an untargeted
// one holds its exact values NF4[code]·absmax rounded once to that dtype,
// bit for bit; a targeted one holds them plus s·B·A, within the bound of
// the float32 merge of a float weight, and bit for bit what merging the
// dequantized model stored in float32 gives, rounded to that dtype. No
// tensor of quantization state is left in the shards or in the index, and
// config.json has lost its quantization_config alone.
//
// Conversions go in steps of 7 elements and merges in blocks of 5 rows, so
// that steps start at odd elements and blocks of rows within blocks of
// codes.
func TestMergeNF4(t *testing.T) {
	defer func(v, b int64) { convertStep, mergeBlockElems = v, b }(convertStep, mergeBlockElems)
	convertStep, mergeBlockElems = 7, 90
	for _, c := range []struct {
		name   string
		single bool
		dtype  peft.DType // -dtype; "" for keep
	}{
		{"sharded", false, ""},
		{"single file", true, ""},
		{"sharded, -dtype f32", false, peft.F32},
		{"sharded, -dtype f16", false, peft.F16},
	} {
		t.Run(c.name, func(t *testing.T) {
			nm := nf4Setup(t, c.single, nf4Config, nil)
			ad, err := peft.Load(nm.adapter)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			out, twinOut := filepath.Join(dir, "out"), filepath.Join(dir, "twin-out")
			flag := cmp.Or(strings.ToLower(string(c.dtype)), "keep")
			stdout, stderr, err := runCmd(t, "merge", "-base", nm.base, "-adapter", nm.adapter, "-out", out, "-dtype", flag)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			want := fmt.Sprintf("bitsandbytes 4-bit: dequantized 4 weights (3 merged), left out %d tensors of their quantization state", len(nm.aux))
			if !strings.Contains(stdout, "merged 5 modules, replaced 1 tensor") || !strings.Contains(stdout, want) {
				t.Errorf("summary does not say %q:\n%s", want, stdout)
			}
			// The same model stored in float32, merged by the float path.
			if _, stderr, err := runCmd(t, "merge", "-base", nm.twin(t), "-adapter", nm.adapter, "-out", twinOut); err != nil {
				t.Fatalf("the float32 twin: %v\n%s", err, stderr)
			}

			got := openT(t, out)
			defer got.close()
			twin := openT(t, twinOut)
			defer twin.close()
			checkNF4Layout(t, nm, got)
			rout, rtwin := &reader{m: got}, &reader{m: twin}
			var enc []byte
			for name, values := range nm.values {
				d := cmp.Or(c.dtype, nm.dtype[name])
				v, info := rout.values(t, name)
				if info.DType != d {
					t.Errorf("%s: dtype %s, want %s", name, info.DType, d)
				}
				m, _ := ad.Module(strings.TrimSuffix(name, ".weight"))
				if m == nil {
					f := formats[d]
					for i, x := range values {
						if w := float32(f.Round(float64(x))); math.Float32bits(v[i]) != math.Float32bits(w) {
							t.Fatalf("%s[%d] = %v, want %v: NF4[code]·absmax = %v rounded once to %s", name, i, v[i], w, x, d)
						}
					}
					continue
				}
				checkMerged(t, name, v, values, m, float64(m.Scale), d)
				tv, _ := rtwin.values(t, name)
				enc = grow(enc, len(tv)*d.Size())
				peft.EncodeFloats(enc, tv, d)
				if b, _ := rout.bytes(t, name); !bytes.Equal(b, enc) {
					t.Errorf("%s is not the float32 merge of its dequantized values, rounded to %s", name, d)
				}
			}
			cfg := configKeys(t, out)
			if _, ok := cfg[peft.QuantizationConfigKey]; ok || len(cfg) != 3 || cfg["model_type"] == nil || cfg["torch_dtype"] == nil {
				t.Errorf("config.json has keys %v, want those of the base but quantization_config", slices.Sorted(maps.Keys(cfg)))
			}
		})
	}
}

// twin writes, beside the model, the same model stored unquantized in
// float32, in one file: each 4-bit weight as its values.
func (nm *nf4Model) twin(t *testing.T) string {
	t.Helper()
	in := openT(t, nm.base)
	defer in.close()
	r := &reader{m: in}
	var ts []peft.Tensor
	for name, ref := range in.where {
		switch w, aux := peft.QuantizedAux(name); {
		case aux && nm.values[w] != nil:
		case nm.values[name] != nil:
			q, _ := in.files().QuantizedState(name)
			tt := f32Tensor(name, nm.values[name])
			tt.Shape = []int{q.Rows, q.Cols}
			ts = append(ts, tt)
		default:
			b, _ := r.bytes(t, name)
			ts = append(ts, peft.Tensor{Name: name, DType: ref.info.DType, Shape: ref.info.Shape, Data: slices.Clone(b)})
		}
	}
	dir := filepath.Join(filepath.Dir(nm.base), "twin")
	writeTensors(t, dir, [][]peft.Tensor{ts})
	return dir
}

// checkNF4Layout checks that the output got of a merge of nm has the
// base's files and tensors but for those of quantization state, every
// 4-bit weight with its shape, and an index whose weight_map lists what
// the shards hold, with total_size their bytes.
func checkNF4Layout(t *testing.T, nm *nf4Model, got *model) {
	t.Helper()
	in := openT(t, nm.base)
	defer in.close()
	if len(got.shards) != len(in.shards) {
		t.Fatalf("%d shards, want %d", len(got.shards), len(in.shards))
	}
	for name, ref := range in.where {
		oref, ok := got.where[name]
		switch {
		case slices.Contains(nm.aux, name):
			if ok {
				t.Errorf("%s, a tensor of quantization state, is in the output", name)
			}
		case !ok:
			t.Errorf("%s is not in the output", name)
		case got.shards[oref.shard].name != in.shards[ref.shard].name:
			t.Errorf("%s is in %s, want %s", name, got.shards[oref.shard].name, in.shards[ref.shard].name)
		case nm.values[name] != nil && int64(len(nm.values[name])) != oref.info.Elements():
			t.Errorf("%s has shape %v: %d elements, want %d", name, oref.info.Shape, oref.info.Elements(), len(nm.values[name]))
		}
	}
	if len(got.where) != len(in.where)-len(nm.aux) {
		t.Errorf("%d tensors in the output, want %d", len(got.where), len(in.where)-len(nm.aux))
	}
	if in.index == nil {
		return
	}
	if got.index == nil {
		t.Fatal("no index written")
	}
	var total int64
	for name, ref := range got.where {
		total += ref.info.Length
		if got.index.weightMap[name] != got.shards[ref.shard].name {
			t.Errorf("weight_map puts %s in %q", name, got.index.weightMap[name])
		}
	}
	if len(got.index.weightMap) != len(got.where) {
		t.Errorf("weight_map lists %d tensors, the shards hold %d", len(got.index.weightMap), len(got.where))
	}
	var size int64
	if err := json.Unmarshal(got.index.metadata["total_size"], &size); err != nil || size != total {
		t.Errorf("total_size %d (%v), want %d", size, err, total)
	}
}

// setState returns an edit of a model's tensors that replaces old by new
// in the quant_state of the weight called name.
func setState(name, old, new string) func([]peft.Tensor) []peft.Tensor {
	return editTensor(name+".quant_state.bitsandbytes__nf4", func(x *peft.Tensor) {
		x.Data = bytes.Replace(x.Data, []byte(old), []byte(new), 1)
		x.Shape = []int{len(x.Data)}
	})
}

// editTensor returns an edit of a model's tensors that changes the one
// called name with f.
func editTensor(name string, f func(*peft.Tensor)) func([]peft.Tensor) []peft.Tensor {
	return func(ts []peft.Tensor) []peft.Tensor {
		for i := range ts {
			if ts[i].Name == name {
				ts[i].Data = slices.Clone(ts[i].Data)
				f(&ts[i])
			}
		}
		return ts
	}
}

// setF32 returns an edit that sets element i of the F32 tensor called name.
func setF32(name string, i int, v float32) func([]peft.Tensor) []peft.Tensor {
	return editTensor(name, func(x *peft.Tensor) { peft.EncodeFloats(x.Data[4*i:4*i+4], []float32{v}, peft.F32) })
}

// TestMergeNF4Refusals checks that a 4-bit model that merge cannot write
// exactly is refused, with an error that names the tensor and the field,
// and that nothing is left behind: the checks of peft's reader, made
// before anything is written, and the overflows of the dequantized and
// merged values.
func TestMergeNF4Refusals(t *testing.T) {
	const (
		q    = "model.layers.0.self_attn.q_proj.weight"
		v    = "model.layers.0.self_attn.v_proj.weight"
		down = "model.layers.0.mlp.down_proj.weight"
		gate = "model.layers.0.mlp.gate_proj.weight"
	)
	state := func(w string) string { return `"` + w + `.quant_state.bitsandbytes__nf4"` }
	for _, c := range []struct {
		name   string
		config string
		edit   func([]peft.Tensor) []peft.Tensor
		args   []string
		want   []string
	}{
		{name: "fp4 weight", edit: func(ts []peft.Tensor) []peft.Tensor {
			return editTensor(q+".quant_state.bitsandbytes__nf4", func(x *peft.Tensor) { x.Name = q + ".quant_state.bitsandbytes__fp4" })(setState(q, `"nf4"`, `"fp4"`)(ts))
		}, want: []string{`"` + q + `.quant_state.bitsandbytes__fp4"`, "quant type fp4"}},
		{name: "fp4 quant_type", edit: setState(down, `"nf4"`, `"fp4"`), want: []string{state(down), "quant_type", `"fp4"`}},
		{name: "fp4 config", config: strings.Replace(nf4Config, `"bnb_4bit_quant_type": "nf4"`, `"bnb_4bit_quant_type": "fp4"`, 1),
			want: []string{"config.json", "quantization_config", "bnb_4bit_quant_type", `"fp4"`}},
		{name: "8-bit config", config: strings.NewReplacer(`"load_in_4bit": true`, `"load_in_4bit": false`, `"load_in_8bit": false`, `"load_in_8bit": true`).Replace(nf4Config),
			want: []string{"config.json", "quantization_config", "load_in_8bit is true"}},
		{name: "block size 48", edit: setState(down, `"blocksize": 64`, `"blocksize": 48`), want: []string{state(down), "blocksize", "48"}},
		{name: "block size 16", edit: setState(gate, `"blocksize": 32`, `"blocksize": 16`), want: []string{state(gate), "blocksize", "16"}},
		{name: "block size 8192", edit: setState(q, `"blocksize": 64`, `"blocksize": 8192`), want: []string{state(q), "blocksize", "8192"}},
		{name: "quant_map not NF4", edit: setF32(gate+".quant_map", 5, 0.25), want: []string{`"` + gate + `.quant_map"`, "element 5", "NF4"}},
		{name: "absmax short", edit: editTensor(v+".absmax", func(x *peft.Tensor) { x.Data, x.Shape = x.Data[:3], []int{3} }),
			want: []string{`"` + v + `.absmax"`, "3 elements", "want 4"}},
		{name: "codes short", edit: editTensor(q, func(x *peft.Tensor) { x.Data, x.Shape = x.Data[:126], []int{63, 1} }),
			want: []string{`"` + q + `"`, "126 bytes of codes", "want 128"}},
		{name: "shape disagrees", edit: setState(gate, `"shape": [5, 7]`, `"shape": [7, 7]`),
			want: []string{`"` + gate + `"`, "want 25", "[7, 7]", state(gate)}},
		{name: "absmax NaN", edit: setF32(gate+".absmax", 1, float32(math.NaN())), want: []string{`"` + gate + `.absmax"`, "block 1", "NaN"}},
		{name: "no quant_state", edit: func(ts []peft.Tensor) []peft.Tensor {
			return slices.DeleteFunc(ts, func(x peft.Tensor) bool { return x.Name == gate+".quant_state.bitsandbytes__nf4" })
		}, want: []string{`"` + gate + `.absmax"`, "no quantization state"}},
		{name: "dequantization overflows f16", edit: setF32(gate+".absmax", 0, 1e5),
			want: []string{gate + ": the F16 output would hold", "where the base tensor is finite: the dequantization there gives", "beyond the range of F16"}},
		{name: "merge overflows f16", args: []string{"-scale", "1e7", "-dtype", "f16"},
			want: []string{q + ": the F16 output would hold", "the merge there gives"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			nm := nf4Setup(t, false, cmp.Or(c.config, nf4Config), c.edit)
			out := filepath.Join(t.TempDir(), "out", "deeper")
			args := append([]string{"merge", "-base", nm.base, "-adapter", nm.adapter, "-out", out}, c.args...)
			_, stderr, err := runCmd(t, args...)
			if err == nil {
				t.Fatal("merged")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %s\n%s", err, w, stderr)
				}
			}
			if _, err := os.Stat(filepath.Dir(out)); !os.IsNotExist(err) {
				t.Errorf("left %s behind", filepath.Dir(out))
			}
		})
	}
}

// TestInspectNF4 lists a model with 4-bit weights: each as NF4, with its
// shape unquantized, its block size and dtype, and the bytes of its codes
// and quantization state, whose tensors are not listed; then a model with
// an fp4 weight, which is listed as its tensors are, with a warning.
func TestInspectNF4(t *testing.T) {
	nm := nf4Setup(t, false, nf4Config, nil)
	stdout, _, err := runCmd(t, "inspect", nm.base)
	if err != nil {
		t.Fatal(err)
	}
	m := openT(t, nm.base)
	defer m.close()
	for _, sp := range nf4Specs() {
		size := m.where[sp.name].info.Length
		for name, ref := range m.where {
			if w, ok := peft.QuantizedAux(name); ok && w == sp.name {
				size += ref.info.Length
			}
		}
		note := fmt.Sprintf("nf4, blocks of %d", sp.block)
		if sp.nested > 0 {
			note += ", double-quantized"
		}
		note += ", dequantized to " + string(nm.dtype[sp.name])
		row := fmt.Sprintf(`(?m)^%s +NF4 +\[%d, %d\] +%d +model-0000%d-of-00002\.safetensors +%s$`,
			regexp.QuoteMeta(sp.name), sp.rows, sp.cols, size, sp.shard+1, note)
		if !regexp.MustCompile(row).MatchString(stdout) {
			t.Errorf("no line matching %s:\n%s", row, stdout)
		}
	}
	elems := 2*32*16 + 2*16 + 2*(16*16+8*16) + 16*24 + 5*7
	for _, want := range []string{
		"tensor  ", "  quantization\n",
		fmt.Sprintf("\n10 tensors, %d elements, ", elems),
		fmt.Sprintf("4-bit weights (bitsandbytes): 4, listed with the dtype and shape they have unquantized, their bytes those of their codes and of their %d tensors of quantization state", len(nm.aux)),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("inspect does not say %q:\n%s", want, stdout)
		}
	}
	for _, name := range nm.aux {
		if strings.Contains(stdout, name) {
			t.Errorf("inspect lists %s", name)
		}
	}
	if strings.Contains(stdout, " \n") {
		t.Errorf("lines end in spaces:\n%q", stdout)
	}

	const q = "model.layers.0.self_attn.q_proj.weight"
	fp4 := nf4Setup(t, true, "", editTensor(q+".quant_state.bitsandbytes__nf4", func(x *peft.Tensor) { x.Name = q + ".quant_state.bitsandbytes__fp4" }))
	stdout, _, err = runCmd(t, "inspect", fp4.base)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^warning: peft: "` + regexp.QuoteMeta(q) + `\.quant_state\.bitsandbytes__fp4": quant type fp4 is not supported, only nf4: .*: its tensors are listed as they are$`,
		`(?m)^` + regexp.QuoteMeta(q) + ` +BF16 +\[64, 1\] +128$`,
		`(?m)^` + regexp.QuoteMeta(q) + `\.absmax +F32 +\[4\] +16$`,
		`(?m)^` + regexp.QuoteMeta(q) + `\.quant_map +F32 +\[16\] +64$`,
		`(?m)^model\.layers\.0\.mlp\.down_proj\.weight +NF4 +\[16, 24\] `,
		`\n4-bit weights \(bitsandbytes\): 3,`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout) {
			t.Errorf("inspect of a model with an fp4 weight has no match for %s:\n%s", want, stdout)
		}
	}
}
