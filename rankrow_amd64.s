//go:build amd64 && !purego && !cuda && !cudaemu

#include "textflag.h"

// func rankRowFMA(dst, a, coef *float32, n, r, lda int)
//
// dst[j] += Σₖ coef[k]·a[k·lda+j] for j < n; n % 8 == 0, r ≥ 1.
// Each 64-column block of dst is read once and written once; the r rows of
// a are streamed through the cache and coef is broadcast one term at a time.
TEXT ·rankRowFMA(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ coef+16(FP), DX
	MOVQ n+24(FP), CX
	MOVQ r+32(FP), R8
	MOVQ lda+40(FP), R9
	SHLQ $2, R9                  // row stride of a in bytes

block64:
	CMPQ CX, $64
	JL   block8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ SI, R10                 // &a[k, j]
	MOVQ DX, R11                 // &coef[k]
	MOVQ R8, R12                 // terms left

k64:
	VBROADCASTSS (R11), Y8
	VFMADD231PS (R10), Y8, Y0
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
	JNZ  k64

	VADDPS (DI), Y0, Y0
	VADDPS 32(DI), Y1, Y1
	VADDPS 64(DI), Y2, Y2
	VADDPS 96(DI), Y3, Y3
	VADDPS 128(DI), Y4, Y4
	VADDPS 160(DI), Y5, Y5
	VADDPS 192(DI), Y6, Y6
	VADDPS 224(DI), Y7, Y7
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	ADDQ $256, DI
	ADDQ $256, SI
	SUBQ $64, CX
	JMP  block64

block8:
	CMPQ CX, $8
	JL   done
	VXORPS Y0, Y0, Y0
	MOVQ SI, R10
	MOVQ DX, R11
	MOVQ R8, R12

k8:
	VBROADCASTSS (R11), Y8
	VFMADD231PS (R10), Y8, Y0
	ADDQ R9, R10
	ADDQ $4, R11
	DECQ R12
	JNZ  k8

	VADDPS (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  block8

done:
	VZEROUPPER
	RET
