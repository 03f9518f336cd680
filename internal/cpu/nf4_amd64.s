//go:build amd64 && !purego

#include "textflag.h"

// The NF4 kernels, in AVX2 with FMA: dequantNF4 writes the float32 values
// of a run of elements, gemv4NF4 is the matrix-vector kernel of GEMV4's
// shape (gemv_amd64.s) for an NF4 W, its values formed in registers;
// gemv4NF4AVX512 is gemv4NF4 in AVX-512, where one VPERMPS looks 16 codes
// up in all 16 of the table's entries. The AVX2 kernels look codes up 32
// at a time the same way, NF4LOOKUP: the table's float32 entries are held
// as four planes of bytes (nf4Planes: plane i holds byte i of each entry,
// in both 128-bit lanes), the codes' nibbles index them with VPSHUFB, and
// two rounds of unpacking put each entry's four bytes back together. An
// element's value is then NF4Table[code] · absmax[block] with one float32
// rounding (VMULPS), as DequantizeNF4 forms it, and in the matrix-vector
// kernels it enters one FMA with x. (gemv4NF4AVX512 multiplies the table
// by a block's absmax once and looks the products up: the same values.)
//
// What bounds gemv4NF4AVX512 is its shuffles. Measured on an AMD EPYC of
// the Zen 4 generation (one core, independent instructions in a loop),
// VPERMPS, VPERMT2PS, VPMOVZXBD and VPSRLD on 512 bits each issue once a
// cycle, as VFMADD231PS does, and a VPERMPS beside an FMA takes 1.36
// cycles a pair, not one: they share a port. Per 128 elements (a pass
// over four rows) the kernel issues 8 VPERMPS, 4 VPMOVZXBD, 4 VPSRLD and
// 8 FMAs, 16 cycles of shuffles alone where those share their ports, and
// it runs in 19 with W in L1 (24.5 G elements/s a core, at the 3.65 GHz
// that the FMA loop's rate implies). A lookup by VPERMB on byte indices
// (VPSHUFB spreading a code byte over its lane, VPTERNLOGD forming the
// indices) ran 2.5 times slower; x held in registers, not read by the
// FMAs, changed nothing.
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
// evenOdd order of 8). The low lane takes the high nibbles (elements of
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

// NF4ROW adds the products of the 32 elements of a row of W whose codes
// are at p, in the block whose absmax is at a, with x's 32 at SI (in
// evenOdd order of 8) into acc.
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

// NF4GEMVARGS loads the arguments of gemv4NF4 and gemv4NF4AVX512: SI x,
// DX W's row 0 codes, R8–R10 its rows 1–3 (BX = ldw/2 bytes apart), R11 row
// 0's absmax, R12 the stride of absmax rows in bytes (ldw/block scales),
// R13 block, CX n.
//
// Each pass of both kernels also prefetches into L2 the codes four rows
// below the four it reads, (p)(BX*4): the same columns of the next group
// of rows, which the driver (gemvFused) passes next. A W streamed from
// memory is read as runs of four short rows, which the hardware's
// prefetchers alone follow too late: measured in the bench's NF4 table
// (4096×4096, n = 1, W from memory, 2 cores of an Intel Sapphire Rapids),
// the prefetch into L1 (PREFETCHT0) took the AVX-512 kernel from 926 to
// 638 µs and the AVX2 one from 1.17 to 0.88 ms; into L2 (PREFETCHT1) on an
// AMD EPYC (Zen 4), against PREFETCHT0, medians of 5: 563 → 479 µs, and
// 65.4 → 58.7 µs at 1024×1024 (eight rows below: 505 and 58.6). A
// prefetch never faults, so those past the end of W are harmless.
#define NF4GEMVARGS \
	MOVQ x+8(FP), SI; \
	MOVQ codes+16(FP), DX; \
	MOVQ absmax+24(FP), R11; \
	MOVQ ldw+40(FP), BX; \
	MOVQ block+48(FP), R13; \
	BSFQ R13, CX; \
	MOVQ BX, R12; \
	SHRQ CX, R12; \
	SHLQ $2, R12; \
	MOVQ n+32(FP), CX; \
	SHRQ $1, BX; \
	LEAQ (DX)(BX*1), R8; \
	LEAQ (R8)(BX*1), R9; \
	LEAQ (R9)(BX*1), R10

// NF4NEXT ends a pass of 32 columns: x and the rows' codes move on, the
// loop at cols runs while the block has columns left (R14), then the
// absmax moves to the next block and the loop at blk runs while columns
// are left (CX).
#define NF4NEXT(cols, blk) \
	ADDQ $128, SI; \
	ADDQ $16, DX; \
	ADDQ $16, R8; \
	ADDQ $16, R9; \
	ADDQ $16, R10; \
	SUBQ $32, R14; \
	JNZ  cols; \
	ADDQ $4, R11; \
	SUBQ R13, CX; \
	JNZ  blk

// NF4SUM4 adds each of the rows' accumulators Y4–Y7 across its lanes and
// stores the four sums at y.
#define NF4SUM4 \
	VHADDPS      Y5, Y4, Y4;  /* per lane: r0 r0 r1 r1 */ \
	VHADDPS      Y7, Y6, Y6;  /* per lane: r2 r2 r3 r3 */ \
	VHADDPS      Y6, Y4, Y4;  /* per lane: r0 r1 r2 r3 */ \
	VEXTRACTF128 $1, Y4, X5; \
	VADDPS       X5, X4, X4; \
	MOVQ         y+0(FP), DI; \
	VMOVUPS      X4, (DI)

// NF4ROWZ adds the products of the 32 elements of a row of W whose codes
// are at p with x's 32 at SI (in evenOdd order of 32: the 16 even columns,
// then the 16 odd ones) into acc, t holding the row's table scaled by its
// block's absmax: the code bytes zero-extended into the 16 lanes of Z8,
// their high nibbles (the elements of even index) shifted down into Z9,
// both looked up by VPERMPS, which reads bits 0–3 of each lane.
#define NF4ROWZ(p, t, acc) \
	VPMOVZXBD   p, Z8; \
	VPSRLD      $4, Z8, Z9; \
	VPERMPS     t, Z9, Z9; \
	VPERMPS     t, Z8, Z8; \
	VFMADD231PS 0(SI), Z9, acc; \
	VFMADD231PS 64(SI), Z8, acc

// NF4SCALEZ sets t to the table (Z10) times the float32 at m, with Z11
// for its broadcast: the 16 values of the block's codes.
#define NF4SCALEZ(m, t) \
	VBROADCASTSS m, Z11; \
	VMULPS       Z10, Z11, t

// FOLDZ adds the upper half of the 16 lanes of z into y, its lower half,
// with t for the upper half.
#define FOLDZ(z, y, t) \
	VEXTRACTF64X4 $1, z, t; \
	VADDPS        t, y, y

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

// func gemv4NF4(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)
//
// y[q] = Σⱼ x[j]·(NF4Table[code of q·ldw+j] · absmax[(q·ldw+j)/block])
// for the four rows q < 4 of an NF4 W and j < n, x in evenOdd order of 8,
// codes and absmax at the element and block of W's row 0, column 0 (the
// start of a block); n and ldw positive multiples of block, block a power
// of two, at least 32. 32 columns a pass: each row's values formed by
// NF4LOOKUP and scaled by its block's absmax, then multiplied by x's
// vectors (the FMAs' memory operands) into one accumulator per row; the
// rows' sums added across lanes at the end.
//
// Registers: SI x, DX W's row 0 codes, R8–R10 its rows 1–3, R11 row 0's
// absmax, AX row 2's, R12 the stride of absmax rows in bytes, R13 block,
// R14 the block's columns left, CX the columns left; Y0–Y3 the planes,
// Y4–Y7 the accumulators, Y8–Y14 temporaries.
TEXT ·gemv4NF4(SB), NOSPLIT, $0-56
	NF4GEMVARGS
	NF4PLANES
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

gblock:
	MOVQ R13, R14
	LEAQ (R11)(R12*2), AX

gcols:
	PREFETCHT1 (DX)(BX*4)
	PREFETCHT1 (R8)(BX*4)
	PREFETCHT1 (R9)(BX*4)
	PREFETCHT1 (R10)(BX*4)
	NF4ROW((DX), (R11), Y4)
	NF4ROW((R8), (R11)(R12*1), Y5)
	NF4ROW((R9), (AX), Y6)
	NF4ROW((R10), (AX)(R12*1), Y7)
	NF4NEXT(gcols, gblock)
	NF4SUM4
	VZEROUPPER
	RET

// func gemv4NF4AVX512(y, x *float32, codes *byte, absmax *float32, n, ldw, block int)
//
// gemv4NF4 with x in evenOdd order of 32, in AVX-512: for each block, the
// four rows' tables scaled by their absmax into Z0–Z3 (the table in Z10);
// 32 columns a pass, NF4ROWZ for each row, one accumulator per row in
// Z4–Z7, folded to 8 lanes and added across lanes at the end.
//
// Registers as gemv4NF4's, but Z0–Z3 the scaled tables, Z4–Z7 the
// accumulators, Z8, Z9 and Z11 temporaries, Z10 the table.
TEXT ·gemv4NF4AVX512(SB), NOSPLIT, $0-56
	NF4GEMVARGS
	VMOVUPS ·NF4Table(SB), Z10
	VPXORD  Z4, Z4, Z4
	VPXORD  Z5, Z5, Z5
	VPXORD  Z6, Z6, Z6
	VPXORD  Z7, Z7, Z7

zblock:
	MOVQ R13, R14
	LEAQ (R11)(R12*2), AX
	NF4SCALEZ((R11), Z0)
	NF4SCALEZ((R11)(R12*1), Z1)
	NF4SCALEZ((AX), Z2)
	NF4SCALEZ((AX)(R12*1), Z3)

zcols:
	PREFETCHT1 (DX)(BX*4)
	PREFETCHT1 (R8)(BX*4)
	PREFETCHT1 (R9)(BX*4)
	PREFETCHT1 (R10)(BX*4)
	NF4ROWZ((DX), Z0, Z4)
	NF4ROWZ((R8), Z1, Z5)
	NF4ROWZ((R9), Z2, Z6)
	NF4ROWZ((R10), Z3, Z7)
	NF4NEXT(zcols, zblock)
	FOLDZ(Z4, Y4, Y8)
	FOLDZ(Z5, Y5, Y9)
	FOLDZ(Z6, Y6, Y10)
	FOLDZ(Z7, Y7, Y11)
	NF4SUM4
	VZEROUPPER
	RET
