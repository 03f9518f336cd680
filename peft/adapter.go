package peft

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/tmpfile"
)

// The files of a PEFT adapter directory.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// Prefix is what PEFT puts before a module's name in an adapter file: the
// PeftModel's base_model (the LoraModel) and its model (the base model).
const Prefix = "base_model.model."

// maxConfigSize bounds adapter_config.json, which is a few kilobytes.
const maxConfigSize = 16 << 20

// Adapter is a PEFT LoRA adapter.
type Adapter struct {
	Config  *Config
	Modules []*Module // sorted by name, numbers by value: h.2 before h.10
	// Full holds the tensors saved whole beside the LoRA pairs, named as in
	// the base model ("score.weight"): the modules of modules_to_save, biases
	// trained with bias "all" or "lora_only", resized embeddings. Each replaces
	// the base tensor of the same name, as PEFT's loader does.
	Full []*Tensor
	// Ignored names the modules whose lora_A/lora_B pairs are in the file but
	// which the configuration does not select (target_modules,
	// exclude_modules, layers_to_transform): PEFT does not make them LoRA
	// layers, so they are not in Modules and nothing applies them.
	Ignored []string
}

// Module is one adapted module of the base model: ΔW = s·B·A.
type Module struct {
	Name  string  // the module's name in the base model, "transformer.h.0.attn.c_attn"
	In    int     // input features (columns of A)
	Out   int     // output features (rows of B)
	Rank  int     // r: rows of A, columns of B
	Alpha float64 // alpha, from lora_alpha or alpha_pattern
	Scale float32 // s = Alpha/Rank, or Alpha/√Rank with use_rslora
	A     []float32
	B     []float32 // A is Rank×In and B is Out×Rank, row-major

	// FanInFanOut says the base weight is stored [in, out] (Conv1D), from
	// the configuration's fan_in_fan_out.
	FanInFanOut bool
	// Embedding says the module is an nn.Embedding, whose tensors PEFT names
	// lora_embedding_A and lora_embedding_B and whose weight is stored
	// [num_embeddings, dim] = [In, Out].
	Embedding bool
	// DType is how Save stores A and B: F32 (the default when empty), F16,
	// BF16 or F64. Load sets it to the dtype of the file.
	DType DType
}

// Weight returns the name of the base weight the module adapts:
// Name + ".weight".
func (m *Module) Weight() string { return m.Name + ".weight" }

// Transposed reports whether the base weight is stored [in, out], so that
// ΔW is added transposed: with fan_in_fan_out, and for embeddings.
func (m *Module) Transposed() bool { return m.FanInFanOut || m.Embedding }

// WeightShape returns the shape of the base weight as stored: Out×In, or
// In×Out when Transposed.
func (m *Module) WeightShape() (rows, cols int) {
	if m.Transposed() {
		return m.In, m.Out
	}
	return m.Out, m.In
}

// Params returns the number of adapter parameters, Rank·(In + Out).
func (m *Module) Params() int { return m.Rank * (m.In + m.Out) }

// NewLayer returns a lora.Layer with this module's adapter on the base
// weight w, given as stored in the base model (see WeightShape): its Merge
// adds s·B·A to an Out×In weight, and s·(B·A)ᵀ to a transposed one, exactly
// as PEFT merges, with s the module's Scale.
//
// For a transposed module the layer holds A' = Bᵀ (Rank×Out) and B' = Aᵀ
// (In×Rank), so that B'·A' = (B·A)ᵀ. Merge and Unmerge are then exact on
// the stored weight, but Forward computes x·Wᵀ with W as stored, which is
// not Conv1D's x·W: to run a Conv1D layer unmerged, transpose W to Out×In
// and use lora.NewLayerFrom with A and B as they are.
//
// The layer owns copies of A and B; w stays the caller's.
func (m *Module) NewLayer(w *lora.Matrix) (*lora.Layer, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, fmt.Errorf("peft: module %s: NewLayer: w is nil: %w", m.Name, lora.ErrNil)
	}
	rows, cols := w.Dims()
	wr, wc := m.WeightShape()
	if rows != wr || cols != wc {
		return nil, fmt.Errorf("peft: module %s: w is %d×%d, want %d×%d%s: %w",
			m.Name, rows, cols, wr, wc, m.layoutNote(), lora.ErrShape)
	}
	ar, ac, ad := m.Rank, m.In, m.A
	br, bc, bd := m.Out, m.Rank, m.B
	if m.Transposed() {
		ar, ac, ad = m.Rank, m.Out, transpose(m.B, m.Out, m.Rank)
		br, bc, bd = m.In, m.Rank, transpose(m.A, m.Rank, m.In)
	}
	a, err := lora.NewMatrixFrom(ar, ac, ad)
	if err != nil {
		return nil, fmt.Errorf("peft: module %s: %w", m.Name, err)
	}
	b, err := lora.NewMatrixFrom(br, bc, bd)
	if err != nil {
		a.Free()
		return nil, fmt.Errorf("peft: module %s: %w", m.Name, err)
	}
	l, err := lora.NewLayerFrom(w, a, b, m.Scale)
	if err != nil {
		a.Free()
		b.Free()
		return nil, fmt.Errorf("peft: module %s: %w", m.Name, err)
	}
	return l, nil
}

func (m *Module) layoutNote() string {
	switch {
	case m.Embedding:
		return " (num_embeddings×dim, an embedding)"
	case m.FanInFanOut:
		return " (in×out, fan_in_fan_out)"
	}
	return " (out×in)"
}

// transpose returns the cols×rows transpose of the rows×cols matrix x.
func transpose(x []float32, rows, cols int) []float32 {
	t := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j, v := range x[i*cols : (i+1)*cols] {
			t[j*rows+i] = v
		}
	}
	return t
}

// check reports whether the module's fields agree with each other.
func (m *Module) check() error {
	if m == nil {
		return fmt.Errorf("peft: module is nil: %w", lora.ErrNil)
	}
	if m.Name == "" {
		return fmt.Errorf("peft: module has no name: %w", ErrInconsistent)
	}
	if m.Rank < 1 || m.In < 1 || m.Out < 1 {
		return fmt.Errorf("peft: module %s: rank %d, in %d, out %d, want all ≥ 1: %w", m.Name, m.Rank, m.In, m.Out, ErrInconsistent)
	}
	if len(m.A) != m.Rank*m.In || len(m.B) != m.Out*m.Rank {
		return fmt.Errorf("peft: module %s: A has %d elements and B %d, want %d×%d and %d×%d: %w",
			m.Name, len(m.A), len(m.B), m.Rank, m.In, m.Out, m.Rank, ErrInconsistent)
	}
	return nil
}

// Module returns the module called name, or nil.
func (a *Adapter) Module(name string) *Module {
	for _, m := range a.Modules {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Params returns the number of parameters of the adapter: those of the
// LoRA pairs and those of the full tensors.
func (a *Adapter) Params() (lora, full int64) {
	for _, m := range a.Modules {
		lora += int64(m.Params())
	}
	for _, t := range a.Full {
		full += int64(t.Elements())
	}
	return lora, full
}

// Load reads the PEFT adapter in dir: adapter_config.json and
// adapter_model.safetensors. It refuses, with an error that says why, what
// it cannot apply exactly: a peft_type other than LORA, use_dora, lora_bias
// and the other variants listed at Config.Check, LoRA on convolutions, an A
// without its B or a B without its A, shapes that disagree with each other or
// with the rank the configuration gives the module, and any safetensors file
// that breaks its format (see ReadSafetensors).
func Load(dir string) (*Adapter, error) {
	data, err := readConfig(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	if err := cfg.Check(); err != nil {
		return nil, err
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

// The suffixes of LoRA tensor names, after the module name.
const (
	suffixA    = ".lora_A.weight"
	suffixB    = ".lora_B.weight"
	suffixEmbA = ".lora_embedding_A"
	suffixEmbB = ".lora_embedding_B"
)

// FromSafetensors builds an adapter from its configuration and its weights
// file, with the checks that Load makes.
func FromSafetensors(cfg *Config, st *Safetensors) (*Adapter, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	type pair struct {
		a, b   *TensorInfo
		aEmb   bool
		bEmb   bool
		module string
	}
	pairs := map[string]*pair{}
	var order []*pair
	ad := &Adapter{Config: cfg}
	fullNames := map[string]string{}
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
				return nil, fmt.Errorf("peft: tensor %q is a LoRA tensor this package does not apply "+
					"(a DoRA magnitude, a bias on lora_B, an adapter name inside the key?): %w", t.Name, ErrUnsupported)
			}
			if prev, dup := fullNames[name]; dup {
				return nil, fmt.Errorf("peft: tensors %q and %q both stand for %q: %w", prev, t.Name, name, ErrInconsistent)
			}
			fullNames[name] = t.Name
			data, err := st.Bytes(t.Name)
			if err != nil {
				return nil, err
			}
			ad.Full = append(ad.Full, &Tensor{Name: name, DType: t.DType, Shape: t.Shape, Data: data})
			continue
		}
		if mod == "" {
			return nil, fmt.Errorf("peft: tensor %q names no module: %w", t.Name, ErrFormat)
		}
		p := pairs[mod]
		if p == nil {
			p = &pair{module: mod}
			pairs[mod] = p
			order = append(order, p)
		}
		slot, slotEmb := &p.b, &p.bEmb
		if isA {
			slot, slotEmb = &p.a, &p.aEmb
		}
		if *slot != nil {
			return nil, fmt.Errorf("peft: tensors %q and %q are both the same LoRA tensor of module %s: %w", (*slot).Name, t.Name, mod, ErrInconsistent)
		}
		*slot, *slotEmb = t, emb
	}
	for _, p := range order {
		m, err := newModule(cfg, st, p.module, p.a, p.b, p.aEmb, p.bEmb)
		if err != nil {
			return nil, err
		}
		ad.Modules = append(ad.Modules, m)
	}
	slices.SortFunc(ad.Modules, func(x, y *Module) int { return naturalCompare(x.Name, y.Name) })
	slices.SortFunc(ad.Full, func(x, y *Tensor) int { return naturalCompare(x.Name, y.Name) })
	for _, t := range ad.Full {
		if w := strings.TrimSuffix(t.Name, ".weight"); pairs[w] != nil {
			return nil, fmt.Errorf("peft: %q is both adapted by LoRA and saved whole: %w", t.Name, ErrInconsistent)
		}
	}
	return ad, nil
}

// naturalCompare orders names as strings, but runs of digits by their
// value, so that "h.2.mlp" comes before "h.10.mlp".
func naturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			x, y := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if c := cmp.Or(cmp.Compare(len(x), len(y)), strings.Compare(x, y)); c != 0 {
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digits(s string) int {
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// isLoRAName reports whether a component of the dotted name starts with
// "lora_", as every LoRA parameter of PEFT does.
func isLoRAName(name string) bool {
	for c := range strings.SplitSeq(name, ".") {
		if strings.HasPrefix(c, "lora_") {
			return true
		}
	}
	return false
}

func newModule(cfg *Config, st *Safetensors, name string, a, b *TensorInfo, aEmb, bEmb bool) (*Module, error) {
	switch {
	case a == nil:
		return nil, fmt.Errorf("peft: module %s has lora_B (%q) but no lora_A: %w", name, b.Name, ErrInconsistent)
	case b == nil:
		return nil, fmt.Errorf("peft: module %s has lora_A (%q) but no lora_B: %w", name, a.Name, ErrInconsistent)
	case aEmb != bEmb:
		return nil, fmt.Errorf("peft: module %s mixes %q and %q: %w", name, a.Name, b.Name, ErrInconsistent)
	}
	for _, t := range []*TensorInfo{a, b} {
		if len(t.Shape) != 2 {
			if len(t.Shape) > 2 {
				return nil, fmt.Errorf("peft: %q has shape %v: LoRA on convolutions is not supported: %w", t.Name, t.Shape, ErrUnsupported)
			}
			return nil, fmt.Errorf("peft: %q has shape %v, want 2 dimensions: %w", t.Name, t.Shape, ErrInconsistent)
		}
		if !t.DType.Float() {
			return nil, fmt.Errorf("peft: %q is %s, want F32, F16, BF16 or F64: %w", t.Name, t.DType, ErrUnsupported)
		}
	}
	if a.DType != b.DType {
		return nil, fmt.Errorf("peft: module %s: lora_A is %s but lora_B is %s: %w", name, a.DType, b.DType, ErrUnsupported)
	}
	r, in := a.Shape[0], a.Shape[1]
	out, rb := b.Shape[0], b.Shape[1]
	if r < 1 || in < 1 || out < 1 {
		return nil, fmt.Errorf("peft: module %s: lora_A is %v and lora_B %v, want no empty dimension: %w", name, a.Shape, b.Shape, ErrInconsistent)
	}
	if rb != r {
		return nil, fmt.Errorf("peft: module %s: lora_A is %v = [r, in] but lora_B is %v, want [out, %d]: %w",
			name, a.Shape, b.Shape, r, ErrInconsistent)
	}
	wantR, alpha, scale, err := cfg.Resolve(name)
	if err != nil {
		return nil, err
	}
	if r != wantR {
		return nil, fmt.Errorf("peft: module %s: lora_A is %v, so r = %d, but the configuration gives r = %d (r or rank_pattern): %w",
			name, a.Shape, r, wantR, ErrInconsistent)
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
		A: av, B: bv, FanInFanOut: cfg.FanInFanOut && !aEmb, Embedding: aEmb, DType: a.DType,
	}, nil
}

// Save writes the adapter into dir, creating dir if needed, as
// adapter_config.json and adapter_model.safetensors in the form PEFT writes
// and loads: tensors named base_model.model.<module>.lora_A.weight [r, in]
// and .lora_B.weight [out, r] (lora_embedding_A and lora_embedding_B for
// embeddings), full tensors as base_model.model.<name>, the metadata
// {"format": "pt"}, and the configuration with its keys sorted.
//
// Save checks the adapter first and writes nothing if it is inconsistent: a
// configuration that Load would refuse, a module whose A or B does not have
// its shape, whose Rank differs from the r the configuration gives it, or
// whose FanInFanOut differs from the configuration's, a dtype that is not
// F32, F16, BF16 or F64, a name used twice. Each file is written to a
// temporary file in dir and renamed into place.
func Save(dir string, a *Adapter) error {
	if a == nil || a.Config == nil {
		return fmt.Errorf("peft: Save: adapter or its Config is nil: %w", lora.ErrNil)
	}
	if err := a.Config.Check(); err != nil {
		return err
	}
	var tensors []Tensor
	for _, m := range a.Modules {
		if err := m.check(); err != nil {
			return err
		}
		r, _, _, err := a.Config.Resolve(m.Name)
		if err != nil {
			return err
		}
		if r != m.Rank {
			return fmt.Errorf("peft: module %s has rank %d, but the configuration gives it r = %d: set R or RankPattern: %w",
				m.Name, m.Rank, r, ErrInconsistent)
		}
		if !m.Embedding && m.FanInFanOut != a.Config.FanInFanOut {
			return fmt.Errorf("peft: module %s has FanInFanOut %v, but the configuration's fan_in_fan_out is %v: %w",
				m.Name, m.FanInFanOut, a.Config.FanInFanOut, ErrInconsistent)
		}
		dt := m.DType
		if dt == "" {
			dt = F32
		}
		if !dt.Float() {
			return fmt.Errorf("peft: module %s: dtype %q, want F32, F16, BF16 or F64: %w", m.Name, dt, ErrUnsupported)
		}
		sa, sb := suffixA, suffixB
		if m.Embedding {
			sa, sb = suffixEmbA, suffixEmbB
		}
		ta := Tensor{Name: Prefix + m.Name + sa, DType: dt, Shape: []int{m.Rank, m.In}, Data: make([]byte, len(m.A)*dt.Size())}
		tb := Tensor{Name: Prefix + m.Name + sb, DType: dt, Shape: []int{m.Out, m.Rank}, Data: make([]byte, len(m.B)*dt.Size())}
		EncodeFloats(ta.Data, m.A, dt) // lengths set above
		EncodeFloats(tb.Data, m.B, dt)
		tensors = append(tensors, ta, tb)
	}
	for _, t := range a.Full {
		if t == nil {
			return fmt.Errorf("peft: Save: a nil full tensor: %w", lora.ErrNil)
		}
		if err := t.check(); err != nil {
			return err
		}
		if isLoRAName(t.Name) || t.Name == "" {
			return fmt.Errorf("peft: full tensor %q has the name of a LoRA tensor or none: %w", t.Name, ErrInconsistent)
		}
		tensors = append(tensors, Tensor{Name: Prefix + t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data})
	}
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("peft: tensor %q would be written twice: %w", t.Name, ErrInconsistent)
		}
		seen[t.Name] = true
	}
	cfg, err := a.Config.MarshalJSON()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	wt, err := writeTemp(dir, WeightsFile, func(f *os.File) error {
		return WriteSafetensors(f, tensors, map[string]string{"format": "pt"})
	})
	if err != nil {
		return err
	}
	ct, err := writeTemp(dir, ConfigFile, func(f *os.File) error {
		_, err := f.Write(cfg)
		return err
	})
	if err != nil {
		os.Remove(wt)
		return err
	}
	if err := os.Rename(wt, filepath.Join(dir, WeightsFile)); err != nil {
		os.Remove(wt)
		os.Remove(ct)
		return fmt.Errorf("peft: %w", err)
	}
	if err := os.Rename(ct, filepath.Join(dir, ConfigFile)); err != nil {
		os.Remove(ct)
		return fmt.Errorf("peft: %w", err)
	}
	return nil
}

// writeTemp writes a temporary file beside dir/name with write and returns
// its path; on error it removes it.
func writeTemp(dir, name string, write func(*os.File) error) (string, error) {
	p, err := tmpfile.Write(dir, name, write)
	if err != nil {
		return "", fmt.Errorf("peft: %w", err)
	}
	return p, nil
}
