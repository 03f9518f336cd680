package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// conv1DFamilies are the model_type values of the transformers architectures
// whose attention and MLP projections are transformers' Conv1D, which stores
// its weight [in, out]: GPT-2 and the models built from its blocks. For their
// Conv1D layers PEFT sets fan_in_fan_out, whatever the adapter says.
// (gpt_bigcode, despite GPT-2's module names, uses nn.Linear.)
var conv1DFamilies = []string{"gpt2", "openai-gpt", "imagegpt", "decision_transformer", "clvp"}

// conv1DNames are the names of those models' Conv1D modules: c_attn, q_attn
// (cross-attention), c_proj (in attention and MLP) and c_fc.
var conv1DNames = []string{"c_attn", "q_attn", "c_proj", "c_fc"}

// conv1DFamilyList returns conv1DFamilies for the usage: "a, b or c".
func conv1DFamilyList() string {
	f := conv1DFamilies
	return strings.Join(f[:len(f)-1], ", ") + " or " + f[len(f)-1]
}

// maxModelConfigSize bounds a model's config.json.
const maxModelConfigSize = 16 << 20

// conv1DFamily returns the model_type of the config.json in dir when it is
// one of conv1DFamilies, and "" when it is another, or when dir has no
// config.json; known says whether there is a model_type. A config.json
// that cannot be read or is not a JSON object is an error.
func conv1DFamily(dir string) (family string, known bool, err error) {
	path := filepath.Join(dir, "config.json")
	if _, err := os.Stat(path); err != nil {
		if isNotExist(err) {
			return "", false, nil
		}
		return "", false, err
	}
	data, err := readSmall(path, maxModelConfigSize)
	if err != nil {
		return "", false, err
	}
	var cfg struct {
		ModelType json.RawMessage `json:"model_type"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", false, fmt.Errorf("%s: %v", path, err)
	}
	var mt string
	if json.Unmarshal(cfg.ModelType, &mt) != nil || mt == "" {
		return "", false, nil // missing or not a string: no family known
	}
	for _, f := range conv1DFamilies {
		if mt == f {
			return f, true, nil
		}
	}
	return "", true, nil
}

// squareNote says why a square module's layout is not checked: inspect
// says it of every square module, merge of those that a model of unknown
// type may hold as Conv1D layers.
const squareNote = "the shapes cannot tell whether the base weight is stored out×in or in×out,\n" +
	"and a wrong fan_in_fan_out (true for GPT-2's Conv1D layers) would go unnoticed"

// isConv1DModule reports whether the module called name (its last
// component) is a Conv1D layer in a model of conv1DFamilies.
func isConv1DModule(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	for _, n := range conv1DNames {
		if last == n {
			return true
		}
	}
	return false
}
