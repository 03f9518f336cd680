package lora_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/golora/lora"
	"github.com/golora/lora/internal/reftest"
)

// NF4 base weights on every backend: Quantize bit for bit against
// reftest's rule, the stored state as adopted, Read and Dequantize against
// the table, the products against float64 references on W's values on
// every backend, and every refusal leaving everything as it was.

// nf4Matrix returns an NF4 matrix made by NewQuantizedFrom from random
// codes and positive scales, and its values.
func nf4Matrix(t testing.TB, rng *rand.Rand, rows, cols, block int) (*lora.Matrix, []float32) {
	t.Helper()
	codes, absmax, values := reftest.RandomNF4(rng, rows*cols, block)
	m, err := lora.NewQuantizedFrom(lora.NF4, rows, cols, block, codes, absmax)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m, values
}

// TestQuantize checks Quantize bit for bit against reftest.QuantizeNF4 on
// sources of every float dtype (quantized as stored), at the smallest,
// default and largest block sizes, with blocks that straddle rows and a
// short last block, an odd count, and a block of zeros; then Read, the
// stored state, BlockSize and DType.
func TestQuantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	for _, dt := range []lora.DType{lora.F32, lora.F16, lora.BF16} {
		for _, c := range []struct{ rows, cols, block int }{{3, 37, 32}, {5, 50, 0}, {2, 4097, 4096}, {1, 1, 32}, {7, 64, 64}} {
			name := fmt.Sprintf("%v/%d×%d/block %d", dt, c.rows, c.cols, c.block)
			n := c.rows * c.cols
			src, err := lora.NewMatrixOf(dt, c.rows, c.cols)
			if err != nil {
				t.Fatal(err)
			}
			vals := reftest.Normal(rng, n, 3)
			if n >= 128 {
				clear(vals[64:128]) // a block of zeros
			}
			if c.block == 64 && n >= 64 {
				// A block whose absmax is 1 holding every midpoint (ties
				// in F32; rounded first in F16 and BF16): the lower code.
				clear(vals[:64])
				vals[0] = 1
				for i := range 15 {
					vals[1+i] = float32((float64(reftest.NF4[i]) + float64(reftest.NF4[i+1])) / 2)
				}
			}
			if err := src.Write(vals); err != nil {
				t.Fatal(err)
			}
			stored := read(t, src) // the values as stored in dt
			q, err := lora.Quantize(lora.NF4, src, c.block)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			bs := c.block
			if bs == 0 {
				bs = 64
			}
			if q.DType() != lora.NF4 || q.BlockSize() != bs || src.BlockSize() != 0 {
				t.Fatalf("%s: dtype %v, block size %d (src %d)", name, q.DType(), q.BlockSize(), src.BlockSize())
			}
			if r, cl := q.Dims(); r != c.rows || cl != c.cols {
				t.Fatalf("%s: dims %d×%d", name, r, cl)
			}
			wantCodes, wantAbsmax := reftest.QuantizeNF4(stored, bs)
			codes, absmax := make([]byte, len(wantCodes)), make([]float32, len(wantAbsmax))
			if err := q.ReadQuantized(codes, absmax); err != nil {
				t.Fatal(err)
			}
			for i := range codes {
				if codes[i] != wantCodes[i] {
					t.Fatalf("%s: codes[%d] = %#02x, want %#02x", name, i, codes[i], wantCodes[i])
				}
			}
			for i := range absmax {
				if math.Float32bits(absmax[i]) != math.Float32bits(wantAbsmax[i]) {
					t.Fatalf("%s: absmax[%d] = %g, want %g", name, i, absmax[i], wantAbsmax[i])
				}
			}
			want := reftest.NF4Values(wantCodes, wantAbsmax, bs, n)
			if got := read(t, q); !equalBits(got, want) {
				t.Fatalf("%s: Read differs from the table's values", name)
			}
			q.Free()
			src.Free()
		}
	}
}

// TestNewQuantizedFrom checks that the stored state is adopted as it is
// (ReadQuantized gives it back, Read its values), and every refusal.
func TestNewQuantizedFrom(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 64))
	m, vals := nf4Matrix(t, rng, 3, 45, 32)
	if got := read(t, m); !equalBits(got, vals) {
		t.Fatal("Read differs from the table's values")
	}
	codes, absmax := make([]byte, 68), make([]float32, 5)
	for i := range codes {
		codes[i] = byte(i * 37)
	}
	for i := range absmax {
		absmax[i] = float32(i) - 1.5
	}
	q, err := lora.NewQuantizedFrom(lora.NF4, 3, 45, 32, codes, absmax)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Free()
	gc, ga := make([]byte, 68), make([]float32, 5)
	if err := q.ReadQuantized(gc, ga); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gc, codes) || !slices.Equal(ga, absmax) {
		t.Fatal("ReadQuantized differs from what NewQuantizedFrom adopted")
	}
	codes[0] = 0xff // a copy was taken
	if err := q.ReadQuantized(gc, ga); err != nil || gc[0] != 0 {
		t.Fatalf("NewQuantizedFrom kept the caller's slice: codes[0] = %#02x, %v", gc[0], err)
	}
	codes[0] = 0
	for _, c := range []struct {
		name       string
		dt         lora.DType
		rows, cols int
		block      int
		codes      int
		absmax     int
		bad        float32
		want       error
	}{
		{"dtype", lora.BF16, 3, 45, 32, 68, 5, 0, lora.ErrDType},
		{"dims", lora.NF4, 0, 45, 32, 0, 0, 0, lora.ErrShape},
		{"block 16", lora.NF4, 3, 45, 16, 68, 9, 0, lora.ErrConfig},
		{"block 96", lora.NF4, 3, 45, 96, 68, 2, 0, lora.ErrConfig},
		{"block 8192", lora.NF4, 3, 45, 8192, 68, 1, 0, lora.ErrConfig},
		{"short codes", lora.NF4, 3, 45, 32, 67, 5, 0, lora.ErrShape},
		{"long absmax", lora.NF4, 3, 45, 32, 68, 6, 0, lora.ErrShape},
		{"NaN absmax", lora.NF4, 3, 45, 32, 68, 5, float32(math.NaN()), lora.ErrNonFinite},
		{"Inf absmax", lora.NF4, 3, 45, 32, 68, 5, float32(math.Inf(-1)), lora.ErrNonFinite},
	} {
		a := make([]float32, c.absmax)
		if c.bad != 0 {
			a[len(a)-1] = c.bad
		}
		_, err := noPanicMatrix(t, func() (*lora.Matrix, error) {
			return lora.NewQuantizedFrom(c.dt, c.rows, c.cols, c.block, make([]byte, c.codes), a)
		})
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	if err := m.ReadQuantized(make([]byte, 67), make([]float32, 5)); !errors.Is(err, lora.ErrShape) {
		t.Errorf("ReadQuantized, short codes: %v, want ErrShape", err)
	}
	f := newMat(t, 2, 2, nil)
	if err := f.ReadQuantized(make([]byte, 2), make([]float32, 1)); !errors.Is(err, lora.ErrDType) {
		t.Errorf("ReadQuantized of an F32 matrix: %v, want ErrDType", err)
	}
}

// noPanicMatrix calls f, turning a panic into a test failure.
func noPanicMatrix(t *testing.T, f func() (*lora.Matrix, error)) (m *lora.Matrix, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("panic: %v", r)
		}
	}()
	m, err = f()
	if m != nil {
		m.Free()
	}
	return m, err
}

// TestDequantize checks Dequantize into each float dtype: the table's
// values, rounded once to dst's dtype (reftest's model of the formats);
// and the refusal of a value beyond F16's range, nothing written.
func TestDequantize(t *testing.T) {
	rng := rand.New(rand.NewPCG(65, 66))
	m, vals := nf4Matrix(t, rng, 9, 70, 64)
	for _, dt := range []lora.DType{lora.F32, lora.F16, lora.BF16} {
		dst, err := lora.NewMatrixOf(dt, 9, 70)
		if err != nil {
			t.Fatal(err)
		}
		if err := lora.Dequantize(dst, m); err != nil {
			t.Fatalf("%v: %v", dt, err)
		}
		f := map[lora.DType]reftest.Format{lora.F32: reftest.F32, lora.F16: reftest.F16, lora.BF16: reftest.BF16}[dt]
		got := read(t, dst)
		for i, v := range vals {
			if want := float32(f.Round(float64(v))); math.Float32bits(got[i]) != math.Float32bits(want) {
				t.Fatalf("%v: dst[%d] = %g, want %g", dt, i, got[i], want)
			}
		}
		dst.Free()
	}
	// A block scaled past F16's range: refused, dst unchanged.
	codes := make([]byte, 32)
	for i := range codes {
		codes[i] = 0x77
	}
	codes[20] = 0xf7 // element 40: code 15, 1.0 · absmax[1]
	big, err := lora.NewQuantizedFrom(lora.NF4, 2, 32, 32, codes, []float32{1, 70000})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Free()
	dst := newHalf(t, lora.F16, 2, 32)
	s := snap(t, dst)
	if err := lora.Dequantize(dst, big); !errors.Is(err, lora.ErrNonFinite) {
		t.Errorf("Dequantize beyond F16: %v, want ErrNonFinite", err)
	}
	s.unchanged(t, "refused Dequantize")
	// BF16 and F32 hold it (BF16 rounded).
	for dt, want := range map[lora.DType]float32{lora.BF16: float32(reftest.BF16.Round(70000)), lora.F32: 70000} {
		d := newHalf(t, dt, 2, 32)
		if err := lora.Dequantize(d, big); err != nil {
			t.Errorf("%v: %v", dt, err)
		} else if got := read(t, d); got[40] != want {
			t.Errorf("%v: element 40 = %g, want %g", dt, got[40], want)
		}
	}
	// Refusals.
	f32 := newMat(t, 2, 32, nil)
	for _, c := range []struct {
		name     string
		dst, src *lora.Matrix
		want     error
	}{
		{"src F32", f32, f32, lora.ErrDType},
		{"dst NF4", big, big, lora.ErrDType},
		{"shape", newMat(t, 3, 32, nil), big, lora.ErrShape},
		{"nil dst", nil, big, lora.ErrNil},
	} {
		if err := lora.Dequantize(c.dst, c.src); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

// newHalf returns a zero rows×cols matrix of dtype dt.
func newHalf(t testing.TB, dt lora.DType, rows, cols int) *lora.Matrix {
	t.Helper()
	m, err := lora.NewMatrixOf(dt, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

// TestNF4Layer runs Forward, Linear and Backward with an NF4 W, x of every
// float dtype, against float64 references on W's values and the operands
// as stored, on every backend: an odd in with blocks of 32 straddling rows,
// and an in of whole 16-byte vectors of codes with blocks of 64 straddling
// rows at n = 37, past the 16 rows a GPU kernel takes at a time.
func TestNF4Layer(t *testing.T) {
	for _, c := range []struct{ n, in, out, r, block int }{{5, 45, 38, 3, 32}, {37, 96, 40, 2, 64}} {
		t.Run(fmt.Sprintf("n=%d,in=%d,out=%d,r=%d,block=%d", c.n, c.in, c.out, c.r, c.block), func(t *testing.T) {
			testNF4Layer(t, c.n, c.in, c.out, c.r, c.block)
		})
	}
}

func testNF4Layer(t *testing.T, n, in, out, r, block int) {
	rng := rand.New(rand.NewPCG(67, uint64(68+n)))
	w, wv := nf4Matrix(t, rng, out, in, block)
	a := newMat(t, r, in, reftest.Normal(rng, r*in, 1))
	b := newMat(t, out, r, reftest.Normal(rng, out*r, 1))
	l, err := lora.NewLayerFrom(w, a, b, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	av, bv := read(t, a), read(t, b)
	for _, dt := range []lora.DType{lora.F32, lora.F16, lora.BF16} {
		x := newHalf(t, dt, n, in)
		if err := x.Write(reftest.Normal(rng, n*in, 1)); err != nil {
			t.Fatal(err)
		}
		xv := read(t, x)
		y := newHalf(t, lora.F32, n, out)
		sh := reftest.Shape{N: n, In: in, Out: out, R: r}
		if err := l.Forward(y, x); err != nil {
			t.Fatal(err)
		}
		want, mag := reftest.Forward(sh, 0.5, xv, wv, av, bv)
		reftest.Close(t, fmt.Sprintf("%v Forward", dt), read(t, y), want, mag, reftest.Gamma(in+r+2))
		if err := lora.Linear(y, x, w); err != nil {
			t.Fatal(err)
		}
		want, mag = reftest.Forward(reftest.Shape{N: n, In: in, Out: out}, 0, xv, wv, nil, nil)
		reftest.Close(t, fmt.Sprintf("%v Linear", dt), read(t, y), want, mag, reftest.Gamma(in+1))

		dy := newMat(t, n, out, reftest.Normal(rng, n*out, 1))
		dx := newHalf(t, lora.F32, n, in)
		dA, dB := newMat(t, r, in, nil), newMat(t, out, r, nil)
		if err := l.Backward(dx, dA, dB, dy, x); err != nil {
			t.Fatal(err)
		}
		g := reftest.Backward(sh, 0.5, read(t, dy), xv, wv, av, bv, false)
		reftest.Close(t, fmt.Sprintf("%v dx", dt), read(t, dx), g.DX, g.MagX, reftest.Gamma(out+r+2))
		reftest.Close(t, fmt.Sprintf("%v dA", dt), read(t, dA), g.DA, g.MagA, reftest.Gamma(out+n+2))
		reftest.Close(t, fmt.Sprintf("%v dB", dt), read(t, dB), g.DB, g.MagB, reftest.Gamma(in+n+2))
	}
}

// TestNF4Refusals checks every operation that does not take an NF4 matrix:
// each refuses with ErrDType (the dtype named), and nothing changes.
func TestNF4Refusals(t *testing.T) {
	rng := rand.New(rand.NewPCG(69, 70))
	const n, in, out, r = 2, 40, 24, 2
	w, _ := nf4Matrix(t, rng, out, in, 32)
	q, _ := nf4Matrix(t, rng, n, in, 32) // an NF4 matrix where an activation goes
	qy, _ := nf4Matrix(t, rng, n, out, 32)
	l, err := lora.NewLayer(w, lora.Config{Rank: r, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Free()
	x := newMat(t, n, in, reftest.Normal(rng, n*in, 1))
	y := newMat(t, n, out, nil)
	dy := newMat(t, n, out, reftest.Normal(rng, n*out, 1))
	dA, dB := newMat(t, r, in, nil), newMat(t, out, r, nil)
	bias := newMat(t, 1, out, nil)
	var codes0 = make([]byte, out*in/2)
	var absmax0 = make([]float32, out*in/32)
	if err := w.ReadQuantized(codes0, absmax0); err != nil {
		t.Fatal(err)
	}
	s := snap(t, w, q, qy, x, y, dy, dA, dB, bias, l.A(), l.B())
	for _, c := range []struct {
		name string
		f    func() error
	}{
		{"Merge", l.Merge},
		{"Forward y nf4", func() error { return l.Forward(qy, x) }},
		{"Forward x nf4", func() error { return l.Forward(y, q) }},
		{"Linear x nf4", func() error { return lora.Linear(y, q, w) }},
		{"Backward x nf4", func() error { return l.Backward(nil, dA, dB, dy, q) }},
		{"Backward dy nf4", func() error { return l.Backward(nil, dA, dB, qy, x) }},
		{"Axpy", func() error { return lora.Axpy(qy, 1, y) }},
		{"AddBias y nf4", func() error { return lora.AddBias(qy, bias) }},
		{"MSE target nf4", func() error { _, err := lora.MSE(dy, y, qy); return err }},
		{"Write", func() error { return w.Write(make([]float32, out*in)) }},
		{"ReadBits", func() error { return w.ReadBits(make([]uint16, out*in)) }},
		{"WriteBits", func() error { return w.WriteBits(make([]uint16, out*in)) }},
		{"Quantize to BF16", func() error { _, err := lora.Quantize(lora.BF16, x, 0); return err }},
		{"Quantize nf4", func() error { _, err := lora.Quantize(lora.NF4, q, 0); return err }},
		{"NewMatrixOf", func() error { _, err := lora.NewMatrixOf(lora.NF4, 2, 2); return err }},
		{"NewLayerFrom a nf4", func() error { _, err := lora.NewLayerFrom(w, q, dB, 1); return err }},
	} {
		err := noPanic(t, c.f)
		if !errors.Is(err, lora.ErrDType) {
			t.Errorf("%s: %v, want ErrDType", c.name, err)
		}
		s.unchanged(t, c.name)
	}
	if l.Merged() {
		t.Error("a refused Merge left the layer merged")
	}
	if err := l.Merge(); err == nil || !containsAll(err.Error(), "nf4", "Dequantize") {
		t.Errorf("Merge's refusal does not say how to merge an NF4 W: %v", err)
	}
	codes, absmax := make([]byte, out*in/2), make([]float32, out*in/32)
	if err := w.ReadQuantized(codes, absmax); err != nil || !slices.Equal(codes, codes0) || !slices.Equal(absmax, absmax0) {
		t.Error("a refused operation changed W's stored state")
	}
	// Quantize refuses NaN and ±Inf.
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		src := newMat(t, 1, 40, nil)
		vals := make([]float32, 40)
		vals[39] = v
		if err := src.Write(vals); err != nil {
			t.Fatal(err)
		}
		if _, err := lora.Quantize(lora.NF4, src, 32); !errors.Is(err, lora.ErrNonFinite) {
			t.Errorf("Quantize of %v: %v, want ErrNonFinite", v, err)
		}
	}
	if _, err := lora.Quantize(lora.NF4, x, 48); !errors.Is(err, lora.ErrConfig) {
		t.Errorf("Quantize with block size 48: %v, want ErrConfig", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
