package peft

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/natsort"
	"github.com/golora/lora/internal/sysmem"
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
// Name + ".weight" ("" for a nil Module).
func (m *Module) Weight() string {
	if m == nil {
		return ""
	}
	return m.Name + ".weight"
}

// Transposed reports whether the base weight is stored [in, out], so that
// ΔW is added transposed: with fan_in_fan_out, and for embeddings (false
// for a nil Module).
func (m *Module) Transposed() bool { return m != nil && (m.FanInFanOut || m.Embedding) }

// WeightShape returns the shape of the base weight as stored: Out×In, or
// In×Out when Transposed (0×0 for a nil Module).
func (m *Module) WeightShape() (rows, cols int) {
	switch {
	case m == nil:
		return 0, 0
	case m.Transposed():
		return m.In, m.Out
	}
	return m.Out, m.In
}

// Params returns the number of adapter parameters, Rank·(In + Out) (0 for
// a nil Module).
func (m *Module) Params() int {
	if m == nil {
		return 0
	}
	return m.Rank * (m.In + m.Out)
}

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
// w may be F32, F16 or BF16, as the base model stores it (A and B are
// float32, as PEFT keeps them): Merge on a half-precision w forms each
// element in float32 and rounds it once to w's dtype, as PEFT's merge into
// a bf16 or fp16 model does, with no float32 copy of w.
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
	a, b, err := m.storedAB()
	if err != nil {
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

// storedAB returns the module's adapter as matrices for its base weight as
// stored (see WeightShape): A (Rank×In) and B (Out×Rank), or A' = Bᵀ
// (Rank×Out) and B' = Aᵀ (In×Rank) when Transposed, so that B'·A' = (B·A)ᵀ.
// The caller owns both.
func (m *Module) storedAB() (a, b *lora.Matrix, err error) {
	ar, ac, ad := m.Rank, m.In, m.A
	br, bc, bd := m.Out, m.Rank, m.B
	if m.Transposed() {
		ar, ac, ad = m.Rank, m.Out, transpose(m.B, m.Out, m.Rank)
		br, bc, bd = m.In, m.Rank, transpose(m.A, m.Rank, m.In)
	}
	if a, err = lora.NewMatrixFrom(ar, ac, ad); err != nil {
		return nil, nil, err
	}
	if b, err = lora.NewMatrixFrom(br, bc, bd); err != nil {
		a.Free()
		return nil, nil, err
	}
	return a, b, nil
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

// Module returns the module called name. An unknown name is an error
// wrapping ErrNotFound that names it and up to three of the adapter's
// modules closest to it (by edit distance, then by the length of the suffix
// they share), and says when the configuration left a module of that name
// out (Ignored).
func (a *Adapter) Module(name string) (*Module, error) {
	if a == nil {
		return nil, fmt.Errorf("peft: Module(%s): the Adapter is nil: %w", quote(name), lora.ErrNil)
	}
	for _, m := range a.Modules {
		if m != nil && m.Name == name {
			return m, nil
		}
	}
	if slices.Contains(a.Ignored, name) {
		return nil, fmt.Errorf("peft: module %s has a lora_A/lora_B pair, but target_modules does not select it (Ignored): %w", quote(name), ErrNotFound)
	}
	if len(a.Modules) == 0 {
		return nil, fmt.Errorf("peft: no module %s: the adapter has no modules: %w", quote(name), ErrNotFound)
	}
	return nil, fmt.Errorf("peft: no module %s; the closest are %s: %w", quote(name), namesNote(closest(a.Modules, name, 3), 3), ErrNotFound)
}

// closest returns the names of up to n modules closest to name.
func closest(mods []*Module, name string, n int) []string {
	type cand struct {
		name         string
		dist, suffix int
	}
	var cs []cand
	for _, m := range mods {
		if m == nil {
			continue
		}
		cs = append(cs, cand{m.Name, editDistance(tail(m.Name), tail(name)), sharedSuffix(m.Name, name)})
	}
	slices.SortFunc(cs, func(x, y cand) int {
		return cmp.Or(cmp.Compare(x.dist, y.dist), cmp.Compare(y.suffix, x.suffix), natsort.Compare(x.name, y.name))
	})
	var out []string
	for i := 0; i < len(cs) && i < n; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// tail returns the last 128 bytes of s, which bound the cost of
// editDistance on hostile names.
func tail(s string) string { return s[max(0, len(s)-128):] }

// editDistance returns the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c = 1 + min(c, prev[j], cur[j-1])
			}
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func sharedSuffix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

// Params returns the number of parameters of the adapter: those of the
// LoRA pairs and those of the full tensors (0, 0 for a nil Adapter).
func (a *Adapter) Params() (lora, full int64) {
	if a == nil {
		return 0, 0
	}
	for _, m := range a.Modules {
		if m != nil {
			lora += int64(m.Params())
		}
	}
	for _, t := range a.Full {
		if t != nil {
			full += int64(t.Elements())
		}
	}
	return lora, full
}

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
	type full struct {
		name string
		info *TensorInfo
	}
	var fulls []full
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
				return nil, fmt.Errorf("peft: tensor %s is a LoRA tensor this package does not apply "+
					"(a DoRA magnitude, a bias on lora_B, an adapter name inside the key?): %w", quote(t.Name), ErrUnsupported)
			}
			if prev, dup := fullNames[name]; dup {
				return nil, fmt.Errorf("peft: tensors %s and %s both stand for %s: %w", quote(prev), quote(t.Name), quote(name), ErrInconsistent)
			}
			fullNames[name] = t.Name
			fulls = append(fulls, full{name, t})
			continue
		}
		if mod == "" {
			return nil, fmt.Errorf("peft: tensor %s names no module: %w", quote(t.Name), ErrFormat)
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
			return nil, fmt.Errorf("peft: tensors %s and %s are both the same LoRA tensor of module %s: %w", quote((*slot).Name), quote(t.Name), excerpt(mod), ErrInconsistent)
		}
		*slot, *slotEmb = t, emb
	}
	var selected []*pair
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

// targetsNote formats target_modules for an error message.
func targetsNote(c *Config) string {
	if c.TargetModulesRegex != "" {
		return quote(c.TargetModulesRegex)
	}
	return "[" + namesNote(c.TargetModules, 8) + "]"
}

// restrictNote names the fields that narrow target_modules, when set.
func restrictNote(c *Config) string {
	var parts []string
	if c.ExcludeModulesRegex != "" || len(c.ExcludeModules) > 0 {
		parts = append(parts, "exclude_modules")
	}
	if len(c.LayersToTransform) > 0 {
		parts = append(parts, "layers_to_transform")
	}
	if len(parts) == 0 {
		return ""
	}
	return " (with " + strings.Join(parts, " and ") + ")"
}

// namesNote quotes up to max names, and says how many more there are.
func namesNote(names []string, max int) string {
	var b strings.Builder
	for i, n := range names {
		if i == max {
			fmt.Fprintf(&b, ", and %d more", len(names)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quote(n))
	}
	return b.String()
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

// Save writes the adapter into dir, creating dir if needed, as
// adapter_config.json and adapter_model.safetensors in the form PEFT writes
// and loads: tensors named base_model.model.<module>.lora_A.weight [r, in]
// and .lora_B.weight [out, r] (lora_embedding_A and lora_embedding_B for
// embeddings), full tensors as base_model.model.<name>, the metadata
// {"format": "pt"}, and the configuration with its keys sorted. A module's
// rank, alpha and scale are stored through the configuration (r,
// lora_alpha, rank_pattern, alpha_pattern), from which Load computes them;
// the modules in Ignored are not written, since the adapter does not hold
// their weights.
//
// Save writes only what Load reads back as it is, and checks the adapter
// first, writing nothing if it is inconsistent: a configuration that Load
// would refuse or that does not survive its JSON unchanged, no module, a
// module that target_modules does not select (Load would leave it out),
// whose A or B does not have its shape, whose Rank differs from the r the
// configuration gives it, whose Alpha or Scale, when set, differ from the
// configuration's, or whose FanInFanOut differs from the configuration's, a
// dtype that is not F32, F16, BF16 or F64, a name that is not valid UTF-8
// or used twice, a full tensor that is also a module's weight, a header
// that the reader would refuse.
//
// Both files are written to temporary files in dir first, then renamed
// into place, weights first; if the configuration cannot be put in place,
// the previous weights file is put back, so that an error leaves the old
// adapter as it was.
func Save(dir string, a *Adapter) error {
	if a == nil || a.Config == nil {
		return fmt.Errorf("peft: Save: adapter or its Config is nil: %w", lora.ErrNil)
	}
	if err := a.Config.Check(); err != nil {
		return err
	}
	match, err := a.Config.matchers()
	if err != nil {
		return err
	}
	if len(a.Modules) == 0 {
		return fmt.Errorf("peft: Save: the adapter has no modules, and Load refuses an adapter in which target_modules selects none: %w", ErrInconsistent)
	}
	var tensors []Tensor
	modules := make(map[string]bool, len(a.Modules))
	for _, m := range a.Modules {
		if err := m.check(); err != nil {
			return err
		}
		if !utf8.ValidString(m.Name) {
			return fmt.Errorf("peft: module name %s is not valid UTF-8: %w", quote(m.Name), ErrInconsistent)
		}
		if !match.selects(m.Name, m.Embedding) {
			return fmt.Errorf("peft: module %s is not selected by target_modules %s%s, so Load would leave it out: %w",
				excerpt(m.Name), targetsNote(a.Config), restrictNote(a.Config), ErrInconsistent)
		}
		modules[m.Name] = true
		r, alpha, scale, err := a.Config.resolve(match, m.Name)
		if err != nil {
			return err
		}
		if r != m.Rank {
			return fmt.Errorf("peft: module %s has rank %d, but the configuration gives it r = %d: set R or RankPattern: %w",
				excerpt(m.Name), m.Rank, r, ErrInconsistent)
		}
		if (m.Alpha != 0 && m.Alpha != alpha) || (m.Scale != 0 && m.Scale != scale) {
			return fmt.Errorf("peft: module %s has alpha %v and scale %v, but the configuration gives it alpha %v and scale %v: set LoraAlpha or AlphaPattern: %w",
				excerpt(m.Name), m.Alpha, m.Scale, alpha, scale, ErrInconsistent)
		}
		if !m.Embedding && m.FanInFanOut != a.Config.FanInFanOut {
			return fmt.Errorf("peft: module %s has FanInFanOut %v, but the configuration's fan_in_fan_out is %v: %w",
				excerpt(m.Name), m.FanInFanOut, a.Config.FanInFanOut, ErrInconsistent)
		}
		dt := m.DType
		if dt == "" {
			dt = F32
		}
		if !dt.Float() {
			return fmt.Errorf("peft: module %s: dtype %s, want F32, F16, BF16 or F64: %w", excerpt(m.Name), quote(string(dt)), ErrUnsupported)
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
			return fmt.Errorf("peft: full tensor %s has the name of a LoRA tensor or none: %w", quote(t.Name), ErrInconsistent)
		}
		if w := strings.TrimSuffix(t.Name, ".weight"); modules[w] {
			return fmt.Errorf("peft: full tensor %s is the weight of module %s, which Load refuses: %w", quote(t.Name), excerpt(w), ErrInconsistent)
		}
		tensors = append(tensors, Tensor{Name: Prefix + t.Name, DType: t.DType, Shape: t.Shape, Data: t.Data})
	}
	seen := map[string]bool{}
	for _, t := range tensors {
		if seen[t.Name] {
			return fmt.Errorf("peft: tensor %s would be written twice: %w", quote(t.Name), ErrInconsistent)
		}
		seen[t.Name] = true
	}
	cfg, err := a.Config.MarshalJSON()
	if err != nil {
		return err
	}
	// What Load will read must be what was meant: strings that are not
	// valid UTF-8, for one, would come back changed.
	if back, err := ParseConfig(cfg); err != nil {
		return fmt.Errorf("peft: Save: the configuration would not load back: %w", err)
	} else if again, err := back.MarshalJSON(); err != nil || !bytes.Equal(again, cfg) {
		return fmt.Errorf("peft: Save: the configuration would load back changed (strings that are not valid UTF-8?): %w", ErrInconsistent)
	}
	// WriteSafetensors checks the header before it writes a byte, into a
	// temporary file.
	return saveFiles(dir, cfg, func(f *os.File) error {
		return WriteSafetensors(f, tensors, map[string]string{"format": "pt"})
	})
}

// saveFiles writes the two files of an adapter into dir: both to temporary
// files, then renamed into place, the old weights put back if the
// configuration cannot be; a dir that Save created is removed on error.
func saveFiles(dir string, cfg []byte, weights func(*os.File) error) (err error) {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	if statErr != nil {
		defer func() {
			if err != nil {
				os.Remove(dir) // only if empty
			}
		}()
	}
	wt, err := writeTemp(dir, WeightsFile, weights)
	if err != nil {
		return err
	}
	defer os.Remove(wt) // gone once renamed
	ct, err := writeTemp(dir, ConfigFile, func(f *os.File) error {
		_, err := f.Write(cfg)
		return err
	})
	if err != nil {
		return err
	}
	defer os.Remove(ct)
	wPath, cPath := filepath.Join(dir, WeightsFile), filepath.Join(dir, ConfigFile)
	// Keep the old weights under a second name, to put them back.
	backup := ""
	if fi, err := os.Lstat(wPath); err == nil && fi.Mode().IsRegular() {
		f, err := os.CreateTemp(dir, "."+WeightsFile+".old-*")
		if err != nil {
			return fmt.Errorf("peft: %w", err)
		}
		backup = f.Name()
		f.Close()
		os.Remove(backup)
		if err := os.Link(wPath, backup); err != nil {
			// No hard links here: a copy.
			if err := copyFile(backup, wPath); err != nil {
				os.Remove(backup)
				return fmt.Errorf("peft: keeping the old %s while saving: %w", wPath, err)
			}
		}
		defer func() {
			if backup != "" {
				os.Remove(backup)
			}
		}()
	}
	if err := os.Rename(wt, wPath); err != nil {
		return fmt.Errorf("peft: %w", err)
	}
	if err := os.Rename(ct, cPath); err != nil {
		if backup != "" {
			if rerr := os.Rename(backup, wPath); rerr != nil {
				kept := backup
				backup = "" // kept for the user
				return fmt.Errorf("peft: %w; and putting the old weights back failed: %v (they are in %s)", err, rerr, kept)
			}
		} else {
			os.Remove(wPath)
		}
		return fmt.Errorf("peft: %w (the previous adapter is left as it was)", err)
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

// copyFile copies the file src to a new file dst.
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
