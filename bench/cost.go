package main

import (
	"github.com/golora/lora/internal/perf"
)

// costModel estimates how long each step of a run takes, for the time left
// that the progress line shows. A call costs the larger of its arithmetic at
// flops and its memory traffic at bw; an operation is timed as measure
// does (two warm-up calls, then batches until minTime and minReps); setting
// up a step fills its copies of W at fill. The Forward rows correct flops
// and bw as they are measured.
type costModel struct {
	cfg   config
	flops float64 // FLOP/s of the base product
	bw    float64 // bytes/s streaming W from memory
	fill  float64 // bytes/s of filling new matrices
}

func newCostModel(cfg config) *costModel {
	m := &costModel{cfg: cfg, flops: 20e9, bw: 10e9, fill: 1e9}
	if _, bw, _ := perf.Device(); bw > 0 {
		m.flops, m.bw = 10e12, 0.7*bw
	}
	return m
}

// call is the time of one call doing flop operations and moving bytes.
func (m *costModel) call(flop, bytes float64) float64 {
	return max(flop/m.flops, bytes/m.bw)
}

// op is the time measure spends on an operation whose call takes t.
func (m *costModel) op(t float64) float64 {
	b := max(t, batchTarget.Seconds())
	return 2*t + min(max(m.cfg.minTime.Seconds(), float64(m.cfg.minReps)*b), float64(m.cfg.maxReps)*b)
}

func (m *costModel) host() float64 { return 0.05 }

// limits: four runs of the FMA loop of 0.2 s, and filling then reading
// four times a buffer of limitBytes.
func (m *costModel) limits() float64 {
	return 4*0.2 + float64(limitBytes())/m.fill + 4*float64(limitBytes())/m.bw
}

// forward: the base product, the merged Forward, and the fused and unfused
// Forward at every rank, on copies of W for each rank and the merged layer;
// and the same four for each bf16 shape at this in and n, W half the bytes.
func (m *costModel) forward(in, n int) float64 {
	s := perf.Shape{N: n, In: in, Out: in, R: m.cfg.ranks[0]}
	w := 4 * float64(in) * float64(in)
	t := m.call(s.BaseFLOP(), w)
	setup := float64((1+len(m.cfg.ranks))*perf.Copies(s)) * w / m.fill
	total := float64(2+2*len(m.cfg.ranks))*m.op(t) + setup
	for _, h := range m.cfg.bf16Forward {
		if h.In == in && h.N == n {
			h.Out = in
			total += 4*m.op(m.call(h.BaseFLOP(), w/2)) + float64(2*perf.CopiesOf(h, 2))*w/m.fill
		}
	}
	return total
}

// merge: Merge/Unmerge and, on the CPU, a streaming pass over as many
// bytes; and a bf16 Merge/Unmerge when the shape has one.
func (m *costModel) merge(in, r int) float64 {
	s := perf.Shape{N: 1, In: in, Out: in, R: r}
	w := 4 * float64(in) * float64(in)
	total := m.op(m.call(2*w/4*float64(r), 2*w)) + m.op(2*w/m.bw) + 2*float64(perf.Copies(s))*w/m.fill
	for _, h := range m.cfg.bf16Merge {
		if h.In == in && h.R == r {
			total += m.op(m.call(2*w/4*float64(r), w)) + float64(perf.CopiesOf(s, 2))*w/m.fill
		}
	}
	return total
}

// train: Forward, Backward with and without dx, and an AdamW step.
func (m *costModel) train(s perf.Shape) float64 {
	w := 4 * float64(s.In) * float64(s.Out)
	return m.op(m.call(s.BaseFLOP(), w)) + m.op(m.call(s.BackwardFLOP(true), w)) +
		m.op(m.call(s.BackwardFLOP(false), 0)) + m.op(s.StepBytes()/m.bw) + float64(perf.Copies(s))*w/m.fill
}

// peer: PyTorch's unmerged and merged forward on every Forward shape, its
// merge, and its forward and backward on the Training shapes, after
// starting Python and importing torch.
func (m *costModel) peer() float64 {
	forward, merge, train := peerShapes(m.cfg)
	t := 3.0
	for _, s := range forward {
		w := 4 * float64(s.In) * float64(s.Out)
		t += 2 * m.op(m.call(2*float64(s.N)*float64(s.In)*float64(s.Out), w))
	}
	for _, s := range merge {
		w := 4 * float64(s.In) * float64(s.Out)
		t += m.op(m.call(2*w/4*float64(s.R), 3*w))
	}
	for _, s := range train {
		p := perf.Shape{N: s.N, In: s.In, Out: s.Out, R: s.R}
		w := 4 * float64(s.In) * float64(s.Out)
		t += m.op(m.call(p.BaseFLOP()+p.BackwardFLOP(true), w)) + m.op(m.call(p.BaseFLOP(), w))
	}
	return t
}

// learn corrects the model with the base product of a measured Forward row:
// the arithmetic rate where the model has the arithmetic dominate, the
// bandwidth where it has W's traffic dominate.
func (m *costModel) learn(r ForwardRow) {
	t := r.Base.Median
	if !(t > 0) {
		return
	}
	flop, bytes := r.BaseFLOP(), 4*float64(r.In)*float64(r.Out)
	if flop/m.flops >= bytes/m.bw {
		m.flops = flop / t
	} else {
		m.bw = bytes / t
	}
}
