//go:build !cuda && !cudaemu

package lora

import "github.com/golora/lora/internal/cpu"

// The CPU backend of Bank: the base product once for all rows
// (cpu.BankProduct for an F32 W; cpu.Product, the fused half and NF4
// kernels that widen or dequantize W a panel at a time and never make a
// float32 copy of it, for the other dtypes), then the rows grouped by
// adapter, each group's term by cpu.BankExpand over a Bᵀ packed at Add.

// bankBackend is the CPU backend's per-Bank state: each slot's Bᵀ, r×out,
// packed once at Add so that each row's expansion streams it contiguously
// (nil for a free slot).
type bankBackend struct{ bt [][]float32 }

func (b *Bank) backendInit() error {
	b.backend = bankBackend{bt: make([][]float32, len(b.slots))}
	return nil
}

func (b *Bank) backendFree() { b.backend = bankBackend{} }

// backendSet prepares slot id for the adapter s (B given on the host as hb),
// or for a free slot when s is nil.
func (b *Bank) backendSet(id int, s *bankSlot, hb []float32) error {
	if s == nil {
		b.backend.bt[id] = nil
		return nil
	}
	out, r := s.b.rows, s.b.cols
	bt := make([]float32, r*out)
	for j := range out {
		for k, v := range hb[j*r : (j+1)*r] {
			bt[k*out+j] = v
		}
	}
	b.backend.bt[id] = bt
	return nil
}

// forward computes y = x·Wᵀ, then adds each row's adapter term. The CPU
// kernels take float32 x and y: half ones are staged, y rounded once, and
// written only when the computation succeeded.
func (b *Bank) forward(y, x *Matrix, ids []int32) error {
	return staged("", []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
		b.forwardF32(out[0], in[0], ids)
		return nil
	})
}

// forwardF32 is forward for float32 x and y.
func (b *Bank) forwardF32(y, x *Matrix, ids []int32) {
	n, in, out := x.rows, x.cols, b.w.rows
	if b.w.dt == F32 {
		cpu.BankProduct(y.buf.data, x.buf.data, b.w.buf.data, n, in, out)
	} else {
		cpu.Product(y.buf.data, x.buf.data, host(b.w), n)
	}
	perm, groups := bankGroups(ids)
	gs := make([]cpu.BankGroup, len(groups))
	for i, g := range groups {
		s := &b.slots[g.id]
		gs[i] = cpu.BankGroup{Start: g.start, End: g.end, A: s.a.buf.data, BT: b.backend.bt[g.id], R: s.a.rows, Scale: s.scale}
	}
	cpu.BankExpand(y.buf.data, x.buf.data, in, out, perm, gs)
}
