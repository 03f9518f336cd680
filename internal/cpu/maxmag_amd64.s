//go:build amd64 && !purego

#include "textflag.h"

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

// func maxMag32(src *uint32, n int) uint32
//
// The largest of src[j] & 0x7fffffff for j < n, n a positive multiple of
// 8: the pattern of the largest magnitude of float32 values (NaN above
// +Inf above every finite one).
TEXT ·maxMag32(SB), NOSPLIT, $0-20
	MOVQ src+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7fffffff, AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

w32:
	CMPQ CX, $32
	JL   w8
	VPAND 0(SI), Y15, Y4
	VPMAXUD Y4, Y0, Y0
	VPAND 32(SI), Y15, Y5
	VPMAXUD Y5, Y1, Y1
	VPAND 64(SI), Y15, Y6
	VPMAXUD Y6, Y2, Y2
	VPAND 96(SI), Y15, Y7
	VPMAXUD Y7, Y3, Y3
	ADDQ $128, SI
	SUBQ $32, CX
	JMP  w32

w8:
	CMPQ CX, $8
	JL   wdone
	VPAND (SI), Y15, Y4
	VPMAXUD Y4, Y0, Y0
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  w8

wdone:
	VPMAXUD Y1, Y0, Y0
	VPMAXUD Y3, Y2, Y2
	VPMAXUD Y2, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUD X1, X0, X0
	VPSHUFD $0x4e, X0, X1
	VPMAXUD X1, X0, X0
	VPSHUFD $0xb1, X0, X1
	VPMAXUD X1, X0, X0
	VMOVD X0, AX
	MOVL AX, ret+16(FP)
	VZEROUPPER
	RET
