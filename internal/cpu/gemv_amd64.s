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
// Each pass also prefetches into L2 the same columns of the four rows
// below, (p)(BX*4): the next group of rows, which the driver (gemvFused)
// reads next at n = 1 (where it passes whole rows) and after the rest of
// the current rows' columns otherwise. A W streamed from memory is read as
// runs of four short rows, which the hardware's prefetchers alone follow
// too late. Measured (Product at n = 1, W read from memory, AMD EPYC Zen 4,
// 2 cores, medians of 6, µs, before and after, with whole rows at n = 1):
// float32 1024×1024 186 → 160, 4096×4096 2364 → 2112; BF16 1024 152 → 96,
// 4096 1266 → 1103. Into L1 (PREFETCHT0) it gained less (BF16 1024: 146;
// 4096 1443, slower).
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
	PREFETCHT1 (DX)(BX*4); \
	PREFETCHT1 (R8)(BX*4); \
	PREFETCHT1 (R9)(BX*4); \
	PREFETCHT1 (R10)(BX*4); \
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

// GEMV4X4RED(z0, z1, z2, z3, y0, y1, y2, y3, x0, x1, off): reduces the
// accumulators z0…z3 (y0…y3 their low halves, x0 and x1 those of y0 and
// y1) of one row of x against W's rows 0–3 as GEMV4 reduces its Y0…Y7:
// each zmm's two halves (gemv4F32's two accumulators of eight) added, then
// the same VHADDPS and 128-bit steps, the four sums stored at off(DI).
#define GEMV4X4RED(z0, z1, z2, z3, y0, y1, y2, y3, x0, x1, off) \
	VEXTRACTF64X4 $1, z0, Y16; \
	VADDPS Y16, y0, y0; \
	VEXTRACTF64X4 $1, z1, Y17; \
	VADDPS Y17, y1, y1; \
	VEXTRACTF64X4 $1, z2, Y18; \
	VADDPS Y18, y2, y2; \
	VEXTRACTF64X4 $1, z3, Y19; \
	VADDPS Y19, y3, y3; \
	VHADDPS y1, y0, y0; \
	VHADDPS y3, y2, y2; \
	VHADDPS y2, y0, y0; \
	VEXTRACTF128 $1, y0, x1; \
	VADDPS x1, x0, x0; \
	VMOVUPS x0, off(DI)

// func gemv4x4F32(y, x *float32, ldx int, w *float32, n, ldw int)
//
// y[4p+q] = Σⱼ x[p·ldx+j]·W[q·ldw+j] for the four rows p < 4 of x and q < 4
// of W, j < n, n a positive multiple of 16: four calls of gemv4F32 (one
// per row of x) bit for bit, W's vectors loaded once for the four. Lanes
// 0–7 and 8–15 of each zmm accumulator are gemv4F32's two accumulators of
// a row (the same products in the same order), reduced in its order
// (GEMV4X4RED). AVX-512.
//
// Registers: DI y, SI and R11–R13 x's rows, DX and R8–R10 W's rows, BX
// W's row stride in bytes, CX the columns left; Z0–Z15 the accumulators
// (x's row p against W's row q in Z(4p+q)), Z16–Z19 x's vectors, Z20–Z23
// W's.
TEXT ·gemv4x4F32(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), AX
	SHLQ $2, AX
	MOVQ w+24(FP), DX
	MOVQ n+32(FP), CX
	MOVQ ldw+40(FP), BX
	SHLQ $2, BX
	LEAQ (SI)(AX*1), R11
	LEAQ (R11)(AX*1), R12
	LEAQ (R12)(AX*1), R13
	LEAQ (DX)(BX*1), R8
	LEAQ (R8)(BX*1), R9
	LEAQ (R9)(BX*1), R10
	VPXORD Z0, Z0, Z0
	VPXORD Z1, Z1, Z1
	VPXORD Z2, Z2, Z2
	VPXORD Z3, Z3, Z3
	VPXORD Z4, Z4, Z4
	VPXORD Z5, Z5, Z5
	VPXORD Z6, Z6, Z6
	VPXORD Z7, Z7, Z7
	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15

g4x4_loop:
	VMOVUPS (DX), Z20
	VMOVUPS (R8), Z21
	VMOVUPS (R9), Z22
	VMOVUPS (R10), Z23
	VMOVUPS (SI), Z16
	VFMADD231PS Z20, Z16, Z0
	VFMADD231PS Z21, Z16, Z1
	VFMADD231PS Z22, Z16, Z2
	VFMADD231PS Z23, Z16, Z3
	VMOVUPS (R11), Z17
	VFMADD231PS Z20, Z17, Z4
	VFMADD231PS Z21, Z17, Z5
	VFMADD231PS Z22, Z17, Z6
	VFMADD231PS Z23, Z17, Z7
	VMOVUPS (R12), Z18
	VFMADD231PS Z20, Z18, Z8
	VFMADD231PS Z21, Z18, Z9
	VFMADD231PS Z22, Z18, Z10
	VFMADD231PS Z23, Z18, Z11
	VMOVUPS (R13), Z19
	VFMADD231PS Z20, Z19, Z12
	VFMADD231PS Z21, Z19, Z13
	VFMADD231PS Z22, Z19, Z14
	VFMADD231PS Z23, Z19, Z15
	ADDQ $64, SI
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, R10
	SUBQ $16, CX
	JNZ  g4x4_loop
	GEMV4X4RED(Z0, Z1, Z2, Z3, Y0, Y1, Y2, Y3, X0, X1, 0)
	GEMV4X4RED(Z4, Z5, Z6, Z7, Y4, Y5, Y6, Y7, X4, X5, 16)
	GEMV4X4RED(Z8, Z9, Z10, Z11, Y8, Y9, Y10, Y11, X8, X9, 32)
	GEMV4X4RED(Z12, Z13, Z14, Z15, Y12, Y13, Y14, Y15, X12, X13, 48)
	VZEROUPPER
	RET
