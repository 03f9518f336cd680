package peft

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/natsort"
	"github.com/golora/lora/internal/sysmem"
)

// maxConfigSize bounds adapter_config.json, which is a few kilobytes.
const maxConfigSize = 16 << 20

// Load reads the PEFT adapter in dir: adapter_config.json and
// adapter_model.safetensors. It refuses, with an error that says why, what
// it cannot apply exactly: a peft_type other than LORA, use_dora, lora_bias
// and the other variants listed at Config.Check, LoRA on convolutions, an A
// without its B or a B without its A, shapes that disagree with each other or
// with the rank the configuration gives the module, r, lora_alpha or
// target_modules missing or null, an adapter in which target_modules
// selects no module, tensors larger than the machine's memory, and any
// safetensors file that breaks its format (see ReadSafetensors). Pairs of
// modules that the configuration does not select are not read; their
// modules are listed in Adapter.Ignored (see FromSafetensors).
func Load(dir string) (*Adapter, error) {
	data, err := readConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	path := filepath.Join(dir, WeightsFile)
	st, err := OpenSafetensors(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, e := os.Stat(filepath.Join(dir, "adapter_model.bin")); e == nil {
				return nil, fmt.Errorf("peft: %s has adapter_model.bin, a pickle, which is not read; convert it to safetensors: %w", dir, ErrUnsupported)
			}
		}
		return nil, err
	}
	defer st.Close()
	a, err := FromSafetensors(cfg, st)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return a, nil
}

// readConfig reads the adapter_config.json at path: a regular file of at
// most maxConfigSize bytes.
func readConfig(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("peft: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxConfigSize {
		return nil, fmt.Errorf("peft: %s is not a regular file of at most %d bytes: %w", path, maxConfigSize, ErrFormat)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("peft: reading %s: %w", path, err)
	}
	return data, nil
}

// FromSafetensors builds an adapter from its configuration and its weights
// file, with the checks that Load makes. The modules that the configuration
// selects (see Config.Selects) become Modules; the lora_A/lora_B pairs of
// every other module stay unread and their modules are listed in Ignored,
// as PEFT leaves them out. A file in which no module is selected is refused,
// with an error that names target_modules. Before reading a tensor it
// checks that the machine's memory can hold it.
func FromSafetensors(cfg *Config, st *Safetensors) (*Adapter, error) {
	if cfg == nil || st == nil {
		return nil, fmt.Errorf("peft: FromSafetensors: the Config or the Safetensors is nil: %w", lora.ErrNil)
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	match, err := cfg.matchers()
	if err != nil {
		return nil, err
	}
	pairs, order, fulls, err := groupTensors(st)
	if err != nil {
		return nil, err
	}
	ad := &Adapter{Config: cfg}
	var selected []*loraPair
	for _, p := range order {
		if match.selects(p.module, p.aEmb || p.bEmb) {
			selected = append(selected, p)
		} else {
			ad.Ignored = append(ad.Ignored, p.module)
		}
	}
	if len(selected) == 0 {
		if len(order) == 0 {
			return nil, fmt.Errorf("peft: the weights hold no lora_A/lora_B pair, so target_modules %s selects no module: %w", targetsNote(cfg), ErrInconsistent)
		}
		return nil, fmt.Errorf("peft: target_modules %s%s selects none of the %d modules with a lora_A/lora_B pair (%s): %w",
			targetsNote(cfg), restrictNote(cfg), len(order), namesNote(ad.Ignored, 3), ErrInconsistent)
	}
	// Check every shape before reading any data, and the memory the data
	// will take.
	var need int64
	for _, p := range selected {
		if err := checkPair(p.module, p.a, p.b, p.aEmb, p.bEmb); err != nil {
			return nil, err
		}
		need = addBytes(need, 4*p.a.Elements(), 4*p.b.Elements())
	}
	for _, f := range fulls {
		if w := strings.TrimSuffix(f.name, ".weight"); pairs[w] != nil && slices.Contains(selected, pairs[w]) {
			return nil, fmt.Errorf("peft: %s is both adapted by LoRA and saved whole: %w", quote(f.name), ErrInconsistent)
		}
		need = addBytes(need, f.info.Length)
	}
	if err := sysmem.Check("peft: reading the adapter's tensors", need); err != nil {
		return nil, fmt.Errorf("%w: %w", err, lora.ErrMemory)
	}
	for _, p := range selected {
		m, err := newModule(cfg, match, st, p.module, p.a, p.b, p.aEmb)
		if err != nil {
			return nil, err
		}
		ad.Modules = append(ad.Modules, m)
	}
	for _, f := range fulls {
		data, err := st.Bytes(f.info.Name)
		if err != nil {
			return nil, err
		}
		ad.Full = append(ad.Full, &Tensor{Name: f.name, DType: f.info.DType, Shape: f.info.Shape, Data: data})
	}
	slices.SortFunc(ad.Modules, func(x, y *Module) int { return natsort.Compare(x.Name, y.Name) })
	slices.SortFunc(ad.Full, func(x, y *Tensor) int { return natsort.Compare(x.Name, y.Name) })
	slices.SortFunc(ad.Ignored, natsort.Compare)
	return ad, nil
}

// loraPair is the lora_A and lora_B tensors of one module in a weights
// file, and whether each is an embedding's.
type loraPair struct {
	a, b   *TensorInfo
	aEmb   bool
	bEmb   bool
	module string
}

// fullTensor is a tensor of a weights file saved whole, and its name in the
// base model.
type fullTensor struct {
	name string
	info *TensorInfo
}

// groupTensors sorts the tensors of an adapter's weights file into the
// lora_A/lora_B pairs of modules, by module and in the order of their first
// tensor, and the tensors saved whole. It refuses a LoRA tensor it does not
// know, two tensors in the place of one, and a LoRA tensor that names no
// module.
func groupTensors(st *Safetensors) (pairs map[string]*loraPair, order []*loraPair, fulls []fullTensor, err error) {
	pairs = map[string]*loraPair{}
	fullNames := map[string]string{} // the name in the file of each full tensor, by its name in the model
	tensors := st.Tensors()
	for i := range tensors {
		t := &tensors[i]
		name := strings.TrimPrefix(t.Name, Prefix)
		var mod string
		var isA, emb bool
		switch {
		case strings.HasSuffix(name, suffixA):
			mod, isA = strings.TrimSuffix(name, suffixA), true
		case strings.HasSuffix(name, suffixB):
			mod = strings.TrimSuffix(name, suffixB)
		case strings.HasSuffix(name, suffixEmbA):
			mod, isA, emb = strings.TrimSuffix(name, suffixEmbA), true, true
		case strings.HasSuffix(name, suffixEmbB):
			mod, emb = strings.TrimSuffix(name, suffixEmbB), true
		default:
			if isLoRAName(name) {
				return nil, nil, nil, fmt.Errorf("peft: tensor %s is a LoRA tensor this package does not apply "+
					"(a DoRA magnitude, a bias on lora_B, an adapter name inside the key?): %w", quote(t.Name), ErrUnsupported)
			}
			if prev, dup := fullNames[name]; dup {
				return nil, nil, nil, fmt.Errorf("peft: tensors %s and %s both stand for %s: %w", quote(prev), quote(t.Name), quote(name), ErrInconsistent)
			}
			fullNames[name] = t.Name
			fulls = append(fulls, fullTensor{name, t})
			continue
		}
		if mod == "" {
			return nil, nil, nil, fmt.Errorf("peft: tensor %s names no module: %w", quote(t.Name), ErrFormat)
		}
		p := pairs[mod]
		if p == nil {
			p = &loraPair{module: mod}
			pairs[mod] = p
			order = append(order, p)
		}
		slot, slotEmb := &p.b, &p.bEmb
		if isA {
			slot, slotEmb = &p.a, &p.aEmb
		}
		if *slot != nil {
			return nil, nil, nil, fmt.Errorf("peft: tensors %s and %s are both the same LoRA tensor of module %s: %w", quote((*slot).Name), quote(t.Name), excerpt(mod), ErrInconsistent)
		}
		*slot, *slotEmb = t, emb
	}
	return pairs, order, fulls, nil
}

// addBytes returns the sum of n and more, saturating at math.MaxInt64 (and
// so counting a negative term as that much).
func addBytes(n int64, more ...int64) int64 {
	for _, m := range more {
		if m < 0 || n > math.MaxInt64-m {
			return math.MaxInt64
		}
		n += m
	}
	return n
}

// checkPair checks the tensors of a module's pair against each other.
func checkPair(name string, a, b *TensorInfo, aEmb, bEmb bool) error {
	switch {
	case a == nil:
		return fmt.Errorf("peft: module %s has lora_B (%s) but no lora_A: %w", excerpt(name), quote(b.Name), ErrInconsistent)
	case b == nil:
		return fmt.Errorf("peft: module %s has lora_A (%s) but no lora_B: %w", excerpt(name), quote(a.Name), ErrInconsistent)
	case aEmb != bEmb:
		return fmt.Errorf("peft: module %s mixes %s and %s: %w", excerpt(name), quote(a.Name), quote(b.Name), ErrInconsistent)
	}
	for _, t := range []*TensorInfo{a, b} {
		if len(t.Shape) != 2 {
			if len(t.Shape) > 2 {
				return fmt.Errorf("peft: %s has shape %v: LoRA on convolutions is not supported: %w", quote(t.Name), t.Shape, ErrUnsupported)
			}
			return fmt.Errorf("peft: %s has shape %v, want 2 dimensions: %w", quote(t.Name), t.Shape, ErrInconsistent)
		}
		if !t.DType.Float() {
			return fmt.Errorf("peft: %s is %s, want F32, F16, BF16 or F64: %w", quote(t.Name), t.DType, ErrUnsupported)
		}
	}
	if a.DType != b.DType {
		return fmt.Errorf("peft: module %s: lora_A is %s but lora_B is %s: %w", excerpt(name), a.DType, b.DType, ErrUnsupported)
	}
	r, in := a.Shape[0], a.Shape[1]
	out, rb := b.Shape[0], b.Shape[1]
	if r < 1 || in < 1 || out < 1 {
		return fmt.Errorf("peft: module %s: lora_A is %v and lora_B %v, want no empty dimension: %w", excerpt(name), a.Shape, b.Shape, ErrInconsistent)
	}
	if rb != r {
		return fmt.Errorf("peft: module %s: lora_A is %v = [r, in] but lora_B is %v, want [out, %d]: %w",
			excerpt(name), a.Shape, b.Shape, r, ErrInconsistent)
	}
	return nil
}

// newModule reads a module whose pair checkPair has accepted.
func newModule(cfg *Config, match *matchers, st *Safetensors, name string, a, b *TensorInfo, emb bool) (*Module, error) {
	r, in, out := a.Shape[0], a.Shape[1], b.Shape[0]
	wantR, alpha, scale, err := cfg.resolve(match, name)
	if err != nil {
		return nil, err
	}
	if r != wantR {
		return nil, fmt.Errorf("peft: module %s: lora_A is %v, so r = %d, but the configuration gives r = %d (r or rank_pattern): %w",
			excerpt(name), a.Shape, r, wantR, ErrInconsistent)
	}
	av, err := st.Float32s(a.Name)
	if err != nil {
		return nil, err
	}
	bv, err := st.Float32s(b.Name)
	if err != nil {
		return nil, err
	}
	return &Module{
		Name: name, In: in, Out: out, Rank: r, Alpha: alpha, Scale: scale,
		A: av, B: bv, FanInFanOut: cfg.FanInFanOut && !emb, Embedding: emb, DType: a.DType,
	}, nil
}
