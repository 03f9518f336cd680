package main

import (
	"math/rand/v2"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/perf"
)

// The dtypes of the table's rows, as the dtype column and the JSON spell
// them: f32 for every row saved before rows had a dtype.
const (
	dtF32  = "f32"
	dtBF16 = "bf16"
)

// rowDType returns a row's dtype: d, or f32 when d is empty (results saved
// before rows had a dtype).
func rowDType(d string) string {
	if d == "" {
		return dtF32
	}
	return d
}

// halfProblem is perf.Problem in a 16-bit dtype: copies of a layer whose W,
// x and y are of dtype dt, A and B float32 as PEFT keeps an adapter over a
// bf16 or fp16 base, used in turn so that each call streams its W from
// memory. Its values are drawn as perf.NewProblem draws them (W, A and B
// uniform in ±0.03, x in ±1) and rounded to dt.
type halfProblem struct {
	dt     lora.DType
	shape  perf.Shape
	layers []*lora.Layer
	x, y   *lora.Matrix
	t, u   *lora.Matrix // float32 scratch of the unfused path: T = x·Aᵀ, U = T·Bᵀ
	next   int
}

// newHalfProblem builds copies layers of shape s with W, x and y of dtype dt.
func newHalfProblem(dt lora.DType, s perf.Shape, copies int) (*halfProblem, error) {
	rng := rand.New(rand.NewPCG(uint64(s.In), uint64(s.N)))
	fill := func(n int, scale float32) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = (2*rng.Float32() - 1) * scale
		}
		return d
	}
	p := &halfProblem{dt: dt, shape: s}
	var err error
	mk := func(dt lora.DType, r, c int, data []float32) *lora.Matrix {
		if err != nil {
			return nil
		}
		var m *lora.Matrix
		if m, err = lora.NewMatrixOf(dt, r, c); err == nil && data != nil {
			if err = m.Write(data); err != nil {
				m.Free()
				m = nil
			}
		}
		return m
	}
	wData := fill(s.Out*s.In, 0.03)
	aData, bData := fill(s.R*s.In, 0.03), fill(s.Out*s.R, 0.03)
	for range max(copies, 1) {
		w, a, b := mk(dt, s.Out, s.In, wData), mk(lora.F32, s.R, s.In, aData), mk(lora.F32, s.Out, s.R, bData)
		if err != nil {
			for _, m := range []*lora.Matrix{w, a, b} {
				if m != nil {
					m.Free()
				}
			}
			p.Free()
			return nil, err
		}
		l, lerr := lora.NewLayerFrom(w, a, b, 2)
		if lerr != nil {
			w.Free()
			a.Free()
			b.Free()
			p.Free()
			return nil, lerr
		}
		p.layers = append(p.layers, l)
	}
	p.x, p.y = mk(dt, s.N, s.In, fill(s.N*s.In, 1)), mk(dt, s.N, s.Out, nil)
	p.t, p.u = mk(lora.F32, s.N, s.R, nil), mk(lora.F32, s.N, s.Out, nil)
	if err != nil {
		p.Free()
		return nil, err
	}
	return p, nil
}

// halfBytes counts the memory a Forward of shape s moves at least with W,
// x and y of size bytes an element and A and B float32: W, A, B, x and y
// once each.
func halfBytes(s perf.Shape, size int, withAdapter bool) float64 {
	b := float64(size) * float64(s.Out*s.In+s.N*s.In+s.N*s.Out)
	if withAdapter {
		b += 4 * float64(s.R*(s.In+s.Out))
	}
	return b
}

// halfMergeBytes counts what Merge moves at least on a W of size bytes an
// element: W read and written, A and B (float32) read.
func halfMergeBytes(s perf.Shape, size int) float64 {
	return 2*float64(size)*float64(s.Out*s.In) + 4*float64(s.R*(s.In+s.Out))
}

// halfCopies is perf.Copies for a W of size bytes an element: enough
// copies to rotate past the caches at n ≤ 16, one otherwise.
func halfCopies(s perf.Shape, size int) int {
	if s.N > 16 {
		return 1
	}
	b := int(halfBytes(s, size, true))
	return max(1, min(64, (perf.RotateBytes()+b-1)/b))
}

func (p *halfProblem) layer() *lora.Layer {
	l := p.layers[p.next]
	p.next = (p.next + 1) % len(p.layers)
	return l
}

// Base runs the base product y = x·Wᵀ alone.
func (p *halfProblem) Base() error { return lora.Linear(p.y, p.x, p.layer().W()) }

// Forward runs the layer's Forward: fused when unmerged, x·Wᵀ when merged.
func (p *halfProblem) Forward() error { return p.layer().Forward(p.y, p.x) }

// Unfused runs the three-step path as PEFT runs it over a half-precision
// base: y = x·Wᵀ in the dtype, T = x·Aᵀ and U = T·Bᵀ in float32, y += s·U.
func (p *halfProblem) Unfused() error {
	l := p.layer()
	if err := lora.Linear(p.y, p.x, l.W()); err != nil {
		return err
	}
	if err := lora.Linear(p.t, p.x, l.A()); err != nil {
		return err
	}
	if err := lora.Linear(p.u, p.t, l.B()); err != nil {
		return err
	}
	return lora.Axpy(p.y, l.Scale(), p.u)
}

// MergeToggle merges the next layer if it is unmerged and unmerges it
// otherwise: each call costs one rank-r update of W.
func (p *halfProblem) MergeToggle() error {
	l := p.layer()
	if l.Merged() {
		return l.Unmerge()
	}
	return l.Merge()
}

// SetMerged merges every layer.
func (p *halfProblem) SetMerged() error {
	for _, l := range p.layers {
		if !l.Merged() {
			if err := l.Merge(); err != nil {
				return err
			}
		}
	}
	return nil
}

// Free releases every matrix.
func (p *halfProblem) Free() {
	for _, l := range p.layers {
		l.W().Free()
		l.Free()
	}
	p.layers = nil
	for _, m := range []*lora.Matrix{p.x, p.y, p.t, p.u} {
		if m != nil {
			m.Free()
		}
	}
}

// copies returns how many layers p rotates through.
func (p *halfProblem) copies() int { return len(p.layers) }
