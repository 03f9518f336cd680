package peft

import (
	"fmt"
	"slices"

	"github.com/golora/lora"
)

// The files of a PEFT adapter directory.
const (
	ConfigFile  = "adapter_config.json"
	WeightsFile = "adapter_model.safetensors"
)

// Prefix is what PEFT puts before a module's name in an adapter file: the
// PeftModel's base_model (the LoraModel) and its model (the base model).
const Prefix = "base_model.model."

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

// WeightShape returns the shape of the base weight as stored in the model's
// file: Out×In, or In×Out when Transposed (0×0 for a nil Module). NewLayer
// and AddTo take the weight in LayerShape, Out×In, instead.
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
// weight w, with s the module's Scale. w is in nn.Linear's layout, Out×In,
// for every module (see LayerShape): the layer's Forward then computes the
// model's forward, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, and its Merge adds s·B·A to w, as
// PEFT computes and merges.
//
// A Conv1D (fan_in_fan_out) or embedding module's weight is stored
// transposed, In×Out (WeightShape): the layer takes its transpose, Out×In,
// and a merged Out×In w is the transpose of PEFT's merged weight as stored.
// A w of the stored shape In×Out is refused with lora.ErrShape when In ≠ Out;
// a square one cannot be told from its transpose, and gives the transposed
// layer (see the package documentation).
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
	if err := m.checkLayerShape("NewLayer: w", w); err != nil {
		return nil, err
	}
	a, b, err := m.matrices()
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

// LayerShape returns the shape of the base weight that NewLayer and AddTo
// take: Out×In, nn.Linear's layout, for every module, the transpose of
// WeightShape's for a Transposed one (0×0 for a nil Module).
func (m *Module) LayerShape() (rows, cols int) {
	if m == nil {
		return 0, 0
	}
	return m.Out, m.In
}

// checkLayerShape refuses a base weight w (named what in the message) whose
// shape is not LayerShape, saying so when it is the stored shape of a
// Transposed module.
func (m *Module) checkLayerShape(what string, w *lora.Matrix) error {
	rows, cols := w.Dims()
	wr, wc := m.LayerShape()
	if rows == wr && cols == wc {
		return nil
	}
	if m.Transposed() && rows == m.In && cols == m.Out {
		return fmt.Errorf("peft: module %s: %s is %d×%d, the weight as stored%s; want its transpose, %d×%d (out×in), the layout of the model's forward: %w",
			m.Name, what, rows, cols, m.layoutNote(), wr, wc, lora.ErrShape)
	}
	return fmt.Errorf("peft: module %s: %s is %d×%d, want %d×%d (out×in): %w",
		m.Name, what, rows, cols, wr, wc, lora.ErrShape)
}

// matrices returns the module's A (Rank×In) and B (Out×Rank) as matrices;
// the caller owns both.
func (m *Module) matrices() (a, b *lora.Matrix, err error) {
	if a, err = lora.NewMatrixFrom(m.Rank, m.In, m.A); err != nil {
		return nil, nil, err
	}
	if b, err = lora.NewMatrixFrom(m.Out, m.Rank, m.B); err != nil {
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
