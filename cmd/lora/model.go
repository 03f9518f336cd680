package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/golora/lora/peft"
)

// The file names of a Hugging Face safetensors model.
const (
	singleName = "model.safetensors"
	indexName  = "model.safetensors.index.json"
)

// maxIndexSize bounds an index file, which lists one line per tensor.
const maxIndexSize = 256 << 20

// model is a safetensors model on disk: one file, or shards with an index.
type model struct {
	dir       string
	shards    []*shard
	indexFile string // the index's file name, "" for a single file
	index     *index
	where     map[string]tensorRef // every tensor, by name
}

type shard struct {
	name string // file name inside dir
	st   *peft.Safetensors
}

type tensorRef struct {
	shard int
	info  peft.TensorInfo
}

// index is a model.safetensors.index.json: weight_map says which shard holds
// each tensor; the other fields are kept as they are, but for
// metadata.total_size, which is rewritten.
type index struct {
	top       map[string]json.RawMessage
	metadata  map[string]json.RawMessage
	weightMap map[string]string
	unlisted  []string // tensors of the shards that weight_map leaves out, sorted
}

// openModel opens the model at path: a .safetensors file, an index file, or
// a directory holding model.safetensors or model.safetensors.index.json.
func openModel(path string) (*model, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	dir, file := path, ""
	if fi.IsDir() {
		for _, name := range []string{singleName, indexName} {
			ok, err := present(filepath.Join(path, name))
			if err != nil {
				return nil, err
			}
			if ok {
				file = name
				break
			}
		}
		if file == "" {
			return nil, fmt.Errorf("%s holds neither %s nor %s", path, singleName, indexName)
		}
	} else {
		dir, file = filepath.Split(path)
		if dir == "" {
			dir = "."
		}
	}
	m := &model{dir: filepath.Clean(dir), where: map[string]tensorRef{}}
	if strings.HasSuffix(file, ".json") {
		err = m.readIndex(file)
	} else {
		err = m.addShard(file)
	}
	if err != nil {
		m.close()
		return nil, err
	}
	return m, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// present reports whether path exists, following symbolic links: false
// when it does not, and an error when it cannot tell, as for a link in a
// loop (ELOOP) or a directory it may not search.
func present(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case isNotExist(err):
		return false, nil
	}
	return false, err
}

func (m *model) addShard(name string) error {
	st, err := peft.OpenSafetensors(filepath.Join(m.dir, name))
	if err != nil {
		return err
	}
	m.shards = append(m.shards, &shard{name: name, st: st})
	for _, t := range st.Tensors() {
		if prev, dup := m.where[t.Name]; dup {
			return fmt.Errorf("tensor %q is in both %s and %s", t.Name, quoteName(m.shards[prev.shard].name), quoteName(name))
		}
		m.where[t.Name] = tensorRef{len(m.shards) - 1, t}
	}
	return nil
}

func (m *model) readIndex(name string) error {
	path := filepath.Join(m.dir, name)
	data, err := readSmall(path, maxIndexSize)
	if err != nil {
		return err
	}
	ix := &index{}
	if err := json.Unmarshal(data, &ix.top); err != nil || ix.top == nil {
		return fmt.Errorf("%s: not a JSON object: %v", path, err)
	}
	raw, ok := ix.top["weight_map"]
	if !ok || string(raw) == "null" {
		return fmt.Errorf("%s: weight_map is missing", path)
	}
	if err := json.Unmarshal(raw, &ix.weightMap); err != nil {
		return fmt.Errorf("%s: weight_map is not an object of tensor names to file names: %v", path, err)
	}
	if len(ix.weightMap) == 0 {
		return fmt.Errorf("%s: weight_map is empty: it names no tensor", path)
	}
	if raw, ok := ix.top["metadata"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &ix.metadata); err != nil {
			return fmt.Errorf("%s: metadata: %v", path, err)
		}
	}
	m.indexFile, m.index = name, ix
	seen := make(map[string]bool)
	var files []string
	for _, f := range ix.weightMap {
		if !seen[f] {
			seen[f] = true
			files = append(files, f)
		}
	}
	slices.Sort(files)
	for _, f := range files {
		if f == "" || f == "." || f == ".." || strings.ContainsAny(f, `/\`) || f == name {
			return fmt.Errorf("%s: weight_map names %q, which is not a shard file name", path, f)
		}
		if err := m.addShard(f); err != nil {
			return err
		}
	}
	for t, f := range ix.weightMap {
		ref, ok := m.where[t]
		if !ok || m.shards[ref.shard].name != f {
			return fmt.Errorf("%s: weight_map puts %q in %s, which does not hold it", path, t, quoteName(f))
		}
	}
	for t := range m.where {
		if _, ok := ix.weightMap[t]; !ok {
			ix.unlisted = append(ix.unlisted, t)
		}
	}
	slices.Sort(ix.unlisted)
	return nil
}

// readSmall reads a file of at most limit bytes.
func readSmall(path string, limit int64) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > limit {
		return nil, fmt.Errorf("%s is not a regular file of at most %d bytes", path, limit)
	}
	return os.ReadFile(path)
}

func (m *model) close() {
	for _, s := range m.shards {
		s.st.Close()
	}
}

// find returns the tensor called name. A name the model lacks is also looked
// up without its first component, as transformers does with a model's
// base_model_prefix: GPT-2's own checkpoint names "h.0.attn.c_attn.weight"
// what a GPT2LMHeadModel, and so its adapters, call
// "transformer.h.0.attn.c_attn.weight".
func (m *model) find(name string) (tensorRef, string, bool) {
	if r, ok := m.where[name]; ok {
		return r, name, true
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		if r, ok := m.where[name[i+1:]]; ok {
			return r, name[i+1:], true
		}
	}
	return tensorRef{}, "", false
}

// inputFiles returns the paths of every file the model is read from.
func (m *model) inputFiles() []string {
	var p []string
	for _, s := range m.shards {
		p = append(p, filepath.Join(m.dir, s.name))
	}
	if m.indexFile != "" {
		p = append(p, filepath.Join(m.dir, m.indexFile))
	}
	return p
}

// sameFile reports whether a and b are the same existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	if err != nil {
		return false
	}
	return os.SameFile(fa, fb)
}

// isNotExist reports whether err says a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// sideFiles lists the small files beside a base model directory that make it
// loadable (config.json, generation_config.json, the tokenizer), to be copied
// with the weights: *.json but the index, *.txt, *.model, *.jinja and
// *.tiktoken, not hidden, regular files or symbolic links to them. A base
// given as a file has none.
func sideFiles(m *model, base string, stderr io.Writer) ([]string, error) {
	fi, err := os.Stat(base)
	if err != nil || !fi.IsDir() {
		return nil, err
	}
	entries, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if name == m.indexFile || strings.HasPrefix(name, ".") {
			continue
		}
		switch filepath.Ext(name) {
		case ".json", ".txt", ".model", ".jinja", ".tiktoken":
		default:
			continue
		}
		path := filepath.Join(m.dir, name)
		fi, err := os.Stat(path) // follows symbolic links
		if err != nil {
			fmt.Fprintf(stderr, "lora merge: warning: not copying %s: %v\n", path, err)
			continue
		}
		if fi.Mode().IsRegular() {
			out = append(out, path)
		}
	}
	return out, nil
}
