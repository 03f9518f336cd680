//go:build !purego

#include "textflag.h"

// The kernels of the bf16 product of a BF16 W with a batch of bfloat16
// values (gemm_bf16.go). Go's assembler does not know VDPBF16PS nor the
// AMX instructions: each is written as the bytes that binutils' as
// assembles from the GNU syntax in the comment above them
// (TestBF16Encodings assembles the comments again and compares).
//
// The operands, as packTiles16 and packXBF16 lay them out: a tile of W is
// 16 rows by k32 steps of 32 columns, step s at s·1024 bytes, row o of a
// step at o·64 (its 32 values); tile ti at ti·lda elements from a. A
// panel of x is 16 rows by pairs of columns, pair p at p·64 bytes (its 16
// rows' two values side by side); panel tj at tj·ldb elements from b. A
// tile of C is 16×16 float32, row o (of W) at o·64 bytes, tile (ti, tj)
// at (ti·nt+tj)·1024 bytes from c.

// PFLINE(next, end, rowBytes, stride): unless R15 has reached end, a
// PREFETCHT1 of the line R14 bytes into the row at R15, then R14 on to the
// next line, or to the next row (stride bytes on) past rowBytes; on to
// next. The prefetches of amxKernel (AMXPFLINE: its operands in its
// frame) and of dpbf16TilesPF (DPPFLINE: in registers).
#define PFLINE(next, end, rowBytes, stride) \
	CMPQ       R15, end \
	JAE        next \
	PREFETCHT1 (R15)(R14*1) \
	ADDQ       $64, R14 \
	CMPQ       R14, rowBytes \
	JB         next \
	XORQ       R14, R14 \
	ADDQ       stride, R15

#define AMXPFLINE(next) PFLINE(next, pfEnd+96(FP), rowBytes+104(FP), stride+112(FP))

// DPPFLINE: pfEnd in R12, rowBytes in R11, stride in R10.
#define DPPFLINE(next) PFLINE(next, R12, R11, R10)

// AMXSCAN4: the least (v & 0x7fff) − 1 of the four rows of W at DX, DX +
// R9, DX + 2·R9 and DX + R13 (= 3·R9), 32 values each, into Z0 (Z1: 0x7fff
// in each word, Z2: 1); DX on by four rows.
#define AMXSCAN4 \
	VPANDD  (DX), Z1, Z3 \
	VPANDD  (DX)(R9*1), Z1, Z4 \
	VPANDD  (DX)(R9*2), Z1, Z5 \
	VPANDD  (DX)(R13*1), Z1, Z6 \
	VPSUBW  Z2, Z3, Z3 \
	VPSUBW  Z2, Z4, Z4 \
	VPSUBW  Z2, Z5, Z5 \
	VPSUBW  Z2, Z6, Z6 \
	VPMINUW Z3, Z4, Z3 \
	VPMINUW Z5, Z6, Z5 \
	VPMINUW Z3, Z5, Z3 \
	VPMINUW Z3, Z0, Z0 \
	LEAQ    (DX)(R9*4), DX

// AMXSCAN(skip): when scan ≠ 0, the 16 rows of each of W's tiles at SI
// and DI through AMXSCAN4; on to skip. DX and R13 are free within the
// steps (set again after them).
#define AMXSCAN(skip) \
	CMPQ  scan+120(FP), $0 \
	JEQ   skip \
	LEAQ  (R9)(R9*2), R13 \
	MOVQ  SI, DX \
	AMXSCAN4 \
	AMXSCAN4 \
	AMXSCAN4 \
	AMXSCAN4 \
	MOVQ  DI, DX \
	AMXSCAN4 \
	AMXSCAN4 \
	AMXSCAN4 \
	AMXSCAN4

// AMXCTILES: DX, R13 = the C tiles (ti, tj) and (ti+1, tj).
#define AMXCTILES \
	MOVQ  R12, DX \
	IMULQ nt+64(FP), DX \
	ADDQ  AX, DX \
	SHLQ  $10, DX \
	ADDQ  c+48(FP), DX \
	MOVQ  nt+64(FP), R13 \
	SHLQ  $10, R13 \
	ADDQ  DX, R13

// func dpbf16TilesPF(a *uint16, lda int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int)
//
// Z0..Z15 hold the 16 rows of a C tile; each pair p loads the panel's 16
// pairs (Z16..Z19 in turn) and takes each row's pair of W as a {1to16}
// broadcast from the tile (SI: the step). A step of 16 pairs is written
// out. Each step (256 VDPBF16PS) first issues up to four DPPFLINEs of the
// rows from pf.
TEXT ·dpbf16TilesPF(SB), NOSPLIT, $0-104
	MOVQ pf+72(FP), R15
	MOVQ pfEnd+80(FP), R12
	MOVQ rowBytes+88(FP), R11
	MOVQ stride+96(FP), R10
	XORQ R14, R14
	XORQ R13, R13

dp_ti:
	XORQ AX, AX

dp_tj:
	// DX: the C tile (ti, tj); R8: W's tile ti; BX: panel tj.
	MOVQ R13, DX
	IMULQ nt+48(FP), DX
	ADDQ AX, DX
	SHLQ $10, DX
	ADDQ c+32(FP), DX
	MOVQ R13, R8
	IMULQ lda+8(FP), R8
	SHLQ $1, R8
	ADDQ a+0(FP), R8
	MOVQ AX, BX
	IMULQ ldb+24(FP), BX
	SHLQ $1, BX
	ADDQ b+16(FP), BX
	MOVQ R8, SI
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
	MOVQ k32+56(FP), CX

dp_loop:
	DPPFLINE(dp_pf1)

dp_pf1:
	DPPFLINE(dp_pf2)

dp_pf2:
	DPPFLINE(dp_pf3)

dp_pf3:
	DPPFLINE(dp_pf4)

dp_pf4:
	VMOVDQU32 0(BX), Z16
	// vdpbf16ps (%rsi){1to16}, %zmm16, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x06
	// vdpbf16ps 64(%rsi){1to16}, %zmm16, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x10
	// vdpbf16ps 128(%rsi){1to16}, %zmm16, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x20
	// vdpbf16ps 192(%rsi){1to16}, %zmm16, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x30
	// vdpbf16ps 256(%rsi){1to16}, %zmm16, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x40
	// vdpbf16ps 320(%rsi){1to16}, %zmm16, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x50
	// vdpbf16ps 384(%rsi){1to16}, %zmm16, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x60
	// vdpbf16ps 448(%rsi){1to16}, %zmm16, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x70
	// vdpbf16ps 512(%rsi){1to16}, %zmm16, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x00; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 576(%rsi){1to16}, %zmm16, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x40; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 640(%rsi){1to16}, %zmm16, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x80; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 704(%rsi){1to16}, %zmm16, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xc0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 768(%rsi){1to16}, %zmm16, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x00; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 832(%rsi){1to16}, %zmm16, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x40; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 896(%rsi){1to16}, %zmm16, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x80; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 960(%rsi){1to16}, %zmm16, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xc0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 64(BX), Z17
	// vdpbf16ps 4(%rsi){1to16}, %zmm17, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x01
	// vdpbf16ps 68(%rsi){1to16}, %zmm17, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x11
	// vdpbf16ps 132(%rsi){1to16}, %zmm17, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x21
	// vdpbf16ps 196(%rsi){1to16}, %zmm17, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x31
	// vdpbf16ps 260(%rsi){1to16}, %zmm17, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x41
	// vdpbf16ps 324(%rsi){1to16}, %zmm17, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x51
	// vdpbf16ps 388(%rsi){1to16}, %zmm17, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x61
	// vdpbf16ps 452(%rsi){1to16}, %zmm17, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x71
	// vdpbf16ps 516(%rsi){1to16}, %zmm17, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x04; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 580(%rsi){1to16}, %zmm17, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x44; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 644(%rsi){1to16}, %zmm17, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x84; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 708(%rsi){1to16}, %zmm17, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xc4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 772(%rsi){1to16}, %zmm17, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x04; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 836(%rsi){1to16}, %zmm17, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x44; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 900(%rsi){1to16}, %zmm17, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x84; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 964(%rsi){1to16}, %zmm17, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xc4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 128(BX), Z18
	// vdpbf16ps 8(%rsi){1to16}, %zmm18, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x02
	// vdpbf16ps 72(%rsi){1to16}, %zmm18, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x12
	// vdpbf16ps 136(%rsi){1to16}, %zmm18, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x22
	// vdpbf16ps 200(%rsi){1to16}, %zmm18, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x32
	// vdpbf16ps 264(%rsi){1to16}, %zmm18, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x42
	// vdpbf16ps 328(%rsi){1to16}, %zmm18, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x52
	// vdpbf16ps 392(%rsi){1to16}, %zmm18, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x62
	// vdpbf16ps 456(%rsi){1to16}, %zmm18, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x72
	// vdpbf16ps 520(%rsi){1to16}, %zmm18, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x08; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 584(%rsi){1to16}, %zmm18, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x48; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 648(%rsi){1to16}, %zmm18, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x88; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 712(%rsi){1to16}, %zmm18, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xc8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 776(%rsi){1to16}, %zmm18, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x08; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 840(%rsi){1to16}, %zmm18, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x48; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 904(%rsi){1to16}, %zmm18, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x88; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 968(%rsi){1to16}, %zmm18, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xc8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 192(BX), Z19
	// vdpbf16ps 12(%rsi){1to16}, %zmm19, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x03
	// vdpbf16ps 76(%rsi){1to16}, %zmm19, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x13
	// vdpbf16ps 140(%rsi){1to16}, %zmm19, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x23
	// vdpbf16ps 204(%rsi){1to16}, %zmm19, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x33
	// vdpbf16ps 268(%rsi){1to16}, %zmm19, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x43
	// vdpbf16ps 332(%rsi){1to16}, %zmm19, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x53
	// vdpbf16ps 396(%rsi){1to16}, %zmm19, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x63
	// vdpbf16ps 460(%rsi){1to16}, %zmm19, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x73
	// vdpbf16ps 524(%rsi){1to16}, %zmm19, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x0c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 588(%rsi){1to16}, %zmm19, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x4c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 652(%rsi){1to16}, %zmm19, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x8c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 716(%rsi){1to16}, %zmm19, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xcc; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 780(%rsi){1to16}, %zmm19, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x0c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 844(%rsi){1to16}, %zmm19, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x4c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 908(%rsi){1to16}, %zmm19, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x8c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 972(%rsi){1to16}, %zmm19, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xcc; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 256(BX), Z16
	// vdpbf16ps 16(%rsi){1to16}, %zmm16, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x04
	// vdpbf16ps 80(%rsi){1to16}, %zmm16, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x14
	// vdpbf16ps 144(%rsi){1to16}, %zmm16, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x24
	// vdpbf16ps 208(%rsi){1to16}, %zmm16, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x34
	// vdpbf16ps 272(%rsi){1to16}, %zmm16, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x44
	// vdpbf16ps 336(%rsi){1to16}, %zmm16, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x54
	// vdpbf16ps 400(%rsi){1to16}, %zmm16, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x64
	// vdpbf16ps 464(%rsi){1to16}, %zmm16, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x74
	// vdpbf16ps 528(%rsi){1to16}, %zmm16, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x10; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 592(%rsi){1to16}, %zmm16, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x50; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 656(%rsi){1to16}, %zmm16, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x90; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 720(%rsi){1to16}, %zmm16, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xd0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 784(%rsi){1to16}, %zmm16, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x10; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 848(%rsi){1to16}, %zmm16, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x50; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 912(%rsi){1to16}, %zmm16, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x90; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 976(%rsi){1to16}, %zmm16, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xd0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 320(BX), Z17
	// vdpbf16ps 20(%rsi){1to16}, %zmm17, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x05
	// vdpbf16ps 84(%rsi){1to16}, %zmm17, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x15
	// vdpbf16ps 148(%rsi){1to16}, %zmm17, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x25
	// vdpbf16ps 212(%rsi){1to16}, %zmm17, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x35
	// vdpbf16ps 276(%rsi){1to16}, %zmm17, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x45
	// vdpbf16ps 340(%rsi){1to16}, %zmm17, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x55
	// vdpbf16ps 404(%rsi){1to16}, %zmm17, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x65
	// vdpbf16ps 468(%rsi){1to16}, %zmm17, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x75
	// vdpbf16ps 532(%rsi){1to16}, %zmm17, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x14; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 596(%rsi){1to16}, %zmm17, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x54; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 660(%rsi){1to16}, %zmm17, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x94; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 724(%rsi){1to16}, %zmm17, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xd4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 788(%rsi){1to16}, %zmm17, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x14; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 852(%rsi){1to16}, %zmm17, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x54; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 916(%rsi){1to16}, %zmm17, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x94; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 980(%rsi){1to16}, %zmm17, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xd4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 384(BX), Z18
	// vdpbf16ps 24(%rsi){1to16}, %zmm18, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x06
	// vdpbf16ps 88(%rsi){1to16}, %zmm18, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x16
	// vdpbf16ps 152(%rsi){1to16}, %zmm18, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x26
	// vdpbf16ps 216(%rsi){1to16}, %zmm18, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x36
	// vdpbf16ps 280(%rsi){1to16}, %zmm18, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x46
	// vdpbf16ps 344(%rsi){1to16}, %zmm18, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x56
	// vdpbf16ps 408(%rsi){1to16}, %zmm18, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x66
	// vdpbf16ps 472(%rsi){1to16}, %zmm18, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x76
	// vdpbf16ps 536(%rsi){1to16}, %zmm18, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x18; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 600(%rsi){1to16}, %zmm18, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x58; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 664(%rsi){1to16}, %zmm18, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x98; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 728(%rsi){1to16}, %zmm18, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xd8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 792(%rsi){1to16}, %zmm18, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x18; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 856(%rsi){1to16}, %zmm18, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x58; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 920(%rsi){1to16}, %zmm18, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x98; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 984(%rsi){1to16}, %zmm18, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xd8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 448(BX), Z19
	// vdpbf16ps 28(%rsi){1to16}, %zmm19, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x07
	// vdpbf16ps 92(%rsi){1to16}, %zmm19, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x17
	// vdpbf16ps 156(%rsi){1to16}, %zmm19, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x27
	// vdpbf16ps 220(%rsi){1to16}, %zmm19, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x37
	// vdpbf16ps 284(%rsi){1to16}, %zmm19, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x47
	// vdpbf16ps 348(%rsi){1to16}, %zmm19, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x57
	// vdpbf16ps 412(%rsi){1to16}, %zmm19, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x67
	// vdpbf16ps 476(%rsi){1to16}, %zmm19, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x77
	// vdpbf16ps 540(%rsi){1to16}, %zmm19, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x1c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 604(%rsi){1to16}, %zmm19, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x5c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 668(%rsi){1to16}, %zmm19, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0x9c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 732(%rsi){1to16}, %zmm19, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xdc; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 796(%rsi){1to16}, %zmm19, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x1c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 860(%rsi){1to16}, %zmm19, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x5c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 924(%rsi){1to16}, %zmm19, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0x9c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 988(%rsi){1to16}, %zmm19, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xdc; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 512(BX), Z16
	// vdpbf16ps 32(%rsi){1to16}, %zmm16, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x08
	// vdpbf16ps 96(%rsi){1to16}, %zmm16, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x18
	// vdpbf16ps 160(%rsi){1to16}, %zmm16, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x28
	// vdpbf16ps 224(%rsi){1to16}, %zmm16, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x38
	// vdpbf16ps 288(%rsi){1to16}, %zmm16, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x48
	// vdpbf16ps 352(%rsi){1to16}, %zmm16, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x58
	// vdpbf16ps 416(%rsi){1to16}, %zmm16, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x68
	// vdpbf16ps 480(%rsi){1to16}, %zmm16, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x78
	// vdpbf16ps 544(%rsi){1to16}, %zmm16, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x20; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 608(%rsi){1to16}, %zmm16, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x60; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 672(%rsi){1to16}, %zmm16, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xa0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 736(%rsi){1to16}, %zmm16, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xe0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 800(%rsi){1to16}, %zmm16, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x20; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 864(%rsi){1to16}, %zmm16, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x60; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 928(%rsi){1to16}, %zmm16, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xa0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 992(%rsi){1to16}, %zmm16, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xe0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 576(BX), Z17
	// vdpbf16ps 36(%rsi){1to16}, %zmm17, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x09
	// vdpbf16ps 100(%rsi){1to16}, %zmm17, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x19
	// vdpbf16ps 164(%rsi){1to16}, %zmm17, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x29
	// vdpbf16ps 228(%rsi){1to16}, %zmm17, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x39
	// vdpbf16ps 292(%rsi){1to16}, %zmm17, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x49
	// vdpbf16ps 356(%rsi){1to16}, %zmm17, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x59
	// vdpbf16ps 420(%rsi){1to16}, %zmm17, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x69
	// vdpbf16ps 484(%rsi){1to16}, %zmm17, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x79
	// vdpbf16ps 548(%rsi){1to16}, %zmm17, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x24; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 612(%rsi){1to16}, %zmm17, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x64; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 676(%rsi){1to16}, %zmm17, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xa4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 740(%rsi){1to16}, %zmm17, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xe4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 804(%rsi){1to16}, %zmm17, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x24; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 868(%rsi){1to16}, %zmm17, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x64; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 932(%rsi){1to16}, %zmm17, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xa4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 996(%rsi){1to16}, %zmm17, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xe4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 640(BX), Z18
	// vdpbf16ps 40(%rsi){1to16}, %zmm18, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0a
	// vdpbf16ps 104(%rsi){1to16}, %zmm18, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1a
	// vdpbf16ps 168(%rsi){1to16}, %zmm18, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2a
	// vdpbf16ps 232(%rsi){1to16}, %zmm18, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3a
	// vdpbf16ps 296(%rsi){1to16}, %zmm18, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4a
	// vdpbf16ps 360(%rsi){1to16}, %zmm18, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5a
	// vdpbf16ps 424(%rsi){1to16}, %zmm18, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6a
	// vdpbf16ps 488(%rsi){1to16}, %zmm18, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7a
	// vdpbf16ps 552(%rsi){1to16}, %zmm18, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x28; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 616(%rsi){1to16}, %zmm18, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x68; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 680(%rsi){1to16}, %zmm18, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xa8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 744(%rsi){1to16}, %zmm18, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xe8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 808(%rsi){1to16}, %zmm18, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x28; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 872(%rsi){1to16}, %zmm18, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x68; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 936(%rsi){1to16}, %zmm18, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xa8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1000(%rsi){1to16}, %zmm18, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xe8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 704(BX), Z19
	// vdpbf16ps 44(%rsi){1to16}, %zmm19, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0b
	// vdpbf16ps 108(%rsi){1to16}, %zmm19, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1b
	// vdpbf16ps 172(%rsi){1to16}, %zmm19, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2b
	// vdpbf16ps 236(%rsi){1to16}, %zmm19, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3b
	// vdpbf16ps 300(%rsi){1to16}, %zmm19, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4b
	// vdpbf16ps 364(%rsi){1to16}, %zmm19, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5b
	// vdpbf16ps 428(%rsi){1to16}, %zmm19, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6b
	// vdpbf16ps 492(%rsi){1to16}, %zmm19, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7b
	// vdpbf16ps 556(%rsi){1to16}, %zmm19, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x2c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 620(%rsi){1to16}, %zmm19, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x6c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 684(%rsi){1to16}, %zmm19, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xac; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 748(%rsi){1to16}, %zmm19, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xec; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 812(%rsi){1to16}, %zmm19, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x2c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 876(%rsi){1to16}, %zmm19, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x6c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 940(%rsi){1to16}, %zmm19, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xac; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1004(%rsi){1to16}, %zmm19, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xec; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 768(BX), Z16
	// vdpbf16ps 48(%rsi){1to16}, %zmm16, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0c
	// vdpbf16ps 112(%rsi){1to16}, %zmm16, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1c
	// vdpbf16ps 176(%rsi){1to16}, %zmm16, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2c
	// vdpbf16ps 240(%rsi){1to16}, %zmm16, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3c
	// vdpbf16ps 304(%rsi){1to16}, %zmm16, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4c
	// vdpbf16ps 368(%rsi){1to16}, %zmm16, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5c
	// vdpbf16ps 432(%rsi){1to16}, %zmm16, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6c
	// vdpbf16ps 496(%rsi){1to16}, %zmm16, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7c
	// vdpbf16ps 560(%rsi){1to16}, %zmm16, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x30; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 624(%rsi){1to16}, %zmm16, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x70; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 688(%rsi){1to16}, %zmm16, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xb0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 752(%rsi){1to16}, %zmm16, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xf0; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 816(%rsi){1to16}, %zmm16, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x30; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 880(%rsi){1to16}, %zmm16, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x70; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 944(%rsi){1to16}, %zmm16, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xb0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1008(%rsi){1to16}, %zmm16, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x7e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xf0; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 832(BX), Z17
	// vdpbf16ps 52(%rsi){1to16}, %zmm17, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0d
	// vdpbf16ps 116(%rsi){1to16}, %zmm17, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1d
	// vdpbf16ps 180(%rsi){1to16}, %zmm17, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2d
	// vdpbf16ps 244(%rsi){1to16}, %zmm17, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3d
	// vdpbf16ps 308(%rsi){1to16}, %zmm17, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4d
	// vdpbf16ps 372(%rsi){1to16}, %zmm17, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5d
	// vdpbf16ps 436(%rsi){1to16}, %zmm17, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6d
	// vdpbf16ps 500(%rsi){1to16}, %zmm17, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7d
	// vdpbf16ps 564(%rsi){1to16}, %zmm17, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x34; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 628(%rsi){1to16}, %zmm17, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x74; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 692(%rsi){1to16}, %zmm17, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xb4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 756(%rsi){1to16}, %zmm17, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xf4; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 820(%rsi){1to16}, %zmm17, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x34; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 884(%rsi){1to16}, %zmm17, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x74; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 948(%rsi){1to16}, %zmm17, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xb4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1012(%rsi){1to16}, %zmm17, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x76; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xf4; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 896(BX), Z18
	// vdpbf16ps 56(%rsi){1to16}, %zmm18, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0e
	// vdpbf16ps 120(%rsi){1to16}, %zmm18, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1e
	// vdpbf16ps 184(%rsi){1to16}, %zmm18, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2e
	// vdpbf16ps 248(%rsi){1to16}, %zmm18, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3e
	// vdpbf16ps 312(%rsi){1to16}, %zmm18, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4e
	// vdpbf16ps 376(%rsi){1to16}, %zmm18, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5e
	// vdpbf16ps 440(%rsi){1to16}, %zmm18, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6e
	// vdpbf16ps 504(%rsi){1to16}, %zmm18, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7e
	// vdpbf16ps 568(%rsi){1to16}, %zmm18, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x38; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 632(%rsi){1to16}, %zmm18, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x78; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 696(%rsi){1to16}, %zmm18, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xb8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 760(%rsi){1to16}, %zmm18, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xf8; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 824(%rsi){1to16}, %zmm18, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x38; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 888(%rsi){1to16}, %zmm18, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x78; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 952(%rsi){1to16}, %zmm18, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xb8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1016(%rsi){1to16}, %zmm18, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x6e; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xf8; BYTE $0x03; BYTE $0x00; BYTE $0x00
	VMOVDQU32 960(BX), Z19
	// vdpbf16ps 60(%rsi){1to16}, %zmm19, %zmm0
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x46; BYTE $0x0f
	// vdpbf16ps 124(%rsi){1to16}, %zmm19, %zmm1
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x4e; BYTE $0x1f
	// vdpbf16ps 188(%rsi){1to16}, %zmm19, %zmm2
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x56; BYTE $0x2f
	// vdpbf16ps 252(%rsi){1to16}, %zmm19, %zmm3
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x5e; BYTE $0x3f
	// vdpbf16ps 316(%rsi){1to16}, %zmm19, %zmm4
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x66; BYTE $0x4f
	// vdpbf16ps 380(%rsi){1to16}, %zmm19, %zmm5
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x6e; BYTE $0x5f
	// vdpbf16ps 444(%rsi){1to16}, %zmm19, %zmm6
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x76; BYTE $0x6f
	// vdpbf16ps 508(%rsi){1to16}, %zmm19, %zmm7
	BYTE $0x62; BYTE $0xf2; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x7e; BYTE $0x7f
	// vdpbf16ps 572(%rsi){1to16}, %zmm19, %zmm8
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x86; BYTE $0x3c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 636(%rsi){1to16}, %zmm19, %zmm9
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x8e; BYTE $0x7c; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 700(%rsi){1to16}, %zmm19, %zmm10
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x96; BYTE $0xbc; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 764(%rsi){1to16}, %zmm19, %zmm11
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0x9e; BYTE $0xfc; BYTE $0x02; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 828(%rsi){1to16}, %zmm19, %zmm12
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xa6; BYTE $0x3c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 892(%rsi){1to16}, %zmm19, %zmm13
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xae; BYTE $0x7c; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 956(%rsi){1to16}, %zmm19, %zmm14
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xb6; BYTE $0xbc; BYTE $0x03; BYTE $0x00; BYTE $0x00
	// vdpbf16ps 1020(%rsi){1to16}, %zmm19, %zmm15
	BYTE $0x62; BYTE $0x72; BYTE $0x66; BYTE $0x50; BYTE $0x52; BYTE $0xbe; BYTE $0xfc; BYTE $0x03; BYTE $0x00; BYTE $0x00
	ADDQ $1024, SI
	ADDQ $1024, BX
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

// func amxKernel(a *uint16, aStride, aTile, aStep int, b *uint16, ldb int, c *float32, mt, nt, k32, acc int, pf, pfEnd uintptr, rowBytes, stride int, scan int) (least uint32)
//
// dpbf16Tiles on AMX, mt even, W's tiles anywhere: row o of step s of tile
// ti at a + ti·aTile + s·aStep + o·aStride bytes (packTiles16's layout:
// aStride 64, aTile 2·lda, aStep 1024; W in place: aStride its row's
// bytes, aTile 16 rows of them, aStep 64). Two by two tiles at a time (two
// by one for the last panel when nt is odd, amx_one), C in TMM0..TMM3
// (tiles (ti, tj), (ti, tj+1), (ti+1, tj), (ti+1, tj+1)), W's tiles ti and
// ti+1 in TMM4, TMM5 (SI, DI; stride R9 = aStride), the panels tj and
// tj+1 in TMM6, TMM7 (BX, R11); the panels and C 16 rows of 64 bytes,
// stride R8 = 64 (amxConfig). The tile state lives from LDTILECFG to
// TILERELEASE within this one call. Each step (four or two TDPBF16PS)
// first issues up to four AMXPFLINEs of the rows from pf (R15, R14 the
// offset in the row); when scan ≠ 0, the steps of the last panels also
// read W's tiles into Z0 (AMXSCAN), and least is the least (v & 0x7fff) − 1
// over every value of W's tiles as unsigned 16-bit (0xffff when all are
// zero; 0xffff too when scan = 0).
TEXT ·amxKernel(SB), NOSPLIT, $0-132
	LEAQ ·amxConfig(SB), AX
	// ldtilecfg (%rax)
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0x00
	MOVL $0x7fff7fff, AX
	VPBROADCASTD AX, Z1
	MOVL $0x00010001, AX
	VPBROADCASTD AX, Z2
	VPTERNLOGD $0xff, Z0, Z0, Z0
	MOVQ aStride+8(FP), R9
	MOVQ ldb+40(FP), R10
	SHLQ $1, R10
	MOVQ $64, R8
	XORQ R12, R12
	MOVQ pf+88(FP), R15
	XORQ R14, R14

amx_ti:
	XORQ AX, AX

amx_tj:
	// DX, R13: the C tiles (ti, tj) and (ti+1, tj); SI, DI: W's tiles ti
	// and ti+1; BX, R11: the panels tj and tj+1.
	AMXCTILES
	MOVQ R12, SI
	IMULQ aTile+16(FP), SI
	ADDQ a+0(FP), SI
	MOVQ SI, DI
	ADDQ aTile+16(FP), DI
	MOVQ AX, BX
	IMULQ R10, BX
	ADDQ b+32(FP), BX
	LEAQ (BX)(R10*1), R11
	LEAQ 1(AX), CX
	CMPQ CX, nt+64(FP)
	JEQ  amx_one
	CMPQ acc+80(FP), $0
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
	MOVQ k32+72(FP), CX

amx_loop:
	AMXPFLINE(amx_pf0)

amx_pf0:
	AMXPFLINE(amx_pf1)

amx_pf1:
	AMXPFLINE(amx_pf2)

amx_pf2:
	AMXPFLINE(amx_pf3)

amx_pf3:
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
	// W's tiles are read with the last panels (AX + 2 = nt), from L1.
	LEAQ 2(AX), DX
	CMPQ DX, nt+64(FP)
	JNE  amx_scanned
	AMXSCAN(amx_scanned)

amx_scanned:
	ADDQ aStep+24(FP), SI
	ADDQ aStep+24(FP), DI
	ADDQ $1024, BX
	ADDQ $1024, R11
	DECQ CX
	JNZ  amx_loop

	AMXCTILES

	// tilestored %tmm0, (%rdx,%r8,1)
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7a; BYTE $0x4b; BYTE $0x04; BYTE $0x02
	// tilestored %tmm1, 1024(%rdx,%r8,1)
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7a; BYTE $0x4b; BYTE $0x8c; BYTE $0x02; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	// tilestored %tmm2, (%r13,%r8,1)
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x54; BYTE $0x05; BYTE $0x00
	// tilestored %tmm3, 1024(%r13,%r8,1)
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x9c; BYTE $0x05; BYTE $0x00; BYTE $0x04; BYTE $0x00; BYTE $0x00
	ADDQ $2, AX
	CMPQ AX, nt+64(FP)
	JLT  amx_tj

amx_next:
	ADDQ $2, R12
	CMPQ R12, mt+56(FP)
	JLT  amx_ti
	// tilerelease
	BYTE $0xc4; BYTE $0xe2; BYTE $0x78; BYTE $0x49; BYTE $0xc0
	VEXTRACTI64X4 $1, Z0, Y3
	VPMINUW       Y3, Y0, Y0
	VEXTRACTI128  $1, Y0, X3
	VPMINUW       X3, X0, X0
	VPHMINPOSUW   X0, X0
	VMOVD         X0, AX
	ANDL          $0xffff, AX
	MOVL          AX, least+128(FP)
	VZEROUPPER
	RET

	// The last panel when nt is odd: tiles (ti, tj) and (ti+1, tj) alone.
amx_one:
	CMPQ acc+80(FP), $0
	JEQ  amx_one_zero
	// tileloadd (%rdx,%r8,1), %tmm0
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x04; BYTE $0x02
	// tileloadd (%r13,%r8,1), %tmm2
	BYTE $0xc4; BYTE $0x82; BYTE $0x7b; BYTE $0x4b; BYTE $0x54; BYTE $0x05; BYTE $0x00
	JMP  amx_one_start

amx_one_zero:
	// tilezero %tmm0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xc0
	// tilezero %tmm2
	BYTE $0xc4; BYTE $0xe2; BYTE $0x7b; BYTE $0x49; BYTE $0xd0

amx_one_start:
	MOVQ k32+72(FP), CX

amx_one_loop:
	AMXPFLINE(amx_one_pf0)

amx_one_pf0:
	AMXPFLINE(amx_one_pf1)

amx_one_pf1:
	AMXPFLINE(amx_one_pf2)

amx_one_pf2:
	AMXPFLINE(amx_one_pf3)

amx_one_pf3:
	// tileloadd (%rsi,%r9,1), %tmm4
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x24; BYTE $0x0e
	// tileloadd (%rdi,%r9,1), %tmm5
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x2c; BYTE $0x0f
	// tileloadd (%rbx,%r8,1), %tmm6
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7b; BYTE $0x4b; BYTE $0x34; BYTE $0x03
	// tdpbf16ps %tmm6, %tmm4, %tmm0
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xc4
	// tdpbf16ps %tmm6, %tmm5, %tmm2
	BYTE $0xc4; BYTE $0xe2; BYTE $0x4a; BYTE $0x5c; BYTE $0xd5
	AMXSCAN(amx_one_scanned)

amx_one_scanned:
	ADDQ aStep+24(FP), SI
	ADDQ aStep+24(FP), DI
	ADDQ $1024, BX
	DECQ CX
	JNZ  amx_one_loop

	AMXCTILES

	// tilestored %tmm0, (%rdx,%r8,1)
	BYTE $0xc4; BYTE $0xa2; BYTE $0x7a; BYTE $0x4b; BYTE $0x04; BYTE $0x02
	// tilestored %tmm2, (%r13,%r8,1)
	BYTE $0xc4; BYTE $0x82; BYTE $0x7a; BYTE $0x4b; BYTE $0x54; BYTE $0x05; BYTE $0x00
	JMP  amx_next

// func packTiles16(dst, src *uint16, lds, k32 int) uint16
//
// One tile of W: rows o < 16 of src (lds elements apart), k32 steps of 32
// columns, into dst as the kernels read it: step s, row o at
// dst[s·512 + o·32 :]; and the least nonzero magnitude among them as
// minMag16 finds it (Z18: the least of (v & 0x7fff) − 1). SI, R11, R12,
// R13: rows 0, 4, 8, 12; R9 = lds and R10 = 3·lds in bytes reach the rows
// between.
TEXT ·packTiles16(SB), NOSPLIT, $0-34
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ lds+16(FP), R9
	SHLQ $1, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (SI)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	LEAQ (R12)(R9*4), R13
	MOVQ k32+24(FP), CX
	MOVL $0x7fff7fff, AX
	VPBROADCASTD AX, Z16
	MOVL $0x00010001, AX
	VPBROADCASTD AX, Z17
	VPTERNLOGD $0xff, Z18, Z18, Z18

pack_loop:
	VMOVDQU64 (SI), Z0
	VMOVDQU64 (SI)(R9*1), Z1
	VMOVDQU64 (SI)(R9*2), Z2
	VMOVDQU64 (SI)(R10*1), Z3
	VMOVDQU64 (R11), Z4
	VMOVDQU64 (R11)(R9*1), Z5
	VMOVDQU64 (R11)(R9*2), Z6
	VMOVDQU64 (R11)(R10*1), Z7
	VMOVDQU64 (R12), Z8
	VMOVDQU64 (R12)(R9*1), Z9
	VMOVDQU64 (R12)(R9*2), Z10
	VMOVDQU64 (R12)(R10*1), Z11
	VMOVDQU64 (R13), Z12
	VMOVDQU64 (R13)(R9*1), Z13
	VMOVDQU64 (R13)(R9*2), Z14
	VMOVDQU64 (R13)(R10*1), Z15
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VMOVDQU64 Z4, 256(DI)
	VMOVDQU64 Z5, 320(DI)
	VMOVDQU64 Z6, 384(DI)
	VMOVDQU64 Z7, 448(DI)
	VMOVDQU64 Z8, 512(DI)
	VMOVDQU64 Z9, 576(DI)
	VMOVDQU64 Z10, 640(DI)
	VMOVDQU64 Z11, 704(DI)
	VMOVDQU64 Z12, 768(DI)
	VMOVDQU64 Z13, 832(DI)
	VMOVDQU64 Z14, 896(DI)
	VMOVDQU64 Z15, 960(DI)
	VPANDD Z16, Z0, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z1, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z2, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z3, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z4, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z5, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z6, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z7, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z8, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z9, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z10, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z11, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z12, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z13, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z14, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	VPANDD Z16, Z15, Z19
	VPSUBW Z17, Z19, Z19
	VPMINUW Z19, Z18, Z18
	ADDQ $64, SI
	ADDQ $64, R11
	ADDQ $64, R12
	ADDQ $64, R13
	ADDQ $1024, DI
	DECQ CX
	JNZ  pack_loop

	VEXTRACTI64X4 $1, Z18, Y1
	VMOVDQU64 Z18, Z0
	VPMINUW Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMINUW X1, X0, X0
	VPHMINPOSUW X0, X0
	VMOVD X0, AX
	INCL AX
	MOVW AX, ret+32(FP)
	VZEROUPPER
	RET

// func transpose16(y *float32, ldy int, c *float32)
//
// y[r·ldy + o] = c[16·o + r] for o, r < 16: a tile of C, its rows W's,
// into y, its rows x's. Rows 2k and 2k+1 interleaved (VUNPCKLPS,
// VUNPCKHPS), then in fours (VSHUFPS), then the 128-bit lanes in two
// rounds (VSHUFF32X4): Zk ends as column k.
TEXT ·transpose16(SB), NOSPLIT, $0-24
	MOVQ y+0(FP), DI
	MOVQ ldy+8(FP), R9
	SHLQ $2, R9
	MOVQ c+16(FP), SI
	VMOVUPS 0(SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z2
	VMOVUPS 192(SI), Z3
	VMOVUPS 256(SI), Z4
	VMOVUPS 320(SI), Z5
	VMOVUPS 384(SI), Z6
	VMOVUPS 448(SI), Z7
	VMOVUPS 512(SI), Z8
	VMOVUPS 576(SI), Z9
	VMOVUPS 640(SI), Z10
	VMOVUPS 704(SI), Z11
	VMOVUPS 768(SI), Z12
	VMOVUPS 832(SI), Z13
	VMOVUPS 896(SI), Z14
	VMOVUPS 960(SI), Z15
	VUNPCKLPS Z1, Z0, Z16
	VUNPCKHPS Z1, Z0, Z17
	VUNPCKLPS Z3, Z2, Z18
	VUNPCKHPS Z3, Z2, Z19
	VUNPCKLPS Z5, Z4, Z20
	VUNPCKHPS Z5, Z4, Z21
	VUNPCKLPS Z7, Z6, Z22
	VUNPCKHPS Z7, Z6, Z23
	VUNPCKLPS Z9, Z8, Z24
	VUNPCKHPS Z9, Z8, Z25
	VUNPCKLPS Z11, Z10, Z26
	VUNPCKHPS Z11, Z10, Z27
	VUNPCKLPS Z13, Z12, Z28
	VUNPCKHPS Z13, Z12, Z29
	VUNPCKLPS Z15, Z14, Z30
	VUNPCKHPS Z15, Z14, Z31
	VSHUFPS $0x44, Z18, Z16, Z0
	VSHUFPS $0xEE, Z18, Z16, Z1
	VSHUFPS $0x44, Z19, Z17, Z2
	VSHUFPS $0xEE, Z19, Z17, Z3
	VSHUFPS $0x44, Z22, Z20, Z4
	VSHUFPS $0xEE, Z22, Z20, Z5
	VSHUFPS $0x44, Z23, Z21, Z6
	VSHUFPS $0xEE, Z23, Z21, Z7
	VSHUFPS $0x44, Z26, Z24, Z8
	VSHUFPS $0xEE, Z26, Z24, Z9
	VSHUFPS $0x44, Z27, Z25, Z10
	VSHUFPS $0xEE, Z27, Z25, Z11
	VSHUFPS $0x44, Z30, Z28, Z12
	VSHUFPS $0xEE, Z30, Z28, Z13
	VSHUFPS $0x44, Z31, Z29, Z14
	VSHUFPS $0xEE, Z31, Z29, Z15
	VSHUFF32X4 $0x88, Z4, Z0, Z16
	VSHUFF32X4 $0xDD, Z4, Z0, Z20
	VSHUFF32X4 $0x88, Z5, Z1, Z17
	VSHUFF32X4 $0xDD, Z5, Z1, Z21
	VSHUFF32X4 $0x88, Z6, Z2, Z18
	VSHUFF32X4 $0xDD, Z6, Z2, Z22
	VSHUFF32X4 $0x88, Z7, Z3, Z19
	VSHUFF32X4 $0xDD, Z7, Z3, Z23
	VSHUFF32X4 $0x88, Z12, Z8, Z24
	VSHUFF32X4 $0xDD, Z12, Z8, Z28
	VSHUFF32X4 $0x88, Z13, Z9, Z25
	VSHUFF32X4 $0xDD, Z13, Z9, Z29
	VSHUFF32X4 $0x88, Z14, Z10, Z26
	VSHUFF32X4 $0xDD, Z14, Z10, Z30
	VSHUFF32X4 $0x88, Z15, Z11, Z27
	VSHUFF32X4 $0xDD, Z15, Z11, Z31
	VSHUFF32X4 $0x88, Z24, Z16, Z0
	VSHUFF32X4 $0xDD, Z24, Z16, Z8
	VSHUFF32X4 $0x88, Z25, Z17, Z1
	VSHUFF32X4 $0xDD, Z25, Z17, Z9
	VSHUFF32X4 $0x88, Z26, Z18, Z2
	VSHUFF32X4 $0xDD, Z26, Z18, Z10
	VSHUFF32X4 $0x88, Z27, Z19, Z3
	VSHUFF32X4 $0xDD, Z27, Z19, Z11
	VSHUFF32X4 $0x88, Z28, Z20, Z4
	VSHUFF32X4 $0xDD, Z28, Z20, Z12
	VSHUFF32X4 $0x88, Z29, Z21, Z5
	VSHUFF32X4 $0xDD, Z29, Z21, Z13
	VSHUFF32X4 $0x88, Z30, Z22, Z6
	VSHUFF32X4 $0xDD, Z30, Z22, Z14
	VSHUFF32X4 $0x88, Z31, Z23, Z7
	VSHUFF32X4 $0xDD, Z31, Z23, Z15
	VMOVUPS Z0, (DI)
	ADDQ R9, DI
	VMOVUPS Z1, (DI)
	ADDQ R9, DI
	VMOVUPS Z2, (DI)
	ADDQ R9, DI
	VMOVUPS Z3, (DI)
	ADDQ R9, DI
	VMOVUPS Z4, (DI)
	ADDQ R9, DI
	VMOVUPS Z5, (DI)
	ADDQ R9, DI
	VMOVUPS Z6, (DI)
	ADDQ R9, DI
	VMOVUPS Z7, (DI)
	ADDQ R9, DI
	VMOVUPS Z8, (DI)
	ADDQ R9, DI
	VMOVUPS Z9, (DI)
	ADDQ R9, DI
	VMOVUPS Z10, (DI)
	ADDQ R9, DI
	VMOVUPS Z11, (DI)
	ADDQ R9, DI
	VMOVUPS Z12, (DI)
	ADDQ R9, DI
	VMOVUPS Z13, (DI)
	ADDQ R9, DI
	VMOVUPS Z14, (DI)
	ADDQ R9, DI
	VMOVUPS Z15, (DI)
	VZEROUPPER
	RET

// func packX16(dst *uint16, x *float32, ldx, k32 int)
//
// Sixteen rows of x (ldx elements apart), k32 steps of 32 columns, as
// bfloat16 pairs: dst[s·512 + 32p + 2r + e] = the high half of
// x[r·ldx + 32s + 2p + e], for r, p < 16, e < 2. Each row's 32 values
// become its 16 pairs by VPERMI2W (pairIdx: the high halves), one
// register a row; the 16×16 pairs are then transposed as transpose16
// transposes floats.
TEXT ·packX16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ ldx+16(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (SI)(R9*4), R11
	LEAQ (R11)(R9*4), R12
	LEAQ (R12)(R9*4), R13
	MOVQ k32+24(FP), CX

packx_loop:
	VMOVDQU64 ·pairIdx(SB), Z0
	VMOVUPS (SI), Z16
	VPERMI2W 64(SI), Z16, Z0
	VMOVDQU64 ·pairIdx(SB), Z1
	VMOVUPS (SI)(R9*1), Z16
	VPERMI2W 64(SI)(R9*1), Z16, Z1
	VMOVDQU64 ·pairIdx(SB), Z2
	VMOVUPS (SI)(R9*2), Z16
	VPERMI2W 64(SI)(R9*2), Z16, Z2
	VMOVDQU64 ·pairIdx(SB), Z3
	VMOVUPS (SI)(R10*1), Z16
	VPERMI2W 64(SI)(R10*1), Z16, Z3
	VMOVDQU64 ·pairIdx(SB), Z4
	VMOVUPS (R11), Z16
	VPERMI2W 64(R11), Z16, Z4
	VMOVDQU64 ·pairIdx(SB), Z5
	VMOVUPS (R11)(R9*1), Z16
	VPERMI2W 64(R11)(R9*1), Z16, Z5
	VMOVDQU64 ·pairIdx(SB), Z6
	VMOVUPS (R11)(R9*2), Z16
	VPERMI2W 64(R11)(R9*2), Z16, Z6
	VMOVDQU64 ·pairIdx(SB), Z7
	VMOVUPS (R11)(R10*1), Z16
	VPERMI2W 64(R11)(R10*1), Z16, Z7
	VMOVDQU64 ·pairIdx(SB), Z8
	VMOVUPS (R12), Z16
	VPERMI2W 64(R12), Z16, Z8
	VMOVDQU64 ·pairIdx(SB), Z9
	VMOVUPS (R12)(R9*1), Z16
	VPERMI2W 64(R12)(R9*1), Z16, Z9
	VMOVDQU64 ·pairIdx(SB), Z10
	VMOVUPS (R12)(R9*2), Z16
	VPERMI2W 64(R12)(R9*2), Z16, Z10
	VMOVDQU64 ·pairIdx(SB), Z11
	VMOVUPS (R12)(R10*1), Z16
	VPERMI2W 64(R12)(R10*1), Z16, Z11
	VMOVDQU64 ·pairIdx(SB), Z12
	VMOVUPS (R13), Z16
	VPERMI2W 64(R13), Z16, Z12
	VMOVDQU64 ·pairIdx(SB), Z13
	VMOVUPS (R13)(R9*1), Z16
	VPERMI2W 64(R13)(R9*1), Z16, Z13
	VMOVDQU64 ·pairIdx(SB), Z14
	VMOVUPS (R13)(R9*2), Z16
	VPERMI2W 64(R13)(R9*2), Z16, Z14
	VMOVDQU64 ·pairIdx(SB), Z15
	VMOVUPS (R13)(R10*1), Z16
	VPERMI2W 64(R13)(R10*1), Z16, Z15
	VUNPCKLPS Z1, Z0, Z16
	VUNPCKHPS Z1, Z0, Z17
	VUNPCKLPS Z3, Z2, Z18
	VUNPCKHPS Z3, Z2, Z19
	VUNPCKLPS Z5, Z4, Z20
	VUNPCKHPS Z5, Z4, Z21
	VUNPCKLPS Z7, Z6, Z22
	VUNPCKHPS Z7, Z6, Z23
	VUNPCKLPS Z9, Z8, Z24
	VUNPCKHPS Z9, Z8, Z25
	VUNPCKLPS Z11, Z10, Z26
	VUNPCKHPS Z11, Z10, Z27
	VUNPCKLPS Z13, Z12, Z28
	VUNPCKHPS Z13, Z12, Z29
	VUNPCKLPS Z15, Z14, Z30
	VUNPCKHPS Z15, Z14, Z31
	VSHUFPS $0x44, Z18, Z16, Z0
	VSHUFPS $0xEE, Z18, Z16, Z1
	VSHUFPS $0x44, Z19, Z17, Z2
	VSHUFPS $0xEE, Z19, Z17, Z3
	VSHUFPS $0x44, Z22, Z20, Z4
	VSHUFPS $0xEE, Z22, Z20, Z5
	VSHUFPS $0x44, Z23, Z21, Z6
	VSHUFPS $0xEE, Z23, Z21, Z7
	VSHUFPS $0x44, Z26, Z24, Z8
	VSHUFPS $0xEE, Z26, Z24, Z9
	VSHUFPS $0x44, Z27, Z25, Z10
	VSHUFPS $0xEE, Z27, Z25, Z11
	VSHUFPS $0x44, Z30, Z28, Z12
	VSHUFPS $0xEE, Z30, Z28, Z13
	VSHUFPS $0x44, Z31, Z29, Z14
	VSHUFPS $0xEE, Z31, Z29, Z15
	VSHUFF32X4 $0x88, Z4, Z0, Z16
	VSHUFF32X4 $0xDD, Z4, Z0, Z20
	VSHUFF32X4 $0x88, Z5, Z1, Z17
	VSHUFF32X4 $0xDD, Z5, Z1, Z21
	VSHUFF32X4 $0x88, Z6, Z2, Z18
	VSHUFF32X4 $0xDD, Z6, Z2, Z22
	VSHUFF32X4 $0x88, Z7, Z3, Z19
	VSHUFF32X4 $0xDD, Z7, Z3, Z23
	VSHUFF32X4 $0x88, Z12, Z8, Z24
	VSHUFF32X4 $0xDD, Z12, Z8, Z28
	VSHUFF32X4 $0x88, Z13, Z9, Z25
	VSHUFF32X4 $0xDD, Z13, Z9, Z29
	VSHUFF32X4 $0x88, Z14, Z10, Z26
	VSHUFF32X4 $0xDD, Z14, Z10, Z30
	VSHUFF32X4 $0x88, Z15, Z11, Z27
	VSHUFF32X4 $0xDD, Z15, Z11, Z31
	VSHUFF32X4 $0x88, Z24, Z16, Z0
	VSHUFF32X4 $0xDD, Z24, Z16, Z8
	VSHUFF32X4 $0x88, Z25, Z17, Z1
	VSHUFF32X4 $0xDD, Z25, Z17, Z9
	VSHUFF32X4 $0x88, Z26, Z18, Z2
	VSHUFF32X4 $0xDD, Z26, Z18, Z10
	VSHUFF32X4 $0x88, Z27, Z19, Z3
	VSHUFF32X4 $0xDD, Z27, Z19, Z11
	VSHUFF32X4 $0x88, Z28, Z20, Z4
	VSHUFF32X4 $0xDD, Z28, Z20, Z12
	VSHUFF32X4 $0x88, Z29, Z21, Z5
	VSHUFF32X4 $0xDD, Z29, Z21, Z13
	VSHUFF32X4 $0x88, Z30, Z22, Z6
	VSHUFF32X4 $0xDD, Z30, Z22, Z14
	VSHUFF32X4 $0x88, Z31, Z23, Z7
	VSHUFF32X4 $0xDD, Z31, Z23, Z15
	VMOVDQU64 Z0, 0(DI)
	VMOVDQU64 Z1, 64(DI)
	VMOVDQU64 Z2, 128(DI)
	VMOVDQU64 Z3, 192(DI)
	VMOVDQU64 Z4, 256(DI)
	VMOVDQU64 Z5, 320(DI)
	VMOVDQU64 Z6, 384(DI)
	VMOVDQU64 Z7, 448(DI)
	VMOVDQU64 Z8, 512(DI)
	VMOVDQU64 Z9, 576(DI)
	VMOVDQU64 Z10, 640(DI)
	VMOVDQU64 Z11, 704(DI)
	VMOVDQU64 Z12, 768(DI)
	VMOVDQU64 Z13, 832(DI)
	VMOVDQU64 Z14, 896(DI)
	VMOVDQU64 Z15, 960(DI)
	ADDQ $128, SI
	ADDQ $128, R11
	ADDQ $128, R12
	ADDQ $128, R13
	ADDQ $1024, DI
	DECQ CX
	JNZ  packx_loop
	VZEROUPPER
	RET

// func checkX(x *float32, n int) (or uint32, least uint32)
//
// The OR of the patterns of x[j], j < n, and the least of
// ((pattern >> 16) & 0x7fff) − 1 as unsigned 32-bit (a zero's wraps to
// the largest); n a positive multiple of 16.
TEXT ·checkX(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MOVL $0x7fff, AX
	VMOVD AX, X0
	VPBROADCASTD X0, Y0
	MOVL $1, AX
	VMOVD AX, X1
	VPBROADCASTD X1, Y1
	VPXOR Y2, Y2, Y2
	VPCMPEQD Y3, Y3, Y3

checkx_loop:
	VMOVDQU (SI), Y4
	VMOVDQU 32(SI), Y5
	VPOR Y4, Y2, Y2
	VPOR Y5, Y2, Y2
	VPSRLD $16, Y4, Y4
	VPSRLD $16, Y5, Y5
	VPAND Y0, Y4, Y4
	VPAND Y0, Y5, Y5
	VPSUBD Y1, Y4, Y4
	VPSUBD Y1, Y5, Y5
	VPMINUD Y4, Y3, Y3
	VPMINUD Y5, Y3, Y3
	ADDQ $64, SI
	SUBQ $16, CX
	JNZ  checkx_loop

	VEXTRACTI128 $1, Y2, X4
	VPOR X4, X2, X2
	VPSHUFD $0x4e, X2, X4
	VPOR X4, X2, X2
	VPSHUFD $0xb1, X2, X4
	VPOR X4, X2, X2
	VMOVD X2, AX
	MOVL AX, or+16(FP)
	VEXTRACTI128 $1, Y3, X4
	VPMINUD X4, X3, X3
	VPSHUFD $0x4e, X3, X4
	VPMINUD X4, X3, X3
	VPSHUFD $0xb1, X3, X4
	VPMINUD X4, X3, X3
	VMOVD X3, AX
	MOVL AX, least+20(FP)
	VZEROUPPER
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
	VMOVD AX, X0
	VPBROADCASTD X0, Y0
	MOVL $0x00010001, AX
	VMOVD AX, X1
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
	VMOVD X2, AX
	INCL AX
	MOVW AX, ret+16(FP)
	VZEROUPPER
	RET

// func packPairsRows(dst *uint16, ldd int, src *uint16, ld, panels int)
//
// One pair of rows of W (SI and SI+R9), 16 columns a pass: each row's 16
// values (Y0, Y1) interleaved word by word within 128-bit lanes
// (VPUNPCKLWD, VPUNPCKHWD), then the lanes put in order (VPERM2I128): one
// 64-byte row of a panel, the panels R8 bytes apart.
TEXT ·packPairsRows(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $1, R8
	MOVQ src+16(FP), SI
	MOVQ ld+24(FP), R9
	SHLQ $1, R9
	MOVQ panels+32(FP), CX

pairs_loop:
	VMOVDQU    (SI), Y0
	VMOVDQU    (SI)(R9*1), Y1
	VPUNPCKLWD Y1, Y0, Y2
	VPUNPCKHWD Y1, Y0, Y3
	VPERM2I128 $0x20, Y3, Y2, Y4
	VPERM2I128 $0x31, Y3, Y2, Y5
	VMOVDQU    Y4, (DI)
	VMOVDQU    Y5, 32(DI)
	ADDQ       $32, SI
	ADDQ       R8, DI
	DECQ       CX
	JNZ        pairs_loop
	VZEROUPPER
	RET
