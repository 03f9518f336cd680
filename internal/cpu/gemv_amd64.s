//go:build amd64 && !purego

#include "textflag.h"

// The matrix-vector kernels of y = x·Wᵀ: four rows of W per pass, in AVX2
// with FMA (and F16C for an F16 W). The three kernels are one skeleton,
// GEMV4, and a macro per element type of W that takes one row's 16 columns
// into its two accumulators. A BF16 element widens exactly by a shift of 16
// bits or by clearing the low half of its lane, an F16 element by
// VCVTPH2PS.
//
// (These are Go assembler macros: a body is one line, so its instructions
// are separated by semicolons and its comments are /* */.)

// GEMV4 is the body of func(y, x *float32, w unsafe.Pointer, n, ldw int):
// y[q] = Σⱼ x[j]·W[q·ldw+j] for the four rows q < 4 of W and j < n, n a
// positive multiple of 16. Sixteen columns a pass: x's two vectors of
// eight, loaded once for the four rows, each against the row's two vectors
// of W; two accumulators per row, the rows' sums added across lanes at the
// end.
//
// WSHIFT is log2 of W's element size in bytes. SETUP runs once before the
// loop. ROW(p, acc0, acc1, t0, t1) adds the products of the 16 columns of
// W at p with x's vectors Y8 and Y9 into acc0 and acc1, with t0 and t1 for
// the widened elements: rows 0 and 2 get Y10 and Y11, rows 1 and 3 ODDT0
// and ODDT1.
//
// Registers: DI y, SI x, DX W's row 0, R8–R10 its rows 1–3, BX the row
// stride in bytes, CX the columns left; Y0–Y7 the accumulators (row q in
// Y2q and Y2q+1), Y8 and Y9 x's vectors, Y10–Y13 widened elements of W.
#define GEMV4(WSHIFT, SETUP, ROW, ODDT0, ODDT1) \
	MOVQ y+0(FP), DI; \
	MOVQ x+8(FP), SI; \
	MOVQ w+16(FP), DX; \
	MOVQ n+24(FP), CX; \
	MOVQ ldw+32(FP), BX; \
	SHLQ $WSHIFT, BX; \
	LEAQ (DX)(BX*1), R8; \
	LEAQ (R8)(BX*1), R9; \
	LEAQ (R9)(BX*1), R10; \
	SETUP; \
	VXORPS Y0, Y0, Y0; \
	VXORPS Y1, Y1, Y1; \
	VXORPS Y2, Y2, Y2; \
	VXORPS Y3, Y3, Y3; \
	VXORPS Y4, Y4, Y4; \
	VXORPS Y5, Y5, Y5; \
	VXORPS Y6, Y6, Y6; \
	VXORPS Y7, Y7, Y7; \
loop: \
	VMOVUPS (SI), Y8; \
	VMOVUPS 32(SI), Y9; \
	ROW(DX, Y0, Y1, Y10, Y11); \
	ROW(R8, Y2, Y3, ODDT0, ODDT1); \
	ROW(R9, Y4, Y5, Y10, Y11); \
	ROW(R10, Y6, Y7, ODDT0, ODDT1); \
	ADDQ $64, SI; \
	ADDQ $(16<<WSHIFT), DX; \
	ADDQ $(16<<WSHIFT), R8; \
	ADDQ $(16<<WSHIFT), R9; \
	ADDQ $(16<<WSHIFT), R10; \
	SUBQ $16, CX; \
	JNZ  loop; \
	VADDPS Y1, Y0, Y0; \
	VADDPS Y3, Y2, Y2; \
	VADDPS Y5, Y4, Y4; \
	VADDPS Y7, Y6, Y6; \
	VHADDPS Y2, Y0, Y0;  /* per lane: r0 r0 r1 r1 */ \
	VHADDPS Y6, Y4, Y4;  /* per lane: r2 r2 r3 r3 */ \
	VHADDPS Y4, Y0, Y0;  /* per lane: r0 r1 r2 r3 */ \
	VEXTRACTF128 $1, Y0, X1; \
	VADDPS X1, X0, X0; \
	VMOVUPS X0, (DI); \
	VZEROUPPER; \
	RET

// NOSETUP is a SETUP that does nothing.
#define NOSETUP

// ROWF32 takes W's float32 elements as they are, as the FMAs' memory
// operands.
#define ROWF32(p, acc0, acc1, t0, t1) \
	VFMADD231PS (p), Y8, acc0; \
	VFMADD231PS 32(p), Y9, acc1

// ROWBF16 widens W's BF16 elements two by two in their 32-bit lanes: lane
// k of the 16 elements holds columns 2k (low half) and 2k+1 (high half);
// the even one widens by a shift of 16 bits, the odd one by clearing the
// low half (the mask in Y15, set by BF16SETUP). So x comes in pair order
// (pairOrder): in each block of 16 columns, Y8 the eight even columns and
// Y9 the eight odd ones.
#define ROWBF16(p, acc0, acc1, t0, t1) \
	VPSLLD $16, (p), t0; \
	VPAND  (p), Y15, t1; \
	VFMADD231PS t0, Y8, acc0; \
	VFMADD231PS t1, Y9, acc1

// BF16SETUP sets Y15 to the high half of each 32-bit lane.
#define BF16SETUP \
	MOVL         $0xffff0000, AX; \
	VMOVD        AX, X15; \
	VPBROADCASTD X15, Y15

// ROWF16 widens W's F16 elements eight at a time; x in its own order.
#define ROWF16(p, acc0, acc1, t0, t1) \
	VCVTPH2PS (p), t0; \
	VCVTPH2PS 16(p), t1; \
	VFMADD231PS t0, Y8, acc0; \
	VFMADD231PS t1, Y9, acc1

// func gemv4F32(y, x *float32, w *float32, n, ldw int)
//
// W float32, its elements the FMAs' memory operands.
TEXT ·gemv4F32(SB), NOSPLIT, $0-40
	GEMV4(2, NOSETUP, ROWF32, Y12, Y13)

// func gemv4BF16(y, x *float32, w *uint16, n, ldw int)
//
// W BF16, x in pair order; rows 1 and 3 widen into Y12 and Y13.
TEXT ·gemv4BF16(SB), NOSPLIT, $0-40
	GEMV4(1, BF16SETUP, ROWBF16, Y12, Y13)

// func gemv4F16(y, x *float32, w *uint16, n, ldw int)
//
// W F16, x in its own order; every row widens into Y10 and Y11.
TEXT ·gemv4F16(SB), NOSPLIT, $0-40
	GEMV4(1, NOSETUP, ROWF16, Y10, Y11)
