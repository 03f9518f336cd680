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
