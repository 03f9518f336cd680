package perf

import (
	"math/rand/v2"

	"github.com/golora/lora"
)

// BackwardFLOP counts what a Backward computes: T = x·Aᵀ, U = dy·B,
// dB = dyᵀ·T and dA = Uᵀ·x, 4·n·r·(in+out), and with dx also dy·W and
// U·A, 2·n·in·(out+r).
func (s Shape) BackwardFLOP(withDX bool) float64 {
	f := 2 * s.LoRAFLOP()
	if withDX {
		f += 2 * float64(s.N) * float64(s.In) * float64(s.Out+s.R)
	}
	return f
}

// Params returns the trainable parameters of the shape's adapter, r·(in+out).
func (s Shape) Params() int { return s.R * (s.In + s.Out) }

// StepBytes counts what an AdamW step must move at least: per parameter,
// the parameter, its gradient and its two moments read, and the parameter
// and the moments written, 7 floats.
func (s Shape) StepBytes() float64 { return 4 * 7 * float64(s.Params()) }

// Train is a Problem with what a training step needs besides: the upstream
// gradient dy (random), the gradients dx, dA and dB, and an AdamW whose
// state covers every layer.
type Train struct {
	*Problem
	DY, DX, DA, DB *lora.Matrix
	Opt            *lora.AdamW
}

// NewTrain builds the problem of NewProblem and the training buffers.
func NewTrain(s Shape, copies int) (*Train, error) {
	p, err := NewProblem(s, copies)
	if err != nil {
		return nil, err
	}
	t := &Train{Problem: p, Opt: lora.NewAdamW(1e-3)}
	rng := rand.New(rand.NewPCG(uint64(s.Out), uint64(s.R)))
	dy := make([]float32, s.N*s.Out)
	for i := range dy {
		dy[i] = 2*rng.Float32() - 1
	}
	mk := func(r, c int, data []float32) *lora.Matrix { return newMatrix(&err, lora.F32, r, c, data) }
	t.DY = mk(s.N, s.Out, dy)
	t.DX = mk(s.N, s.In, nil)
	t.DA = mk(s.R, s.In, nil)
	t.DB = mk(s.Out, s.R, nil)
	if err != nil {
		t.Free()
		return nil, err
	}
	return t, nil
}

// Backward runs the next layer's Backward with dx.
func (t *Train) Backward() error { return t.layer().Backward(t.DX, t.DA, t.DB, t.DY, t.X) }

// BackwardNoDX runs the next layer's Backward without dx, as for the first
// layer of a model.
func (t *Train) BackwardNoDX() error { return t.layer().Backward(nil, t.DA, t.DB, t.DY, t.X) }

// Step runs one AdamW step on the next layer with the gradients in DA and
// DB. The first step of each layer allocates its moments: warm up with one
// step per layer before timing.
func (t *Train) Step() error { return t.Opt.Step(t.layer(), t.DA, t.DB) }

// Free releases every matrix and the optimizer's state.
func (t *Train) Free() {
	t.Opt.Free()
	t.Problem.Free()
	t.DY.Free()
	t.DX.Free()
	t.DA.Free()
	t.DB.Free()
}
