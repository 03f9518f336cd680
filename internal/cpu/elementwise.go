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
	c := [8]float32{h.Beta1, 1 - h.Beta1, h.Beta2, 1 - h.Beta2, h.InvSqrtBC2, h.Eps, h.Decay, h.Step}
	Parallel(total, 16*total, func(lo, hi int) {
		segments(a, b, da, db, lo, hi, func(p, g []float32, off int) {
			m, v := m[off:off+len(p)], v[off:off+len(p)]
			k := 0
			if useFMA {
				// Whole 8s on the AVX kernel, the same arithmetic.
				k = len(g) &^ 7
				if k > 0 {
					_, _, _ = p[k-1], m[k-1], v[k-1]
					adamw8(&p[0], &g[0], &m[0], &v[0], k/8, &c)
				}
			}
			adamwGo(p[k:], g[k:], m[k:], v[k:], &c)
		})
	})
}

// adamwGo is AdamW on p, g, m and v (of one length), c as adamw8 takes it:
// every operation a float32 one, the explicit conversions keeping each
// product rounded before its sum (no fused multiply-add, as the kernel).
func adamwGo(p, g, m, v []float32, c *[8]float32) {
	for i, gi := range g {
		mi := float32(c[0]*m[i]) + float32(c[1]*gi)
		vi := float32(c[2]*v[i]) + float32(float32(c[3]*gi)*gi)
		m[i], v[i] = mi, vi
		den := float32(float32(math.Sqrt(float64(vi)))*c[4]) + c[5]
		p[i] = float32(p[i]*c[6]) - float32(c[7]*mi)/den
	}
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
