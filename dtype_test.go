package lora

// Half precision on every backend: run with `go test`, `go test -tags purego`
// and `go test -tags cudaemu`. Every expected bit pattern is either written
// out below or computed by dtFormat, a float64 model of the formats that
// shares no code with the package; every expected value is a float64
// reference computed from the operands as they are stored (read back), and
// every tolerance is derived in the comment next to it.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

var dtAll = []DType{F32, F16, BF16}

// dtFormat is a binary floating-point format: p significand bits (the
// leading one included) and emin, emax the exponents of the smallest normal
// and of the largest finite values. The exponent bias is emax.
type dtFormat struct{ p, emin, emax int }

func dtFormatOf(dt DType) dtFormat {
	switch dt {
	case F16:
		return dtFormat{11, -14, 15}
	case BF16:
		return dtFormat{8, -126, 127}
	}
	return dtFormat{24, -126, 127}
}

// largest returns the largest finite value, (2 − 2^(1−p))·2^emax.
func (f dtFormat) largest() float64 { return (2 - math.Ldexp(1, 1-f.p)) * math.Ldexp(1, f.emax) }

// ulp returns the spacing of the format's numbers at |v|: 2^(e−p+1) for v in
// [2^e, 2^(e+1)), and the subnormal spacing below 2^emin.
func (f dtFormat) ulp(v float64) float64 {
	e := f.emin
	if v = math.Abs(v); v >= math.Ldexp(1, f.emin) && !math.IsInf(v, 0) {
		_, x := math.Frexp(v) // v = m·2^x, m in [0.5, 1)
		e = max(x-1, f.emin)
	}
	return math.Ldexp(1, e-f.p+1)
}

// round rounds v to the format, to nearest, ties to even; a result beyond
// the largest finite value is ±Inf. |v|/ulp and its product by ulp are exact
// in float64 (powers of two), so the only rounding is RoundToEven's.
func (f dtFormat) round(v float64) float64 {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return v
	}
	q := f.ulp(v)
	r := math.RoundToEven(math.Abs(v)/q) * q
	if r > f.largest() {
		r = math.Inf(1)
	}
	return math.Copysign(r, v)
}

// encode returns the 16-bit pattern of v, which must be a value of the
// format (a result of round), NaN or ±Inf: sign, 16−p exponent bits, p−1
// fraction bits.
func (f dtFormat) encode(v float64) uint16 {
	var sign uint16
	if math.Signbit(v) {
		sign = 0x8000
	}
	mb := uint(f.p - 1)
	expOnes := uint16(1)<<(15-mb) - 1
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return sign | expOnes<<mb | 1<<(mb-1)
	case math.IsInf(v, 0):
		return sign | expOnes<<mb
	case a < math.Ldexp(1, f.emin):
		return sign | uint16(a/math.Ldexp(1, f.emin-int(mb)))
	}
	_, e := math.Frexp(a)
	e--
	frac := a/math.Ldexp(1, e) - 1
	return sign | uint16(e+f.emax)<<mb | uint16(frac*math.Ldexp(1, int(mb)))
}

// decode returns the value of the 16-bit pattern h.
func (f dtFormat) decode(h uint16) float64 {
	mb := uint(f.p - 1)
	expOnes := 1<<(15-mb) - 1
	e := int(h>>mb) & expOnes
	frac := float64(h & (1<<mb - 1))
	var v float64
	switch e {
	case 0:
		v = frac * math.Ldexp(1, f.emin-int(mb))
	case expOnes:
		v = math.Inf(1)
		if frac != 0 {
			v = math.NaN()
		}
	default:
		v = (1 + frac/math.Ldexp(1, int(mb))) * math.Ldexp(1, e-f.emax)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// dtGamma bounds the relative error of a float32 sum of k products,
// k·u/(1−k·u) with u = 2⁻²⁴ (Higham's γₖ), doubled to leave room for fused
// multiply-adds and sums reordered into blocks, as the kernels do.
func dtGamma(k int) float64 {
	const u = 0x1p-24
	return 2 * float64(k) * u / (1 - float64(k)*u)
}

// dtTol is the bound on |got − want| for an element computed in float32
// with error at most e32 and then rounded once to dt: e32 plus half an ulp of
// dt at |want| + e32, an upper bound on the float32 result's magnitude (the
// float32 result may lie in the binade above want's). For an F32 output the
// half ulp is already inside e32 (γₖ counts the final rounding); adding it
// again only loosens the bound by one rounding.
func dtTol(dt DType, want, e32 float64) float64 {
	return e32 + 0.5*dtFormatOf(dt).ulp(math.Abs(want)+e32)
}

// dtCheck fails unless each got[i] is within dtTol(dt, want[i], gam·mag[i]).
func dtCheck(t testing.TB, what string, dt DType, got []float32, want, mag []float64, gam float64) {
	t.Helper()
	bad := 0
	for i := range got {
		tol := dtTol(dt, want[i], gam*mag[i])
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			if bad < 3 {
				t.Errorf("%s (%v) [%d] = %g, want %g (error %.3g, bound %.3g)", what, dt, i, got[i], want[i], d, tol)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s (%v): %d of %d elements out of bound", what, dt, bad, len(got))
	}
}

// dtRand returns n normal values times scale, as float32.
func dtRand(rng *rand.Rand, n int, scale float64) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * scale)
	}
	return s
}

// dtNew returns a zero rows×cols matrix of dt, freed when the test ends.
func dtNew(t testing.TB, dt DType, rows, cols int) *Matrix {
	t.Helper()
	m, err := NewMatrixOf(dt, rows, cols)
	if err != nil {
		t.Fatalf("NewMatrixOf(%v, %d, %d): %v", dt, rows, cols, err)
	}
	t.Cleanup(m.Free)
	return m
}

// dtOperand returns a rows×cols matrix of dt holding data (rounded by
// Write) and the values it stores, read back.
func dtOperand(t testing.TB, dt DType, rows, cols int, data []float32) (*Matrix, []float64) {
	t.Helper()
	m := dtNew(t, dt, rows, cols)
	if err := m.Write(data); err != nil {
		t.Fatalf("Write into %v %d×%d: %v", dt, rows, cols, err)
	}
	return m, dtF64(dtRead(t, m))
}

// dtOutput returns a rows×cols matrix of dt filled with NaN, so that an
// element an operation fails to write shows.
func dtOutput(t testing.TB, dt DType, rows, cols int) *Matrix {
	t.Helper()
	m := dtNew(t, dt, rows, cols)
	nan := make([]float32, rows*cols)
	for i := range nan {
		nan[i] = float32(math.NaN())
	}
	if err := m.Write(nan); err != nil {
		t.Fatalf("Write NaN into %v: %v", dt, err)
	}
	return m
}

func dtRead(t testing.TB, m *Matrix) []float32 {
	t.Helper()
	r, c := m.Dims()
	v := make([]float32, r*c)
	if err := m.Read(v); err != nil {
		t.Fatalf("Read: %v", err)
	}
	return v
}

func dtReadBits(t testing.TB, m *Matrix) []uint16 {
	t.Helper()
	r, c := m.Dims()
	v := make([]uint16, r*c)
	if err := m.ReadBits(v); err != nil {
		t.Fatalf("ReadBits: %v", err)
	}
	return v
}

func dtF64(v []float32) []float64 {
	d := make([]float64, len(v))
	for i, x := range v {
		d[i] = float64(x)
	}
	return d
}

// dtBits returns the stored bits of m, of any dtype: the float32 patterns of
// an F32 matrix, the 16-bit patterns of a half one.
func dtBits(t testing.TB, m *Matrix) []uint32 {
	t.Helper()
	var b []uint32
	if m.DType() == F32 {
		for _, v := range dtRead(t, m) {
			b = append(b, math.Float32bits(v))
		}
		return b
	}
	for _, v := range dtReadBits(t, m) {
		b = append(b, uint32(v))
	}
	return b
}

// dtSnapshot holds the stored bits of matrices, to check they did not change.
type dtSnapshot struct {
	names []string
	ms    []*Matrix
	bits  [][]uint32
}

// dtSnap records the bits of matrices given as name, matrix pairs.
func dtSnap(t testing.TB, pairs ...any) *dtSnapshot {
	t.Helper()
	s := &dtSnapshot{}
	for i := 0; i < len(pairs); i += 2 {
		m := pairs[i+1].(*Matrix)
		s.names = append(s.names, pairs[i].(string))
		s.ms = append(s.ms, m)
		s.bits = append(s.bits, dtBits(t, m))
	}
	return s
}

func (s *dtSnapshot) unchanged(t testing.TB, when string) {
	t.Helper()
	for i, m := range s.ms {
		now := dtBits(t, m)
		for j := range now {
			if now[j] != s.bits[i][j] {
				t.Errorf("%s: %s (%v) [%d] changed: %#x, was %#x", when, s.names[i], m.DType(), j, now[j], s.bits[i][j])
				break
			}
		}
	}
}

// dtWantErr fails unless err wraps want and starts with "lora: op".
func dtWantErr(t testing.TB, what string, err, want error, op string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, want)
		return
	}
	if !strings.HasPrefix(err.Error(), "lora: "+op) {
		t.Errorf("%s: error %q, want it to start with %q", what, err, "lora: "+op)
	}
}

// dtEmulated reports whether the kernels run under the CPU emulator, where
// they are slow: tests run fewer shapes there.
func dtEmulated() bool { return Backend() == "cudaemu" }

// ---------------------------------------------------------------------------
// 1. DType, NewMatrixOf

func TestDTypeNames(t *testing.T) {
	for _, c := range []struct {
		dt   DType
		name string
		size int
	}{{F32, "f32", 4}, {F16, "f16", 2}, {BF16, "bf16", 2}} {
		if got := c.dt.String(); got != c.name {
			t.Errorf("DType %d: String() = %q, want %q", int(c.dt), got, c.name)
		}
		if got := c.dt.Size(); got != c.size {
			t.Errorf("%v.Size() = %d, want %d", c.dt, got, c.size)
		}
	}
	for _, d := range []DType{3, -1, 100} {
		if got, want := d.String(), fmt.Sprintf("DType(%d)", int(d)); got != want {
			t.Errorf("DType(%d).String() = %q, want %q", int(d), got, want)
		}
	}
	var nilM *Matrix
	if got := nilM.DType(); got != F32 {
		t.Errorf("nil Matrix: DType() = %v, want f32", got)
	}
	if got := (&Matrix{}).DType(); got != F32 {
		t.Errorf("zero Matrix: DType() = %v, want f32", got)
	}
	for _, f := range []func() (*Matrix, error){
		func() (*Matrix, error) { return NewMatrix(2, 3) },
		func() (*Matrix, error) { return NewMatrixFrom(2, 3, make([]float32, 6)) },
	} {
		m, err := f()
		if err != nil {
			t.Fatal(err)
		}
		if m.DType() != F32 {
			t.Errorf("NewMatrix/NewMatrixFrom: DType() = %v, want f32", m.DType())
		}
		m.Free()
	}
}

func TestDTypeNewMatrixOf(t *testing.T) {
	for _, dt := range dtAll {
		for _, sh := range []struct{ r, c int }{{1, 1}, {3, 7}, {37, 45}} {
			m := dtNew(t, dt, sh.r, sh.c)
			if r, c := m.Dims(); r != sh.r || c != sh.c {
				t.Errorf("NewMatrixOf(%v, %d, %d): Dims %d×%d", dt, sh.r, sh.c, r, c)
			}
			if m.DType() != dt {
				t.Errorf("NewMatrixOf(%v): DType() = %v", dt, m.DType())
			}
			// Zero-filled: +0 in every element, bit for bit.
			for i, b := range dtBits(t, m) {
				if b != 0 {
					t.Fatalf("NewMatrixOf(%v, %d, %d): element %d has bits %#x, want 0", dt, sh.r, sh.c, i, b)
				}
			}
		}
		for _, sh := range []struct{ r, c int }{{0, 3}, {3, 0}, {-1, 2}, {2, -5}, {1 << 30, 1 << 30}} {
			m, err := NewMatrixOf(dt, sh.r, sh.c)
			if m != nil {
				t.Errorf("NewMatrixOf(%v, %d, %d) returned a matrix", dt, sh.r, sh.c)
			}
			dtWantErr(t, fmt.Sprintf("NewMatrixOf(%v, %d, %d)", dt, sh.r, sh.c), err, ErrShape, "NewMatrixOf")
		}
	}
	for _, d := range []DType{3, -1, 100} {
		m, err := NewMatrixOf(d, 2, 2)
		if m != nil {
			t.Errorf("NewMatrixOf(DType(%d)) returned a matrix", int(d))
		}
		dtWantErr(t, fmt.Sprintf("NewMatrixOf(DType(%d))", int(d)), err, ErrDType, "NewMatrixOf")
	}
}

// ---------------------------------------------------------------------------
// 2. Write's rounding, Read's widening, ReadBits and WriteBits

// dtRoundCase is a value and the pattern Write must store for it.
type dtRoundCase struct {
	what string
	v    float32
	bits uint16
}

// The cases, bit patterns written out. F16: sign, 5 exponent bits (bias 15),
// 10 fraction bits; 1.0 is 0x3C00, one ulp at 1 is 2⁻¹⁰, the smallest
// subnormal 2⁻²⁴ (0x0001), the largest finite 65504 (0x7BFF), with an ulp of
// 32 there, so 65520 is the tie with 65536 (overflow).
var dtF16Cases = []dtRoundCase{
	{"one", 1, 0x3C00},
	{"tie 1+2⁻¹¹ down to even", 1 + 0x1p-11, 0x3C00},
	{"tie 1+3·2⁻¹¹ up to even", 1 + 3*0x1p-11, 0x3C02},
	{"just above a tie", 1 + 0x1p-11 + 0x1p-23, 0x3C01},
	{"just below a tie", 1 + 3*0x1p-11 - 0x1p-23, 0x3C01},
	{"negative tie down to even", -(1 + 0x1p-11), 0xBC00},
	{"negative tie up to even", -(1 + 3*0x1p-11), 0xBC02},
	{"tie 2+2⁻¹⁰ in the next binade", 2 + 0x1p-10, 0x4000},
	{"tie 1−2⁻¹² below one: up to even 1", 1 - 0x1p-12, 0x3C00},
	{"tie 1−3·2⁻¹² below one: down to even", 1 - 3*0x1p-12, 0x3BFE},
	{"smallest subnormal", 0x1p-24, 0x0001},
	{"half the smallest subnormal: tie to +0", 0x1p-25, 0x0000},
	{"just above half the smallest subnormal", 0x1p-25 + 0x1p-40, 0x0001},
	{"quarter of the smallest subnormal", 0x1p-26, 0x0000},
	{"subnormal tie 3·2⁻²⁵ up to even 2", 3 * 0x1p-25, 0x0002},
	{"subnormal tie 5·2⁻²⁵ down to even 2", 5 * 0x1p-25, 0x0002},
	{"negative half the smallest subnormal: −0", -0x1p-25, 0x8000},
	{"largest subnormal", 1023 * 0x1p-24, 0x03FF},
	{"smallest normal", 0x1p-14, 0x0400},
	{"tie between the largest subnormal and the smallest normal", 1023.5 * 0x1p-24, 0x0400},
	{"largest finite", 65504, 0x7BFF},
	{"negative largest finite", -65504, 0xFBFF},
	{"65519.99 rounds to the largest finite", 65519.99, 0x7BFF},
	{"65519 rounds to the largest finite", 65519, 0x7BFF},
	{"−65519.99 rounds to the negative largest finite", -65519.99, 0xFBFF},
	{"tie 65488 down to even 65472", 65488, 0x7BFE},
	{"+Inf", float32(math.Inf(1)), 0x7C00},
	{"−Inf", float32(math.Inf(-1)), 0xFC00},
	{"+0", 0, 0x0000},
	{"−0", float32(math.Copysign(0, -1)), 0x8000},
	{"float32 subnormal to +0", 0x1p-149, 0x0000},
}

// BF16: float32's sign and 8 exponent bits, 7 fraction bits (a float32's top
// half); one ulp at 1 is 2⁻⁷, the smallest subnormal 2⁻¹³³ (0x0001), the
// largest finite 0x1.fep127 (0x7F7F), with an ulp of 2¹²⁰ there, so
// 0x1.ffp127 = 0x1.fep127 + 2¹¹⁹ is the tie with 2¹²⁸ (overflow).
var dtBF16Cases = []dtRoundCase{
	{"one", 1, 0x3F80},
	{"tie 1+2⁻⁸ down to even", 1 + 0x1p-8, 0x3F80},
	{"tie 1+3·2⁻⁸ up to even", 1 + 3*0x1p-8, 0x3F82},
	{"just above a tie", 1 + 0x1p-8 + 0x1p-23, 0x3F81},
	{"just below a tie", 1 + 3*0x1p-8 - 0x1p-23, 0x3F81},
	{"negative tie down to even", -(1 + 0x1p-8), 0xBF80},
	{"negative tie up to even", -(1 + 3*0x1p-8), 0xBF82},
	{"tie 1−2⁻⁹ below one: up to even 1", 1 - 0x1p-9, 0x3F80},
	{"smallest subnormal", 0x1p-133, 0x0001},
	{"half the smallest subnormal: tie to +0", 0x1p-134, 0x0000},
	{"just above half the smallest subnormal", 0x1p-134 + 0x1p-149, 0x0001},
	{"subnormal tie 3·2⁻¹³⁴ up to even 2", 3 * 0x1p-134, 0x0002},
	{"subnormal tie 5·2⁻¹³⁴ down to even 2", 5 * 0x1p-134, 0x0002},
	{"negative half the smallest subnormal: −0", -0x1p-134, 0x8000},
	{"largest subnormal", 127 * 0x1p-133, 0x007F},
	{"smallest normal", 0x1p-126, 0x0080},
	{"tie between the largest subnormal and the smallest normal", 127.5 * 0x1p-133, 0x0080},
	{"largest finite", 0x1.fep127, 0x7F7F},
	{"just below the overflow tie rounds to the largest finite", 0x1.ffp127 - 0x1p104, 0x7F7F},
	{"negative, just below the overflow tie", -(0x1.ffp127 - 0x1p104), 0xFF7F},
	{"tie 0x1.fdp127 down to even 0x1.fcp127", 0x1.fdp127, 0x7F7E},
	{"+Inf", float32(math.Inf(1)), 0x7F80},
	{"−Inf", float32(math.Inf(-1)), 0xFF80},
	{"+0", 0, 0x0000},
	{"−0", float32(math.Copysign(0, -1)), 0x8000},
	{"float32 subnormal below half of bfloat16's smallest", 0x1p-149, 0x0000},
}

// dtOverflows are finite float32 values that overflow each dtype: Write
// refuses them.
var dtOverflows = map[DType][]float32{
	F16:  {65520, -65520, 65536, 1e5, -1e5, math.MaxFloat32},
	BF16: {0x1.ffp127, -0x1.ffp127, math.MaxFloat32, -math.MaxFloat32},
}

func TestDTypeWriteRounding(t *testing.T) {
	for dt, cases := range map[DType][]dtRoundCase{F16: dtF16Cases, BF16: dtBF16Cases} {
		f := dtFormatOf(dt)
		src := make([]float32, len(cases))
		for i, c := range cases {
			src[i] = c.v
			// The model agrees with the table (a check of the model, not of
			// the package).
			if got := f.encode(f.round(float64(c.v))); got != c.bits {
				t.Fatalf("test model: %v %s: %#04x, table says %#04x", dt, c.what, got, c.bits)
			}
		}
		// One row each, and all of them in one odd-shaped matrix.
		m := dtNew(t, dt, 1, len(cases))
		if err := m.Write(src); err != nil {
			t.Fatalf("%v: Write: %v", dt, err)
		}
		got := dtReadBits(t, m)
		back := dtRead(t, m)
		for i, c := range cases {
			if got[i] != c.bits {
				t.Errorf("%v: Write(%g) %s: stored %#04x, want %#04x", dt, c.v, c.what, got[i], c.bits)
			}
			// Read widens exactly: the value of the stored pattern, sign
			// of zero included.
			if want := float32(f.decode(got[i])); math.Float32bits(back[i]) != math.Float32bits(want) {
				t.Errorf("%v: Read of the stored %#04x = %g, want %g", dt, got[i], back[i], want)
			}
		}

		// NaN stays NaN: a pattern with all exponent bits and a nonzero
		// fraction, read back as a float32 NaN.
		mb := uint(f.p - 1)
		expMask := uint16(1)<<(15-mb) - 1
		n := dtNew(t, dt, 1, 3)
		if err := n.Write([]float32{float32(math.NaN()), float32(math.Copysign(math.NaN(), -1)), 1}); err != nil {
			t.Fatalf("%v: Write NaN: %v", dt, err)
		}
		nb := dtReadBits(t, n)
		for i, b := range nb[:2] {
			if b>>mb&expMask != expMask || b&(1<<mb-1) == 0 {
				t.Errorf("%v: Write(NaN) stored %#04x, not a NaN", dt, b)
			}
			if v := dtRead(t, n)[i]; !math.IsNaN(float64(v)) {
				t.Errorf("%v: Read of a stored NaN = %g", dt, v)
			}
		}
	}
}

// TestDTypeWriteTies writes, for every pair of neighbouring finite patterns p and
// p+1 of each half dtype (both signs), their midpoint (exact in float32:
// it needs p+1 significand bits) and its float32 neighbours: the midpoint
// must store the neighbour with an even last bit, the value just below it p
// and the one just above it p+1. This covers every binade, the subnormals and
// the step from the largest subnormal to the smallest normal.
func TestDTypeWriteTies(t *testing.T) {
	for _, dt := range []DType{F16, BF16} {
		f := dtFormatOf(dt)
		var src []float32
		var want []uint16
		for _, sign := range []uint16{0, 0x8000} {
			for p := uint16(0); p < 0x7FFF; p++ {
				lo, hi := f.decode(sign|p), f.decode(sign|(p+1))
				if math.IsInf(hi, 0) || math.IsNaN(hi) || math.IsNaN(lo) {
					continue // the last pair overflows: TestDTypeWriteOverflow
				}
				mid := (lo + hi) / 2
				m32 := float32(mid)
				if float64(m32) != mid {
					t.Fatalf("test model: midpoint %g of %#04x and %#04x is not a float32", mid, p, p+1)
				}
				even := sign | p
				if p&1 == 1 {
					even = sign | (p + 1)
				}
				towardLo := math.Nextafter32(m32, 0)
				awayHi := math.Nextafter32(m32, float32(math.Copysign(math.Inf(1), mid)))
				src = append(src, m32, towardLo, awayHi)
				want = append(want, even, sign|p, sign|(p+1))
			}
		}
		m := dtNew(t, dt, 3, len(src)/3)
		if err := m.Write(src); err != nil {
			t.Fatalf("%v: Write: %v", dt, err)
		}
		got := dtReadBits(t, m)
		bad := 0
		for i := range got {
			if got[i] != want[i] {
				if bad < 5 {
					t.Errorf("%v: Write(%g) stored %#04x, want %#04x", dt, src[i], got[i], want[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%v: %d of %d values rounded wrongly", dt, bad, len(got))
		}
	}
}

// TestDTypeWriteRandom writes random float32 patterns of every exponent (NaN and
// values that overflow the dtype left out) and compares with the model.
func TestDTypeWriteRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range []DType{F16, BF16} {
		f := dtFormatOf(dt)
		lim := f.largest() + f.ulp(f.largest())/2 // the overflow tie: refused from here
		var src []float32
		var want []uint16
		for len(src) < 30011 {
			v := math.Float32frombits(rng.Uint32())
			if dt == F16 && rng.IntN(2) == 0 {
				// Bring half of them into F16's range, subnormals included.
				v = float32(math.Ldexp(float64(v), -rng.IntN(100)))
				if math.Abs(float64(v)) > 1e5 {
					v = float32(math.Ldexp(rng.Float64()*2-1, rng.IntN(42)-26))
				}
			}
			if math.IsNaN(float64(v)) || !math.IsInf(float64(v), 0) && math.Abs(float64(v)) >= lim {
				continue
			}
			src = append(src, v)
			want = append(want, f.encode(f.round(float64(v))))
		}
		m := dtNew(t, dt, 1, len(src))
		if err := m.Write(src); err != nil {
			t.Fatalf("%v: Write: %v", dt, err)
		}
		got := dtReadBits(t, m)
		bad := 0
		for i := range got {
			if got[i] != want[i] {
				if bad < 5 {
					t.Errorf("%v: Write(%g) stored %#04x, want %#04x", dt, src[i], got[i], want[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%v: %d of %d values rounded wrongly", dt, bad, len(got))
		}
	}
}

// TestDTypeWriteOverflow: a finite value that would overflow the dtype is refused
// with ErrNonFinite and nothing is written, wherever it is in src; the same
// values go into an F32 matrix.
func TestDTypeWriteOverflow(t *testing.T) {
	for _, dt := range []DType{F16, BF16} {
		for _, bad := range dtOverflows[dt] {
			for _, at := range []int{0, 6, 10} {
				m := dtNew(t, dt, 1, 11)
				old := []uint16{1, 2, 3, 0x7BFF, 0x8000, 5, 6, 7, 8, 9, 0x7C00}
				if err := m.WriteBits(old); err != nil {
					t.Fatal(err)
				}
				src := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
				src[at] = bad
				err := m.Write(src)
				dtWantErr(t, fmt.Sprintf("%v: Write(%g at %d)", dt, bad, at), err, ErrNonFinite, "Write")
				if got := dtReadBits(t, m); !dtEqual16(got, old) {
					t.Errorf("%v: a refused Write(%g at %d) changed the matrix: %#04x, was %#04x", dt, bad, at, got, old)
				}
			}
			m32 := dtNew(t, F32, 1, 1)
			if err := m32.Write([]float32{bad}); err != nil {
				t.Errorf("F32: Write(%g): %v", bad, err)
			}
		}
	}
}

func dtEqual16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDTypeBitsRoundTrip stores every 16-bit pattern, NaN payloads and signalling
// NaNs included, with WriteBits: ReadBits returns each as it is, Read (and
// ReadAll) widens each exactly (NaN to a NaN), and Write of the widened
// value of every non-NaN pattern stores that pattern again.
func TestDTypeBitsRoundTrip(t *testing.T) {
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	for _, dt := range []DType{F16, BF16} {
		f := dtFormatOf(dt)
		m := dtNew(t, dt, 256, 256)
		if err := m.WriteBits(all); err != nil {
			t.Fatalf("%v: WriteBits: %v", dt, err)
		}
		if got := dtReadBits(t, m); !dtEqual16(got, all) {
			for i := range got {
				if got[i] != all[i] {
					t.Fatalf("%v: WriteBits then ReadBits: element %d is %#04x, wrote %#04x", dt, i, got[i], all[i])
				}
			}
		}
		vals := dtRead(t, m)
		all32, err := m.ReadAll()
		if err != nil {
			t.Fatalf("%v: ReadAll: %v", dt, err)
		}
		for i := range vals {
			if math.Float32bits(all32[i]) != math.Float32bits(vals[i]) {
				t.Fatalf("%v: ReadAll[%d] = %g, Read gives %g", dt, i, all32[i], vals[i])
			}
		}
		var finite []float32
		var pats []uint16
		for i, v := range vals {
			want := f.decode(uint16(i))
			if math.IsNaN(want) {
				if !math.IsNaN(float64(v)) {
					t.Fatalf("%v: Read of NaN pattern %#04x = %g", dt, i, v)
				}
				continue
			}
			if math.Float32bits(v) != math.Float32bits(float32(want)) {
				t.Fatalf("%v: Read of %#04x = %g (%#08x), want %g", dt, i, v, math.Float32bits(v), want)
			}
			finite = append(finite, v)
			pats = append(pats, uint16(i))
		}
		w := dtNew(t, dt, 1, len(finite))
		if err := w.Write(finite); err != nil {
			t.Fatalf("%v: Write of every widened pattern: %v", dt, err)
		}
		if got := dtReadBits(t, w); !dtEqual16(got, pats) {
			for i := range got {
				if got[i] != pats[i] {
					t.Fatalf("%v: Write(%g) stored %#04x, want %#04x", dt, finite[i], got[i], pats[i])
				}
			}
		}
	}
}

// TestDTypeBitsErrors: ReadBits and WriteBits refuse an F32 matrix (ErrDType), a
// wrong length (ErrShape), nil, zero and freed matrices, and change nothing.
func TestDTypeBitsErrors(t *testing.T) {
	f32 := dtNew(t, F32, 2, 3)
	if err := f32.Write([]float32{1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	snap := dtSnap(t, "m", f32)
	dtWantErr(t, "ReadBits of F32", f32.ReadBits(make([]uint16, 6)), ErrDType, "ReadBits")
	dtWantErr(t, "WriteBits of F32", f32.WriteBits(make([]uint16, 6)), ErrDType, "WriteBits")
	snap.unchanged(t, "WriteBits of F32")
	for _, dt := range []DType{F16, BF16} {
		m := dtNew(t, dt, 2, 3)
		old := []uint16{1, 2, 3, 4, 5, 6}
		if err := m.WriteBits(old); err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{0, 5, 7} {
			dtWantErr(t, fmt.Sprintf("%v: ReadBits len %d", dt, n), m.ReadBits(make([]uint16, n)), ErrShape, "ReadBits")
			dtWantErr(t, fmt.Sprintf("%v: WriteBits len %d", dt, n), m.WriteBits(make([]uint16, n)), ErrShape, "WriteBits")
		}
		dtWantErr(t, fmt.Sprintf("%v: ReadBits(nil)", dt), m.ReadBits(nil), ErrShape, "ReadBits")
		if got := dtReadBits(t, m); !dtEqual16(got, old) {
			t.Errorf("%v: a refused WriteBits changed the matrix: %#04x", dt, got)
		}
		for _, n := range []int{5, 7} {
			dtWantErr(t, fmt.Sprintf("%v: Write len %d", dt, n), m.Write(make([]float32, n)), ErrShape, "Write")
			dtWantErr(t, fmt.Sprintf("%v: Read len %d", dt, n), m.Read(make([]float32, n)), ErrShape, "Read")
		}
		if got := dtReadBits(t, m); !dtEqual16(got, old) {
			t.Errorf("%v: a refused Write changed the matrix: %#04x", dt, got)
		}
		m.Free()
		dtWantErr(t, fmt.Sprintf("%v: ReadBits after Free", dt), m.ReadBits(make([]uint16, 6)), ErrFreed, "ReadBits")
		dtWantErr(t, fmt.Sprintf("%v: WriteBits after Free", dt), m.WriteBits(make([]uint16, 6)), ErrFreed, "WriteBits")
	}
	var nilM *Matrix
	dtWantErr(t, "ReadBits of nil", nilM.ReadBits(nil), ErrNil, "ReadBits")
	dtWantErr(t, "WriteBits of nil", nilM.WriteBits(nil), ErrNil, "WriteBits")
	dtWantErr(t, "ReadBits of a zero Matrix", (&Matrix{}).ReadBits(nil), ErrNil, "ReadBits")
	dtWantErr(t, "WriteBits of a zero Matrix", (&Matrix{}).WriteBits(nil), ErrNil, "WriteBits")
}

// ---------------------------------------------------------------------------
// 3. Forward, Linear, Backward, MSE, Axpy and AddBias on every dtype

// dtShape is one layer problem: x is n×in, W out×in, rank r.
type dtShape struct{ n, in, out, r int }

func (s dtShape) String() string { return fmt.Sprintf("n=%d,in=%d,out=%d,r=%d", s.n, s.in, s.out, s.r) }

// dtShapes returns the layer shapes: odd, none a multiple of a tile, but
// for a few whose rows are whole vectors. full tells whether every
// combination of operand dtypes runs on that shape (see dtCombos). Under the
// emulator, where the kernels are slow, fewer shapes run; those reach, on
// the H200 the emulator plans for, the GPU's matrix-vector kernels (n ≤ 16)
// and its tiles of 16, 32 and 64 rows of x (n = 40, 17 and 70, 100).
func dtShapes() []struct {
	dtShape
	full bool
} {
	type sh = struct {
		dtShape
		full bool
	}
	s := []sh{
		{dtShape{1, 45, 37, 5}, true},
		{dtShape{3, 37, 45, 1}, true},
		{dtShape{17, 45, 37, 1}, false},
		{dtShape{17, 130, 67, 5}, false},
		{dtShape{70, 130, 67, 5}, false},
		{dtShape{100, 45, 37, 5}, false},
		// in a multiple of 8 (rows of 16-byte vectors of a half W, and of
		// float4), and out and r multiples of 4 (rows of dy, U): the
		// kernels' vector paths.
		{dtShape{3, 120, 37, 5}, false},
		{dtShape{40, 120, 40, 4}, false},
	}
	if !dtEmulated() {
		s = append(s,
			sh{dtShape{70, 45, 37, 1}, false},
			sh{dtShape{1, 130, 67, 1}, false},
			sh{dtShape{3, 130, 67, 5}, false},
			sh{dtShape{70, 120, 40, 4}, false},
			// Wide rows: more than one 256-column block of the
			// portable loops (W in several panels: TestDTypeSplit).
			sh{dtShape{3, 301, 37, 1}, false},
			sh{dtShape{17, 301, 37, 5}, false},
			sh{dtShape{17, 264, 72, 4}, false},
			sh{dtShape{1, 264, 67, 1}, false},
		)
	}
	return s
}

// dtCombos returns the dtype combinations of k operands: all 3^k when full,
// else three, in which each operand takes each dtype once (a Latin square
// over the operands), so every dtype of every operand still runs.
func dtCombos(k int, full bool) [][]DType {
	var out [][]DType
	if !full {
		for i := range 3 {
			c := make([]DType, k)
			for j := range c {
				c[j] = dtAll[(i+j)%3]
			}
			out = append(out, c)
		}
		return out
	}
	n := 1
	for range k {
		n *= 3
	}
	for i := range n {
		c := make([]DType, k)
		for j, v := 0, i; j < k; j, v = j+1, v/3 {
			c[j] = dtAll[v%3]
		}
		out = append(out, c)
	}
	return out
}

// dtLayer returns a layer on a W of wdt with F32 A and B (PEFT's init scale
// for A, B normal), scale s, and the stored values of W, A and B.
func dtLayer(t testing.TB, rng *rand.Rand, wdt DType, sh dtShape, s float32) (l *Layer, w *Matrix, wv, av, bv []float64) {
	t.Helper()
	w, wv = dtOperand(t, wdt, sh.out, sh.in, dtRand(rng, sh.out*sh.in, 1/math.Sqrt(float64(sh.in))))
	a, av := dtOperand(t, F32, sh.r, sh.in, dtRand(rng, sh.r*sh.in, 1/math.Sqrt(float64(sh.in))))
	b, bv := dtOperand(t, F32, sh.out, sh.r, dtRand(rng, sh.out*sh.r, 1))
	l, err := NewLayerFrom(w, a, b, s)
	if err != nil {
		t.Fatalf("NewLayerFrom with a %v W: %v", wdt, err)
	}
	t.Cleanup(l.Free)
	return l, w, wv, av, bv
}

// dtRefForward returns y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ in float64 (x·Wᵀ alone when
// a is nil) and the magnitudes Σ|x||W| + |s|·Σₖ(Σ|x||A|)·|B| that bound its
// float32 rounding.
func dtRefForward(sh dtShape, s float64, x, w, a, b []float64) (y, mag []float64) {
	n, in, out, r := sh.n, sh.in, sh.out, sh.r
	y, mag = make([]float64, n*out), make([]float64, n*out)
	t, tm := make([]float64, r), make([]float64, r)
	for i := range n {
		xi := x[i*in : (i+1)*in]
		if a != nil {
			for k := range r {
				var v, m float64
				for c, xv := range xi {
					v += xv * a[k*in+c]
					m += math.Abs(xv * a[k*in+c])
				}
				t[k], tm[k] = s*v, math.Abs(s)*m
			}
		}
		for j := range out {
			var v, m float64
			for c, xv := range xi {
				v += xv * w[j*in+c]
				m += math.Abs(xv * w[j*in+c])
			}
			if a != nil {
				for k := range r {
					v += t[k] * b[j*r+k]
					m += tm[k] * math.Abs(b[j*r+k])
				}
			}
			y[i*out+j], mag[i*out+j] = v, m
		}
	}
	return y, mag
}

// TestDTypeForward runs Forward (unmerged and merged) and Linear with every
// dtype of x, y and W. Bounds: the unmerged y is a float32 sum of in
// products plus r adapter terms, each of those a sum of in products, plus the
// scale and the final add: γ(in+r+3) of the magnitudes; x·Wᵀ is a sum of in
// products: γ(in+1). Either rounded once more to y's dtype (dtTol). The
// merged Forward is checked against W as it is stored after Merge.
func TestDTypeForward(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, sh := range dtShapes() {
		for _, wdt := range dtAll {
			for _, c := range dtCombos(2, sh.full) {
				xdt, ydt := c[0], c[1]
				seed := rng.Uint64()
				t.Run(fmt.Sprintf("%v/W=%v,x=%v,y=%v", sh.dtShape, wdt, xdt, ydt), func(t *testing.T) {
					dtCheckForward(t, rand.New(rand.NewPCG(seed, 1)), sh.dtShape, wdt, xdt, ydt)
				})
			}
		}
	}
}

func dtCheckForward(t *testing.T, rng *rand.Rand, sh dtShape, wdt, xdt, ydt DType) {
	const s = 0.75
	l, w, wv, av, bv := dtLayer(t, rng, wdt, sh, s)
	x, xv := dtOperand(t, xdt, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
	y := dtOutput(t, ydt, sh.n, sh.out)
	ins := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x)

	if err := l.Forward(y, x); err != nil {
		t.Fatalf("Forward: %v", err)
	}
	want, mag := dtRefForward(sh, s, xv, wv, av, bv)
	dtCheck(t, "Forward y", ydt, dtRead(t, y), want, mag, dtGamma(sh.in+sh.r+3))

	y2 := dtOutput(t, ydt, sh.n, sh.out)
	if err := Linear(y2, x, w); err != nil {
		t.Fatalf("Linear: %v", err)
	}
	want, mag = dtRefForward(sh, s, xv, wv, nil, nil)
	dtCheck(t, "Linear y", ydt, dtRead(t, y2), want, mag, dtGamma(sh.in+1))
	ins.unchanged(t, "after Forward and Linear")

	if err := l.Merge(); err != nil {
		t.Fatalf("Merge: %v", err)
	}
	wm := dtF64(dtRead(t, w))
	y3 := dtOutput(t, ydt, sh.n, sh.out)
	if err := l.Forward(y3, x); err != nil {
		t.Fatalf("merged Forward: %v", err)
	}
	want, mag = dtRefForward(sh, s, xv, wm, nil, nil)
	dtCheck(t, "merged Forward y", ydt, dtRead(t, y3), want, mag, dtGamma(sh.in+1))
	if err := l.Unmerge(); err != nil {
		t.Fatalf("Unmerge: %v", err)
	}
}

// dtRefBackward returns dA, dB and dx in float64 from their formulas (dx
// without the adapter term when merged: dy·W alone, W then holding the
// merged weight), with the magnitudes of their terms, for dy and x of the
// shape sh.
func dtRefBackward(sh dtShape, s float64, dy, x, w, a, b []float64, merged bool) (dA, dB, dx, magA, magB, magX []float64) {
	n, in, out, r := sh.n, sh.in, sh.out, sh.r
	t, tm := make([]float64, n*r), make([]float64, n*r) // x·Aᵀ, Σ|x||A|
	u, um := make([]float64, n*r), make([]float64, n*r) // dy·B, Σ|dy||B|
	for i := range n {
		for k := range r {
			for c := range in {
				t[i*r+k] += x[i*in+c] * a[k*in+c]
				tm[i*r+k] += math.Abs(x[i*in+c] * a[k*in+c])
			}
			for j := range out {
				u[i*r+k] += dy[i*out+j] * b[j*r+k]
				um[i*r+k] += math.Abs(dy[i*out+j] * b[j*r+k])
			}
		}
	}
	dB, magB = make([]float64, out*r), make([]float64, out*r)
	for j := range out {
		for k := range r {
			for i := range n {
				dB[j*r+k] += s * dy[i*out+j] * t[i*r+k]
				magB[j*r+k] += math.Abs(s) * math.Abs(dy[i*out+j]) * tm[i*r+k]
			}
		}
	}
	dA, magA = make([]float64, r*in), make([]float64, r*in)
	for k := range r {
		for c := range in {
			for i := range n {
				dA[k*in+c] += s * u[i*r+k] * x[i*in+c]
				magA[k*in+c] += math.Abs(s) * um[i*r+k] * math.Abs(x[i*in+c])
			}
		}
	}
	dx, magX = make([]float64, n*in), make([]float64, n*in)
	for i := range n {
		for c := range in {
			for j := range out {
				dx[i*in+c] += dy[i*out+j] * w[j*in+c]
				magX[i*in+c] += math.Abs(dy[i*out+j] * w[j*in+c])
			}
			if merged {
				continue
			}
			for k := range r {
				dx[i*in+c] += s * u[i*r+k] * a[k*in+c]
				magX[i*in+c] += math.Abs(s) * um[i*r+k] * math.Abs(a[k*in+c])
			}
		}
	}
	return dA, dB, dx, magA, magB, magX
}

// TestDTypeBackward runs Backward with every dtype of dx, dy, x and W,
// unmerged and merged, dA and dB F32. Bounds, as in the F32 suite: dA is a
// float32 sum over n of terms that are each a sum over out (U = dy·B), with
// the scale: γ(out+n+3); dB likewise over n and in: γ(in+n+3); dx a sum of
// out products plus r adapter terms each a sum of out products: γ(out+r+3).
// dx is rounded once more to its dtype (dtTol). On a merged layer dx is
// dy·W with W as stored after Merge, and its bound γ(out+1).
func TestDTypeBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, sh := range dtShapes() {
		for _, wdt := range dtAll {
			for _, c := range dtCombos(3, sh.full) {
				dxdt, dydt, xdt := c[0], c[1], c[2]
				seed := rng.Uint64()
				t.Run(fmt.Sprintf("%v/W=%v,dx=%v,dy=%v,x=%v", sh.dtShape, wdt, dxdt, dydt, xdt), func(t *testing.T) {
					dtCheckBackward(t, rand.New(rand.NewPCG(seed, 2)), sh.dtShape, wdt, dxdt, dydt, xdt)
				})
			}
		}
	}
}

func dtCheckBackward(t *testing.T, rng *rand.Rand, sh dtShape, wdt, dxdt, dydt, xdt DType) {
	const s = 0.75
	l, w, wv, av, bv := dtLayer(t, rng, wdt, sh, s)
	x, xv := dtOperand(t, xdt, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
	dy, dyv := dtOperand(t, dydt, sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
	for _, merged := range []bool{false, true} {
		if merged {
			if err := l.Merge(); err != nil {
				t.Fatalf("Merge: %v", err)
			}
			wv = dtF64(dtRead(t, w))
		}
		dA, dB := dtOutput(t, F32, sh.r, sh.in), dtOutput(t, F32, sh.out, sh.r)
		dx := dtOutput(t, dxdt, sh.n, sh.in)
		ins := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x, "dy", dy)
		if err := l.Backward(dx, dA, dB, dy, x); err != nil {
			t.Fatalf("merged=%v: Backward: %v", merged, err)
		}
		ins.unchanged(t, fmt.Sprintf("merged=%v: after Backward", merged))
		wantA, wantB, wantX, magA, magB, magX := dtRefBackward(sh, s, dyv, xv, wv, av, bv, merged)
		what := fmt.Sprintf("merged=%v ", merged)
		gotA, gotB := dtRead(t, dA), dtRead(t, dB)
		dtCheck(t, what+"dA", F32, gotA, wantA, magA, dtGamma(sh.out+sh.n+3))
		dtCheck(t, what+"dB", F32, gotB, wantB, magB, dtGamma(sh.in+sh.n+3))
		gx := dtGamma(sh.out + sh.r + 3)
		if merged {
			gx = dtGamma(sh.out + 1)
		}
		dtCheck(t, what+"dx", dxdt, dtRead(t, dx), wantX, magX, gx)

		// Without dx: dA and dB bit for bit the same.
		if dxdt == dydt {
			dA2, dB2 := dtOutput(t, F32, sh.r, sh.in), dtOutput(t, F32, sh.out, sh.r)
			if err := l.Backward(nil, dA2, dB2, dy, x); err != nil {
				t.Fatalf("%sBackward without dx: %v", what, err)
			}
			for name, p := range map[string][2][]float32{"dA": {gotA, dtRead(t, dA2)}, "dB": {gotB, dtRead(t, dB2)}} {
				for i := range p[0] {
					if math.Float32bits(p[0][i]) != math.Float32bits(p[1][i]) {
						t.Fatalf("%s%s[%d] = %g without dx, %g with dx", what, name, i, p[1][i], p[0][i])
					}
				}
			}
		}
	}
	if err := l.Unmerge(); err != nil {
		t.Fatalf("Unmerge: %v", err)
	}
}

// TestDTypeGradientsF32: dA and dB must be F32 in Backward and in the
// optimizers' Step; A and B of NewLayerFrom too; NewLayer on a half W makes
// F32 A and B, and a fresh layer's Forward equals Linear (B = 0).
func TestDTypeGradientsF32(t *testing.T) {
	rng := rand.New(rand.NewPCG(43, 44))
	sh := dtShape{3, 13, 11, 2}
	for _, wdt := range dtAll {
		l, w, _, _, _ := dtLayer(t, rng, wdt, sh, 0.5)
		x, _ := dtOperand(t, F16, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
		dy, _ := dtOperand(t, BF16, sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
		for _, hdt := range []DType{F16, BF16} {
			dx := dtOutput(t, F16, sh.n, sh.in)
			okA, okB := dtOutput(t, F32, sh.r, sh.in), dtOutput(t, F32, sh.out, sh.r)
			hA, hB := dtOutput(t, hdt, sh.r, sh.in), dtOutput(t, hdt, sh.out, sh.r)
			outs := dtSnap(t, "dx", dx, "dA", okA, "dB", okB, "half dA", hA, "half dB", hB, "A", l.A(), "B", l.B())
			what := fmt.Sprintf("W %v, %v", wdt, hdt)
			dtWantErr(t, what+": Backward with a half dA", l.Backward(dx, hA, okB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": Backward with a half dB", l.Backward(dx, okA, hB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": Backward without dx, a half dA", l.Backward(nil, hA, okB, dy, x), ErrDType, "Backward")
			dtWantErr(t, what+": AdamW.Step with a half dA", NewAdamW(1e-3).Step(l, hA, okB), ErrDType, "AdamW.Step")
			dtWantErr(t, what+": AdamW.Step with a half dB", NewAdamW(1e-3).Step(l, okA, hB), ErrDType, "AdamW.Step")
			dtWantErr(t, what+": SGD.Step with a half dA", NewSGD(1e-3).Step(l, hA, okB), ErrDType, "SGD.Step")
			dtWantErr(t, what+": SGD.Step with a half dB", NewSGD(1e-3).Step(l, okA, hB), ErrDType, "SGD.Step")
			outs.unchanged(t, what+": refused Backward and Step")

			a, _ := dtOperand(t, hdt, sh.r, sh.in, dtRand(rng, sh.r*sh.in, 1))
			b, _ := dtOperand(t, hdt, sh.out, sh.r, dtRand(rng, sh.out*sh.r, 1))
			a32, _ := dtOperand(t, F32, sh.r, sh.in, dtRand(rng, sh.r*sh.in, 1))
			b32, _ := dtOperand(t, F32, sh.out, sh.r, dtRand(rng, sh.out*sh.r, 1))
			bad, err := NewLayerFrom(w, a, b32, 1)
			dtWantErr(t, what+": NewLayerFrom with a half A", err, ErrDType, "NewLayerFrom")
			bad.Free()
			bad, err = NewLayerFrom(w, a32, b, 1)
			dtWantErr(t, what+": NewLayerFrom with a half B", err, ErrDType, "NewLayerFrom")
			bad.Free()
		}
		// The gradients with F32 dA and dB (and the F16 dx) are taken.
		dA, dB := dtOutput(t, F32, sh.r, sh.in), dtOutput(t, F32, sh.out, sh.r)
		if err := l.Backward(dtOutput(t, F16, sh.n, sh.in), dA, dB, dy, x); err != nil {
			t.Errorf("W %v: Backward with F32 dA, dB: %v", wdt, err)
		}
		if err := NewSGD(1e-3).Step(l, dA, dB); err != nil {
			t.Errorf("W %v: SGD.Step with F32 dA, dB: %v", wdt, err)
		}

		nl, err := NewLayer(w, Config{Rank: 3, Seed: 7})
		if err != nil {
			t.Fatalf("NewLayer on a %v W: %v", wdt, err)
		}
		t.Cleanup(nl.Free)
		if nl.A().DType() != F32 || nl.B().DType() != F32 {
			t.Errorf("NewLayer on a %v W: A is %v, B is %v, want f32", wdt, nl.A().DType(), nl.B().DType())
		}
		// B = 0: Forward computes x·Wᵀ + 0, each element the same float32
		// sum as Linear's up to the kernels' order; both within their bound
		// of the same reference, so compare them with twice that bound.
		yf, yl := dtOutput(t, F32, sh.n, sh.out), dtOutput(t, F32, sh.n, sh.out)
		if err := nl.Forward(yf, x); err != nil {
			t.Fatalf("NewLayer on a %v W: Forward: %v", wdt, err)
		}
		if err := Linear(yl, x, w); err != nil {
			t.Fatal(err)
		}
		xv, wv := dtF64(dtRead(t, x)), dtF64(dtRead(t, w))
		want, mag := dtRefForward(sh, 0, xv, wv, nil, nil)
		dtCheck(t, "fresh layer's Forward", F32, dtRead(t, yf), want, mag, dtGamma(sh.in+sh.r+3))
		dtCheck(t, "Linear", F32, dtRead(t, yl), want, mag, dtGamma(sh.in+1))
	}
}

// TestDTypeMSE runs MSE with every dtype of dy, y and target. Bounds: the
// loss is a sum of n·m squares of float32 differences (each off by 3
// roundings relative at most), summed in float32 at worst and divided: γ(n·m+4)
// relative to the loss, all terms being positive; each element of dy is
// c·(y − t) with c = float32(2/(n·m)): three roundings, γ(3) relative, then
// rounded once to dy's dtype.
func TestDTypeMSE(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	shapes := []struct {
		n, m int
		full bool
	}{{3, 37, true}, {1, 45, true}, {70, 67, false}}
	for _, sh := range shapes {
		for _, c := range dtCombos(3, sh.full) {
			dydt, ydt, tdt := c[0], c[1], c[2]
			t.Run(fmt.Sprintf("%d×%d/dy=%v,y=%v,target=%v", sh.n, sh.m, dydt, ydt, tdt), func(t *testing.T) {
				y, yv := dtOperand(t, ydt, sh.n, sh.m, dtRand(rng, sh.n*sh.m, 1))
				tg, tv := dtOperand(t, tdt, sh.n, sh.m, dtRand(rng, sh.n*sh.m, 1))
				dy := dtOutput(t, dydt, sh.n, sh.m)
				count := float64(sh.n * sh.m)
				var sum float64
				want, mag := make([]float64, len(yv)), make([]float64, len(yv))
				for i := range yv {
					d := yv[i] - tv[i]
					sum += d * d
					want[i] = 2 * d / count
					mag[i] = math.Abs(want[i])
				}
				ins := dtSnap(t, "y", y, "target", tg)
				loss, err := MSE(dy, y, tg)
				if err != nil {
					t.Fatalf("MSE: %v", err)
				}
				wantLoss := sum / count
				if d := math.Abs(float64(loss) - wantLoss); !(d <= dtGamma(sh.n*sh.m+4)*wantLoss) {
					t.Errorf("loss = %g, want %g (error %.3g)", loss, wantLoss, d)
				}
				dtCheck(t, "MSE dy", dydt, dtRead(t, dy), want, mag, dtGamma(3))
				ins.unchanged(t, "after MSE")
				loss2, err := MSE(nil, y, tg)
				if err != nil {
					t.Fatalf("MSE without dy: %v", err)
				}
				if loss2 != loss {
					t.Errorf("loss without dy = %g, with dy %g", loss2, loss)
				}
			})
		}
	}
}

// TestDTypeAxpyAddBias runs Axpy and AddBias with every dtype of y and x (or
// bias). Bounds: y + α·x is a product and a sum, two float32 roundings
// (one with a fused multiply-add): γ(2) of |y| + |α·x|; y + bias one
// rounding, γ(1); then one rounding to y's dtype.
func TestDTypeAxpyAddBias(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	for _, sh := range []struct{ n, m int }{{1, 37}, {17, 45}, {70, 67}} {
		for _, c := range dtCombos(2, true) {
			ydt, xdt := c[0], c[1]
			t.Run(fmt.Sprintf("%d×%d/y=%v,x=%v", sh.n, sh.m, ydt, xdt), func(t *testing.T) {
				const alpha = -0.6875
				y, yv := dtOperand(t, ydt, sh.n, sh.m, dtRand(rng, sh.n*sh.m, 1))
				x, xv := dtOperand(t, xdt, sh.n, sh.m, dtRand(rng, sh.n*sh.m, 3))
				want, mag := make([]float64, len(yv)), make([]float64, len(yv))
				for i := range yv {
					want[i] = yv[i] + alpha*xv[i]
					mag[i] = math.Abs(yv[i]) + math.Abs(alpha*xv[i])
				}
				ins := dtSnap(t, "x", x)
				if err := Axpy(y, alpha, x); err != nil {
					t.Fatalf("Axpy: %v", err)
				}
				dtCheck(t, "Axpy y", ydt, dtRead(t, y), want, mag, dtGamma(2))
				ins.unchanged(t, "after Axpy")

				y2, y2v := dtOperand(t, ydt, sh.n, sh.m, dtRand(rng, sh.n*sh.m, 1))
				bias, bv := dtOperand(t, xdt, 1, sh.m, dtRand(rng, sh.m, 2))
				for i := range y2v {
					want[i] = y2v[i] + bv[i%sh.m]
					mag[i] = math.Abs(y2v[i]) + math.Abs(bv[i%sh.m])
				}
				if err := AddBias(y2, bias); err != nil {
					t.Fatalf("AddBias: %v", err)
				}
				dtCheck(t, "AddBias y", ydt, dtRead(t, y2), want, mag, dtGamma(1))
			})
		}
	}
}

// TestDTypeOutputOverflow: a computed output beyond its dtype's range
// becomes ±Inf, as in PyTorch (only Write refuses), and one just below the
// overflow tie rounds to the largest finite value. The sums are exact in
// float32 (multiples of 2⁻⁶ below 2²⁴·2⁻⁶), so each output is the model's
// rounding of the exact value: x = [1024, 1024] against rows of W.
func TestDTypeOutputOverflow(t *testing.T) {
	wrows := [][2]float32{{100, 100}, {32, 31.984375}, {32, 31.9765625}, {-100, -100}, {-32, -31.984375}}
	w := make([]float32, 0, 2*len(wrows))
	for _, r := range wrows {
		w = append(w, r[0], r[1])
	}
	for _, wdt := range dtAll {
		for _, ydt := range []DType{F16, BF16} {
			wm, _ := dtOperand(t, wdt, len(wrows), 2, w)
			x, _ := dtOperand(t, F16, 1, 2, []float32{1024, 1024})
			y := dtOutput(t, ydt, 1, len(wrows))
			if err := Linear(y, x, wm); err != nil {
				t.Fatalf("W %v, y %v: Linear: %v", wdt, ydt, err)
			}
			f := dtFormatOf(ydt)
			got := dtReadBits(t, y)
			wv := dtF64(dtRead(t, wm))
			for i := range wrows {
				want := f.encode(f.round(1024*wv[2*i] + 1024*wv[2*i+1]))
				if got[i] != want {
					t.Errorf("W %v, y %v: y[%d] is %#04x, want %#04x", wdt, ydt, i, got[i], want)
				}
			}
		}
	}
	// F16 y: 65504 + 16 through Axpy is +Inf; Forward over the layer too.
	y, _ := dtOperand(t, F16, 1, 2, []float32{65504, -65504})
	x, _ := dtOperand(t, F32, 1, 2, []float32{16, -15})
	if err := Axpy(y, 1, x); err != nil {
		t.Fatalf("Axpy: %v", err)
	}
	if got := dtReadBits(t, y); got[0] != 0x7C00 || got[1] != 0xFBFF {
		t.Errorf("F16 Axpy: 65504 + 16, −65504 − 15 stored %#04x, want [0x7c00 0xfbff]", got)
	}
}

// TestDTypeSplit runs the half-W paths of the CPU backend above the size at
// which it splits work among goroutines (2¹⁶ multiply-adds), with
// GOMAXPROCS at 7 so that the shares are several and uneven: Forward at n
// = 1 and 3 (rows of W in groups of four) and 20 (two panels of W), Linear,
// Backward, and Merge's exact rounding, with the bounds of the tests above.
func TestDTypeSplit(t *testing.T) {
	if Backend() != "cpu" {
		t.Skip("the split among goroutines is the CPU backend's")
	}
	old := runtime.GOMAXPROCS(7)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	rng := rand.New(rand.NewPCG(91, 92))
	for _, sh := range []dtShape{{1, 700, 263, 16}, {3, 251, 263, 9}, {20, 130, 600, 8}} {
		for _, wdt := range []DType{F16, BF16} {
			xdt, ydt := BF16, F32
			if sh.n == 3 {
				xdt, ydt = F32, F16
			}
			t.Run(fmt.Sprintf("%v/W=%v", sh, wdt), func(t *testing.T) {
				dtCheckForward(t, rng, sh, wdt, xdt, ydt)
				dtCheckBackward(t, rng, sh, wdt, ydt, xdt, xdt)

				w, _ := dtOperand(t, wdt, sh.out, sh.in, dtSpread(rng, sh.out*sh.in))
				w32, _ := dtOperand(t, F32, sh.out, sh.in, dtRead(t, w))
				adata, bdata := dtRand(rng, sh.r*sh.in, 1/math.Sqrt(float64(sh.in))), dtRand(rng, sh.out*sh.r, 1)
				for _, m := range []*Matrix{w, w32} {
					a, _ := dtOperand(t, F32, sh.r, sh.in, adata)
					b, _ := dtOperand(t, F32, sh.out, sh.r, bdata)
					l, err := NewLayerFrom(m, a, b, 1.5)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(l.Free)
					if err := l.Merge(); err != nil {
						t.Fatalf("Merge on %v W: %v", m.DType(), err)
					}
				}
				dtSameAsRounded(t, "Merge", dtFormatOf(wdt), dtReadBits(t, w), dtRead(t, w32))
			})
		}
	}
}

// TestDTypeConcurrent runs Forward and Backward with half operands from
// several goroutines at once on one layer over a half W, each with its own
// operands: every result must equal, bit for bit, the same call made alone
// (the float32 stand-ins of half operands are per call).
func TestDTypeConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(93, 94))
	sh := dtShape{5, 45, 37, 3}
	l, _, _, _, _ := dtLayer(t, rng, BF16, sh, 0.5)
	const workers = 6
	type job struct {
		x, dy, y, dx, dA, dB *Matrix
		y0, dx0, dA0, dB0    []uint32
	}
	jobs := make([]*job, workers)
	for i := range jobs {
		j := &job{}
		j.x, _ = dtOperand(t, dtAll[i%3], sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
		j.dy, _ = dtOperand(t, dtAll[(i+1)%3], sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
		j.y = dtOutput(t, dtAll[(i+2)%3], sh.n, sh.out)
		j.dx = dtOutput(t, dtAll[(i+1)%3], sh.n, sh.in)
		j.dA, j.dB = dtOutput(t, F32, sh.r, sh.in), dtOutput(t, F32, sh.out, sh.r)
		if err := l.Forward(j.y, j.x); err != nil {
			t.Fatal(err)
		}
		if err := l.Backward(j.dx, j.dA, j.dB, j.dy, j.x); err != nil {
			t.Fatal(err)
		}
		j.y0, j.dx0, j.dA0, j.dB0 = dtBits(t, j.y), dtBits(t, j.dx), dtBits(t, j.dA), dtBits(t, j.dB)
		jobs[i] = j
	}
	errs := make(chan error, workers)
	for _, j := range jobs {
		go func() {
			for range 5 {
				if err := l.Forward(j.y, j.x); err != nil {
					errs <- err
					return
				}
				if err := l.Backward(j.dx, j.dA, j.dB, j.dy, j.x); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := Sync(); err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		for _, c := range []struct {
			name string
			m    *Matrix
			want []uint32
		}{{"y", j.y, j.y0}, {"dx", j.dx, j.dx0}, {"dA", j.dA, j.dA0}, {"dB", j.dB, j.dB0}} {
			got := dtBits(t, c.m)
			for k := range got {
				if got[k] != c.want[k] {
					t.Errorf("goroutine %d: %s (%v) [%d] is %#x run concurrently, %#x alone", i, c.name, c.m.DType(), k, got[k], c.want[k])
					break
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// 4. Merge and Unmerge on a half W

// dtMergeRef returns W + c·B·A in float64 from the stored values, the
// update c·B·A alone, and the magnitudes |W| + |c|·Σₖ|B||A|.
func dtMergeRef(out, in, r int, c float64, w, a, b []float64) (merged, delta, mag []float64) {
	merged, delta, mag = make([]float64, out*in), make([]float64, out*in), make([]float64, out*in)
	for i := range out {
		for j := range in {
			var d, m float64
			for k := range r {
				d += b[i*r+k] * a[k*in+j]
				m += math.Abs(b[i*r+k] * a[k*in+j])
			}
			delta[i*in+j] = c * d
			merged[i*in+j] = w[i*in+j] + c*d
			mag[i*in+j] = math.Abs(w[i*in+j]) + math.Abs(c)*m
		}
	}
	return merged, delta, mag
}

// dtSpread returns n values, normal with a scale that varies over 2^±4, so
// that W's elements fall in several binades.
func dtSpread(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Ldexp(rng.NormFloat64(), rng.IntN(9)-4))
	}
	return v
}

// TestDTypeMerge merges into a half W and checks, per element:
//
//   - exactly round(float32 result): a layer on an F32 copy of W (the stored
//     values, widened) merged on the same backend gives the float32 result of
//     the same arithmetic; rounded by the model to W's dtype, it must equal
//     the half W's bits. Unmerge likewise, through a layer of scale −s on an
//     F32 copy of the merged W (Unmerge adds c = −s).
//   - against float64: the float32 result is within γ(r+2) of |W| + |s|·Σ|B||A|
//     (the rounding of s·B[i,k], r products and sums, and the add, doubled
//     as in dtGamma), then rounded once to W's dtype (dtTol).
//   - Merge then Unmerge: within one ulp of W's dtype at max(|W|, |s·B·A|),
//     the contract; 100 cycles: within two. The ulp is taken at that
//     maximum grown by the float32 error of the update, γ(r+2)·|s|·Σ|B||A|
//     (the float32 update may exceed the float64 one by as much), and the
//     bound gets the float32 error of both operations, 2·γ(r+2) of the
//     magnitudes, for the float32 sums that are not on W's grid.
func TestDTypeMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(71, 72))
	shapes := []dtShape{{1, 45, 37, 5}, {1, 130, 67, 1}, {1, 130, 67, 5}, {1, 120, 67, 5}}
	if !dtEmulated() {
		shapes = append(shapes, dtShape{1, 301, 450, 5})
	}
	for _, wdt := range []DType{F16, BF16} {
		f := dtFormatOf(wdt)
		for _, sh := range shapes {
			t.Run(fmt.Sprintf("%v/%v", wdt, sh), func(t *testing.T) {
				const s = 3.7 // a large update makes the roundings show
				out, in, r := sh.out, sh.in, sh.r
				w, w0 := dtOperand(t, wdt, out, in, dtSpread(rng, out*in))
				adata, bdata := dtRand(rng, r*in, 1/math.Sqrt(float64(in))), dtRand(rng, out*r, 1)
				a, av := dtOperand(t, F32, r, in, adata)
				b, bv := dtOperand(t, F32, out, r, bdata)
				l, err := NewLayerFrom(w, a, b, s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l.Free)
				// The F32 twin: same stored W, same A and B.
				w32, _ := dtOperand(t, F32, out, in, dtRead(t, w))
				a2, _ := dtOperand(t, F32, r, in, adata)
				b2, _ := dtOperand(t, F32, out, r, bdata)
				l32, err := NewLayerFrom(w32, a2, b2, s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(l32.Free)

				if err := l.Merge(); err != nil {
					t.Fatalf("Merge: %v", err)
				}
				if !l.Merged() {
					t.Fatal("Merged() is false after Merge")
				}
				if err := l32.Merge(); err != nil {
					t.Fatalf("Merge of the F32 twin: %v", err)
				}
				merged := dtReadBits(t, w)
				dtSameAsRounded(t, "Merge", f, merged, dtRead(t, w32))
				want, delta, mag := dtMergeRef(out, in, r, s, w0, av, bv)
				dtCheck(t, "merged W", wdt, dtRead(t, w), want, mag, dtGamma(r+2))

				// Unmerge, and its exact twin: scale −s on an F32 copy of the merged W.
				wm32, _ := dtOperand(t, F32, out, in, dtRead(t, w))
				a3, _ := dtOperand(t, F32, r, in, adata)
				b3, _ := dtOperand(t, F32, out, r, bdata)
				lu, err := NewLayerFrom(wm32, a3, b3, -s)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(lu.Free)
				if err := l.Unmerge(); err != nil {
					t.Fatalf("Unmerge: %v", err)
				}
				if l.Merged() {
					t.Fatal("Merged() is true after Unmerge")
				}
				if err := lu.Merge(); err != nil {
					t.Fatal(err)
				}
				dtSameAsRounded(t, "Unmerge", f, dtReadBits(t, w), dtRead(t, wm32))

				dtRestored(t, "after Merge, Unmerge", f, dtRead(t, w), w0, delta, mag, sh.r, 1)
				for range 99 {
					if err := l.Merge(); err != nil {
						t.Fatalf("Merge: %v", err)
					}
					if err := l.Unmerge(); err != nil {
						t.Fatalf("Unmerge: %v", err)
					}
				}
				worst := dtRestored(t, "after 100 cycles", f, dtRead(t, w), w0, delta, mag, sh.r, 2)
				t.Logf("%v: after 100 cycles, the largest change is %.2f ulps of max(|W|, |s·B·A|)", wdt, worst)
			})
		}
	}
}

// dtSameAsRounded fails unless got (a half W's bits) is the model's rounding
// of the float32 results r32, element by element.
func dtSameAsRounded(t *testing.T, what string, f dtFormat, got []uint16, r32 []float32) {
	t.Helper()
	bad := 0
	for i, v := range r32 {
		if want := f.encode(f.round(float64(v))); got[i] != want {
			if bad < 3 {
				t.Errorf("%s: W[%d] is %#04x, the float32 result %g rounds to %#04x", what, i, got[i], v, want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements are not the float32 result rounded once", what, bad, len(got))
	}
}

// dtRestored fails unless every element of got is within maxULP ulps (of the
// format, at max(|W|, |s·B·A|) grown by the update's float32 error) of w0,
// plus the float32 error of the two operations (see TestDTypeMerge), and
// returns the largest change in those ulps.
func dtRestored(t *testing.T, what string, f dtFormat, got []float32, w0, delta, mag []float64, r int, maxULP float64) float64 {
	t.Helper()
	worst := 0.0
	g := dtGamma(r + 2)
	for i, v := range got {
		dmag := mag[i] - math.Abs(w0[i]) // |s|·Σ|B||A|
		u := f.ulp(math.Max(math.Abs(w0[i]), math.Abs(delta[i])+g*dmag))
		e := math.Abs(float64(v) - w0[i])
		worst = math.Max(worst, e/u)
		if !(e <= maxULP*u+2*g*mag[i]) {
			t.Errorf("%s: W[%d] = %g, was %g, update %g: %.2f ulps off, bound %g", what, i, v, w0[i], delta[i], e/u, maxULP)
			return worst
		}
	}
	return worst
}

// dtTinyLayer returns a layer on a 3×5 W of dt holding w, with rank 1,
// A = e₂ (only column 2 nonzero, 1) and B = b, scale 1: W[i,2] gets + b[i]
// exactly (b[i]·1 is exact in float32), the other elements + 0.
func dtTinyLayer(t *testing.T, dt DType, w []float32, b [3]float32) (*Layer, *Matrix) {
	t.Helper()
	wm, _ := dtOperand(t, dt, 3, 5, w)
	a, _ := dtOperand(t, F32, 1, 5, []float32{0, 0, 1, 0, 0})
	bm, _ := dtOperand(t, F32, 3, 1, b[:])
	l, err := NewLayerFrom(wm, a, bm, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Free)
	return l, wm
}

// TestDTypeMergeOverflow: Merge refuses (ErrNonFinite, W bit-identical, the
// layer not merged) an update whose float32 result is finite but rounds to
// ±Inf in W's dtype, and the same update on an F32 W succeeds. Both ways of
// proving the result finite run: the bound (max|W| + |s|·max_i Σ|B|·max|A|,
// against W's dtype's largest finite) and, when the bound is too coarse, the
// exact check of every element; one element just below the limit with a
// large bound elsewhere goes through the exact check and is accepted.
func TestDTypeMergeOverflow(t *testing.T) {
	one := func(v float32) []float32 { // a 3×5 W of ones with W[1,2] = v
		w := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
		w[7] = v
		return w
	}
	f16max, bf16max := float32(65504), float32(0x1.fep127)
	for _, c := range []struct {
		what   string
		dt     DType
		w      []float32
		b      [3]float32
		refuse bool
		want   uint16 // W[1,2] after Merge when accepted
	}{
		// F16: 65504 + 16 = 65520 is exact in float32 and the tie that rounds
		// to +Inf in F16; 65504 + 15 rounds back to 65504 (exact check, the
		// bound being above 65504); −65504 − 16 to −Inf.
		{"F16 max + 16 overflows", F16, one(f16max), [3]float32{0, 16, 0}, true, 0},
		{"F16 −max − 16 overflows", F16, one(-f16max), [3]float32{0, -16, 0}, true, 0},
		{"F16 max + 15.99 rounds to max", F16, one(f16max), [3]float32{0, 15.99, 0}, false, 0x7BFF},
		{"F16 max − 16 with a large bound", F16, one(f16max), [3]float32{1000, -16, 0}, false, 0x7BFE},
		{"F16 max + 0 with a large update elsewhere", F16, one(f16max), [3]float32{30000, 0, 0}, false, 0x7BFF},
		{"F16 large update elsewhere overflows", F16, one(f16max), [3]float32{65520 - 1, 0, 0}, true, 0},
		// The bound proves it: max|W| = 60000, update 100.
		{"F16 bound proves finite", F16, one(60000), [3]float32{0, 100, 50}, false, 0x7B56},
		// BF16: 0x1.fep127 + 2¹¹⁹ = 0x1.ffp127, a float32, rounds to +Inf;
		// + 2¹¹⁸ rounds back to the largest finite.
		{"BF16 max + half ulp overflows", BF16, one(bf16max), [3]float32{0, 0x1p119, 0}, true, 0},
		{"BF16 −max − half ulp overflows", BF16, one(-bf16max), [3]float32{0, -0x1p119, 0}, true, 0},
		{"BF16 max + quarter ulp rounds to max", BF16, one(bf16max), [3]float32{0, 0x1p118, 0}, false, 0x7F7F},
		{"BF16 bound proves finite", BF16, one(0x1p126), [3]float32{0, 0x1p120, 0}, false, 0x7E82},
	} {
		t.Run(c.what, func(t *testing.T) {
			l, w := dtTinyLayer(t, c.dt, c.w, c.b)
			before := dtReadBits(t, w)
			err := l.Merge()
			if c.refuse {
				dtWantErr(t, "Merge", err, ErrNonFinite, "Merge")
				if got := dtReadBits(t, w); !dtEqual16(got, before) {
					t.Errorf("a refused Merge changed W: %#04x, was %#04x", got, before)
				}
				if l.Merged() {
					t.Error("Merged() is true after a refused Merge")
				}
				// The same update on an F32 W is finite: accepted.
				l32, w32 := dtTinyLayer(t, F32, c.w, c.b)
				if err := l32.Merge(); err != nil {
					t.Errorf("the same Merge on an F32 W: %v", err)
				}
				if got, want := dtRead(t, w32)[7], c.w[7]+c.b[1]; got != want {
					t.Errorf("F32 W[1,2] = %g after Merge, want %g", got, want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Merge: %v", err)
			}
			got := dtReadBits(t, w)
			if got[7] != c.want {
				t.Errorf("W[1,2] is %#04x after Merge, want %#04x", got[7], c.want)
			}
			// Every element: the model's rounding of w + b·1 (one rounding
			// from float64; the float32 sum's extra rounding, in the 15.99
			// case only, is far from a tie of W's dtype).
			f := dtFormatOf(c.dt)
			for i, v := range c.w {
				want := f.encode(f.round(float64(v) + float64(c.b[i/5])*float64(dtBtoi(i%5 == 2))))
				if got[i] != want {
					t.Errorf("W[%d] is %#04x after Merge, want %#04x", i, got[i], want)
				}
			}
		})
	}
}

// TestDTypeMergeOverflowLarge: on a W of 450 rows (several parts for the
// backends' passes over W), the only element near F16's limit, 65504, is
// the one where the update's only nonzero element lands: at the very end,
// and inside a row of a W whose rows are whole 16-byte vectors (the
// kernels' vector path). 65504 + 16 is refused, W bit-identical; 65504 − 16
// is accepted (65488, a tie, rounds to the even 65472, 0x7BFE).
func TestDTypeMergeOverflowLarge(t *testing.T) {
	const out = 450
	for _, pos := range []struct{ in, row, col int }{{301, out - 1, 300}, {304, 300, 16}, {304, 7, 303}} {
		for _, c := range []struct {
			b      float32
			refuse bool
		}{{16, true}, {-16, false}} {
			in := pos.in
			what := fmt.Sprintf("450×%d, W[%d,%d] = 65504, update %g", in, pos.row, pos.col, c.b)
			wd := make([]float32, out*in)
			for i := range wd {
				wd[i] = float32(i%7) - 3
			}
			at := pos.row*in + pos.col
			wd[at] = 65504
			w, _ := dtOperand(t, F16, out, in, wd)
			ad := make([]float32, in)
			ad[pos.col] = 1
			bd := make([]float32, out)
			bd[pos.row] = c.b
			a, _ := dtOperand(t, F32, 1, in, ad)
			b, _ := dtOperand(t, F32, out, 1, bd)
			l, err := NewLayerFrom(w, a, b, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Free)
			before := dtReadBits(t, w)
			err = l.Merge()
			got := dtReadBits(t, w)
			if c.refuse {
				dtWantErr(t, what, err, ErrNonFinite, "Merge")
				if !dtEqual16(got, before) {
					t.Errorf("%s: a refused Merge changed W", what)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: Merge: %v", what, err)
			}
			want := append([]uint16(nil), before...)
			want[at] = 0x7BFE
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%s: W[%d] is %#04x after Merge, want %#04x", what, i, got[i], want[i])
				}
			}
		}
	}
}

// TestDTypeMergeNonFiniteW: a half W holding ±Inf or a NaN (any payload,
// signalling ones included) in its last element is refused by Merge with
// ErrNonFinite, W bit-identical, even when the update there is zero.
func TestDTypeMergeNonFiniteW(t *testing.T) {
	const out, in = 450, 301
	for dt, pats := range map[DType][]uint16{
		F16:  {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x7FFF},
		BF16: {0x7F80, 0xFF80, 0x7FC0, 0x7F81, 0xFFC1, 0xFFFF},
	} {
		for _, p := range pats {
			w := dtNew(t, dt, out, in)
			bits := make([]uint16, out*in)
			for i := range bits {
				bits[i] = 0x3C00 // 1 in F16, 1.171875 in BF16
			}
			bits[out*in-1] = p
			if err := w.WriteBits(bits); err != nil {
				t.Fatal(err)
			}
			a, _ := dtOperand(t, F32, 1, in, dtRand(rand.New(rand.NewPCG(uint64(p), 1)), in, 0.1))
			b, _ := dtOperand(t, F32, out, 1, make([]float32, out))
			l, err := NewLayerFrom(w, a, b, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Free)
			dtWantErr(t, fmt.Sprintf("%v: Merge of a W holding %#04x", dt, p), l.Merge(), ErrNonFinite, "Merge")
			if got := dtReadBits(t, w); !dtEqual16(got, bits) {
				t.Errorf("%v: a refused Merge of a W holding %#04x changed W", dt, p)
			}
			if l.Merged() {
				t.Errorf("%v: Merged() is true after a refused Merge", dt)
			}
		}
	}
}

func dtBtoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestDTypeMergeBoundFollowsWrites: Merge's cached bound on max|W| must not
// outlive a write. After a Merge/Unmerge cycle on small values (the bound
// known and small), W[1,2] is set to F16's largest finite by WriteBits (or
// Write); the next Merge, adding 16 there, must be refused, not written as
// +Inf through a stale bound. Likewise Unmerge after a write into a merged W.
func TestDTypeMergeBoundFollowsWrites(t *testing.T) {
	for _, how := range []string{"WriteBits", "Write"} {
		t.Run(how, func(t *testing.T) {
			w0 := []float32{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
			l, w := dtTinyLayer(t, F16, w0, [3]float32{0, 16, 0})
			for range 2 {
				if err := l.Merge(); err != nil {
					t.Fatal(err)
				}
				if err := l.Unmerge(); err != nil {
					t.Fatal(err)
				}
			}
			set := func(v float32, bits uint16) {
				var err error
				if how == "WriteBits" {
					cur := dtReadBits(t, w)
					cur[7] = bits
					err = w.WriteBits(cur)
				} else {
					cur := dtRead(t, w)
					cur[7] = v
					err = w.Write(cur)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			set(65504, 0x7BFF)
			before := dtReadBits(t, w)
			dtWantErr(t, "Merge after "+how, l.Merge(), ErrNonFinite, "Merge")
			if got := dtReadBits(t, w); !dtEqual16(got, before) {
				t.Errorf("a refused Merge changed W: %#04x, was %#04x", got, before)
			}
			if l.Merged() {
				t.Error("Merged() is true after a refused Merge")
			}
			// Unmerge: merge on ones, then write −65504 where −16 goes.
			set(1, 0x3C00)
			if err := l.Merge(); err != nil {
				t.Fatal(err)
			}
			set(-65504, 0xFBFF)
			before = dtReadBits(t, w)
			dtWantErr(t, "Unmerge after "+how, l.Unmerge(), ErrNonFinite, "Unmerge")
			if got := dtReadBits(t, w); !dtEqual16(got, before) {
				t.Errorf("a refused Unmerge changed W: %#04x, was %#04x", got, before)
			}
			if !l.Merged() {
				t.Error("Merged() is false after a refused Unmerge")
			}
		})
	}
}

// TestDTypeBank: a Bank takes F32 only, for now: NewBank over a half W,
// Add of a half A or B and Forward with a half x or y are refused with
// ErrDType, the half y untouched.
func TestDTypeBank(t *testing.T) {
	rng := rand.New(rand.NewPCG(95, 96))
	const n, in, out, r = 3, 13, 11, 2
	for _, dt := range []DType{F16, BF16} {
		hw, _ := dtOperand(t, dt, out, in, dtRand(rng, out*in, 1))
		bk, err := NewBank(hw, BankConfig{MaxRank: r, Capacity: 2})
		if bk != nil {
			t.Errorf("NewBank over a %v W returned a Bank", dt)
		}
		dtWantErr(t, fmt.Sprintf("NewBank over a %v W", dt), err, ErrDType, "NewBank")

		w, _ := dtOperand(t, F32, out, in, dtRand(rng, out*in, 1))
		bk, err = NewBank(w, BankConfig{MaxRank: r, Capacity: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(bk.Free)
		a32, _ := dtOperand(t, F32, r, in, dtRand(rng, r*in, 1))
		b32, _ := dtOperand(t, F32, out, r, dtRand(rng, out*r, 1))
		ah, _ := dtOperand(t, dt, r, in, dtRand(rng, r*in, 1))
		bh, _ := dtOperand(t, dt, out, r, dtRand(rng, out*r, 1))
		_, err = bk.Add(ah, b32, 1)
		dtWantErr(t, fmt.Sprintf("Bank.Add of a %v A", dt), err, ErrDType, "Bank.Add")
		_, err = bk.Add(a32, bh, 1)
		dtWantErr(t, fmt.Sprintf("Bank.Add of a %v B", dt), err, ErrDType, "Bank.Add")
		id, err := bk.Add(a32, b32, 1)
		if err != nil {
			t.Fatal(err)
		}
		x32, _ := dtOperand(t, F32, n, in, dtRand(rng, n*in, 1))
		xh, _ := dtOperand(t, dt, n, in, dtRand(rng, n*in, 1))
		y32 := dtOutput(t, F32, n, out)
		yh := dtOutput(t, dt, n, out)
		snap := dtSnap(t, "F32 y", y32, "half y", yh)
		ids := []int32{int32(id), -1, int32(id)}
		dtWantErr(t, fmt.Sprintf("Bank.Forward with a %v x", dt), bk.Forward(y32, xh, ids), ErrDType, "Bank.Forward")
		dtWantErr(t, fmt.Sprintf("Bank.Forward with a %v y", dt), bk.Forward(yh, x32, ids), ErrDType, "Bank.Forward")
		snap.unchanged(t, "refused Bank.Forward")
		if err := bk.Forward(y32, x32, ids); err != nil {
			t.Errorf("Bank.Forward, all F32: %v", err)
		}
	}
}

// ---------------------------------------------------------------------------
// 5. Errors leave every output untouched

// TestDTypeErrorsLeaveOutputs: a refused call with half-precision operands
// (staged through float32) writes none of its outputs.
func TestDTypeErrorsLeaveOutputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(81, 82))
	sh := dtShape{3, 13, 11, 2}
	for _, wdt := range dtAll {
		for _, iodt := range []DType{F16, BF16} {
			name := fmt.Sprintf("W=%v,io=%v", wdt, iodt)
			l, w, _, _, _ := dtLayer(t, rng, wdt, sh, 0.5)
			x, _ := dtOperand(t, iodt, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
			xBad, _ := dtOperand(t, iodt, sh.n, sh.in+1, dtRand(rng, sh.n*(sh.in+1), 1))
			y, _ := dtOperand(t, iodt, sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
			yBad, _ := dtOperand(t, iodt, sh.n+1, sh.out, dtRand(rng, (sh.n+1)*sh.out, 1))
			dy, _ := dtOperand(t, iodt, sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
			dx, _ := dtOperand(t, iodt, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
			dA, _ := dtOperand(t, F32, sh.r, sh.in, dtRand(rng, sh.r*sh.in, 1))
			dB, _ := dtOperand(t, F32, sh.out, sh.r, dtRand(rng, sh.out*sh.r, 1))
			dAhalf, _ := dtOperand(t, iodt, sh.r, sh.in, dtRand(rng, sh.r*sh.in, 1))
			dBbad, _ := dtOperand(t, F32, sh.out, sh.r+1, dtRand(rng, sh.out*(sh.r+1), 1))
			tg, _ := dtOperand(t, iodt, sh.n, sh.out, dtRand(rng, sh.n*sh.out, 1))
			tgBad, _ := dtOperand(t, iodt, sh.n, sh.out+1, dtRand(rng, sh.n*(sh.out+1), 1))
			bias, _ := dtOperand(t, iodt, 1, sh.out, dtRand(rng, sh.out, 1))
			biasBad, _ := dtOperand(t, iodt, 1, sh.out+1, dtRand(rng, sh.out+1, 1))
			freed, _ := dtOperand(t, iodt, sh.n, sh.in, dtRand(rng, sh.n*sh.in, 1))
			freed.Free()
			all := dtSnap(t, "W", w, "A", l.A(), "B", l.B(), "x", x, "y", y, "dy", dy, "dx", dx,
				"dA", dA, "dB", dB, "target", tg, "bias", bias, "half dA", dAhalf)
			for _, c := range []struct {
				what string
				err  error
				want error
				op   string
			}{
				{"Forward, x of the wrong width", l.Forward(y, xBad), ErrShape, "Forward"},
				{"Forward, y of the wrong height", l.Forward(yBad, x), ErrShape, "Forward"},
				{"Forward, x freed", l.Forward(y, freed), ErrFreed, "Forward"},
				{"Linear, x of the wrong width", Linear(y, xBad, w), ErrShape, "Linear"},
				{"Backward, a half dA", l.Backward(dx, dAhalf, dB, dy, x), ErrDType, "Backward"},
				{"Backward, dB of the wrong shape", l.Backward(dx, dA, dBbad, dy, x), ErrShape, "Backward"},
				{"Backward, x of the wrong width", l.Backward(dx, dA, dB, dy, xBad), ErrShape, "Backward"},
				{"Backward, dx is x", l.Backward(x, dA, dB, dy, x), ErrAlias, "Backward"},
				{"Axpy, x of the wrong shape", Axpy(y, 2, yBad), ErrShape, "Axpy"},
				{"Axpy, y is x", Axpy(y, 2, y), ErrAlias, "Axpy"},
				{"AddBias, bias of the wrong width", AddBias(y, biasBad), ErrShape, "AddBias"},
				{"AddBias, bias freed", AddBias(y, freed), ErrFreed, "AddBias"},
			} {
				if c.err == nil {
					t.Errorf("%s: %s: no error", name, c.what)
					continue
				}
				dtWantErr(t, name+": "+c.what, c.err, c.want, c.op)
			}
			_, err := MSE(dy, y, tgBad)
			dtWantErr(t, name+": MSE, target of the wrong shape", err, ErrShape, "MSE")
			_, err = MSE(y, y, tg)
			dtWantErr(t, name+": MSE, dy is y", err, ErrAlias, "MSE")
			_, err = MSE(dy, y, freed)
			dtWantErr(t, name+": MSE, target freed", err, ErrFreed, "MSE")
			all.unchanged(t, name+": after refused calls")
		}
	}
}
