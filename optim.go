package lora

import (
	"fmt"
	"math"
	"slices"
	"sync"
)

// optimizer is an optimizer that keeps state per layer: *AdamW and *SGD.
type optimizer interface {
	// release frees the state the optimizer holds for l, if any. Called by
	// Layer.Free without the layer's lock held.
	release(l *Layer)
}

// optState is an optimizer's state for one layer.
type optState struct {
	buf   *Matrix // on the backend: the moments of A then of B; nil when none
	steps int     // updates applied so far
}

// optStates is the state an optimizer keeps, per layer. mu is held for the
// whole of a Step; lock order: optStates.mu, then Layer.mu.
type optStates struct {
	mu     sync.Mutex
	layers map[*Layer]*optState
}

// step runs one update of l by the optimizer o: it validates the arguments
// under the layer's exclusive lock, finds or creates the layer's state with
// moments arrays the size of A and B together, and calls update. State is
// created, and the step counted, only when update succeeds.
func (st *optStates) step(op string, o optimizer, l *Layer, dA, dB *Matrix, moments int,
	update func(a, b, dA, dB *Matrix, s *optState) error) error {
	if l == nil {
		return fmt.Errorf("lora: %s: layer is nil: %w", op, ErrNil)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.check(op); err != nil {
		return err
	}
	if l.merged {
		return fmt.Errorf("lora: %s: A and B cannot change while W holds s·B·A; Unmerge first: %w", op, ErrMerged)
	}
	if err := dA.usable(op, "dA"); err != nil {
		return err
	}
	if err := dB.usable(op, "dB"); err != nil {
		return err
	}
	if err := wantF32(op, "dA", dA); err != nil {
		return err
	}
	if err := wantF32(op, "dB", dB); err != nil {
		return err
	}
	if dA.rows != l.a.rows || dA.cols != l.a.cols {
		return fmt.Errorf("lora: %s: dA is %s, want %s like A: %w", op, dA.shape(), l.a.shape(), ErrShape)
	}
	if dB.rows != l.b.rows || dB.cols != l.b.cols {
		return fmt.Errorf("lora: %s: dB is %s, want %s like B: %w", op, dB.shape(), l.b.shape(), ErrShape)
	}
	if err := distinct(op, []named{{l.a, "the layer's A"}, {l.b, "the layer's B"}},
		[]named{{dA, "dA"}, {dB, "dB"}}); err != nil {
		return err
	}
	if dA == dB { // only possible when A and B have the same shape
		return fmt.Errorf("lora: %s: dA and dB are the same matrix: %w", op, ErrAlias)
	}
	s := st.layers[l]
	fresh := s == nil
	if fresh {
		s = &optState{}
	}
	var created *Matrix
	if moments > 0 && s.buf == nil {
		size := l.a.rows*l.a.cols + l.b.rows*l.b.cols
		m, err := newMatrix(op+": optimizer state", moments, size, nil)
		if err != nil {
			return err
		}
		s.buf, created = m, m
	}
	l.a.forgetBound()
	l.b.forgetBound()
	if err := update(l.a, l.b, dA, dB, s); err != nil {
		if created != nil {
			created.Free()
			s.buf = nil
		}
		return fmt.Errorf("lora: %s: %w", op, err)
	}
	s.steps++
	if fresh {
		if st.layers == nil {
			st.layers = make(map[*Layer]*optState)
		}
		st.layers[l] = s
		l.opts = append(l.opts, o)
	}
	return nil
}

// release frees the state held for l.
func (st *optStates) release(l *Layer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.layers[l]; s != nil {
		s.buf.Free()
		delete(st.layers, l)
	}
}

// free releases the state of every layer.
func (st *optStates) free(o optimizer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for l, s := range st.layers {
		l.mu.Lock()
		l.opts = slices.DeleteFunc(l.opts, func(p optimizer) bool { return p == o })
		l.mu.Unlock()
		s.buf.Free()
	}
	clear(st.layers)
}

// bytes returns the backend memory held by the state.
func (st *optStates) bytes() int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	var n int64
	for _, s := range st.layers {
		if s.buf != nil {
			n += 4 * int64(s.buf.rows) * int64(s.buf.cols)
		}
	}
	return n
}

// AdamW is the Adam optimizer with decoupled weight decay (Loshchilov and
// Hutter), as torch.optim.AdamW computes it. For each parameter p with
// gradient g, at step t = 1, 2, …:
//
//	p ← p·(1 − LR·WeightDecay)
//	m ← Beta1·m + (1 − Beta1)·g
//	v ← Beta2·v + (1 − Beta2)·g²
//	p ← p − LR/(1 − Beta1ᵗ) · m / (√v / √(1 − Beta2ᵗ) + Eps)
//
// Every field means what it says, zero included: WeightDecay 0 is no weight
// decay, Beta1 0 is no momentum. NewAdamW returns PyTorch's defaults, the
// usual starting point. Step refuses (ErrConfig) an LR or WeightDecay that
// is negative or not finite, a Beta outside [0, 1), and an Eps that is not
// positive and finite: with Eps 0 a zero gradient would give 0/0. An LR of
// 0, as a schedule may reach, updates the moments and leaves A and B as
// they are. The fields may change between steps (a learning-rate schedule).
//
// An AdamW keeps m, v and t for every layer it has stepped, two floats per
// trainable parameter, on the backend (GPU memory with the cuda build), and
// updates them there; they are never copied to the host. Free, or the
// layer's own Free, releases them. An AdamW must not be copied after its
// first Step. Its zero value has Eps 0 and is refused by Step: start from
// NewAdamW.
type AdamW struct {
	LR, Beta1, Beta2, Eps, WeightDecay float32

	state optStates
}

// NewAdamW returns an AdamW with learning rate lr and the other
// hyperparameters at torch.optim.AdamW's defaults: Beta1 0.9, Beta2 0.999,
// Eps 1e-8, WeightDecay 0.01.
func NewAdamW(lr float32) *AdamW {
	return &AdamW{LR: lr, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// adamParams are the per-step scalars of the AdamW update, as the backend
// applies them: p ← p·decay − step·m / (√v·invSqrtBC2 + eps).
type adamParams struct {
	decay, step, invSqrtBC2, eps, beta1, beta2 float32
}

// hyper returns the hyperparameters, or an error wrapping ErrConfig that
// names the one that cannot be used.
func (o *AdamW) hyper() (lr, beta1, beta2, eps, wd float64, err error) {
	lr, beta1, beta2 = float64(o.LR), float64(o.Beta1), float64(o.Beta2)
	eps, wd = float64(o.Eps), float64(o.WeightDecay)
	switch {
	case !(lr >= 0) || math.IsInf(lr, 0):
		err = fmt.Errorf("LR is %v, want ≥ 0 and finite", o.LR)
	case !(beta1 >= 0 && beta1 < 1):
		err = fmt.Errorf("Beta1 is %v, want 0 ≤ Beta1 < 1", o.Beta1)
	case !(beta2 >= 0 && beta2 < 1):
		err = fmt.Errorf("Beta2 is %v, want 0 ≤ Beta2 < 1", o.Beta2)
	case !(eps > 0) || math.IsInf(eps, 0):
		//lint:ignore ST1005 the message starts with the field's name, Eps, as the others do
		err = fmt.Errorf("Eps is %v, want > 0 and finite (NewAdamW gives PyTorch's 1e-8)", o.Eps)
	case !(wd >= 0) || math.IsInf(wd, 0):
		err = fmt.Errorf("WeightDecay is %v, want ≥ 0 and finite", o.WeightDecay)
	}
	if err != nil {
		err = fmt.Errorf("lora: AdamW.Step: %w: %w", err, ErrConfig)
	}
	return
}

// Step applies one AdamW update to the layer's A and B with the gradients
// dA (r×in) and dB (out×r), as Backward gives them. It needs exclusive use
// of the layer and refuses a merged one (ErrMerged): W would silently keep
// the old s·B·A. On error nothing changes: not A, not B, not the moments nor
// the step count.
func (o *AdamW) Step(l *Layer, dA, dB *Matrix) error {
	const op = "AdamW.Step"
	if o == nil {
		return fmt.Errorf("lora: %s: optimizer is nil: %w", op, ErrNil)
	}
	lr, beta1, beta2, eps, wd, err := o.hyper()
	if err != nil {
		return err
	}
	return o.state.step(op, o, l, dA, dB, 2, func(a, b, dA, dB *Matrix, s *optState) error {
		t := float64(s.steps + 1)
		h := adamParams{
			decay:      float32(1 - lr*wd),
			step:       float32(lr / (1 - math.Pow(beta1, t))),
			invSqrtBC2: float32(1 / math.Sqrt(1-math.Pow(beta2, t))),
			eps:        float32(eps),
			beta1:      float32(beta1),
			beta2:      float32(beta2),
		}
		return be.adamw(a, b, dA, dB, s.buf, h)
	})
}

// StateBytes returns the backend memory the optimizer's state takes, over
// all the layers it has stepped: 8 bytes per trainable parameter.
func (o *AdamW) StateBytes() int64 {
	if o == nil {
		return 0
	}
	return o.state.bytes()
}

// Free releases the optimizer's state for every layer. It is idempotent and
// safe on nil. The optimizer may be used again afterwards; each layer then
// starts from fresh moments at step 1.
func (o *AdamW) Free() {
	if o == nil {
		return
	}
	o.state.free(o)
}

func (o *AdamW) release(l *Layer) { o.state.release(l) }

// SGD is stochastic gradient descent with momentum, as torch.optim.SGD
// computes it (no dampening, no Nesterov, no weight decay): for each
// parameter p with gradient g,
//
//	buf ← Momentum·buf + g      (buf = g at the first step)
//	p   ← p − LR·buf
//
// and p ← p − LR·g when Momentum is 0, which keeps no state. Every field
// means what it says, zero included: an LR of 0 leaves A and B as they are.
// NewSGD(lr) is torch.optim.SGD(params, lr), without momentum. With
// momentum, the buffer lives on the backend, one float per trainable
// parameter; Free or the layer's Free releases it. An SGD must not be copied
// after its first Step.
type SGD struct {
	LR, Momentum float32

	state optStates
}

// NewSGD returns an SGD with learning rate lr and torch.optim.SGD's default
// momentum, 0.
func NewSGD(lr float32) *SGD { return &SGD{LR: lr} }

// Step applies one SGD update to the layer's A and B with the gradients dA
// and dB. Like AdamW.Step it needs exclusive use of the layer, refuses a
// merged one (ErrMerged), and changes nothing on error.
func (o *SGD) Step(l *Layer, dA, dB *Matrix) error {
	const op = "SGD.Step"
	if o == nil {
		return fmt.Errorf("lora: %s: optimizer is nil: %w", op, ErrNil)
	}
	lr, mom := float64(o.LR), float64(o.Momentum)
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return fmt.Errorf("lora: %s: LR is %v, want ≥ 0 and finite: %w", op, o.LR, ErrConfig)
	}
	if !(mom >= 0 && mom < 1) {
		return fmt.Errorf("lora: %s: Momentum is %v, want 0 ≤ Momentum < 1: %w", op, o.Momentum, ErrConfig)
	}
	moments := 0
	if mom > 0 {
		moments = 1
	}
	return o.state.step(op, o, l, dA, dB, moments, func(a, b, dA, dB *Matrix, s *optState) error {
		var buf *Matrix
		if mom > 0 {
			buf = s.buf
		}
		return be.sgd(a, b, dA, dB, buf, float32(lr), float32(mom))
	})
}

// StateBytes returns the backend memory the optimizer's state takes: 4 bytes
// per trainable parameter of each layer stepped with momentum.
func (o *SGD) StateBytes() int64 {
	if o == nil {
		return 0
	}
	return o.state.bytes()
}

// Free releases the optimizer's state for every layer. It is idempotent and
// safe on nil.
func (o *SGD) Free() {
	if o == nil {
		return
	}
	o.state.free(o)
}

func (o *SGD) release(l *Layer) { o.state.release(l) }
