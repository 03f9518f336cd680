//go:build amd64 && !purego

#include "textflag.h"

// The matrix-vector kernels of y = x·Wᵀ: four rows of W per pass, in AVX2
// with FMA (and F16C for an F16 W).

// func gemv4F32(y, x *float32, w *float32, n, ldw int)
//
// y[q] = Σⱼ x[j]·W[q·ldw+j] for the four rows q < 4 of W (float32) and
// j < n, n a positive multiple of 16: gemv4F16's loop with W's elements
// taken as they are by the FMAs' memory operands. Two accumulators per row,
// each eight columns of x loaded once for the four rows, the rows' sums
// added across lanes at the end.
TEXT ·gemv4F32(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ ldw+32(FP), BX
	SHLQ $2, BX                 // row stride of W in bytes
	LEAQ (DX)(BX*1), R8         // row 1
	LEAQ (R8)(BX*1), R9         // row 2
	LEAQ (R9)(BX*1), R10        // row 3
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gF32:
	VMOVUPS (SI), Y8
	VMOVUPS 32(SI), Y9
	VFMADD231PS (DX), Y8, Y0
	VFMADD231PS 32(DX), Y9, Y1
	VFMADD231PS (R8), Y8, Y2
	VFMADD231PS 32(R8), Y9, Y3
	VFMADD231PS (R9), Y8, Y4
	VFMADD231PS 32(R9), Y9, Y5
	VFMADD231PS (R10), Y8, Y6
	VFMADD231PS 32(R10), Y9, Y7
	ADDQ $64, SI
	ADDQ $64, DX
	ADDQ $64, R8
	ADDQ $64, R9
	ADDQ $64, R10
	SUBQ $16, CX
	JNZ  gF32

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	VHADDPS Y2, Y0, Y0          // per lane: r0 r0 r1 r1
	VHADDPS Y6, Y4, Y4          // per lane: r2 r2 r3 r3
	VHADDPS Y4, Y0, Y0          // per lane: r0 r1 r2 r3
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET

// The half-precision W kernels of the CPU backend, in AVX2 with FMA (and F16C
// for F16). A BF16 element widens exactly by a zero extension and a shift of
// 16 bits (VPMOVZXWD, VPSLLD), an F16 element by VCVTPH2PS; results narrow
// to nearest even (VCVTPS2PH $0, or the rounding add of bfloat16 below).

// func gemv4BF16(y, x *float32, w *uint16, n, ldw int)
//
// y[q] = Σⱼ x[j]·W[q·ldw+j] for the four rows q < 4 of W (BF16) and j < n,
// n a positive multiple of 16, x given in pair order (pairOrder): in each
// block of 16 columns the eight even columns, then the eight odd ones. Each
// 32-bit lane k of 16 elements of W holds columns 2k (low half) and 2k+1
// (high half): the even one widens by a shift of 16 bits, the odd one by
// clearing the low half, each against its eight columns of x, loaded once
// for the four rows. Two accumulators per row (even and odd columns), the
// rows' sums added across lanes at the end.
TEXT ·gemv4BF16(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ ldw+32(FP), BX
	SHLQ $1, BX                 // row stride of W in bytes
	LEAQ (DX)(BX*1), R8         // row 1
	LEAQ (R8)(BX*1), R9         // row 2
	LEAQ (R9)(BX*1), R10        // row 3
	MOVL         $0xffff0000, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15       // the high half of each lane
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gBF16:
	VMOVUPS (SI), Y8            // x's even columns
	VMOVUPS 32(SI), Y9          // x's odd columns
	VPSLLD $16, (DX), Y10
	VPAND  (DX), Y15, Y11
	VFMADD231PS Y10, Y8, Y0
	VFMADD231PS Y11, Y9, Y1
	VPSLLD $16, (R8), Y12
	VPAND  (R8), Y15, Y13
	VFMADD231PS Y12, Y8, Y2
	VFMADD231PS Y13, Y9, Y3
	VPSLLD $16, (R9), Y10
	VPAND  (R9), Y15, Y11
	VFMADD231PS Y10, Y8, Y4
	VFMADD231PS Y11, Y9, Y5
	VPSLLD $16, (R10), Y12
	VPAND  (R10), Y15, Y13
	VFMADD231PS Y12, Y8, Y6
	VFMADD231PS Y13, Y9, Y7
	ADDQ $64, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	SUBQ $16, CX
	JNZ  gBF16

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	VHADDPS Y2, Y0, Y0          // per lane: r0 r0 r1 r1
	VHADDPS Y6, Y4, Y4          // per lane: r2 r2 r3 r3
	VHADDPS Y4, Y0, Y0          // per lane: r0 r1 r2 r3
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET

// func gemv4F16(y, x *float32, w *uint16, n, ldw int)
//
// y[q] = Σⱼ x[j]·W[q·ldw+j] for the four rows q < 4 of W (F16) and j < n,
// n a positive multiple of 16: two accumulators per row, each eight
// columns of x loaded once for the four rows, the rows' sums added
// across lanes at the end.
TEXT ·gemv4F16(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ w+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ ldw+32(FP), BX
	SHLQ $1, BX                 // row stride of W in bytes
	LEAQ (DX)(BX*1), R8         // row 1
	LEAQ (R8)(BX*1), R9         // row 2
	LEAQ (R9)(BX*1), R10        // row 3
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gF16:
	VMOVUPS (SI), Y8
	VMOVUPS 32(SI), Y9
	VCVTPH2PS (DX), Y10
	VCVTPH2PS 16(DX), Y11
	VFMADD231PS Y10, Y8, Y0
	VFMADD231PS Y11, Y9, Y1
	VCVTPH2PS (R8), Y10
	VCVTPH2PS 16(R8), Y11
	VFMADD231PS Y10, Y8, Y2
	VFMADD231PS Y11, Y9, Y3
	VCVTPH2PS (R9), Y10
	VCVTPH2PS 16(R9), Y11
	VFMADD231PS Y10, Y8, Y4
	VFMADD231PS Y11, Y9, Y5
	VCVTPH2PS (R10), Y10
	VCVTPH2PS 16(R10), Y11
	VFMADD231PS Y10, Y8, Y6
	VFMADD231PS Y11, Y9, Y7
	ADDQ $64, SI
	ADDQ $32, DX
	ADDQ $32, R8
	ADDQ $32, R9
	ADDQ $32, R10
	SUBQ $16, CX
	JNZ  gF16

	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y5, Y4, Y4
	VADDPS Y7, Y6, Y6
	VHADDPS Y2, Y0, Y0          // per lane: r0 r0 r1 r1
	VHADDPS Y6, Y4, Y4          // per lane: r2 r2 r3 r3
	VHADDPS Y4, Y0, Y0          // per lane: r0 r1 r2 r3
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVUPS X0, (DI)
	VZEROUPPER
	RET
