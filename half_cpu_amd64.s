//go:build amd64 && !purego && !cuda && !cudaemu

#include "textflag.h"

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

// func rankRowBF16(dst *uint16, a, coef *float32, n, r, lda int)
//
// dst[j] ← round(float32(dst[j]) + Σₖ coef[k]·a[k·lda+j]) for j < n, dst BF16,
// n % 8 == 0, r ≥ 1: rankRowFMA's arithmetic (the sum accumulated from zero
// in k order, then added) on the widened element, rounded once to nearest
// even. Each 64-column block of dst is read once and written once.
TEXT ·rankRowBF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ coef+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ r+32(FP), R8
	MOVQ lda+40(FP), R9
	SHLQ $2, R9                  // row stride of a in bytes
	MOVL         $0x7fffffff, AX
	VMOVD        AX, X11
	VPBROADCASTD X11, Y11
	MOVL         $0x7f800000, AX
	VMOVD        AX, X12
	VPBROADCASTD X12, Y12
	MOVL         $1, AX
	VMOVD        AX, X13
	VPBROADCASTD X13, Y13
	MOVL         $0x7fff, AX
	VMOVD        AX, X14
	VPBROADCASTD X14, Y14
	MOVL         $0x40, AX
	VMOVD        AX, X15
	VPBROADCASTD X15, Y15

r64BF16:
	CMPQ CX, $64
	JL   r8BF16
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

k64BF16:
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(R10), Y8, Y0
	VFMADD231PS 32(R10), Y8, Y1
	VFMADD231PS 64(R10), Y8, Y2
	VFMADD231PS 96(R10), Y8, Y3
	VFMADD231PS 128(R10), Y8, Y4
	VFMADD231PS 160(R10), Y8, Y5
	VFMADD231PS 192(R10), Y8, Y6
	VFMADD231PS 224(R10), Y8, Y7
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  k64BF16

	VPMOVZXWD 0(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y0, Y0
	VPMOVZXWD 16(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y1, Y1
	VPMOVZXWD 32(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y2, Y2
	VPMOVZXWD 48(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y3, Y3
	VPMOVZXWD 64(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y4, Y4
	VPMOVZXWD 80(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y5, Y5
	VPMOVZXWD 96(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y6, Y6
	VPMOVZXWD 112(DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y7, Y7
	VPSRLD    $16, Y0, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y0, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y0, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y0
	VPSRLD    $16, Y1, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y1, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y1, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y1
	VPSRLD    $16, Y2, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y2, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y2, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y2
	VPSRLD    $16, Y3, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y3, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y3, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y3
	VPSRLD    $16, Y4, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y4, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y4, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y4
	VPSRLD    $16, Y5, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y5, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y5, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y5
	VPSRLD    $16, Y6, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y6, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y6, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y6
	VPSRLD    $16, Y7, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y7, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y7, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y7
	VPACKUSDW Y1, Y0, Y0      // 128-bit lanes: a0-3 b0-3 a4-7 b4-7
	VPERMQ    $0xd8, Y0, Y0
	VMOVDQU   Y0, 0(DI)
	VPACKUSDW Y3, Y2, Y2      // 128-bit lanes: a0-3 b0-3 a4-7 b4-7
	VPERMQ    $0xd8, Y2, Y2
	VMOVDQU   Y2, 32(DI)
	VPACKUSDW Y5, Y4, Y4      // 128-bit lanes: a0-3 b0-3 a4-7 b4-7
	VPERMQ    $0xd8, Y4, Y4
	VMOVDQU   Y4, 64(DI)
	VPACKUSDW Y7, Y6, Y6      // 128-bit lanes: a0-3 b0-3 a4-7 b4-7
	VPERMQ    $0xd8, Y6, Y6
	VMOVDQU   Y6, 96(DI)
	ADDQ $128, DI
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  r64BF16

r8BF16:
	CMPQ CX, $8
	JL   doneBF16
	VXORPS Y0, Y0, Y0
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

k8BF16:
	VBROADCASTSS (R11), Y8
	VFMADD231PS (R10), Y8, Y0
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  k8BF16

	VPMOVZXWD (DI), Y8
	VPSLLD    $16, Y8, Y8
	VADDPS Y8, Y0, Y0
	VPSRLD    $16, Y0, Y8
	VPAND     Y8, Y13, Y9
	VPADDD    Y0, Y9, Y9
	VPADDD    Y9, Y14, Y9
	VPSRLD    $16, Y9, Y9
	VPAND     Y0, Y11, Y10
	VPCMPGTD  Y12, Y10, Y10
	VPOR      Y8, Y15, Y8
	VPBLENDVB Y10, Y8, Y9, Y0
	VPACKUSDW Y0, Y0, Y0
	VPERMQ    $0xd8, Y0, Y0
	VMOVDQU   X0, (DI)
	ADDQ $16, DI
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  r8BF16

doneBF16:
	VZEROUPPER
	RET

// func rankRowF16(dst *uint16, a, coef *float32, n, r, lda int)
//
// dst[j] ← round(float32(dst[j]) + Σₖ coef[k]·a[k·lda+j]) for j < n, dst F16,
// n % 8 == 0, r ≥ 1: rankRowFMA's arithmetic (the sum accumulated from zero
// in k order, then added) on the widened element, rounded once to nearest
// even. Each 64-column block of dst is read once and written once.
TEXT ·rankRowF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ coef+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ r+32(FP), R8
	MOVQ lda+40(FP), R9
	SHLQ $2, R9                  // row stride of a in bytes

r64F16:
	CMPQ CX, $64
	JL   r8F16
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

k64F16:
	VBROADCASTSS (R11), Y8
	VFMADD231PS 0(R10), Y8, Y0
	VFMADD231PS 32(R10), Y8, Y1
	VFMADD231PS 64(R10), Y8, Y2
	VFMADD231PS 96(R10), Y8, Y3
	VFMADD231PS 128(R10), Y8, Y4
	VFMADD231PS 160(R10), Y8, Y5
	VFMADD231PS 192(R10), Y8, Y6
	VFMADD231PS 224(R10), Y8, Y7
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  k64F16

	VCVTPH2PS 0(DI), Y8
	VADDPS Y8, Y0, Y0
	VCVTPH2PS 16(DI), Y8
	VADDPS Y8, Y1, Y1
	VCVTPH2PS 32(DI), Y8
	VADDPS Y8, Y2, Y2
	VCVTPH2PS 48(DI), Y8
	VADDPS Y8, Y3, Y3
	VCVTPH2PS 64(DI), Y8
	VADDPS Y8, Y4, Y4
	VCVTPH2PS 80(DI), Y8
	VADDPS Y8, Y5, Y5
	VCVTPH2PS 96(DI), Y8
	VADDPS Y8, Y6, Y6
	VCVTPH2PS 112(DI), Y8
	VADDPS Y8, Y7, Y7
	VCVTPS2PH $0, Y0, 0(DI)
	VCVTPS2PH $0, Y1, 16(DI)
	VCVTPS2PH $0, Y2, 32(DI)
	VCVTPS2PH $0, Y3, 48(DI)
	VCVTPS2PH $0, Y4, 64(DI)
	VCVTPS2PH $0, Y5, 80(DI)
	VCVTPS2PH $0, Y6, 96(DI)
	VCVTPS2PH $0, Y7, 112(DI)
	ADDQ $128, DI
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  r64F16

r8F16:
	CMPQ CX, $8
	JL   doneF16
	VXORPS Y0, Y0, Y0
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

k8F16:
	VBROADCASTSS (R11), Y8
	VFMADD231PS (R10), Y8, Y0
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  k8F16

	VCVTPH2PS (DI), Y8
	VADDPS Y8, Y0, Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ $16, DI
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  r8F16

doneF16:
	VZEROUPPER
	RET

// func rankRowFromBF16(dst *float32, a *uint16, coef *float32, n, r, lda int)
//
// dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n, a BF16 widened in registers,
// n % 8 == 0, r ≥ 1: rankRowFMA with a 16-bit a, each term accumulated
// from zero in k order, then added to dst.
TEXT ·rankRowFromBF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ coef+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ r+32(FP), R8
	MOVQ lda+40(FP), R9
	SHLQ $1, R9                  // row stride of a in bytes

f64BF16:
	CMPQ CX, $64
	JL   f8BF16
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

fk64BF16:
	VBROADCASTSS (R11), Y8
	VPMOVZXWD 0(R10), Y9
	VPSLLD    $16, Y9, Y9
	VFMADD231PS Y9, Y8, Y0
	VPMOVZXWD 16(R10), Y10
	VPSLLD    $16, Y10, Y10
	VFMADD231PS Y10, Y8, Y1
	VPMOVZXWD 32(R10), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y11, Y8, Y2
	VPMOVZXWD 48(R10), Y12
	VPSLLD    $16, Y12, Y12
	VFMADD231PS Y12, Y8, Y3
	VPMOVZXWD 64(R10), Y9
	VPSLLD    $16, Y9, Y9
	VFMADD231PS Y9, Y8, Y4
	VPMOVZXWD 80(R10), Y10
	VPSLLD    $16, Y10, Y10
	VFMADD231PS Y10, Y8, Y5
	VPMOVZXWD 96(R10), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y11, Y8, Y6
	VPMOVZXWD 112(R10), Y12
	VPSLLD    $16, Y12, Y12
	VFMADD231PS Y12, Y8, Y7
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  fk64BF16

	VADDPS 0(DI), Y0, Y0
	VADDPS 32(DI), Y1, Y1
	VADDPS 64(DI), Y2, Y2
	VADDPS 96(DI), Y3, Y3
	VADDPS 128(DI), Y4, Y4
	VADDPS 160(DI), Y5, Y5
	VADDPS 192(DI), Y6, Y6
	VADDPS 224(DI), Y7, Y7
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	ADDQ $256, DI
	ADDQ $128, SI
	SUBQ $64, CX
	JMP  f64BF16

f8BF16:
	CMPQ CX, $8
	JL   fdoneBF16
	VXORPS Y0, Y0, Y0
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

fk8BF16:
	VBROADCASTSS (R11), Y8
	VPMOVZXWD (R10), Y9
	VPSLLD    $16, Y9, Y9
	VFMADD231PS Y9, Y8, Y0
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  fk8BF16

	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $16, SI
	SUBQ $8, CX
	JMP  f8BF16

fdoneBF16:
	VZEROUPPER
	RET

// func rankRowFromF16(dst *float32, a *uint16, coef *float32, n, r, lda int)
//
// dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n, a F16 widened in registers,
// n % 8 == 0, r ≥ 1: rankRowFMA with a 16-bit a, each term accumulated
// from zero in k order, then added to dst.
TEXT ·rankRowFromF16(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ coef+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ r+32(FP), R8
	MOVQ lda+40(FP), R9
	SHLQ $1, R9                  // row stride of a in bytes

f64F16:
	CMPQ CX, $64
	JL   f8F16
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

fk64F16:
	VBROADCASTSS (R11), Y8
	VCVTPH2PS 0(R10), Y9
	VFMADD231PS Y9, Y8, Y0
	VCVTPH2PS 16(R10), Y10
	VFMADD231PS Y10, Y8, Y1
	VCVTPH2PS 32(R10), Y11
	VFMADD231PS Y11, Y8, Y2
	VCVTPH2PS 48(R10), Y12
	VFMADD231PS Y12, Y8, Y3
	VCVTPH2PS 64(R10), Y9
	VFMADD231PS Y9, Y8, Y4
	VCVTPH2PS 80(R10), Y10
	VFMADD231PS Y10, Y8, Y5
	VCVTPH2PS 96(R10), Y11
	VFMADD231PS Y11, Y8, Y6
	VCVTPH2PS 112(R10), Y12
	VFMADD231PS Y12, Y8, Y7
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  fk64F16

	VADDPS 0(DI), Y0, Y0
	VADDPS 32(DI), Y1, Y1
	VADDPS 64(DI), Y2, Y2
	VADDPS 96(DI), Y3, Y3
	VADDPS 128(DI), Y4, Y4
	VADDPS 160(DI), Y5, Y5
	VADDPS 192(DI), Y6, Y6
	VADDPS 224(DI), Y7, Y7
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	ADDQ $256, DI
	ADDQ $128, SI
	SUBQ $64, CX
	JMP  f64F16

f8F16:
	CMPQ CX, $8
	JL   fdoneF16
	VXORPS Y0, Y0, Y0
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

fk8F16:
	VBROADCASTSS (R11), Y8
	VCVTPH2PS (R10), Y9
	VFMADD231PS Y9, Y8, Y0
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  fk8F16

	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $16, SI
	SUBQ $8, CX
	JMP  f8F16

fdoneF16:
	VZEROUPPER
	RET

// func maxMag16(src *uint16, n int) uint16
//
// The largest of src[j] & 0x7fff for j < n, n a positive multiple of 16:
// the pattern of the largest magnitude, for F16 and BF16 alike.
TEXT ·maxMag16(SB), NOSPLIT, $0-18
	MOVQ src+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7fff, AX
	VMOVD AX, X15
	VPBROADCASTW X15, Y15
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

m64:
	CMPQ CX, $64
	JL   m16
	VPAND 0(SI), Y15, Y4
	VPMAXUW Y4, Y0, Y0
	VPAND 32(SI), Y15, Y5
	VPMAXUW Y5, Y1, Y1
	VPAND 64(SI), Y15, Y6
	VPMAXUW Y6, Y2, Y2
	VPAND 96(SI), Y15, Y7
	VPMAXUW Y7, Y3, Y3
	ADDQ $128, SI
	SUBQ $64, CX
	JMP  m64

m16:
	CMPQ CX, $16
	JL   mdone
	VPAND (SI), Y15, Y4
	VPMAXUW Y4, Y0, Y0
	ADDQ $32, SI
	SUBQ $16, CX
	JMP  m16

mdone:
	VPMAXUW Y1, Y0, Y0
	VPMAXUW Y3, Y2, Y2
	VPMAXUW Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUW X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPMAXUW X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VPMAXUW X1, X0, X0
	VPSRLD $16, X0, X1
	VPMAXUW X1, X0, X0
	VMOVD X0, AX
	MOVW AX, ret+16(FP)
	VZEROUPPER
	RET
