package peft

import (
	"fmt"

	"github.com/golora/lora"
)

// AddTo adds the module's adapter to the Bank b with the module's Scale,
// and returns its id in b. As for NewLayer, the Bank's base weight is in
// nn.Linear's layout, Out×In (LayerShape), for every module: for a Conv1D
// (fan_in_fan_out) or embedding module, the transpose of the weight as
// stored. The Bank's Forward then computes the model's forward for the rows
// that name the adapter, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, as PEFT does. A Bank over
// the stored In×Out weight is refused with lora.ErrShape when In ≠ Out.
// Nothing is added on an error. The Bank's W may be of any dtype (F32, F16,
// BF16 or NF4: see lora.Bank); the Bank keeps float32 copies of A and B. To
// merge a module into a weight, use NewLayer.
func (m *Module) AddTo(b *lora.Bank) (int, error) {
	if err := m.check(); err != nil {
		return -1, err
	}
	if b == nil {
		return -1, fmt.Errorf("peft: module %s: AddTo: the Bank is nil: %w", m.Name, lora.ErrNil)
	}
	if err := m.checkLayerShape("AddTo: the Bank's W", b.W()); err != nil {
		return -1, err
	}
	a, bm, err := m.matrices()
	if err != nil {
		return -1, fmt.Errorf("peft: module %s: AddTo: %w", m.Name, err)
	}
	defer a.Free()
	defer bm.Free()
	id, err := b.Add(a, bm, m.Scale)
	if err != nil {
		return -1, fmt.Errorf("peft: module %s: AddTo: %w", m.Name, err)
	}
	return id, nil
}
