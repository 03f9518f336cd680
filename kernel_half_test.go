//go:build cuda || cudaemu

package lora

// Tests of the GPU backend's half-precision kernels, emulated and on a GPU:
// the conversions of lora_convert against bit patterns written out here and
// against package half (an independent implementation of the same
// rounding), and every forward path with F16 and BF16 operands against
// float64 references built from the rounded inputs.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/plan"
	"github.com/golora/lora/internal/reftest"
)

// widen16 is the float32 value of a 16-bit pattern of dt, by package half.
func widen16(dt DType, h uint16) float32 {
	if dt == F16 {
		return half.F16ToFloat32(h)
	}
	return half.BF16ToFloat32(h)
}

// round16 is f rounded to dt to nearest even, by package half.
func round16(dt DType, f float32) uint16 {
	if dt == F16 {
		return half.Float32ToF16(f)
	}
	return half.Float32ToBF16(f)
}

// newMatrixDT makes a rows×cols matrix of dt holding the float32 values v
// (F32) or the patterns bits (F16, BF16).
func newMatrixDT(t *testing.T, dt DType, rows, cols int, v []float32, bits []uint16) *Matrix {
	t.Helper()
	m, err := NewMatrixOf(dt, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	if dt == F32 {
		err = m.Write(v)
	} else {
		err = m.WriteBits(bits)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// readBitsOrF32 returns m's elements as float32 bit patterns (F32) or as
// its 16-bit patterns widened to uint32.
func readRaw(t *testing.T, m *Matrix) []uint32 {
	t.Helper()
	out := make([]uint32, m.rows*m.cols)
	if m.dt == F32 {
		v := make([]float32, len(out))
		if err := m.Read(v); err != nil {
			t.Fatal(err)
		}
		for i, f := range v {
			out[i] = math.Float32bits(f)
		}
		return out
	}
	b := make([]uint16, len(out))
	if err := m.ReadBits(b); err != nil {
		t.Fatal(err)
	}
	for i, h := range b {
		out[i] = uint32(h)
	}
	return out
}

// TestConvertRounding checks lora_convert from float32 on ties, subnormals,
// the largest finite values and overflow, against patterns written out.
func TestConvertRounding(t *testing.T) {
	cases := []struct {
		v        float32
		f16, b16 uint16
	}{
		{1, 0x3c00, 0x3f80},
		{-2, 0xc000, 0xc000},
		{float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{1 + 0x1p-11, 0x3c00, 0x3f80},   // f16 tie between 1 and 1+2^-10: even, 1
		{1 + 3*0x1p-11, 0x3c02, 0x3f80}, // f16 tie between 1+2^-10 and 1+2^-9: even
		{1 + 0x1p-8, 0x3c04, 0x3f80},    // bf16 tie between 1 and 1+2^-7: even, 1
		{1 + 3*0x1p-8, 0x3c0c, 0x3f82},  // bf16 tie: up to the even 1+2^-6
		{1 + 0x1p-8 + 0x1p-20, 0x3c04, 0x3f81},
		{65504, 0x7bff, 0x477f + 1},         // f16's largest finite; bf16 rounds 65504 up to 65536
		{65519.996, 0x7bff, 0x4780},         // just below f16's overflow threshold
		{65520, 0x7c00, 0x4780},             // f16 tie at the threshold: overflow to +Inf
		{-1e5, 0xfc00, 0xc7c3},              // beyond f16: -Inf
		{0x1p-24, 0x0001, 0x3380},           // f16's smallest subnormal
		{0x1p-25, 0x0000, 0x3300},           // f16 tie with 0: even, 0
		{3 * 0x1p-25, 0x0002, 0x33c0},       // f16 tie between 1 and 2 units: even, 2
		{0x1p-14 - 0x1p-25, 0x0400, 0x3880}, // rounds up into f16's smallest normal
		{0x1.fep127, 0x7c00, 0x7f7f},        // bf16's largest finite
		{math.MaxFloat32, 0x7c00, 0x7f80},   // beyond bf16: +Inf
		{0x1p-133, 0x0000, 0x0001},          // bf16's smallest subnormal
		{float32(math.Inf(-1)), 0xfc00, 0xff80},
	}
	v := make([]float32, len(cases))
	for i, c := range cases {
		v[i] = c.v
	}
	src := newMatrixDT(t, F32, 1, len(v), v, nil)
	for _, dt := range []DType{F16, BF16} {
		dst := newMatrixDT(t, dt, 1, len(v), nil, make([]uint16, len(v)))
		if err := be.convert(dst, src); err != nil {
			t.Fatal(err)
		}
		got := readRaw(t, dst)
		for i, c := range cases {
			want := c.f16
			if dt == BF16 {
				want = c.b16
			}
			if got[i] != uint32(want) {
				t.Errorf("%v: %g (%#x) → %#04x, want %#04x", dt, c.v, math.Float32bits(c.v), got[i], want)
			}
		}
	}
}

// TestConvertAll converts every dtype into every dtype, over counts on
// either side of the kernel's 8-element vectors, and every 16-bit pattern
// once: each result against package half's conversion of the same value.
func TestConvertAll(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	dts := []DType{F32, F16, BF16}
	for _, count := range []int{1, 7, 8, 9, 8*257 + 5, 1 << 16} {
		// The source values: random magnitudes over every binade of
		// either format, and, for count 1<<16, every 16-bit pattern.
		v := make([]float32, count)
		bits := make([]uint16, count)
		for i := range v {
			bits[i] = uint16(rng.Uint32())
			if count == 1<<16 {
				bits[i] = uint16(i)
			}
			v[i] = float32(math.Ldexp(rng.Float64()+0.5, rng.IntN(80)-40)) * float32(1-2*rng.IntN(2))
		}
		for _, sdt := range dts {
			for _, ddt := range dts {
				t.Run(fmt.Sprintf("%d/%v→%v", count, sdt, ddt), func(t *testing.T) {
					var sv []float32 // the source's values, widened
					src := newMatrixDT(t, sdt, 1, count, v, bits)
					if sdt == F32 {
						sv = v
					} else {
						sv = make([]float32, count)
						for i, h := range bits {
							sv[i] = widen16(sdt, h)
						}
					}
					dst := newMatrixDT(t, ddt, 1, count, make([]float32, count), make([]uint16, count))
					if err := be.convert(dst, src); err != nil {
						t.Fatal(err)
					}
					got := readRaw(t, dst)
					bad := 0
					for i, f := range sv {
						var want uint32
						isNaN := f != f
						if ddt == F32 {
							want = math.Float32bits(f)
						} else {
							want = uint32(round16(ddt, f))
						}
						ok := got[i] == want
						if isNaN { // a NaN stays a NaN; its payload is not checked
							if ddt == F32 {
								g := math.Float32frombits(got[i])
								ok = g != g
							} else {
								g := widen16(ddt, uint16(got[i]))
								ok = g != g
							}
						}
						if !ok {
							if bad++; bad <= 5 {
								t.Errorf("element %d: %g (%#x) → %#x, want %#x", i, f, math.Float32bits(f), got[i], want)
							}
						}
					}
				})
			}
		}
	}
}

// halfOperand returns n random values in [-scale, scale] exactly
// representable in dt, and their bit patterns for a 16-bit dt.
func halfOperand(rng *rand.Rand, dt DType, n int, scale float64) ([]float32, []uint16) {
	v := reftest.Uniform(rng, n, scale)
	if dt == F32 {
		return v, nil
	}
	bits := make([]uint16, n)
	for i, f := range v {
		bits[i] = round16(dt, f)
		v[i] = widen16(dt, bits[i])
	}
	return v, bits
}

// TestForwardHalfPlannedVariants runs Forward (r > 0) and Linear (r = 0)
// with an F16 or BF16 W, and x and y of every dtype, on shapes on either
// side of every tile edge of the planned kernels, each planned for four
// devices: an H200 (tensor cores for x in W's dtype where their modelled
// time is the least, some of them padded tiles in a partial wave), one so
// large that every launch splits its inner dimension, one so small that
// the 128×128 tiles fill it, and a Volta (sm_70: no mma.sync, so the
// CUDA-core kernels with x widened first). Each result is checked against a float64
// reference built from the rounded inputs, and the test fails unless every
// variant of every kernel was reached. On a GPU older than sm_80 the plans
// on tensor cores are skipped, each a subtest that says so, and the
// variants only they reach are logged as not run.
func TestForwardHalfPlannedVariants(t *testing.T) {
	_, huge, tiny := plannedDevices(t)
	rng := rand.New(rand.NewPCG(95, 96))
	reached, skipped := map[string]bool{}, map[string]bool{}
	noMMA := tensorCoresAbsent()
	type shape struct{ n, in, out, r int }
	var shapes []shape
	for _, n := range []int{1, 2, 5, 9, 16, 17, 31, 33, 63, 65} {
		shapes = append(shapes, shape{n, 520, 13, 3}, shape{n, 257, 130, 0})
	}
	shapes = append(shapes, shape{129, 96, 129, 16}, shape{4, 1027, 17, 16}, shape{17, 100, 125, 3},
		shape{17, 1400, 20, 3}, shape{40, 1704, 13, 2}, shape{100, 4104, 13, 3}, shape{130, 40, 131, 33})
	const wd DType = -1 // W's dtype
	ios := [][2]DType{{F32, F32}, {wd, wd}, {wd, F32}, {F32, wd}, {F16, BF16}}
	i := 0
	for _, d := range []plan.Device{plan.H200, huge, tiny, plan.V100} {
		planDev = func() plan.Device { return d }
		for _, sh := range shapes {
			for _, wdt := range []DType{F16, BF16} {
				io := ios[i%len(ios)]
				i++
				xdt, ydt := io[0], io[1]
				if xdt == wd {
					xdt = wdt
				}
				if ydt == wd {
					ydt = wdt
				}
				ty := plan.Types{W: plan.Elem(wdt), X: plan.Elem(xdt), Y: plan.Elem(ydt)}
				f := plan.ForwardPlanOf(d, sh.n, sh.in, sh.out, sh.r, ty)
				name := fmt.Sprintf("%s/n=%d,in=%d,out=%d,r=%d/W=%v,x=%v,y=%v", d.Name, sh.n, sh.in, sh.out, sh.r, wdt, xdt, ydt)
				if f.MMA && noMMA != "" {
					skipMMA(t, name, f, skipped)
					continue
				}
				for _, l := range f.Launches() {
					reached[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
				}
				if f.MMA && d.Name == plan.H200.Name && f.Main.Padding() > 0.5 && f.Main.Waves(d) < 1 {
					reached["tensor cores by modelled time"] = true
				}
				if xdt != F32 && !f.MMA || ydt != F32 && !f.Fused {
					reached["lora_convert"] = true
				}
				checkHalfForward(t, name, rng, sh.n, sh.in, sh.out, sh.r, wdt, xdt, ydt)
			}
		}
	}
	// The tensor cores with a rank term, x and y in W's dtype, for both.
	planDev = func() plan.Device { return tiny }
	for _, wdt := range []DType{F16, BF16} {
		f := plan.ForwardPlanOf(tiny, 130, 72, 150, 5, plan.Types{W: plan.Elem(wdt), X: plan.Elem(wdt), Y: plan.Elem(wdt)})
		name := "tiny/n=130,in=72,out=150,r=5/" + wdt.String()
		if f.MMA && noMMA != "" {
			skipMMA(t, name, f, skipped)
			continue
		}
		for _, l := range f.Launches() {
			reached[fmt.Sprintf("%s split=%v", l.Kernel.Name, l.Split > 1)] = true
		}
		checkHalfForward(t, name, rng, 130, 72, 150, 5, wdt, wdt, wdt)
	}
	// want fails t unless a shape reached k, or, on a GPU older than sm_80,
	// only the plans on tensor cores (skipped) would have.
	want := func(k string) {
		t.Helper()
		switch {
		case reached[k]:
		case skipped[k]:
			t.Logf("%s not run: %s", k, noMMA)
		default:
			t.Errorf("no shape reached %s", k)
		}
	}
	for _, dt := range []string{"_f16", "_bf16"} {
		for _, k := range []string{
			"lora_forward_small split=false", "lora_forward_small split=true",
			"lora_forward_m16 split=false", "lora_forward_m16 split=true",
			"lora_forward_m32 split=false", "lora_forward_m32 split=true",
			"lora_forward_m64 split=false", "lora_forward_m64 split=true",
			"lora_forward_tiled split=false", "lora_forward_mma split=false",
			"lora_shrink split=false", "lora_forward_reduce split=false",
		} {
			name, split, _ := strings.Cut(k, " ")
			want(name + dt + " " + split)
		}
		// x in W's dtype, read as it is at small n.
		if k := "lora_forward_small" + dt + "_x" + dt[1:]; !reached[k+" split=false"] || !reached[k+" split=true"] {
			t.Errorf("no shape reached %s with and without a split", k)
		}
	}
	if !reached["lora_convert"] {
		t.Error("no shape staged x or y")
	}
	// The H200 takes the tensor cores wherever their modelled time is the
	// least, past the padding and wave rules of the CUDA-core tiles.
	if !reached["tensor cores by modelled time"] {
		if noMMA != "" {
			t.Logf("the tensor cores by modelled time not run: %s", noMMA)
		} else {
			t.Error("no shape on the H200 reached the tensor cores with most of a tile padding and a partial wave")
		}
	}
}

// checkHalfForward runs Forward (r > 0) or Linear (r = 0) with W, x and y
// of the given dtypes on random data and compares with a float64 reference
// from the rounded inputs: within the error bound of fp32 sums of that
// length, plus one rounding of y to its dtype.
func checkHalfForward(t *testing.T, name string, rng *rand.Rand, n, in, out, r int, wdt, xdt, ydt DType) {
	t.Helper()
	x, xb := halfOperand(rng, xdt, n*in, 1)
	w, wb := halfOperand(rng, wdt, out*in, 1)
	a, b := reftest.Uniform(rng, r*in, 1), reftest.Uniform(rng, out*r, 1)
	const s = 0.75
	mx, mw := newMatrixDT(t, xdt, n, in, x, xb), newMatrixDT(t, wdt, out, in, w, wb)
	my := newMatrixDT(t, ydt, n, out, make([]float32, n*out), make([]uint16, n*out))
	var err error
	if r == 0 {
		err = Linear(my, mx, mw)
	} else {
		ma, mb := devMatrix(t, r, in, a), devMatrix(t, out, r, b)
		var l *Layer
		l, err = NewLayerFrom(mw, ma, mb, s)
		if err == nil {
			err = l.Forward(my, mx)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	got := make([]float32, n*out)
	if err := my.Read(got); err != nil {
		t.Fatal(err)
	}
	want, mag := reftest.Forward(reftest.Shape{N: n, In: in, Out: out, R: r}, s, x, w, a, b)
	// fp32 sums of in + r terms (and the staged T), then, for a half y, one
	// rounding of the float32 result to y's dtype (reftest.Tol). The tensor
	// cores truncate as they add (up to a unit in the last place an
	// addition, not half of one): twice the bound for the in terms of x·Wᵀ
	// where the plan is theirs.
	terms := in + r + 40
	ty := plan.Types{W: plan.Elem(wdt), X: plan.Elem(xdt), Y: plan.Elem(ydt)}
	if plan.ForwardPlanOf(planDev(), n, in, out, r, ty).MMA {
		terms += in
	}
	e32 := float64(terms) * reftest.U32
	reftest.Check(t, name+": y", got, want, func(i int) float64 {
		if ydt == F32 {
			return e32 * mag[i]
		}
		return reftest.Tol(dtFormatOf(ydt), want[i], e32*mag[i])
	})
}
