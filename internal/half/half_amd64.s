//go:build amd64 && !purego

#include "textflag.h"

// BROADCASTD sets the eight 32-bit lanes of y to the constant c, through AX
// and x, the low half of y.
#define BROADCASTD(c, x, y) \
	MOVL         c, AX; \
	VMOVD        AX, x; \
	VPBROADCASTD x, y

// func f16ToF32F16C(dst *float32, src *uint16, n int)
TEXT ·f16ToF32F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $16
	JB   w8

w16:
	VCVTPH2PS (SI), Y0
	VCVTPH2PS 16(SI), Y1
	VMOVUPS   Y0, (DI)
	VMOVUPS   Y1, 32(DI)
	ADDQ      $32, SI
	ADDQ      $64, DI
	SUBQ      $16, CX
	CMPQ      CX, $16
	JAE       w16

w8:
	CMPQ      CX, $8
	JB        w4
	VCVTPH2PS (SI), Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX

w4:
	CMPQ      CX, $4
	JB        w1
	VCVTPH2PS (SI), X0
	VMOVUPS   X0, (DI)
	ADDQ      $8, SI
	ADDQ      $16, DI
	SUBQ      $4, CX

w1:
	TESTQ     CX, CX
	JZ        wdone
	MOVWLZX   (SI), AX
	VMOVD     AX, X0
	VCVTPH2PS X0, X0
	VMOVSS    X0, (DI)
	ADDQ      $2, SI
	ADDQ      $4, DI
	DECQ      CX
	JMP       w1

wdone:
	VZEROUPPER
	RET

// func f32ToF16F16C(dst *uint16, src *float32, n int)
TEXT ·f32ToF16F16C(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	CMPQ CX, $16
	JB   n8

n16:
	VMOVUPS   (SI), Y0
	VMOVUPS   32(SI), Y1
	VCVTPS2PH $0, Y0, (DI)
	VCVTPS2PH $0, Y1, 16(DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	CMPQ      CX, $16
	JAE       n16

n8:
	CMPQ      CX, $8
	JB        n4
	VMOVUPS   (SI), Y0
	VCVTPS2PH $0, Y0, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	SUBQ      $8, CX

n4:
	CMPQ      CX, $4
	JB        n1
	VMOVUPS   (SI), X0
	VCVTPS2PH $0, X0, (DI)
	ADDQ      $16, SI
	ADDQ      $8, DI
	SUBQ      $4, CX

n1:
	TESTQ     CX, CX
	JZ        ndone
	VMOVSS    (SI), X0
	VCVTPS2PH $0, X0, X0
	VMOVD     X0, AX
	MOVW      AX, (DI)
	ADDQ      $4, SI
	ADDQ      $2, DI
	DECQ      CX
	JMP       n1

ndone:
	VZEROUPPER
	RET

// func bf16ToF32x8(dst *float32, src *uint16, n int)
TEXT ·bf16ToF32x8(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	BROADCASTD($0x7fffffff, X8, Y8)
	BROADCASTD($0x7f800000, X9, Y9)
	BROADCASTD($0x00400000, X10, Y10)

b8:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VPAND     Y0, Y8, Y1
	VPCMPGTD  Y9, Y1, Y1  // |b| > Inf: a NaN
	VPAND     Y1, Y10, Y1
	VPOR      Y1, Y0, Y0  // quiet it
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	SUBQ      $8, CX
	JNZ       b8
	VZEROUPPER
	RET

// func f32ToBF16x16(dst *uint16, src *float32, n int)
TEXT ·f32ToBF16x16(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	BROADCASTD($0x7fffffff, X8, Y8)
	BROADCASTD($0x7f800000, X9, Y9)
	BROADCASTD($1, X10, Y10)
	BROADCASTD($0x7fff, X11, Y11)
	BROADCASTD($0x40, X12, Y12)

c16:
	VMOVDQU (SI), Y0
	VMOVDQU 32(SI), Y1

	VPSRLD    $16, Y0, Y2     // b>>16
	VPAND     Y2, Y10, Y3     // its lowest bit
	VPADDD    Y0, Y3, Y3
	VPADDD    Y3, Y11, Y3     // b + 0x7fff + lsb: ties to even
	VPSRLD    $16, Y3, Y3
	VPAND     Y0, Y8, Y4
	VPCMPGTD  Y9, Y4, Y4      // NaN mask
	VPOR      Y2, Y12, Y2     // the NaN, quiet
	VPBLENDVB Y4, Y2, Y3, Y3

	VPSRLD    $16, Y1, Y5
	VPAND     Y5, Y10, Y6
	VPADDD    Y1, Y6, Y6
	VPADDD    Y6, Y11, Y6
	VPSRLD    $16, Y6, Y6
	VPAND     Y1, Y8, Y7
	VPCMPGTD  Y9, Y7, Y7
	VPOR      Y5, Y12, Y5
	VPBLENDVB Y7, Y5, Y6, Y6

	VPACKUSDW Y6, Y3, Y3      // 128-bit lanes: a0-3 b0-3 a4-7 b4-7
	VPERMQ    $0xd8, Y3, Y3   // a0-7 b0-7
	VMOVDQU   Y3, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	SUBQ      $16, CX
	JNZ       c16
	VZEROUPPER
	RET
