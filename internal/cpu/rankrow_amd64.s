//go:build amd64 && !purego

#include "textflag.h"

// The rank-r row updates dst[j] += Σₖ coef[k]·a[k·lda+j], in AVX2 with FMA
// (and F16C for F16). The five kernels are one skeleton, RANKROW, with a
// macro for the element type of a (how a term's products are formed) and
// two for the element type of dst (how the sums are added to it). A BF16
// element widens exactly by a zero extension and a shift of 16 bits
// (VPMOVZXWD, VPSLLD), an F16 element by VCVTPH2PS; sums narrow to nearest
// even (VCVTPS2PH $0, or the rounding add of BF16ROUND).
//
// (These are Go assembler macros: a body is one line, so its instructions
// are separated by semicolons and its comments are /* */.)

// RANKROW is the body of func(dst, a, coef unsafe.Pointer, n, r, lda int):
// dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n, n % 8 == 0, r ≥ 1. Each
// 64-column block of dst is read once and written once: its r terms are
// accumulated from zero in k order in eight registers, then added to dst
// (a 16-bit dst widened, the sum rounded once). The r rows of a are
// streamed through the cache and coef is broadcast one term at a time.
// The columns left after the blocks of 64 go eight at a time, the same way
// in one register.
//
// ASHIFT and DSHIFT are log2 of the element sizes of a and dst in bytes.
// SETUP runs once before the loops. TERM(i, t, acc) adds coef[k] (Y8)
// times the eight elements of a at i·8 columns past R10 into acc, with t
// for the widened elements. DST64 adds the 64 columns of dst at DI into
// Y0–Y7 and writes the sums back there; DST8 does that for the 8 columns
// of dst at DI and Y0.
//
// Registers: DI dst, SI a, DX coef, CX the columns left, R8 r, R9 the row
// stride of a in bytes; R10 &a[k, j], R11 &coef[k], R12 the terms left;
// Y0–Y7 the sums, Y8 coef[k] (then a widened block of dst), Y9–Y12 widened
// elements of a, Y9–Y15 what DST64 and DST8 need besides.
#define RANKROW(ASHIFT, DSHIFT, SETUP, TERM, DST64, DST8) \
	MOVQ dst+0(FP), DI; \
	MOVQ a+8(FP), SI; \
	MOVQ coef+16(FP), DX; \
	MOVQ n+24(FP), CX; \
	MOVQ r+32(FP), R8; \
	MOVQ lda+40(FP), R9; \
	SHLQ $ASHIFT, R9; \
	SETUP; \
	PASS(ASHIFT, DSHIFT, 64, block64, k64, block8, EACH8(ZERO), TERMS64(TERM), DST64); \
	PASS(ASHIFT, DSHIFT, 8, block8, k8, done, ZERO(0, Y0), TERM(0, Y9, Y0), DST8); \
done: \
	VZEROUPPER; \
	RET

// PASS is RANKROW's loop over blocks of COLS columns, from the label blk
// while CX ≥ COLS, then on to the label next. ZEROS clears the block's
// sums, TERMS adds one term's products to them (the loop at kl runs over
// the r terms), DST adds them to dst and stores them.
#define PASS(ASHIFT, DSHIFT, COLS, blk, kl, next, ZEROS, TERMS, DST) \
blk: \
	CMPQ CX, $COLS; \
	JL   next; \
	ZEROS; \
	MOVQ SI, R10; \
	MOVQ DX, R11; \
	MOVQ R8, R12; \
kl: \
	VBROADCASTSS (R11), Y8; \
	TERMS; \
	ADDQ R9, R10; \
	ADDQ $4, R11; \
	DECQ R12; \
	JNZ  kl; \
	DST; \
	ADDQ $(COLS<<DSHIFT), DI; \
	ADDQ $(COLS<<ASHIFT), SI; \
	SUBQ $COLS, CX; \
	JMP  blk

// TERMS64 is TERM for the eight sums of a 64-column block, the widened
// elements in Y9–Y12 in turn.
#define TERMS64(TERM) \
	TERM(0, Y9, Y0); \
	TERM(1, Y10, Y1); \
	TERM(2, Y11, Y2); \
	TERM(3, Y12, Y3); \
	TERM(4, Y9, Y4); \
	TERM(5, Y10, Y5); \
	TERM(6, Y11, Y6); \
	TERM(7, Y12, Y7)

// EACH8(M) is M(i, Yi) for the eight sums, i < 8.
#define EACH8(M) \
	M(0, Y0); \
	M(1, Y1); \
	M(2, Y2); \
	M(3, Y3); \
	M(4, Y4); \
	M(5, Y5); \
	M(6, Y6); \
	M(7, Y7)

// ZERO clears acc.
#define ZERO(i, acc) VXORPS acc, acc, acc

// NOSETUP is a SETUP that does nothing.
#define NOSETUP

// The element types of a. A float32 element is the FMA's memory operand;
// a 16-bit one is widened into t first.
#define TERMF32(i, t, acc) VFMADD231PS i*32(R10), Y8, acc
#define TERMBF16(i, t, acc) WIDENBF16(i*16(R10), t); VFMADD231PS t, Y8, acc
#define TERMF16(i, t, acc) WIDENF16(i*16(R10), t); VFMADD231PS t, Y8, acc

// WIDENBF16 and WIDENF16 widen the eight 16-bit elements at m exactly
// into the float32 lanes of y.
#define WIDENBF16(m, y) VPMOVZXWD m, y; VPSLLD $16, y, y
#define WIDENF16(m, y) VCVTPH2PS m, y

// A float32 dst: the sums added to it, then stored.
#define ADDF32(i, acc) VADDPS i*32(DI), acc, acc
#define PUTF32(i, acc) VMOVUPS acc, i*32(DI)
#define DST64F32 EACH8(ADDF32); EACH8(PUTF32)
#define DST8F32 ADDF32(0, Y0); PUTF32(0, Y0)

// An F16 dst: each block widened into Y8 and added to its sums, then the
// sums rounded to F16 and stored.
#define ADDF16(i, acc) WIDENF16(i*16(DI), Y8); VADDPS Y8, acc, acc
#define PUTF16(i, acc) VCVTPS2PH $0, acc, i*16(DI)
#define DST64F16 EACH8(ADDF16); EACH8(PUTF16)
#define DST8F16 ADDF16(0, Y0); PUTF16(0, Y0)

// A BF16 dst: each block widened into Y8 and added to its sums, the sums
// rounded to BF16 in the low halves of their lanes, then packed two
// registers at a time (PACKBF16) or one (DST8BF16) and stored.
#define ADDBF16(i, acc) WIDENBF16(i*16(DI), Y8); VADDPS Y8, acc, acc
#define DST64BF16 \
	EACH8(ADDBF16); \
	EACH8(BF16ROUND); \
	PACKBF16(Y0, Y1, 0); \
	PACKBF16(Y2, Y3, 32); \
	PACKBF16(Y4, Y5, 64); \
	PACKBF16(Y6, Y7, 96)
#define DST8BF16 \
	ADDBF16(0, Y0); \
	BF16ROUND(0, Y0); \
	VPACKUSDW Y0, Y0, Y0; \
	VPERMQ    $0xd8, Y0, Y0; \
	VMOVDQU   X0, (DI)

// PACKBF16 stores the 16 BF16 values in the low halves of the lanes of lo
// and hi, in column order, at off(DI).
#define PACKBF16(lo, hi, off) \
	VPACKUSDW hi, lo, lo;  /* 128-bit lanes: lo0-3 hi0-3 lo4-7 hi4-7 */ \
	VPERMQ    $0xd8, lo, lo; \
	VMOVDQU   lo, off(DI)

// BF16ROUND rounds the float32 lanes of acc to bfloat16 to nearest even,
// the result in each lane's low half: bits + 0x7fff + (bits>>16 & 1),
// shifted right by 16, or for a NaN its high half with the quiet bit set.
// Temporaries Y8–Y10; the constants in Y11–Y15, set by BF16SETUP. (i is
// unused: BF16ROUND is an M of EACH8.)
#define BF16ROUND(i, acc) \
	VPSRLD    $16, acc, Y8;  /* the high half */ \
	VPAND     Y8, Y13, Y9; \
	VPADDD    acc, Y9, Y9; \
	VPADDD    Y9, Y14, Y9; \
	VPSRLD    $16, Y9, Y9;  /* rounded */ \
	VPAND     acc, Y11, Y10; \
	VPCMPGTD  Y12, Y10, Y10;  /* NaN: |bits| > infinity */ \
	VPOR      Y8, Y15, Y8;  /* quieted */ \
	VPBLENDVB Y10, Y8, Y9, acc

// BF16SETUP sets BF16ROUND's constants: Y11 0x7fffffff (magnitude),
// Y12 0x7f800000 (infinity), Y13 1, Y14 0x7fff, Y15 0x40 (quiet bit).
#define BF16SETUP \
	SPLAT32($0x7fffffff, X11, Y11); \
	SPLAT32($0x7f800000, X12, Y12); \
	SPLAT32($1, X13, Y13); \
	SPLAT32($0x7fff, X14, Y14); \
	SPLAT32($0x40, X15, Y15)

// SPLAT32 sets every 32-bit lane of y (x its low 128 bits) to imm.
#define SPLAT32(imm, x, y) \
	MOVL         imm, AX; \
	VMOVD        AX, x; \
	VPBROADCASTD x, y

// func rankRowFMA(dst, a, coef *float32, n, r, lda int)
//
// All float32.
TEXT ·rankRowFMA(SB), NOSPLIT, $0-48
	RANKROW(2, 2, NOSETUP, TERMF32, DST64F32, DST8F32)

// func rankRowBF16(dst *uint16, a, coef *float32, n, r, lda int)
//
// dst BF16: float32(dst[j]) plus the sum, rounded once to nearest even.
TEXT ·rankRowBF16(SB), NOSPLIT, $0-48
	RANKROW(2, 1, BF16SETUP, TERMF32, DST64BF16, DST8BF16)

// func rankRowF16(dst *uint16, a, coef *float32, n, r, lda int)
//
// dst F16: float32(dst[j]) plus the sum, rounded once to nearest even.
TEXT ·rankRowF16(SB), NOSPLIT, $0-48
	RANKROW(2, 1, NOSETUP, TERMF32, DST64F16, DST8F16)

// func rankRowFromBF16(dst *float32, a *uint16, coef *float32, n, r, lda int)
//
// a BF16, widened in registers.
TEXT ·rankRowFromBF16(SB), NOSPLIT, $0-48
	RANKROW(1, 2, NOSETUP, TERMBF16, DST64F32, DST8F32)

// func rankRowFromF16(dst *float32, a *uint16, coef *float32, n, r, lda int)
//
// a F16, widened in registers.
TEXT ·rankRowFromF16(SB), NOSPLIT, $0-48
	RANKROW(1, 2, NOSETUP, TERMF16, DST64F32, DST8F32)
