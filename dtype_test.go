package lora

// Half precision on every backend, in this file and dtype_*_test.go: run
// with `go test`, `go test -tags purego` and `go test -tags cudaemu`. Every
// expected bit pattern is either written out in a test or computed by
// reftest.Format, a float64 model of the formats that shares no code with
// the package; every expected value is a float64 reference computed from the
// operands as they are stored (read back), and every tolerance is derived in
// the comment next to it.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/golora/lora/internal/reftest"
)

var dtAll = []DType{F32, F16, BF16}

// dtFormatOf returns the float64 model of dt's format.
func dtFormatOf(dt DType) reftest.Format {
	switch dt {
	case F16:
		return reftest.F16
	case BF16:
		return reftest.BF16
	}
	return reftest.F32
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
	return m, reftest.F64(dtRead(t, m))
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
	}{{F32, "f32", 4}, {F16, "f16", 2}, {BF16, "bf16", 2}, {NF4, "nf4", 0}} {
		if got := c.dt.String(); got != c.name {
			t.Errorf("DType %d: String() = %q, want %q", int(c.dt), got, c.name)
		}
		if got := c.dt.Size(); got != c.size {
			t.Errorf("%v.Size() = %d, want %d", c.dt, got, c.size)
		}
	}
	for _, d := range []DType{4, -1, 100} {
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
	for _, d := range []DType{4, -1, 100} {
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
			if got := f.Encode(f.Round(float64(c.v))); got != c.bits {
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
			if want := float32(f.Decode(got[i])); math.Float32bits(back[i]) != math.Float32bits(want) {
				t.Errorf("%v: Read of the stored %#04x = %g, want %g", dt, got[i], back[i], want)
			}
		}

		// NaN stays NaN: a pattern with all exponent bits and a nonzero
		// fraction, read back as a float32 NaN.
		mb := uint(f.P - 1)
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
				lo, hi := f.Decode(sign|p), f.Decode(sign|(p+1))
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
		dtWriteStores(t, dt, 3, src, want)
	}
}

// TestDTypeWriteRandom writes random float32 patterns of every exponent (NaN and
// values that overflow the dtype left out) and compares with the model.
func TestDTypeWriteRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	for _, dt := range []DType{F16, BF16} {
		f := dtFormatOf(dt)
		lim := f.Largest() + f.ULP(f.Largest())/2 // the overflow tie: refused from here
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
			want = append(want, f.Encode(f.Round(float64(v))))
		}
		dtWriteStores(t, dt, 1, src, want)
	}
}

// dtWriteStores writes src into a rows×(len(src)/rows) matrix of dt and
// fails unless the patterns stored are want.
func dtWriteStores(t *testing.T, dt DType, rows int, src []float32, want []uint16) {
	t.Helper()
	m := dtNew(t, dt, rows, len(src)/rows)
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
			want := f.Decode(uint16(i))
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
