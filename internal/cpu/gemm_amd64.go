//go:build amd64 && !purego

package cpu

// packT32 sets dst[p·32+i] = src[i·ld+p] for i < 32 and p < kc, kc a
// positive multiple of 16: 32 rows of a float32 matrix packed as a panel of
// the packed product (packPanel's layout), by 16×16 transposes in registers
// (gemm_amd64.s). It needs AVX-512 (useGemm512).
//
//go:noescape
func packT32(dst, src *float32, kc, ld int)

// packT16 sets dst[p·16+i] = src[i·ld+p] for i < 16 and p < 16·k16,
// k16 ≥ 1, on 32-bit elements: 16 rows of x of BF16 patterns, each pair of
// columns one element, packed as a panel of the bf16 product
// (packXBF16's layout), by 16×16 transposes in registers. AVX-512.
//
//go:noescape
func packT16(dst, src *float32, k16, ld int)

// packT8 sets dst[p·8+i] = src[i·ld+p] for i < 8 and p < 8·k8, k8 ≥ 1:
// 8 rows of x packed as a panel of the packed product (packX's layout), by
// 8×8 transposes in registers. AVX2.
//
//go:noescape
func packT8(dst, src *float32, k8, ld int)

// packT6 sets dst[p·6+i] = src[i·ld+p] for i < 6 and p < 8·k8, k8 ≥ 1:
// six rows of x packed as a panel of the packed product's kernels of six
// rows (packX's layout), by 8×8 transposes in registers; nothing past
// dst[48·k8−1] written. AVX-512 (VL).
//
//go:noescape
func packT6(dst, src *float32, k8, ld int)

// packT32BF16 is packT32 for a bfloat16 src, each element widened exactly.
//
//go:noescape
func packT32BF16(dst *float32, src *uint16, kc, ld int)

// packT32F16 is packT32 for a float16 src, each element widened exactly.
//
//go:noescape
func packT32F16(dst *float32, src *uint16, kc, ld int)

// packN32 sets dst[p·32+i] = src[p·ld+i] for i < 32 and p < kc, kc ≥ 1:
// 32 columns of kc rows of a float32 matrix packed as a panel of the
// packed product (the columns of W for dx = dy·W).
//
//go:noescape
func packN32(dst, src *float32, kc, ld int)

// packN32BF16 is packN32 for a bfloat16 src, each element widened exactly.
//
//go:noescape
func packN32BF16(dst *float32, src *uint16, kc, ld int)

// packN32F16 is packN32 for a float16 src, each element widened exactly.
//
//go:noescape
func packN32F16(dst *float32, src *uint16, kc, ld int)

// prefetchRows asks for rows lines of bytes bytes each, stride bytes
// apart from p on, to be brought into the L2 cache (PREFETCHT1): a hint,
// which neither faults nor changes memory.
//
//go:noescape
func prefetchRows(p uintptr, rows, stride, bytes int)

// gemmKernelPF is gemmKernelAVX512 with b's steps ldb floats apart (32
// where b is packed) that also prefetches into L2 lines cache lines (at
// most k&^1; two in each of its first passes of two steps, then none: no
// test a step), those of the rows of rowBytes bytes, stride apart, from
// the address pf on: a part of the elements that the packed product packs
// next, fetched while the kernel computes.
//
//go:noescape
func gemmKernelPF(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb int)

// gemmKernel6x64 sets c[i·ldc+j] to Σₚ a[p·6+i]·b'ₚⱼ (plus its old value
// when acc ≠ 0) for i < 6, j < 64 and p < k, k ≥ 1, each sum accumulated
// in p order, as gemmKernelAVX512 forms it: a the packed panel of six rows
// of x, b'ₚⱼ = b[p·ldb+j] for j < 32 and b[b2/4 + p·ldb + j−32] beyond (two
// panels of W, b2 bytes apart). It prefetches as gemmKernelPF does. AVX-512.
//
//go:noescape
func gemmKernel6x64(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int)

// gemmKernel6x32 is gemmKernel6x64 on columns j < 32 alone (b2 unused).
//
//go:noescape
func gemmKernel6x32(k int, a, b, c *float32, ldc, acc int, pf uintptr, lines, rowBytes, stride, ldb, b2 int)

// gemmKernelW6x64 sets c[i·ldc+j] to Σₚ a[i·lda+p]·b'ₚⱼ (plus its old value
// when acc ≠ 0) for i < 6, j < 64 and p < k, k ≥ 1, each sum accumulated in
// p order: gemmKernel6x64 with a's six rows read where they lie (six rows
// of W, lda floats apart) and b' two packed panels (steps of 32 floats,
// the second panel b2 bytes on) of 64 rows of x. c is a block of yᵀ. AVX-512.
//
//go:noescape
func gemmKernelW6x64(k int, a *float32, lda int, b, c *float32, ldc, acc, b2 int)
