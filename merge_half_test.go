//go:build cuda || cudaemu

package lora

// Tests of the GPU backend's kernels on a W of 16-bit elements (F16, BF16),
// emulated and on a GPU: absMax over the 16-bit patterns, Merge's rank update and its
// exact check, and Backward's dx = dy·W + U·A, on shapes on either side of
// every tile edge, against float64 references built from the rounded W and,
// for the rank update, against the bits of the float32 kernel's result on a
// widened copy of W, rounded.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
	"github.com/golora/lora/kernels"
)

var halfDTypes = []DType{F16, BF16}

// toHalf rounds v to dt's patterns (nearest even), widen the reverse.
func toHalf(dt DType, v []float32) []uint16 {
	h := make([]uint16, len(v))
	if dt == F16 {
		half.F32ToF16(h, v)
	} else {
		half.F32ToBF16(h, v)
	}
	return h
}

func widen(dt DType, h []uint16) []float32 {
	v := make([]float32, len(h))
	if dt == F16 {
		half.F16ToF32(v, h)
	} else {
		half.BF16ToF32(v, h)
	}
	return v
}

// halfMatrix returns a device matrix of dt holding the patterns h.
func halfMatrix(t *testing.T, dt DType, rows, cols int, h []uint16) *Matrix {
	t.Helper()
	m, err := NewMatrixOf(dt, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	if err := m.WriteBits(h); err != nil {
		t.Fatal(err)
	}
	return m
}

func halfBits(t *testing.T, m *Matrix) []uint16 {
	t.Helper()
	h := make([]uint16, m.rows*m.cols)
	if err := m.ReadBits(h); err != nil {
		t.Fatal(err)
	}
	return h
}

// maxHalf is the pattern of dt's largest finite value: 65504 in F16,
// (2−2⁻⁷)·2¹²⁷ in BF16.
func maxHalf(dt DType) uint16 {
	if dt == F16 {
		return 0x7bff
	}
	return 0x7f7f
}

// TestHalfAbsMax checks absMax on F16 and BF16 matrices whose lengths take
// the 16-byte loads, the scalar tail or both, over more than one block,
// against the exact maximum of the widened elements; a NaN anywhere gives
// NaN, an infinity (and no NaN) +Inf.
func TestHalfAbsMax(t *testing.T) {
	rng := rand.New(rand.NewPCG(111, 112))
	shapes := []struct{ rows, cols int }{
		{1, 1}, {1, 7}, {1, 8}, {1, 9}, {3, 5}, {kernels.MergeTileOut + 1, 129},
		{3, kernels.FiniteThreads*kernels.FinitePerThread + 13},
	}
	for _, dt := range halfDTypes {
		for _, sh := range shapes {
			count := sh.rows * sh.cols
			for _, pos := range []int{0, count / 2, count - 1} {
				cases := []struct {
					name string
					set  uint16 // the pattern written at pos
					want float64
				}{
					{"finite", 0, 0},
					{"largest finite", maxHalf(dt) | 0x8000, float64(widen(dt, []uint16{maxHalf(dt)})[0])},
					{"NaN", maxHalf(dt) + 2, math.NaN()},
					{"+Inf", maxHalf(dt) + 1, math.Inf(1)},
					{"-Inf", (maxHalf(dt) + 1) | 0x8000, math.Inf(1)},
				}
				for _, c := range cases {
					scale := 1.0
					if c.name == "finite" && pos == 0 {
						scale = 0x1p-20 // subnormal in F16
					}
					h := toHalf(dt, reftest.Uniform(rng, count, scale))
					if c.set != 0 {
						h[pos] = c.set
					}
					want := c.want
					if c.set == 0 || !math.IsNaN(want) && !math.IsInf(want, 0) {
						want = 0
						for _, v := range widen(dt, h) {
							want = max(want, math.Abs(float64(v)))
						}
					}
					got, err := be.absMax(halfMatrix(t, dt, sh.rows, sh.cols, h))
					if err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("%v %d×%d %s at %d", dt, sh.rows, sh.cols, c.name, pos)
					switch {
					case math.IsNaN(want):
						if !math.IsNaN(float64(got)) {
							t.Errorf("%s: absMax = %g, want NaN", name, got)
						}
					case float64(got) != want:
						t.Errorf("%s: absMax = %g, want %g", name, got, want)
					}
				}
			}
		}
	}
}

// mergeShapes cross the merge tile's edges: one column, rows of fewer than
// eight elements, of exactly eight and of a multiple of eight (16-byte
// loads on every row), odd lengths (rows at every alignment: scalar loads
// on most), a row one past the tile, and more rows than one tile.
var mergeShapes = []struct{ out, in int }{
	{1, 1}, {3, 7}, {2, 8}, {5, 9}, {kernels.MergeTileOut + 1, kernels.MergeTileIn + 1},
	{kernels.MergeTileOut - 1, kernels.MergeTileIn + 8}, {70, 2*kernels.MergeTileIn - 6}, {9, 252},
}

// TestHalfMergeMatchesF32 checks rankUpdate on an F16 and a BF16 W: the
// result must be, bit for bit, the float32 kernel's result on a widened copy
// of W, rounded to W's dtype (nearest even); both for +c and −c, on ranks
// inside and across the rank chunk, W at ordinary magnitudes and (F16) in the
// subnormal range. The result is also checked against a float64 reference
// built from the rounded W.
func TestHalfMergeMatchesF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(113, 114))
	for _, dt := range halfDTypes {
		for _, sh := range mergeShapes {
			for _, r := range []int{1, 3, kernels.MergeTileOut + 1} {
				for _, scale := range []float64{1, 0x1p-20} {
					out, in := sh.out, sh.in
					w := toHalf(dt, reftest.Uniform(rng, out*in, scale))
					a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, math.Sqrt(scale))
					for _, c := range []float32{0.75, -1.25} {
						name := fmt.Sprintf("%v %d×%d r=%d scale %g c=%g", dt, out, in, r, scale, c)
						checkHalfMerge(t, name, dt, out, in, r, w, a, b, c)
					}
				}
			}
		}
	}
}

func checkHalfMerge(t *testing.T, name string, dt DType, out, in, r int, w []uint16, a, b []float32, c float32) {
	t.Helper()
	ma, mb := devMatrix(t, r, in, a), devMatrix(t, out, r, b)
	mh := halfMatrix(t, dt, out, in, w)
	if err := be.rankUpdate(mh, ma, mb, c); err != nil {
		t.Fatal(err)
	}
	got := halfBits(t, mh)
	wf := widen(dt, w)
	mf := devMatrix(t, out, in, wf)
	if err := be.rankUpdate(mf, ma, mb, c); err != nil {
		t.Fatal(err)
	}
	want := toHalf(dt, devRead(t, mf))
	// The float64 reference: the float32 sum is within (r+3)·2⁻²⁴ of the
	// magnitudes that make it (c·B rounded once, r fused steps, the final
	// addition); the rounding to W's dtype adds half an ulp of W's dtype at
	// the float32 result (reftest.Tol), F16's half subnormal step, 2⁻²⁵,
	// below its smallest normal.
	gotf := widen(dt, got)
	ref, _, mag := reftest.Merge(out, in, r, float64(c), wf, a, b)
	for i := range out {
		for j := range in {
			e := i*in + j
			if got[e] != want[e] {
				t.Fatalf("%s: W[%d,%d] = %#04x, want %#04x (the float32 kernel's result, rounded)", name, i, j, got[e], want[e])
			}
			tol := reftest.Tol(dtFormatOf(dt), ref[e], float64(r+3)*reftest.U32*mag[e])
			if d := math.Abs(float64(gotf[e]) - ref[e]); !(d <= tol) {
				t.Fatalf("%s: W[%d,%d] = %g, want %g (off by %g, tolerance %g)", name, i, j, gotf[e], ref[e], d, tol)
			}
		}
	}
}

// TestHalfRankFinite checks rankFinite on a half W near its dtype's largest
// finite value, where the float32 sum is finite but may round to ±Inf in W's
// dtype: F16's 65504 + 15 = 65519 rounds to 65504, 65504 + 16 = 65520 (a
// tie, to even) to +Inf; BF16's (2−2⁻⁷)·2¹²⁷ + 2¹¹⁸ stays finite and + 2¹¹⁹
// rounds to +Inf. The overflow is placed on the first row, the last row, and
// the last element only (a scalar tail when in % 8 != 0), with either sign.
// The verdict must match what rankUpdate writes into a copy, and W must be
// left as it was.
func TestHalfRankFinite(t *testing.T) {
	yes, no := true, false
	outcomes := map[bool]int{}
	for _, dt := range halfDTypes {
		below, over := float32(15), float32(16) // half an ulp of 65504 is 16
		if dt == BF16 {
			below, over = 0x1p118, 0x1p119
		}
		for _, sh := range mergeShapes[1:] {
			for _, r := range []int{1, 3, kernels.MergeTileOut + 1} {
				out, in := sh.out, sh.in
				check := func(what string, w []uint16, a, b []float32, c float32, want bool) {
					t.Helper()
					name := fmt.Sprintf("%v %d×%d r=%d: %s", dt, out, in, r, what)
					mw, ma, mb := halfMatrix(t, dt, out, in, w), devMatrix(t, r, in, a), devMatrix(t, out, r, b)
					ok, err := be.rankFinite(mw, ma, mb, c)
					if err != nil {
						t.Fatal(err)
					}
					for i, v := range halfBits(t, mw) {
						if v != w[i] {
							t.Fatalf("%s: rankFinite changed W[%d] from %#04x to %#04x", name, i, w[i], v)
						}
					}
					cp := halfMatrix(t, dt, out, in, w)
					if err := be.rankUpdate(cp, ma, mb, c); err != nil {
						t.Fatal(err)
					}
					fin := true
					for _, v := range widen(dt, halfBits(t, cp)) {
						if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
							fin = false
						}
					}
					if ok != fin || ok != want {
						t.Errorf("%s: rankFinite = %v, the update writes finite = %v, want %v", name, ok, fin, want)
					}
					outcomes[ok]++
				}
				w := make([]uint16, out*in)
				for i := range w {
					w[i] = maxHalf(dt)
				}
				a, b := make([]float32, r*in), make([]float32, out*r)
				for i := range a {
					a[i] = 1
				}
				b[0] = below
				check(fmt.Sprintf("max + %g on the first row", below), w, a, b, 1, yes)
				clear(b)
				b[(out-1)*r+r-1] = over
				check(fmt.Sprintf("max + %g on the last row", over), w, a, b, 1, no)
				// Only the last element overflows, downwards.
				clear(w)
				w[out*in-1] = maxHalf(dt) | 0x8000
				clear(a)
				a[(r-1)*in+in-1] = 1
				check(fmt.Sprintf("−max − %g in the last element", over), w, a, b, -1, no)
				check(fmt.Sprintf("−max + %g in the last element", over), w, a, b, 1, yes)
			}
		}
	}
	if outcomes[true] == 0 || outcomes[false] == 0 {
		t.Errorf("outcomes %v: want both", outcomes)
	}
}

// TestHalfMergeNearMax merges and unmerges through the public API on an F16
// W of 65504s, where the bound cannot prove the result finite and the exact
// check decides: an update of 15 merges (65519 rounds to 65504, and W's
// bits do not change), an update of 16 is refused with ErrNonFinite and
// leaves W and the layer as they were.
func TestHalfMergeNearMax(t *testing.T) {
	const out, in, r = 5, 11, 2
	for _, tc := range []struct {
		add float32
		ok  bool
	}{{15, true}, {16, false}} {
		w := make([]uint16, out*in)
		for i := range w {
			w[i] = 0x7bff
		}
		w[3] = 0x3c00 // 1
		a, b := make([]float32, r*in), make([]float32, out*r)
		for i := range a {
			a[i] = 1
		}
		b[(out-1)*r] = tc.add / 2 // s = 2: the update is tc.add on the last row
		mw := halfMatrix(t, F16, out, in, w)
		l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), 2)
		if err != nil {
			t.Fatal(err)
		}
		err = l.Merge()
		got := halfBits(t, mw)
		if !tc.ok {
			if !errors.Is(err, ErrNonFinite) {
				t.Fatalf("+%g: Merge = %v, want ErrNonFinite", tc.add, err)
			}
			if l.Merged() {
				t.Errorf("+%g: the layer is merged after a refused Merge", tc.add)
			}
			for i := range w {
				if got[i] != w[i] {
					t.Fatalf("+%g: a refused Merge changed W[%d] from %#04x to %#04x", tc.add, i, w[i], got[i])
				}
			}
			continue
		}
		if err != nil {
			t.Fatalf("+%g: Merge: %v", tc.add, err)
		}
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("+%g: Merge changed W[%d] from %#04x to %#04x, want it unchanged (65519 rounds to 65504)", tc.add, i, w[i], got[i])
			}
		}
		if err := l.Unmerge(); err != nil {
			t.Fatalf("+%g: Unmerge: %v", tc.add, err)
		}
		got = halfBits(t, mw)
		// 65504 − 15 = 65489 rounds to 65504 (the ulp is 32): unchanged.
		for i := range w {
			if got[i] != w[i] {
				t.Fatalf("+%g: Unmerge left W[%d] = %#04x, want %#04x", tc.add, i, got[i], w[i])
			}
		}
	}
}

// TestHalfGradX checks Backward's dx = dy·W + s·U·A on an F16 and a BF16 W
// through both kernels: the small-batch one (n ≤ SmallNMax), its split over
// the rows of [W; A] (planned for a device with very many SMs), and the
// tiled one, unmerged and merged, with out and r on either side of the tiled
// kernel's K-steps and out across the small kernel's groups of rows (64 rows
// of a warp at n ≤ 8, 32 above), in below 8, at a multiple of 8 (16-byte
// loads on every row) and odd, on either side of a tile of columns. The reference is a float64 sum
// over the widened W; the tolerance covers float32 accumulation over
// out + r terms, as for F32.
func TestHalfGradX(t *testing.T) {
	_, huge, tiny := plannedDevices(t)
	// one SM whose memory latency is short enough for every kernel's loads
	// in flight: the 128×128 tiles fill it, and win the model's ties
	tiny.Latency = 1e-9
	rng := rand.New(rand.NewPCG(115, 116))
	reached := map[string]bool{}
	shapes := []struct{ n, in, out, r int }{
		{1, 1, 1, 1}, {1, 8, 17, 3}, {3, 7, 65, 2}, {kernels.SmallNMax, kernels.GradXSmallCols + 9, 140, 16},
		{2, 2*kernels.GradXSmallCols + 8, 67, 1},
		{kernels.SmallNMax + 1, 19, 15, 9}, {kernels.TileM + 3, kernels.TileN + 8, 33, 5},
		{kernels.SmallNMax + 5, kernels.TileN - 1, 16, 16}, {kernels.TileM + 1, kernels.TileN + 8, 70, 5}, {4 * kernels.TileM, 67, 520, 3},
	}
	for _, d := range []plan.Device{plan.H200, huge, tiny} {
		planDev = func() plan.Device { return d }
		for _, dt := range halfDTypes {
			for _, sh := range shapes {
				for _, merged := range []bool{false, true} {
					g := plan.GradXOf(d, sh.n, sh.in, sh.out, sh.r, plan.Types{W: plan.Elem(dt)})
					reached[fmt.Sprintf("%s split %v", g.Main.Kernel.Name, g.Main.Split > 1)] = true
					name := fmt.Sprintf("%s/%v/n=%d,in=%d,out=%d,r=%d,merged=%v", d.Name, dt, sh.n, sh.in, sh.out, sh.r, merged)
					checkHalfGradX(t, name, rng, dt, sh.n, sh.in, sh.out, sh.r, merged)
				}
			}
		}
	}
	for _, dt := range halfDTypes {
		sfx := "_" + dt.String()
		for _, k := range []string{"lora_grad_x_small" + sfx + " split false", "lora_grad_x_small" + sfx + " split true", "lora_grad_x_tiled" + sfx + " split false"} {
			if !reached[k] {
				t.Errorf("%s not reached (reached %v)", k, reached)
			}
		}
	}
}

func checkHalfGradX(t *testing.T, name string, rng *rand.Rand, dt DType, n, in, out, r int, merged bool) {
	t.Helper()
	wh := toHalf(dt, reftest.Uniform(rng, out*in, 1))
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	dy, x := reftest.Uniform(rng, n*out, 1), reftest.Uniform(rng, n*in, 1)
	const s = 0.5
	mw := halfMatrix(t, dt, out, in, wh)
	l, err := NewLayerFrom(mw, devMatrix(t, r, in, a), devMatrix(t, out, r, b), s)
	if err != nil {
		t.Fatal(err)
	}
	if merged {
		if err := l.Merge(); err != nil {
			t.Fatal(err)
		}
		wh = halfBits(t, mw) // dx = dy·W as stored
	}
	w := widen(dt, wh)
	mdx, mdA, mdB := devMatrix(t, n, in, make([]float32, n*in)), devMatrix(t, r, in, make([]float32, r*in)),
		devMatrix(t, out, r, make([]float32, out*r))
	if err := l.Backward(mdx, mdA, mdB, devMatrix(t, n, out, dy), devMatrix(t, n, in, x)); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	ref := reftest.Backward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, dy, x, w, a, b, merged)
	// float32 accumulation of out + r products (and U's own r·out sums):
	// (out + r + 40)·2⁻²⁴ of the magnitudes, as for F32.
	tol := float64(out+r+40) * reftest.U32
	reftest.Check(t, name+": dx", devRead(t, mdx), ref.DX, func(i int) float64 { return tol * ref.MagX[i] })
}

// TestHalfMergeRefusesNonFiniteW merges an adapter into an F16 and a BF16 W
// that holds a NaN or an infinity in its last element (past the 16-byte
// loads of a row of 13): absMax finds it, and Merge refuses with
// ErrNonFinite, W untouched.
func TestHalfMergeRefusesNonFiniteW(t *testing.T) {
	const out, in, r = 3, 13, 2
	rng := rand.New(rand.NewPCG(117, 118))
	for _, dt := range halfDTypes {
		for _, bad := range []uint16{maxHalf(dt) + 1, maxHalf(dt) + 2, (maxHalf(dt) + 1) | 0x8000} {
			w := toHalf(dt, reftest.Uniform(rng, out*in, 1))
			w[out*in-1] = bad
			mw := halfMatrix(t, dt, out, in, w)
			l, err := NewLayerFrom(mw, devMatrix(t, r, in, reftest.Uniform(rng, r*in, 1)), devMatrix(t, out, r, reftest.Uniform(rng, out*r, 1)), 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Merge(); !errors.Is(err, ErrNonFinite) {
				t.Errorf("%v W with %#04x: Merge = %v, want ErrNonFinite", dt, bad, err)
			}
			for i, v := range halfBits(t, mw) {
				if v != w[i] {
					t.Fatalf("%v W with %#04x: a refused Merge changed W[%d] from %#04x to %#04x", dt, bad, i, w[i], v)
				}
			}
		}
	}
}
