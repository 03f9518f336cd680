package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/golora/lora/peft"
)

// conv1DSetup writes a small model in GPT-2's naming, with config.json
// saying modelType (none when ""), and an adapter for its three Conv1D
// layers (c_attn [16, 48], a square c_proj, c_fc in BF16, all stored
// [in, out]) and its nn.Linear lm_head ([out, in]), whose configuration says
// fanInFanOut. It returns the base and adapter directories.
func conv1DSetup(t *testing.T, modelType string, fanInFanOut bool) (base, adapter string) {
	t.Helper()
	dir := t.TempDir()
	base, adapter = filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
	writeModel(t, base, [][]spec{{
		{"transformer.h.0.attn.c_attn.weight", peft.F32, []int{16, 48}},
		{"transformer.h.0.attn.c_proj.weight", peft.F32, []int{16, 16}},
		{"transformer.h.0.mlp.c_fc.weight", peft.BF16, []int{16, 64}},
		{"lm_head.weight", peft.F32, []int{32, 16}},
	}}, 5)
	cfgPath := filepath.Join(base, "config.json")
	if modelType == "" {
		os.Remove(cfgPath)
	} else if err := os.WriteFile(cfgPath, []byte(`{"model_type": "`+modelType+`", "n_embd": 16}`), 0o644); err != nil {
		t.Fatal(err)
	}
	a := &peft.Adapter{Config: &peft.Config{PeftType: "LORA", R: 4, LoraAlpha: 8, Bias: "none",
		TargetModules: []string{"c_attn", "c_proj", "c_fc", "lm_head"}, FanInFanOut: fanInFanOut}}
	r := &rng{7}
	for _, m := range []struct {
		name    string
		in, out int
	}{
		{"lm_head", 16, 32},
		{"transformer.h.0.attn.c_attn", 16, 48},
		{"transformer.h.0.attn.c_proj", 16, 16},
		{"transformer.h.0.mlp.c_fc", 16, 64},
	} {
		mod := &peft.Module{Name: m.name, In: m.in, Out: m.out, Rank: 4, FanInFanOut: fanInFanOut,
			A: make([]float32, 4*m.in), B: make([]float32, m.out*4)}
		r.fill(mod.A)
		r.fill(mod.B)
		a.Modules = append(a.Modules, mod)
	}
	if err := peft.Save(adapter, a); err != nil {
		t.Fatal(err)
	}
	return base, adapter
}

// TestMergeConv1DFamily merges adapters whose fan_in_fan_out is wrong for
// some modules into a model whose config.json names a family of GPT-2: the
// Conv1D layers get the transposed update and lm_head the plain one, as
// PEFT decides from the module types, the summary says so and each
// disagreement is a warning. Merges go in blocks of 90 elements, so that
// transposed blocks (and a padded last one) run too. Without such a
// config.json, the adapter's flag decides, and a wrong one is a shape error
// where shapes tell.
func TestMergeConv1DFamily(t *testing.T) {
	defer func(b int64) { mergeBlockElems = b }(mergeBlockElems)
	mergeBlockElems = 90
	for _, c := range []struct {
		name, modelType string
		fanInFanOut     bool
		disagree        []string // modules warned about
		err             string
	}{
		{name: "gpt2, adapter false", modelType: "gpt2", fanInFanOut: false,
			disagree: []string{"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc"}},
		{name: "gpt2, adapter true", modelType: "gpt2", fanInFanOut: true, disagree: []string{"lm_head"}},
		{name: "imagegpt, adapter false", modelType: "imagegpt", fanInFanOut: false,
			disagree: []string{"transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc"}},
		{name: "llama, adapter false", modelType: "llama", fanInFanOut: false,
			err: `base tensor "transformer.h.0.attn.c_attn.weight" has shape [16 48], but the adapter`},
		{name: "gpt_bigcode (nn.Linear), adapter false", modelType: "gpt_bigcode", fanInFanOut: false,
			err: `base tensor "transformer.h.0.attn.c_attn.weight" has shape [16 48]`},
		{name: "no config.json, adapter true", fanInFanOut: true,
			err: `base tensor "lm_head.weight" has shape [32 16], but the adapter (A 4×16, B 32×4, fan_in_fan_out: stored [in, out]) needs [16 32]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, adapterDir := conv1DSetup(t, c.modelType, c.fanInFanOut)
			out := filepath.Join(t.TempDir(), "out")
			stdout, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			for _, want := range []string{
				"merged 4 modules",
				`fan_in_fan_out: 3 modules merged as Conv1D layers stored [in, out], as config.json's model_type "` + c.modelType + `" says`,
				`fan_in_fan_out: the adapter's flag disagrees with model_type "` + c.modelType + `" for ` + plural(len(c.disagree), "module"),
			} {
				if !strings.Contains(stdout, want) {
					t.Errorf("summary does not say %q:\n%s", want, stdout)
				}
			}
			if n := strings.Count(stderr, "warning: module "); n != len(c.disagree) {
				t.Errorf("%d warnings, want %d:\n%s", n, len(c.disagree), stderr)
			}
			for _, name := range c.disagree {
				if !strings.Contains(stderr, "module "+name+": the adapter says fan_in_fan_out") {
					t.Errorf("no warning about %s:\n%s", name, stderr)
				}
			}
			ad, err := peft.Load(adapterDir)
			if err != nil {
				t.Fatal(err)
			}
			in, got := openT(t, base), openT(t, out)
			defer in.close()
			defer got.close()
			rin, rout := &reader{m: in}, &reader{m: got}
			for _, mod := range ad.Modules {
				m := *mod
				m.FanInFanOut = mod.Name != "lm_head" // what PEFT decides
				w, _ := rin.values(t, m.Weight())
				w = append([]float32(nil), w...)
				v, info := rout.values(t, m.Weight())
				checkMerged(t, m.Weight(), v, w, &m, float64(m.Scale), info.DType)
			}
		})
	}
}

// TestMergeIgnoredModules merges an adapter whose file holds LoRA pairs
// that its target_modules does not select: they are listed as warnings,
// counted in the summary and not applied.
func TestMergeIgnoredModules(t *testing.T) {
	base, adapterDir := smallSetup(t, nil)
	editConfig(t, adapterDir, "target_modules", []string{"q_proj", "down_proj"})
	out := filepath.Join(t.TempDir(), "out")
	stdout, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "merged 3 modules") || !strings.Contains(stdout, "ignored 2 modules that the configuration does not select") {
		t.Errorf("summary:\n%s", stdout)
	}
	for _, name := range []string{"model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.v_proj"} {
		if !strings.Contains(stderr, "warning: the adapter file has LoRA weights for "+name+", which its configuration does not select") {
			t.Errorf("no warning about %s:\n%s", name, stderr)
		}
		in, got := openT(t, base), openT(t, out)
		a, _ := (&reader{m: in}).bytes(t, name+".weight")
		b, _ := (&reader{m: got}).bytes(t, name+".weight")
		if !bytes.Equal(a, b) {
			t.Errorf("%s was changed", name)
		}
		in.close()
		got.close()
	}
}

// TestMergeSquareConv1DWarning merges an adapter with fan_in_fan_out false
// into a model with a square c_proj and a square q_proj: without a
// config.json that gives the model_type, the shapes cannot tell whether
// c_proj is GPT-2's Conv1D layer, stored [in, out], so merge warns about it
// (not about q_proj, whose name is no Conv1D layer's) with the words
// inspect uses, and merges it as the adapter says. A model_type that is
// not GPT-2's kin leaves no doubt, and no warning.
func TestMergeSquareConv1DWarning(t *testing.T) {
	for _, c := range []struct {
		name   string
		config string // "" for none
		warn   bool
	}{
		{name: "no config.json", warn: true},
		{name: "config.json without model_type", config: `{"n_embd": 16}`, warn: true},
		{name: "llama", config: `{"model_type": "llama"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			base, adapterDir := filepath.Join(dir, "base"), filepath.Join(dir, "adapter")
			writeModel(t, base, [][]spec{{
				{"transformer.h.0.attn.c_proj.weight", peft.F32, []int{16, 16}},
				{"transformer.h.0.attn.q_proj.weight", peft.F32, []int{16, 16}},
			}}, 5)
			cfg := filepath.Join(base, "config.json")
			os.Remove(cfg)
			if c.config != "" {
				if err := os.WriteFile(cfg, []byte(c.config), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := &peft.Adapter{Config: &peft.Config{PeftType: "LORA", R: 4, LoraAlpha: 8, Bias: "none", TargetModules: []string{"c_proj", "q_proj"}}}
			r := &rng{7}
			for _, name := range []string{"transformer.h.0.attn.c_proj", "transformer.h.0.attn.q_proj"} {
				mod := &peft.Module{Name: name, In: 16, Out: 16, Rank: 4, A: make([]float32, 4*16), B: make([]float32, 16*4)}
				r.fill(mod.A)
				r.fill(mod.B)
				a.Modules = append(a.Modules, mod)
			}
			if err := peft.Save(adapterDir, a); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "out")
			_, stderr, err := runCmd(t, "merge", "-base", base, "-adapter", adapterDir, "-out", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			want := "lora merge: warning: module transformer.h.0.attn.c_proj is square (16×16), so " + strings.ReplaceAll(squareNote, "\n", " ")
			if got := strings.Contains(stderr, want); got != c.warn {
				t.Errorf("warning %v, want %v: %q\n%s", got, c.warn, want, stderr)
			}
			if strings.Contains(stderr, "q_proj") {
				t.Errorf("a warning about q_proj:\n%s", stderr)
			}
			inspect, _, err := runCmd(t, "inspect", adapterDir)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(inspect, "so "+squareNote+";") || !strings.Contains(squareNote, "the shapes cannot tell") {
				t.Errorf("inspect does not give the same words:\n%s", inspect)
			}
			in, got := openT(t, base), openT(t, out)
			defer in.close()
			defer got.close()
			rin, rout := &reader{m: in}, &reader{m: got}
			for _, m := range a.Modules {
				m.Scale = 2
				w, _ := rin.values(t, m.Weight())
				w = append([]float32(nil), w...)
				v, info := rout.values(t, m.Weight())
				checkMerged(t, m.Weight(), v, w, m, 2, info.DType)
			}
		})
	}
}
