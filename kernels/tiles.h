/*
 * tiles.h: the launch constants shared by the CUDA kernels and the host code
 * that launches them (Go reads them through cgo as C.LORA_...). Plain C.
 *
 * Layout: row-major float32. W is out x in, A is r x in, B is out x r,
 * x is n x in, y is n x out, T is n x r. All kernels use static shared
 * memory only: the dynamic shared memory size of every launch is 0.
 * Grids are (gx, gy, 1), blocks are (bx, 1, 1). ceil(a/b) = (a + b - 1) / b.
 * Block sizes are exact: lora_shrink, lora_forward_small, lora_forward_tiled
 * and lora_merge return without writing anything when launched with another
 * blockDim.x.
 * Sizes n, in, out are >= 1 and r >= 0; element offsets are 64-bit, so W may
 * hold more than 2^31 elements.
 *
 * Half precision: the forward kernels' _f16 and _bf16 forms (lora.cu lists
 * them) have the geometry of their float32 forms. A 16-bit W is read in
 * 16-byte vectors of 8 elements when in % 8 == 0 and W is 16-byte aligned,
 * element by element otherwise.
 *
 * lora_shrink(x, A, T, n, in, r, s)          T = s * x * A^T
 *   grid  (ceil(n / LORA_SHRINK_ROWS), ceil(r / LORA_SHRINK_KS), 1)
 *   block (LORA_SHRINK_THREADS, 1, 1), static shared 8448 bytes
 *   Not launched when r == 0 (the grid would be empty).
 *
 * lora_forward_small(x, W, A, P, n, in, out, r)   P[z] = x * [W ; A]^T over split z
 *   for 1 <= n <= LORA_SMALL_N_MAX (larger n: the kernel writes nothing).
 *   V = [W ; A] is the (out + r) x in stack; the inner dimension is split in
 *   S = gridDim.y parts of chunk = ceil(ceil(in / S) / LORA_SMALL_SPLIT_ALIGN)
 *   * LORA_SMALL_SPLIT_ALIGN elements, split z writing P + z*n*(out + r)
 *   (n x (out + r), zeros for an empty split). r == 0 and S == 1: P is y.
 *   grid  (ceil(out / LORA_SMALL_ROWS_PER_BLOCK) + ceil(r / LORA_SMALL_ROWS_PER_BLOCK), S, 1):
 *   the first blocks take rows of W, the others rows of A
 *   block (LORA_SMALL_THREADS, 1, 1), static shared 33792 bytes
 *
 * lora_forward_m16, lora_forward_m32, lora_forward_m64(x, W, A, P, n, in, out, r)
 *   P[z] = x * [W ; A]^T as lora_forward_small, for any n, with BM x
 *   LORA_MT_N tiles (BM = 16, 32, 64) and the inner dimension in steps of
 *   LORA_MT_K: split z of S = gridDim.z takes K-steps [z*per, (z+1)*per),
 *   per = ceil(ceil(in / LORA_MT_K) / S).
 *   grid  (ceil(n / BM), ceil(out / LORA_MT_N) + ceil(r / LORA_MT_N), S): the
 *   first tiles along y take rows of W, the others rows of A
 *   block (LORA_MT_THREADS, 1, 1), static shared LORA_MT_K*(BM+1+LORA_MT_N+4)*4 bytes
 *
 * lora_forward_reduce(P, B, y, n, out, r, splits, s)
 *   y[i,j] = sum_z P[z][i,j] + s * sum_k (sum_z P[z][i,out+k]) * B[j,k],
 *   P[z] n x (out + r), splits summed in order z = 0, 1, ... (deterministic);
 *   r == 0 (B may be null): the sum of the splits alone.
 *   grid  (ceil(out / LORA_RED_THREADS), min(n, 65535), 1); rows i stride by gridDim.y
 *   block (LORA_RED_THREADS, 1, 1), static shared LORA_RED_THREADS*4 bytes
 *
 * lora_forward_tiled(x, W, T, B, y, n, in, out, r)   y = x * W^T + T * B^T
 *   any n >= 1
 *   grid  (ceil(n / LORA_TILE_M), ceil(out / LORA_TILE_N), 1)
 *   block (LORA_TILE_THREADS, 1, 1), static shared 16896 bytes
 *
 *   Both forward kernels accept r == 0 with T and B null: y = x * W^T.
 *
 * lora_merge(W, A, B, out, in, r, c)          W += c * B * A
 *   grid  (ceil(in / LORA_MERGE_TILE_IN), ceil(out / LORA_MERGE_TILE_OUT), 1)
 *   block (LORA_MERGE_THREADS, 1, 1), static shared 20608 bytes
 *
 * lora_absmax(p, count, out)                  *out = max(*out, bits of max |p[i]|)
 *   grid  (min(max(ceil(count / (LORA_FINITE_THREADS * LORA_FINITE_PER_THREAD)), 1),
 *              LORA_FINITE_MAX_BLOCKS), 1, 1)
 *   The loop is grid-stride, so any gx >= 1 is correct; the formula is the
 *   recommended size.
 *   block (LORA_FINITE_THREADS, 1, 1) exactly
 *   (another blockDim.x writes nothing), static shared 32 bytes.
 *   The host zeroes *out (an unsigned) before the launch and reads it as the
 *   bits of a float: max |p[i]|, +Inf when p holds an infinity and no NaN,
 *   a NaN when p holds a NaN.
 *
 * lora_merge_check(W, A, B, out, in, r, c, flag)
 *                                             *flag = 1 if W + c * B * A, as
 *                                             lora_merge would write it, holds
 *                                             NaN or Inf; W is only read
 *   grid, block and shared memory as lora_merge. The host zeroes *flag.
 *
 * lora_convert_<s>_<d>(src, dst, count)     dst[i] = src[i] rounded to dst's type
 *   s, d: f32, f16, bf16 (nine kernels).
 *   grid  (min(max(ceil(count / (8 * LORA_CONVERT_THREADS)), 1), LORA_CONVERT_MAX_BLOCKS), 1, 1)
 *   block (LORA_CONVERT_THREADS, 1, 1), no shared memory; grid-stride, so any
 *   grid is correct.
 *
 * lora_add_bias(y, bias, rows, cols)          y[i, j] += bias[j]
 *   grid  (gx, gy, 1) with u = cols / 4 when cols % 4 == 0 (float4 path) and
 *         u = cols otherwise, gx = min(ceil(u / LORA_BIAS_THREADS), LORA_BIAS_BLOCKS),
 *         gy = min(rows, max(LORA_BIAS_BLOCKS / gx, 1), 65535)
 *   block (LORA_BIAS_THREADS, 1, 1), no shared memory. Both loops are
 *   grid-stride (columns over x, rows over y), so any grid is correct.
 *
 * Training (backward.cu, backward_small.cu, backward_tiled.cu, optim.cu, mse.cu).
 * dy is n x out, dx is n x in, dA is r x in, dB is out x r; the backward pass
 * runs lora_shrink with scale s for T = s * x * A^T, then:
 *
 * lora_grad_u(dy, B, U, n, out, r, s)        U = s * dy * B   (n x r)
 *   grid  (ceil(n / LORA_GRADU_ROWS), ceil(r / LORA_GRADU_KS), 1)
 *   block (LORA_GRADU_THREADS, 1, 1), static shared 8448 bytes
 *
 * lora_grad_ab(G, H, C, n, p, r, trans)      C = G^T * H, G n x p, H n x r
 *   C is p x r when trans == 0 (dB = dy^T * T) and r x p otherwise
 *   (dA = U^T * x).
 *   grid  (ceil(p / LORA_GRADAB_TP), ceil(r / LORA_GRADAB_TR), 1)
 *   block (LORA_GRADAB_THREADS, 1, 1), static shared 6144 bytes
 *
 * lora_grad_x_small(dy, W, U, A, P, n, in, out, r)   P[z] = [dy | U] * [W ; A] over split z
 *   for 1 <= n <= LORA_SMALL_N_MAX (larger n: the kernel writes nothing).
 *   The out + r rows of [W ; A] are split in S = gridDim.y parts of
 *   ceil((out + r) / S) rows, split z writing P + z*n*in (n x in, zeros for
 *   an empty split); S == 1: P is dx. lora_forward_reduce(P, null, dx, n, in,
 *   0, S, 0) sums the splits.
 *   grid  (ceil(in / LORA_GXS_COLS), S, 1)
 *   block (LORA_GXS_THREADS, 1, 1), static shared 34816 bytes
 *
 * An NF4 W (nf4.cu): its codes W, then its float32 absmax, blocks of
 * `block` elements (a power of two; any other block: the kernels write
 * nothing).
 * lora_forward_small_nf4(x, W, absmax, A, P, n, in, out, r, block)
 *   P[z] = x * [W ; A]^T as lora_forward_small, for any n >= 1: the grid's z
 *   takes rows z*LORA_SMALL_N_MAX .. of x (of P).
 *   grid  (as lora_forward_small, S, ceil(n / LORA_SMALL_N_MAX))
 *   block (LORA_SMALL_THREADS, 1, 1), static shared 33856 bytes
 * lora_grad_x_small_nf4(dy, W, absmax, U, A, P, n, in, out, r, block)
 *   P[z] = [dy | U] * [W ; A] as lora_grad_x_small, for any n >= 1: the
 *   grid's z takes rows z*LORA_SMALL_N_MAX .. of dy (of P).
 *   grid  (ceil(in / LORA_GXS_COLS), S, ceil(n / LORA_SMALL_N_MAX))
 *   block (LORA_GXS_THREADS, 1, 1), static shared 34880 bytes
 * lora_dequantize_nf4_<d>(codes, absmax, dst, count, block)   d: f32, f16, bf16
 *   grid  (any, 1, 1), block (LORA_CONVERT_THREADS, 1, 1), grid-stride
 * lora_forward_m16_nf4, _m32_, _m64_(x, W, absmax, A, P, n, in, out, r, block)
 *   as lora_forward_m16, _m32, _m64; block >= 8 (else nothing written);
 *   static shared memory as theirs plus 64 bytes
 * lora_forward_tiled_nf4(x, W, absmax, T, B, y, n, in, out, r, block)
 *   as lora_forward_tiled; static shared 16960 bytes
 * lora_grad_x_tiled_nf4(dy, W, absmax, U, A, dx, n, in, out, r, block)
 *   as lora_grad_x_tiled; static shared 16960 bytes
 *
 * lora_grad_x_tiled(dy, W, U, A, dx, n, in, out, r)   dx = dy * W + U * A
 *   any n >= 1
 *   grid  (ceil(n / LORA_TILE_M), ceil(in / LORA_TILE_N), 1)
 *   block (LORA_TILE_THREADS, 1, 1), static shared 16896 bytes
 *
 * lora_grad_x_m16, _m32, _m64(dy, W, U, A, P, n, in, out, r), and their
 *   _f16 and _bf16 forms                 P[z] = the split z of [dy | U] * [W ; A]
 *   17 <= n (any n >= 1 is correct): BM x LORA_MT_N tiles of P (BM = 16, 32,
 *   64), the inner dimension out + r in K-steps of LORA_MT_K, ceil(out /
 *   LORA_MT_K) of dy/W then ceil(r / LORA_MT_K) of U/A: split z of S =
 *   gridDim.z takes steps [z*per, (z+1)*per), per = ceil(steps / S). With
 *   S == 1, P is dx; otherwise lora_forward_reduce(P, null, dx, n, in, 0, S,
 *   0) sums the splits.
 *   grid  (ceil(n / BM), ceil(in / LORA_MT_N), S)
 *   block (LORA_MT_THREADS, 1, 1), static shared LORA_MT_K*(BM+1+LORA_MT_N+4)*4 bytes
 *
 *   The dx kernels accept r == 0 with U and A null: dx = dy * W (a merged
 *   layer).
 *
 * lora_adamw(A, B, dA, dB, state, countA, countB, decay, step, inv_sqrt_bc2,
 *            eps, beta1, beta2)              one AdamW step over A and B
 * lora_sgd(A, B, dA, dB, buf, countA, countB, lr, momentum)
 *                                            one SGD step over A and B
 *   grid  (min(ceil((countA + countB) / LORA_OPT_THREADS), LORA_OPT_MAX_BLOCKS), 1, 1)
 *   block (LORA_OPT_THREADS, 1, 1), no shared memory; grid-stride, so any
 *   gx >= 1 is correct.
 *
 * lora_mse(y, t, dy, count, scale, partial)  dy = scale * (y - t) unless dy
 *                                            is null; partial[b] = the sum of
 *                                            (y - t)^2 over block b's elements
 *   grid  (min(max(ceil(count / (LORA_MSE_THREADS * LORA_MSE_PER_THREAD)), 1),
 *              LORA_MSE_MAX_BLOCKS), 1, 1)
 *   block (LORA_MSE_THREADS, 1, 1), static shared 32 bytes; grid-stride.
 *   The host sums partial[0 .. gx).
 *
 * lora_grad_u, lora_grad_ab, lora_grad_x_small, lora_grad_x_tiled and
 * lora_mse, like the forward kernels, return without writing anything when
 * launched with another blockDim.x.
 *
 * Grid limits: gx <= 2^31-1 and gy <= 65535, so ceil(r / LORA_SHRINK_KS), ceil(out / LORA_TILE_N),
 * ceil(out / LORA_MERGE_TILE_OUT), ceil(r / LORA_GRADU_KS), ceil(r / LORA_GRADAB_TR)
 * and ceil(in / LORA_TILE_N) must not exceed 65535.
 */
#ifndef LORA_TILES_H
#define LORA_TILES_H

#define LORA_WARP_SIZE 32

/* lora_shrink: each block computes a LORA_SHRINK_ROWS x LORA_SHRINK_KS tile
 * of T; each warp owns one column k of the tile. */
#define LORA_SHRINK_THREADS 256
#define LORA_SHRINK_ROWS 8
#define LORA_SHRINK_KS 8 /* = LORA_SHRINK_THREADS / LORA_WARP_SIZE */

/* lora_forward_small: each warp computes LORA_SMALL_ROWS_PER_WARP columns of
 * y (rows of W) for all n <= LORA_SMALL_N_MAX rows of x. */
#define LORA_SMALL_N_MAX 16
#define LORA_SMALL_THREADS 128
#define LORA_SMALL_WARPS 4 /* = LORA_SMALL_THREADS / LORA_WARP_SIZE */
#define LORA_SMALL_ROWS_PER_WARP 4
#define LORA_SMALL_ROWS_PER_BLOCK 16 /* = LORA_SMALL_WARPS * LORA_SMALL_ROWS_PER_WARP */
#define LORA_SMALL_SPLIT_ALIGN 128 /* a split of the inner dimension is a multiple of this */

/* lora_forward_m16/m32/m64: BM x LORA_MT_N tiles of P, K in steps of LORA_MT_K. */
#define LORA_MT_N 128
#define LORA_MT_K 32
#define LORA_MT_THREADS 256

/* lora_forward_reduce: one column of y per thread. */
#define LORA_RED_THREADS 128

/* lora_forward_tiled: a LORA_TILE_M x LORA_TILE_N tile of y per block, a
 * LORA_TILE_TM x LORA_TILE_TN register tile per thread, K in steps of
 * LORA_TILE_K. LORA_TILE_THREADS == (TILE_M/TILE_TM) * (TILE_N/TILE_TN). */
#define LORA_TILE_M 128
#define LORA_TILE_N 128
#define LORA_TILE_K 8
#define LORA_TILE_TM 8
#define LORA_TILE_TN 8
#define LORA_TILE_THREADS 256

/* lora_merge: a LORA_MERGE_TILE_OUT x LORA_MERGE_TILE_IN tile of W per block,
 * r staged through shared memory LORA_MERGE_R_CHUNK at a time. */
#define LORA_MERGE_TILE_OUT 32
#define LORA_MERGE_TILE_IN 128
#define LORA_MERGE_R_CHUNK 32
#define LORA_MERGE_THREADS 256

/* lora_absmax */
#define LORA_FINITE_THREADS 256
#define LORA_FINITE_PER_THREAD 16
#define LORA_FINITE_MAX_BLOCKS 1024

/* lora_add_bias: LORA_BIAS_BLOCKS is the grid's target size in blocks (a few
 * waves on the largest GPUs) and the cap of gx. */
#define LORA_BIAS_THREADS 256
#define LORA_BIAS_BLOCKS 1024

/* lora_axpy(y, x, count, alpha)              y += alpha * x
 *   grid  (min(ceil(count / LORA_AXPY_THREADS), LORA_AXPY_MAX_BLOCKS), 1, 1)
 *   block (LORA_AXPY_THREADS, 1, 1); grid-stride, so any gx >= 1 is correct. */
#define LORA_AXPY_THREADS 256
#define LORA_AXPY_MAX_BLOCKS 4096

/* lora_grad_u: each block computes a LORA_GRADU_ROWS x LORA_GRADU_KS tile
 * of U; each warp owns one column k of the tile. */
#define LORA_GRADU_THREADS 256
#define LORA_GRADU_ROWS 8
#define LORA_GRADU_KS 8 /* = LORA_GRADU_THREADS / LORA_WARP_SIZE */

/* lora_grad_ab: each block computes LORA_GRADAB_TP rows p of G^T * H for
 * LORA_GRADAB_TR columns k, the reduction over n staged through shared
 * memory LORA_GRADAB_TN rows at a time. Thread t owns row t % LORA_GRADAB_TP
 * and LORA_GRADAB_TR / (LORA_GRADAB_THREADS / LORA_GRADAB_TP) columns. */
#define LORA_GRADAB_THREADS 128
#define LORA_GRADAB_TP 32
#define LORA_GRADAB_TR 16
#define LORA_GRADAB_TN 32

/* lora_grad_x_small: each block computes LORA_GXS_COLS columns of dx, four
 * per lane (float4); its LORA_GXS_WARPS warps split the rows of W (and A),
 * LORA_GXS_ROWS rows at a time. */
#define LORA_GXS_THREADS 256
#define LORA_GXS_WARPS 8 /* = LORA_GXS_THREADS / LORA_WARP_SIZE */
#define LORA_GXS_COLS 128 /* = 4 * LORA_WARP_SIZE */
#define LORA_GXS_ROWS 4

/* lora_convert: 8 elements per thread per step, grid-stride. */
#define LORA_CONVERT_THREADS 256
#define LORA_CONVERT_MAX_BLOCKS 4096

/* lora_adamw, lora_sgd */
#define LORA_OPT_THREADS 256
#define LORA_OPT_MAX_BLOCKS 4096

/* lora_mse */
#define LORA_MSE_THREADS 256
#define LORA_MSE_PER_THREAD 16
#define LORA_MSE_MAX_BLOCKS 64

/* lora_bank_shrink, lora_bank_expand, lora_bank_small, lora_bank_rowshrink,
 * lora_bank_rowexpand (bank.cu): tiles of at most LORA_BANK_ROWS rows of one adapter;
 * lora_bank_shrink and lora_bank_rowshrink one warp per column of T, lora_bank_expand
 * and lora_bank_rowexpand one column of y per thread, lora_bank_small as lora_forward_small
 * for n <= LORA_BANK_N_MAX with each row's adapter gathered. */
#define LORA_BANK_ROWS 8
#define LORA_BANK_SHRINK_THREADS 256
#define LORA_BANK_SHRINK_KS 8 /* = LORA_BANK_SHRINK_THREADS / LORA_WARP_SIZE */
#define LORA_BANK_EXPAND_THREADS 128
#define LORA_BANK_N_MAX 16
#define LORA_BANK_SMALL_THREADS 128
#define LORA_BANK_SMALL_WARPS 4 /* = LORA_BANK_SMALL_THREADS / LORA_WARP_SIZE */
#define LORA_BANK_SMALL_ROWS_PER_WARP 4
#define LORA_BANK_SMALL_ROWS_PER_BLOCK 16 /* = LORA_BANK_SMALL_WARPS * LORA_BANK_SMALL_ROWS_PER_WARP */

#endif /* LORA_TILES_H */
