//go:build amd64 && !purego && !cuda && !cudaemu

#include "textflag.h"

// The half-precision W kernels of the CPU backend, in AVX2 with FMA (and F16C
// for F16). A BF16 element widens exactly by a zero extension and a shift of
// 16 bits (VPMOVZXWD, VPSLLD), an F16 element by VCVTPH2PS; results narrow
// to nearest even (VCVTPS2PH $0, or the rounding add of bfloat16 below).

// func gemv4BF16(y, x *float32, w *uint16, n, ldw int)
//
// y[q] = Σⱼ x[j]·W[q·ldw+j] for the four rows q < 4 of W (BF16) and j < n,
// n a positive multiple of 16: two accumulators per row, each eight
// columns of x loaded once for the four rows, the rows' sums added
// across lanes at the end.
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
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gBF16:
	VMOVUPS (SI), Y8
	VMOVUPS 32(SI), Y9
	VPMOVZXWD (DX), Y10
	VPSLLD    $16, Y10, Y10
	VPMOVZXWD 16(DX), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y10, Y8, Y0
	VFMADD231PS Y11, Y9, Y1
	VPMOVZXWD (R8), Y10
	VPSLLD    $16, Y10, Y10
	VPMOVZXWD 16(R8), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y10, Y8, Y2
	VFMADD231PS Y11, Y9, Y3
	VPMOVZXWD (R9), Y10
	VPSLLD    $16, Y10, Y10
	VPMOVZXWD 16(R9), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y10, Y8, Y4
	VFMADD231PS Y11, Y9, Y5
	VPMOVZXWD (R10), Y10
	VPSLLD    $16, Y10, Y10
	VPMOVZXWD 16(R10), Y11
	VPSLLD    $16, Y11, Y11
	VFMADD231PS Y10, Y8, Y6
	VFMADD231PS Y11, Y9, Y7
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
