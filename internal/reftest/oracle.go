package reftest

import "fmt"

// Float is the element type of the oracle's operands: float32 as a test
// passes them in, float64 as it reads them back from a half-precision
// matrix.
type Float interface{ ~float32 | ~float64 }

// Shape is one layer problem in the library's row-major layout: x is N×In,
// W Out×In, A R×In, B Out×R, y and dy N×Out.
type Shape struct{ N, In, Out, R int }

func (s Shape) String() string { return fmt.Sprintf("n=%d,in=%d,out=%d,r=%d", s.N, s.In, s.Out, s.R) }

// need panics unless the operand name holds exactly n elements: a test that
// passes the wrong slice should fail loudly, not compare against garbage.
func need[T Float](name string, v []T, n int) {
	if len(v) != n {
		panic(fmt.Sprintf("reftest: %s has %d elements, the shape needs %d", name, len(v), n))
	}
}

// Forward returns y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ in float64, x·Wᵀ alone when a is
// nil or sh.R is 0, and for each element of y the magnitude
// Σ|x||W| + |s|·Σₖ(Σ|x||A|)·|B| that bounds its float32 rounding.
//
//go:norace
func Forward[T Float](sh Shape, s float64, x, w, a, b []T) (y, mag []float64) {
	n, in, out, r := sh.N, sh.In, sh.Out, sh.R
	if a == nil {
		r = 0
	}
	need("x", x, n*in)
	need("W", w, out*in)
	if r > 0 {
		need("A", a, r*in)
		need("B", b, out*r)
	}
	y, mag = make([]float64, n*out), make([]float64, n*out)
	t, tm := make([]float64, r), make([]float64, r) // s·x·Aᵀ of one row, |s|·Σ|x||A|
	for i := range n {
		xi := x[i*in : (i+1)*in]
		for k := range r {
			var v, m float64
			for c, xv := range xi {
				p := float64(xv) * float64(a[k*in+c])
				v += p
				m += Abs(p)
			}
			t[k], tm[k] = s*v, Abs(s)*m
		}
		for j := range out {
			var v, m float64
			for c, xv := range xi {
				p := float64(xv) * float64(w[j*in+c])
				v += p
				m += Abs(p)
			}
			for k := range r {
				bv := float64(b[j*r+k])
				v += t[k] * bv
				m += tm[k] * Abs(bv)
			}
			y[i*out+j], mag[i*out+j] = v, m
		}
	}
	return y, mag
}

// Conv1D returns PEFT's forward of a LoRA layer on a Conv1D base weight
// (GPT-2's, fan_in_fan_out), which is stored In×Out: y = x·W + s·(x·Aᵀ)·Bᵀ
// with W as stored, A R×In and B Out×R, in float64, x·W alone when a is nil
// or sh.R is 0, and the magnitudes Σ|x||W| + |s|·Σₖ(Σ|x||A|)·|B|.
//
//go:norace
func Conv1D[T Float](sh Shape, s float64, x, w, a, b []T) (y, mag []float64) {
	n, in, out, r := sh.N, sh.In, sh.Out, sh.R
	if a == nil {
		r = 0
	}
	need("x", x, n*in)
	need("W (in×out)", w, in*out)
	if r > 0 {
		need("A", a, r*in)
		need("B", b, out*r)
	}
	y, mag = make([]float64, n*out), make([]float64, n*out)
	for i := range n {
		for c := range in {
			xv := float64(x[i*in+c])
			for j := range out {
				p := xv * float64(w[c*out+j])
				y[i*out+j] += p
				mag[i*out+j] += Abs(p)
			}
		}
		for k := range r {
			var t, tm float64
			for c := range in {
				p := float64(x[i*in+c]) * float64(a[k*in+c])
				t += p
				tm += Abs(p)
			}
			for j := range out {
				bv := float64(b[j*r+k])
				y[i*out+j] += s * t * bv
				mag[i*out+j] += Abs(s) * tm * Abs(bv)
			}
		}
	}
	return y, mag
}

// Grads are the gradients Backward returns, each with the magnitudes of its
// terms.
type Grads struct {
	DA, MagA []float64 // R×In
	DB, MagB []float64 // Out×R
	DX, MagX []float64 // N×In
}

// Backward returns, in float64 from their formulas, the gradients of
// y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ for the upstream gradient dy (N×Out), with
// T = x·Aᵀ and U = dy·B:
//
//	dB = s·dyᵀ·T     magnitude |s|·Σᵢ|dy|·(Σ|x||A|)
//	dA = s·Uᵀ·x      magnitude |s|·Σᵢ(Σ|dy||B|)·|x|
//	dx = dy·W + s·U·A  magnitude Σ|dy||W| + |s|·Σₖ(Σ|dy||B|)·|A|
//
// When merged, W holds the merged weight and dx is dy·W alone.
//
//go:norace
func Backward[T Float](sh Shape, s float64, dy, x, w, a, b []T, merged bool) Grads {
	n, in, out, r := sh.N, sh.In, sh.Out, sh.R
	need("dy", dy, n*out)
	need("x", x, n*in)
	need("W", w, out*in)
	need("A", a, r*in)
	need("B", b, out*r)
	t, tm := make([]float64, n*r), make([]float64, n*r) // x·Aᵀ, Σ|x||A|
	u, um := make([]float64, n*r), make([]float64, n*r) // dy·B, Σ|dy||B|
	for i := range n {
		for k := range r {
			for c := range in {
				p := float64(x[i*in+c]) * float64(a[k*in+c])
				t[i*r+k] += p
				tm[i*r+k] += Abs(p)
			}
			for j := range out {
				p := float64(dy[i*out+j]) * float64(b[j*r+k])
				u[i*r+k] += p
				um[i*r+k] += Abs(p)
			}
		}
	}
	as := Abs(s)
	var g Grads
	g.DB, g.MagB = make([]float64, out*r), make([]float64, out*r)
	for j := range out {
		for k := range r {
			for i := range n {
				d := float64(dy[i*out+j])
				g.DB[j*r+k] += s * d * t[i*r+k]
				g.MagB[j*r+k] += as * Abs(d) * tm[i*r+k]
			}
		}
	}
	g.DA, g.MagA = make([]float64, r*in), make([]float64, r*in)
	for k := range r {
		for c := range in {
			for i := range n {
				xv := float64(x[i*in+c])
				g.DA[k*in+c] += s * u[i*r+k] * xv
				g.MagA[k*in+c] += as * um[i*r+k] * Abs(xv)
			}
		}
	}
	g.DX, g.MagX = make([]float64, n*in), make([]float64, n*in)
	for i := range n {
		for c := range in {
			var v, m float64
			for j := range out {
				p := float64(dy[i*out+j]) * float64(w[j*in+c])
				v += p
				m += Abs(p)
			}
			if !merged {
				for k := range r {
					av := float64(a[k*in+c])
					v += s * u[i*r+k] * av
					m += as * um[i*r+k] * Abs(av)
				}
			}
			g.DX[i*in+c], g.MagX[i*in+c] = v, m
		}
	}
	return g
}

// Merge returns W + c·B·A in float64 for W out×in, A r×in and B out×r, the
// update c·B·A alone, and the magnitudes |W| + |c|·Σₖ|B||A| that bound the
// float32 result's rounding.
//
//go:norace
func Merge[T Float](out, in, r int, c float64, w, a, b []T) (merged, delta, mag []float64) {
	need("W", w, out*in)
	need("A", a, r*in)
	need("B", b, out*r)
	merged, delta, mag = make([]float64, out*in), make([]float64, out*in), make([]float64, out*in)
	for i := range out {
		for j := range in {
			var d, m float64
			for k := range r {
				p := float64(b[i*r+k]) * float64(a[k*in+j])
				d += p
				m += Abs(p)
			}
			w0 := float64(w[i*in+j])
			delta[i*in+j] = c * d
			merged[i*in+j] = w0 + c*d
			mag[i*in+j] = Abs(w0) + Abs(c)*m
		}
	}
	return merged, delta, mag
}
