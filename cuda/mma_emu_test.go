//go:build cudaemu

package cuda

// The emulator's own half-precision conversions, mma.sync and ldmatrix,
// against the PTX ISA's documented semantics and fragment layouts, and its
// fault checks.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/golora/lora/internal/half"
	"github.com/golora/lora/internal/reftest"
)

// halfCases are float32 bit patterns and their binary16 and bfloat16
// roundings, written out: ties to even, subnormals, the largest finite
// values, overflow, NaN (quiet, with the high bits of the payload kept).
var halfCases = []struct {
	name          string
	f32           uint32
	f16, bf16     uint16
	f16Back       uint32 // f16 widened back
	bf16Back      uint32 // bf16 widened back
	checkWidening bool
}{
	{"+0", 0x00000000, 0x0000, 0x0000, 0x00000000, 0x00000000, true},
	{"-0", 0x80000000, 0x8000, 0x8000, 0x80000000, 0x80000000, true},
	{"1", 0x3f800000, 0x3c00, 0x3f80, 0x3f800000, 0x3f800000, true},
	{"F16 tie to even below", 0x3f801000, 0x3c00, 0x3f80, 0, 0, false},
	{"F16 tie to even above", 0x3f803000, 0x3c02, 0x3f80, 0, 0, false},
	{"F16 just above a tie", 0x3f801001, 0x3c01, 0x3f80, 0, 0, false},
	{"-F16 tie to even above", 0xbf803000, 0xbc02, 0xbf80, 0, 0, false},
	{"BF16 tie to even below", 0x3f808000, 0x3c04, 0x3f80, 0, 0, false},
	{"BF16 tie to even above", 0x3f818000, 0x3c0c, 0x3f82, 0, 0, false},
	{"BF16 just above a tie", 0x3f808001, 0x3c04, 0x3f81, 0, 0, false},
	{"F16 max 65504", 0x477fe000, 0x7bff, 0x4780, 0x477fe000, 0x47800000, true},
	{"65519, below F16's overflow tie", 0x477fefff, 0x7bff, 0x4780, 0, 0, false},
	{"65520, F16's overflow tie", 0x477ff000, 0x7c00, 0x4780, 0, 0, false},
	{"float32 max", 0x7f7fffff, 0x7c00, 0x7f80, 0, 0, false},
	{"BF16 max", 0x7f7f0000, 0x7c00, 0x7f7f, 0x7f800000, 0x7f7f0000, true},
	{"BF16's overflow tie", 0x7f7f8000, 0x7c00, 0x7f80, 0, 0, false},
	{"-BF16's overflow tie", 0xff7f8000, 0xfc00, 0xff80, 0, 0, false},
	{"F16 smallest subnormal 2⁻²⁴", 0x33800000, 0x0001, 0x3380, 0x33800000, 0x33800000, true},
	{"half of it, a tie to 0", 0x33000000, 0x0000, 0x3300, 0, 0, false},
	{"just above half of it", 0x33000001, 0x0001, 0x3300, 0, 0, false},
	{"-just above half of it", 0xb3000001, 0x8001, 0xb300, 0, 0, false},
	{"1.5·2⁻²⁴, a tie to 2", 0x33c00000, 0x0002, 0x33c0, 0, 0, false},
	{"2.5·2⁻²⁴, a tie to 2", 0x34200000, 0x0002, 0x3420, 0, 0, false},
	{"F16 largest subnormal", 0x387fc000, 0x03ff, 0x3880, 0x387fc000, 0x38800000, true},
	{"rounds up to F16's smallest normal", 0x387fe000, 0x0400, 0x3880, 0, 0, false},
	{"F16 smallest normal 2⁻¹⁴", 0x38800000, 0x0400, 0x3880, 0x38800000, 0x38800000, true},
	{"float32 smallest subnormal", 0x00000001, 0x0000, 0x0000, 0, 0, false},
	{"float32 largest subnormal", 0x007fffff, 0x0000, 0x0080, 0, 0, false},
	{"BF16 smallest subnormal", 0x00010000, 0x0000, 0x0001, 0, 0x00010000, false},
	{"BF16 subnormal tie to even above", 0x00018000, 0x0000, 0x0002, 0, 0, false},
	{"+Inf", 0x7f800000, 0x7c00, 0x7f80, 0x7f800000, 0x7f800000, true},
	{"-Inf", 0xff800000, 0xfc00, 0xff80, 0xff800000, 0xff800000, true},
	{"quiet NaN", 0x7fc00000, 0x7e00, 0x7fc0, 0x7fc00000, 0x7fc00000, true},
	{"-quiet NaN", 0xffc00000, 0xfe00, 0xffc0, 0xffc00000, 0xffc00000, true},
	{"signalling NaN, low payload", 0x7f800001, 0x7e00, 0x7fc0, 0, 0, false},
	{"signalling NaN, high payload", 0x7fa00000, 0x7f00, 0x7fe0, 0, 0, false},
	{"-NaN with payload", 0xff812345, 0xfe09, 0xffc1, 0, 0, false},
	{"quiet NaN with payload", 0x7fd5a000, 0x7ead, 0x7fd5, 0, 0, false},
}

// runHalf converts f32 to binary16 and bfloat16 patterns with the
// emulator's __float2half_rn and __float2bfloat16_rn, and widens h16 with
// __half2float and __bfloat162float (len(h16) == len(f32)).
func runHalf(t *testing.T, f32 []float32, h16 []uint16) (f16, bf16 []uint16, wf16, wbf16 []float32) {
	t.Helper()
	n := len(f32)
	f16, bf16 = make([]uint16, n), make([]uint16, n)
	wf16, wbf16 = make([]float32, n), make([]float32, n)
	pf, ph := devBuf(t, f32), devBuf(t, h16)
	po16, pob, pw16, pwb := devBuf(t, f16), devBuf(t, bf16), devBuf(t, wf16), devBuf(t, wbf16)
	var a Args
	a.Ptr(pf).Ptr(po16).Ptr(pob).Ptr(ph).Ptr(pw16).Ptr(pwb).Int(n)
	launchTest(t, "emutest_half", 256, &a)
	readBuf(t, f16, po16)
	readBuf(t, bf16, pob)
	readBuf(t, wf16, pw16)
	readBuf(t, wbf16, pwb)
	return
}

// TestEmuHalfCases checks the emulator's conversions against the bit
// patterns written out in halfCases.
func TestEmuHalfCases(t *testing.T) {
	f32 := make([]float32, len(halfCases))
	h16 := make([]uint16, 2*len(halfCases))
	for i, c := range halfCases {
		f32[i] = math.Float32frombits(c.f32)
	}
	// Widening: each case's f16 pattern, then its bf16 pattern.
	in := make([]float32, len(h16))
	copy(in, f32)
	for i, c := range halfCases {
		h16[i], h16[len(halfCases)+i] = c.f16, c.bf16
	}
	f16, bf16, wf16, wbf16 := runHalf(t, in, h16)
	for i, c := range halfCases {
		if f16[i] != c.f16 {
			t.Errorf("%s: __float2half_rn(%#08x) = %#04x, want %#04x", c.name, c.f32, f16[i], c.f16)
		}
		if bf16[i] != c.bf16 {
			t.Errorf("%s: __float2bfloat16_rn(%#08x) = %#04x, want %#04x", c.name, c.f32, bf16[i], c.bf16)
		}
		if !c.checkWidening {
			continue
		}
		if g := math.Float32bits(wf16[i]); g != c.f16Back {
			t.Errorf("%s: __half2float(%#04x) = %#08x, want %#08x", c.name, c.f16, g, c.f16Back)
		}
		if g := math.Float32bits(wbf16[len(halfCases)+i]); g != c.bf16Back {
			t.Errorf("%s: __bfloat162float(%#04x) = %#08x, want %#08x", c.name, c.bf16, g, c.bf16Back)
		}
	}
}

// TestEmuHalfSweep checks the emulator's conversions against package
// internal/half bit for bit: every 16-bit pattern widened both ways, and
// float32 values of every sign and exponent with low bits at and around the
// rounding points of both formats, plus random ones, narrowed both ways.
func TestEmuHalfSweep(t *testing.T) {
	lows := []uint32{0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x2000, 0x2fff, 0x3000, 0x3001,
		0x7fff, 0x8000, 0x8001, 0x9000, 0xb000, 0xd000, 0xefff, 0xf000, 0xffff}
	rng := rand.New(rand.NewPCG(1, 2))
	var f32 []float32
	for hi := range uint32(1 << 16) {
		for _, lo := range lows {
			f32 = append(f32, math.Float32frombits(hi<<16|lo))
		}
		f32 = append(f32, math.Float32frombits(hi<<16|rng.Uint32()&0xffff))
	}
	h16 := make([]uint16, len(f32))
	for i := range h16 {
		h16[i] = uint16(i)
	}
	f16, bf16, wf16, wbf16 := runHalf(t, f32, h16)
	bad := 0
	for i, v := range f32 {
		if w := half.Float32ToF16(v); f16[i] != w {
			t.Errorf("__float2half_rn(%#08x) = %#04x, internal/half %#04x", math.Float32bits(v), f16[i], w)
			bad++
		}
		if w := half.Float32ToBF16(v); bf16[i] != w {
			t.Errorf("__float2bfloat16_rn(%#08x) = %#04x, internal/half %#04x", math.Float32bits(v), bf16[i], w)
			bad++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
	for i := range 1 << 16 {
		h := uint16(i)
		if g, w := math.Float32bits(wf16[i]), math.Float32bits(half.F16ToFloat32(h)); g != w {
			t.Errorf("__half2float(%#04x) = %#08x, internal/half %#08x", h, g, w)
			bad++
		}
		if g, w := math.Float32bits(wbf16[i]), math.Float32bits(half.BF16ToFloat32(h)); g != w {
			t.Errorf("__bfloat162float(%#04x) = %#08x, internal/half %#08x", h, g, w)
			bad++
		}
		if bad > 20 {
			t.Fatal("too many differences")
		}
	}
}

// The fragment layouts of mma.m16n8k16 with .f16/.bf16 multiplicands and
// .f32 accumulators, as the PTX ISA's figures give them ("Matrix Fragments
// for mma.m16n8k16 with floating point type"), written out element by
// element: the row and column of each element of a lane, as offsets from
// (groupID, 2·threadID_in_group) for A and C/D and from
// (2·threadID_in_group, groupID) for B, where groupID = lane / 4 and
// threadID_in_group = lane % 4.
var (
	mmaA = [8][2]int{{0, 0}, {0, 1}, {8, 0}, {8, 1}, {0, 8}, {0, 9}, {8, 8}, {8, 9}} // a0 .. a7 of A (16 x 16)
	mmaB = [4][2]int{{0, 0}, {1, 0}, {8, 0}, {9, 0}}                                 // b0 .. b3 of B (16 x 8)
	mmaC = [4][2]int{{0, 0}, {0, 1}, {8, 0}, {8, 1}}                                 // c0 .. c3 of C and D (16 x 8)
)

// mmaTables returns, for each lane, the flat row-major indices of its
// elements of A (16 x 16), B (16 x 8) and C (16 x 8).
func mmaTables() (ia, ib, ic []int32) {
	for lane := range 32 {
		g, tg := lane/4, lane%4
		for _, o := range mmaA {
			ia = append(ia, int32((g+o[0])*16+2*tg+o[1]))
		}
		for _, o := range mmaB {
			ib = append(ib, int32((2*tg+o[0])*8+g+o[1]))
		}
		for _, o := range mmaC {
			ic = append(ic, int32((g+o[0])*8+2*tg+o[1]))
		}
	}
	return
}

// TestMMATables checks that the tables cover each element of A, B and C
// exactly once: a mistyped entry fails here rather than in the product.
func TestMMATables(t *testing.T) {
	ia, ib, ic := mmaTables()
	for name, c := range map[string]struct {
		idx []int32
		n   int
	}{"A": {ia, 256}, "B": {ib, 128}, "C": {ic, 128}} {
		seen := make([]int, c.n)
		for _, i := range c.idx {
			seen[i]++
		}
		for i, k := range seen {
			if k != 1 {
				t.Errorf("%s: element %d in %d fragments", name, i, k)
			}
		}
	}
}

// runMMA runs the emulated mma.m16n8k16 on one warp with the fragments
// gathered through the tables, and returns D (16 x 8, row-major).
func runMMA(t *testing.T, bf16 bool, a, b []uint16, c []float32) []float32 {
	t.Helper()
	ia, ib, ic := mmaTables()
	d := make([]float32, 16*8)
	for i := range d {
		d[i] = float32(math.NaN())
	}
	pd := devBuf(t, d)
	var args Args
	flag := 0
	if bf16 {
		flag = 1
	}
	args.Ptr(devBuf(t, a)).Ptr(devBuf(t, b)).Ptr(devBuf(t, c)).Ptr(pd).
		Ptr(devBuf(t, ia)).Ptr(devBuf(t, ib)).Ptr(devBuf(t, ic)).Int(flag)
	launchTest(t, "emutest_mma", 32, &args)
	readBuf(t, d, pd)
	return d
}

// TestEmuMMA checks the emulated mma.sync m16n8k16 (bf16 and f16 inputs,
// f32 accumulators) against a float64 product of the same 16-bit inputs,
// the fragments loaded and stored through the layout tables above. Every
// element of A, B and C is distinct, so a transposed or swapped fragment
// shows. First integers, whose products and sums are exact in float32 (the
// result must be exact), then random values.
func TestEmuMMA(t *testing.T) {
	for _, dt := range []struct {
		name   string
		bf16   bool
		narrow func(float32) uint16
		widen  func(uint16) float32
	}{
		{"bf16", true, half.Float32ToBF16, half.BF16ToFloat32},
		{"f16", false, half.Float32ToF16, half.F16ToFloat32},
	} {
		for _, exact := range []bool{false, true} {
			name := dt.name + "/truncating"
			if exact {
				name = dt.name + "/exact"
			}
			t.Run(name, func(t *testing.T) {
				setMMAExact(t, exact)
				rng := rand.New(rand.NewPCG(3, 4))
				for round := range 3 {
					a, b := make([]uint16, 16*16), make([]uint16, 16*8)
					c := make([]float32, 16*8)
					for i := range 16 {
						for k := range 16 {
							// ±1 .. ±256, distinct, exact in both formats.
							v := float32(i*16 + k + 1)
							if (i+k)%2 == 1 {
								v = -v
							}
							if round > 0 {
								v = float32(rng.NormFloat64())
							}
							a[i*16+k] = dt.narrow(v)
						}
					}
					for k := range 16 {
						for j := range 8 {
							v := float32(k*8 + j + 1)
							if k%2 == 1 {
								v = -v
							}
							if round > 0 {
								v = float32(rng.NormFloat64())
							}
							b[k*8+j] = dt.narrow(v)
						}
					}
					for i := range 16 {
						for j := range 8 {
							c[i*8+j] = 1000 + float32(i*8+j)/4
							if round > 0 {
								c[i*8+j] = float32(rng.NormFloat64())
							}
						}
					}
					if round == 2 {
						c[5] = float32(math.Inf(1)) // Inf in C stays Inf
						a[3*16+7] = dt.narrow(float32(math.NaN()))
					}
					d := runMMA(t, dt.bf16, a, b, c)
					for i := range 16 {
						for j := range 8 {
							ref, mag := float64(c[i*8+j]), math.Abs(float64(c[i*8+j]))
							for k := range 16 {
								p := float64(dt.widen(a[i*16+k])) * float64(dt.widen(b[k*8+j]))
								ref += p
								mag += math.Abs(p)
							}
							got := float64(d[i*8+j])
							// Exact for the integers (no sum reaches 2²⁴ and no
							// term has bits below 2⁻³, so the truncating model
							// drops nothing either). Otherwise, summed exactly and
							// rounded once, well within 17 roundings of 2⁻²⁴
							// relative to the sum of magnitudes, the bound of 17
							// terms summed in float32. The truncating model
							// (emu.h, MmaMode) sums two groups of 9 terms; in
							// each, the 8 terms below the largest exponent E lose
							// less than 2^(E−23) ≤ 2⁻²³·Σ|term| apiece and the
							// normalisation less than 2⁻²³·|sum|, so a group is
							// off by less than 9·2⁻²³ = 18·2⁻²⁴ times its sum of
							// magnitudes, which is at most mag for either group
							// (truncation never adds magnitude): 36·2⁻²⁴·mag.
							tol := 17 * 0x1p-24 * mag
							if !exact {
								tol = 36 * 0x1p-24 * mag
							}
							if round == 0 {
								tol = 0
							}
							ok := math.Abs(got-ref) <= tol
							if math.IsNaN(ref) || math.IsInf(ref, 0) {
								ok = math.IsNaN(ref) && math.IsNaN(got) || ref == got
							}
							if !ok {
								t.Errorf("round %d: D[%d][%d] = %v, want %v (±%.3g)", round, i, j, got, ref, tol)
							}
						}
					}
				}
			})
		}
	}
}

// setMMAExact makes the emulated mma.sync of the test's launches sum
// exactly (exact) or in the truncating model of the tensor cores, and
// restores the previous mode when the test ends.
func setMMAExact(t *testing.T, exact bool) {
	t.Helper()
	was := emuMMAExact(exact)
	t.Cleanup(func() { emuMMAExact(was) })
}

// TestEmuMMATruncation checks the emulator's model of the tensor cores'
// arithmetic (kernels/emu.h, MmaMode) on sums built by hand, where the
// exact sum rounded once to nearest gives another float32. Only D[0][0] is
// nonzero: C[0][0] = c and the products A[0][k]·B[k][0] = p_k. Every value
// is exact in bf16 and in binary16. Writing u for the unit of the last bit
// kept when a group of terms is aligned (2^(E−23), E the largest exponent
// of the group):
//
//   - alignment: c = 1 and p_0..p_7 = 1.5·2⁻²⁴. E = 0, u = 2⁻²³: each
//     product is 0.75u and truncates to 0, so D = 1 (0x3f800000); the exact
//     sum 1 + 12·2⁻²⁴ = 1 + 6·2⁻²³ is a float32 (0x3f800006).
//   - toward zero: the same negated (c = −1, p_k = −1.5·2⁻²⁴): D = −1
//     (0xbf800000), not −1 − 8·2⁻²³ (0xbf800008) as rounding each aligned
//     term down would give; exact 0xbf800006.
//   - normalisation: c = 1 − 2⁻²⁴ (0x3f7fffff), p_0 = 2⁻²² (2⁻¹¹·2⁻¹¹).
//     E = −1, u = 2⁻²⁴: c = (2²⁴ − 1)u, p_0 = 4u, nothing is lost in the
//     alignment and the sum is (2²⁴ + 3)u = 1 + 1.5·2⁻²³, which needs 25
//     bits; normalised toward zero it is 1 + 2⁻²³ (0x3f800001), where
//     rounding to nearest gives the even 1 + 2·2⁻²³ (0x3f800002).
//   - two groups of eight: c = 0, p_0..p_7 = 1.5·2⁻²⁴, p_8 = 1,
//     p_9..p_15 = 1.5·2⁻²⁴. The first group (E = −24) is exact:
//     12·2⁻²⁴ = 6·2⁻²³. The second aligns it and seven more 0.75u to
//     E = 0: 6u stays, the seven drop, D = 1 + 6·2⁻²³ (0x3f800006). Exact:
//     1 + 22.5·2⁻²⁴ rounds to 1 + 11·2⁻²³ (0x3f80000b); one group of all
//     16 products would give 1 (0x3f800000).
func TestEmuMMATruncation(t *testing.T) {
	small := math.Ldexp(1.5, -24)
	cases := []struct {
		name            string
		c               float64
		p               [16]float64 // the products, each a·b with b a power of 2
		trunc, exactSum uint32
	}{
		{"alignment", 1, [16]float64{small, small, small, small, small, small, small, small}, 0x3f800000, 0x3f800006},
		{"toward zero", -1, [16]float64{-small, -small, -small, -small, -small, -small, -small, -small}, 0xbf800000, 0xbf800006},
		{"normalisation", 1 - 0x1p-24, [16]float64{0x1p-22}, 0x3f800001, 0x3f800002},
		{"two groups of eight", 0, [16]float64{small, small, small, small, small, small, small, small,
			1, small, small, small, small, small, small, small}, 0x3f800006, 0x3f80000b},
	}
	for _, dt := range []struct {
		name   string
		bf16   bool
		narrow func(float32) uint16
		widen  func(uint16) float32
	}{
		{"bf16", true, half.Float32ToBF16, half.BF16ToFloat32},
		{"f16", false, half.Float32ToF16, half.F16ToFloat32},
	} {
		for _, tc := range cases {
			t.Run(dt.name+"/"+tc.name, func(t *testing.T) {
				a, b := make([]uint16, 16*16), make([]uint16, 16*8)
				c := make([]float32, 16*8)
				c[0] = float32(tc.c)
				if float64(c[0]) != tc.c {
					t.Fatalf("c = %v is not a float32", tc.c)
				}
				for k, p := range tc.p {
					// p's exponent split between a and b, b a power of 2:
					// both normal in either format.
					if p == 0 {
						continue
					}
					frac, exp := math.Frexp(p) // p = frac·2^exp, frac in [0.5, 1)
					ea := exp / 2
					av, bv := float32(math.Ldexp(frac, ea)), float32(math.Ldexp(1, exp-ea))
					a[k], b[k*8] = dt.narrow(av), dt.narrow(bv)
					if got := float64(dt.widen(a[k])) * float64(dt.widen(b[k*8])); got != p {
						t.Fatalf("p_%d = %v is %v in %s", k, p, got, dt.name)
					}
				}
				for _, m := range []struct {
					exact bool
					want  uint32
				}{{false, tc.trunc}, {true, tc.exactSum}} {
					setMMAExact(t, m.exact)
					d := runMMA(t, dt.bf16, a, b, c)
					if got := math.Float32bits(d[0]); got != m.want {
						t.Errorf("exact=%v: D[0][0] = %v (%#08x), want %v (%#08x)", m.exact, d[0], got, math.Float32frombits(m.want), m.want)
					}
					for i, v := range d[1:] {
						if v != 0 {
							t.Errorf("exact=%v: D[%d][%d] = %v, want 0", m.exact, (i+1)/8, (i+1)%8, v)
						}
					}
				}
			})
		}
	}
}

// TestEmuLdmatrix checks the emulated ldmatrix.sync.aligned.m8n8.x4.b16
// against the PTX ISA's layout, written out: lane 8j + i gives the address
// of row i of matrix j, and lane l receives in register j the elements
// 2·(l%4) (low half) and 2·(l%4)+1 (high half) of row l/4 of matrix j. The
// rows are scattered (lane l names row 7l+3 mod 32 of a 32 x 16 array, at
// element 0 or 8), every element distinct, so a lane or row mix-up shows.
func TestEmuLdmatrix(t *testing.T) {
	m := make([]uint16, 32*16)
	for i := range m {
		m[i] = uint16(0x1000 + i)
	}
	off := make([]int32, 32)
	for l := range off {
		off[l] = int32((7*l+3)%32*16 + 8*(l%2))
	}
	// The kernel stages m in static shared memory, then in dynamic shared
	// memory.
	for _, dyn := range []int{0, 1} {
		pr := devBuf(t, make([]uint32, 32*4))
		var a Args
		a.Ptr(devBuf(t, m)).Ptr(devBuf(t, off)).Ptr(pr).Int(dyn)
		mu.Lock()
		err := emuLaunch("emutest_ldmatrix", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, dyn*len(m)*2, &a)
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]uint32, 32*4)
		readBuf(t, got, pr)
		for l := range 32 {
			for j := range 4 {
				row := off[8*j+l/4] // the row l/4 of matrix j
				c := int32(2 * (l % 4))
				want := uint32(m[row+c]) | uint32(m[row+c+1])<<16
				if got[4*l+j] != want {
					t.Errorf("dynamic shared %v: lane %d register %d = %#08x, want %#08x", dyn == 1, l, j, got[4*l+j], want)
				}
			}
		}
	}
}

// TestEmuLdmatrixOutsideShared checks, each in a child process (a fault is
// for the life of the process), that an ldmatrix whose row lies outside
// the block's shared memory is a fault, the instruction reading shared
// memory only: rows in global memory (device memory from Alloc, 16-byte
// aligned), and a row whose last bytes pass the end of the launch's dynamic
// shared memory (1016 bytes of it: lane 31's row of emutest_ldmatrix, at
// element 504, starts inside it, at byte 1008, and ends at byte 1024).
func TestEmuLdmatrixOutsideShared(t *testing.T) {
	switch os.Getenv("LORA_TEST_LDMATRIX_FAULT") {
	case "":
		reftest.RunChild(t, "LORA_TEST_LDMATRIX_FAULT=global")
		reftest.RunChild(t, "LORA_TEST_LDMATRIX_FAULT=dynamic")
	case "global":
		m := devBuf(t, make([]uint16, 32*8))
		if m%16 != 0 {
			t.Fatalf("Alloc gave %#x, not 16-byte aligned", uint64(m))
		}
		var a Args
		a.Ptr(m).Ptr(devBuf(t, make([]uint32, 32*4)))
		launchTest(t, "emutest_ldmatrix_global", 32, &a)
		wantLdmatrixFault(t, fmt.Sprintf("lane 0 gives the row address %#x, which is not in the block's shared memory", uint64(m)))
	case "dynamic":
		off := make([]int32, 32)
		off[31] = 31*16 + 8
		var a Args
		a.Ptr(devBuf(t, make([]uint16, 32*16))).Ptr(devBuf(t, off)).Ptr(devBuf(t, make([]uint32, 32*4))).Int(1)
		mu.Lock()
		err := emuLaunch("emutest_ldmatrix", Dim3{X: 1, Y: 1, Z: 1}, Dim3{X: 32, Y: 1, Z: 1}, 32*16*2-8, &a)
		mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		wantLdmatrixFault(t, "lane 31 gives the row address")
	}
}

// wantLdmatrixFault waits for the queued launches and fails t unless they
// faulted in an ldmatrix with a message that holds want and says the row
// is not in shared memory.
func wantLdmatrixFault(t *testing.T, want string) {
	t.Helper()
	err := Sync()
	if err == nil || !strings.Contains(err.Error(), "ldmatrix.sync.aligned.m8n8.x4.shared.b16: "+want) ||
		!strings.Contains(err.Error(), "which is not in the block's shared memory") {
		t.Fatalf("an ldmatrix outside shared memory: %v, want a fault with %q", err, want)
	}
}

// TestEmuMMAWholeWarp checks, in a child process (a fault is for the life
// of the process), that an mma which a lane of the warp does not reach is a
// fault: mma.sync.aligned needs all 32 lanes.
func TestEmuMMAWholeWarp(t *testing.T) {
	if os.Getenv("LORA_TEST_MMA_FAULT") == "" {
		reftest.RunChild(t, "LORA_TEST_MMA_FAULT=1")
		return
	}
	p, err := Alloc(128)
	if err != nil {
		t.Fatal(err)
	}
	var a Args
	a.Ptr(p).Int(0)
	launchTest(t, "emutest_mma_partial", 32, &a) // the whole warp: fine
	if err := Sync(); err != nil {
		t.Fatalf("an mma of the whole warp: %v", err)
	}
	var d [32]float32
	readBuf(t, d[:], p)
	if d[0] != 1 || d[31] != 1 {
		t.Fatalf("an mma of zeros plus C = 1: D = %v", d)
	}
	a = Args{}
	a.Ptr(p).Int(1)
	launchTest(t, "emutest_mma_partial", 32, &a)
	err = Sync()
	want := "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 with mask 0xffffffff names lane 0, which has returned"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("an mma without lane 0: %v, want a fault %q", err, want)
	}
}
