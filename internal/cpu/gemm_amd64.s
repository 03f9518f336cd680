//go:build !purego

#include "textflag.h"

// gemmKernelAVX512: see its declaration in kernels_amd64.go. The 8×32 block
// of C is sixteen ZMM accumulators, Z0..Z15: row i in Z(2i) (columns 0-15)
// and Z(2i+1) (columns 16-31). Each step p loads the 32 values of b's row p
// into Z16, Z17 and broadcasts a's eight values of step p, one a register
// (Z18..Z25), into the sixteen FMAs.

// GEMMSTEP: one step, a's eight values at (SI), b's 32 at (DI); both advance.
#define GEMMSTEP \
	VMOVUPS (DI), Z16 \
	VMOVUPS 64(DI), Z17 \
	VBROADCASTSS (SI), Z18 \
	VBROADCASTSS 4(SI), Z19 \
	VBROADCASTSS 8(SI), Z20 \
	VBROADCASTSS 12(SI), Z21 \
	VFMADD231PS Z16, Z18, Z0 \
	VFMADD231PS Z17, Z18, Z1 \
	VFMADD231PS Z16, Z19, Z2 \
	VFMADD231PS Z17, Z19, Z3 \
	VBROADCASTSS 16(SI), Z22 \
	VBROADCASTSS 20(SI), Z23 \
	VFMADD231PS Z16, Z20, Z4 \
	VFMADD231PS Z17, Z20, Z5 \
	VFMADD231PS Z16, Z21, Z6 \
	VFMADD231PS Z17, Z21, Z7 \
	VBROADCASTSS 24(SI), Z24 \
	VBROADCASTSS 28(SI), Z25 \
	VFMADD231PS Z16, Z22, Z8 \
	VFMADD231PS Z17, Z22, Z9 \
	VFMADD231PS Z16, Z23, Z10 \
	VFMADD231PS Z17, Z23, Z11 \
	VFMADD231PS Z16, Z24, Z12 \
	VFMADD231PS Z17, Z24, Z13 \
	VFMADD231PS Z16, Z25, Z14 \
	VFMADD231PS Z17, Z25, Z15 \
	ADDQ $32, SI \
	ADDQ $128, DI

// GEMMADD(lo, hi): add row DX of C to the accumulators lo, hi.
#define GEMMADD(lo, hi) \
	VADDPS (DX), lo, lo \
	VADDPS 64(DX), hi, hi \
	ADDQ R8, DX

// GEMMSTORE(lo, hi): store the accumulators lo, hi into row DX of C.
#define GEMMSTORE(lo, hi) \
	VMOVUPS lo, (DX) \
	VMOVUPS hi, 64(DX) \
	ADDQ R8, DX

// func gemmKernelAVX512(k int, a, b, c *float32, ldc, acc int)
TEXT ·gemmKernelAVX512(SB), NOSPLIT, $0-48
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8
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

	// Two steps a pass, then the odd one.
	MOVQ CX, BX
	SHRQ $1, BX
	JZ   gemm_tail

gemm_loop2:
	GEMMSTEP
	GEMMSTEP
	DECQ BX
	JNZ  gemm_loop2

gemm_tail:
	TESTQ $1, CX
	JZ    gemm_done
	GEMMSTEP

gemm_done:
	CMPQ acc+40(FP), $0
	JEQ  gemm_store
	MOVQ DX, R9
	GEMMADD(Z0, Z1)
	GEMMADD(Z2, Z3)
	GEMMADD(Z4, Z5)
	GEMMADD(Z6, Z7)
	GEMMADD(Z8, Z9)
	GEMMADD(Z10, Z11)
	GEMMADD(Z12, Z13)
	GEMMADD(Z14, Z15)
	MOVQ R9, DX

gemm_store:
	GEMMSTORE(Z0, Z1)
	GEMMSTORE(Z2, Z3)
	GEMMSTORE(Z4, Z5)
	GEMMSTORE(Z6, Z7)
	GEMMSTORE(Z8, Z9)
	GEMMSTORE(Z10, Z11)
	GEMMSTORE(Z12, Z13)
	GEMMSTORE(Z14, Z15)
	VZEROUPPER
	RET
