package cpu

import (
	"math"

	"gonum.org/v1/gonum/blas/blas32"
)

// Axpy computes y += alpha·x.
func Axpy(y []float32, alpha float32, x []float32) {
	blas32.Implementation().Saxpy(len(x), alpha, x, 1, y, 1)
}

// AddBias computes y[i,:] += bias for every row i of y (rows×len(bias)),
// rows split among goroutines.
func AddBias(y, bias []float32, rows int) {
	cols := len(bias)
	Parallel(rows, rows*cols, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := y[i*cols : (i+1)*cols]
			for j, v := range bias {
				row[j] += v
			}
		}
	})
}

// segments calls f on the parts of [lo, hi) of the concatenation of A's and
// B's elements, na of them A's: f(p, g, off) with p and g the parameters and
// gradients of the part and off its index in the concatenation.
func segments(a, b, da, db []float32, lo, hi int, f func(p, g []float32, off int)) {
	na := len(a)
	if lo < na {
		e := min(hi, na)
		f(a[lo:e], da[lo:e], lo)
	}
	if hi > na {
		s := max(lo, na)
		f(b[s-na:hi-na], db[s-na:hi-na], s)
	}
}

// Adam holds the per-step scalars of an AdamW update:
// m ← β₁·m + (1−β₁)·g, v ← β₂·v + (1−β₂)·g²,
// p ← p·Decay − Step·m / (√v·InvSqrtBC2 + Eps).
type Adam struct {
	Decay, Step, InvSqrtBC2, Eps, Beta1, Beta2 float32
}

// AdamW applies one AdamW update to the parameters a and b, with gradients
// da and db, in a single pass: m and v hold the moments of a's elements
// then b's.
func AdamW(a, b, da, db, m, v []float32, h Adam) {
	total := len(a) + len(b)
	m, v = m[:total], v[:total]
	omb1, omb2 := 1-h.Beta1, 1-h.Beta2
	Parallel(total, 16*total, func(lo, hi int) {
		segments(a, b, da, db, lo, hi, func(p, g []float32, off int) {
			m, v := m[off:off+len(p)], v[off:off+len(p)]
			for i, gi := range g {
				mi := h.Beta1*m[i] + omb1*gi
				vi := h.Beta2*v[i] + omb2*gi*gi
				m[i], v[i] = mi, vi
				den := float32(math.Sqrt(float64(vi)))*h.InvSqrtBC2 + h.Eps
				p[i] = p[i]*h.Decay - h.Step*mi/den
			}
		})
	})
}

// SGD applies one SGD update to a and b, with gradients da and db: with
// momentum (buf not nil, the elements of a then b) buf ← mom·buf + g and
// p ← p − lr·buf, else p ← p − lr·g.
func SGD(a, b, da, db, buf []float32, lr, mom float32) {
	total := len(a) + len(b)
	Parallel(total, 4*total, func(lo, hi int) {
		segments(a, b, da, db, lo, hi, func(p, g []float32, off int) {
			if buf == nil {
				for i, gi := range g {
					p[i] -= lr * gi
				}
				return
			}
			m := buf[off : off+len(p)]
			for i, gi := range g {
				mi := mom*m[i] + gi
				m[i] = mi
				p[i] -= lr * mi
			}
		})
	})
}
