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
 * lora_shrink(x, A, T, n, in, r, s)          T = s * x * A^T
 *   grid  (ceil(n / LORA_SHRINK_ROWS), ceil(r / LORA_SHRINK_KS), 1)
 *   block (LORA_SHRINK_THREADS, 1, 1), static shared 8448 bytes
 *   Not launched when r == 0 (the grid would be empty).
 *
 * lora_forward_small(x, W, T, B, y, n, in, out, r)   y = x * W^T + T * B^T
 *   for 1 <= n <= LORA_SMALL_N_MAX (larger n: the kernel writes nothing)
 *   grid  (ceil(out / LORA_SMALL_ROWS_PER_BLOCK), 1, 1)
 *   block (LORA_SMALL_THREADS, 1, 1), static shared 33792 bytes
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
 * lora_finite(p, count, flag)                 *flag = 1 if p holds NaN or Inf
 *   grid  (min(max(ceil(count / (LORA_FINITE_THREADS * LORA_FINITE_PER_THREAD)), 1),
 *              LORA_FINITE_MAX_BLOCKS), 1, 1)
 *   block (LORA_FINITE_THREADS, 1, 1), no shared memory
 *   The loop is grid-stride, so any gx >= 1 is correct; the formula is the
 *   recommended size.
 *
 * Grid limits: gx <= 2^31-1 and gy <= 65535, so ceil(r / LORA_SHRINK_KS), ceil(out / LORA_TILE_N)
 * and ceil(out / LORA_MERGE_TILE_OUT) must not exceed 65535.
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

/* lora_finite */
#define LORA_FINITE_THREADS 256
#define LORA_FINITE_PER_THREAD 16
#define LORA_FINITE_MAX_BLOCKS 1024

/* lora_axpy(y, x, count, alpha)              y += alpha * x
 *   grid  (min(ceil(count / LORA_AXPY_THREADS), LORA_AXPY_MAX_BLOCKS), 1, 1)
 *   block (LORA_AXPY_THREADS, 1, 1); grid-stride, so any gx >= 1 is correct. */
#define LORA_AXPY_THREADS 256
#define LORA_AXPY_MAX_BLOCKS 4096

#endif /* LORA_TILES_H */
