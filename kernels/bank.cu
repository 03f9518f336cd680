// bank.cu: a Bank of adapters over one base weight, each row of x with its own.
//
// For every row i of x (n x in), with k = ids[i] and slot k holding A_k (r_k x in),
// B_k (out x r_k) and the scale s_k:
//
//   y[i,:] = x[i,:] * W^T + s_k * (x[i,:] * A_k^T) * B_k^T,   or x[i,:] * W^T when k == -1.
//
// The slots are a device table of LoraBankSlot (A, B, r, s), one per slot of the
// Bank; a free slot is never named by the rows given to these kernels. For
// prefill the host sorts the rows by adapter (a stable counting sort) into perm, and cuts each
// adapter's run of perm into tiles of at most LORA_BANK_ROWS rows: tile t is the
// three ints tiles[3t..3t+2] = (p0, count, k), the rows perm[p0 .. p0+count-1],
// all with adapter k. Rows with id -1 are in no tile.
//
//   lora_bank_shrink   T[i, 0:r_k] = s_k * x[i,:] * A_k^T for the rows of every tile:
//                      the segmented shrink; each block reads its adapter's rows of A
//                      once for all the tile's rows. T is n x rmax, row stride rmax.
//   lora_bank_rowshrink n <= LORA_BANK_N_MAX (decode): T[i, 0:r_k] = s_k * x[i,:] * A_k^T
//                      for every row with an adapter, one row per block, each row
//                      gathering its own A_k (BGMV's shrink).
//   lora_bank_small    n <= LORA_BANK_N_MAX (decode), BGMV-style: y = x * W^T with W
//                      streamed once for the whole batch, each row's adapter term
//                      sum_k T[i,k] * B_{ids[i]}[j,k] gathered and added before y is
//                      written, once.
//   lora_bank_expand   larger n (prefill), after the base product x * W^T into y by
//                      the forward kernels: y[i,:] += T[i, 0:r_k] * B_k^T for the
//                      rows of every tile, the segmented expand.
//   lora_bank_rowexpand n <= LORA_BANK_N_MAX (decode) over a W that is not float32,
//                      after the base product x * W^T into y by the forward kernels of
//                      W's dtype: y[i,j] += sum_k T[i,k] * B_{ids[i]}[j,k] for every row
//                      with an adapter, each row gathering its own B_k (BGMV's expand).
//                      It reads and writes y once more (n x out floats) where
//                      lora_bank_small writes it once; beside the bytes of W that the
//                      base product streams (out x in halves, or 4.5 bits an element
//                      for NF4) that is small for every in past a few dozen.
//
// The decode kernels take the ids in their parameters, so that a decode step needs
// no copy from the host: ids[i] + 1 in 21 bits, three to a 64-bit word, words
// p0 .. p5 (LORA_BANK_N_MAX = 16 ids; 0 stands for -1, no adapter).
//
// Global memory: x, W read; A_k and B_k read for the adapters present; T (n x rmax)
// written by lora_bank_shrink or lora_bank_rowshrink, read by the others; y written once by
// lora_bank_small, read and written once by lora_bank_expand and lora_bank_rowexpand. Shared memory: static,
// lora_bank_small only (LORA_BANK_SMALL_WARPS * LORA_BANK_N_MAX *
// LORA_BANK_SMALL_ROWS_PER_WARP * 33 floats). fp32 accumulation throughout.
#include "common.cuh"

// One slot of a Bank's device table: 24 bytes, the layout the Go side writes.
struct LoraBankSlot {
  const float* A;  // r x in
  const float* B;  // out x r
  int r;           // rank; 0 for a free slot
  float s;         // scale
};
static_assert(sizeof(LoraBankSlot) == 24, "LoraBankSlot is three 8-byte words");

static_assert(LORA_BANK_SHRINK_KS * LORA_WARP_SIZE == LORA_BANK_SHRINK_THREADS,
              "lora_bank_shrink: one warp per column of T");
static_assert(LORA_BANK_SMALL_WARPS * LORA_WARP_SIZE == LORA_BANK_SMALL_THREADS &&
                  LORA_BANK_SMALL_ROWS_PER_BLOCK ==
                      LORA_BANK_SMALL_WARPS * LORA_BANK_SMALL_ROWS_PER_WARP,
              "lora_bank_small: warps and rows per block");

// grid (ntiles, ceil(rmax / LORA_BANK_SHRINK_KS)), block LORA_BANK_SHRINK_THREADS.
// Warp w of block (t, by) computes column k = by*LORA_BANK_SHRINK_KS + w of T for
// the rows of tile t, when k < r of the tile's adapter; its lanes stride along in.
extern "C" __global__ void __launch_bounds__(LORA_BANK_SHRINK_THREADS)
    lora_bank_shrink(const float* __restrict__ x, const LoraBankSlot* __restrict__ slots,
                     const int* __restrict__ tiles, const int* __restrict__ perm,
                     float* __restrict__ T, int ntiles, int in, int rmax) {
  if (blockDim.x != LORA_BANK_SHRINK_THREADS) return;
  const int t = blockIdx.x;
  if (t >= ntiles) return;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int p0 = tiles[3 * t], count = tiles[3 * t + 1], id = tiles[3 * t + 2];
  const LoraBankSlot slot = slots[id];
  const int k = blockIdx.y * LORA_BANK_SHRINK_KS + warp;
  if (k >= slot.r || k >= rmax || count < 1 || count > LORA_BANK_ROWS) return;  // whole warp

  const float* xr[LORA_BANK_ROWS];
  LORA_UNROLL
  for (int q = 0; q < LORA_BANK_ROWS; ++q)
    xr[q] = x + static_cast<long long>(perm[p0 + lora_min(q, count - 1)]) * in;
  const float* a = slot.A + static_cast<long long>(k) * in;

  float acc[LORA_BANK_ROWS];
  LORA_UNROLL
  for (int q = 0; q < LORA_BANK_ROWS; ++q) acc[q] = 0.0f;
  for (int c = lane; c < in; c += LORA_WARP_SIZE) {
    const float av = __ldg(a + c);
    LORA_UNROLL
    for (int q = 0; q < LORA_BANK_ROWS; ++q) acc[q] = fmaf(__ldg(xr[q] + c), av, acc[q]);
  }
  LORA_UNROLL
  for (int q = 0; q < LORA_BANK_ROWS; ++q) {
    const float sum = lora_warp_sum(acc[q]);
    if (lane == 0 && q < count) T[static_cast<long long>(perm[p0 + q]) * rmax + k] = slot.s * sum;
  }
}

// The id of row i < 16 from the packed words p[0..5]: -1 for none.
__device__ __forceinline__ int lora_bank_id(const unsigned long long (&p)[6], int i) {
  const int w = i / 3;
  unsigned long long v = p[0];
  LORA_UNROLL
  for (int q = 1; q < 6; ++q) v = w == q ? p[q] : v;  // constant indices: registers, not local memory
  return static_cast<int>((v >> (21 * (i % 3))) & 0x1fffffull) - 1;
}

#define LORA_BANK_PACKED unsigned long long p0, unsigned long long p1, unsigned long long p2, \
                         unsigned long long p3, unsigned long long p4, unsigned long long p5

// grid (n, ceil(rmax / LORA_BANK_SHRINK_KS)), block LORA_BANK_SHRINK_THREADS, n <= 16.
// Warp w of block (i, by) computes T[i, k], k = by*LORA_BANK_SHRINK_KS + w, when row i
// has an adapter and k < its rank; its lanes stride along in.
extern "C" __global__ void __launch_bounds__(LORA_BANK_SHRINK_THREADS)
    lora_bank_rowshrink(const float* __restrict__ x, const LoraBankSlot* __restrict__ slots,
                          float* __restrict__ T, int n, int in, int rmax, LORA_BANK_PACKED) {
  if (blockDim.x != LORA_BANK_SHRINK_THREADS) return;
  const int i = blockIdx.x;
  if (i >= n || n > LORA_BANK_N_MAX) return;
  const unsigned long long p[6] = {p0, p1, p2, p3, p4, p5};
  const int id = lora_bank_id(p, i);
  if (id < 0) return;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const LoraBankSlot slot = slots[id];
  const int k = blockIdx.y * LORA_BANK_SHRINK_KS + warp;
  if (k >= slot.r || k >= rmax) return;  // the whole warp leaves together
  const float* xr = x + static_cast<long long>(i) * in;
  const float* a = slot.A + static_cast<long long>(k) * in;
  float acc = 0.0f;
  for (int c = lane; c < in; c += LORA_WARP_SIZE) acc = fmaf(__ldg(xr + c), __ldg(a + c), acc);
  const float sum = lora_warp_sum(acc);
  if (lane == 0) T[static_cast<long long>(i) * rmax + k] = slot.s * sum;
}

// grid (ntiles, ceil(out / LORA_BANK_EXPAND_THREADS)), block LORA_BANK_EXPAND_THREADS.
// Thread j of block (t, by) adds, for column j = by*LORA_BANK_EXPAND_THREADS + j of y
// and every row i of tile t, sum_k T[i,k] * B[j,k] to y[i,j]. Each element of y is
// in exactly one tile, so no two threads touch it.
extern "C" __global__ void __launch_bounds__(LORA_BANK_EXPAND_THREADS)
    lora_bank_expand(const float* __restrict__ T, const LoraBankSlot* __restrict__ slots,
                     const int* __restrict__ tiles, const int* __restrict__ perm,
                     float* __restrict__ y, int ntiles, int out, int rmax) {
  if (blockDim.x != LORA_BANK_EXPAND_THREADS) return;
  const int t = blockIdx.x;
  const int j = blockIdx.y * LORA_BANK_EXPAND_THREADS + threadIdx.x;
  if (t >= ntiles || j >= out) return;
  const int p0 = tiles[3 * t], count = tiles[3 * t + 1], id = tiles[3 * t + 2];
  const LoraBankSlot slot = slots[id];
  const int r = lora_min(slot.r, rmax);
  const float* b = slot.B + static_cast<long long>(j) * r;
  for (int q = 0; q < lora_min(count, LORA_BANK_ROWS); ++q) {
    const long long i = perm[p0 + q];
    const float* tr = T + i * rmax;
    float acc = 0.0f;
    for (int k = 0; k < r; ++k) acc = fmaf(__ldg(tr + k), __ldg(b + k), acc);
    y[i * out + j] += acc;
  }
}

// grid (ceil(out / LORA_BANK_EXPAND_THREADS), n), block LORA_BANK_EXPAND_THREADS,
// n <= LORA_BANK_N_MAX; T from lora_bank_rowshrink. Thread j of block (bx, i) adds
// sum_k T[i,k] * B_id[j,k] to y[i,j], j = bx*LORA_BANK_EXPAND_THREADS + j, id = ids[i];
// rows without an adapter are left as they are. Each element of y has one thread.
extern "C" __global__ void __launch_bounds__(LORA_BANK_EXPAND_THREADS)
    lora_bank_rowexpand(const float* __restrict__ T, const LoraBankSlot* __restrict__ slots,
                        float* __restrict__ y, int n, int out, int rmax, LORA_BANK_PACKED) {
  if (blockDim.x != LORA_BANK_EXPAND_THREADS) return;
  const int i = blockIdx.y;
  const long long j = static_cast<long long>(blockIdx.x) * LORA_BANK_EXPAND_THREADS + threadIdx.x;
  if (i >= n || n > LORA_BANK_N_MAX || j >= out) return;
  const unsigned long long p[6] = {p0, p1, p2, p3, p4, p5};
  const int id = lora_bank_id(p, i);
  if (id < 0) return;
  const LoraBankSlot slot = slots[id];
  const int r = lora_min(slot.r, rmax);
  const float* b = slot.B + j * r;
  const float* tr = T + static_cast<long long>(i) * rmax;
  float acc = 0.0f;
  for (int k = 0; k < r; ++k) acc = fmaf(__ldg(tr + k), __ldg(b + k), acc);
  y[static_cast<long long>(i) * out + j] += acc;
}

__device__ __forceinline__ float lora_bank_fma(float4 x, float4 w, float acc) {
  return lora_dot4(x, w, acc);
}
__device__ __forceinline__ float lora_bank_fma(float x, float w, float acc) { return fmaf(x, w, acc); }

// acc[i][q] += sum_c x[i,c] * W[j0+q,c] over len V elements per row (V float4 or
// float); rows i >= n and j0+q >= out are clamped, their sums discarded.
template <int NB, class V>
__device__ __forceinline__ void lora_bank_base(const V* __restrict__ x, const V* __restrict__ W,
                                               int len, int n, int j0, int out, int lane,
                                               float (&acc)[NB][LORA_BANK_SMALL_ROWS_PER_WARP]) {
  const V* xr[NB];
  const V* wr[LORA_BANK_SMALL_ROWS_PER_WARP];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) xr[i] = x + static_cast<long long>(lora_min(i, n - 1)) * len;
  LORA_UNROLL
  for (int q = 0; q < LORA_BANK_SMALL_ROWS_PER_WARP; ++q)
    wr[q] = W + static_cast<long long>(lora_min(j0 + q, out - 1)) * len;
  LORA_NO_UNROLL
  for (int c = lane; c < len; c += LORA_WARP_SIZE) {
    V w[LORA_BANK_SMALL_ROWS_PER_WARP];
    LORA_UNROLL
    for (int q = 0; q < LORA_BANK_SMALL_ROWS_PER_WARP; ++q) w[q] = __ldcs(wr[q] + c);
    LORA_UNROLL
    for (int i = 0; i < NB; ++i) {
      const V xv = __ldg(xr[i] + c);
      LORA_UNROLL
      for (int q = 0; q < LORA_BANK_SMALL_ROWS_PER_WARP; ++q)
        acc[i][q] = lora_bank_fma(xv, w[q], acc[i][q]);
    }
  }
}

// The whole warp's work for NB >= n rows: columns j0 .. j0+ROWS_PER_WARP-1 of y.
template <int NB>
__device__ __forceinline__ void lora_bank_small_warp(
    const float* __restrict__ x, const float* __restrict__ W, const float* __restrict__ T,
    const LoraBankSlot* __restrict__ slots, const unsigned long long (&ids)[6],
    float* __restrict__ y, int n, int in, int out, int rmax, int j0, int lane,
    float (*part)[LORA_WARP_SIZE + 1]) {
  constexpr int R = LORA_BANK_SMALL_ROWS_PER_WARP;
  float acc[NB][R];
  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < R; ++q) acc[i][q] = 0.0f;
  }
  if ((in & 3) == 0 && lora_aligned16(x) && lora_aligned16(W))
    lora_bank_base<NB>(reinterpret_cast<const float4*>(x), reinterpret_cast<const float4*>(W),
                       in >> 2, n, j0, out, lane, acc);
  else
    lora_bank_base<NB>(x, W, in, n, j0, out, lane, acc);

  LORA_UNROLL
  for (int i = 0; i < NB; ++i) {
    LORA_UNROLL
    for (int q = 0; q < R; ++q) part[i * R + q][lane] = acc[i][q];
  }
  __syncwarp();

  for (int v = lane; v < NB * R; v += LORA_WARP_SIZE) {
    const int i = v / R;
    const int j = j0 + v % R;
    if (i < n && j < out) {
      float sum = 0.0f;
      LORA_UNROLL
      for (int l = 0; l < LORA_WARP_SIZE; ++l) sum += part[v][l];
      const int id = lora_bank_id(ids, i);
      if (id >= 0) {  // the row's own adapter, gathered: sum_k T[i,k] * B_id[j,k]
        const LoraBankSlot slot = slots[id];
        const int r = lora_min(slot.r, rmax);
        const float* b = slot.B + static_cast<long long>(j) * r;
        const float* tr = T + static_cast<long long>(i) * rmax;
        for (int k = 0; k < r; ++k) sum = fmaf(__ldg(tr + k), __ldg(b + k), sum);
      }
      y[static_cast<long long>(i) * out + j] = sum;
    }
  }
}

// grid (ceil(out / LORA_BANK_SMALL_ROWS_PER_BLOCK)), block LORA_BANK_SMALL_THREADS;
// 1 <= n <= LORA_BANK_N_MAX (otherwise the kernel writes nothing); T from
// lora_bank_rowshrink.
extern "C" __global__ void __launch_bounds__(LORA_BANK_SMALL_THREADS)
    lora_bank_small(const float* __restrict__ x, const float* __restrict__ W,
                    const float* __restrict__ T, const LoraBankSlot* __restrict__ slots,
                    float* __restrict__ y, int n, int in, int out, int rmax, LORA_BANK_PACKED) {
  __shared__ float part[LORA_BANK_SMALL_WARPS][LORA_BANK_N_MAX * LORA_BANK_SMALL_ROWS_PER_WARP]
                       [LORA_WARP_SIZE + 1];
  if (blockDim.x != LORA_BANK_SMALL_THREADS) return;
  if (n < 1 || n > LORA_BANK_N_MAX) return;
  const int lane = threadIdx.x % LORA_WARP_SIZE;
  const int warp = threadIdx.x / LORA_WARP_SIZE;
  const int j0 = blockIdx.x * LORA_BANK_SMALL_ROWS_PER_BLOCK + warp * LORA_BANK_SMALL_ROWS_PER_WARP;
  if (j0 >= out) return;  // the whole warp leaves together

  const unsigned long long ids[6] = {p0, p1, p2, p3, p4, p5};
  float(*p)[LORA_WARP_SIZE + 1] = part[warp];
  if (n == 1)
    lora_bank_small_warp<1>(x, W, T, slots, ids, y, n, in, out, rmax, j0, lane, p);
  else if (n <= 2)
    lora_bank_small_warp<2>(x, W, T, slots, ids, y, n, in, out, rmax, j0, lane, p);
  else if (n <= 4)
    lora_bank_small_warp<4>(x, W, T, slots, ids, y, n, in, out, rmax, j0, lane, p);
  else if (n <= 8)
    lora_bank_small_warp<8>(x, W, T, slots, ids, y, n, in, out, rmax, j0, lane, p);
  else
    lora_bank_small_warp<16>(x, W, T, slots, ids, y, n, in, out, rmax, j0, lane, p);
}

static_assert(LORA_BANK_N_MAX == 16, "lora_bank_small dispatches n to 1, 2, 4, 8, 16; six words of three ids");

#undef LORA_BANK_PACKED

#ifndef __CUDACC__
LORA_EMU_REGISTER(lora_bank_shrink)
LORA_EMU_REGISTER(lora_bank_rowshrink)
LORA_EMU_REGISTER(lora_bank_expand)
LORA_EMU_REGISTER(lora_bank_small)
LORA_EMU_REGISTER(lora_bank_rowexpand)
#endif
