// Package cpu holds the CPU kernels of package lora's default backend and
// their Go drivers, on slices in host memory: the products y = x·Wᵀ and
// dx = dy·W (a float32, F16, BF16 or NF4 W), the rank-r row updates of
// Merge and of the adapter's terms, the gradients, AbsMax, the optimizers'
// updates, the loss, and the batched products of a Bank. It never imports
// package lora: lora's fallback_cpu.go unpacks each Matrix into a Mat and
// calls the exported functions here.
//
// # Layout
//
//	types.go, parallel.go     Type and Mat, the 16-bit conversions, the split among goroutines
//	product.go, half.go       y = x·Wᵀ: the fused matrix-vector driver, Sgemm, widened panels
//	gemm.go, gemm_amd64.go    the packed product (BLIS-style, AVX-512 micro-kernel) for batches,
//	                          its packing kernels (gemm_amd64.s; gemm_other.go their loops)
//	gemm_wide.go              the same kernel with a float32 W read in place, for 58 to 64 rows
//	gemm_bf16*.go, amx*.go    a BF16 W times bf16 x (and bf16 dy times W, gemm_bf16_gradx.go)
//	                          on AMX (TDPBF16PS) or AVX-512 BF16 (VDPBF16PS), their guard
//	                          against subnormal operands, the AMX permission
//	                          (gemm_bf16_amd64.s: the encoded instructions)
//	nf4.go                    NF4: quantization, dequantization, y = x·Wᵀ on its codes
//	forward.go, backward.go   Forward and Backward on those products, productNN for dx
//	lora_term.go              Forward's adapter term done by the batch products' goroutines
//	rank.go                   the rank-r row updates (Merge, RankFinite, y += T·Bᵀ)
//	reduce.go, elementwise.go AbsMax, MaxRowSum, MSE; Axpy, AddBias, AdamW (its AVX kernel
//	                          in adamw_amd64.s), SGD
//	bufpool.go                scratch recycled by size class (slabPool)
//	bank.go                   a Bank's base product and its grouped expansion
//	kernels_amd64.go + *.s    the assembly kernels (AVX2, FMA, F16C, AVX-512), declared with
//	                          the loop each computes as its comment
//	kernels_other.go          those loops as Go, for other processors and -tags purego
//	level.go                  the level of instructions the kernels use; LORA_CPU
//	openblas.go               -tags openblas: gonum's BLAS is OpenBLAS, threaded
//
// # Dispatch
//
// The assembly runs where the processor has the instructions it needs, as
// golang.org/x/sys/cpu reports them at start-up: useFMA (AVX2 and FMA) for
// the float32 kernels and BF16, useF16FMA (and F16C) for F16, useNF4FMA
// (AVX2 and FMA) for NF4 and useNF4AVX512 (and AVX512F) for its AVX-512
// matrix-vector kernel, halfAVX2 for maxMag16. Each driver reads these
// flags and takes the portable path otherwise, so every kernel family has
// one place that chooses. With -tags purego, or on any other architecture,
// the flags are false. One choice depends on the processor's vendor (CPUID
// leaf 0), not on its instructions, because the same blocking measured
// faster on one and slower on the other: shortDXSlabs (gemm.go), dx = dy·W
// for few rows of dy in short slabs of W, on Intel's processors but not on
// AMD's.
//
// Batches of gemmMinRows (16) rows or more, on processors with AVX-512,
// take the packed product (gemm.go) for y = x·Wᵀ of every type of W, for
// a Bank's base product and for Backward's dx = dy·W (an NF4 W's from 32
// rows): W widened into float32 while it is packed, by 16×16 transposes in
// registers (packT32 and its half forms; an NF4 W dequantized a panel at a
// time first), a panel at a time, never as a whole; x in panels of six
// rows (the 6×64 kernel over two panels of W) or, where six would pad it
// more, eight (8×32: gemmPanelRows). While x packed fits 4 MiB, each block
// of W is two panels (64 rows) packed over the whole inner dimension, its
// rows read from memory whole and in order, and the next slab of W is
// prefetched into L2 while the micro-kernel runs. A float32 W with 58 to
// 64 rows of x is not packed at all (gemm_wide.go): the operands swap
// roles, six rows of W read in place as the broadcast operand of the 6×64
// kernel against 64 rows of x packed once. From
// 16 rows as well (gemmSmallWins) the adapter's products of Backward (T,
// U, dA, dB) and Shrink's T run on the same product with the r-row operand
// in the place of x; and rankUpdateF32 (Merge's W += s·B·A, Backward's
// dx += U·A) runs on its micro-kernel, one call per 8×32 block over all r
// terms: rankRow's arithmetic exactly. Forward's y += T·Bᵀ runs on the
// same micro-kernel, but in the goroutines of the packed or the bf16
// product, on each part of y they have just written (lora_term.go), and
// T with them up to 256 rows of x. Measured on
// 4096×4096 (BenchmarkPackedProduct, 2 cores shared with other work,
// rates per CPU-second, medians of three): y = x·Wᵀ at 128 GFLOP/s at
// n = 16 against 90 by f32Product, 257 at n = 64 and 303 at n = 256, 66 %
// of the machine's float32 FMA rate (457 GFLOP/s); an NF4 W 137 against
// 106 by nf4Product at n = 16; dx of a float32 W 88 against 59 by
// productNN at n = 16, of an NF4 W 95 against 103, hence its threshold
// of 32.
//
// What bounds the float32 product: on one core the FMA loop of the bench
// runs at 210 GFLOP/s; the 6×64 kernel's loop, its operands in L1, at
// 190–198 (the same loop without its four loads of W, or without its six
// broadcasts, at 204–216: the ten loads a step, not the FMAs, cost the
// rest); called as the product calls it (x's panels from L2, the rows of
// C 16 KiB apart), 182–186, and 176–180 a core with both cores so busy,
// 84 % of the FMA rate before any packing: the share of the FMA rate the
// packed product can reach on that machine (an Intel Sapphire Rapids). On
// an AMD EPYC (Zen 4), whose AVX-512 instructions run on 256-bit halves,
// the FMA loop runs at half that rate (233 GFLOP/s on two cores) and the
// 6×64 kernel's loads no longer bound it: BenchmarkGemmKernel6 ran at 114.5
// GFLOP/s on one core, 98 % of the FMA loop's, and the float32 Forward at
// n = 64 and 256, in = out = 4096, at 82–88 % of the two cores' rate in
// the bench.
//
// The flags follow a Level (level.go): generic, avx2, avx512, avx512bf16
// or amx, the highest the processor has unless the environment variable
// LORA_CPU names a lower one when the program starts. The package's tests run again at
// every level below the machine's (TestLevels), so each level this
// processor can take is tested on every run.
//
// An NF4 W: DequantizeNF4, and so Mat.widen, runs dequantNF4 on the whole
// 32s of a run from a multiple of 32 on (for Dequantize, the panels of
// panelProduct and panelGradX, the blocks of productNN) and nf4Value on
// the elements around them. Product runs gemv4NF4AVX512 or gemv4NF4
// through gemvFused at n ≤ nf4GemvRows() where W's rows are whole blocks,
// and otherwise panels of W dequantized into float32 and multiplied by
// gemv4F32 (panelGemvWins) or Sgemm.
//
// # Assembly
//
// The variants of each kernel family come from one macro skeleton per
// family in its .s file: GEMV4 (gemv_amd64.s) for gemv4F32, gemv4BF16 and
// gemv4F16; RANKROW (rankrow_amd64.s) for rankRowFMA, rankRowBF16,
// rankRowF16, rankRowFromBF16 and rankRowFromF16. Each kernel is its TEXT
// line and one instantiation of the skeleton with small macros for its
// element types: how a row of W or a term of a is loaded and widened, how
// dst is read, added to, rounded and stored. The NF4 kernels (nf4_amd64.s)
// are written out: dequantNF4 and gemv4NF4 around one macro, NF4LOOKUP
// (the values of 32 codes looked up by VPSHUFB in the table's four byte
// planes and unpacked into float32), gemv4NF4AVX512 around NF4ROWZ (16
// codes looked up by one VPERMPS in the whole table); the two
// matrix-vector kernels share their set-up, loop end and final sums.
// maxMag16 is one kernel, written out.
// Macros rather than a generator such as avo: the skeletons reproduce the
// previously measured instruction streams exactly (checked by diffing the
// disassembly of the kernels before and after), nothing generated has to
// be kept in step with a generator, and no tool beyond the Go assembler is
// needed. avo was not measured against them. go vet checks each TEXT
// line's argument size against the Go declaration, but not the argument
// offsets inside a macro; the kernel tests cover those.
//
// # Numerics
//
// Half-precision elements are widened exactly to float32; products and
// sums accumulate in float32; each element written is rounded once. A
// rank-r update accumulates its r terms from zero in k order and then adds
// them, so that the same update with the coefficients negated takes back
// bit for bit what it added, and each element's sum runs in the same order
// whatever the blocking and the split among goroutines. An NF4 element's
// value is NF4Table[code] · absmax, rounded once to float32 before it is
// used, in every kernel and loop alike: a scale is never taken out of a
// sum.
//
// # Tests
//
// Every kernel is tested on its own (kernels_test.go) and through its
// driver against float64 references, on every remainder of its loops, past
// its blocks, and with GOMAXPROCS raised so that every split among
// goroutines is uneven; with -tags purego the same tests run the portable
// forms.
package cpu
