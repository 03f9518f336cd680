package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/golora/lora"
)

// QuantizationConfig is the "quantization_config" of a transformers model's
// config.json, as transformers' BitsAndBytesConfig.to_dict writes it for a
// model quantized by bitsandbytes. The fields that say how the weights are
// stored are typed; every other field is kept in Extra, verbatim.
type QuantizationConfig struct {
	// QuantMethod is quant_method: "bitsandbytes" for the models this
	// package reads. A configuration without it but with load_in_4bit or
	// load_in_8bit true is bitsandbytes', as transformers'
	// AutoQuantizationConfig reads it, and gets "bitsandbytes" here.
	QuantMethod string
	LoadIn4bit  bool // load_in_4bit
	LoadIn8bit  bool // load_in_8bit: LLM.int8(), which this package does not read
	// QuantType is bnb_4bit_quant_type: "nf4", or "fp4", transformers'
	// default when absent.
	QuantType   string
	DoubleQuant bool // bnb_4bit_use_double_quant: absmax quantized again
	// ComputeDType is bnb_4bit_compute_dtype, the dtype bitsandbytes
	// computes in (F32 when absent or null, as in transformers).
	ComputeDType DType
	// QuantStorage is bnb_4bit_quant_storage, the dtype the packed codes are
	// viewed as in the file: U8 (when absent or null), I8, F16, BF16, F32 or
	// F64.
	QuantStorage DType
	// SkipModules is llm_int8_skip_modules: modules left unquantized (nil
	// when absent or null).
	SkipModules []string
	// Extra holds every other field, by JSON key: _load_in_4bit,
	// llm_int8_threshold, ...
	Extra map[string]json.RawMessage
}

// QuantizationConfigKey is the key of config.json that holds a quantized
// model's QuantizationConfig.
const QuantizationConfigKey = "quantization_config"

// torchDTypes gives the names that transformers writes for
// bnb_4bit_compute_dtype and bnb_4bit_quant_storage: the part of
// str(torch.dtype) after "torch.". BitsAndBytesConfig reads them back with
// getattr(torch, name).
var torchDTypes = map[string]DType{
	"float32": F32, "float16": F16, "bfloat16": BF16, "float64": F64, "uint8": U8, "int8": I8,
}

// ParseQuantizationConfig returns the quantization_config of config.json,
// whose bytes are configJSON, or nil and no error when it has none (or
// null). It checks the types of the fields it knows, and that config.json
// is a JSON object; an error wraps ErrFormat and names the field. Check
// says whether the configuration is one whose weights this package reads.
func ParseQuantizationConfig(configJSON []byte) (*QuantizationConfig, error) {
	if !utf8.Valid(configJSON) {
		return nil, fmt.Errorf("peft: config.json is not valid UTF-8: %w", ErrFormat)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(configJSON, &top); err != nil || top == nil {
		if err == nil {
			err = fmt.Errorf("not a JSON object")
		}
		return nil, fmt.Errorf("peft: config.json: %v: %w", err, ErrFormat)
	}
	raw, ok := top[QuantizationConfigKey]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, fmt.Errorf("peft: config.json: %s is %s, not a JSON object: %w", QuantizationConfigKey, excerpt(string(raw)), ErrFormat)
	}
	q := &QuantizationConfig{QuantType: "fp4", ComputeDType: F32, QuantStorage: U8, Extra: map[string]json.RawMessage{}}
	var compute, storage string
	typed := map[string]any{
		"quant_method":              &q.QuantMethod,
		"load_in_4bit":              &q.LoadIn4bit,
		"load_in_8bit":              &q.LoadIn8bit,
		"bnb_4bit_quant_type":       &q.QuantType,
		"bnb_4bit_use_double_quant": &q.DoubleQuant,
		"bnb_4bit_compute_dtype":    &compute,
		"bnb_4bit_quant_storage":    &storage,
		"llm_int8_skip_modules":     &q.SkipModules,
	}
	nullable := map[string]bool{"bnb_4bit_compute_dtype": true, "bnb_4bit_quant_storage": true, "llm_int8_skip_modules": true}
	for k, v := range fields {
		dst, ok := typed[k]
		if !ok {
			q.Extra[k] = v
			continue
		}
		if isNull(v) {
			if nullable[k] {
				continue
			}
			return nil, fmt.Errorf("peft: config.json: %s.%s is null: %w", QuantizationConfigKey, k, ErrFormat)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return nil, fmt.Errorf("peft: config.json: %s.%s is %s: %v: %w", QuantizationConfigKey, k, excerpt(string(v)), err, ErrFormat)
		}
	}
	for _, f := range []struct {
		key, name string
		dst       *DType
	}{{"bnb_4bit_compute_dtype", compute, &q.ComputeDType}, {"bnb_4bit_quant_storage", storage, &q.QuantStorage}} {
		if f.name == "" {
			continue
		}
		d, ok := torchDTypes[f.name]
		if !ok {
			return nil, fmt.Errorf("peft: config.json: %s.%s is %s, not one of torch's dtypes float32, float16, bfloat16, float64, uint8, int8: %w",
				QuantizationConfigKey, f.key, quote(f.name), ErrFormat)
		}
		*f.dst = d
	}
	if q.QuantMethod == "" && (q.LoadIn4bit || q.LoadIn8bit) {
		q.QuantMethod = "bitsandbytes"
	}
	return q, nil
}

// Check reports whether the model's quantized weights are ones this package
// reads (see Shards.QuantizedWeight): bitsandbytes in 4 bits, nf4. Errors
// wrap ErrUnsupported, ErrFormat for a configuration that transformers
// refuses too, or lora.ErrNil for a nil QuantizationConfig.
func (q *QuantizationConfig) Check() error {
	switch {
	case q == nil:
		return fmt.Errorf("peft: Check: the QuantizationConfig is nil: %w", lora.ErrNil)
	case q.QuantMethod != "bitsandbytes":
		return fmt.Errorf("peft: %s: quant_method is %s: only bitsandbytes is supported: %w", QuantizationConfigKey, quote(q.QuantMethod), ErrUnsupported)
	case q.LoadIn4bit && q.LoadIn8bit:
		return fmt.Errorf("peft: %s: load_in_4bit and load_in_8bit are both true: %w", QuantizationConfigKey, ErrFormat)
	case q.LoadIn8bit:
		return fmt.Errorf("peft: %s: load_in_8bit is true: 8-bit (LLM.int8) weights are not supported, only 4-bit nf4: %w", QuantizationConfigKey, ErrUnsupported)
	case !q.LoadIn4bit:
		return fmt.Errorf("peft: %s: neither load_in_4bit nor load_in_8bit is true: %w", QuantizationConfigKey, ErrFormat)
	case q.QuantType != "nf4":
		return fmt.Errorf("peft: %s: bnb_4bit_quant_type is %s: only nf4 is supported: %w", QuantizationConfigKey, quote(q.QuantType), ErrUnsupported)
	}
	return nil
}

// WithoutQuantizationConfig returns config.json, whose bytes are
// configJSON, without its quantization_config: the configuration of the
// model once its weights are stored unquantized. Every other member is kept
// byte for byte, in its place, with the whitespace and commas around it; a
// config.json without quantization_config comes back unchanged. It refuses,
// with an error wrapping ErrFormat, anything but one JSON object of valid
// UTF-8.
func WithoutQuantizationConfig(configJSON []byte) ([]byte, error) {
	if !utf8.Valid(configJSON) {
		return nil, fmt.Errorf("peft: config.json is not valid UTF-8: %w", ErrFormat)
	}
	// Each member's span: from the end of what precedes it (the opening
	// brace, or the previous value) to the end of its value, so that
	// cutting a span takes its leading comma with it.
	type member struct {
		start, end int64
		drop       bool
	}
	var members []member
	dec := json.NewDecoder(bytes.NewReader(configJSON))
	tok, err := dec.Token()
	if err == nil && tok != json.Delim('{') {
		err = fmt.Errorf("not a JSON object")
	}
	for err == nil {
		m := member{start: dec.InputOffset()} // before More skips whitespace
		if !dec.More() {
			break
		}
		if tok, err = dec.Token(); err != nil {
			break
		}
		m.drop = tok == QuantizationConfigKey
		var v json.RawMessage
		if err = dec.Decode(&v); err != nil {
			break
		}
		m.end = dec.InputOffset()
		members = append(members, m)
	}
	if err == nil {
		_, err = dec.Token() // the closing brace
	}
	if err == nil {
		if _, e := dec.Token(); e == nil {
			err = fmt.Errorf("data after the object")
		} else if e != io.EOF {
			err = e
		}
	}
	if err != nil {
		return nil, fmt.Errorf("peft: config.json: %v: %w", err, ErrFormat)
	}
	// The start of a member's key: past the whitespace and comma before it.
	keyAt := func(from int64) int64 {
		for from < int64(len(configJSON)) && bytes.IndexByte([]byte(", \t\r\n"), configJSON[from]) >= 0 {
			from++
		}
		return from
	}
	out := make([]byte, 0, len(configJSON))
	at := int64(0)
	kept := 0
	for i, m := range members {
		if !m.drop {
			kept++
			continue
		}
		// A member after a kept one goes with the comma before it. One
		// before every kept member goes from its key to the next key
		// instead, so that the member after it keeps the whitespace of the
		// first.
		from, to := m.start, m.end
		if kept == 0 && i+1 < len(members) {
			from, to = keyAt(m.start), keyAt(m.end)
		}
		from = max(from, at)
		out = append(out, configJSON[at:from]...)
		at = to
	}
	if at == 0 {
		return slices.Clone(configJSON), nil
	}
	return append(out, configJSON[at:]...), nil
}
