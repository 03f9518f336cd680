package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora"
)

func TestLoadFixture(t *testing.T) {
	a, err := Load(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	c := a.Config
	if c.PeftType != "LORA" || c.R != 8 || c.LoraAlpha != 32 || !c.FanInFanOut || c.UseRSLoRA ||
		c.Bias != "none" || c.BaseModelNameOrPath != "gpt2" || strings.Join(c.TargetModules, ",") != "c_attn,c_proj" {
		t.Errorf("config %+v", c)
	}
	if len(a.Modules) != 36 || len(a.Full) != 0 {
		t.Fatalf("%d modules and %d full tensors, want 36 and 0", len(a.Modules), len(a.Full))
	}
	shapes := map[string][2]int{"attn.c_attn": {768, 2304}, "attn.c_proj": {768, 768}, "mlp.c_proj": {3072, 768}}
	seen := map[string]bool{}
	for _, m := range a.Modules {
		seen[m.Name] = true
		var block int
		var kind string
		if _, err := fmt.Sscanf(m.Name, "transformer.h.%d.", &block); err != nil || block < 0 || block > 11 {
			t.Errorf("module %q is not in a GPT-2 block", m.Name)
			continue
		}
		kind = strings.SplitN(m.Name, ".", 4)[3]
		want, ok := shapes[kind]
		if !ok {
			t.Errorf("module %q is not c_attn or c_proj", m.Name)
			continue
		}
		if m.Rank != 8 || m.Alpha != 32 || m.Scale != 4 || m.In != want[0] || m.Out != want[1] {
			t.Errorf("%s: rank %d alpha %v scale %v in %d out %d", m.Name, m.Rank, m.Alpha, m.Scale, m.In, m.Out)
		}
		if !m.FanInFanOut || !m.Transposed() || m.Embedding || m.DType != F32 {
			t.Errorf("%s: fan_in_fan_out %v embedding %v dtype %s", m.Name, m.FanInFanOut, m.Embedding, m.DType)
		}
		if m.Weight() != m.Name+".weight" {
			t.Errorf("%s: Weight() = %q", m.Name, m.Weight())
		}
		if r, c := m.WeightShape(); r != want[0] || c != want[1] {
			t.Errorf("%s: WeightShape %d×%d, want the Conv1D layout %d×%d", m.Name, r, c, want[0], want[1])
		}
		if len(m.A) != 8*m.In || len(m.B) != m.Out*8 {
			t.Errorf("%s: len(A) %d, len(B) %d", m.Name, len(m.A), len(m.B))
		}
	}
	if len(seen) != 36 {
		t.Errorf("%d distinct modules", len(seen))
	}
	if a.Modules[3].Name != "transformer.h.1.attn.c_attn" || a.Modules[35].Name != "transformer.h.11.mlp.c_proj" {
		t.Errorf("modules not in block order: 4th %s, last %s", a.Modules[3].Name, a.Modules[35].Name)
	}
	if l, f := a.Params(); l != 811008 || f != 0 {
		t.Errorf("Params() = %d, %d; want 811008, 0", l, f)
	}
	// A's first values, read straight from the file.
	st, err := OpenSafetensors(filepath.Join(fixtureDir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want, _ := st.Float32s("base_model.model.transformer.h.5.mlp.c_proj.lora_B.weight")
	m, err := a.Module("transformer.h.5.mlp.c_proj")
	if err != nil || len(want) != len(m.B) || want[100] != m.B[100] {
		t.Errorf("module h.5.mlp.c_proj does not hold the file's lora_B")
	}
}

// TestSaveLoadFixture saves the loaded fixture and loads it again: every
// tensor has the same bytes, and both files are the fixture's.
func TestSaveLoadFixture(t *testing.T) {
	dir := fixture(t)
	a, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "saved")
	if err := Save(out, a); err != nil {
		t.Fatal(err)
	}
	b, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Modules) != len(a.Modules) {
		t.Fatalf("%d modules came back, want %d", len(b.Modules), len(a.Modules))
	}
	orig, _ := OpenSafetensors(filepath.Join(dir, WeightsFile))
	defer orig.Close()
	saved, err := OpenSafetensors(filepath.Join(out, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer saved.Close()
	if len(saved.Tensors()) != len(orig.Tensors()) {
		t.Errorf("%d tensors saved, want %d", len(saved.Tensors()), len(orig.Tensors()))
	}
	for _, ti := range orig.Tensors() {
		want, _ := orig.Bytes(ti.Name)
		got, err := saved.Bytes(ti.Name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: bytes differ (%v)", ti.Name, err)
		}
	}
	for _, f := range []string{WeightsFile, ConfigFile} {
		want, _ := os.ReadFile(filepath.Join(dir, f))
		got, _ := os.ReadFile(filepath.Join(out, f))
		if !bytes.Equal(got, want) {
			t.Errorf("saved %s differs from the fixture's", f)
		}
	}
	if saved.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v", saved.Metadata())
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 2 {
		t.Errorf("Save left %d files, want 2", len(entries))
	}
}

// tiny is a small adapter directory for the tests to vary.
type tiny struct {
	cfg     map[string]any
	tensors []Tensor
}

func newTiny() *tiny {
	return &tiny{
		cfg: map[string]any{
			"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": []string{"q", "v"},
			"fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "lora_bias": false,
			"bias": "none", "rank_pattern": map[string]any{}, "alpha_pattern": map[string]any{},
			"modules_to_save": nil, "base_model_name_or_path": "tiny", "task_type": "CAUSAL_LM",
		},
		tensors: []Tensor{
			f32Tensor(Prefix+"layers.0.q.lora_A.weight", 2, 3),
			f32Tensor(Prefix+"layers.0.q.lora_B.weight", 4, 2),
			f32Tensor(Prefix+"layers.0.v.lora_A.weight", 2, 3),
			f32Tensor(Prefix+"layers.0.v.lora_B.weight", 5, 2),
		},
	}
}

// f32Tensor returns a rows×cols F32 tensor with distinct values.
func f32Tensor(name string, rows, cols int) Tensor {
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(i+1)/8 - float32(len(name)%5)
	}
	b := make([]byte, 4*len(v))
	EncodeFloats(b, v, F32)
	return Tensor{Name: name, DType: F32, Shape: []int{rows, cols}, Data: b}
}

func (c *tiny) write(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg, err := json.Marshal(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, c.tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, WeightsFile), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (c *tiny) drop(name string) *tiny {
	for i, t := range c.tensors {
		if t.Name == name {
			c.tensors = append(c.tensors[:i], c.tensors[i+1:]...)
			return c
		}
	}
	panic("no tensor " + name)
}

func (c *tiny) add(ts ...Tensor) *tiny { c.tensors = append(c.tensors, ts...); return c }

func (c *tiny) set(k string, v any) *tiny { c.cfg[k] = v; return c }

func TestLoadTiny(t *testing.T) {
	a, err := Load(newTiny().write(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Modules) != 2 {
		t.Fatalf("%d modules", len(a.Modules))
	}
	q, errQ := a.Module("layers.0.q")
	v, errV := a.Module("layers.0.v")
	if errQ != nil || errV != nil || q.In != 3 || q.Out != 4 || v.Out != 5 || q.Scale != 2 || q.Transposed() {
		t.Errorf("modules %+v %+v", q, v)
	}
	if string(a.Config.Extra["task_type"]) != `"CAUSAL_LM"` {
		t.Errorf("task_type not kept: %v", a.Config.Extra)
	}
}

// TestLoadRefusals checks that Load refuses, with an error that says why,
// every adapter it cannot apply exactly.
func TestLoadRefusals(t *testing.T) {
	cases := []struct {
		name string
		dir  func(t *testing.T) string
		is   error
		want string
	}{
		{"use_dora", func(t *testing.T) string { return newTiny().set("use_dora", true).write(t) }, ErrUnsupported, "use_dora"},
		{"lora_bias", func(t *testing.T) string { return newTiny().set("lora_bias", true).write(t) }, ErrUnsupported, "lora_bias"},
		{"unknown peft_type", func(t *testing.T) string { return newTiny().set("peft_type", "IA3").write(t) }, ErrUnsupported, `"IA3"`},
		{"no peft_type", func(t *testing.T) string { c := newTiny(); delete(c.cfg, "peft_type"); return c.write(t) }, ErrFormat, "peft_type"},
		{"use_qalora", func(t *testing.T) string { return newTiny().set("use_qalora", true).write(t) }, ErrUnsupported, "use_qalora"},
		{"layer_replication", func(t *testing.T) string { return newTiny().set("layer_replication", [][]int{{0, 1}}).write(t) }, ErrUnsupported, "layer_replication"},
		{"bad bias", func(t *testing.T) string { return newTiny().set("bias", "some").write(t) }, ErrFormat, "bias"},
		{"r not a number", func(t *testing.T) string { return newTiny().set("r", "8").write(t) }, ErrFormat, "r"},
		{"A without B", func(t *testing.T) string {
			return newTiny().drop(Prefix + "layers.0.v.lora_B.weight").write(t)
		}, ErrInconsistent, "has lora_A"},
		{"B without A", func(t *testing.T) string {
			return newTiny().drop(Prefix + "layers.0.q.lora_A.weight").write(t)
		}, ErrInconsistent, "no lora_A"},
		{"B's rank differs from A's", func(t *testing.T) string {
			return newTiny().drop(Prefix + "layers.0.q.lora_B.weight").add(f32Tensor(Prefix+"layers.0.q.lora_B.weight", 4, 3)).write(t)
		}, ErrInconsistent, "want [out, 2]"},
		{"rank differs from r", func(t *testing.T) string { return newTiny().set("r", 4).write(t) }, ErrInconsistent, "configuration gives r = 4"},
		{"rank differs from rank_pattern", func(t *testing.T) string {
			return newTiny().set("rank_pattern", map[string]int{"v": 3}).write(t)
		}, ErrInconsistent, "configuration gives r = 3"},
		{"A not 2-D", func(t *testing.T) string {
			c := newTiny().drop(Prefix + "layers.0.q.lora_A.weight")
			a := f32Tensor(Prefix+"layers.0.q.lora_A.weight", 2, 3)
			a.Shape = []int{6}
			return c.add(a).write(t)
		}, ErrInconsistent, "2 dimensions"},
		{"convolution", func(t *testing.T) string {
			c := newTiny().drop(Prefix + "layers.0.q.lora_A.weight")
			a := f32Tensor(Prefix+"layers.0.q.lora_A.weight", 2, 3)
			a.Shape = []int{2, 3, 1, 1}
			return c.add(a).write(t)
		}, ErrUnsupported, "convolutions"},
		{"integer A", func(t *testing.T) string {
			c := newTiny().drop(Prefix + "layers.0.q.lora_A.weight")
			a := f32Tensor(Prefix+"layers.0.q.lora_A.weight", 2, 3)
			a.DType = I32
			return c.add(a).write(t)
		}, ErrUnsupported, "want F32"},
		{"DoRA magnitude", func(t *testing.T) string {
			return newTiny().add(f32Tensor(Prefix+"layers.0.q.lora_magnitude_vector", 1, 4)).write(t)
		}, ErrUnsupported, "lora_magnitude_vector"},
		{"adapter name inside", func(t *testing.T) string {
			return newTiny().add(f32Tensor(Prefix+"layers.1.q.lora_A.default.weight", 2, 3)).write(t)
		}, ErrUnsupported, "adapter name"},
		{"the same A twice", func(t *testing.T) string {
			return newTiny().add(f32Tensor("layers.0.q.lora_A.weight", 2, 3)).write(t)
		}, ErrInconsistent, "same LoRA tensor"},
		{"hostile safetensors", func(t *testing.T) string {
			dir := newTiny().write(t)
			p := filepath.Join(dir, WeightsFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-1], 0o644)
			return dir
		}, ErrFormat, "run past"},
		{"pickle only", func(t *testing.T) string {
			dir := newTiny().write(t)
			os.Rename(filepath.Join(dir, WeightsFile), filepath.Join(dir, "adapter_model.bin"))
			return dir
		}, ErrUnsupported, "adapter_model.bin"},
		{"config not JSON", func(t *testing.T) string {
			dir := newTiny().write(t)
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte("{r: 8"), 0o644)
			return dir
		}, ErrFormat, "adapter_config.json"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := c.dir(t)
			before, _ := os.ReadDir(dir)
			a, err := Load(dir)
			if err == nil {
				t.Fatalf("loaded %d modules", len(a.Modules))
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error %q does not wrap %v", err, c.is)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			after, _ := os.ReadDir(dir)
			if len(after) != len(before) {
				t.Errorf("Load changed the directory")
			}
		})
	}
}

// TestSaveRefusals checks that Save writes nothing for an adapter it would
// write wrong.
func TestSaveRefusals(t *testing.T) {
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
		{"use_dora", func(a *Adapter) { a.Config.UseDoRA = true }, "use_dora"},
		{"lora_bias", func(a *Adapter) { a.Config.LoraBias = true }, "lora_bias"},
		{"peft_type", func(a *Adapter) { a.Config.PeftType = "LOHA" }, "LOHA"},
		{"rank differs from r", func(a *Adapter) { a.Config.R = 3 }, "set R or RankPattern"},
		{"short A", func(a *Adapter) { a.Modules[0].A = a.Modules[0].A[1:] }, "A has 5 elements"},
		{"fan_in_fan_out", func(a *Adapter) { a.Modules[1].FanInFanOut = true }, "FanInFanOut"},
		{"dtype", func(a *Adapter) { a.Modules[0].DType = I8 }, "dtype"},
		{"duplicate module", func(a *Adapter) { a.Modules = append(a.Modules, a.Modules[0]) }, "twice"},
		{"full tensor named like LoRA", func(a *Adapter) {
			tt := f32Tensor("x.lora_A.weight", 1, 1)
			a.Full = append(a.Full, &tt)
		}, "LoRA"},
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
				t.Errorf("Save created %s", dir)
			}
		})
	}
}

// TestFullTensorsAndDTypes saves an adapter with modules_to_save tensors,
// a bias and modules in F16 and BF16, and loads it back unchanged.
func TestFullTensorsAndDTypes(t *testing.T) {
	c := newTiny().set("modules_to_save", []string{"score"}).set("bias", "lora_only")
	head := f32Tensor(Prefix+"score.weight", 3, 4)
	ids := Tensor{Name: Prefix + "position_ids", DType: I64, Shape: []int{2}, Data: []byte{1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}}
	c.add(head, ids)
	a, err := Load(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var score *Tensor
	for _, f := range a.Full {
		names = append(names, f.Name)
		if f.Name == "score.weight" {
			score = f
		}
	}
	if len(names) != 2 || score == nil || !slices.Contains(names, "position_ids") {
		t.Fatalf("full tensors %v, want score.weight and position_ids", names)
	}
	if v, err := score.Float32s(); err != nil || len(v) != 12 {
		t.Errorf("score.weight as float32: %v, %v", v, err)
	}
	if _, f := a.Params(); f != 14 {
		t.Errorf("%d full parameters, want 14", f)
	}
	a.Modules[0].DType = F16
	a.Modules[1].DType = BF16
	a.Modules[1].B[0] = 1.0 / 3 // not a bfloat16: rounds on Save
	dir := filepath.Join(t.TempDir(), "x")
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b.Modules[0].DType != F16 || b.Modules[1].DType != BF16 {
		t.Errorf("dtypes %s %s", b.Modules[0].DType, b.Modules[1].DType)
	}
	if got, want := b.Modules[1].B[0], BF16ToFloat32(Float32ToBF16(1.0/3)); got != want {
		t.Errorf("B[0] = %v, want %v (1/3 rounded to bfloat16)", got, want)
	}
	for i, m := range b.Modules {
		for j, v := range m.A {
			if v != a.Modules[i].A[j] { // eighths are exact in F16 and BF16
				t.Fatalf("%s: A[%d] = %v, want %v", m.Name, j, v, a.Modules[i].A[j])
			}
		}
	}
	for i, f := range b.Full {
		if f.Name != a.Full[i].Name || f.DType != a.Full[i].DType || !bytes.Equal(f.Data, a.Full[i].Data) {
			t.Errorf("full tensor %s changed", f.Name)
		}
	}
	// Saving what was loaded gives the same bytes again.
	dir2 := filepath.Join(t.TempDir(), "y")
	if err := Save(dir2, b); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(filepath.Join(dir, WeightsFile))
	y, _ := os.ReadFile(filepath.Join(dir2, WeightsFile))
	if !bytes.Equal(x, y) {
		t.Error("a second Save wrote different bytes")
	}
}

func TestEmbeddingModule(t *testing.T) {
	c := newTiny().add(
		f32Tensor(Prefix+"embed_tokens.lora_embedding_A", 2, 10),
		f32Tensor(Prefix+"embed_tokens.lora_embedding_B", 4, 2),
	).set("fan_in_fan_out", false).set("target_modules", []string{"q", "v", "embed_tokens"})
	a, err := Load(c.write(t))
	if err != nil {
		t.Fatal(err)
	}
	m, err := a.Module("embed_tokens")
	if err != nil || !m.Embedding || !m.Transposed() || m.In != 10 || m.Out != 4 {
		t.Fatalf("embedding module %+v", m)
	}
	if r, c := m.WeightShape(); r != 10 || c != 4 {
		t.Errorf("WeightShape %d×%d, want 10×4 (num_embeddings×dim)", r, c)
	}
	dir := filepath.Join(t.TempDir(), "e")
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	st, err := OpenSafetensors(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.Tensor(Prefix + "embed_tokens.lora_embedding_A"); !ok {
		t.Error("Save did not write lora_embedding_A")
	}
}

func TestPatternLookup(t *testing.T) {
	p := Pattern{
		{`h\.1[01]\.mlp\.c_proj`, 16},
		{"attn.c_proj", 4},
		{"c_proj", 2},
		{"transformer.h.0.attn.c_attn", 12},
		{"lm_head", 1},
	}
	cases := []struct {
		name string
		want float64
		ok   bool
	}{
		{"transformer.h.10.mlp.c_proj", 16, true},
		{"transformer.h.1.mlp.c_proj", 2, true}, // not block 1: the regex wants 10 or 11
		{"transformer.h.3.attn.c_proj", 4, true},
		{"transformer.h.3.mlp.c_proj", 2, true},
		{"c_proj", 2, true}, // the whole name
		{"transformer.h.0.attn.c_attn", 12, true},
		{"transformer.h.1.attn.c_attn", 0, false},
		{"transformer.h.0.attn.xc_proj", 0, false},  // a suffix must start after a dot
		{"transformer.h.0.attn.c_proj_2", 0, false}, // the key must reach the end of the name
		{"transformer.h.0.attnXc_proj", 4, true},    // "." in a key matches any character, as in PEFT
		{"lm_head", 1, true},
		{"lm_head2", 0, false},
	}
	for _, c := range cases {
		got, ok, err := p.Lookup(c.name)
		if err != nil || got != c.want || ok != c.ok {
			t.Errorf("Lookup(%q) = %v, %v, %v; want %v, %v", c.name, got, ok, err, c.want, c.ok)
		}
	}
	// First key in file order wins, even over a later exact name.
	order := Pattern{{"c_attn", 3}, {"transformer.h.0.attn.c_attn", 5}}
	if got, _, _ := order.Lookup("transformer.h.0.attn.c_attn"); got != 3 {
		t.Errorf("first match %v, want 3 (the first key in order, as PEFT)", got)
	}
	if _, _, err := (Pattern{{"(?=x)c_attn", 1}}).Lookup("c_attn"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("a key RE2 cannot compile: %v", err)
	}
	// Order survives JSON.
	var q Pattern
	if err := json.Unmarshal([]byte(`{"z": 1, "a": 2.5, "m": 3}`), &q); err != nil {
		t.Fatal(err)
	}
	if len(q) != 3 || q[0].Key != "z" || q[1].Value != 2.5 || q[2].Key != "m" {
		t.Errorf("unmarshalled %v", q)
	}
	b, _ := json.Marshal(q)
	if string(b) != `{"z":1,"a":2.5,"m":3}` {
		t.Errorf("marshalled %s", b)
	}
}

func TestResolve(t *testing.T) {
	c := &Config{PeftType: "LORA", R: 8, LoraAlpha: 16, Bias: "none",
		RankPattern:  Pattern{{"v_proj", 4}},
		AlphaPattern: Pattern{{"layers.0.q_proj", 64}},
	}
	for _, x := range []struct {
		name         string
		rsLoRA       bool
		rank         int
		alpha, scale float64
	}{
		{"model.layers.0.q_proj", false, 8, 64, 8},
		{"model.layers.1.q_proj", false, 8, 16, 2},
		{"model.layers.1.v_proj", false, 4, 16, 4},
		{"model.layers.1.v_proj", true, 4, 16, 8},
		{"model.layers.0.q_proj", true, 8, 64, 64 / math.Sqrt(8)},
	} {
		c.UseRSLoRA = x.rsLoRA
		r, alpha, s, err := c.Resolve(x.name)
		if err != nil || r != x.rank || alpha != x.alpha || s != float32(x.scale) {
			t.Errorf("Resolve(%q, rslora %v) = %d, %v, %v, %v; want %d, %v, %v", x.name, x.rsLoRA, r, alpha, s, err, x.rank, x.alpha, float32(x.scale))
		}
	}
	c.RankPattern = Pattern{{"v_proj", 2.5}}
	if _, _, _, err := c.Resolve("a.v_proj"); err == nil {
		t.Error("a fractional rank resolved")
	}
}

// TestNewLayer merges modules into base weights through lora.Layer and
// checks the result against W + s·B·A computed in float64: the weight is
// out×in for every module, the transpose of a fan_in_fan_out module's
// stored weight.
func TestNewLayer(t *testing.T) {
	for _, fanInFanOut := range []bool{false, true} {
		const in, out, r = 5, 7, 3
		m := &Module{Name: "m", In: in, Out: out, Rank: r, Scale: 1.5, FanInFanOut: fanInFanOut,
			A: make([]float32, r*in), B: make([]float32, out*r)}
		for i := range m.A {
			m.A[i] = float32(i%7) - 3
		}
		for i := range m.B {
			m.B[i] = float32(i%5)/4 - 0.5
		}
		rows, cols := out, in
		if lr, lc := m.LayerShape(); lr != rows || lc != cols {
			t.Fatalf("fan_in_fan_out %v: LayerShape %d×%d, want %d×%d", fanInFanOut, lr, lc, rows, cols)
		}
		w0 := make([]float32, rows*cols)
		for i := range w0 {
			w0[i] = float32(i) / 10
		}
		w, err := lora.NewMatrixFrom(rows, cols, w0)
		if err != nil {
			t.Fatal(err)
		}
		l, err := m.NewLayer(w)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, rows*cols)
		if err := w.Read(got); err != nil {
			t.Fatal(err)
		}
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				var d float64
				for k := 0; k < r; k++ {
					d += float64(m.B[o*r+k]) * float64(m.A[k*in+i])
				}
				at := o*in + i
				want := float64(w0[at]) + 1.5*d
				if math.Abs(float64(got[at])-want) > 1e-5*math.Max(1, math.Abs(want)) {
					t.Errorf("fan_in_fan_out %v: ΔW[%d,%d]: W = %v, want %v", fanInFanOut, o, i, got[at], want)
				}
			}
		}
		l.Free()
		// The wrong layout is refused: for fan_in_fan_out it is the shape
		// as stored, and the message says to transpose it.
		bad, _ := lora.NewMatrix(cols, rows)
		_, err = m.NewLayer(bad)
		if !errors.Is(err, lora.ErrShape) {
			t.Errorf("fan_in_fan_out %v: a %d×%d weight: %v", fanInFanOut, cols, rows, err)
		} else if fanInFanOut != strings.Contains(err.Error(), "as stored") {
			t.Errorf("fan_in_fan_out %v: a %d×%d weight: %q", fanInFanOut, cols, rows, err)
		}
		bad.Free()
		w.Free()
	}
}
