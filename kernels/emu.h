// emu.h: the CUDA thread model on the CPU, so that the kernels in this
// directory compile with a C++20 compiler (g++ -std=c++20 -pthread) and run
// unchanged.
//
// Model:
//   - Launches are queued to one worker thread and run in order, as on one
//     CUDA stream: lora_emu_launch checks its arguments and returns at once;
//     a fault inside a kernel is reported by the next lora_emu_sync (or
//     lora_emu_poll), and every later launch is dropped.
//   - A launch runs its blocks one after another, in a random order drawn
//     from a seed (LORA_EMU_SEED, or one drawn per process), so that code
//     that depends on the order of blocks shows.
//   - The threads of a block are fibers (user-level contexts, each with its
//     own stack) run by the worker thread: a thread runs until it reaches
//     __syncthreads, a warp collective or its end, then the next runnable
//     thread runs. Fibers are created once and reused by every block of
//     every launch, so a launch costs a few microseconds.
//   - __syncthreads releases the threads when every thread that has not
//     returned has reached it (__syncthreads_count/_or/_and count votes).
//     Warp collectives (shuffles, votes, __syncwarp) honour their mask: they
//     complete when every lane of the mask has reached the same collective
//     with the same mask. A mask that names a lane which has returned, does
//     not exist, or waits elsewhere (at __syncthreads, in a collective with
//     another mask), a calling lane missing from its own mask, or a shuffle
//     that reads a lane outside the mask is a fault, as it is undefined on a
//     GPU.
//   - __shared__ is `static`, in a section of its own (blocks never overlap,
//     so a function-local static is exactly one block's shared memory);
//     dynamic shared memory is declared with LORA_DYNAMIC_SHARED(type, name)
//     and sized by the launch. Both are filled with the signalling NaN
//     0xffa5a5a5 (a large negative int) at the start of every block, so a read
//     of shared memory that the block did not write shows.
//   - Compiled with -fsanitize=thread, the emulator tells ThreadSanitizer
//     about its fibers and about exactly the ordering CUDA guarantees:
//     __syncthreads orders the block's threads, __syncwarp the lanes of its
//     mask, shuffles and votes order nothing; a race between threads of a
//     block that no barrier orders is reported. Blocks are ordered one after
//     another. With -fsanitize=address the fiber stacks are annotated.
//
// The C entry points (lora_emu_launch and friends) are declared in emu_api.h
// and defined here; include this header in exactly one translation unit.
// Other translation units of the same program (test kernels) define
// LORA_EMU_SECONDARY before including it: they get everything but those
// definitions, and their kernels join the same registry.
#ifndef LORA_EMU_H
#define LORA_EMU_H

#ifdef __CUDACC__
#error "emu.h emulates CUDA on the CPU; nvcc compiles the kernels natively"
#endif

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <climits>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#include "emu_api.h"

#if defined(__SANITIZE_THREAD__)
#define LORA_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LORA_EMU_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LORA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LORA_EMU_ASAN 1
#endif
#endif

#ifdef LORA_EMU_TSAN
extern "C" {
void* __tsan_get_current_fiber(void);
void* __tsan_create_fiber(unsigned flags);
void __tsan_switch_to_fiber(void* fiber, unsigned flags);
void __tsan_acquire(void* addr);
void __tsan_release(void* addr);
}
#endif
#ifdef LORA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// ---- CUDA qualifiers -------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static __attribute__((section("lora_emu_shared")))
#define __constant__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __restrict__ is a GNU C++ keyword already.

// ---- vector types and built-in variables ------------------------------------

struct __attribute__((aligned(8), may_alias)) float2 { float x, y; };
struct __attribute__((aligned(16), may_alias)) float4 { float x, y, z, w; };
struct __attribute__((aligned(8), may_alias)) int2 { int x, y; };
struct __attribute__((aligned(16), may_alias)) int4 { int x, y, z, w; };
struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }

// ---- 16-bit floating-point types ---------------------------------------------
//
// __half (IEEE 754 binary16) and __nv_bfloat16 as their bit patterns, with
// the conversions of cuda_fp16.h and cuda_bf16.h that the kernels use.
// Widening is exact. Narrowing rounds to nearest, ties to even; a finite
// value beyond the format's range becomes ±Inf, one below half the smallest
// subnormal ±0. A NaN narrows to a quiet NaN of the same sign that keeps the
// high bits of its payload, and a NaN widens with its quiet bit set: the
// rule of package internal/half (the F16C instructions'), so that the
// emulated kernels give the CPU backend's bits. (A GPU returns its canonical
// NaN instead; a NaN stays a NaN either way.)

struct __attribute__((aligned(8), may_alias)) uint2 { unsigned x, y; };
struct __attribute__((aligned(16), may_alias)) uint4 { unsigned x, y, z, w; };
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

namespace lora_emu {

inline unsigned f32_bits(float f) { return std::bit_cast<unsigned>(f); }
inline float f32_from(unsigned b) { return std::bit_cast<float>(b); }

// f16_to_f32 widens the binary16 pattern h exactly.
inline float f16_to_f32(unsigned short h) {
  unsigned sign = static_cast<unsigned>(h & 0x8000u) << 16;
  unsigned mag = h & 0x7fffu;
  if (mag >= 0x7c00u) {  // Inf or NaN: the exponent all ones, the payload at the top
    unsigned o = 0x7f800000u | (mag & 0x3ffu) << 13;
    if ((mag & 0x3ffu) != 0) o |= 0x400000u;  // quiet
    return f32_from(sign | o);
  }
  if (mag >= 0x0400u)  // normal: rebias the exponent from 15 to 127
    return f32_from(sign | (mag + ((127u - 15u) << 10)) << 13);
  // Subnormal or zero: mag units of 2^-24, exact in float32.
  float v = static_cast<float>(mag) * 0x1p-24f;
  return f32_from(sign | f32_bits(v));
}

// f32_to_f16 rounds f to the nearest binary16 pattern, ties to even.
inline unsigned short f32_to_f16(float f) {
  unsigned b = f32_bits(f);
  unsigned short sign = static_cast<unsigned short>((b >> 16) & 0x8000u);
  int exp = static_cast<int>((b >> 23) & 0xffu);
  unsigned man = b & 0x7fffffu;
  if (exp == 0xff) {
    if (man == 0) return sign | 0x7c00u;
    return static_cast<unsigned short>(sign | 0x7e00u | (man >> 13));
  }
  int e = exp - 127 + 15;  // the binary16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00u;
  if (e <= 0) {
    // A binary16 subnormal (or zero): f is m·2^(exp−150) with the 24-bit
    // significand m, that is m >> (14 − e) units of 2^-24, rounded.
    if (e < -10) return sign;  // at most half the smallest subnormal
    unsigned m = man | 0x800000u;
    unsigned shift = static_cast<unsigned>(14 - e);
    unsigned r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;  // may carry into the smallest normal
    return static_cast<unsigned short>(sign | r);
  }
  unsigned r = static_cast<unsigned>(e) << 10 | man >> 13, rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;  // may carry up to Inf
  return static_cast<unsigned short>(sign | r);
}

// bf16_to_f32 widens the bfloat16 pattern h exactly (a NaN comes back quiet).
inline float bf16_to_f32(unsigned short h) {
  unsigned b = static_cast<unsigned>(h) << 16;
  if ((b & 0x7fffffffu) > 0x7f800000u) b |= 0x400000u;
  return f32_from(b);
}

// f32_to_bf16 rounds f to the nearest bfloat16 pattern, ties to even.
inline unsigned short f32_to_bf16(float f) {
  unsigned b = f32_bits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((b >> 16) | 0x40u);
  return static_cast<unsigned short>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

}  // namespace lora_emu

struct __attribute__((aligned(2))) __half_raw { unsigned short x; };
struct __attribute__((aligned(2))) __nv_bfloat16_raw { unsigned short x; };

// __half holds a binary16 pattern in __x, as in cuda_fp16.h; it converts to
// and from float (rounding to nearest even) like CUDA's.
struct __attribute__((aligned(2))) __half {
  unsigned short __x;
  __half() = default;
  constexpr __half(__half_raw r) : __x(r.x) {}
  __half(float f) : __x(lora_emu::f32_to_f16(f)) {}
  operator float() const { return lora_emu::f16_to_f32(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};

// __nv_bfloat16 holds a bfloat16 pattern in __x, as in cuda_bf16.h.
struct __attribute__((aligned(2))) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(lora_emu::f32_to_bf16(f)) {}
  operator float() const { return lora_emu::bf16_to_f32(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};

struct __attribute__((aligned(4))) __half2 { __half x, y; };
struct __attribute__((aligned(4))) __nv_bfloat162 { __nv_bfloat16 x, y; };
static_assert(sizeof(__half) == 2 && sizeof(__nv_bfloat16) == 2 && sizeof(__half2) == 4 &&
                  sizeof(__nv_bfloat162) == 4 && std::is_trivially_copyable_v<__half> &&
                  std::is_trivially_copyable_v<__nv_bfloat16>,
              "the 16-bit types are their bit patterns");

inline __half __ushort_as_half(unsigned short v) { return __half(__half_raw{v}); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __float2half_rn(float f) { return __ushort_as_half(lora_emu::f32_to_f16(f)); }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return lora_emu::f16_to_f32(h.__x); }
inline __half2 __halves2half2(__half lo, __half hi) { return __half2{lo, hi}; }
inline __half2 __floats2half2_rn(float lo, float hi) { return __half2{__float2half_rn(lo), __float2half_rn(hi)}; }
inline __half2 __float2half2_rn(float f) { return __floats2half2_rn(f, f); }
inline __half2 __float22half2_rn(float2 v) { return __floats2half2_rn(v.x, v.y); }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }

inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { return __nv_bfloat16(__nv_bfloat16_raw{v}); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 h) { return static_cast<short>(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __ushort_as_bfloat16(lora_emu::f32_to_bf16(f)); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return lora_emu::bf16_to_f32(h.__x); }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 lo, __nv_bfloat16 hi) { return __nv_bfloat162{lo, hi}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float f) { return __floats2bfloat162_rn(f, f); }
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __floats2bfloat162_rn(v.x, v.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{__bfloat162float(h.x), __bfloat162float(h.y)}; }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 h) { return h.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 h) { return h.y; }
inline float __low2float(__nv_bfloat162 h) { return __bfloat162float(h.x); }
inline float __high2float(__nv_bfloat162 h) { return __bfloat162float(h.y); }

namespace lora_emu {
struct Fiber;
// The running fiber. Only the worker thread runs kernels; the pointer is an
// atomic so that the sanitizers see no race between the fibers that read it.
inline std::atomic<Fiber*> g_self{nullptr};
inline Fiber* self() { return g_self.load(std::memory_order_relaxed); }
const uint3& thread_index(Fiber* f);
}  // namespace lora_emu

#define threadIdx (::lora_emu::thread_index(::lora_emu::self()))
inline uint3 blockIdx{0, 0, 0};  // written by the worker before each block
inline dim3 blockDim;
inline dim3 gridDim;
constexpr int warpSize = 32;

// ---- device functions ----------------------------------------------------------

template <class T>
inline T __ldg(const T* p) { return *p; }
template <class T>
inline T __ldcs(const T* p) { return *p; }
template <class T>
inline void __stcs(T* p, T v) { *p = v; }

inline float rsqrtf(float v) { return 1.0f / sqrtf(v); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
using std::isfinite;
using std::isinf;
using std::isnan;

inline int atomicAdd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_add(v); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_add(v); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
inline unsigned atomicOr(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_or(v); }
inline int atomicAnd(int* p, int v) { return std::atomic_ref<int>(*p).fetch_and(v); }
inline unsigned atomicAnd(unsigned* p, unsigned v) { return std::atomic_ref<unsigned>(*p).fetch_and(v); }
inline int atomicExch(int* p, int v) { return std::atomic_ref<int>(*p).exchange(v); }
inline float atomicExch(float* p, float v) { return std::atomic_ref<float>(*p).exchange(v); }
inline int atomicCAS(int* p, int expected, int desired) {
  std::atomic_ref<int>(*p).compare_exchange_strong(expected, desired);
  return expected;
}
template <class T>
inline T lora_emu_atomic_max(T* p, T v) {
  std::atomic_ref<T> a(*p);
  T old = a.load();
  while (old < v && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
inline int atomicMax(int* p, int v) { return lora_emu_atomic_max(p, v); }
inline unsigned atomicMax(unsigned* p, unsigned v) { return lora_emu_atomic_max(p, v); }
inline float atomicMax(float* p, float v) { return lora_emu_atomic_max(p, v); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

namespace lora_emu {

// ---- context switch ----------------------------------------------------------

#if defined(__x86_64__)
// lora_emu_ctx_switch(save, next): saves the callee-saved registers, MXCSR
// and the x87 control word on the current stack, stores the stack pointer in
// *save, and resumes the context whose stack pointer is next.
extern "C" void lora_emu_ctx_switch(void** save, void* next);
#ifndef LORA_EMU_SECONDARY
asm(R"(
  .text
  .globl lora_emu_ctx_switch
  .hidden lora_emu_ctx_switch
  .type lora_emu_ctx_switch, @function
lora_emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size lora_emu_ctx_switch, .-lora_emu_ctx_switch
)");
#endif
#endif

// Ctx is a context: a fiber's or the worker's own.
struct Ctx {
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  const void* stack_lo = nullptr;  // for AddressSanitizer
  size_t stack_size = 0;
  void* tsan = nullptr;  // ThreadSanitizer's fiber
};

enum Op : int {
  kNone,
  kExit,
  kSync,      // __syncthreads and its votes
  kSyncWarp,  // __syncwarp
  kShflIdx,
  kShflXor,
  kShflDown,
  kShflUp,
  kBallot,
  kMmaF16,   // mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
  kMmaBF16,  // mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32
  kLdmatrix,  // ldmatrix.sync.aligned.m8n8.x4.shared.b16
};

inline const char* op_name(int op) {
  switch (op) {
    case kSync: return "__syncthreads";
    case kSyncWarp: return "__syncwarp";
    case kShflIdx: return "__shfl_sync";
    case kShflXor: return "__shfl_xor_sync";
    case kShflDown: return "__shfl_down_sync";
    case kShflUp: return "__shfl_up_sync";
    case kBallot: return "a vote (__ballot_sync, __any_sync, __all_sync)";
    case kMmaF16: return "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32";
    case kMmaBF16: return "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32";
    case kLdmatrix: return "ldmatrix.sync.aligned.m8n8.x4.shared.b16";
  }
  return "?";
}

enum State : int { kReady, kAtSync, kAtWarp, kDone };

constexpr size_t kStack = 256u << 10;
constexpr uint32_t kPoison = 0xffa5a5a5u;  // a signalling NaN, a large negative int

// Relaxed is a value that fibers and the worker both touch, as a relaxed
// atomic: one thread runs them all, so the order is program order, and
// ThreadSanitizer sees neither a race nor an ordering between fibers in it.
template <class T>
struct Relaxed {
  std::atomic<T> v;
  Relaxed(T x = T()) : v(x) {}
  operator T() const { return v.load(std::memory_order_relaxed); }
  Relaxed& operator=(T x) {
    v.store(x, std::memory_order_relaxed);
    return *this;
  }
};

struct Fiber {
  Ctx ctx;
  char* map = nullptr;  // the stack's mapping, guard page first
  size_t map_size = 0;
  unsigned idx = 0;
  // Written by the worker while the fiber does not run.
  uint3 tid{0, 0, 0};
  unsigned lane = 0, warp = 0;
  Relaxed<int> state{kReady};
  Relaxed<unsigned long long> result{0};
  Relaxed<unsigned> group{0};  // members of the completed __syncwarp
  Relaxed<unsigned> gpar[32];  // their __syncwarp parities
  // Written by the fiber before it yields, read by the worker: atomics, so
  // that ThreadSanitizer sees no race (and no ordering) between them.
  std::atomic<int> op{kNone};
  std::atomic<unsigned> mask{0};
  std::atomic<unsigned long long> val{0};
  std::atomic<int> arg{0};
  std::atomic<int> width{32};
  std::atomic<uint32_t> frag[10];  // an mma's operands: a0..a3, b0..b1, c0..c3 (float bits)
  // Written by the worker, read by the fiber.
  Relaxed<uint32_t> dfrag[4];  // an mma's result: d0..d3 (float bits)
  Relaxed<unsigned long long> rows[4];  // an ldmatrix's row addresses for this lane
  // The fiber's own, read by the worker.
  Relaxed<unsigned> sync_count{0};  // __syncthreads passed
  Relaxed<unsigned> warp_count{0};  // __syncwarp reached
};

inline const uint3& thread_index(Fiber* f) { return f->tid; }

// Group is a warp collective waiting for the lanes of its mask.
struct Group {
  unsigned mask = 0, arrived = 0;
  int op = kNone;
};

struct Worker;
inline Worker* g_worker = nullptr;

// Sync objects for ThreadSanitizer: addresses only.
struct SyncVars {
  char block[2];
  char lane[LORA_EMU_MAX_THREADS][2];
  char end;
};

// ---- the arithmetic of mma.sync ---------------------------------------------
//
// How an emulated mma.sync sums each element of D = A·B + C (16 products of
// two bf16 or two binary16 values, and a float32 element of C), by mode:
//
//   kMmaTruncate (the default) models the tensor cores' arithmetic as Fasi,
//     Higham, Mikaitis and Pranesh measured it on V100, T4 and A100 ("Numerical
//     behavior of NVIDIA tensor cores", PeerJ Computer Science 7:e330, 2021):
//     the GPU documents none of it. Within a group of terms (the accumulator
//     and kMmaGroup products):
//       - each product of two 16-bit values is exact;
//       - every term is aligned to the largest exponent E among the group's
//         nonzero terms, and the bits of its significand below 2^(E−23) (below
//         float32's 24 bits at E) are dropped: its magnitude is truncated,
//         rounded toward zero whatever its sign;
//       - the aligned terms are added exactly (with every carry bit kept);
//       - the sum is normalised to float32, again rounding toward zero.
//     The 16 products of m16n8k16 are two groups, k = 0..7 with C, then
//     k = 8..15 with the first group's float32 result: the A100's fused
//     width of 8 products for 16-bit inputs. What is not modelled: the exact
//     order and width of the groups on each GPU (V100 and T4 fuse 4 products,
//     and later GPUs were not measured by that paper), a carry-out register
//     narrower than the sum, and how a sum beyond float32's range is
//     treated (here toward zero, so FLT_MAX; on a GPU perhaps Inf). A group
//     holding an Inf or a NaN is summed in IEEE arithmetic (Inf − Inf and
//     0·Inf give NaN), and so is a group of zeros (for the sign of zero).
//   kMmaExact sums C and the 16 products exactly (double holds every product
//     exactly, and their sum to far below float32's precision) and rounds
//     once to nearest: more accurate than the hardware, kept so that a
//     result can be compared with both.
//
// LORA_EMU_MMA=exact selects kMmaExact for the process, and
// lora_emu_mma_exact for the launches queued after the call; each launch
// keeps the mode it was queued with.
enum MmaMode : int { kMmaTruncate = 0, kMmaExact = 1 };
constexpr int kMmaGroup = 8;       // products fused with the accumulator in one group
constexpr int kMmaAlignBits = 24;  // bits kept at and below a group's largest exponent

inline std::atomic<int>& mma_mode() {
  static std::atomic<int> m{[] {
    const char* env = getenv("LORA_EMU_MMA");
    return env != nullptr && strcmp(env, "exact") == 0 ? int(kMmaExact) : int(kMmaTruncate);
  }()};
  return m;
}

// f32_toward_zero converts x to float32, rounding toward zero (an x beyond
// float32's range gives ±FLT_MAX, a NaN a NaN).
inline float f32_toward_zero(double x) {
  float f = static_cast<float>(x);  // to nearest
  if (std::fabs(static_cast<double>(f)) > std::fabs(x)) f = std::nextafter(f, 0.0f);
  return f;
}

// mma_group_truncate sums the n exact terms t[0..n) as one group of the
// truncating model above.
inline float mma_group_truncate(const double* t, int n) {
  int emax = INT_MIN;
  bool special = false;
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(t[i]))
      special = true;
    else if (t[i] != 0)
      emax = std::max(emax, std::ilogb(t[i]));
  }
  if (special || emax == INT_MIN) {
    double s = 0;
    if (!special) s = t[0];  // keeps the sign of a sum of zeros: −0 + −0 = −0
    for (int i = special ? 0 : 1; i < n; ++i) s += t[i];
    return static_cast<float>(s);
  }
  // 2^shift is the unit of the last kept bit. Scaling by a power of 2 is
  // exact, each aligned term is an integer below 2^24 in magnitude (a term
  // at exponent E, having at most 24 significant bits, loses none), their
  // sum below 2^28: exact in double, and so is its scaling back.
  const int shift = emax - (kMmaAlignBits - 1);
  double s = 0;
  for (int i = 0; i < n; ++i) s += std::trunc(std::ldexp(t[i], -shift));
  return f32_toward_zero(std::ldexp(s, shift));
}

// mma_dot_truncate is c + p[0] + ... + p[15] in the truncating model: two
// groups of kMmaGroup products.
inline float mma_dot_truncate(float c, const double (&p)[16]) {
  static_assert(16 % kMmaGroup == 0);
  double t[kMmaGroup + 1];
  float acc = c;
  for (int g = 0; g < 16; g += kMmaGroup) {
    t[0] = acc;
    for (int k = 0; k < kMmaGroup; ++k) t[1 + k] = p[g + k];
    acc = mma_group_truncate(t, kMmaGroup + 1);
  }
  return acc;
}

// mma_dot_exact is c + p[0] + ... + p[15] summed exactly, rounded once to
// nearest.
inline float mma_dot_exact(float c, const double (&p)[16]) {
  double s = c;
  for (double v : p) s += v;
  return static_cast<float>(s);
}

struct Job {
  std::function<void()> call;
  std::string name;
  dim3 grid, block;
  unsigned shmem = 0;
  unsigned long long seq = 0;
  int mma = kMmaTruncate;  // the MmaMode of its mma.sync
};

extern "C" char __start_lora_emu_shared[] __attribute__((weak));
extern "C" char __stop_lora_emu_shared[] __attribute__((weak));
// The program's zero-initialised static storage (.bss), from the linker.
extern "C" char __bss_start[] __attribute__((weak));
extern "C" char _end[] __attribute__((weak));

inline unsigned char* g_dynamic_shared = nullptr;
inline void* dynamic_shared() { return g_dynamic_shared; }

inline uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

inline void fiber_main();

struct Worker {
  Ctx sched;
  std::vector<std::unique_ptr<Fiber>> fibers;
  SyncVars sv;
  const Job* job = nullptr;
  unsigned n = 0;
  unsigned live = 0, at_sync = 0;
  int votes = 0;
  Group groups[LORA_EMU_MAX_THREADS / 32][32];
  unsigned ngroups[LORA_EMU_MAX_THREADS / 32];
  unsigned ring[LORA_EMU_MAX_THREADS];
  unsigned head = 0, count = 0;
  std::vector<unsigned> order;
  std::vector<uint32_t> blocks;
  std::string err;
  uint3 cur_block{0, 0, 0};
  std::vector<std::pair<size_t, size_t>> shared_runs;  // [from, to) of the static section
  bool shared_runs_known = false;
  bool dirty_stacks = false;  // a block was abandoned: stacks may hold stale shadow
  alignas(64) unsigned char dyn[LORA_EMU_MAX_SHMEM];

  bool ensure(unsigned want) {
    while (fibers.size() < want) {
      auto f = std::make_unique<Fiber>();
      f->idx = static_cast<unsigned>(fibers.size());
      size_t page = 4096;
      f->map_size = kStack + page;
      void* m = mmap(nullptr, f->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (m == MAP_FAILED) return false;
      f->map = static_cast<char*>(m);
      mprotect(f->map, page, PROT_NONE);  // a stack overflow faults
      f->ctx.stack_lo = f->map + page;
      f->ctx.stack_size = kStack;
#ifdef LORA_EMU_TSAN
      f->ctx.tsan = __tsan_create_fiber(0);
#endif
      fibers.push_back(std::move(f));
    }
    return true;
  }

  // switch_to leaves the running context (from) for to. Toward a fiber the
  // switch orders the worker before the fiber for ThreadSanitizer; toward the
  // worker it orders nothing, so that no ordering passes between fibers
  // through the worker.
  void switch_to(Ctx* from, Ctx* to, bool to_fiber, bool dying) {
#ifdef LORA_EMU_TSAN
    __tsan_switch_to_fiber(to->tsan, to_fiber ? 0u : 1u);
#endif
#ifdef LORA_EMU_ASAN
    void* fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, to->stack_lo, to->stack_size);
#else
    (void)dying;
    (void)to_fiber;
#endif
#if defined(__x86_64__)
    lora_emu_ctx_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#ifdef LORA_EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
  }

  void start_fiber(Fiber& f) {
#ifdef LORA_EMU_ASAN
    if (dirty_stacks) __asan_unpoison_memory_region(f.ctx.stack_lo, f.ctx.stack_size);
#endif
#if defined(__x86_64__)
    uintptr_t top = reinterpret_cast<uintptr_t>(f.ctx.stack_lo) + f.ctx.stack_size;
    top &= ~uintptr_t(15);
    uint64_t* s = reinterpret_cast<uint64_t*>(top);
    s[-1] = 0;
    s[-2] = reinterpret_cast<uint64_t>(&fiber_main);
    for (int i = 3; i <= 8; ++i) s[-i] = 0;
    uint32_t csr[2];
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(*reinterpret_cast<uint16_t*>(&csr[1])));
    std::memcpy(&s[-9], csr, 8);
    f.ctx.sp = &s[-9];
#else
    getcontext(&f.ctx.uc);
    f.ctx.uc.uc_stack.ss_sp = const_cast<void*>(f.ctx.stack_lo);
    f.ctx.uc.uc_stack.ss_size = f.ctx.stack_size;
    f.ctx.uc.uc_link = nullptr;
    makecontext(&f.ctx.uc, reinterpret_cast<void (*)()>(&fiber_main), 0);
#endif
  }

  void push(unsigned i) {
    ring[(head + count) % LORA_EMU_MAX_THREADS] = i;
    ++count;
  }

  std::string where(unsigned i) const {
    const Fiber& f = *fibers[i];
    char b[256];
    snprintf(b, sizeof b, "%s (launch %llu) block (%u,%u,%u) thread (%u,%u,%u) (warp %u lane %u)",
             job->name.c_str(), job->seq, cur_block.x, cur_block.y, cur_block.z, f.tid.x, f.tid.y,
             f.tid.z, f.warp, f.lane);
    return b;
  }

  void fail(unsigned i, const std::string& what) {
    if (err.empty()) err = where(i) + ": " + what;
  }

  static std::string hex(unsigned m) {
    char b[16];
    snprintf(b, sizeof b, "%#010x", m);
    return b;
  }

  // What lane l of warp w is doing, for messages.
  std::string doing(unsigned w, unsigned l) const {
    unsigned i = w * 32 + l;
    if (i >= n) return "does not exist (the block has " + std::to_string(n) + " threads)";
    const Fiber& f = *fibers[i];
    switch (static_cast<int>(f.state)) {
      case kDone: return "has returned";
      case kAtSync: return "waits at __syncthreads";
      case kAtWarp: return "waits in " + std::string(op_name(f.op.load(std::memory_order_relaxed))) +
                           " with mask " + hex(f.mask.load(std::memory_order_relaxed));
    }
    return "runs";
  }

  // poison fills [p, p+bytes) with kPoison; bytes is a multiple of 4.
  static void poison(void* p, size_t bytes) {
    static const auto* pattern = [] {
      auto* b = new uint32_t[1024];
      std::fill_n(b, 1024, kPoison);
      return b;
    }();
    char* c = static_cast<char*>(p);
    while (bytes > 0) {
      size_t k = std::min(bytes, size_t(4096));
      std::memcpy(c, pattern, k);
      c += k;
      bytes -= k;
    }
  }

  // The static shared memory a kernel writes is learned from its first
  // launch, block by block, and widened after every launch, so that each
  // block refills that part only; after each launch that part is refilled
  // too, so that outside a launch the whole section holds kPoison.
  struct Range {
    size_t lo = 0, hi = 0;  // empty when hi <= lo
    bool learned = false;   // after the kernel's first launch
  };
  std::map<std::string, Range> ranges;
  Range* range = nullptr;

  void shared_setup() {
    char* lo = __start_lora_emu_shared;
    char* hi = __stop_lora_emu_shared;
    if (shared_runs_known) return;
    shared_runs_known = true;
    if (lo == nullptr || hi <= lo) return;
    size_t size = static_cast<size_t>(hi - lo) & ~size_t(3);
#ifdef LORA_EMU_ASAN
    // Leave the redzones between the arrays alone (-fsanitize-sections).
    size_t i = 0;
    while (i < size) {
      while (i < size && __asan_address_is_poisoned(lo + i)) i += 4;
      size_t from = i;
      while (i < size && !__asan_address_is_poisoned(lo + i)) i += 4;
      if (i > from) shared_runs.emplace_back(from, i);
    }
#else
    shared_runs.emplace_back(0, size);
#endif
    for (auto [from, to] : shared_runs) poison(lo + from, to - from);
  }

  void fill_static(size_t lo, size_t hi) {
    for (auto [from, to] : shared_runs) {
      size_t a = std::max(from, lo), b = std::min(to, hi);
      if (a < b) poison(__start_lora_emu_shared + a, b - a);
    }
  }

  // learn widens *range to every word of the section that is not kPoison.
  void learn() {
    const char* base = __start_lora_emu_shared;
    for (auto [from, to] : shared_runs) {
      const uint32_t* w = reinterpret_cast<const uint32_t*>(base + from);
      size_t nw = (to - from) / 4;
      size_t first = nw, last = 0;
      for (size_t k = 0; k < nw; ++k)
        if (w[k] != kPoison) {
          first = k;
          break;
        }
      if (first == nw) continue;
      for (size_t k = nw; k > first; --k)
        if (w[k - 1] != kPoison) {
          last = k;
          break;
        }
      size_t a = from + first * 4, b = from + last * 4;
      if (range->hi <= range->lo) {
        range->lo = a;
        range->hi = b;
      } else {
        range->lo = std::min(range->lo, a);
        range->hi = std::max(range->hi, b);
      }
    }
  }

  void fill_shared(bool first_block) {
    if (!shared_runs.empty()) {
      if (!range->learned) {
        if (!first_block) learn();
        fill_static(0, SIZE_MAX);
      } else {
        fill_static(range->lo, range->hi);
      }
    }
    if (job->shmem > 0) poison(dyn, (job->shmem + 3) & ~3u);
  }

  void end_launch() {
    if (shared_runs.empty()) return;
    learn();
    range->learned = true;
    fill_static(range->lo, range->hi);
  }

  // run executes one launch; false and err set on a fault.
  bool run(const Job& j, uint64_t seed) {
    job = &j;
    n = j.block.x * j.block.y * j.block.z;
    if (!ensure(n)) {
      err = j.name + ": cannot map the stacks of " + std::to_string(n) + " threads";
      return false;
    }
    blockDim = j.block;
    gridDim = j.grid;
    g_dynamic_shared = dyn;
    shared_setup();
    range = &ranges[j.name];
    uint64_t s = seed ^ (j.seq * 0x2545f4914f6cdd1dull);
    uint64_t nb = static_cast<uint64_t>(j.grid.x) * j.grid.y * j.grid.z;
    order.resize(n);
    // Blocks in a random order: a shuffled list when it is small enough, a
    // random affine permutation of the block numbers otherwise.
    bool listed = nb <= (1u << 22);
    uint64_t a = 1, b = 0;
    if (listed) {
      blocks.resize(nb);
      for (uint64_t i = 0; i < nb; ++i) blocks[i] = static_cast<uint32_t>(i);
      for (uint64_t i = nb; i > 1; --i) std::swap(blocks[i - 1], blocks[splitmix(s) % i]);
    } else {
      do a = splitmix(s) % nb | 1; while (std::gcd(a, nb) != 1);
      b = splitmix(s) % nb;
    }
    for (uint64_t k = 0; k < nb; ++k) {
      uint64_t lin = listed ? blocks[k] : (static_cast<unsigned __int128>(a) * k + b) % nb;
      cur_block = uint3{static_cast<unsigned>(lin % j.grid.x), static_cast<unsigned>((lin / j.grid.x) % j.grid.y),
                        static_cast<unsigned>(lin / (static_cast<uint64_t>(j.grid.x) * j.grid.y))};
      if (!run_block(s, k == 0)) {
        // The block's fibers are abandoned where they stopped; the device
        // runs nothing more (a fault is sticky).
        dirty_stacks = true;
        return false;
      }
    }
    end_launch();
    return true;
  }

  bool run_block(uint64_t& s, bool first_block) {
    blockIdx = cur_block;
    fill_shared(first_block);
    for (unsigned i = 0; i < n; ++i) {
      Fiber& f = *fibers[i];
      f.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
      f.lane = i % 32;
      f.warp = i / 32;
      f.state = kReady;
      f.sync_count = 0;
      f.warp_count = 0;
      f.op.store(kNone, std::memory_order_relaxed);
      start_fiber(f);
      order[i] = i;
    }
    for (unsigned i = n; i > 1; --i) std::swap(order[i - 1], order[splitmix(s) % i]);
    head = count = 0;
    for (unsigned i = 0; i < n; ++i) push(order[i]);
    for (unsigned w = 0; w * 32 < n; ++w) ngroups[w] = 0;
    live = n;
    at_sync = 0;
    votes = 0;
    while (count > 0) {
      unsigned i = ring[head];
      head = (head + 1) % LORA_EMU_MAX_THREADS;
      --count;
      Fiber& f = *fibers[i];
      g_self.store(&f, std::memory_order_relaxed);
      switch_to(&sched, &f.ctx, true, false);
      g_self.store(nullptr, std::memory_order_relaxed);
      handle(i);
      if (!err.empty()) return false;
    }
    if (live > 0) {
      diagnose();
      return false;
    }
#ifdef LORA_EMU_TSAN
    __tsan_acquire(&sv.end);
#endif
    return true;
  }

  void handle(unsigned i) {
    Fiber& f = *fibers[i];
    int op = f.op.load(std::memory_order_relaxed);
    if (op == kExit) {
      f.state = kDone;
      --live;
      unsigned w = f.warp;
      for (unsigned g = 0; g < ngroups[w]; ++g)
        if (groups[w][g].mask >> f.lane & 1u) {
          Group& gr = groups[w][g];
          unsigned waiter = w * 32 + std::countr_zero(gr.arrived);
          fail(waiter, std::string(op_name(gr.op)) + " with mask " + hex(gr.mask) + " names lane " +
                           std::to_string(f.lane) + ", which has returned from the kernel");
          return;
        }
      release_sync();
      return;
    }
    if (op == kSync) {
      f.state = kAtSync;
      ++at_sync;
      votes += f.arg.load(std::memory_order_relaxed) != 0;
      release_sync();
      return;
    }
    warp_arrive(i, op);
  }

  void release_sync() {
    if (at_sync == 0 || at_sync != live) return;
    // Every thread that has not returned is here: all go on, in the order
    // of the block.
    for (unsigned k = 0; k < n; ++k) {
      Fiber& f = *fibers[order[k]];
      if (f.state != kAtSync) continue;
      f.state = kReady;
      f.result = static_cast<unsigned long long>(votes) | static_cast<unsigned long long>(at_sync) << 32;
      push(order[k]);
    }
    at_sync = 0;
    votes = 0;
  }

  void warp_arrive(unsigned i, int op) {
    Fiber& f = *fibers[i];
    unsigned w = f.warp, lane = f.lane;
    unsigned mask = f.mask.load(std::memory_order_relaxed);
    std::string name = op_name(op);
    unsigned size = std::min(32u, n - w * 32);
    unsigned exist = size == 32 ? 0xffffffffu : (1u << size) - 1;
    if (!(mask >> lane & 1u)) return fail(i, name + " with mask " + hex(mask) + ", which does not name the calling lane");
    if (unsigned bad = mask & ~exist) {
      return fail(i, name + " with mask " + hex(mask) + " names lane " + std::to_string(std::countr_zero(bad)) +
                         ", which does not exist (the block has " + std::to_string(n) + " threads)");
    }
    for (unsigned l = 0; l < size; ++l)
      if ((mask >> l & 1u) && fibers[w * 32 + l]->state == kDone)
        return fail(i, name + " with mask " + hex(mask) + " names lane " + std::to_string(l) + ", which has returned from the kernel");
    if (op >= kShflIdx && op <= kShflUp) {
      int width = f.width.load(std::memory_order_relaxed);
      if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        return fail(i, name + " with width " + std::to_string(width) + ", which is not a power of 2 from 1 to 32");
    }
    Group* g = nullptr;
    for (unsigned k = 0; k < ngroups[w]; ++k) {
      Group& gr = groups[w][k];
      if ((gr.mask & mask) == 0) continue;
      if (gr.mask != mask || gr.op != op) {
        unsigned other = std::countr_zero(gr.arrived);
        return fail(i, name + " with mask " + hex(mask) + " while lane " + std::to_string(other) + " waits in " +
                           op_name(gr.op) + " with mask " + hex(gr.mask));
      }
      g = &gr;
    }
    if (g == nullptr) {
      // No lane of the mask may wait at __syncthreads: it would never come.
      g = &groups[w][ngroups[w]++];
      g->mask = mask;
      g->arrived = 0;
      g->op = op;
    }
    g->arrived |= 1u << lane;
    f.state = kAtWarp;
    if (g->arrived != g->mask) return;
    complete(w, *g);
    *g = groups[w][--ngroups[w]];
  }

  // in_shared tells whether [a, a+bytes) lies in the shared memory of the
  // running block: the section of the static __shared__ arrays (that of
  // every kernel: blocks never overlap), the launch's dynamic shared memory,
  // or the program's zero-initialised static storage, [__bss_start, _end),
  // where g++ (12 and older) puts the __shared__ arrays of function
  // templates, whose section attribute it drops. Device memory (the heap)
  // and the threads' stacks lie outside all three; a zero-initialised
  // __device__ or __constant__ variable (or any other zero-initialised
  // static of the program) is not told apart from shared memory.
  bool in_shared(unsigned long long a, unsigned long long bytes) const {
    auto within = [a, bytes](const void* from, const void* to) {
      uintptr_t lo = reinterpret_cast<uintptr_t>(from), hi = reinterpret_cast<uintptr_t>(to);
      return lo != 0 && hi > lo && a >= lo && a <= hi && bytes <= hi - a;
    };
    return within(__start_lora_emu_shared, __stop_lora_emu_shared) || within(dyn, dyn + job->shmem) ||
           within(__bss_start, _end);
  }

  // mma_m16n8k16 computes D = A·B + C for the 32 lanes of a warp, each of
  // which posted its fragments (a0..a3, b0..b1, c0..c3) in frag, and writes
  // each lane's d0..d3 to dfrag. The fragment layouts are those the PTX ISA
  // gives for mma.m16n8k16 with .f16/.bf16 multiplicands and .f32
  // accumulators ("Matrix Fragments for mma.m16n8k16 with floating point
  // type"), with groupID = lane >> 2 and threadID_in_group = lane % 4:
  //   A (16×16, row): register q holds a(2q) in its low half, a(2q+1) in its
  //     high half; ai lies at row groupID for i in {0,1,4,5}, groupID + 8
  //     otherwise, column threadID_in_group·2 + (i & 1), + 8 for i >= 4.
  //   B (16×8, col): register q holds b(2q) low, b(2q+1) high; bi lies at
  //     row threadID_in_group·2 + (i & 1), + 8 for i >= 2, column groupID.
  //   C, D (16×8): ci lies at row groupID for i < 2, groupID + 8 otherwise,
  //     column threadID_in_group·2 + (i & 1).
  // How each element of D = A·B + C is summed depends on the launch's mode
  // (see MmaMode): kMmaTruncate, the default, models the tensor cores'
  // arithmetic (mma_dot_truncate); kMmaExact sums the products exactly
  // and rounds once to float32, more accurately than the GPU.
  static void mma_m16n8k16(Fiber* const lanes[32], bool bf16, int mode) {
    float a[16][16], b[16][8], c[16][8];
    auto widen = [bf16](uint32_t bits, unsigned hi) {
      unsigned short h = static_cast<unsigned short>(hi ? bits >> 16 : bits & 0xffffu);
      return bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    };
    for (unsigned l = 0; l < 32; ++l) {
      unsigned grp = l >> 2, tig = l & 3u;
      const std::atomic<uint32_t>* fr = lanes[l]->frag;
      for (unsigned i = 0; i < 8; ++i) {
        unsigned row = grp + ((i & 2u) ? 8u : 0u), col = tig * 2 + (i & 1u) + (i >= 4 ? 8u : 0u);
        a[row][col] = widen(fr[i / 2].load(std::memory_order_relaxed), i & 1u);
      }
      for (unsigned i = 0; i < 4; ++i) {
        unsigned row = tig * 2 + (i & 1u) + (i >= 2 ? 8u : 0u), col = grp;
        b[row][col] = widen(fr[4 + i / 2].load(std::memory_order_relaxed), i & 1u);
      }
      for (unsigned i = 0; i < 4; ++i) {
        unsigned row = grp + (i >= 2 ? 8u : 0u), col = tig * 2 + (i & 1u);
        c[row][col] = f32_from(fr[6 + i].load(std::memory_order_relaxed));
      }
    }
    for (unsigned l = 0; l < 32; ++l) {
      unsigned grp = l >> 2, tig = l & 3u;
      for (unsigned i = 0; i < 4; ++i) {
        unsigned row = grp + (i >= 2 ? 8u : 0u), col = tig * 2 + (i & 1u);
        double p[16];
        for (unsigned k = 0; k < 16; ++k) p[k] = static_cast<double>(a[row][k]) * b[k][col];
        lanes[l]->dfrag[i] = f32_bits(mode == kMmaExact ? mma_dot_exact(c[row][col], p) : mma_dot_truncate(c[row][col], p));
      }
    }
  }

  void complete(unsigned w, const Group& g) {
    Fiber* lanes[32];
    for (unsigned l = 0; l < 32; ++l) lanes[l] = (g.mask >> l & 1u) ? fibers[w * 32 + l].get() : nullptr;
    if (g.op == kMmaF16 || g.op == kMmaBF16) {
      mma_m16n8k16(lanes, g.op == kMmaBF16, job->mma);
      for (unsigned l = 0; l < 32; ++l) {
        lanes[l]->state = kReady;
        push(w * 32 + l);
      }
      return;
    }
    if (g.op == kLdmatrix) {
      // Row i of matrix j starts at the address of lane 8j + i, which must be
      // 16-byte aligned, its 16 bytes in the block's shared memory (.shared:
      // another address is undefined in PTX); lane l receives the rows l/4
      // of the four matrices.
      for (unsigned l = 0; l < 32; ++l) {
        unsigned long long a = lanes[l]->val.load(std::memory_order_relaxed);
        const char* why = a % 16 != 0 ? "is not 16-byte aligned"
                          : !in_shared(a, 16) ? "is not in the block's shared memory (its 16 bytes lie outside "
                                                "every __shared__ array and the launch's dynamic shared memory)"
                                              : nullptr;
        if (why != nullptr) {
          char b[320];
          snprintf(b, sizeof b, "%s: lane %u gives the row address %#llx, which %s", op_name(kLdmatrix), l, a, why);
          return fail(w * 32 + l, b);
        }
      }
      for (unsigned l = 0; l < 32; ++l) {
        for (unsigned j = 0; j < 4; ++j)
          lanes[l]->rows[j] = lanes[8 * j + l / 4]->val.load(std::memory_order_relaxed);
        lanes[l]->state = kReady;
        push(w * 32 + l);
      }
      return;
    }
    unsigned ballot = 0;
    if (g.op == kBallot)
      for (unsigned l = 0; l < 32; ++l)
        if (lanes[l] && lanes[l]->arg.load(std::memory_order_relaxed) != 0) ballot |= 1u << l;
    for (unsigned l = 0; l < 32; ++l) {
      Fiber* f = lanes[l];
      if (f == nullptr) continue;
      switch (g.op) {
        case kBallot: f->result = ballot; break;
        case kSyncWarp:
          f->group = g.mask;
          for (unsigned m = 0; m < 32; ++m)
            if (lanes[m]) f->gpar[m] = lanes[m]->warp_count & 1u;
          break;
        default: {
          int width = f->width.load(std::memory_order_relaxed);
          unsigned base = l & ~static_cast<unsigned>(width - 1);
          int a = f->arg.load(std::memory_order_relaxed);
          unsigned src = l;
          switch (g.op) {
            case kShflIdx: src = base + (static_cast<unsigned>(a) & (width - 1)); break;
            case kShflXor: src = l ^ static_cast<unsigned>(a); if (src >= base + width) src = l; break;
            case kShflDown: src = l + static_cast<unsigned>(a); if (src >= base + width) src = l; break;
            case kShflUp: src = l - static_cast<unsigned>(a); if (l < base + static_cast<unsigned>(a)) src = l; break;
          }
          if (src >= 32 || lanes[src] == nullptr) {
            fail(w * 32 + l, std::string(op_name(g.op)) + " with mask " + hex(g.mask) + " reads lane " +
                                 std::to_string(src) + ", which is not in the mask");
            return;
          }
          f->result = lanes[src]->val.load(std::memory_order_relaxed);
        }
      }
      f->state = kReady;
      push(w * 32 + l);
    }
  }

  void diagnose() {
    // Nothing can run: a warp collective waits for a lane that waits at
    // __syncthreads (which waits for the collective in turn).
    for (unsigned w = 0; w * 32 < n; ++w)
      for (unsigned k = 0; k < ngroups[w]; ++k) {
        const Group& g = groups[w][k];
        unsigned missing = g.mask & ~g.arrived;
        unsigned l = std::countr_zero(missing);
        unsigned waiter = w * 32 + std::countr_zero(g.arrived);
        return fail(waiter, std::string(op_name(g.op)) + " with mask " + hex(g.mask) + " waits for lane " +
                                std::to_string(l) + ", which " + doing(w, l) + " (a deadlock on a GPU)");
      }
    for (unsigned i = 0; i < n; ++i)
      if (fibers[i]->state != kDone) return fail(i, "cannot go on (a deadlock on a GPU)");
  }
};

// Yields the running fiber to the worker after it posted op.
inline Fiber& yield(int op) {
  Worker& w = *g_worker;
  Fiber& f = *self();
  f.op.store(op, std::memory_order_relaxed);
  w.switch_to(&f.ctx, &w.sched, false, false);
  return f;
}

inline void fiber_main() {
#ifdef LORA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_worker->sched.stack_lo, &g_worker->sched.stack_size);
#endif
  Worker& w = *g_worker;
  w.job->call();
  Fiber& f = *self();
#ifdef LORA_EMU_TSAN
  __tsan_release(&w.sv.end);
#endif
  f.op.store(kExit, std::memory_order_relaxed);
  w.switch_to(&f.ctx, &w.sched, false, true);
  abort();  // an exited fiber is never resumed
}

// Block barrier, with a vote: the number of threads that passed a true
// pred (low 32 bits) and of threads at the barrier (high 32 bits).
inline unsigned long long sync_block(int pred) {
  Worker& w = *g_worker;
  Fiber* f = self();
  unsigned p = f->sync_count & 1u;
  f->sync_count = f->sync_count + 1;
#ifdef LORA_EMU_TSAN
  __tsan_release(&w.sv.block[p]);
#else
  (void)p;
#endif
  f->arg.store(pred != 0, std::memory_order_relaxed);
  yield(kSync);
#ifdef LORA_EMU_TSAN
  __tsan_acquire(&w.sv.block[p]);
#endif
  return f->result;
}

inline void sync_warp(unsigned mask) {
  Fiber* f = self();
#ifdef LORA_EMU_TSAN
  Worker& w = *g_worker;
  __tsan_release(&w.sv.lane[f->idx][f->warp_count & 1u]);
#endif
  f->mask.store(mask, std::memory_order_relaxed);
  yield(kSyncWarp);
  f->warp_count = f->warp_count + 1;
#ifdef LORA_EMU_TSAN
  for (unsigned m = 0; m < 32; ++m)
    if (f->group >> m & 1u) __tsan_acquire(&w.sv.lane[f->warp * 32 + m][f->gpar[m]]);
#endif
}

template <class T>
inline T shuffle(int op, unsigned mask, T v, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  Fiber* f = self();
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  f->val.store(bits, std::memory_order_relaxed);
  f->mask.store(mask, std::memory_order_relaxed);
  f->arg.store(arg, std::memory_order_relaxed);
  f->width.store(width, std::memory_order_relaxed);
  yield(op);
  T r;
  bits = f->result;
  std::memcpy(&r, &bits, sizeof r);
  return r;
}

inline unsigned ballot(unsigned mask, int pred) {
  Fiber* f = self();
  f->mask.store(mask, std::memory_order_relaxed);
  f->arg.store(pred != 0, std::memory_order_relaxed);
  yield(kBallot);
  return static_cast<unsigned>(f->result);
}

// mma_m16n8k16 is the calling lane's part of a warp's
// mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16}.{f16,bf16}.f32: it posts
// its fragments and waits for the other 31 lanes of its warp (.sync.aligned:
// every lane of the warp must execute the same mma; a lane that has
// returned, does not exist or waits elsewhere is a fault, as for the
// shuffles); Worker::mma_m16n8k16 gives the layouts. d may be c.
inline void mma_m16n8k16(bool bf16, float* d, const uint32_t* a, const uint32_t* b, const float* c) {
  Fiber* f = self();
  for (int i = 0; i < 4; ++i) f->frag[i].store(a[i], std::memory_order_relaxed);
  for (int i = 0; i < 2; ++i) f->frag[4 + i].store(b[i], std::memory_order_relaxed);
  for (int i = 0; i < 4; ++i) f->frag[6 + i].store(f32_bits(c[i]), std::memory_order_relaxed);
  f->mask.store(0xffffffffu, std::memory_order_relaxed);
  yield(bf16 ? kMmaBF16 : kMmaF16);
  for (int i = 0; i < 4; ++i) d[i] = f32_from(f->dfrag[i]);
}

// ldmatrix_x4 is the calling lane's part of a warp's
// ldmatrix.sync.aligned.m8n8.x4.shared.b16 (PTX ISA, "ldmatrix"): four 8 x 8
// matrices of 16-bit elements, row i of matrix j at the address lane 8j + i
// gives (16 bytes, 16-byte aligned, in the block's shared memory: an
// address that is not is a fault); lane l receives in r[j] the elements
// 2·(l % 4) and 2·(l % 4) + 1 of row l / 4 of matrix j, the first in the low
// half. Every lane of the warp must take part. The addresses are exchanged
// by the collective; each lane then reads its own elements, so that the
// sanitizers see the reads where the lane makes them.
inline void ldmatrix_x4(uint32_t* r, const void* row) {
  Fiber* f = self();
  f->val.store(reinterpret_cast<uintptr_t>(row), std::memory_order_relaxed);
  f->mask.store(0xffffffffu, std::memory_order_relaxed);
  yield(kLdmatrix);
  unsigned lane = f->lane;
  for (int j = 0; j < 4; ++j) {
    const char* p = reinterpret_cast<const char*>(static_cast<uintptr_t>(f->rows[j])) + 4 * (lane % 4);
    std::memcpy(&r[j], p, 4);
  }
}

}  // namespace lora_emu

inline void __syncthreads() { lora_emu::sync_block(0); }
inline int __syncthreads_count(int pred) { return static_cast<int>(lora_emu::sync_block(pred) & 0xffffffffu); }
inline int __syncthreads_or(int pred) { return (lora_emu::sync_block(pred) & 0xffffffffu) != 0; }
inline int __syncthreads_and(int pred) {
  unsigned long long r = lora_emu::sync_block(pred);
  return (r & 0xffffffffu) == (r >> 32);
}
inline void __syncwarp(unsigned mask = 0xffffffffu) { lora_emu::sync_warp(mask); }
// The lanes of the caller's warp that have not returned.
inline unsigned __activemask() {
  lora_emu::Worker& w = *lora_emu::g_worker;
  unsigned warp = lora_emu::self()->warp, m = 0;
  for (unsigned l = 0; l < 32 && warp * 32 + l < w.n; ++l)
    if (w.fibers[warp * 32 + l]->state != lora_emu::kDone) m |= 1u << l;
  return m;
}

template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return lora_emu::shuffle(lora_emu::kShflIdx, mask, v, src, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lanemask, int width = 32) {
  return lora_emu::shuffle(lora_emu::kShflXor, mask, v, lanemask, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return lora_emu::shuffle(lora_emu::kShflDown, mask, v, static_cast<int>(delta), width);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return lora_emu::shuffle(lora_emu::kShflUp, mask, v, static_cast<int>(delta), width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return lora_emu::ballot(mask, pred); }
inline int __any_sync(unsigned mask, int pred) { return lora_emu::ballot(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return lora_emu::ballot(mask, pred) == mask; }

// Dynamic shared memory: `extern __shared__ T name[]` in CUDA.
#define LORA_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::lora_emu::dynamic_shared())

namespace lora_emu {

// ---- kernel registry ----------------------------------------------------------------

using Call = std::function<void()>;
using Binder = Call (*)(void (*)(), void**);

struct Entry {
  void (*fn)();
  Binder bind;
  int nargs;
  // Every pointer parameter points to float, __half or __nv_bfloat16, or is
  // an integer output: the kernel runs on any values in its buffers (the
  // sanitizer harness fills them at random). Index arrays and structs as
  // inputs need real data.
  bool plain;
};

template <class P>
constexpr bool plain_param() {
  if constexpr (std::is_pointer_v<P>) {
    using T = std::remove_pointer_t<P>;
    using U = std::remove_cv_t<T>;
    if (std::is_same_v<U, float> || std::is_same_v<U, __half> || std::is_same_v<U, __nv_bfloat16>) return true;
    // Bytes: NF4 codes, two to a byte, every value of which is valid.
    if (std::is_same_v<U, unsigned char>) return true;
    return std::is_integral_v<T> && !std::is_const_v<T>;
  }
  return true;
}

inline std::map<std::string, Entry>& registry() {
  static auto* m = new std::map<std::string, Entry>;
  return *m;
}

template <class... P, std::size_t... I>
Call bind_impl(void (*fn)(P...), void** args, std::index_sequence<I...>) {
  std::tuple<std::remove_cv_t<P>...> vals(*static_cast<std::remove_cv_t<P>*>(args[I])...);
  return [fn, vals]() { std::apply(fn, vals); };
}

template <class... P>
Call bind_args(void (*raw)(), void** args) {
  return bind_impl(reinterpret_cast<void (*)(P...)>(raw), args, std::index_sequence_for<P...>{});
}

template <class... P>
bool register_kernel(const char* name, void (*fn)(P...)) {
  registry()[name] = Entry{reinterpret_cast<void (*)()>(fn), &bind_args<P...>,
                           static_cast<int>(sizeof...(P)), (plain_param<P>() && ...)};
  return true;
}

inline const Entry* find(const char* name) {
  if (name == nullptr) return nullptr;
  auto& r = registry();
  auto it = r.find(name);
  return it == r.end() ? nullptr : &it->second;
}

// ---- the stream: a queue and the worker thread ----------------------------------------

class Stream {
 public:
  static Stream& get() {
    static Stream* s = new Stream;  // never destroyed: the worker outlives static destructors
    return *s;
  }

  // start starts the worker thread once.
  bool start() {
    std::lock_guard<std::mutex> l(m_);
    if (started_) return true;
    const char* env = getenv("LORA_EMU_SEED");
    if (env != nullptr && *env != 0) {
      seed_ = strtoull(env, nullptr, 0);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      uint64_t s = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(ts.tv_sec) << 20) ^
                   (static_cast<uint64_t>(getpid()) << 40);
      seed_ = splitmix(s) & 0xffffffffffffull;
    }
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return false;
    pthread_attr_setstacksize(&attr, 8u << 20);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    // The worker starts with every asynchronous signal blocked, so that those
    // (the Go runtime's among them) go to the host program's own threads;
    // faults raised by a kernel still reach the process's handlers.
    sigset_t all, old;
    sigfillset(&all);
    for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&all, sig);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_t tid;
    int rc = pthread_create(&tid, &attr, &Stream::main, this);
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
    if (rc != 0) return false;
    started_ = true;
    return true;
  }

  void push(std::unique_ptr<Job> j) {
    std::lock_guard<std::mutex> l(m_);
    j->seq = ++launches_;
    q_.push_back(std::move(j));
    cv_.notify_one();
  }

  // wait waits for every queued launch when block, and returns the fault
  // (empty when none).
  std::string wait(bool block) {
    std::unique_lock<std::mutex> l(m_);
    if (block) idle_.wait(l, [this] { return q_.empty() && !busy_; });
    return fault_;
  }

  uint64_t seed() {
    std::lock_guard<std::mutex> l(m_);
    return seed_;
  }

 private:
  static void* main(void* arg) {
    static_cast<Stream*>(arg)->loop();
    return nullptr;
  }

  void loop() {
    Worker* w = new Worker;
    g_worker = w;
#ifdef LORA_EMU_TSAN
    w->sched.tsan = __tsan_get_current_fiber();
#endif
    std::unique_lock<std::mutex> l(m_);
    for (;;) {
      cv_.wait(l, [this] { return !q_.empty(); });
      std::unique_ptr<Job> j = std::move(q_.front());
      q_.pop_front();
      bool skip = !fault_.empty();  // a faulted device runs nothing more
      busy_ = true;
      uint64_t seed = seed_;
      l.unlock();
      std::string err;
      if (!skip && !w->run(*j, seed)) {
        char b[96];
        snprintf(b, sizeof b, " [blocks and threads ordered by LORA_EMU_SEED=%llu]",
                 static_cast<unsigned long long>(seed));
        err = w->err + b;
        w->err.clear();
        // Abandoned fibers may still refer to the job: it stays.
        (void)j.release();
      }
      j.reset();
      l.lock();
      if (!err.empty() && fault_.empty()) fault_ = err;
      busy_ = false;
      if (q_.empty()) idle_.notify_all();
    }
  }

  std::mutex m_;
  std::condition_variable cv_, idle_;
  std::deque<std::unique_ptr<Job>> q_;
  bool busy_ = false, started_ = false;
  std::string fault_;
  unsigned long long launches_ = 0;
  uint64_t seed_ = 0;
};

inline int copy_out(const std::string& s, char* buf, int len) {
  if (s.empty()) return LORA_EMU_OK;
  if (buf != nullptr && len > 0) {
    size_t k = std::min(s.size(), static_cast<size_t>(len - 1));
    std::memcpy(buf, s.data(), k);
    buf[k] = 0;
  }
  return LORA_EMU_ERR_KERNEL;
}

}  // namespace lora_emu

#define LORA_EMU_REGISTER(fn) \
  static const bool lora_emu_registered_##fn [[maybe_unused]] = ::lora_emu::register_kernel(#fn, &fn);

#ifndef LORA_EMU_SECONDARY
extern "C" int lora_emu_launch(const char* name, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shmem, void** args,
                               int nargs) {
  using namespace lora_emu;
  const Entry* e = find(name);
  if (e == nullptr) return LORA_EMU_ERR_UNKNOWN_KERNEL;
  if (nargs != e->nargs) return LORA_EMU_ERR_NARGS;
  if (bx == 0 || by == 0 || bz == 0 || bx > 1024 || by > 1024 || bz > 64 ||
      static_cast<unsigned long long>(bx) * by * bz > LORA_EMU_MAX_THREADS)
    return LORA_EMU_ERR_BLOCK;
  if (gx == 0 || gy == 0 || gz == 0 || gx > 2147483647u || gy > 65535 || gz > 65535) return LORA_EMU_ERR_GRID;
  if (shmem > LORA_EMU_MAX_SHMEM) return LORA_EMU_ERR_SHMEM;
  if (e->nargs > 0) {
    if (args == nullptr) return LORA_EMU_ERR_ARGS;
    for (int i = 0; i < e->nargs; ++i)
      if (args[i] == nullptr) return LORA_EMU_ERR_ARGS;
  }
  Stream& s = Stream::get();
  if (!s.start()) return LORA_EMU_ERR_THREADS;
  auto j = std::make_unique<Job>();
  j->call = e->bind(e->fn, args);  // the values are copied now, as cuLaunchKernel does
  j->name = name;
  j->grid = dim3(gx, gy, gz);
  j->block = dim3(bx, by, bz);
  j->shmem = shmem;
  j->mma = lora_emu::mma_mode().load();
  s.push(std::move(j));
  return LORA_EMU_OK;
}

extern "C" int lora_emu_sync(char* msg, int len) {
  auto& s = lora_emu::Stream::get();
  if (!s.start()) return LORA_EMU_ERR_THREADS;
  return lora_emu::copy_out(s.wait(true), msg, len);
}

extern "C" int lora_emu_poll(char* msg, int len) {
  auto& s = lora_emu::Stream::get();
  if (!s.start()) return LORA_EMU_ERR_THREADS;
  return lora_emu::copy_out(s.wait(false), msg, len);
}

// lora_emu_mma_exact sets how the mma.sync of the launches queued from now
// on sum: exactly when exact != 0, in the tensor cores' truncating model
// otherwise (see MmaMode). It returns the previous setting (1 for exact).
extern "C" int lora_emu_mma_exact(int exact) {
  return lora_emu::mma_mode().exchange(exact != 0 ? lora_emu::kMmaExact : lora_emu::kMmaTruncate);
}

extern "C" unsigned long long lora_emu_seed(void) {
  auto& s = lora_emu::Stream::get();
  s.start();
  return s.seed();
}

extern "C" int lora_emu_kernel_count(void) {
  return static_cast<int>(lora_emu::registry().size());
}

extern "C" const char* lora_emu_kernel_name(int i) {
  auto& r = lora_emu::registry();
  if (i < 0 || i >= static_cast<int>(r.size())) return nullptr;
  auto it = r.begin();
  std::advance(it, i);
  return it->first.c_str();
}

extern "C" int lora_emu_kernel_nargs(const char* name) {
  const lora_emu::Entry* e = lora_emu::find(name);
  return e == nullptr ? -1 : e->nargs;
}

#endif  // LORA_EMU_SECONDARY
#endif  // LORA_EMU_H
