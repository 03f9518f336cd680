// Package perf holds what the benchmarks of package lora and the bench
// command share: problem set-up with W rotated past the last-level cache, the
// operations timed, and their FLOP and byte counts.
package perf

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"

	"github.com/golora/lora"
)

// Shape is one layer size: a batch of N inputs through an Out×In weight with
// an adapter of rank R.
type Shape struct{ N, In, Out, R int }

func (s Shape) String() string { return fmt.Sprintf("n=%d in=%d out=%d r=%d", s.N, s.In, s.Out, s.R) }

// BaseFLOP counts the base product x·Wᵀ; LoRAFLOP the adapter's extra work,
// T = s·x·Aᵀ and T·Bᵀ.
func (s Shape) BaseFLOP() float64 { return 2 * float64(s.N) * float64(s.In) * float64(s.Out) }
func (s Shape) LoRAFLOP() float64 {
	return 2 * float64(s.N) * float64(s.R) * float64(s.In+s.Out)
}

// Bytes counts the memory a Forward must move at least: W, A, B, x and y
// once each (y written, not read), all float32.
func (s Shape) Bytes(withAdapter bool) float64 { return s.BytesOf(4, withAdapter) }

// BytesOf is Bytes with W, x and y of size bytes an element, A and B float32.
func (s Shape) BytesOf(size int, withAdapter bool) float64 {
	b := float64(size) * float64(s.Out*s.In+s.N*s.In+s.N*s.Out)
	if withAdapter {
		b += 4 * float64(s.R*(s.In+s.Out))
	}
	return b
}

// MergeBytes counts what Merge must move at least: W read and written, A and
// B read, all float32.
func (s Shape) MergeBytes() float64 { return s.MergeBytesOf(4) }

// MergeBytesOf is MergeBytes with W of size bytes an element, A and B float32.
func (s Shape) MergeBytesOf(size int) float64 {
	return 2*float64(size)*float64(s.Out*s.In) + 4*float64(s.R*(s.In+s.Out))
}

// LLCBytes returns the last-level cache size of CPU 0 when the system tells
// it, else 0.
func LLCBytes() int {
	for _, idx := range []string{"index3", "index2"} {
		b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/cache/" + idx + "/size")
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		mult := 1
		switch {
		case strings.HasSuffix(v, "K"):
			mult, v = 1<<10, strings.TrimSuffix(v, "K")
		case strings.HasSuffix(v, "M"):
			mult, v = 1<<20, strings.TrimSuffix(v, "M")
		}
		if n, err := strconv.Atoi(v); err == nil {
			return n * mult
		}
	}
	return 0
}

// RotateBytes is the working set the small-n rows rotate W through: four
// times the larger of the host's last-level cache and the GPU's L2, and at
// least 256 MiB.
func RotateBytes() int {
	_, _, l2 := Device()
	return max(4*max(LLCBytes(), l2), 256<<20)
}

// Problem is a set of layers with identical shapes on distinct W buffers,
// used in turn so that each call streams its W from memory, not cache.
type Problem struct {
	Shape  Shape
	DType  lora.DType // of W, x and y; A and B are float32, as PEFT keeps them
	Layers []*lora.Layer
	X, Y   *lora.Matrix
	t, u   *lora.Matrix // scratch of the unfused path: T = x·Aᵀ, U = T·Bᵀ
	next   int
}

// NewProblem builds copies layers of shape s with random W, A, B and x
// (B nonzero, as after training), scale 2, all float32.
func NewProblem(s Shape, copies int) (*Problem, error) { return NewProblemOf(lora.F32, s, copies) }

// NewProblemOf is NewProblem with W, x and y of dtype dt (the same values,
// rounded to dt), A and B float32 as PEFT keeps an adapter over a bf16 or
// fp16 base.
func NewProblemOf(dt lora.DType, s Shape, copies int) (*Problem, error) {
	rng := rand.New(rand.NewPCG(uint64(s.In), uint64(s.N)))
	fill := func(n int, scale float32) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = (2*rng.Float32() - 1) * scale
		}
		return d
	}
	p := &Problem{Shape: s, DType: dt}
	var err error
	mk := func(dt lora.DType, r, c int, data []float32) *lora.Matrix { return newMatrix(&err, dt, r, c, data) }
	wData := fill(s.Out*s.In, 0.03)
	aData, bData := fill(s.R*s.In, 0.03), fill(s.Out*s.R, 0.03)
	for range max(copies, 1) {
		w, a, b := mk(dt, s.Out, s.In, wData), mk(lora.F32, s.R, s.In, aData), mk(lora.F32, s.Out, s.R, bData)
		if err != nil {
			for _, m := range []*lora.Matrix{w, a, b} {
				m.Free()
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
		p.Layers = append(p.Layers, l)
	}
	p.X, p.Y = mk(dt, s.N, s.In, fill(s.N*s.In, 1)), mk(dt, s.N, s.Out, nil)
	p.t, p.u = mk(lora.F32, s.N, s.R, nil), mk(lora.F32, s.N, s.Out, nil)
	if err != nil {
		p.Free()
		return nil, err
	}
	return p, nil
}

// newMatrix returns an r×c matrix of dtype dt, filled from data (rounded to
// dt) unless data is nil, unless *err is already set; it records its own
// error in *err.
func newMatrix(err *error, dt lora.DType, r, c int, data []float32) *lora.Matrix {
	if *err != nil {
		return nil
	}
	m, e := lora.NewMatrixOf(dt, r, c)
	if e == nil && data != nil {
		if e = m.Write(data); e != nil {
			m.Free()
			m = nil
		}
	}
	*err = e
	return m
}

// Copies returns how many W buffers a shape needs to rotate past the cache:
// enough for RotateBytes at n ≤ 16, where the layer is bandwidth-bound, one
// otherwise.
func Copies(s Shape) int { return CopiesOf(s, 4) }

// CopiesOf is Copies for W, x and y of size bytes an element.
func CopiesOf(s Shape, size int) int {
	if s.N > 16 {
		return 1
	}
	b := int(s.BytesOf(size, true))
	return max(1, min(64, (RotateBytes()+b-1)/b))
}

func (p *Problem) layer() *lora.Layer {
	l := p.Layers[p.next]
	p.next = (p.next + 1) % len(p.Layers)
	return l
}

// Base runs the base product y = x·Wᵀ alone.
func (p *Problem) Base() error { return lora.Linear(p.Y, p.X, p.layer().W()) }

// Forward runs the layer's Forward: fused when unmerged, x·Wᵀ when merged.
func (p *Problem) Forward() error { return p.layer().Forward(p.Y, p.X) }

// Unfused runs the three-step path of PEFT and most libraries: y = x·Wᵀ,
// T = x·Aᵀ, U = T·Bᵀ, y += s·U, with a temporary of y's size and an extra
// pass over y.
func (p *Problem) Unfused() error {
	l := p.layer()
	if err := lora.Linear(p.Y, p.X, l.W()); err != nil {
		return err
	}
	if err := lora.Linear(p.t, p.X, l.A()); err != nil {
		return err
	}
	if err := lora.Linear(p.u, p.t, l.B()); err != nil {
		return err
	}
	return lora.Axpy(p.Y, l.Scale(), p.u)
}

// MergeToggle merges the next layer if it is unmerged and unmerges it
// otherwise: each call costs one rank-r update of W.
func (p *Problem) MergeToggle() error {
	l := p.layer()
	if l.Merged() {
		return l.Unmerge()
	}
	return l.Merge()
}

// SetMerged merges or unmerges every layer.
func (p *Problem) SetMerged(merged bool) error {
	for _, l := range p.Layers {
		if l.Merged() == merged {
			continue
		}
		var err error
		if merged {
			err = l.Merge()
		} else {
			err = l.Unmerge()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Free releases every matrix.
func (p *Problem) Free() {
	for _, l := range p.Layers {
		l.W().Free()
		l.Free()
	}
	p.X.Free()
	p.Y.Free()
	p.t.Free()
	p.u.Free()
}

// Stream scales w in place, w[i] *= c, in one single-threaded pass: the
// machine's streaming speed, the floor for an in-place update of W.
func Stream(w []float32, c float32) {
	for i := range w {
		w[i] *= c
	}
}
