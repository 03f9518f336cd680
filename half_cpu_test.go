//go:build !cuda && !cudaemu

package lora

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

// Merge of a half-precision W on the CPU backend, through the API: bit for
// bit the float32 Merge of the same values rounded once, and refused at the
// edge of the dtype's range. The kernels themselves are tested in
// internal/cpu.

var halfTypes = []DType{F16, BF16}

// format returns reftest's model of the 16-bit dtype dt.
func format(dt DType) reftest.Format {
	if dt == F16 {
		return reftest.F16
	}
	return reftest.BF16
}

// narrow1 returns the pattern of v rounded to dt, by reftest's model.
func narrow1(dt DType, v float32) uint16 { f := format(dt); return f.Encode(f.Round(float64(v))) }

// widen1 returns the value of the pattern h of dt, by reftest's model.
func widen1(dt DType, h uint16) float32 { return float32(format(dt).Decode(h)) }

func narrowHalf(dt DType, dst []uint16, src []float32) {
	for i, v := range src {
		dst[i] = narrow1(dt, v)
	}
}

// halfW is a random W of a half dtype: its patterns and their values.
type halfW struct {
	dt         DType
	rows, cols int
	bits       []uint16
	val        []float32 // the widened patterns
}

func newHalfW(rng *rand.Rand, dt DType, rows, cols int, scale float64) halfW {
	bits, val := reftest.NormalHalf(rng, format(dt), rows*cols, scale)
	return halfW{dt: dt, rows: rows, cols: cols, bits: bits, val: val}
}

// matrix returns an F16 or BF16 Matrix holding h's patterns.
func (h halfW) matrix(t testing.TB) *Matrix {
	t.Helper()
	m, err := NewMatrixOf(h.dt, h.rows, h.cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.WriteBits(h.bits); err != nil {
		t.Fatal(err)
	}
	return m
}

func f32Matrix(t testing.TB, rows, cols int, data []float32) *Matrix {
	t.Helper()
	m, err := NewMatrixFrom(rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMergeHalfBits merges through the API into a half W and into an F32
// W holding the same values: Merge's result, rounded, must be the half
// Merge's bit for bit, and Unmerge likewise.
func TestMergeHalfBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, dt := range halfTypes {
		const out, in, r = 29, 301, 6
		h := newHalfW(rng, dt, out, in, 1)
		a, b := reftest.Normal(rng, r*in, 1), reftest.Normal(rng, out*r, 0.3)
		w := h.matrix(t)
		wf := f32Matrix(t, out, in, append([]float32(nil), h.val...))
		l, err := NewLayerFrom(w, f32Matrix(t, r, in, a), f32Matrix(t, out, r, b), 1.5)
		if err != nil {
			t.Fatal(err)
		}
		lf, err := NewLayerFrom(wf, f32Matrix(t, r, in, a), f32Matrix(t, out, r, b), 1.5)
		if err != nil {
			t.Fatal(err)
		}
		for step, op := range []string{"Merge", "Unmerge"} {
			do := map[string]func(*Layer) error{"Merge": (*Layer).Merge, "Unmerge": (*Layer).Unmerge}[op]
			if err := do(l); err != nil {
				t.Fatal(err)
			}
			if err := do(lf); err != nil {
				t.Fatal(err)
			}
			want := make([]uint16, out*in)
			narrowHalf(dt, want, wf.buf.data)
			got := make([]uint16, out*in)
			if err := w.ReadBits(got); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%v %s: W[%d] = %#04x, want %#04x", dt, op, i, got[i], want[i])
				}
			}
			if step == 0 {
				// Unmerge of the F32 layer starts from the rounded values.
				for i, v := range want {
					wf.buf.data[i] = widen1(dt, v)
				}
			}
		}
	}
}

// TestRankFiniteHalf checks rankFinite at the edge of each half dtype's
// range: a float32 result just below the overflow threshold (which rounds
// to the largest finite value) passes, the threshold itself (a tie that
// rounds to Inf) fails; and Merge then refuses with ErrNonFinite and leaves
// W as it was.
func TestRankFiniteHalf(t *testing.T) {
	for _, c := range []struct {
		dt        DType
		w         float32 // the largest finite value
		over, fit float32 // deltas: w + over = overflowAt, w + fit below it
	}{
		{F16, 65504, 16, 15},
		{BF16, 0x1.fep127, 0x1p119, 0x1p118},
	} {
		for _, sign := range []float32{1, -1} {
			const out, in = 3, 20
			bits := make([]uint16, out*in)
			bits[1*in+13] = narrow1(c.dt, sign*c.w)
			if widen1(c.dt, bits[1*in+13]) != sign*c.w || sign*c.w+sign*c.over != sign*overflowAt(c.dt) {
				t.Fatalf("%v: test values wrong", c.dt)
			}
			w, err := NewMatrixOf(c.dt, out, in)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.WriteBits(bits); err != nil {
				t.Fatal(err)
			}
			// A = e₁₃ᵀ (1×in), B = δ·e₁ (out×1), c = 1: W[1,13] + δ.
			av := make([]float32, in)
			av[13] = 1
			for _, d := range []struct {
				delta float32
				want  bool
			}{{c.fit, true}, {c.over, false}} {
				bv := make([]float32, out)
				bv[1] = sign * d.delta
				a, b := f32Matrix(t, 1, in, av), f32Matrix(t, out, 1, bv)
				ok, err := be.rankFinite(w, a, b, 1)
				if err != nil || ok != d.want {
					t.Errorf("%v sign %g δ %g: rankFinite = %v, %v, want %v", c.dt, sign, d.delta, ok, err, d.want)
				}
				l, err := NewLayerFrom(w, a, b, 1)
				if err != nil {
					t.Fatal(err)
				}
				err = l.Merge()
				got := make([]uint16, out*in)
				if rerr := w.ReadBits(got); rerr != nil {
					t.Fatal(rerr)
				}
				if d.want {
					if err != nil {
						t.Fatalf("%v δ %g: Merge: %v", c.dt, d.delta, err)
					}
					if got[1*in+13] != bits[1*in+13] { // rounds back to the largest finite
						t.Errorf("%v δ %g: merged W[1,13] = %#04x, want %#04x", c.dt, d.delta, got[1*in+13], bits[1*in+13])
					}
					if err := l.Unmerge(); err != nil {
						t.Fatal(err)
					}
					if err := w.WriteBits(bits); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if !errors.Is(err, ErrNonFinite) {
					t.Fatalf("%v δ %g: Merge: %v, want ErrNonFinite", c.dt, d.delta, err)
				}
				for i := range got {
					if got[i] != bits[i] {
						t.Fatalf("%v: refused Merge modified W[%d]", c.dt, i)
					}
				}
			}
		}
	}
}

// TestForwardBF16Direct runs Forward and Linear on BF16 x, y and W through
// the API, where the CPU backend takes x and y as they are (the bf16
// product, from 16 rows), against the same calls on an F32 x holding the
// same values and an F32 y rounded afterwards: equal bit for bit (rank 16
// and at most 64 rows, where both compute T by the same kernels, whose
// sums do not depend on where x lies; internal/cpu's TestForwardBF16 has
// the rest). Then with a subnormal in x, which the bf16 product refuses:
// staged, as before, to the same result.
func TestForwardBF16Direct(t *testing.T) {
	rng := rand.New(rand.NewPCG(217, 218))
	for _, c := range []struct {
		n, in, out int
		sub        bool
	}{{16, 64, 48, false}, {37, 70, 130, false}, {64, 128, 33, false}, {20, 64, 40, true}} {
		w := newHalfW(rng, BF16, c.out, c.in, 0.1).matrix(t)
		xh := newHalfW(rng, BF16, c.n, c.in, 1)
		if c.sub {
			xh.bits[3*c.in+5] = 0x0003
			xh.val[3*c.in+5] = widen1(BF16, 0x0003)
		}
		x, xf := xh.matrix(t), f32Matrix(t, c.n, c.in, xh.val)
		l, err := NewLayer(w, Config{Rank: 16, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		vb := make([]float32, c.out*16)
		for i := range vb {
			vb[i] = float32(rng.NormFloat64())
		}
		if err := l.B().Write(vb); err != nil {
			t.Fatal(err)
		}
		y, err := NewMatrixOf(BF16, c.n, c.out)
		if err != nil {
			t.Fatal(err)
		}
		yf := f32Matrix(t, c.n, c.out, make([]float32, c.n*c.out))
		for _, op := range []string{"Forward", "Linear"} {
			run := func(y, x *Matrix) error {
				if op == "Linear" {
					return Linear(y, x, w)
				}
				return l.Forward(y, x)
			}
			if err := run(y, x); err != nil {
				t.Fatal(err)
			}
			if err := run(yf, xf); err != nil {
				t.Fatal(err)
			}
			got, vf := make([]uint16, c.n*c.out), make([]float32, c.n*c.out)
			if err := y.ReadBits(got); err != nil {
				t.Fatal(err)
			}
			if err := yf.Read(vf); err != nil {
				t.Fatal(err)
			}
			for i, v := range vf {
				if want := narrow1(BF16, v); got[i] != want {
					t.Errorf("%s n=%d in=%d out=%d subnormal %v: y[%d] = %#04x, want %#04x (F32 x, y rounded)", op, c.n, c.in, c.out, c.sub, i, got[i], want)
					break
				}
			}
		}
		l.Free()
		for _, m := range []*Matrix{w, x, xf, y, yf} {
			m.Free()
		}
	}
}
