package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
)

// Config is a PEFT LoRA configuration, the contents of adapter_config.json.
// The fields that decide how the adapter's weights are used are typed; every
// other field of the file is kept in Extra, verbatim, and written back by
// Save, so that a loaded and saved adapter keeps its task_type and the rest.
type Config struct {
	PeftType            string   // "LORA"
	BaseModelNameOrPath string   // base_model_name_or_path
	R                   int      // r: the default rank
	LoraAlpha           float64  // lora_alpha: the default alpha
	TargetModules       []string // target_modules as a list of names
	TargetModulesRegex  string   // target_modules given as one regular expression instead
	FanInFanOut         bool     // fan_in_fan_out: base weights stored [in, out], as GPT-2's Conv1D
	UseRSLoRA           bool     // use_rslora: scale alpha/√r instead of alpha/r
	UseDoRA             bool     // use_dora: refused by Load and Save
	LoraBias            bool     // lora_bias: a bias on B, refused by Load and Save
	Bias                string   // bias: "none", "all" or "lora_only"
	RankPattern         Pattern  // rank_pattern: per-module r
	AlphaPattern        Pattern  // alpha_pattern: per-module alpha
	ModulesToSave       []string // modules_to_save: modules saved whole

	// Extra holds every other field of the file, by JSON key.
	Extra map[string]json.RawMessage
}

// PatternEntry is one key of a rank_pattern or alpha_pattern and its value.
type PatternEntry struct {
	Key   string
	Value float64
}

// Pattern is a rank_pattern or alpha_pattern: keys that select modules, in
// the order of the file, each with a value for the modules it selects.
//
// A key selects a module as PEFT's get_pattern_key does: the first key, in
// file order, such that Python's re.match(rf"(.*\.)?({key})$", name)
// succeeds, that is, such that the whole module name matches the key as a
// regular expression, or a suffix of the name that starts after a dot does.
// So "c_proj" selects "transformer.h.0.attn.c_proj" but not
// "transformer.h.0.attn.xc_proj", a full name selects that module, and
// "h\.1[01]\.mlp\.c_proj" selects the MLP output projection of blocks 10
// and 11. Keys are compiled as Go regular expressions (RE2), which agree with
// Python's for the expressions found in adapter configs; a key that RE2
// cannot compile (a look-ahead, a back-reference) is an error rather than a
// silent miss.
type Pattern []PatternEntry

// Lookup returns the value that p gives the module called name, and whether
// a key selected it.
func (p Pattern) Lookup(name string) (float64, bool, error) {
	for _, e := range p {
		// Python's pattern, anchored at the start as re.match is.
		re, err := regexp.Compile(`^(?:(.*\.)?(` + e.Key + `)$)`)
		if err != nil {
			return 0, false, fmt.Errorf("peft: pattern key %q is not a regular expression this package can use: %v: %w", e.Key, err, ErrUnsupported)
		}
		if re.MatchString(name) {
			return e.Value, true, nil
		}
	}
	return 0, false, nil
}

// MarshalJSON writes p as a JSON object, keys in order.
func (p Pattern) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, e := range p {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(e.Key)
		buf.Write(k)
		buf.WriteByte(':')
		v, err := json.Marshal(e.Value)
		if err != nil {
			return nil, fmt.Errorf("pattern key %q: %w", e.Key, err)
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads a JSON object of numbers, keeping the order of its
// keys; null is an empty pattern.
func (p *Pattern) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if t == nil {
		*p = nil
		return nil
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object of numbers, found %v", t)
	}
	var out Pattern
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string)
		if seen[k] {
			return fmt.Errorf("duplicate key %q", k)
		}
		seen[k] = true
		t, err = dec.Token()
		if err != nil {
			return err
		}
		n, ok := t.(json.Number)
		if !ok {
			return fmt.Errorf("key %q: want a number, found %v", k, t)
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return fmt.Errorf("key %q: %v", k, err)
		}
		out = append(out, PatternEntry{k, v})
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	*p = out
	return nil
}

// configFields lists the JSON keys that Config types.
var configFields = []string{
	"peft_type", "base_model_name_or_path", "r", "lora_alpha", "target_modules",
	"fan_in_fan_out", "use_rslora", "use_dora", "lora_bias", "bias",
	"rank_pattern", "alpha_pattern", "modules_to_save",
}

// ParseConfig decodes adapter_config.json. It checks types, not meaning:
// Load and Save refuse what they cannot use.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("peft: adapter_config.json: %v: %w", err, ErrFormat)
	}
	if raw == nil {
		return nil, fmt.Errorf("peft: adapter_config.json: not a JSON object: %w", ErrFormat)
	}
	c := &Config{Extra: map[string]json.RawMessage{}}
	var targets json.RawMessage
	var r, alpha float64
	var fields = map[string]any{
		"peft_type":               &c.PeftType,
		"base_model_name_or_path": &c.BaseModelNameOrPath,
		"r":                       &r,
		"lora_alpha":              &alpha,
		"target_modules":          &targets,
		"fan_in_fan_out":          &c.FanInFanOut,
		"use_rslora":              &c.UseRSLoRA,
		"use_dora":                &c.UseDoRA,
		"lora_bias":               &c.LoraBias,
		"bias":                    &c.Bias,
		"rank_pattern":            &c.RankPattern,
		"alpha_pattern":           &c.AlphaPattern,
		"modules_to_save":         &c.ModulesToSave,
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
	if _, ok := raw["lora_alpha"]; !ok {
		c.LoraAlpha = 8 // PEFT's default
	}
	if _, ok := raw["r"]; !ok {
		c.R = 8 // PEFT's default
	}
	if _, ok := raw["bias"]; !ok {
		c.Bias = "none"
	}
	if len(targets) > 0 && string(targets) != "null" {
		if targets[0] == '"' {
			if err := json.Unmarshal(targets, &c.TargetModulesRegex); err != nil {
				return nil, fmt.Errorf("peft: adapter_config.json: target_modules: %v: %w", err, ErrFormat)
			}
		} else if err := json.Unmarshal(targets, &c.TargetModules); err != nil {
			return nil, fmt.Errorf("peft: adapter_config.json: target_modules: %v: %w", err, ErrFormat)
		}
	}
	return c, nil
}

// MarshalJSON writes the configuration as PEFT does: one object, keys sorted,
// indented by two spaces.
func (c *Config) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(c.Extra)+len(configFields))
	for k, v := range c.Extra {
		m[k] = v
	}
	m["peft_type"] = c.PeftType
	m["base_model_name_or_path"] = c.BaseModelNameOrPath
	m["r"] = c.R
	m["lora_alpha"] = c.LoraAlpha
	switch {
	case c.TargetModulesRegex != "":
		m["target_modules"] = c.TargetModulesRegex
	case c.TargetModules != nil:
		m["target_modules"] = c.TargetModules
	default:
		m["target_modules"] = nil
	}
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

func orEmpty(p Pattern) Pattern {
	if p == nil {
		return Pattern{}
	}
	return p
}

// Check reports whether the configuration describes a LoRA adapter this
// package can apply: peft_type "LORA", r ≥ 1, a finite alpha, bias one of
// "none", "all", "lora_only", and none of the variants whose weights mean
// something other than W + s·B·A (DoRA, lora_bias, QALoRA, layer
// replication, trainable tokens, target parameters, activated LoRA).
// Errors wrap ErrUnsupported or ErrFormat.
func (c *Config) Check() error {
	if c.PeftType != "LORA" {
		if c.PeftType == "" {
			return fmt.Errorf("peft: adapter_config.json has no peft_type: %w", ErrFormat)
		}
		return fmt.Errorf("peft: peft_type %q is not supported, only \"LORA\": %w", c.PeftType, ErrUnsupported)
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
			return fmt.Errorf("peft: %s is %s: not supported: %w", k, s, ErrUnsupported)
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
		return fmt.Errorf("peft: bias is %q, want \"none\", \"all\" or \"lora_only\": %w", c.Bias, ErrFormat)
	}
	for _, p := range []struct {
		name string
		p    Pattern
	}{{"rank_pattern", c.RankPattern}, {"alpha_pattern", c.AlphaPattern}} {
		for _, e := range p.p {
			if _, _, err := (Pattern{e}).Lookup(""); err != nil {
				return fmt.Errorf("peft: %s: %w", p.name, err)
			}
			if math.IsNaN(e.Value) || math.IsInf(e.Value, 0) {
				return fmt.Errorf("peft: %s: key %q has value %v: %w", p.name, e.Key, e.Value, ErrFormat)
			}
		}
	}
	return nil
}

// Resolve returns the rank, alpha and scale that the configuration gives the
// module called name (its full name in the base model, such as
// "transformer.h.0.attn.c_attn"): r and lora_alpha, or the values of
// rank_pattern and alpha_pattern for keys that select the module (see
// Pattern), and scale alpha/r, or alpha/√r with use_rslora, as PEFT's
// LoraLayer.update_layer computes it.
func (c *Config) Resolve(name string) (rank int, alpha float64, scale float32, err error) {
	r, ok, err := c.RankPattern.Lookup(name)
	if err != nil {
		return 0, 0, 0, err
	}
	if !ok {
		r = float64(c.R)
	}
	if r != math.Trunc(r) || r < 1 || r > math.MaxInt32 {
		return 0, 0, 0, fmt.Errorf("peft: module %s: rank_pattern gives r = %v, want a positive integer: %w", name, r, ErrFormat)
	}
	alpha, ok, err = c.AlphaPattern.Lookup(name)
	if err != nil {
		return 0, 0, 0, err
	}
	if !ok {
		alpha = c.LoraAlpha
	}
	if c.UseRSLoRA {
		scale = float32(alpha / math.Sqrt(r))
	} else {
		scale = float32(alpha / r)
	}
	return int(r), alpha, scale, nil
}
