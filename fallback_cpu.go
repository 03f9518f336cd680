//go:build !cuda && !cudaemu

package lora

import (
	"github.com/golora/lora/internal/cpu"
)

// The default CPU backend, the one every build without a GPU tag runs:
// matrices in host memory, every operation a kernel of package
// internal/cpu on the matrices' slices (products by fused matrix-vector
// kernels in AVX2 where the processor has them and by gonum's BLAS
// elsewhere, rank-r updates by row-parallel loops). Every call completes
// before it returns. This file only unpacks a Matrix for internal/cpu;
// bank_cpu.go and dtype_cpu.go beside it do the same for Bank and for the
// storage.

// cpuBackend is the CPU backend: the operations of backend (backend.go).
type cpuBackend struct{}

// be is the backend compiled in.
var be cpuBackend

func (cpuBackend) name() string { return "cpu" }

func (cpuBackend) sync() error { return nil }

// host returns m's storage as internal/cpu takes it.
func host(m *Matrix) cpu.Mat {
	h := cpu.Mat{Rows: m.rows, Cols: m.cols, Type: cpuType(m.dt), F32: m.buf.data, Bits: m.buf.bits,
		Codes: m.buf.codes, Absmax: m.buf.absmax, Block: m.block}
	if m.dt == BF16 {
		h.Least = &m.least
	}
	return h
}

// cpuType returns internal/cpu's name of dt.
func cpuType(dt DType) cpu.Type {
	switch dt {
	case F16:
		return cpu.F16
	case BF16:
		return cpu.BF16
	case NF4:
		return cpu.NF4
	}
	return cpu.F32
}

// releaseOnCollect does nothing: the collector reclaims host memory.
func (cpuBackend) releaseOnCollect(*Matrix) {}

// directIO reports whether forward and linear take this y and x as they are
// stored: on the CPU they take float32 x and y, and BF16 x and y (for a
// BF16 W on the bf16 product, cpu.ForwardBF16, staged within otherwise);
// the API stages others.
func (cpuBackend) directIO(y, x *Matrix) bool {
	return x.dt == y.dt && (x.dt == F32 || x.dt == BF16)
}

func (cpuBackend) linear(y, x, w *Matrix) error {
	if x.dt == BF16 {
		if w.dt == BF16 && cpu.ProductBF16(y.buf.bits, x.buf.bits, host(w), x.rows) {
			return nil
		}
		return staged("Linear", []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
			return be.linear(out[0], in[0], w)
		})
	}
	cpu.Product(y.buf.data, x.buf.data, host(w), x.rows)
	return nil
}

func (cpuBackend) forward(y, x, w, a, b *Matrix, s float32) error {
	if x.dt == BF16 {
		if w.dt == BF16 && cpu.ForwardBF16(y.buf.bits, x.buf.bits, host(w), a.buf.data, b.buf.data, x.rows, a.rows, s) {
			return nil
		}
		return staged("Forward", []*Matrix{x}, nil, []*Matrix{y}, func(in, _, out []*Matrix) error {
			return be.forward(out[0], in[0], w, a, b, s)
		})
	}
	cpu.Forward(y.buf.data, x.buf.data, host(w), a.buf.data, b.buf.data, x.rows, a.rows, s)
	return nil
}

func (cpuBackend) backward(dx, dA, dB, dy, x, w, a, b *Matrix, s float32, merged bool) error {
	var dxd []float32
	if dx != nil {
		dxd = dx.buf.data
	}
	cpu.Backward(dxd, dA.buf.data, dB.buf.data, dy.buf.data, x.buf.data, host(w), a.buf.data, b.buf.data, x.rows, a.rows, s, merged)
	return nil
}

func (cpuBackend) axpy(y *Matrix, alpha float32, x *Matrix) error {
	cpu.Axpy(y.buf.data, alpha, x.buf.data)
	return nil
}

func (cpuBackend) addBias(y, bias *Matrix) error {
	cpu.AddBias(y.buf.data, bias.buf.data, y.rows)
	return nil
}

func (cpuBackend) absMax(m *Matrix) (float32, error) { return cpu.AbsMax(host(m)), nil }

func (cpuBackend) adapterBound(a, b *Matrix) (maxA, maxRowB float64, err error) {
	return float64(cpu.AbsMax(host(a))), cpu.MaxRowSum(b.buf.data, b.rows, b.cols), nil
}

func (cpuBackend) rankFinite(w, a, b *Matrix, c float32) (bool, error) {
	return cpu.RankFinite(host(w), a.buf.data, b.buf.data, a.rows, c, overflowAt(w.dt)), nil
}

func (cpuBackend) rankUpdate(w, a, b *Matrix, c float32) error {
	cpu.RankUpdate(host(w), a.buf.data, b.buf.data, a.rows, c)
	return nil
}

func (cpuBackend) adamw(a, b, da, db, state *Matrix, h adamParams) error {
	total := len(a.buf.data) + len(b.buf.data)
	cpu.AdamW(a.buf.data, b.buf.data, da.buf.data, db.buf.data, state.buf.data[:total], state.buf.data[total:2*total],
		cpu.Adam{Decay: h.decay, Step: h.step, InvSqrtBC2: h.invSqrtBC2, Eps: h.eps, Beta1: h.beta1, Beta2: h.beta2})
	return nil
}

func (cpuBackend) sgd(a, b, da, db, buf *Matrix, lr, mom float32) error {
	var m []float32
	if buf != nil {
		m = buf.buf.data
	}
	cpu.SGD(a.buf.data, b.buf.data, da.buf.data, db.buf.data, m, lr, mom)
	return nil
}

func (cpuBackend) mse(dy, y, t *Matrix, scale float32) (float64, error) {
	var dyd []float32
	if dy != nil {
		dyd = dy.buf.data
	}
	return cpu.MSE(dyd, y.buf.data, t.buf.data, scale), nil
}
