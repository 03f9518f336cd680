//go:build amd64 && !purego

package cpu

import (
	"math"

	xcpu "golang.org/x/sys/cpu"
)

// The assembly kernels (gemv_amd64.s, rankrow_amd64.s, maxmag_amd64.s,
// nf4_amd64.s) run where the processor has AVX2 and FMA, and F16C for an
// F16 operand; gemv4NF4AVX512 where it has AVX-512 (AVX512F) as well. Each
// declaration's comment is the loop it computes; kernels_other.go has that
// loop as the body, for other processors and -tags purego. The flags below
// are set once at start-up by setLevel, from the processor's features and
// LORA_CPU (level.go).
var (
	useFMA     bool // AVX2 and FMA: the float32 and BF16 kernels, rank-r rows
	useBF16FMA bool
	useF16FMA  bool // and F16C
	useNF4FMA  bool

	useNF4AVX512 bool // and AVX512F
	useGemm512   bool // and AVX512F: the packed product (gemm.go)
	halfAVX2     bool // AVX2: maxMag16
)

// machineLevel returns the highest level the processor has.
func machineLevel() Level {
	x := &xcpu.X86
	switch {
	case x.HasAVX2 && x.HasFMA && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512BF16 && x.HasAMXTile && x.HasAMXBF16 && amxSupported():
		return AMX
	case x.HasAVX2 && x.HasFMA && x.HasAVX512F && x.HasAVX512BW && x.HasAVX512BF16:
		return AVX512BF16
	case x.HasAVX2 && x.HasFMA && x.HasAVX512F:
		return AVX512
	case x.HasAVX2 && x.HasFMA:
		return AVX2
	}
	return Generic
}

// setLevel sets the kernels' flags for level l, at most machineLevel(),
// and returns the level they run at: l, or AVX512BF16 when l is AMX and
// the operating system refuses the process the tiles.
func setLevel(l Level) Level {
	x := &xcpu.X86
	avx2 := l >= AVX2 && x.HasAVX2 && x.HasFMA
	useFMA = avx2
	useBF16FMA = avx2
	useF16FMA = avx2 && x.HasF16C
	useNF4FMA = avx2
	useNF4AVX512 = avx2 && l >= AVX512 && x.HasAVX512F
	useGemm512 = useNF4AVX512
	useBF16DP = useGemm512 && l >= AVX512BF16 && x.HasAVX512BW && x.HasAVX512BF16
	useAMX = useBF16DP && l >= AMX && x.HasAMXTile && x.HasAMXBF16 && amxPermitted()
	halfAVX2 = l >= AVX2 && x.HasAVX2
	if l >= AMX && !useAMX {
		return AVX512BF16
	}
	return l
}

// cpuid returns the registers EAX, EBX, ECX and EDX that the CPUID
// instruction sets for leaf and subleaf sub.
//
//go:noescape
func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// vendorAMD reports whether the processor's vendor string (CPUID leaf 0) is
// AMD's, "AuthenticAMD".
func vendorAMD() bool {
	_, b, c, d := cpuid(0, 0)
	return b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163 // "Auth" "enti" "cAMD"
}

func init() { shortDXSlabs = !vendorAMD() }

// portableKernels is false: the kernels are the assembly, which only runs
// where the processor has the features above.
const portableKernels = false

// gemv4F32 sets y[q] = Σⱼ x[j]·w[q·ldw+j] for q < 4 and j < n, W float32,
// n a positive multiple of 16.
//
//go:noescape
func gemv4F32(y, x, w *float32, n, ldw int)

// gemv4BF16 sets y[q] = Σⱼ x[j]·w[q·ldw+j] for q < 4 and j < n, W BF16,
// n a positive multiple of 16, x in pair order (pairOrder): in each block
// of 16 columns the even ones, then the odd ones, so that W's elements
// widen two by two in a register without a shuffle.
//
//go:noescape
func gemv4BF16(y, x *float32, w *uint16, n, ldw int)

// gemv4F16 sets y[q] = Σⱼ x[j]·w[q·ldw+j] for q < 4 and j < n, W F16, n a
// positive multiple of 16, x in its own order.
//
//go:noescape
func gemv4F16(y, x *float32, w *uint16, n, ldw int)

// gemv4x4F32 sets y[4p+q] = Σⱼ x[p·ldx+j]·w[q·ldw+j] for p, q < 4 and
// j < n, n a positive multiple of 16: gemv4F32 for four rows of x at once,
// bit for bit, W's rows loaded once for the four (gemv_amd64.s). AVX-512.
//
//go:noescape
func gemv4x4F32(y, x *float32, ldx int, w *float32, n, ldw int)

// rankRowFMA sets dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n, n a multiple
// of 8, r ≥ 1: 64 columns at a time in eight registers, all r terms
// accumulated from zero in k order, then added to dst.
//
//go:noescape
func rankRowFMA(dst, a, coef *float32, n, r, lda int)

// rankRowBF16 sets dst[j] to float32(dst[j]) + Σₖ coef[k]·a[k·lda+j] rounded
// to bfloat16, for j < n, n a multiple of 8, r = len(coef) ≥ 1: the
// arithmetic of rankRowFMA.
//
//go:noescape
func rankRowBF16(dst *uint16, a, coef *float32, n, r, lda int)

// rankRowF16 is rankRowBF16 for an F16 dst.
//
//go:noescape
func rankRowF16(dst *uint16, a, coef *float32, n, r, lda int)

// rankRowFromBF16 sets dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n, a BF16
// widened in registers, n a multiple of 8, r ≥ 1: the arithmetic of
// rankRowFMA.
//
//go:noescape
func rankRowFromBF16(dst *float32, a *uint16, coef *float32, n, r, lda int)

// rankRowFromF16 is rankRowFromBF16 for an F16 a.
//
//go:noescape
func rankRowFromF16(dst *float32, a *uint16, coef *float32, n, r, lda int)

// maxMag16 returns the largest of src[j] & 0x7fff for j < n, n a positive
// multiple of 16.
//
//go:noescape
func maxMag16(src *uint16, n int) uint16

// maxMag32 returns the largest of src[j] & 0x7fffffff for j < n, n a
// positive multiple of 8.
//
//go:noescape
func maxMag32(src *uint32, n int) uint32

// dequantNF4 sets dst[i] = NF4Table[k] · absmax[(flat0+i)>>shift] for
// i < n, k the code of flat index flat0+i (the high nibble of
// codes[(flat0+i)/2] when flat0+i is even, the low one when odd): n a
// positive multiple of 32, flat0 a multiple of 32, shift ≥ 5 (the block
// 1<<shift elements), so that no 32 elements of a pass straddle a block.
//
//go:noescape
func dequantNF4(dst *float32, codes *byte, absmax *float32, n, flat0, shift int)

// gemv4NF4 sets y[q] = Σⱼ x[j]·(NF4Table[k] · absmax[(q·ldw+j)/block]) for
// q < 4 and j < n, k the code of flat index q·ldw+j counted from codes[0]'s
// high nibble and absmax[0]'s block, x in evenOdd order of 8: n and
// ldw positive multiples of block, block a power of two, at least 32. Each
// value is rounded once to float32 before its product with x.
//
//go:noescape
func gemv4NF4(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)

// gemv4NF4AVX512 is gemv4NF4 with x in evenOdd order of 32 (in each block
// of 32 columns the 16 even ones, then the 16 odd ones).
//
//go:noescape
func gemv4NF4AVX512(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)

// nf4Planes holds NF4Table as the assembly looks it up with VPSHUFB: plane
// i (32 bytes) is byte i of each of the 16 entries, twice (one copy per
// 128-bit lane).
//
//lint:ignore U1000 read by the kernels of nf4_amd64.s
var nf4Planes = func() (p [4][32]byte) {
	for k, v := range NF4Table {
		b := math.Float32bits(v)
		for i := range p {
			p[i][k], p[i][16+k] = byte(b>>(8*i)), byte(b>>(8*i))
		}
	}
	return p
}()

// gemmKernelAVX512 sets c[i·ldc+j] to Σₚ a[p·8+i]·b[p·32+j] (plus its old
// value when acc ≠ 0) for i < 8, j < 32 and p < k, k ≥ 1: the micro-kernel
// of the packed product (gemm.go), a the packed panel of eight rows of x, b
// that of 32 rows of W, each sum accumulated in p order.
//
//go:noescape
func gemmKernelAVX512(k int, a, b, c *float32, ldc, acc int)

// adamw8 applies AdamW to n8·8 elements of p, grad, m and v, the arithmetic
// of adamwGo (c: β₁, 1−β₁, β₂, 1−β₂, InvSqrtBC2, Eps, Decay, Step). AVX.
//
//go:noescape
func adamw8(p, grad, m, v *float32, n8 int, c *[8]float32)
