package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/golora/lora"
)

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
// a key selected it. It compiles the keys on every call: Config.Resolve,
// which compiles them once, is the way to look up many names.
func (p Pattern) Lookup(name string) (float64, bool, error) {
	m, err := compilePattern(p)
	if err != nil {
		return 0, false, err
	}
	if i := m.lookup(name); i >= 0 {
		return p[i].Value, true, nil
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
			return nil, fmt.Errorf("pattern key %s: %w", quote(e.Key), err)
		}
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// UnmarshalJSON reads a JSON object of numbers, keeping the order of its
// keys; null is an empty pattern.
func (p *Pattern) UnmarshalJSON(data []byte) error {
	if p == nil {
		return fmt.Errorf("peft: UnmarshalJSON into a nil *Pattern: %w", lora.ErrNil)
	}
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
		return fmt.Errorf("want an object of numbers, found %s", excerpt(fmt.Sprint(t)))
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
			return fmt.Errorf("duplicate key %s", quote(k))
		}
		seen[k] = true
		t, err = dec.Token()
		if err != nil {
			return err
		}
		n, ok := t.(json.Number)
		if !ok {
			return fmt.Errorf("key %s: want a number, found %s", quote(k), excerpt(fmt.Sprint(t)))
		}
		v, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return fmt.Errorf("key %s: %v", quote(k), err)
		}
		out = append(out, PatternEntry{k, v})
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	*p = out
	return nil
}
