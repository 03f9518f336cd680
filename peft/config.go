package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/golora/lora"
)

// Config is a PEFT LoRA configuration, the contents of adapter_config.json.
// The fields that decide how the adapter's weights are used are typed; every
// other field of the file is kept in Extra, verbatim, and written back by
// Save, so that a loaded and saved adapter keeps its task_type and the rest.
type Config struct {
	PeftType            string  // "LORA"
	BaseModelNameOrPath string  // base_model_name_or_path
	R                   int     // r: the default rank
	LoraAlpha           float64 // lora_alpha: the default alpha
	// TargetModules and TargetModulesRegex are target_modules, which selects
	// the modules that are LoRA layers (see Config.Selects): a list of names
	// (an empty one selects nothing), or one regular expression, or
	// AllLinear. Both unset (nil and "") stands for a missing or null
	// target_modules, which Check refuses.
	TargetModules      []string
	TargetModulesRegex string
	// ExcludeModules and ExcludeModulesRegex are exclude_modules, a list or
	// a regular expression read as target_modules is, of modules that are
	// not LoRA layers even when target_modules selects them.
	ExcludeModules      []string
	ExcludeModulesRegex string
	// LayersToTransform is layers_to_transform (one index in the file
	// stands for a list of one): when not empty, a module that
	// target_modules selects by a suffix is a LoRA layer only if its layer
	// index, found with LayersPattern, is in the list.
	LayersToTransform []int
	// LayersPattern is layers_pattern (one string in the file stands for a
	// list of one): the names, as regular expressions, of the module lists
	// whose index is the layer index, such as "layers" or "h".
	LayersPattern []string
	FanInFanOut   bool     // fan_in_fan_out: base weights stored [in, out], as GPT-2's Conv1D
	UseRSLoRA     bool     // use_rslora: scale alpha/√r instead of alpha/r
	UseDoRA       bool     // use_dora: refused by Load and Save
	LoraBias      bool     // lora_bias: a bias on B, refused by Load and Save
	Bias          string   // bias: "none", "all" or "lora_only"
	RankPattern   Pattern  // rank_pattern: per-module r
	AlphaPattern  Pattern  // alpha_pattern: per-module alpha
	ModulesToSave []string // modules_to_save: modules saved whole

	// Extra holds every other field of the file, by JSON key.
	Extra map[string]json.RawMessage

	// cache holds the compiled target_modules, exclude_modules,
	// layers_pattern and pattern keys of a Config made by ParseConfig.
	cache *configCache
}

// configFields lists the JSON keys that Config types.
var configFields = []string{
	"peft_type", "base_model_name_or_path", "r", "lora_alpha", "target_modules",
	"exclude_modules", "layers_to_transform", "layers_pattern",
	"fan_in_fan_out", "use_rslora", "use_dora", "lora_bias", "bias",
	"rank_pattern", "alpha_pattern", "modules_to_save",
}

// ParseConfig decodes adapter_config.json. It checks types, and that the
// fields without which the adapter has no meaning are there: r, lora_alpha
// and target_modules missing or null are errors that name the field, not a
// default. Load and Save refuse what they cannot use (see Check).
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("peft: adapter_config.json: %v: %w", err, ErrFormat)
	}
	if raw == nil {
		return nil, fmt.Errorf("peft: adapter_config.json: not a JSON object: %w", ErrFormat)
	}
	c := &Config{Extra: map[string]json.RawMessage{}, cache: &configCache{}}
	var targets, exclude, layers, layersPattern json.RawMessage
	var r, alpha float64
	var fields = map[string]any{
		"peft_type":               &c.PeftType,
		"base_model_name_or_path": &c.BaseModelNameOrPath,
		"r":                       &r,
		"lora_alpha":              &alpha,
		"target_modules":          &targets,
		"exclude_modules":         &exclude,
		"layers_to_transform":     &layers,
		"layers_pattern":          &layersPattern,
		"fan_in_fan_out":          &c.FanInFanOut,
		"use_rslora":              &c.UseRSLoRA,
		"use_dora":                &c.UseDoRA,
		"lora_bias":               &c.LoraBias,
		"bias":                    &c.Bias,
		"rank_pattern":            &c.RankPattern,
		"alpha_pattern":           &c.AlphaPattern,
		"modules_to_save":         &c.ModulesToSave,
	}
	for _, k := range []string{"r", "lora_alpha", "target_modules"} {
		if v, ok := raw[k]; !ok || isNull(v) {
			return nil, fmt.Errorf("peft: %s is missing or null in adapter_config.json: %w", k, ErrFormat)
		}
	}
	if isNull(raw["bias"]) {
		return nil, fmt.Errorf("peft: bias is null in adapter_config.json, want \"none\", \"all\" or \"lora_only\": %w", ErrFormat)
	}
	for k, v := range raw {
		dst, ok := fields[k]
		if !ok {
			c.Extra[k] = v
			continue
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, fmt.Errorf("peft: adapter_config.json: %s: %v: %w", k, err, ErrFormat)
		}
	}
	if r != math.Trunc(r) || r < 0 || r > math.MaxInt32 {
		return nil, fmt.Errorf("peft: adapter_config.json: r is %v, want a non-negative integer: %w", r, ErrFormat)
	}
	c.R = int(r)
	c.LoraAlpha = alpha
	if _, ok := raw["bias"]; !ok {
		c.Bias = "none" // PEFT's default
	}
	var err error
	if c.TargetModules, c.TargetModulesRegex, err = namesOrRegex("target_modules", targets); err != nil {
		return nil, err
	}
	if c.TargetModules == nil && c.TargetModulesRegex == "" {
		return nil, fmt.Errorf("peft: adapter_config.json: target_modules is \"\", which selects no module: %w", ErrFormat)
	}
	if c.ExcludeModules, c.ExcludeModulesRegex, err = namesOrRegex("exclude_modules", exclude); err != nil {
		return nil, err
	}
	if c.LayersToTransform, err = intOrList(layers); err != nil {
		return nil, err
	}
	if c.LayersPattern, err = stringOrList(layersPattern); err != nil {
		return nil, err
	}
	return c, nil
}

func isNull(v json.RawMessage) bool { return v != nil && string(bytes.TrimSpace(v)) == "null" }

// namesOrRegex decodes a list of strings or a string; null or absent gives
// neither.
func namesOrRegex(field string, v json.RawMessage) ([]string, string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || isNull(v) {
		return nil, "", nil
	}
	var list []string
	var expr string
	dst := any(&list)
	if v[0] == '"' {
		dst = &expr
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return nil, "", fmt.Errorf("peft: adapter_config.json: %s: want a list of names or a regular expression: %v: %w", field, err, ErrFormat)
	}
	if v[0] != '"' && list == nil {
		list = []string{}
	}
	return list, expr, nil
}

// intOrList decodes layers_to_transform: an integer, a list of them, or null.
func intOrList(v json.RawMessage) ([]int, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || isNull(v) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("peft: adapter_config.json: layers_to_transform: %v: %w", err, ErrFormat)
	}
	list, ok := x.([]any)
	if !ok {
		list = []any{x}
	}
	out := make([]int, len(list))
	for i, e := range list {
		n, ok := e.(json.Number)
		k, err := strconv.ParseInt(string(n), 10, 0)
		if !ok || err != nil {
			return nil, fmt.Errorf("peft: adapter_config.json: layers_to_transform: %s is not an integer: %w", excerpt(fmt.Sprint(e)), ErrFormat)
		}
		out[i] = int(k)
	}
	return out, nil
}

// stringOrList decodes layers_pattern: a string, a list of them, or null;
// "" stands for an empty list, as in PEFT.
func stringOrList(v json.RawMessage) ([]string, error) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || isNull(v) {
		return nil, nil
	}
	list, s, err := namesOrRegex("layers_pattern", v)
	if err != nil {
		return nil, err
	}
	if v[0] == '"' {
		list = []string{}
		if s != "" {
			list = []string{s}
		}
	}
	return list, nil
}

// MarshalJSON writes the configuration as PEFT does: one object, keys sorted,
// indented by two spaces.
func (c *Config) MarshalJSON() ([]byte, error) {
	if c == nil {
		return nil, fmt.Errorf("peft: MarshalJSON: the Config is nil: %w", lora.ErrNil)
	}
	m := make(map[string]any, len(c.Extra)+len(configFields))
	for k, v := range c.Extra {
		m[k] = v
	}
	m["peft_type"] = c.PeftType
	m["base_model_name_or_path"] = c.BaseModelNameOrPath
	m["r"] = c.R
	m["lora_alpha"] = c.LoraAlpha
	m["target_modules"] = listOrString(c.TargetModules, c.TargetModulesRegex)
	m["exclude_modules"] = listOrString(c.ExcludeModules, c.ExcludeModulesRegex)
	m["layers_to_transform"] = c.LayersToTransform
	m["layers_pattern"] = c.LayersPattern
	m["fan_in_fan_out"] = c.FanInFanOut
	m["use_rslora"] = c.UseRSLoRA
	m["use_dora"] = c.UseDoRA
	m["lora_bias"] = c.LoraBias
	m["bias"] = c.Bias
	m["rank_pattern"] = orEmpty(c.RankPattern)
	m["alpha_pattern"] = orEmpty(c.AlphaPattern)
	m["modules_to_save"] = c.ModulesToSave
	var buf bytes.Buffer
	buf.WriteString("{")
	keys := slices.Sorted(maps.Keys(m))
	for i, k := range keys {
		if i > 0 {
			buf.WriteString(",")
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m[k])
		if err != nil {
			return nil, fmt.Errorf("peft: config field %s: %w", k, err)
		}
		buf.Write(kb)
		buf.WriteString(":")
		buf.Write(vb)
	}
	buf.WriteString("}")
	var out bytes.Buffer
	if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
		return nil, fmt.Errorf("peft: config: %w", err)
	}
	return out.Bytes(), nil
}

// listOrString returns expr if set, else list (nil becomes null).
func listOrString(list []string, expr string) any {
	if expr != "" {
		return expr
	}
	return list
}

func orEmpty(p Pattern) Pattern {
	if p == nil {
		return Pattern{}
	}
	return p
}

// Check reports whether the configuration describes a LoRA adapter this
// package can apply: peft_type "LORA", r ≥ 1, a finite alpha, bias one of
// "none", "all", "lora_only", a target_modules, layers_to_transform and
// layers_pattern only where PEFT accepts them (neither beside a
// target_modules given as a regular expression, layers_pattern only with
// layers_to_transform), regular expressions that compile, and none of the
// variants whose weights mean something other than W + s·B·A (DoRA,
// lora_bias, QALoRA, layer replication, trainable tokens, target
// parameters, activated LoRA). Errors wrap ErrUnsupported or ErrFormat, or
// lora.ErrNil for a nil Config.
func (c *Config) Check() error {
	if c == nil {
		return fmt.Errorf("peft: Check: the Config is nil: %w", lora.ErrNil)
	}
	if c.PeftType != "LORA" {
		if c.PeftType == "" {
			return fmt.Errorf("peft: adapter_config.json has no peft_type: %w", ErrFormat)
		}
		return fmt.Errorf("peft: peft_type %s is not supported, only \"LORA\": %w", quote(c.PeftType), ErrUnsupported)
	}
	if c.UseDoRA {
		return fmt.Errorf("peft: use_dora is true: DoRA adapters are not supported: %w", ErrUnsupported)
	}
	if c.LoraBias {
		return fmt.Errorf("peft: lora_bias is true: a bias on lora_B is not supported: %w", ErrUnsupported)
	}
	for _, k := range []string{"use_qalora", "layer_replication", "trainable_token_indices", "target_parameters", "alora_invocation_tokens"} {
		v, ok := c.Extra[k]
		if !ok {
			continue
		}
		s := string(bytes.TrimSpace(v))
		if s != "null" && s != "false" && s != "{}" && s != "[]" {
			return fmt.Errorf("peft: %s is %s: not supported: %w", k, excerpt(s), ErrUnsupported)
		}
	}
	if c.R < 1 {
		return fmt.Errorf("peft: r is %d, want ≥ 1: %w", c.R, ErrFormat)
	}
	if math.IsNaN(c.LoraAlpha) || math.IsInf(c.LoraAlpha, 0) {
		return fmt.Errorf("peft: lora_alpha is %v: %w", c.LoraAlpha, ErrFormat)
	}
	switch c.Bias {
	case "none", "all", "lora_only":
	default:
		return fmt.Errorf("peft: bias is %s, want \"none\", \"all\" or \"lora_only\": %w", quote(c.Bias), ErrFormat)
	}
	if c.TargetModules == nil && c.TargetModulesRegex == "" {
		return fmt.Errorf("peft: target_modules is missing or null: %w", ErrFormat)
	}
	if c.TargetModulesRegex != "" && (c.LayersToTransform != nil || c.LayersPattern != nil) {
		return fmt.Errorf("peft: layers_to_transform and layers_pattern cannot be used when target_modules is a string (%s), as in PEFT: %w", quote(c.TargetModulesRegex), ErrFormat)
	}
	if len(c.LayersPattern) > 0 && c.LayersToTransform == nil {
		return fmt.Errorf("peft: layers_pattern is set but layers_to_transform is not, which PEFT refuses: %w", ErrFormat)
	}
	for _, p := range []struct {
		name string
		p    Pattern
	}{{"rank_pattern", c.RankPattern}, {"alpha_pattern", c.AlphaPattern}} {
		for _, e := range p.p {
			if math.IsNaN(e.Value) || math.IsInf(e.Value, 0) {
				return fmt.Errorf("peft: %s: key %s has value %v: %w", p.name, quote(e.Key), e.Value, ErrFormat)
			}
		}
	}
	if _, err := c.matchers(); err != nil {
		return err
	}
	return nil
}

// Selects reports whether the module called name (its full name in the
// base model) is a LoRA layer of the configuration, as PEFT's
// check_target_module_exists decides it: a module that exclude_modules
// selects is not; otherwise target_modules given as a list selects the
// module of each name and every module whose name ends with "." and the
// name; given as a string, it is a regular expression that must match the
// whole name (Go's RE2 syntax, which agrees with Python's for the
// expressions found in adapter configs), or AllLinear, which selects every
// module but embeddings (see AllLinear). A non-empty LayersToTransform then
// keeps, of the modules selected by a suffix, those whose layer index is in
// it: the number after the first component that matches one of
// LayersPattern ("model.layers.3.mlp.up_proj" is in layer 3 for "layers"),
// or, without LayersPattern, the first number that is a whole component of
// the name after at least two others. embedding says the module's pair is
// lora_embedding_A and lora_embedding_B.
//
// Regular expressions are compiled once per Config made by ParseConfig (and
// again only when the fields they come from change); errors are those of
// Check for an expression that cannot be compiled.
func (c *Config) Selects(name string, embedding bool) (bool, error) {
	if c == nil {
		return false, fmt.Errorf("peft: Selects: the Config is nil: %w", lora.ErrNil)
	}
	if c.TargetModules == nil && c.TargetModulesRegex == "" {
		return false, fmt.Errorf("peft: target_modules is missing or null: %w", ErrFormat)
	}
	m, err := c.matchers()
	if err != nil {
		return false, err
	}
	return m.selects(name, embedding), nil
}

// Resolve returns the rank, alpha and scale that the configuration gives the
// module called name (its full name in the base model, such as
// "transformer.h.0.attn.c_attn"): r and lora_alpha, or the values of
// rank_pattern and alpha_pattern for keys that select the module (see
// Pattern), and scale alpha/r, or alpha/√r with use_rslora, as PEFT's
// LoraLayer.update_layer computes it. The keys are compiled once per
// Config made by ParseConfig, as for Selects.
func (c *Config) Resolve(name string) (rank int, alpha float64, scale float32, err error) {
	if c == nil {
		return 0, 0, 0, fmt.Errorf("peft: Resolve: the Config is nil: %w", lora.ErrNil)
	}
	m, err := c.matchers()
	if err != nil {
		return 0, 0, 0, err
	}
	return c.resolve(m, name)
}

func (c *Config) resolve(m *matchers, name string) (rank int, alpha float64, scale float32, err error) {
	r := float64(c.R)
	if i := m.rank.lookup(name); i >= 0 {
		r = c.RankPattern[i].Value
	}
	if r != math.Trunc(r) || r < 1 || r > math.MaxInt32 {
		return 0, 0, 0, fmt.Errorf("peft: module %s: rank_pattern gives r = %v, want a positive integer: %w", excerpt(name), r, ErrFormat)
	}
	alpha = c.LoraAlpha
	if i := m.alpha.lookup(name); i >= 0 {
		alpha = c.AlphaPattern[i].Value
	}
	if c.UseRSLoRA {
		scale = float32(alpha / math.Sqrt(r))
	} else {
		scale = float32(alpha / r)
	}
	return int(r), alpha, scale, nil
}
