package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora/peft"
)

// smallSpecs is a small model in two shards, in the naming of Llama: every
// kind of tensor the merge meets, at small shapes: targets in F32, BF16 and
// F16, a head the adapter replaces, norms, and an integer tensor.
func smallSpecs() [][]spec {
	return [][]spec{
		{
			{"model.embed_tokens.weight", peft.F32, []int{32, 16}},
			{"model.layers.0.input_layernorm.weight", peft.F32, []int{16}},
			{"model.layers.0.mlp.down_proj.weight", peft.F16, []int{16, 24}},
			{"model.layers.0.self_attn.q_proj.weight", peft.F32, []int{16, 16}},
			{"model.layers.0.self_attn.v_proj.weight", peft.BF16, []int{8, 16}},
		},
		{
			{"lm_head.weight", peft.F32, []int{32, 16}},
			{"model.layers.1.self_attn.q_proj.weight", peft.F32, []int{16, 16}},
			{"model.layers.1.self_attn.v_proj.weight", peft.F32, []int{8, 16}},
			{"model.norm.weight", peft.F32, []int{16}},
			{"model.position_ids", peft.I64, []int{1, 40}},
		},
	}
}

// smallAdapter returns an adapter for smallSpecs: r = 4 and alpha 8, r = 2
// for v_proj by rank_pattern, alpha 16 for layer 1's q_proj by a regular
// expression in alpha_pattern, and lm_head saved whole.
func smallAdapter() *peft.Adapter {
	cfg := &peft.Config{
		PeftType: "LORA", R: 4, LoraAlpha: 8, Bias: "none", BaseModelNameOrPath: "small",
		TargetModules: []string{"q_proj", "v_proj", "down_proj"},
		RankPattern:   peft.Pattern{{Key: "v_proj", Value: 2}},
		AlphaPattern:  peft.Pattern{{Key: `layers\.1\.self_attn\.q_proj`, Value: 16}},
		ModulesToSave: []string{"lm_head"},
		Extra:         map[string]json.RawMessage{"task_type": json.RawMessage(`"CAUSAL_LM"`)},
	}
	a := &peft.Adapter{Config: cfg}
	r := &rng{42}
	for _, m := range []struct {
		name        string
		in, out, rk int
	}{
		{"model.layers.0.mlp.down_proj", 24, 16, 4},
		{"model.layers.0.self_attn.q_proj", 16, 16, 4},
		{"model.layers.0.self_attn.v_proj", 16, 8, 2},
		{"model.layers.1.self_attn.q_proj", 16, 16, 4},
		{"model.layers.1.self_attn.v_proj", 16, 8, 2},
	} {
		mod := &peft.Module{Name: m.name, In: m.in, Out: m.out, Rank: m.rk,
			A: make([]float32, m.rk*m.in), B: make([]float32, m.out*m.rk)}
		r.fill(mod.A)
		r.fill(mod.B)
		a.Modules = append(a.Modules, mod)
	}
	head := make([]float32, 32*16)
	r.fill(head)
	data := make([]byte, 4*len(head))
	peft.EncodeFloats(data, head, peft.F32)
	a.Full = []*peft.Tensor{{Name: "lm_head.weight", DType: peft.F32, Shape: []int{32, 16}, Data: data}}
	return a
}

// smallSetup writes the small model and its adapter into a new directory,
// changing the specs with edit first, and returns the base and adapter
// directories.
func smallSetup(t *testing.T, edit func([][]spec) [][]spec) (base, adapter string) {
	t.Helper()
	dir := t.TempDir()
	base, adapter = filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	specs := smallSpecs()
	if edit != nil {
		specs = edit(specs)
	}
	writeModel(t, base, specs, 3)
	if err := peft.Save(adapter, smallAdapter()); err != nil {
		t.Fatal(err)
	}
	return base, adapter
}

// TestMergeSharded merges the small adapter into the small sharded model:
// every target is W + scale·s·B·A, the head is the adapter's, every other
// tensor is copied byte for byte and the index is rewritten; then again to
// bfloat16 and with -scale 0.5.
//
// Copies and conversions go in steps of a few bytes, merges in blocks of
// 90 elements (5 rows of 16, the last block of a 16-row weight padded from
// 1 row to the rank's 4), and flushes to disk start every kilobyte, so that
// those paths run at these small shapes.
func TestMergeSharded(t *testing.T) {
	defer func(c, v, b, f int64) { copyStep, convertStep, mergeBlockElems, flushEvery = c, v, b, f }(copyStep, convertStep, mergeBlockElems, flushEvery)
	copyStep, convertStep, mergeBlockElems, flushEvery = 100, 7, 90, 1<<10
	base, adapterDir := smallSetup(t, nil)
	ad, err := peft.Load(adapterDir)
	if err != nil {
		t.Fatal(err)
	}
	scales := map[string]float32{
		"model.layers.0.mlp.down_proj":    2,
		"model.layers.0.self_attn.q_proj": 2,
		"model.layers.0.self_attn.v_proj": 4,
		"model.layers.1.self_attn.q_proj": 4,
		"model.layers.1.self_attn.v_proj": 4,
	}
	for _, m := range ad.Modules {
		if m.Scale != scales[m.Name] {
			t.Errorf("%s: scale %v, want %v (rank_pattern and alpha_pattern)", m.Name, m.Scale, scales[m.Name])
		}
	}
	head := ad.Full[0]

	for _, c := range []struct {
		name    string
		args    []string
		scale   float64
		dtype   peft.DType
		summary string
	}{
		{"keep", nil, 1, "", "merged 5 modules, replaced 1 tensor, converted 0, copied 4"},
		{"bf16", []string{"-dtype", "bf16"}, 1, peft.BF16, "merged 5 modules, replaced 1 tensor, converted 3, copied 1"},
		{"f16 at half scale", []string{"-dtype", "f16", "-scale", "0.5"}, 0.5, peft.F16, "merged 5 modules, replaced 1 tensor, converted 3, copied 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			args := append([]string{"merge", "-base", base, "-adapter", adapterDir, "-out", out}, c.args...)
			stdout, stderr, err := runCmd(t, args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if !strings.Contains(stdout, c.summary) {
				t.Errorf("summary:\n%s", stdout)
			}
			in, got := openT(t, base), openT(t, out)
			defer in.close()
			defer got.close()
			checkLayout(t, in, got)
			rin, rout := &reader{m: in}, &reader{m: got}
			for name, ref := range in.where {
				want := ref.info.DType
				if c.dtype != "" && want.Float() {
					want = c.dtype
				}
				b, info := rout.bytes(t, name)
				if info.DType != want {
					t.Errorf("%s: dtype %s, want %s", name, info.DType, want)
				}
				out := append([]byte(nil), b...)
				switch m, _ := ad.Module(strings.TrimSuffix(name, ".weight")); {
				case m != nil:
					w, _ := rin.values(t, name)
					w = append([]float32(nil), w...)
					v, _ := rout.values(t, name)
					checkMerged(t, name, v, w, m, c.scale*float64(m.Scale), info.DType)
				case name == "lm_head.weight":
					hv, _ := head.Float32s()
					enc := make([]byte, len(hv)*info.DType.Size())
					peft.EncodeFloats(enc, hv, info.DType)
					if !bytes.Equal(out, enc) {
						t.Errorf("%s is not the adapter's", name)
					}
				case info.DType == ref.info.DType:
					if b, _ := rin.bytes(t, name); !bytes.Equal(out, b) {
						t.Errorf("%s: not copied byte for byte", name)
					}
				default:
					v, _ := rin.values(t, name)
					enc := make([]byte, len(v)*info.DType.Size())
					peft.EncodeFloats(enc, v, info.DType)
					if !bytes.Equal(out, enc) {
						t.Errorf("%s: not converted to %s", name, info.DType)
					}
				}
			}
		})
	}
}

// TestMergeHubNames merges into a single-file model saved without its
// base_model_prefix, as GPT-2's checkpoint on the Hub is: the adapter's
// "model.layers.0..." modules find "layers.0...".
func TestMergeHubNames(t *testing.T) {
	base, adapterDir := smallSetup(t, func(s [][]spec) [][]spec {
		var one []spec
		for _, sh := range s {
			for _, x := range sh {
				x.name = strings.TrimPrefix(x.name, "model.")
				one = append(one, x)
			}
		}
		return [][]spec{one}
	})
	file := filepath.Join(base, singleName)
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := runCmd(t, "merge", "-base", file, "-adapter", adapterDir, "-out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "merged 5 modules, replaced 1 tensor,") || !strings.Contains(stdout, "wrote 1 file to") {
		t.Errorf("summary:\n%s", stdout)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 1 || entries[0].Name() != singleName {
		t.Errorf("a file base gave %v, want %s alone", entries, singleName)
	}
}

// TestMergeRefusals checks that every refusal leaves no output behind, the
// output directory as it was, and the inputs untouched.
func TestMergeRefusals(t *testing.T) {
	drop := func(name string) func([][]spec) [][]spec {
		return func(s [][]spec) [][]spec {
			for i, sh := range s {
				for j, x := range sh {
					if x.name == name {
						s[i] = append(sh[:j], sh[j+1:]...)
						return s
					}
				}
			}
			panic(name)
		}
	}
	reshape := func(name string, dtype peft.DType, shape ...int) func([][]spec) [][]spec {
		return func(s [][]spec) [][]spec {
			for _, sh := range s {
				for j := range sh {
					if sh[j].name == name {
						sh[j].shape, sh[j].dtype = shape, dtype
					}
				}
			}
			return s
		}
	}
	type setup struct{ base, adapter, out string }
	cases := []struct {
		name  string
		edit  func([][]spec) [][]spec
		after func(t *testing.T, s *setup) // changes the files
		args  []string
		want  string
	}{
		{name: "missing base weight", edit: drop("model.layers.1.self_attn.v_proj.weight"),
			want: `no tensor "model.layers.1.self_attn.v_proj.weight" (use -allow-missing`},
		{name: "wrong shape", edit: reshape("model.layers.0.self_attn.v_proj.weight", peft.BF16, 16, 8),
			want: "has shape [16 8], but the adapter"},
		{name: "wrong shape, -allow-missing", edit: reshape("model.layers.0.self_attn.v_proj.weight", peft.BF16, 16, 8),
			args: []string{"-allow-missing"}, want: "has shape [16 8]"},
		{name: "integer weight", edit: reshape("model.layers.0.self_attn.v_proj.weight", peft.I16, 8, 16),
			want: "not a floating-point weight"},
		{name: "head of another shape", edit: reshape("lm_head.weight", peft.F32, 31, 16),
			want: `"lm_head.weight" has [31 16]`},
		{name: "missing head", edit: drop("lm_head.weight"), want: `replaces "lm_head.weight"`},
		{name: "use_dora", after: func(t *testing.T, s *setup) { editConfig(t, s.adapter, "use_dora", true) }, want: "use_dora"},
		{name: "lora_bias", after: func(t *testing.T, s *setup) { editConfig(t, s.adapter, "lora_bias", true) }, want: "lora_bias"},
		{name: "unknown peft_type", after: func(t *testing.T, s *setup) { editConfig(t, s.adapter, "peft_type", "VERA") }, want: "VERA"},
		{name: "hostile adapter file", after: func(t *testing.T, s *setup) {
			p := filepath.Join(s.adapter, peft.WeightsFile)
			b, _ := os.ReadFile(p)
			b[9] = 0xff // inside the header: not UTF-8
			os.WriteFile(p, b, 0o644)
		}, want: "UTF-8"},
		{name: "hostile base shard", after: func(t *testing.T, s *setup) {
			p := filepath.Join(s.base, "model-00002-of-00002.safetensors")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-3], 0o644)
		}, want: "run past"},
		{name: "index names a missing shard", after: func(t *testing.T, s *setup) {
			os.Remove(filepath.Join(s.base, "model-00002-of-00002.safetensors"))
		}, want: "model-00002-of-00002.safetensors"},
		{name: "index names a path", after: func(t *testing.T, s *setup) {
			p := filepath.Join(s.base, indexName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.ReplaceAll(b, []byte(`"model-00002-of-00002.safetensors"`), []byte(`"../x.safetensors"`)), 0o644)
		}, want: "not a shard file name"},
		{name: "NaN in the adapter", after: func(t *testing.T, s *setup) {
			a := smallAdapter()
			a.Modules[2].B[1] = float32(math.NaN())
			if err := peft.Save(s.adapter, a); err != nil {
				t.Fatal(err)
			}
		}, want: "NaN"},
		{name: "output is the base", after: func(t *testing.T, s *setup) { s.out = s.base }, want: "base model's directory"},
		{name: "output into an existing directory", after: func(t *testing.T, s *setup) {
			os.MkdirAll(s.out, 0o755)
			os.WriteFile(filepath.Join(s.out, "keep.txt"), []byte("mine"), 0o644)
			editConfig(t, s.adapter, "use_dora", true)
		}, want: "use_dora"},
		{name: "merge overflows f16", args: []string{"-scale", "1e7", "-dtype", "f16"},
			want: `model.layers.0.mlp.down_proj.weight: the F16 output would hold -Inf at element [0, 0], where the base tensor is finite: the merge there gives -3`},
		{name: "merge overflows f32", after: func(t *testing.T, s *setup) {
			a := smallAdapter()
			for _, v := range [][]float32{a.Modules[1].A, a.Modules[1].B} {
				for i := range v {
					v[i] = 1e20 // finite, but B·A is 4e40
				}
			}
			if err := peft.Save(s.adapter, a); err != nil {
				t.Fatal(err)
			}
		}, want: `model.layers.0.self_attn.q_proj.weight: lora: Merge`},
		{name: "conversion overflows f16", after: func(t *testing.T, s *setup) {
			patchValue(t, s.base, "model.norm.weight", 5, 1e5)
		}, args: []string{"-dtype", "f16"}, want: `model.norm.weight: the F16 output would hold +Inf at element 5, where the base tensor is finite: the conversion there gives 100000, beyond the range of F16 (±65504)`},
		{name: "conversion overflows bf16", after: func(t *testing.T, s *setup) {
			patchValue(t, s.base, "model.embed_tokens.weight", 17, math.MaxFloat32)
		}, args: []string{"-dtype", "bf16"}, want: `model.embed_tokens.weight: the BF16 output would hold +Inf at element [1, 1]`},
		{name: "replaced tensor overflows f16", after: func(t *testing.T, s *setup) {
			a := smallAdapter()
			peft.EncodeFloats(a.Full[0].Data[4:8], []float32{-7e4}, peft.F32)
			if err := peft.Save(s.adapter, a); err != nil {
				t.Fatal(err)
			}
		}, args: []string{"-dtype", "f16"}, want: `lm_head.weight: the F16 output would hold -Inf at element [0, 1]`},
		{name: "-allow-missing, no module found", edit: func(s [][]spec) [][]spec {
			for _, sh := range s {
				for j := range sh {
					sh[j].name = "other." + sh[j].name
				}
			}
			return s
		}, args: []string{"-allow-missing"}, want: "none of the adapter's 5 modules found its base weight"},
		{name: "empty weight_map", after: func(t *testing.T, s *setup) {
			os.WriteFile(filepath.Join(s.base, indexName), []byte(`{"metadata": {}, "weight_map": {}}`), 0o644)
		}, want: "weight_map is empty"},
		{name: "null weight_map", after: func(t *testing.T, s *setup) {
			os.WriteFile(filepath.Join(s.base, indexName), []byte(`{"weight_map": null}`), 0o644)
		}, want: "weight_map is missing"},
		{name: "model.safetensors a link in a loop", after: func(t *testing.T, s *setup) {
			if err := os.Symlink(singleName, filepath.Join(s.base, singleName)); err != nil {
				t.Fatal(err)
			}
		}, want: singleName + ": too many levels of symbolic links"},
		{name: "empty adapter_config.json", after: func(t *testing.T, s *setup) {
			os.WriteFile(filepath.Join(s.adapter, peft.ConfigFile), nil, 0o644)
		}, want: "adapter"}, // the directory, checked below
		{name: "-out not empty", after: func(t *testing.T, s *setup) {
			os.MkdirAll(s.out, 0o755)
			os.WriteFile(filepath.Join(s.out, "keep.txt"), []byte("mine"), 0o644)
		}, want: "not empty: give a new or empty one, or -force"},
		{name: "-out a file", after: func(t *testing.T, s *setup) {
			os.MkdirAll(filepath.Dir(s.out), 0o755)
			os.WriteFile(s.out, []byte("mine"), 0o644)
		}, want: "not a directory"},
		{name: "-force on the base's parent", after: func(t *testing.T, s *setup) {
			s.out = filepath.Dir(s.base)
		}, args: []string{"-force"}, want: "holds the input"},
		{name: "bad -dtype", args: []string{"-dtype", "f64"}, want: "-dtype"},
		{name: "bad -scale", args: []string{"-scale", "NaN"}, want: "-scale"},
		{name: "no -base", after: func(t *testing.T, s *setup) { s.base = "" }, want: "required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, adapter := smallSetup(t, c.edit)
			s := &setup{base, adapter, filepath.Join(t.TempDir(), "out", "deeper")}
			if c.after != nil {
				c.after(t, s)
			}
			var before map[string]string
			if fi, err := os.Stat(s.out); err == nil && fi.IsDir() {
				before = snapshot(t, s.out)
			} else if err == nil {
				before = map[string]string{} // a file
			}
			var inputs []map[string]string
			for _, d := range []string{s.base, s.adapter} {
				if d != "" {
					inputs = append(inputs, snapshot(t, d))
				}
			}
			args := append([]string{"merge", "-base", s.base, "-adapter", s.adapter, "-out", s.out}, c.args...)
			if s.base == "" {
				args = []string{"merge", "-adapter", s.adapter, "-out", s.out}
			}
			_, stderr, err := runCmd(t, args...)
			if err == nil {
				t.Fatal("merged")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q\n%s", err, c.want, stderr)
			}
			if c.name == "empty adapter_config.json" && !strings.Contains(err.Error(), s.adapter) {
				t.Errorf("error %q does not name the adapter's directory %s", err, s.adapter)
			}
			if before == nil {
				if _, err := os.Stat(filepath.Dir(s.out)); !os.IsNotExist(err) && s.out != s.base {
					t.Errorf("left %s behind", filepath.Dir(s.out))
				}
			} else if fi, err := os.Stat(s.out); err != nil {
				t.Errorf("removed %s: %v", s.out, err)
			} else if fi.IsDir() {
				if after := snapshot(t, s.out); !mapsEqual(before, after) {
					t.Errorf("changed %s: %v, was %v", s.out, after, before)
				}
			}
			if entries, err := os.ReadDir(filepath.Dir(s.out)); err == nil {
				for _, e := range entries {
					if strings.Contains(e.Name(), ".lora-merge-") {
						t.Errorf("left %s behind", e.Name())
					}
				}
			}
			i := 0
			for _, d := range []string{s.base, s.adapter} {
				if d != "" {
					if got := snapshot(t, d); !mapsEqual(got, inputs[i]) {
						t.Errorf("changed the input %s", d)
					}
					i++
				}
			}
		})
	}
}

// patchValue sets element i of the float tensor called name in the model
// in dir to v, in the tensor's dtype, in place.
func patchValue(t *testing.T, dir, name string, i int, v float32) {
	t.Helper()
	m := openT(t, dir)
	ref, ok := m.where[name]
	path := filepath.Join(m.dir, m.shards[ref.shard].name)
	m.close()
	if !ok {
		t.Fatalf("no tensor %q in %s", name, dir)
	}
	b := make([]byte, ref.info.DType.Size())
	if err := peft.EncodeFloats(b, []float32{v}, ref.info.DType); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, ref.info.Offset+int64(i*len(b))); err != nil {
		t.Fatal(err)
	}
}

// editConfig sets one field of an adapter's configuration file.
func editConfig(t *testing.T, dir, key string, value any) {
	t.Helper()
	p := filepath.Join(dir, peft.ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m[key] = value
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMergeAllowMissing skips a module whose weight the base lacks.
func TestMergeAllowMissing(t *testing.T) {
	base, adapterDir := smallSetup(t, func(s [][]spec) [][]spec {
		s[1] = s[1][:1] // lm_head only: no layer 1, norm or position ids
		return s
	})
	// The index still names the dropped tensors' shard for what it has.
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out, "-allow-missing")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "merged 3 modules") || !strings.Contains(stdout, "skipped 2") {
		t.Errorf("summary:\n%s", stdout)
	}
	if strings.Count(stderr, "skipping module") != 2 {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// TestMergeFailsWhileWriting makes the second shard of the base unreadable
// after the checks, so that writing fails half-way: the temporary files
// and the directories the merge made are removed.
func TestMergeFailsWhileWriting(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	parent := filepath.Join(t.TempDir(), "new")
	out := filepath.Join(parent, "out")
	defer func(f func()) { beforeWriting = f }(beforeWriting)
	beforeWriting = func() {
		if err := os.Truncate(filepath.Join(base, "model-00002-of-00002.safetensors"), 200); err != nil {
			t.Fatal(err)
		}
	}
	_, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
	if err == nil {
		t.Fatal("merged from a truncated shard")
	}
	if !strings.Contains(err.Error(), "EOF") {
		t.Errorf("error %q\n%s", err, stderr)
	}
	if _, err := os.Stat(parent); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(out)
		t.Errorf("left %s behind, with %d files in %s", parent, len(entries), out)
	}
}
