//go:build !cuda && !cudaemu

package lora

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/golora/lora/internal/half"
)

// Tests of the CPU backend's half-precision W: every path (the fused
// matrix-vector kernel, its portable form, the widened panels, productNN's
// widened blocks, the panel form of dx, absMax over patterns, the rank-r
// update and its finiteness check) against float64 references built from
// the rounded W, or, for Merge, against the float32 path bit for bit.

// unit is float32's unit roundoff, 2⁻²⁴.
const unit = 0x1p-24

// accTol returns the relative bound, on Σ|terms|, of a float32 sum of k
// products formed in any order (γ_k = k·u/(1−k·u)), doubled to cover the
// final rounding and the float64 reference's own error.
func accTol(k int) float64 { return 2 * float64(k+1) * unit / (1 - float64(k+1)*unit) }

var halfTypes = []DType{F16, BF16}

// halfW is a random W of a half dtype: its patterns and their values.
type halfW struct {
	dt         DType
	rows, cols int
	bits       []uint16
	val        []float32 // the widened patterns
}

func newHalfW(rng *rand.Rand, dt DType, rows, cols int, scale float64) halfW {
	h := halfW{dt: dt, rows: rows, cols: cols, bits: make([]uint16, rows*cols), val: make([]float32, rows*cols)}
	for i := range h.bits {
		h.bits[i] = narrow1(dt, float32(rng.NormFloat64()*scale))
		h.val[i] = widen1(dt, h.bits[i])
	}
	return h
}

func narrow1(dt DType, v float32) uint16 {
	if dt == F16 {
		return half.Float32ToF16(v)
	}
	return half.Float32ToBF16(v)
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

func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * scale)
	}
	return s
}

func f32Matrix(t testing.TB, rows, cols int, data []float32) *Matrix {
	t.Helper()
	m, err := NewMatrixFrom(rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// refNT returns c = a·bᵀ (a m×k, b nc×k) in float64 and Σ|a||b| per element.
func refNT(a, b []float32, m, nc, k int) (c, mag []float64) {
	c, mag = make([]float64, m*nc), make([]float64, m*nc)
	for i := range m {
		for j := range nc {
			for p := range k {
				v := float64(a[i*k+p]) * float64(b[j*k+p])
				c[i*nc+j] += v
				mag[i*nc+j] += math.Abs(v)
			}
		}
	}
	return c, mag
}

// refNN returns c = a·b (a m×k, b k×nc) in float64 and Σ|a||b| per element.
func refNN(a, b []float32, m, nc, k int) (c, mag []float64) {
	c, mag = make([]float64, m*nc), make([]float64, m*nc)
	for i := range m {
		for p := range k {
			for j := range nc {
				v := float64(a[i*k+p]) * float64(b[p*nc+j])
				c[i*nc+j] += v
				mag[i*nc+j] += math.Abs(v)
			}
		}
	}
	return c, mag
}

func within(t testing.TB, what string, got []float32, want, mag []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i, g := range got {
		if e := math.Abs(float64(g) - want[i]); !(e <= tol*mag[i]+1e-30) {
			t.Fatalf("%s[%d] = %g, want %g (error %.3g > %.3g)", what, i, g, want[i], e, tol*mag[i])
		}
	}
}

func nanFill(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.NaN())
	}
	return s
}

// productPaths are the forms of y = x·Wᵀ for a half W: the dispatch of
// linear, the fused matrix-vector form (the assembly kernel where the
// processor has it), its portable form, and the widened panels.
func productPaths(n int) map[string]func(y, x []float32, h halfW) {
	paths := map[string]func(y, x []float32, h halfW){
		"panels": func(y, x []float32, h halfW) { halfPanels(y, x, h.bits, h.dt, n, h.rows, h.cols) },
	}
	paths["gemv"] = func(y, x []float32, h halfW) { halfGemv(y, x, h.bits, h.dt, n, h.rows, h.cols) }
	paths["gemv-go"] = func(y, x []float32, h halfW) { halfGemvGo(y, x, h.bits, h.dt, 0, n, h.rows, h.cols, 0, h.rows) }
	return paths
}

// TestHalfProduct checks y = x·Wᵀ with an F16 or BF16 W on every path, for
// every n up to two past the fused path's threshold and shapes whose rows
// leave 1 to 3 rows after the kernel's groups of four and whose columns
// leave every remainder after its blocks of 16.
func TestHalfProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	shapes := [][2]int{{1, 1}, {3, 5}, {4, 15}, {4, 16}, {5, 17}, {7, 31}, {8, 32}, {9, 33}, {13, 47}, {6, 64}, {7, 129}}
	for _, dt := range halfTypes {
		for _, sh := range shapes {
			out, in := sh[0], sh[1]
			h := newHalfW(rng, dt, out, in, 1)
			for n := 1; n <= halfGemvRows+2; n++ {
				x := randF32(rng, n*in, 1)
				want, mag := refNT(x, h.val, n, out, in)
				for name, f := range productPaths(n) {
					y := nanFill(n * out)
					f(y, x, h)
					within(t, fmt.Sprintf("%v %s n=%d out=%d in=%d: y", dt, name, n, out, in), y, want, mag, accTol(in))
				}
				// The backend's linear, dispatching on n.
				w, xm := h.matrix(t), f32Matrix(t, n, in, x)
				ym := f32Matrix(t, n, out, nanFill(n*out))
				if err := linear(ym, xm, w); err != nil {
					t.Fatal(err)
				}
				within(t, fmt.Sprintf("%v linear n=%d out=%d in=%d: y", dt, n, out, in), ym.buf.data, want, mag, accTol(in))
			}
		}
	}
}

// forwardRef returns y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ in float64 and the sum of the
// magnitudes of its terms.
func forwardRef(x, w, a, b []float32, s float64, n, in, out, r int) (y, mag []float64) {
	y, mag = refNT(x, w, n, out, in)
	t, tmag := refNT(x, a, n, r, in)
	for i := range n {
		for o := range out {
			for k := range r {
				y[i*out+o] += s * t[i*r+k] * float64(b[o*r+k])
				mag[i*out+o] += math.Abs(s) * tmag[i*r+k] * math.Abs(float64(b[o*r+k]))
			}
		}
	}
	return y, mag
}

// TestHalfForward runs Forward and Linear through the API with a half W,
// at batch sizes on both sides of the fused path's threshold and of
// the chunks of rows of x in halfGemv.
func TestHalfForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, dt := range halfTypes {
		for _, c := range []struct{ n, in, out, r int }{
			{1, 37, 19, 3}, {3, 64, 21, 5}, {halfGemvRows, 70, 33, 4}, {halfGemvRows + 1, 70, 33, 4}, {9, 129, 41, 7},
			{40, 300, 131, 5}, {7, halfGemvX/3 + 5, 9, 2},
		} {
			t.Run(fmt.Sprintf("%v/n=%d,in=%d,out=%d,r=%d", dt, c.n, c.in, c.out, c.r), func(t *testing.T) {
				checkHalfForward(t, rng, dt, c.n, c.in, c.out, c.r)
			})
		}
	}
}

func checkHalfForward(t *testing.T, rng *rand.Rand, dt DType, n, in, out, r int) {
	h := newHalfW(rng, dt, out, in, 1)
	a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 1)
	const s = 0.75
	w := h.matrix(t)
	l, err := NewLayerFrom(w, f32Matrix(t, r, in, a), f32Matrix(t, out, r, b), s)
	if err != nil {
		t.Fatal(err)
	}
	x := randF32(rng, n*in, 1)
	xm := f32Matrix(t, n, in, x)
	y := f32Matrix(t, n, out, nanFill(n*out))
	if err := l.Forward(y, xm); err != nil {
		t.Fatal(err)
	}
	want, mag := forwardRef(x, h.val, a, b, s, n, in, out, r)
	within(t, "Forward y", y.buf.data, want, mag, accTol(in+r+3))
	if err := Linear(y, xm, w); err != nil {
		t.Fatal(err)
	}
	want, mag = refNT(x, h.val, n, out, in)
	within(t, "Linear y", y.buf.data, want, mag, accTol(in))
}

// checkHalfBackward runs Backward with a half W, unmerged and merged, and
// compares dx, dA and dB with float64 references from the rounded W.
func checkHalfBackward(t *testing.T, rng *rand.Rand, dt DType, n, in, out, r int) {
	h := newHalfW(rng, dt, out, in, 1)
	a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 1)
	const s = 0.75
	w := h.matrix(t)
	l, err := NewLayerFrom(w, f32Matrix(t, r, in, a), f32Matrix(t, out, r, b), s)
	if err != nil {
		t.Fatal(err)
	}
	x, g := randF32(rng, n*in, 1), randF32(rng, n*out, 1)
	xm, dy := f32Matrix(t, n, in, x), f32Matrix(t, n, out, g)
	// References: U = s·dy·B, T = s·x·Aᵀ, dx = dy·W + U·A, dA = Uᵀ·x, dB = dyᵀ·T.
	base, bmag := refNN(g, h.val, n, in, out)
	u, umag := refNN(g, b, n, r, out)
	tt, tmag := refNT(x, a, n, r, in)
	dxWant, dxMag := make([]float64, n*in), make([]float64, n*in)
	for i := range n {
		for j := range in {
			dxWant[i*in+j], dxMag[i*in+j] = base[i*in+j], bmag[i*in+j]
			for k := range r {
				dxWant[i*in+j] += s * u[i*r+k] * float64(a[k*in+j])
				dxMag[i*in+j] += s * umag[i*r+k] * math.Abs(float64(a[k*in+j]))
			}
		}
	}
	dAWant, dAMag := make([]float64, r*in), make([]float64, r*in)
	for k := range r {
		for j := range in {
			for i := range n {
				dAWant[k*in+j] += s * u[i*r+k] * float64(x[i*in+j])
				dAMag[k*in+j] += s * umag[i*r+k] * math.Abs(float64(x[i*in+j]))
			}
		}
	}
	dBWant, dBMag := make([]float64, out*r), make([]float64, out*r)
	for o := range out {
		for k := range r {
			for i := range n {
				dBWant[o*r+k] += s * float64(g[i*out+o]) * tt[i*r+k]
				dBMag[o*r+k] += s * math.Abs(float64(g[i*out+o])) * tmag[i*r+k]
			}
		}
	}
	dx := f32Matrix(t, n, in, nanFill(n*in))
	dA := f32Matrix(t, r, in, nanFill(r*in))
	dB := f32Matrix(t, out, r, nanFill(out*r))
	if err := l.Backward(dx, dA, dB, dy, xm); err != nil {
		t.Fatal(err)
	}
	within(t, "dx", dx.buf.data, dxWant, dxMag, accTol(out+r+2))
	within(t, "dA", dA.buf.data, dAWant, dAMag, accTol(out+n+2))
	within(t, "dB", dB.buf.data, dBWant, dBMag, accTol(in+n+2))

	// Merged: dx = dy·W on the merged W; compare with the merged W's values.
	if err := l.Merge(); err != nil {
		t.Fatal(err)
	}
	merged := make([]float32, out*in)
	if err := w.Read(merged); err != nil {
		t.Fatal(err)
	}
	if err := l.Backward(dx, dA, dB, dy, xm); err != nil {
		t.Fatal(err)
	}
	want, mag := refNN(g, merged, n, in, out)
	within(t, "merged dx", dx.buf.data, want, mag, accTol(out+1))
	// The panel form of dx, which runs without AVX2 + FMA or with a
	// threaded BLAS.
	got := nanFill(n * in)
	halfGradX(got, g, w.buf.bits, dt, n, out, in)
	within(t, "halfGradX dx", got, want, mag, accTol(out+1))
}

// TestHalfBackward covers dx = dy·W + U·A with a half W at n on both sides
// of productNN's fused path (halfFuseRows), with inner dimensions that end
// inside productNN's blocks of rows and columns that end inside its blocks
// of columns and inside the kernels' blocks of 64 and 8.
func TestHalfBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	for _, dt := range halfTypes {
		for _, c := range []struct{ n, in, out, r int }{
			{1, 1, 1, 1}, {1, 37, 19, 3}, {1, 130, 70, 5}, {halfFuseRows, 129, 65, 7},
			{halfFuseRows + 1, 130, 70, 5}, {6, 129, 65, 7}, {9, 257, 131, 4},
		} {
			t.Run(fmt.Sprintf("%v/n=%d,in=%d,out=%d,r=%d", dt, c.n, c.in, c.out, c.r), func(t *testing.T) {
				checkHalfBackward(t, rng, dt, c.n, c.in, c.out, c.r)
			})
		}
	}
}

// TestAbsMaxHalf checks absMax over F16 and BF16 patterns: the largest
// magnitude whatever its sign and position, subnormals, and NaN and ±Inf
// (written out as patterns) giving a non-finite result, as for F32.
func TestAbsMaxHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	type special struct {
		name string
		bits uint16
		want float32 // NaN: any NaN
	}
	specials := map[DType][]special{
		F16: {
			{"largest negative", 0xfbff, 65504}, {"+Inf", 0x7c00, float32(math.Inf(1))},
			{"−Inf", 0xfc00, float32(math.Inf(1))}, {"quiet NaN", 0x7e00, float32(math.NaN())},
			{"signalling NaN", 0xfc01, float32(math.NaN())},
		},
		BF16: {
			{"largest negative", 0xff7f, 0x1.fep127}, {"+Inf", 0x7f80, float32(math.Inf(1))},
			{"−Inf", 0xff80, float32(math.Inf(1))}, {"quiet NaN", 0x7fc0, float32(math.NaN())},
			{"signalling NaN", 0xff81, float32(math.NaN())},
		},
	}
	for _, dt := range halfTypes {
		for _, size := range []int{1, 7, 1000, 3<<16 + 5} {
			h := newHalfW(rng, dt, 1, size, 1)
			var want float32
			for _, v := range h.val {
				want = max(want, float32(math.Abs(float64(v))))
			}
			if got := absMaxHalf(h.bits, dt); got != want {
				t.Fatalf("%v size %d: absMax %g, want %g", dt, size, got, want)
			}
			for _, sp := range specials[dt] {
				for _, pos := range []int{0, size / 2, size - 1} {
					b := append([]uint16(nil), h.bits...)
					b[pos] = sp.bits
					got := absMaxHalf(b, dt)
					if sp.want != sp.want {
						if got == got {
							t.Fatalf("%v size %d: %s at %d: absMax %g, want NaN", dt, size, sp.name, pos, got)
						}
					} else if got != max(sp.want, want) {
						t.Fatalf("%v size %d: %s at %d: absMax %g, want %g", dt, size, sp.name, pos, got, max(sp.want, want))
					}
				}
			}
		}
		// The largest magnitude at every position of sizes that end in
		// each of the kernel's loops and in its tail.
		for _, size := range []int{37, 200} {
			h := newHalfW(rng, dt, 1, size, 1)
			for pos := range size {
				b := append([]uint16(nil), h.bits...)
				b[pos] = specials[dt][0].bits
				if got := absMaxHalf(b, dt); got != specials[dt][0].want {
					t.Fatalf("%v size %d: largest at %d: absMax %g, want %g", dt, size, pos, got, specials[dt][0].want)
				}
			}
		}
		// Subnormals only: the smallest positive is the largest magnitude
		// of a matrix of it and zeros.
		b := []uint16{0x8000, 0x0001, 0x0000}
		if got, want := absMaxHalf(b, dt), widen1(dt, 1); got != want {
			t.Errorf("%v subnormal: absMax %g, want %g", dt, got, want)
		}
	}
}

// mergeCase is W ← W + c·B·A on a half W of the given shape.
type mergeCase struct{ out, in, r int }

// TestRankUpdateHalfBits checks that rankUpdate on a half W gives, bit for
// bit, the float32 update of a float32 copy of W rounded once to nearest
// even, for c and then −c; and that rankFinite agrees. Shapes: single
// elements, columns that are not a multiple of 8 or 64, and in = 1100 at
// r = 64 (two blocks of columns).
func TestRankUpdateHalfBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	for _, dt := range halfTypes {
		for _, c := range []mergeCase{{1, 1, 1}, {5, 7, 3}, {13, 130, 5}, {33, 300, 16}, {17, 1100, 64}} {
			t.Run(fmt.Sprintf("%v/%d×%d,r=%d", dt, c.out, c.in, c.r), func(t *testing.T) {
				checkRankUpdateBits(t, rng, dt, c)
			})
		}
	}
}

func checkRankUpdateBits(t *testing.T, rng *rand.Rand, dt DType, c mergeCase) {
	h := newHalfW(rng, dt, c.out, c.in, 1)
	a := f32Matrix(t, c.r, c.in, randF32(rng, c.r*c.in, 1))
	b := f32Matrix(t, c.out, c.r, randF32(rng, c.out*c.r, 0.5))
	w := h.matrix(t)
	wf := f32Matrix(t, c.out, c.in, append([]float32(nil), h.val...))
	for _, coef := range []float32{0.37, -0.37} {
		ok, err := rankFinite(w, a, b, coef)
		if err != nil || !ok {
			t.Fatalf("c = %g: rankFinite = %v, %v, want true", coef, ok, err)
		}
		if err := rankUpdate(wf, a, b, coef); err != nil {
			t.Fatal(err)
		}
		if err := rankUpdate(w, a, b, coef); err != nil {
			t.Fatal(err)
		}
		want := make([]uint16, len(h.bits))
		narrowHalf(dt, want, wf.buf.data)
		for i, v := range w.buf.bits {
			if v != want[i] {
				t.Fatalf("c = %g: W[%d] = %#04x, want %#04x (float32 %g)", coef, i, v, want[i], wf.buf.data[i])
			}
		}
		// Keep the float32 copy on the rounded values, as W is.
		for i, v := range want {
			wf.buf.data[i] = widen1(dt, v)
		}
	}
}

// TestRankRowHalf checks rankRowHalf (the fused kernel where the processor
// has it) against rankRow on a widened copy, rounded, on every column count
// from 0 to 150, and that it writes nothing past the end.
func TestRankRowHalf(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range halfTypes {
		for _, r := range []int{1, 2, 7, 16} {
			for n := 0; n <= 150; n++ {
				lda := n + 3
				a := randF32(rng, r*lda, 1)
				coef := randF32(rng, r, 1)
				h := newHalfW(rng, dt, 1, n+1, 4)
				dst := append([]uint16(nil), h.bits...)
				rankRowHalf(dt, dst[:n], a, coef, lda)
				ref := append([]float32(nil), h.val[:n]...)
				rankRow(ref, a, coef, lda)
				want := make([]uint16, n)
				narrowHalf(dt, want, ref)
				for j := range n {
					if dst[j] != want[j] {
						t.Fatalf("%v r=%d n=%d: dst[%d] = %#04x, want %#04x", dt, r, n, j, dst[j], want[j])
					}
				}
				if dst[n] != h.bits[n] {
					t.Fatalf("%v r=%d n=%d: wrote past the end", dt, r, n)
				}
			}
		}
	}
}

// TestMergeHalfBits merges through the API into a half W and into an F32
// W holding the same values: Merge's result, rounded, must be the half
// Merge's bit for bit, and Unmerge likewise.
func TestMergeHalfBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	for _, dt := range halfTypes {
		const out, in, r = 29, 301, 6
		h := newHalfW(rng, dt, out, in, 1)
		a, b := randF32(rng, r*in, 1), randF32(rng, out*r, 0.3)
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
				ok, err := rankFinite(w, a, b, 1)
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

// TestHalfSplit runs every path of a half W on shapes above the size at
// which its work is split among goroutines, with GOMAXPROCS raised to an odd
// count so that shares are uneven: the fused product (groups of rows of W),
// the panels (9 of them), productNN
// (spans of columns), the panel form of dx
// with its widening split, absMax, the rank-r update (column blocks and
// groups of rows) and rankFinite.
func TestHalfSplit(t *testing.T) {
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(25, 26))
	for _, dt := range halfTypes {
		t.Run(dt.String(), func(t *testing.T) {
			for _, c := range []struct{ n, in, out int }{
				{1, 301, 263}, {halfGemvRows, 301, 263}, {halfGemvRows + 1, 2000, 263}, {40, 2000, 263},
			} {
				h := newHalfW(rng, dt, c.out, c.in, 1)
				if c.n > halfGemvRows && (c.out+halfPanelRows(c.out, c.in)-1)/halfPanelRows(c.out, c.in) < 7 {
					t.Fatalf("n=%d: fewer panels than goroutines", c.n)
				}
				x := randF32(rng, c.n*c.in, 1)
				want, mag := refNT(x, h.val, c.n, c.out, c.in)
				for name, f := range productPaths(c.n) {
					y := nanFill(c.n * c.out)
					f(y, x, h)
					within(t, fmt.Sprintf("%s n=%d y", name, c.n), y, want, mag, accTol(c.in))
				}
			}
			checkHalfBackward(t, rng, dt, 1, 700, 263, 9)
			checkHalfBackward(t, rng, dt, halfFuseRows+1, 700, 263, 9)
			// halfGradX with a panel of 4 rows past the widening's split.
			const n, in, out = 2, 17000, 9
			h := newHalfW(rng, dt, out, in, 1)
			g := randF32(rng, n*out, 1)
			want, mag := refNN(g, h.val, n, in, out)
			got := nanFill(n * in)
			halfGradX(got, g, h.bits, dt, n, out, in)
			within(t, "halfGradX dx", got, want, mag, accTol(out+1))

			big := newHalfW(rng, dt, 700, 700, 1)
			var mx float32
			for _, v := range big.val {
				mx = max(mx, float32(math.Abs(float64(v))))
			}
			big.bits[len(big.bits)-1] = narrow1(dt, -2*mx)
			if got := absMaxHalf(big.bits, dt); got != 2*mx {
				t.Errorf("absMax %g, want %g", got, 2*mx)
			}
			checkRankUpdateBits(t, rng, dt, mergeCase{70, 1100, 64})
		})
	}
}
