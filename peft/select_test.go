package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora"
)

// TestSelects checks target_modules, exclude_modules, layers_to_transform
// and layers_pattern against the selections PEFT's
// check_target_module_exists makes, worked out by hand from its rules.
func TestSelects(t *testing.T) {
	const (
		q0   = "model.layers.0.self_attn.q_proj"
		q1   = "model.layers.1.self_attn.q_proj"
		q12  = "model.layers.12.self_attn.q_proj"
		v1   = "model.layers.1.self_attn.v_proj"
		xq   = "model.layers.1.self_attn.xq_proj"
		moe  = "model.layers.2.experts.1.down_proj"
		emb  = "model.embed_tokens"
		head = "lm_head"
		gpt  = "transformer.h.1.attn.c_attn"
	)
	names := []string{q0, q1, q12, v1, xq, moe, emb, head, gpt}
	cases := []struct {
		name string
		cfg  string // fields added to a valid configuration
		want []string
	}{
		{"list: suffix after a dot", `"target_modules": ["q_proj"]`, []string{q0, q1, q12}},
		{"list: exact name", `"target_modules": ["lm_head", "model.layers.1.self_attn.v_proj"]`, []string{v1, head}},
		{"list: a suffix must start after a dot", `"target_modules": ["proj"]`, nil},
		{"list: dotted suffix", `"target_modules": ["self_attn.v_proj", "attn.c_attn"]`, []string{v1, gpt}},
		{"list: empty", `"target_modules": []`, nil},
		{"list: zzz", `"target_modules": ["zzz"]`, nil},
		{"regex: full match", `"target_modules": ".*\\.(q|v)_proj"`, []string{q0, q1, q12, v1}},
		{"regex: a partial match is no match", `"target_modules": "q_proj"`, nil},
		{"regex: anchored at both ends", `"target_modules": "model\\.layers\\.1\\..*"`, []string{q1, v1, xq}},
		{"all-linear: every linear pair", `"target_modules": "all-linear"`, []string{q0, q1, q12, v1, xq, moe, head, gpt}},
		{"all-linear: any case", `"target_modules": "ALL-Linear"`, []string{q0, q1, q12, v1, xq, moe, head, gpt}},
		{"all-linear minus exclude", `"target_modules": "all-linear", "exclude_modules": ["lm_head", "xq_proj"]`, []string{q0, q1, q12, v1, moe, gpt}},
		{"exclude list", `"target_modules": ["q_proj", "v_proj"], "exclude_modules": ["model.layers.0.self_attn.q_proj", "v_proj"]`, []string{q1, q12}},
		{"exclude regex", `"target_modules": ["q_proj", "v_proj"], "exclude_modules": ".*layers\\.1\\..*"`, []string{q0, q12}},
		{"exclude empty string excludes nothing", `"target_modules": ["v_proj"], "exclude_modules": ""`, []string{v1}},
		{"layers: one index", `"target_modules": ["q_proj", "v_proj"], "layers_to_transform": 1`, []string{q1, v1}},
		{"layers: list", `"target_modules": ["q_proj"], "layers_to_transform": [0, 12]`, []string{q0, q12}},
		{"layers: a full name escapes the restriction", `"target_modules": ["q_proj", "model.layers.1.self_attn.v_proj"], "layers_to_transform": [0]`, []string{q0, v1}},
		{"layers: empty list restricts nothing", `"target_modules": ["q_proj"], "layers_to_transform": []`, []string{q0, q1, q12}},
		{"layers: pattern", `"target_modules": ["q_proj", "c_attn"], "layers_to_transform": [1], "layers_pattern": "h"`, []string{gpt}},
		{"layers: pattern list", `"target_modules": ["q_proj", "c_attn"], "layers_to_transform": [1], "layers_pattern": ["h", "layers"]`, []string{q1, gpt}},
		{"layers: default takes the first index, not the expert's", `"target_modules": ["down_proj"], "layers_to_transform": [1]`, nil},
		{"layers: default, layer 2", `"target_modules": ["down_proj"], "layers_to_transform": [2]`, []string{moe}},
		{"layers: a module without a layer index is left out, unless named whole", `"target_modules": ["lm_head", "embed_tokens"], "layers_to_transform": [0]`, []string{head}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(`{"peft_type": "LORA", "r": 2, "lora_alpha": 4, ` + c.cfg + `}`))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Check(); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range names {
				ok, err := cfg.Selects(n, n == emb)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					got = append(got, n)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("selected %q, want %q", got, c.want)
			}
		})
	}
}

// TestConfigRefusals checks the configurations that ParseConfig or Check
// refuse, each with an error naming the field.
func TestConfigRefusals(t *testing.T) {
	cases := []struct {
		name, cfg, want string
		is              error
	}{
		{"r missing", `"lora_alpha": 4, "target_modules": ["q"]`, "peft: r is missing or null", ErrFormat},
		{"r null", `"r": null, "lora_alpha": 4, "target_modules": ["q"]`, "peft: r is missing or null", ErrFormat},
		{"lora_alpha missing", `"r": 2, "target_modules": ["q"]`, "peft: lora_alpha is missing or null", ErrFormat},
		{"lora_alpha null", `"r": 2, "lora_alpha": null, "target_modules": ["q"]`, "peft: lora_alpha is missing or null", ErrFormat},
		{"target_modules missing", `"r": 2, "lora_alpha": 4`, "peft: target_modules is missing or null", ErrFormat},
		{"target_modules null", `"r": 2, "lora_alpha": 4, "target_modules": null`, "peft: target_modules is missing or null", ErrFormat},
		{"target_modules empty string", `"r": 2, "lora_alpha": 4, "target_modules": ""`, "target_modules", ErrFormat},
		{"target_modules a number", `"r": 2, "lora_alpha": 4, "target_modules": 3`, "target_modules", ErrFormat},
		{"bias null", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "bias": null`, "bias is null", ErrFormat},
		{"layers_to_transform not integers", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "layers_to_transform": [1.5]`, "layers_to_transform", ErrFormat},
		{"layers_to_transform a string", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "layers_to_transform": "1"`, "layers_to_transform", ErrFormat},
		{"layers_pattern a number", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "layers_to_transform": 1, "layers_pattern": 3`, "layers_pattern", ErrFormat},
		{"layers with a regex target", `"r": 2, "lora_alpha": 4, "target_modules": ".*q", "layers_to_transform": [1]`, "layers_to_transform", ErrFormat},
		{"layers_pattern with a regex target", `"r": 2, "lora_alpha": 4, "target_modules": ".*q", "layers_pattern": "h"`, "layers_pattern", ErrFormat},
		{"layers with all-linear", `"r": 2, "lora_alpha": 4, "target_modules": "all-linear", "layers_to_transform": 0`, "layers_to_transform", ErrFormat},
		{"layers_pattern alone", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "layers_pattern": "h"`, "layers_pattern", ErrFormat},
		{"target regex RE2 cannot compile", `"r": 2, "lora_alpha": 4, "target_modules": "(?!x)q"`, "target_modules", ErrUnsupported},
		{"exclude regex RE2 cannot compile", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "exclude_modules": "(?<=a)q"`, "exclude_modules", ErrUnsupported},
		{"layers_pattern RE2 cannot compile", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "layers_to_transform": 1, "layers_pattern": "(?=h)"`, "layers_pattern", ErrUnsupported},
		{"rank_pattern key RE2 cannot compile", `"r": 2, "lora_alpha": 4, "target_modules": ["q"], "rank_pattern": {"(?=q)": 3}`, "rank_pattern", ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(`{"peft_type": "LORA", ` + c.cfg + `}`))
			if err == nil {
				err = cfg.Check()
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want one that says %q and wraps %v", err, c.want, c.is)
			}
		})
	}
	// A Config made in Go without target_modules is refused as well.
	c := &Config{PeftType: "LORA", R: 2, LoraAlpha: 4, Bias: "none"}
	if err := c.Check(); err == nil || !strings.Contains(err.Error(), "target_modules is missing or null") {
		t.Errorf("a Config without TargetModules: %v", err)
	}
}

// TestConfigRoundTrip checks that the new fields are written back as they
// were read, and that a loaded fixture's configuration is unchanged.
func TestConfigRoundTrip(t *testing.T) {
	in := `{"peft_type": "LORA", "r": 2, "lora_alpha": 0, "target_modules": ["q", "v"],
		"exclude_modules": "x.*", "layers_to_transform": [1, 3], "layers_pattern": ["layers"]}`
	c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.LoraAlpha != 0 || c.ExcludeModulesRegex != "x.*" || !slices.Equal(c.LayersToTransform, []int{1, 3}) || !slices.Equal(c.LayersPattern, []string{"layers"}) {
		t.Errorf("parsed %+v", c)
	}
	out, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(out, &m)
	if fmt.Sprintf("%v %v %v %v", m["exclude_modules"], m["layers_to_transform"], m["layers_pattern"], m["target_modules"]) != "x.* [1 3] [layers] [q v]" {
		t.Errorf("wrote %s", out)
	}
	// One index and one pattern stand for lists of one.
	c, err = ParseConfig([]byte(`{"peft_type": "LORA", "r": 2, "lora_alpha": 1, "target_modules": "q", "exclude_modules": ["a"], "layers_to_transform": 4, "layers_pattern": "h"}`))
	if err != nil || !slices.Equal(c.LayersToTransform, []int{4}) || !slices.Equal(c.LayersPattern, []string{"h"}) || c.TargetModulesRegex != "q" || !slices.Equal(c.ExcludeModules, []string{"a"}) {
		t.Errorf("parsed %+v, %v", c, err)
	}
}

// TestLoadSelection loads adapters whose configuration selects some of the
// pairs in the file: the others are Ignored, not applied.
func TestLoadSelection(t *testing.T) {
	a, err := Load(newTiny().set("target_modules", []string{"q"}).write(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 1 || a.Modules[0].Name != "layers.0.q" || !slices.Equal(a.Ignored, []string{"layers.0.v"}) {
		t.Errorf("modules %v, ignored %v; want layers.0.q and layers.0.v", moduleNames(a), a.Ignored)
	}
	// An ignored pair is not read: not even a broken one is refused.
	c := newTiny().set("target_modules", []string{"q"}).drop(Prefix + "layers.0.v.lora_B.weight")
	c.add(f32Tensor(Prefix+"layers.10.v.lora_A.weight", 2, 3), f32Tensor(Prefix+"layers.2.v.lora_A.weight", 2, 3))
	a, err = Load(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Ignored, []string{"layers.0.v", "layers.2.v", "layers.10.v"}) {
		t.Errorf("ignored %v, want them in numeric order", a.Ignored)
	}
	// A regex and exclude_modules.
	a, err = Load(newTiny().set("target_modules", `layers\.0\..`).set("exclude_modules", []string{"v"}).write(t))
	if err != nil || len(a.Modules) != 1 || a.Modules[0].Name != "layers.0.q" {
		t.Errorf("regex and exclude: %v, %v", moduleNames(a), err)
	}
	// A full tensor that is the weight of an ignored module is no conflict.
	c = newTiny().set("target_modules", []string{"q"}).add(f32Tensor(Prefix+"layers.0.v.weight", 5, 3))
	if _, err := Load(c.write(t)); err != nil {
		t.Errorf("full weight of an ignored module: %v", err)
	}
	// Nothing selected.
	for _, c := range []struct {
		name string
		dir  func(t *testing.T) string
		want string
	}{
		{"zzz", func(t *testing.T) string { return newTiny().set("target_modules", []string{"zzz"}).write(t) }, `target_modules ["zzz"] selects none of the 2 modules`},
		{"empty list", func(t *testing.T) string { return newTiny().set("target_modules", []string{}).write(t) }, "target_modules [] selects none"},
		{"excluded", func(t *testing.T) string {
			return newTiny().set("exclude_modules", ".*").write(t)
		}, "(with exclude_modules) selects none"},
		{"wrong layer", func(t *testing.T) string {
			return newTiny().set("layers_to_transform", 1).set("layers_pattern", "layers").write(t)
		}, "(with layers_to_transform) selects none"},
		{"no pairs", func(t *testing.T) string {
			c := newTiny()
			c.tensors = []Tensor{f32Tensor(Prefix+"score.weight", 2, 2)}
			return c.write(t)
		}, "no lora_A/lora_B pair"},
		{"target_modules missing", func(t *testing.T) string {
			c := newTiny()
			delete(c.cfg, "target_modules")
			return c.write(t)
		}, "target_modules is missing or null"},
		{"lora_alpha null", func(t *testing.T) string { return newTiny().set("lora_alpha", nil).write(t) }, "peft: lora_alpha is missing or null"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := Load(c.dir(t))
			if err == nil {
				t.Fatalf("loaded %v", moduleNames(a))
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func moduleNames(a *Adapter) []string {
	if a == nil {
		return nil
	}
	var s []string
	for _, m := range a.Modules {
		s = append(s, m.Name)
	}
	return s
}

// TestSaveSelection checks that Save refuses what Load would read
// differently: a module its configuration does not select, an adapter with
// no module, alpha or scale that the configuration does not give.
func TestSaveSelection(t *testing.T) {
	load := func(t *testing.T) *Adapter {
		a, err := Load(newTiny().write(t))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	cases := []struct {
		name   string
		change func(a *Adapter)
		want   string
	}{
		{"unselected module", func(a *Adapter) { a.Config.TargetModules = []string{"q"} }, "module layers.0.v is not selected by target_modules"},
		{"excluded module", func(a *Adapter) { a.Config.ExcludeModulesRegex = ".*v" }, "not selected"},
		{"no modules", func(a *Adapter) { a.Modules = nil }, "no modules"},
		{"alpha", func(a *Adapter) { a.Modules[0].Alpha = 5 }, "set LoraAlpha or AlphaPattern"},
		{"scale", func(a *Adapter) { a.Modules[0].Scale = 1 }, "set LoraAlpha or AlphaPattern"},
		{"config string not UTF-8", func(a *Adapter) { a.Config.TargetModules = append(a.Config.TargetModules, "\xff") }, "load back changed"},
		{"module name not UTF-8", func(a *Adapter) {
			a.Config.TargetModulesRegex = ".*"
			a.Modules[0].Name = "layers.0.q\xff"
		}, "not valid UTF-8"},
		{"full tensor is a module's weight", func(a *Adapter) {
			w := f32Tensor("layers.0.q.weight", 4, 3)
			a.Full = append(a.Full, &w)
		}, "is the weight of module"},
		{"name too long", func(a *Adapter) {
			a.Config.TargetModulesRegex = ".*"
			a.Modules[0].Name = strings.Repeat("x", MaxNameLen)
		}, "longer than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := load(t)
			c.change(a)
			dir := filepath.Join(t.TempDir(), "out")
			err := Save(dir, a)
			if err == nil {
				t.Fatal("saved")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("Save left %s behind", dir)
			}
		})
	}
}

// TestSaveKeepsOldAdapter makes the configuration impossible to put in
// place (a non-empty directory has its name): Save fails and leaves the
// adapter that was there byte for byte, and no temporary file.
func TestSaveKeepsOldAdapter(t *testing.T) {
	old, err := Load(newTiny().write(t))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := Save(dir, old); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, ConfigFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, ConfigFile, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed, _ := Load(newTiny().write(t))
	changed.Modules[0].A[0] = 1000
	if err := Save(dir, changed); err == nil {
		t.Fatal("saved over a directory called " + ConfigFile)
	}
	after, err := os.ReadFile(filepath.Join(dir, WeightsFile))
	if err != nil || !bytes.Equal(after, before) {
		t.Errorf("the old weights changed (%v)", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %q, want the two files of the adapter", names)
	}
	// With no adapter before, no weights file is left.
	dir2 := filepath.Join(t.TempDir(), "new")
	if err := os.MkdirAll(filepath.Join(dir2, ConfigFile, "inside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Save(dir2, changed); err == nil {
		t.Fatal("saved over a directory called " + ConfigFile)
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 1 {
		t.Errorf("Save left %d entries in a directory that held one", len(entries))
	}
}

// TestModuleNotFound checks the error for an unknown module: it names the
// module and the closest ones.
func TestModuleNotFound(t *testing.T) {
	a, err := Load(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Module("transformer.h.5.mlp.c_prj")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("error %v does not wrap ErrNotFound", err)
	}
	want := `peft: no module "transformer.h.5.mlp.c_prj"; the closest are "transformer.h.5.mlp.c_proj", "transformer.h.0.mlp.c_proj", "transformer.h.1.mlp.c_proj"`
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
	_, err = a.Module("h.11.mlp.c_proj")
	if err == nil || !strings.Contains(err.Error(), `the closest are "transformer.h.11.mlp.c_proj"`) {
		t.Errorf("a short name: %v", err)
	}
	b, err := Load(newTiny().set("target_modules", []string{"q"}).write(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Module("layers.0.v"); err == nil || !strings.Contains(err.Error(), "target_modules does not select it") {
		t.Errorf("an ignored module: %v", err)
	}
	if m, err := b.Module("layers.0.q"); err != nil || m.Name != "layers.0.q" {
		t.Errorf("a known module: %v", err)
	}
	if _, err := (&Adapter{}).Module("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an empty adapter: %v", err)
	}
}

// TestRankPatternScale resolves 1,000 modules against a rank_pattern and an
// alpha_pattern of 20,000 keys each, through Load: each module gets the
// value of the one key that selects it.
func TestRankPatternScale(t *testing.T) {
	const keys, modules = 20000, 1000
	rank := map[string]float64{}
	alpha := map[string]float64{}
	var rp, ap strings.Builder
	for i := range keys {
		if i > 0 {
			rp.WriteString(",")
			ap.WriteString(",")
		}
		// Escaped, unescaped and a regular expression proper, in turn.
		var k string
		switch i % 3 {
		case 0:
			k = fmt.Sprintf(`model\\.layers\\.%d\\.mlp\\.down_proj`, i)
		case 1:
			k = fmt.Sprintf(`model.layers.%d.mlp.down_proj`, i)
		case 2:
			k = fmt.Sprintf(`model\\.layers\\.%d\\.mlp\\.(down|up)_proj`, i)
		}
		fmt.Fprintf(&rp, `"%s": %d`, k, 1+i%3)
		fmt.Fprintf(&ap, `"%s": %d`, strings.Replace(k, "mlp", "(mlp|attn)", 1), 100+i)
	}
	c := newTiny()
	c.tensors = nil
	for j := range modules {
		layer := (j * keys) / modules
		name := fmt.Sprintf("model.layers.%d.mlp.down_proj", layer)
		r := 1 + layer%3
		rank[name], alpha[name] = float64(r), float64(100+layer)
		c.add(f32Tensor(Prefix+name+".lora_A.weight", r, 2), f32Tensor(Prefix+name+".lora_B.weight", 2, r))
	}
	dir := c.write(t)
	cfg := fmt.Sprintf(`{"peft_type": "LORA", "r": 8, "lora_alpha": 1, "target_modules": ["down_proj"], "rank_pattern": {%s}, "alpha_pattern": {%s}}`, rp.String(), ap.String())
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != modules {
		t.Fatalf("%d modules, want %d", len(a.Modules), modules)
	}
	for _, m := range a.Modules {
		if float64(m.Rank) != rank[m.Name] || m.Alpha != alpha[m.Name] || m.Scale != float32(alpha[m.Name]/rank[m.Name]) {
			t.Fatalf("%s: rank %d alpha %v scale %v, want %v and %v", m.Name, m.Rank, m.Alpha, m.Scale, rank[m.Name], alpha[m.Name])
		}
	}
	// Resolve on the loaded Config gives the same.
	if r, al, _, err := a.Config.Resolve("model.layers.20.mlp.down_proj"); err != nil || r != 3 || al != 120 {
		t.Errorf("Resolve: %d, %v, %v", r, al, err)
	}
}

// TestPatternCacheFollowsChanges changes a parsed Config's patterns after a
// first Resolve: the next one sees the change.
func TestPatternCacheFollowsChanges(t *testing.T) {
	c, err := ParseConfig([]byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q"], "rank_pattern": {"q": 4}}`))
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _, _ := c.Resolve("a.q"); r != 4 {
		t.Fatalf("rank %d, want 4", r)
	}
	c.RankPattern[0].Key = "v"
	if r, _, _, _ := c.Resolve("a.q"); r != 8 {
		t.Errorf("after changing the key: rank %d, want 8", r)
	}
	c.RankPattern = append(c.RankPattern, PatternEntry{"q", 2})
	if r, _, _, _ := c.Resolve("a.q"); r != 2 {
		t.Errorf("after adding a key: rank %d, want 2", r)
	}
	c.TargetModules = []string{"v"}
	if ok, _ := c.Selects("a.q", false); ok {
		t.Error("after changing target_modules, a.q is still selected")
	}
	c.TargetModules[0] = "q"
	if ok, _ := c.Selects("a.q", false); !ok {
		t.Error("after changing target_modules back, a.q is not selected")
	}
}

// TestNilAPI calls every exported function and method of the package with
// nil receivers and arguments: errors, or the zero results documented, and
// never a panic.
func TestNilAPI(t *testing.T) {
	var (
		cfg *Config
		ad  *Adapter
		m   *Module
		st  *Safetensors
		ten *Tensor
		pat *Pattern
	)
	errs := map[string]func() error{
		"FromSafetensors(nil, nil)": func() error { _, err := FromSafetensors(nil, nil); return err },
		"FromSafetensors(cfg, nil)": func() error {
			c, _ := ParseConfig([]byte(`{"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["q"]}`))
			_, err := FromSafetensors(c, nil)
			return err
		},
		"Config.Check":          func() error { return cfg.Check() },
		"Config.Selects":        func() error { _, err := cfg.Selects("x", false); return err },
		"Config.Resolve":        func() error { _, _, _, err := cfg.Resolve("x"); return err },
		"Config.MarshalJSON":    func() error { _, err := cfg.MarshalJSON(); return err },
		"Pattern.UnmarshalJSON": func() error { return pat.UnmarshalJSON([]byte(`{}`)) },
		"Adapter.Module":        func() error { _, err := ad.Module("x"); return err },
		"Module.NewLayer":       func() error { _, err := m.NewLayer(nil); return err },
		"Module.NewLayer(nil)": func() error {
			_, err := (&Module{Name: "m", In: 1, Out: 1, Rank: 1, A: []float32{1}, B: []float32{1}}).NewLayer(nil)
			return err
		},
		"Save(dir, nil)":               func() error { return Save(t.TempDir(), nil) },
		"Save(dir, nil Config)":        func() error { return Save(t.TempDir(), &Adapter{}) },
		"Save(dir, nil Module)":        func() error { return Save(t.TempDir(), nilModuleAdapter()) },
		"Safetensors.Section":          func() error { _, err := st.Section("x"); return err },
		"Safetensors.Bytes":            func() error { _, err := st.Bytes("x"); return err },
		"Safetensors.Float32s":         func() error { _, err := st.Float32s("x"); return err },
		"Tensor.Float32s":              func() error { _, err := ten.Float32s(); return err },
		"ReadSafetensors(nil, 0)":      func() error { _, err := ReadSafetensors(nil, 100); return err },
		"WriteSafetensors(nil...)":     func() error { return WriteSafetensors(nil, nil, nil) },
		"ParseConfig(nil)":             func() error { _, err := ParseConfig(nil); return err },
		"Load(\"\")":                   func() error { _, err := Load(""); return err },
		"OpenSafetensors(\"\")":        func() error { _, err := OpenSafetensors(""); return err },
		"DecodeFloats(nil, nil, \"\")": func() error { return DecodeFloats(nil, nil, "") },
		"EncodeFloats(nil, nil, \"\")": func() error { return EncodeFloats(nil, nil, "") },
		"ParseDType(\"\")":             func() error { _, err := ParseDType(""); return err },
	}
	for name, f := range errs {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			if err := f(); err == nil {
				t.Error("no error")
			} else if !strings.HasPrefix(err.Error(), "peft: ") {
				t.Errorf("error %q does not start with \"peft: \"", err)
			}
		})
	}
	zero := map[string]func() bool{
		"Safetensors.Close":      func() bool { return st.Close() == nil },
		"Safetensors.Size":       func() bool { return st.Size() == 0 },
		"Safetensors.DataOffset": func() bool { return st.DataOffset() == 0 },
		"Safetensors.Metadata":   func() bool { return st.Metadata() == nil },
		"Safetensors.Tensors":    func() bool { return st.Tensors() == nil },
		"Safetensors.Tensor":     func() bool { _, ok := st.Tensor("x"); return !ok },
		"Adapter.Params":         func() bool { l, f := ad.Params(); return l == 0 && f == 0 },
		"Module.Weight":          func() bool { return m.Weight() == "" },
		"Module.Transposed":      func() bool { return !m.Transposed() },
		"Module.WeightShape":     func() bool { r, c := m.WeightShape(); return r == 0 && c == 0 },
		"Module.Params":          func() bool { return m.Params() == 0 },
		"Tensor.Elements":        func() bool { return ten.Elements() == 0 },
		"Pattern.Lookup":         func() bool { _, ok, err := Pattern(nil).Lookup("x"); return !ok && err == nil },
		"Pattern.MarshalJSON":    func() bool { b, err := Pattern(nil).MarshalJSON(); return err == nil && string(b) == "{}" },
		"EncodeHeader(nil, nil)": func() bool { h, err := EncodeHeader(nil, nil); return err == nil && len(h) == 16 },
		"Float32Bytes(nil)":      func() bool { return Float32Bytes(nil) == nil },
		"Adapter with nil parts": func() bool {
			a := &Adapter{Modules: []*Module{nil}, Full: []*Tensor{nil}}
			l, f := a.Params()
			_, err := a.Module("x")
			return l == 0 && f == 0 && err != nil
		},
	}
	for name, f := range zero {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("panic: %v", r)
				}
			}()
			if !f() {
				t.Error("not the documented zero result")
			}
		})
	}
	if _, err := FromSafetensors(nil, nil); !errors.Is(err, lora.ErrNil) {
		t.Errorf("FromSafetensors(nil, nil): %v does not wrap lora.ErrNil", err)
	}
}

func nilModuleAdapter() *Adapter {
	c, _ := ParseConfig([]byte(`{"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["q"]}`))
	return &Adapter{Config: c, Modules: []*Module{nil}}
}
