//go:build !purego

#include "textflag.h"

// The bf16 kernels of the packed product of a BF16 W with a batch of x
// whose values are bfloat16 (gemm_bf16.go). Go's assembler does not know
// VDPBF16PS nor the AMX instructions: each is written as the bytes that
// binutils' as assembles from the GNU syntax in the comment above them
// (TestBF16Encodings assembles the comments again and compares).

// func dpbf16Tiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int)
//
// For each tile (ti, tj), ti < mt, tj < nt: the 16×16 block c[(ti·nt+tj)·256 :]
// (row o: W's row 16·ti+o; column i: x's row 16·tj+i) gets, from zero or
// from its old value when acc ≠ 0, Σₚ of the pair products over k32·16
// pairs. Z0..Z15 hold the block's rows; each pair step loads the panel's
// 16 pairs (Z16, Z17 for two steps) and takes each of W's 16 rows' pair
// as a {1to16} broadcast straight from W's rows: SI, DI, R11, R12 point
// at rows 0, 4, 8, 12 of the tile, R9 = lda and R10 = 3·lda in bytes
// reach the rows between.
TEXT ·dpbf16Tiles(SB), NOSPLIT, $0-72
	MOVQ lda+8(FP), R9
	SHLQ $1, R9
	LEAQ (R9)(R9*2), R10
	XORQ R13, R13

dp_ti:
	XORQ AX, AX

dp_tj:
	// DX: the C tile (ti, tj); SI, DI, R11, R12: W's rows; BX: the panel.
	MOVQ R13, DX
	IMULQ nt+48(FP), DX
	ADDQ AX, DX
	SHLQ $10, DX
	ADDQ c+32(FP), DX
	MOVQ R13, SI
	SHLQ $4, SI
	IMULQ R9, SI
	ADDQ a+0(FP), SI
	LEAQ (SI)(R9*4), DI
	LEAQ (DI)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	MOVQ AX, BX
	IMULQ ldb+24(FP), BX
	SHLQ $1, BX
	ADDQ b+16(FP), BX
	CMPQ acc+64(FP), $0
	JEQ  dp_zero
	VMOVUPS 0(DX), Z0
	VMOVUPS 64(DX), Z1
	VMOVUPS 128(DX), Z2
	VMOVUPS 192(DX), Z3
	VMOVUPS 256(DX), Z4
	VMOVUPS 320(DX), Z5
	VMOVUPS 384(DX), Z6
	VMOVUPS 448(DX), Z7
	VMOVUPS 512(DX), Z8
	VMOVUPS 576(DX), Z9
	VMOVUPS 640(DX), Z10
	VMOVUPS 704(DX), Z11
	VMOVUPS 768(DX), Z12
	VMOVUPS 832(DX), Z13
	VMOVUPS 896(DX), Z14
	VMOVUPS 960(DX), Z15
	JMP  dp_start

dp_zero:
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

dp_start:
	// Two pair steps a pass: k32·16 pairs.
	MOVQ k32+56(FP), CX
	SHLQ $3, CX

dp_loop:
	VMOVDQU32 (BX), Z16
	VMOVDQU32 64(BX), Z17
	// vdpbf16ps (%rsi){1to16}, %zmm16, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x06
	// vdpbf16ps 0(%rsi,%r9,1){1to16}, %zmm16, %zmm1
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x0c; BYTE $0x0e
	// vdpbf16ps 0(%rsi,%r9,2){1to16}, %zmm16, %zmm2
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x14; BYTE $0x4e
	// vdpbf16ps 0(%rsi,%r10,1){1to16}, %zmm16, %zmm3
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x1c; BYTE $0x16
	// vdpbf16ps (%rdi){1to16}, %zmm16, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x27
	// vdpbf16ps 0(%rdi,%r9,1){1to16}, %zmm16, %zmm5
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x2c; BYTE $0x0f
	// vdpbf16ps 0(%rdi,%r9,2){1to16}, %zmm16, %zmm6
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x34; BYTE $0x4f
	// vdpbf16ps 0(%rdi,%r10,1){1to16}, %zmm16, %zmm7
	BYTE $0x62; BYTE $0xb2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x3c; BYTE $0x17
	// vdpbf16ps (%r11){1to16}, %zmm16, %zmm8
	BYTE $0x62; BYTE $0x52; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x03
	// vdpbf16ps 0(%r11,%r9,1){1to16}, %zmm16, %zmm9
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x0c; BYTE $0x0b
	// vdpbf16ps 0(%r11,%r9,2){1to16}, %zmm16, %zmm10
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x14; BYTE $0x4b
	// vdpbf16ps 0(%r11,%r10,1){1to16}, %zmm16, %zmm11
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x1c; BYTE $0x13
	// vdpbf16ps (%r12){1to16}, %zmm16, %zmm12
	BYTE $0x62; BYTE $0x52; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x24; BYTE $0x24
	// vdpbf16ps 0(%r12,%r9,1){1to16}, %zmm16, %zmm13
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x2c; BYTE $0x0c
	// vdpbf16ps 0(%r12,%r9,2){1to16}, %zmm16, %zmm14
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x34; BYTE $0x4c
	// vdpbf16ps 0(%r12,%r10,1){1to16}, %zmm16, %zmm15
	BYTE $0x62; BYTE $0x12; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x3c; BYTE $0x14
	// vdpbf16ps 4(%rsi){1to16}, %zmm17, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x01
	// vdpbf16ps 4(%rsi,%r9,1){1to16}, %zmm17, %zmm1
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4c; BYTE $0x0e; BYTE $0x01
	// vdpbf16ps 4(%rsi,%r9,2){1to16}, %zmm17, %zmm2
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x54; BYTE $0x4e; BYTE $0x01
	// vdpbf16ps 4(%rsi,%r10,1){1to16}, %zmm17, %zmm3
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5c; BYTE $0x16; BYTE $0x01
	// vdpbf16ps 4(%rdi){1to16}, %zmm17, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x67; BYTE $0x01
	// vdpbf16ps 4(%rdi,%r9,1){1to16}, %zmm17, %zmm5
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6c; BYTE $0x0f; BYTE $0x01
	// vdpbf16ps 4(%rdi,%r9,2){1to16}, %zmm17, %zmm6
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x74; BYTE $0x4f; BYTE $0x01
	// vdpbf16ps 4(%rdi,%r10,1){1to16}, %zmm17, %zmm7
	BYTE $0x62; BYTE $0xb2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7c; BYTE $0x17; BYTE $0x01
	// vdpbf16ps 4(%r11){1to16}, %zmm17, %zmm8
	BYTE $0x62; BYTE $0x52; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x43; BYTE $0x01
	// vdpbf16ps 4(%r11,%r9,1){1to16}, %zmm17, %zmm9
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4c; BYTE $0x0b; BYTE $0x01
	// vdpbf16ps 4(%r11,%r9,2){1to16}, %zmm17, %zmm10
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x54; BYTE $0x4b; BYTE $0x01
	// vdpbf16ps 4(%r11,%r10,1){1to16}, %zmm17, %zmm11
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5c; BYTE $0x13; BYTE $0x01
	// vdpbf16ps 4(%r12){1to16}, %zmm17, %zmm12
	BYTE $0x62; BYTE $0x52; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x64; BYTE $0x24; BYTE $0x01
	// vdpbf16ps 4(%r12,%r9,1){1to16}, %zmm17, %zmm13
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6c; BYTE $0x0c; BYTE $0x01
	// vdpbf16ps 4(%r12,%r9,2){1to16}, %zmm17, %zmm14
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x74; BYTE $0x4c; BYTE $0x01
	// vdpbf16ps 4(%r12,%r10,1){1to16}, %zmm17, %zmm15
	BYTE $0x62; BYTE $0x12; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7c; BYTE $0x14; BYTE $0x01
	ADDQ $8, SI
	ADDQ $8, DI
	ADDQ $8, R11
	ADDQ $8, R12
	ADDQ $128, BX
	DECQ CX
	JNZ  dp_loop

	VMOVUPS Z0, 0(DX)
	VMOVUPS Z1, 64(DX)
	VMOVUPS Z2, 128(DX)
	VMOVUPS Z3, 192(DX)
	VMOVUPS Z4, 256(DX)
	VMOVUPS Z5, 320(DX)
	VMOVUPS Z6, 384(DX)
	VMOVUPS Z7, 448(DX)
	VMOVUPS Z8, 512(DX)
	VMOVUPS Z9, 576(DX)
	VMOVUPS Z10, 640(DX)
	VMOVUPS Z11, 704(DX)
	VMOVUPS Z12, 768(DX)
	VMOVUPS Z13, 832(DX)
	VMOVUPS Z14, 896(DX)
	VMOVUPS Z15, 960(DX)
	INCQ AX
	CMPQ AX, nt+48(FP)
	JLT  dp_tj
	INCQ R13
	CMPQ R13, mt+40(FP)
	JLT  dp_ti
	VZEROUPPER
	RET

// func amxTiles(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int)
//
// dpbf16Tiles on AMX, mt and nt even: two by two tiles at a time, C in
// TMM0..TMM3 (tiles (ti, tj), (ti, tj+1), (ti+1, tj), (ti+1, tj+1)), W's
// 16-row tiles in TMM4, TMM5 (SI, DI; stride R9 = lda bytes), the panels'
// tiles in TMM6, TMM7 (BX, R11; 16 pairs of 64 bytes, stride R8 = 64).
// Every tile is 16 rows of 64 bytes (amxConfig). The tile state lives
// from LDTILECFG to TILERELEASE within this one call.
TEXT ·amxTiles(SB), NOSPLIT, $0-72
	LEAQ ·amxConfig(SB), AX
	// ldtilecfg (%rax)
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x00
	MOVQ lda+8(FP), R9
	SHLQ $1, R9
	MOVQ ldb+24(FP), R10
	SHLQ $1, R10
	MOVQ $64, R8
	XORQ R12, R12

amx_ti:
	XORQ AX, AX

amx_tj:
	// DX, R13: the C tiles (ti, tj) and (ti+1, tj); SI, DI: W's rows
	// 16·ti and 16·ti+16; BX, R11: the panels tj and tj+1.
	MOVQ R12, DX
	IMULQ nt+48(FP), DX
	ADDQ AX, DX
	SHLQ $10, DX
	ADDQ c+32(FP), DX
	MOVQ nt+48(FP), R13
	SHLQ $10, R13
	ADDQ DX, R13
	MOVQ R12, SI
	SHLQ $4, SI
	IMULQ R9, SI
	ADDQ a+0(FP), SI
	MOVQ R9, DI
	SHLQ $4, DI
	ADDQ SI, DI
	MOVQ AX, BX
	IMULQ R10, BX
	ADDQ b+16(FP), BX
	LEAQ (BX)(R10*1), R11
	CMPQ acc+64(FP), $0
	JEQ  amx_zero
	// tileloadd (%rdx,%r8,1), %tmm0
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x04; BYTE $0x02
	// tileloadd 1024(%rdx,%r8,1), %tmm1
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x8c; BYTE $0x02; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	// tileloadd (%r13,%r8,1), %tmm2
	BYTE $0xc4; BYTE $0x82; BYTE $0x7b; BYTE $0x4b; BYTE $0x54; BYTE $0x05; BYTE $0x00
	// tileloadd 1024(%r13,%r8,1), %tmm3
	BYTE $0xc4; BYTE $0x82; BYTE $0x7b; BYTE $0x4b; BYTE $0x9c; BYTE $0x05; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	JMP  amx_start

amx_zero:
	// tilezero %tmm0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc0
	// tilezero %tmm1
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc8
	// tilezero %tmm2
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd0
	// tilezero %tmm3
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd8

amx_start:
	MOVQ k32+56(FP), CX

amx_loop:
	// tileloadd (%rsi,%r9,1), %tmm4
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x24; BYTE $0x0e
	// tileloadd (%rdi,%r9,1), %tmm5
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x2c; BYTE $0x0f
	// tileloadd (%rbx,%r8,1), %tmm6
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x34; BYTE $0x03
	// tileloadd (%r11,%r8,1), %tmm7
	BYTE $0xc4; BYTE $0x82; BYTE $0x7b; BYTE $0x4b; BYTE $0x3c; BYTE $0x03
	// tdpbf16ps %tmm6, %tmm4, %tmm0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xc4
	// tdpbf16ps %tmm7, %tmm4, %tmm1
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xcc
	// tdpbf16ps %tmm6, %tmm5, %tmm2
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xd5
	// tdpbf16ps %tmm7, %tmm5, %tmm3
	BYTE $0xc4; BYTE $0xe2; BYTE $0x42; BYTE $0x5c; BYTE $0xdd
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $1024, BX
	ADDQ $1024, R11
	DECQ CX
	JNZ  amx_loop

	// tilestored %tmm0, (%rdx,%r8,1)
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7a; BYTE $0x4b; BYTE $0x04; BYTE $0x02
	// tilestored %tmm1, 1024(%rdx,%r8,1)
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7a; BYTE $0x4b; BYTE $0x8c; BYTE $0x02; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	// tilestored %tmm2, (%r13,%r8,1)
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x54; BYTE $0x05; BYTE $0x00
	// tilestored %tmm3, 1024(%r13,%r8,1)
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x9c; BYTE $0x05; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	ADDQ $2, AX
	CMPQ AX, nt+48(FP)
	JLT  amx_tj
	ADDQ $2, R12
	CMPQ R12, mt+40(FP)
	JLT  amx_ti
	// tilerelease
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0
	RET

// func minMag16(src *uint16, n int) uint16
//
// The smallest nonzero src[j] & 0x7fff for j < n (0 when there is none),
// n a positive multiple of 16: the minimum of (v & 0x7fff) − 1 as
// unsigned 16-bit, so that 0 wraps to the largest, plus one.
TEXT ·minMag16(SB), NOSPLIT, $0-18
	MOVQ src+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7fff7fff, AX
	MOVD AX, X0
	VPBROADCASTD X0, Y0
	MOVL $0x00010001, AX
	MOVD AX, X1
	VPBROADCASTD X1, Y1
	VPCMPEQW Y2, Y2, Y2

minmag_loop:
	VPAND (SI), Y0, Y3
	VPSUBW Y1, Y3, Y3
	VPMINUW Y3, Y2, Y2
	ADDQ $32, SI
	SUBQ $16, CX
	JNZ  minmag_loop

	VEXTRACTI128 $1, Y2, X3
	VPMINUW X3, X2, X2
	VPHMINPOSUW X2, X2
	MOVD X2, AX
	INCL AX
	MOVW AX, ret+16(FP)
	VZEROUPPER
	RET
