//go:build !purego

#include "textflag.h"

// gemmKernelAVX512: see its declaration in kernels_amd64.go. The 8×32 block
// of C is sixteen ZMM accumulators, Z0..Z15: row i in Z(2i) (columns 0-15)
// and Z(2i+1) (columns 16-31). Each step p loads the 32 values of b's row p
// into Z16, Z17 and broadcasts a's eight values of step p, one a register
// (Z18..Z25), into the sixteen FMAs. Meanwhile it prefetches the rows of C
// it adds to at the end and the panel of a that follows its own, which
// the packed product passes to the next call.

// GEMMSTEPB(bstep): one step, a's eight values at (SI), b's 32 at (DI); a
// advances to its next step, b by bstep bytes.
#define GEMMSTEPB(bstep) \
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
	ADDQ bstep, DI

// GEMMSTEP: one step of a packed b (rows of 32 floats, 128 bytes apart).
#define GEMMSTEP GEMMSTEPB($128)

// GEMMPREFC: prefetch row DX of C (its two cache lines, if aligned; the
// second line of an unaligned row is fetched by the first load).
#define GEMMPREFC \
	PREFETCHT0 (DX) \
	PREFETCHT0 64(DX) \
	ADDQ R8, DX

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

// ZERO16: Z0..Z15 zeroed (the accumulators both kernel entries start from).
#define ZERO16 \
	VPXORD Z0, Z0, Z0 \
	VPXORD Z1, Z1, Z1 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z3, Z3, Z3 \
	VPXORD Z4, Z4, Z4 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z6, Z6, Z6 \
	VPXORD Z7, Z7, Z7 \
	VPXORD Z8, Z8, Z8 \
	VPXORD Z9, Z9, Z9 \
	VPXORD Z10, Z10, Z10 \
	VPXORD Z11, Z11, Z11 \
	VPXORD Z12, Z12, Z12 \
	VPXORD Z13, Z13, Z13 \
	VPXORD Z14, Z14, Z14 \
	VPXORD Z15, Z15, Z15

// GEMMENTRY: the arguments k, a, b, c and ldc (in bytes) of the kernels
// below into CX, SI, DI, DX and R8, the accumulators Z0..Z15 zeroed, and
// the rows of c, wanted at the end, fetched meanwhile.
#define GEMMENTRY \
	MOVQ k+0(FP), CX \
	MOVQ a+8(FP), SI \
	MOVQ b+16(FP), DI \
	MOVQ c+24(FP), DX \
	MOVQ ldc+32(FP), R8 \
	SHLQ $2, R8 \
	ZERO16 \
	MOVQ DX, R9 \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	GEMMPREFC \
	MOVQ R9, DX

// GEMMADD8: the 8×32 block of c added to the accumulators, DX kept.
#define GEMMADD8 \
	MOVQ DX, R9 \
	GEMMADD(Z0, Z1) \
	GEMMADD(Z2, Z3) \
	GEMMADD(Z4, Z5) \
	GEMMADD(Z6, Z7) \
	GEMMADD(Z8, Z9) \
	GEMMADD(Z10, Z11) \
	GEMMADD(Z12, Z13) \
	GEMMADD(Z14, Z15) \
	MOVQ R9, DX

// GEMMSTORE8: the accumulators stored as the 8×32 block of c.
#define GEMMSTORE8 \
	GEMMSTORE(Z0, Z1) \
	GEMMSTORE(Z2, Z3) \
	GEMMSTORE(Z4, Z5) \
	GEMMSTORE(Z6, Z7) \
	GEMMSTORE(Z8, Z9) \
	GEMMSTORE(Z10, Z11) \
	GEMMSTORE(Z12, Z13) \
	GEMMSTORE(Z14, Z15)

// GEMMPFLINE(next): a PREFETCHT1 of the line R12 bytes into the row at
// R11, then R12 on to the next line, or to the next row (AX bytes on) past
// rowBytes (R13); on to next.
#define GEMMPFLINE(next) \
	PREFETCHT1 (R11)(R12*1) \
	ADDQ       $64, R12 \
	CMPQ       R12, R13 \
	JB         next \
	XORQ       R12, R12 \
	ADDQ       AX, R11

// GEMMPASSES(STEP, pfloop, l1, l2, plain, ploop, tail, done): the passes
// of two steps (k/2, k in CX): the first (lines+1)/2 of them (lines ≤
// k&^1) with a GEMMPFLINE before each step, the rest without; then the
// odd step, on to done. Every pass prefetches the next 64 bytes of the panel of a that
// follows this one (R10 bytes on: the next call's). BX and R15 count.
#define GEMMPASSES(STEP, pfloop, l1, l2, plain, ploop, tail, done) \
	MOVQ  CX, BX \
	SHRQ  $1, BX \
	JZ    tail \
	MOVQ  lines+56(FP), R15 \
	INCQ  R15 \
	SHRQ  $1, R15 \
	SUBQ  R15, BX \
	TESTQ R15, R15 \
	JZ    plain \
pfloop: \
	PREFETCHT0 (SI)(R10*1) \
	GEMMPFLINE(l1) \
l1: \
	STEP \
	GEMMPFLINE(l2) \
l2: \
	STEP \
	DECQ  R15 \
	JNZ   pfloop \
plain: \
	TESTQ BX, BX \
	JZ    tail \
ploop: \
	PREFETCHT0 (SI)(R10*1) \
	STEP \
	STEP \
	DECQ  BX \
	JNZ   ploop \
tail: \
	TESTQ $1, CX \
	JZ    done \
	STEP \
done:

// TRANSPOSE8: the 8×8 transpose of the rows in Y0..Y7 (row r in Y(r))
// into Y8..Y15 (column c in Y(8+c)): VUNPCKLPS/VUNPCKHPS pairs of rows,
// VSHUFPS pairs of pairs, VPERM2F128 across the 128-bit lanes.
#define TRANSPOSE8 \
	VUNPCKLPS  Y1, Y0, Y8 \
	VUNPCKHPS  Y1, Y0, Y9 \
	VUNPCKLPS  Y3, Y2, Y10 \
	VUNPCKHPS  Y3, Y2, Y11 \
	VUNPCKLPS  Y5, Y4, Y12 \
	VUNPCKHPS  Y5, Y4, Y13 \
	VUNPCKLPS  Y7, Y6, Y14 \
	VUNPCKHPS  Y7, Y6, Y15 \
	VSHUFPS    $0x44, Y10, Y8, Y0 \
	VSHUFPS    $0xee, Y10, Y8, Y1 \
	VSHUFPS    $0x44, Y11, Y9, Y2 \
	VSHUFPS    $0xee, Y11, Y9, Y3 \
	VSHUFPS    $0x44, Y14, Y12, Y4 \
	VSHUFPS    $0xee, Y14, Y12, Y5 \
	VSHUFPS    $0x44, Y15, Y13, Y6 \
	VSHUFPS    $0xee, Y15, Y13, Y7 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x20, Y5, Y1, Y9 \
	VPERM2F128 $0x20, Y6, Y2, Y10 \
	VPERM2F128 $0x20, Y7, Y3, Y11 \
	VPERM2F128 $0x31, Y4, Y0, Y12 \
	VPERM2F128 $0x31, Y5, Y1, Y13 \
	VPERM2F128 $0x31, Y6, Y2, Y14 \
	VPERM2F128 $0x31, Y7, Y3, Y15

// The kernels of six rows of x (gemmKernel6x64, gemmKernel6x32): the
// 6×64 block of C is 24 ZMM accumulators, row i in Z(4i)..Z(4i+3)
// (columns 0-15, 16-31, then the second panel's 32-47, 48-63); the 6×32
// block uses Z(4i) and Z(4i+1). Each step loads the step's values of b
// (Z24..Z27), and broadcasts a's six values of the step, four registers
// (Z28..Z31) in turn, into their FMAs. Six rows by 64 columns make 24
// FMAs a step for four loads of b and six broadcasts, fewer loads per FMA
// than eight rows by 32 (16 for two and eight).

// GEMM6ROW4(bc, r0, r1, r2, r3), GEMM6ROW2(bc, r0, r1): the FMAs of one
// row of x, its value broadcast in bc, with the 64 (32) values of b.
#define GEMM6ROW4(bc, r0, r1, r2, r3) \
	VFMADD231PS Z24, bc, r0 \
	VFMADD231PS Z25, bc, r1 \
	VFMADD231PS Z26, bc, r2 \
	VFMADD231PS Z27, bc, r3

#define GEMM6ROW2(bc, r0, r1) \
	VFMADD231PS Z24, bc, r0 \
	VFMADD231PS Z25, bc, r1

// GEMM6STEP64, GEMM6STEP32: one step, a's six values at (SI), b's at
// (DI), its second panel R9 bytes on; a advances to its next step, b by
// R14 bytes.
#define GEMM6STEP64 \
	VMOVUPS (DI), Z24 \
	VMOVUPS 64(DI), Z25 \
	VMOVUPS (DI)(R9*1), Z26 \
	VMOVUPS 64(DI)(R9*1), Z27 \
	VBROADCASTSS (SI), Z28 \
	VBROADCASTSS 4(SI), Z29 \
	VBROADCASTSS 8(SI), Z30 \
	VBROADCASTSS 12(SI), Z31 \
	GEMM6ROW4(Z28, Z0, Z1, Z2, Z3) \
	GEMM6ROW4(Z29, Z4, Z5, Z6, Z7) \
	VBROADCASTSS 16(SI), Z28 \
	GEMM6ROW4(Z30, Z8, Z9, Z10, Z11) \
	VBROADCASTSS 20(SI), Z29 \
	GEMM6ROW4(Z31, Z12, Z13, Z14, Z15) \
	GEMM6ROW4(Z28, Z16, Z17, Z18, Z19) \
	GEMM6ROW4(Z29, Z20, Z21, Z22, Z23) \
	ADDQ $24, SI \
	ADDQ R14, DI

#define GEMM6STEP32 \
	VMOVUPS (DI), Z24 \
	VMOVUPS 64(DI), Z25 \
	VBROADCASTSS (SI), Z28 \
	VBROADCASTSS 4(SI), Z29 \
	VBROADCASTSS 8(SI), Z30 \
	VBROADCASTSS 12(SI), Z31 \
	GEMM6ROW2(Z28, Z0, Z1) \
	GEMM6ROW2(Z29, Z4, Z5) \
	VBROADCASTSS 16(SI), Z28 \
	GEMM6ROW2(Z30, Z8, Z9) \
	VBROADCASTSS 20(SI), Z29 \
	GEMM6ROW2(Z31, Z12, Z13) \
	GEMM6ROW2(Z28, Z16, Z17) \
	GEMM6ROW2(Z29, Z20, Z21) \
	ADDQ $24, SI \
	ADDQ R14, DI

// GEMM6ENTRY: the arguments k, a, b, c, ldc (in bytes), ldb (in bytes)
// and b2 of the kernels below into CX, SI, DI, DX, R8, R14 and R9; the
// accumulators zeroed; R10 = k·24, the bytes of a's panel; the prefetch
// state (pf, rowBytes, stride) into R11, R13 and AX, R12 = 0
// (GEMMPASSES).
#define GEMM6ENTRY \
	MOVQ k+0(FP), CX \
	MOVQ a+8(FP), SI \
	MOVQ b+16(FP), DI \
	MOVQ c+24(FP), DX \
	MOVQ ldc+32(FP), R8 \
	SHLQ $2, R8 \
	MOVQ ldb+80(FP), R14 \
	SHLQ $2, R14 \
	MOVQ b2+88(FP), R9 \
	ZERO16 \
	VPXORD Z16, Z16, Z16 \
	VPXORD Z17, Z17, Z17 \
	VPXORD Z18, Z18, Z18 \
	VPXORD Z19, Z19, Z19 \
	VPXORD Z20, Z20, Z20 \
	VPXORD Z21, Z21, Z21 \
	VPXORD Z22, Z22, Z22 \
	VPXORD Z23, Z23, Z23 \
	MOVQ CX, R10 \
	IMULQ $24, R10 \
	MOVQ pf+48(FP), R11 \
	XORQ R12, R12 \
	MOVQ rowBytes+64(FP), R13 \
	MOVQ stride+72(FP), AX

// GEMM6PREFROW(off): prefetch the row of C at DX (its lines at 0 and 64,
// and at off and off+64: the same two again for a row of 32), DX on to
// the next row.
#define GEMM6PREFROW(off) \
	PREFETCHT0 0(DX) \
	PREFETCHT0 64(DX) \
	PREFETCHT0 off(DX) \
	PREFETCHT0 off+64(DX) \
	ADDQ R8, DX

// GEMM6ADDROW4(r0, r1, r2, r3), GEMM6ADDROW2(r0, r1): the row of C at DX
// added to its accumulators; GEMM6STROW4, GEMM6STROW2: the accumulators
// stored as the row at DX; DX on to the next row.
#define GEMM6ADDROW4(r0, r1, r2, r3) \
	VADDPS (DX), r0, r0 \
	VADDPS 64(DX), r1, r1 \
	VADDPS 128(DX), r2, r2 \
	VADDPS 192(DX), r3, r3 \
	ADDQ R8, DX

#define GEMM6ADDROW2(r0, r1) \
	VADDPS (DX), r0, r0 \
	VADDPS 64(DX), r1, r1 \
	ADDQ R8, DX

#define GEMM6STROW4(r0, r1, r2, r3) \
	VMOVUPS r0, (DX) \
	VMOVUPS r1, 64(DX) \
	VMOVUPS r2, 128(DX) \
	VMOVUPS r3, 192(DX) \
	ADDQ R8, DX

#define GEMM6STROW2(r0, r1) \
	VMOVUPS r0, (DX) \
	VMOVUPS r1, 64(DX) \
	ADDQ R8, DX

// GEMM6PREFC64, GEMM6PREFC32: prefetch the six rows of C (DX kept).
#define GEMM6PREFC64 \
	MOVQ DX, R15 \
	GEMM6PREFROW(128) \
	GEMM6PREFROW(128) \
	GEMM6PREFROW(128) \
	GEMM6PREFROW(128) \
	GEMM6PREFROW(128) \
	GEMM6PREFROW(128) \
	MOVQ R15, DX

#define GEMM6PREFC32 \
	MOVQ DX, R15 \
	GEMM6PREFROW(0) \
	GEMM6PREFROW(0) \
	GEMM6PREFROW(0) \
	GEMM6PREFROW(0) \
	GEMM6PREFROW(0) \
	GEMM6PREFROW(0) \
	MOVQ R15, DX

// GEMM6ADD64, GEMM6ADD32: the rows of C added to the accumulators (DX
// kept); GEMM6STORE64, GEMM6STORE32: the accumulators stored as C.
#define GEMM6ADD64 \
	MOVQ DX, R15 \
	GEMM6ADDROW4(Z0, Z1, Z2, Z3) \
	GEMM6ADDROW4(Z4, Z5, Z6, Z7) \
	GEMM6ADDROW4(Z8, Z9, Z10, Z11) \
	GEMM6ADDROW4(Z12, Z13, Z14, Z15) \
	GEMM6ADDROW4(Z16, Z17, Z18, Z19) \
	GEMM6ADDROW4(Z20, Z21, Z22, Z23) \
	MOVQ R15, DX

#define GEMM6ADD32 \
	MOVQ DX, R15 \
	GEMM6ADDROW2(Z0, Z1) \
	GEMM6ADDROW2(Z4, Z5) \
	GEMM6ADDROW2(Z8, Z9) \
	GEMM6ADDROW2(Z12, Z13) \
	GEMM6ADDROW2(Z16, Z17) \
	GEMM6ADDROW2(Z20, Z21) \
	MOVQ R15, DX

#define GEMM6STORE64 \
	GEMM6STROW4(Z0, Z1, Z2, Z3) \
	GEMM6STROW4(Z4, Z5, Z6, Z7) \
	GEMM6STROW4(Z8, Z9, Z10, Z11) \
	GEMM6STROW4(Z12, Z13, Z14, Z15) \
	GEMM6STROW4(Z16, Z17, Z18, Z19) \
	GEMM6STROW4(Z20, Z21, Z22, Z23)

#define GEMM6STORE32 \
	GEMM6STROW2(Z0, Z1) \
	GEMM6STROW2(Z4, Z5) \
	GEMM6STROW2(Z8, Z9) \
	GEMM6STROW2(Z12, Z13) \
	GEMM6STROW2(Z16, Z17) \
	GEMM6STROW2(Z20, Z21)

// GEMM6KERNEL(PREFC, STEP, ADD, STORE, labels…): the body of a six-row
// kernel: its entry, C's rows prefetched, the passes, C added when acc ≠ 0,
// the block stored.
#define GEMM6KERNEL(PREFC, STEP, ADD, STORE, pf, l1, l2, plain, loop, tail, done, store) \
	GEMM6ENTRY \
	PREFC \
	GEMMPASSES(STEP, pf, l1, l2, plain, loop, tail, done) \
	CMPQ acc+40(FP), $0 \
	JEQ  store \
	ADD \
store: \
	STORE \
	VZEROUPPER \
	RET

// func gemmKernelAVX512(k int, a, b, c *float32, ldc, acc int)
TEXT ·gemmKernelAVX512(SB), NOSPLIT, $0-48
	GEMMENTRY

	// Two steps a pass, then the odd one. Each pass prefetches the next 64
	// bytes of the panel of x that follows a (k·32 bytes on), the next
	// call's, which the packed product reads from L2 or beyond.
	MOVQ CX, R10
	SHLQ $5, R10
	MOVQ CX, BX
	SHRQ $1, BX
	JZ   gemm_tail

gemm_loop2:
	PREFETCHT0 (SI)(R10*1)
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
	GEMMADD8

gemm_store:
	GEMMSTORE8
	VZEROUPPER
	RET

// func gemmKernelPF(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb int)
//
// gemmKernelAVX512 with b's steps R14 = ldb·4 bytes apart, and in its
// first (lines+1)/2 passes of two steps two PREFETCHT1s of the next lines
// of the rows of rowBytes bytes, stride apart, from pf on (GEMMPASSES).
TEXT ·gemmKernelPF(SB), NOSPLIT, $0-88
	GEMMENTRY
	MOVQ ldb+80(FP), R14
	SHLQ $2, R14
	MOVQ CX, R10
	SHLQ $5, R10
	MOVQ pf+48(FP), R11
	XORQ R12, R12
	MOVQ rowBytes+64(FP), R13
	MOVQ stride+72(FP), AX
	GEMMPASSES(GEMMSTEPB(R14), gemm_pf, gemm_l1, gemm_l2, gemm_plain, gemm_loop2, gemm_tail, gemm_done)
	CMPQ acc+40(FP), $0
	JEQ  gemm_store
	GEMMADD8

gemm_store:
	GEMMSTORE8
	VZEROUPPER
	RET

// func gemmKernel6x64(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int)
TEXT ·gemmKernel6x64(SB), NOSPLIT, $0-96
	GEMM6KERNEL(GEMM6PREFC64, GEMM6STEP64, GEMM6ADD64, GEMM6STORE64, g64_pf, g64_l1, g64_l2, g64_plain, g64_loop, g64_tail, g64_done, g64_store)

// func gemmKernel6x32(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int)
TEXT ·gemmKernel6x32(SB), NOSPLIT, $0-96
	GEMM6KERNEL(GEMM6PREFC32, GEMM6STEP32, GEMM6ADD32, GEMM6STORE32, g32_pf, g32_l1, g32_l2, g32_plain, g32_loop, g32_tail, g32_done, g32_store)

// PACKT16S(off, st): transposes the 16 rows of 16 floats in Z0..Z15 (row
// r in Z(r)) and stores column c, the 16 rows' values, at off+c·st(DI):
// three rounds of shuffles (VUNPCKLPS/VUNPCKHPS pairs of rows; VUNPCKLPD/
// VUNPCKHPD pairs of pairs; VSHUFF32X4 twice across 128-bit lanes) leave
// column c in Z(c). PACKT16(off) stores the columns of a panel of 32 rows.
#define PACKT16(off) PACKT16S(off, 128)
#define PACKT16S(off, st) \
	VUNPCKLPS Z1, Z0, Z16 \
	VUNPCKHPS Z1, Z0, Z17 \
	VUNPCKLPS Z3, Z2, Z18 \
	VUNPCKHPS Z3, Z2, Z19 \
	VUNPCKLPS Z5, Z4, Z20 \
	VUNPCKHPS Z5, Z4, Z21 \
	VUNPCKLPS Z7, Z6, Z22 \
	VUNPCKHPS Z7, Z6, Z23 \
	VUNPCKLPS Z9, Z8, Z24 \
	VUNPCKHPS Z9, Z8, Z25 \
	VUNPCKLPS Z11, Z10, Z26 \
	VUNPCKHPS Z11, Z10, Z27 \
	VUNPCKLPS Z13, Z12, Z28 \
	VUNPCKHPS Z13, Z12, Z29 \
	VUNPCKLPS Z15, Z14, Z30 \
	VUNPCKHPS Z15, Z14, Z31 \
	VUNPCKLPD Z18, Z16, Z0 \
	VUNPCKHPD Z18, Z16, Z1 \
	VUNPCKLPD Z19, Z17, Z2 \
	VUNPCKHPD Z19, Z17, Z3 \
	VUNPCKLPD Z22, Z20, Z4 \
	VUNPCKHPD Z22, Z20, Z5 \
	VUNPCKLPD Z23, Z21, Z6 \
	VUNPCKHPD Z23, Z21, Z7 \
	VUNPCKLPD Z26, Z24, Z8 \
	VUNPCKHPD Z26, Z24, Z9 \
	VUNPCKLPD Z27, Z25, Z10 \
	VUNPCKHPD Z27, Z25, Z11 \
	VUNPCKLPD Z30, Z28, Z12 \
	VUNPCKHPD Z30, Z28, Z13 \
	VUNPCKLPD Z31, Z29, Z14 \
	VUNPCKHPD Z31, Z29, Z15 \
	VSHUFF32X4 $0x44, Z4, Z0, Z16 \
	VSHUFF32X4 $0xEE, Z4, Z0, Z20 \
	VSHUFF32X4 $0x44, Z12, Z8, Z24 \
	VSHUFF32X4 $0xEE, Z12, Z8, Z28 \
	VSHUFF32X4 $0x44, Z5, Z1, Z17 \
	VSHUFF32X4 $0xEE, Z5, Z1, Z21 \
	VSHUFF32X4 $0x44, Z13, Z9, Z25 \
	VSHUFF32X4 $0xEE, Z13, Z9, Z29 \
	VSHUFF32X4 $0x44, Z6, Z2, Z18 \
	VSHUFF32X4 $0xEE, Z6, Z2, Z22 \
	VSHUFF32X4 $0x44, Z14, Z10, Z26 \
	VSHUFF32X4 $0xEE, Z14, Z10, Z30 \
	VSHUFF32X4 $0x44, Z7, Z3, Z19 \
	VSHUFF32X4 $0xEE, Z7, Z3, Z23 \
	VSHUFF32X4 $0x44, Z15, Z11, Z27 \
	VSHUFF32X4 $0xEE, Z15, Z11, Z31 \
	VSHUFF32X4 $0x88, Z24, Z16, Z0 \
	VSHUFF32X4 $0xDD, Z24, Z16, Z4 \
	VSHUFF32X4 $0x88, Z28, Z20, Z8 \
	VSHUFF32X4 $0xDD, Z28, Z20, Z12 \
	VSHUFF32X4 $0x88, Z25, Z17, Z1 \
	VSHUFF32X4 $0xDD, Z25, Z17, Z5 \
	VSHUFF32X4 $0x88, Z29, Z21, Z9 \
	VSHUFF32X4 $0xDD, Z29, Z21, Z13 \
	VSHUFF32X4 $0x88, Z26, Z18, Z2 \
	VSHUFF32X4 $0xDD, Z26, Z18, Z6 \
	VSHUFF32X4 $0x88, Z30, Z22, Z10 \
	VSHUFF32X4 $0xDD, Z30, Z22, Z14 \
	VSHUFF32X4 $0x88, Z27, Z19, Z3 \
	VSHUFF32X4 $0xDD, Z27, Z19, Z7 \
	VSHUFF32X4 $0x88, Z31, Z23, Z11 \
	VSHUFF32X4 $0xDD, Z31, Z23, Z15 \
	VMOVUPS Z0, (off+0*st)(DI) \
	VMOVUPS Z1, (off+1*st)(DI) \
	VMOVUPS Z2, (off+2*st)(DI) \
	VMOVUPS Z3, (off+3*st)(DI) \
	VMOVUPS Z4, (off+4*st)(DI) \
	VMOVUPS Z5, (off+5*st)(DI) \
	VMOVUPS Z6, (off+6*st)(DI) \
	VMOVUPS Z7, (off+7*st)(DI) \
	VMOVUPS Z8, (off+8*st)(DI) \
	VMOVUPS Z9, (off+9*st)(DI) \
	VMOVUPS Z10, (off+10*st)(DI) \
	VMOVUPS Z11, (off+11*st)(DI) \
	VMOVUPS Z12, (off+12*st)(DI) \
	VMOVUPS Z13, (off+13*st)(DI) \
	VMOVUPS Z14, (off+14*st)(DI) \
	VMOVUPS Z15, (off+15*st)(DI)

// LOADF32: 16 rows of 16 float32 at AX, R9 bytes apart, into Z0..Z15;
// AX advances by the 16 rows.
#define LOADF32 \
	VMOVUPS (AX), Z0 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z1 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z2 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z3 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z4 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z5 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z6 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z7 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z8 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z9 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z10 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z11 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z12 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z13 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z14 \
	ADDQ R9, AX \
	VMOVUPS (AX), Z15 \
	ADDQ R9, AX

// LOADBF16: 16 rows of 16 bfloat16, widened (the pattern shifted into the
// high half of a float32).
#define LOADBF16 \
	VPMOVZXWD (AX), Z0 \
	VPSLLD $16, Z0, Z0 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z1 \
	VPSLLD $16, Z1, Z1 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z2 \
	VPSLLD $16, Z2, Z2 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z3 \
	VPSLLD $16, Z3, Z3 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z4 \
	VPSLLD $16, Z4, Z4 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z5 \
	VPSLLD $16, Z5, Z5 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z6 \
	VPSLLD $16, Z6, Z6 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z7 \
	VPSLLD $16, Z7, Z7 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z8 \
	VPSLLD $16, Z8, Z8 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z9 \
	VPSLLD $16, Z9, Z9 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z10 \
	VPSLLD $16, Z10, Z10 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z11 \
	VPSLLD $16, Z11, Z11 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z12 \
	VPSLLD $16, Z12, Z12 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z13 \
	VPSLLD $16, Z13, Z13 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z14 \
	VPSLLD $16, Z14, Z14 \
	ADDQ R9, AX \
	VPMOVZXWD (AX), Z15 \
	VPSLLD $16, Z15, Z15 \
	ADDQ R9, AX

// LOADF16: 16 rows of 16 float16, widened by VCVTPH2PS.
#define LOADF16 \
	VCVTPH2PS (AX), Z0 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z1 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z2 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z3 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z4 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z5 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z6 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z7 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z8 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z9 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z10 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z11 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z12 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z13 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z14 \
	ADDQ R9, AX \
	VCVTPH2PS (AX), Z15 \
	ADDQ R9, AX

// PACKT(name, LOAD, size): the body of a packing kernel for elements of
// size bytes, its arguments in DI (dst), SI (src), CX (kc) and R9 (ld):
// for each 16 columns, rows 0-15 then rows 16-31.
#define PACKT(name, LOAD, size) \
	IMULQ $size, R9 \
	SHRQ $4, CX \
name: \
	MOVQ SI, AX \
	LOAD \
	PACKT16(0) \
	LOAD \
	PACKT16(64) \
	ADDQ $(16*size), SI \
	ADDQ $2048, DI \
	DECQ CX \
	JNZ  name \
	VZEROUPPER \
	RET

// func packT32(dst, src *float32, kc, ld int)
TEXT ·packT32(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKT(packt_f32, LOADF32, 4)

// func packT32BF16(dst *float32, src *uint16, kc, ld int)
TEXT ·packT32BF16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKT(packt_bf16, LOADBF16, 2)

// func packT32F16(dst *float32, src *uint16, kc, ld int)
TEXT ·packT32F16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKT(packt_f16, LOADF16, 2)

// func packT16(dst, src *float32, k16, ld int)
TEXT ·packT16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ k16+16(FP), CX
	MOVQ ld+24(FP), R9
	SHLQ $2, R9

packt16_loop:
	MOVQ SI, AX
	LOADF32
	PACKT16S(0, 64)
	ADDQ $64, SI
	ADDQ $1024, DI
	DECQ CX
	JNZ  packt16_loop
	VZEROUPPER
	RET

// LOADN32F32, LOADN32BF16, LOADN32F16: the 32 consecutive elements at SI,
// widened, into Z0 and Z1.
#define LOADN32F32 \
	VMOVUPS (SI), Z0 \
	VMOVUPS 64(SI), Z1

#define LOADN32BF16 \
	VPMOVZXWD (SI), Z0 \
	VPSLLD    $16, Z0, Z0 \
	VPMOVZXWD 32(SI), Z1 \
	VPSLLD    $16, Z1, Z1

#define LOADN32F16 \
	VCVTPH2PS (SI), Z0 \
	VCVTPH2PS 32(SI), Z1

// PACKN(name, LOAD, size): the body of packN32 for elements of size bytes,
// its arguments in DI (dst), SI (src), CX (kc) and R9 (ld): each step the
// 32 elements LOAD widens, stored at DI.
#define PACKN(name, LOAD, size) \
	IMULQ $size, R9 \
name: \
	LOAD \
	VMOVUPS Z0, (DI) \
	VMOVUPS Z1, 64(DI) \
	ADDQ R9, SI \
	ADDQ $128, DI \
	DECQ CX \
	JNZ  name \
	VZEROUPPER \
	RET

// func packN32(dst, src *float32, kc, ld int)
TEXT ·packN32(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKN(packn_f32, LOADN32F32, 4)

// func packN32BF16(dst *float32, src *uint16, kc, ld int)
TEXT ·packN32BF16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKN(packn_bf16, LOADN32BF16, 2)

// func packN32F16(dst *float32, src *uint16, kc, ld int)
TEXT ·packN32F16(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ kc+16(FP), CX
	MOVQ ld+24(FP), R9
	PACKN(packn_f16, LOADN32F16, 2)

// func prefetchRows(p uintptr, rows, stride, bytes int)
TEXT ·prefetchRows(SB), NOSPLIT, $0-32
	MOVQ p+0(FP), SI
	MOVQ rows+8(FP), CX
	MOVQ stride+16(FP), R9
	MOVQ bytes+24(FP), DX
	TESTQ CX, CX
	JLE   pf_done
	TESTQ DX, DX
	JLE   pf_done

pf_row:
	XORQ AX, AX

pf_line:
	PREFETCHT1 (SI)(AX*1)
	ADDQ $64, AX
	CMPQ AX, DX
	JLT  pf_line
	ADDQ R9, SI
	DECQ CX
	JNZ  pf_row

pf_done:
	RET

// func packT8(dst, src *float32, k8, ld int)
//
// Eight rows of x, 8 columns a pass: rows in Y0–Y7, each pair interleaved
// (VUNPCKLPS, VUNPCKHPS: Y8–Y15), then each four rows' values of a column
// gathered within 128-bit lanes (VSHUFPS: Y0–Y7), then rows 0–3 and 4–7
// joined (VPERM2F128: Y8–Y15 = columns 0–7), stored one step of 8 floats
// each. SI, R11: rows 0 and 4; R9 = ld and R10 = 3·ld in bytes reach the
// rows between.
TEXT ·packT8(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ k8+16(FP), CX
	MOVQ ld+24(FP), R9
	SHLQ $2, R9
	LEAQ (R9)(R9*2), R10
	LEAQ (SI)(R9*4), R11

t8_loop:
	VMOVUPS    (SI), Y0
	VMOVUPS    (SI)(R9*1), Y1
	VMOVUPS    (SI)(R9*2), Y2
	VMOVUPS    (SI)(R10*1), Y3
	VMOVUPS    (R11), Y4
	VMOVUPS    (R11)(R9*1), Y5
	VMOVUPS    (R11)(R9*2), Y6
	VMOVUPS    (R11)(R10*1), Y7
	TRANSPOSE8
	VMOVUPS    Y8, 0(DI)
	VMOVUPS    Y9, 32(DI)
	VMOVUPS    Y10, 64(DI)
	VMOVUPS    Y11, 96(DI)
	VMOVUPS    Y12, 128(DI)
	VMOVUPS    Y13, 160(DI)
	VMOVUPS    Y14, 192(DI)
	VMOVUPS    Y15, 224(DI)
	ADDQ       $32, SI
	ADDQ       $32, R11
	ADDQ       $256, DI
	DECQ       CX
	JNZ        t8_loop
	VZEROUPPER
	RET

// func packT6(dst, src *float32, k8, ld int)
//
// packT8's transposes on six rows (rows 6 and 7 zero), each step's six
// values stored under the mask K1 (lanes 0-5), 24 bytes apart.
TEXT ·packT6(SB), NOSPLIT, $0-32
	MOVQ   dst+0(FP), DI
	MOVQ   src+8(FP), SI
	MOVQ   k8+16(FP), CX
	MOVQ   ld+24(FP), R9
	SHLQ   $2, R9
	LEAQ   (R9)(R9*2), R10
	LEAQ   (SI)(R9*4), R11
	MOVQ   $0x3f, AX
	KMOVW  AX, K1

t6_loop:
	VMOVUPS    (SI), Y0
	VMOVUPS    (SI)(R9*1), Y1
	VMOVUPS    (SI)(R9*2), Y2
	VMOVUPS    (SI)(R10*1), Y3
	VMOVUPS    (R11), Y4
	VMOVUPS    (R11)(R9*1), Y5
	VXORPS     Y6, Y6, Y6
	VXORPS     Y7, Y7, Y7
	TRANSPOSE8
	VMOVUPS    Y8, K1, 0(DI)
	VMOVUPS    Y9, K1, 24(DI)
	VMOVUPS    Y10, K1, 48(DI)
	VMOVUPS    Y11, K1, 72(DI)
	VMOVUPS    Y12, K1, 96(DI)
	VMOVUPS    Y13, K1, 120(DI)
	VMOVUPS    Y14, K1, 144(DI)
	VMOVUPS    Y15, K1, 168(DI)
	ADDQ       $32, SI
	ADDQ       $32, R11
	ADDQ       $192, DI
	DECQ       CX
	JNZ        t6_loop
	VZEROUPPER
	RET

// gemmKernelW6x64: the 6×64 kernel with a's six values of a step read
// where they lie, one from each of six rows lda bytes apart (rows of W in
// place, their steps consecutive), not from a packed panel: row i of a at
// SI + i·lda, through SI and R13 = SI + 3·lda with R11 = lda as index. The
// block of C, b's loads and the FMAs are GEMM6STEP64's.
#define GEMM6STEPW \
	VMOVUPS (DI), Z24 \
	VMOVUPS 64(DI), Z25 \
	VMOVUPS (DI)(R9*1), Z26 \
	VMOVUPS 64(DI)(R9*1), Z27 \
	VBROADCASTSS (SI), Z28 \
	VBROADCASTSS (SI)(R11*1), Z29 \
	VBROADCASTSS (SI)(R11*2), Z30 \
	VBROADCASTSS (R13), Z31 \
	GEMM6ROW4(Z28, Z0, Z1, Z2, Z3) \
	GEMM6ROW4(Z29, Z4, Z5, Z6, Z7) \
	VBROADCASTSS (R13)(R11*1), Z28 \
	GEMM6ROW4(Z30, Z8, Z9, Z10, Z11) \
	VBROADCASTSS (R13)(R11*2), Z29 \
	GEMM6ROW4(Z31, Z12, Z13, Z14, Z15) \
	GEMM6ROW4(Z28, Z16, Z17, Z18, Z19) \
	GEMM6ROW4(Z29, Z20, Z21, Z22, Z23) \
	ADDQ $4, SI \
	ADDQ $4, R13 \
	ADDQ $128, DI

// func gemmKernelW6x64(k int, a *float32, lda int, b, c *float32, ldc, acc, b2 int)
TEXT ·gemmKernelW6x64(SB), NOSPLIT, $0-64
	MOVQ k+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ lda+16(FP), R11
	SHLQ $2, R11
	LEAQ (SI)(R11*2), R13
	ADDQ R11, R13
	MOVQ b+24(FP), DI
	MOVQ c+32(FP), DX
	MOVQ ldc+40(FP), R8
	SHLQ $2, R8
	MOVQ b2+56(FP), R9
	ZERO16
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19
	VPXORD Z20, Z20, Z20
	VPXORD Z21, Z21, Z21
	VPXORD Z22, Z22, Z22
	VPXORD Z23, Z23, Z23
	GEMM6PREFC64
	MOVQ CX, BX
	SHRQ $1, BX
	JZ   w64_tail

w64_loop:
	GEMM6STEPW
	GEMM6STEPW
	DECQ BX
	JNZ  w64_loop

w64_tail:
	TESTQ $1, CX
	JZ    w64_done
	GEMM6STEPW

w64_done:
	CMPQ acc+48(FP), $0
	JEQ  w64_store
	GEMM6ADD64

w64_store:
	GEMM6STORE64
	VZEROUPPER
	RET
