package peft

import (
	"fmt"

	"github.com/golora/lora"
)

// AddTo adds the module's adapter to the Bank b, whose base weight must be
// the module's (WeightShape: Out×In, or In×Out when Transposed), with the
// module's Scale, and returns its id in b. For fan_in_fan_out and
// embedding modules ΔW is transposed as NewLayer transposes it, so that the
// Bank's Forward computes with the weight as stored what NewLayer's layer
// computes. Nothing is added on an error. A Bank computes in float32, so
// its W is F32 (lora.NewBank says so); to merge a module into an F16 or BF16
// weight, use NewLayer.
func (m *Module) AddTo(b *lora.Bank) (int, error) {
	if err := m.check(); err != nil {
		return -1, err
	}
	if b == nil {
		return -1, fmt.Errorf("peft: module %s: AddTo: the Bank is nil: %w", m.Name, lora.ErrNil)
	}
	rows, cols := b.W().Dims()
	wr, wc := m.WeightShape()
	if rows != wr || cols != wc {
		return -1, fmt.Errorf("peft: module %s: AddTo: the Bank's W is %d×%d, want %d×%d%s: %w",
			m.Name, rows, cols, wr, wc, m.layoutNote(), lora.ErrShape)
	}
	a, bm, err := m.storedAB()
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
