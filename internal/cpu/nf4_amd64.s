//go:build amd64 && !purego

#include "textflag.h"

// The NF4 kernels, in AVX2 with FMA: dequantNF4 writes the float32 values
// of a run of elements, gemv4NF4 is the matrix-vector kernel of GEMV4's
// shape (gemv_amd64.s) for an NF4 W, its values formed in registers. Both
// look codes up 32 at a time the same way, NF4LOOKUP: the table's float32
// entries are held as four planes of bytes (nf4Planes: plane i holds byte
// i of each entry, in both 128-bit lanes), the codes' nibbles index them
// with VPSHUFB, and two rounds of unpacking put each entry's four bytes
// back together. An element's value is then NF4Table[code] · absmax[block]
// with one float32 rounding (VMULPS), as DequantizeNF4 forms it, and in
// gemv4NF4 it enters one FMA with x.
//
// (These are Go assembler macros: a body is one line, so its instructions
// are separated by semicolons and its comments are /* */.)

// nf4Nibble shifts the low 128-bit lane's quadwords right by 4 and leaves
// the high lane's (VPSRLVQ); nf4Low keeps each byte's low nibble.
DATA nf4Nibble<>+0(SB)/8, $4
DATA nf4Nibble<>+8(SB)/8, $4
DATA nf4Nibble<>+16(SB)/8, $0
DATA nf4Nibble<>+24(SB)/8, $0
GLOBL nf4Nibble<>(SB), RODATA|NOPTR, $32

DATA nf4Low<>+0(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nf4Low<>+8(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nf4Low<>+16(SB)/8, $0x0f0f0f0f0f0f0f0f
DATA nf4Low<>+24(SB)/8, $0x0f0f0f0f0f0f0f0f
GLOBL nf4Low<>(SB), RODATA|NOPTR, $32

// nf4Natural is the VPERMPS index that takes a vector of NF4LOOKUP's
// order (four even elements, then the four odd ones) to the elements' own.
DATA nf4Natural<>+0(SB)/4, $0
DATA nf4Natural<>+4(SB)/4, $4
DATA nf4Natural<>+8(SB)/4, $1
DATA nf4Natural<>+12(SB)/4, $5
DATA nf4Natural<>+16(SB)/4, $2
DATA nf4Natural<>+20(SB)/4, $6
DATA nf4Natural<>+24(SB)/4, $3
DATA nf4Natural<>+28(SB)/4, $7
GLOBL nf4Natural<>(SB), RODATA|NOPTR, $32

// NF4LOOKUP sets Y10, Y13, Y12 and Y9 to the table's entries for the 32
// elements whose codes are the 16 bytes at m: elements 8k+0, 2, 4, 6, 1,
// 3, 5, 7 of the 32, in that order, for k = 0, 1, 2, 3 respectively (the
// order of octetOrder). The low lane takes the high nibbles (elements of
// even index), the high lane the low ones (odd index); byte i of the
// entries comes from plane i (Y0–Y3); the bytes are unpacked into 16-bit
// halves, then into 32-bit entries. Temporaries Y8–Y14.
#define NF4LOOKUP(m) \
	VBROADCASTI128 m, Y8; \
	VPSRLVQ        nf4Nibble<>(SB), Y8, Y8; \
	VPAND          nf4Low<>(SB), Y8, Y8;  /* the codes, lane 0 even elements, lane 1 odd */ \
	VPSHUFB        Y8, Y0, Y9; \
	VPSHUFB        Y8, Y1, Y10; \
	VPSHUFB        Y8, Y2, Y11; \
	VPSHUFB        Y8, Y3, Y12; \
	VPUNPCKLBW     Y10, Y9, Y13;  /* bytes 0-1 of codes 0-7 of a lane */ \
	VPUNPCKHBW     Y10, Y9, Y9;   /* bytes 0-1 of codes 8-15 */ \
	VPUNPCKLBW     Y12, Y11, Y14; /* bytes 2-3 of codes 0-7 */ \
	VPUNPCKHBW     Y12, Y11, Y11; /* bytes 2-3 of codes 8-15 */ \
	VPUNPCKLWD     Y14, Y13, Y10; /* codes 0-3 of a lane */ \
	VPUNPCKHWD     Y14, Y13, Y13; /* codes 4-7 */ \
	VPUNPCKLWD     Y11, Y9, Y12;  /* codes 8-11 */ \
	VPUNPCKHWD     Y11, Y9, Y9    /* codes 12-15 */

// NF4PLANES loads the table's byte planes into Y0–Y3.
#define NF4PLANES \
	VMOVDQU ·nf4Planes+0(SB), Y0; \
	VMOVDQU ·nf4Planes+32(SB), Y1; \
	VMOVDQU ·nf4Planes+64(SB), Y2; \
	VMOVDQU ·nf4Planes+96(SB), Y3

// DEQUANT8 scales the entries in v by the absmax in Y8, puts them in the
// elements' order and stores them at off(DI).
#define DEQUANT8(v, off) \
	VMULPS  Y8, v, v; \
	VPERMPS v, Y15, v; \
	VMOVUPS v, off(DI)

// func dequantNF4(dst *float32, codes *byte, absmax *float32, n, flat0, shift int)
//
// dst[i] = NF4Table[code of flat0+i] · absmax[(flat0+i)>>shift] for i < n,
// n a positive multiple of 32, flat0 a multiple of 32 and shift ≥ 5, so
// that the 32 elements of a pass lie in one block. Each vector of
// NF4LOOKUP is multiplied by the block's absmax, put in the elements'
// order and stored.
//
// Registers: DI dst, SI the codes of the pass, DX absmax, R8 the elements
// left, AX the flat index of the pass, CX shift; Y0–Y3 the planes, Y8 the
// pass's absmax, Y15 nf4Natural.
TEXT ·dequantNF4(SB), NOSPLIT, $0-48
	MOVQ    dst+0(FP), DI
	MOVQ    codes+8(FP), SI
	MOVQ    absmax+16(FP), DX
	MOVQ    n+24(FP), R8
	MOVQ    flat0+32(FP), AX
	MOVQ    shift+40(FP), CX
	MOVQ    AX, R9
	SHRQ    $1, R9
	ADDQ    R9, SI
	NF4PLANES
	VMOVDQU nf4Natural<>(SB), Y15

dloop:
	NF4LOOKUP(0(SI))
	MOVQ         AX, R9
	SHRQ         CX, R9
	VBROADCASTSS (DX)(R9*4), Y8
	DEQUANT8(Y10, 0)
	DEQUANT8(Y13, 32)
	DEQUANT8(Y12, 64)
	DEQUANT8(Y9, 96)
	ADDQ         $16, SI
	ADDQ         $128, DI
	ADDQ         $32, AX
	SUBQ         $32, R8
	JNZ          dloop
	VZEROUPPER
	RET

// NF4ROW adds the products of the 32 elements of a row of W whose codes
// are at p, in the block whose absmax is at a, with x's 32 at SI (in
// octetOrder) into acc.
#define NF4ROW(p, a, acc) \
	NF4LOOKUP(p); \
	VBROADCASTSS a, Y8; \
	VMULPS       Y8, Y10, Y10; \
	VMULPS       Y8, Y13, Y13; \
	VMULPS       Y8, Y12, Y12; \
	VMULPS       Y8, Y9, Y9; \
	VFMADD231PS  0(SI), Y10, acc; \
	VFMADD231PS  32(SI), Y13, acc; \
	VFMADD231PS  64(SI), Y12, acc; \
	VFMADD231PS  96(SI), Y9, acc

// func gemv4NF4(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)
//
// y[q] = Σⱼ x[j]·(NF4Table[code of q·ldw+j] · absmax[(q·ldw+j)/block])
// for the four rows q < 4 of an NF4 W and j < n, x in octetOrder, codes
// and absmax at the element and block of W's row 0, column 0 (the start of
// a block); n and ldw positive multiples of block, block a power of two,
// at least 32. 32 columns a pass: each row's values formed by NF4LOOKUP
// and scaled by its block's absmax, then multiplied by x's vectors (the
// FMAs' memory operands) into one accumulator per row; the rows' sums
// added across lanes at the end.
//
// Registers: SI x, DX W's row 0 codes, R8–R10 its rows 1–3, R11 row 0's
// absmax, AX row 2's, R12 the stride of absmax rows in bytes, R13 block,
// R14 the block's columns left, CX the columns left; Y0–Y3 the planes,
// Y4–Y7 the accumulators, Y8–Y14 temporaries.
TEXT ·gemv4NF4(SB), NOSPLIT, $0-56
	MOVQ   x+8(FP), SI
	MOVQ   codes+16(FP), DX
	MOVQ   absmax+24(FP), R11
	MOVQ   ldw+40(FP), BX
	MOVQ   block+48(FP), R13
	BSFQ   R13, CX
	MOVQ   BX, R12
	SHRQ   CX, R12
	SHLQ   $2, R12
	MOVQ   n+32(FP), CX
	SHRQ   $1, BX
	LEAQ   (DX)(BX*1), R8
	LEAQ   (R8)(BX*1), R9
	LEAQ   (R9)(BX*1), R10
	NF4PLANES
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gblock:
	MOVQ R13, R14
	LEAQ (R11)(R12*2), AX

gcols:
	NF4ROW((DX), (R11), Y4)
	NF4ROW((R8), (R11)(R12*1), Y5)
	NF4ROW((R9), (AX), Y6)
	NF4ROW((R10), (AX)(R12*1), Y7)
	ADDQ $128, SI
	ADDQ $16, DX
	ADDQ $16, R8
	ADDQ $16, R9
	ADDQ $16, R10
	SUBQ $32, R14
	JNZ  gcols
	ADDQ $4, R11
	SUBQ R13, CX
	JNZ  gblock

	VHADDPS      Y5, Y4, Y4 // per lane: r0 r0 r1 r1
	VHADDPS      Y7, Y6, Y6 // per lane: r2 r2 r3 r3
	VHADDPS      Y6, Y4, Y4 // per lane: r0 r1 r2 r3
	VEXTRACTF128 $1, Y4, X5
	VADDPS       X5, X4, X4
	MOVQ         y+0(FP), DI
	VMOVUPS      X4, (DI)
	VZEROUPPER
	RET
