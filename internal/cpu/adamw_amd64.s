//go:build !purego

#include "textflag.h"

// func adamw8(p, grad, m, v *float32, n8 int, c *[8]float32)
//
// AdamW on 8 elements a pass, n8 passes, each operation a float32 one
// rounded as adamwGo's: c holds β₁, 1−β₁, β₂, 1−β₂, InvSqrtBC2, Eps, Decay,
// Step (Y8–Y15). m ← β₁·m + (1−β₁)·g; v ← β₂·v + ((1−β₂)·g)·g;
// p ← p·Decay − (Step·m)/(√v·InvSqrtBC2 + Eps), the square root rounded
// once (VSQRTPS). AVX.
TEXT ·adamw8(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), AX
	MOVQ grad+8(FP), BX
	MOVQ m+16(FP), CX
	MOVQ v+24(FP), DX
	MOVQ n8+32(FP), SI
	MOVQ c+40(FP), R8
	VBROADCASTSS 0(R8), Y8
	VBROADCASTSS 4(R8), Y9
	VBROADCASTSS 8(R8), Y10
	VBROADCASTSS 12(R8), Y11
	VBROADCASTSS 16(R8), Y12
	VBROADCASTSS 20(R8), Y13
	VBROADCASTSS 24(R8), Y14
	VBROADCASTSS 28(R8), Y15

adamw_loop:
	VMOVUPS (BX), Y0
	VMULPS  (CX), Y8, Y1
	VMULPS  Y0, Y9, Y2
	VADDPS  Y2, Y1, Y1
	VMOVUPS Y1, (CX)
	VMULPS  (DX), Y10, Y3
	VMULPS  Y0, Y11, Y4
	VMULPS  Y0, Y4, Y4
	VADDPS  Y4, Y3, Y3
	VMOVUPS Y3, (DX)
	VSQRTPS Y3, Y5
	VMULPS  Y12, Y5, Y5
	VADDPS  Y13, Y5, Y5
	VMULPS  Y1, Y15, Y6
	VDIVPS  Y5, Y6, Y6
	VMULPS  (AX), Y14, Y7
	VSUBPS  Y6, Y7, Y7
	VMOVUPS Y7, (AX)
	ADDQ    $32, AX
	ADDQ    $32, BX
	ADDQ    $32, CX
	ADDQ    $32, DX
	DECQ    SI
	JNZ     adamw_loop
	VZEROUPPER
	RET
