// emu.h: the CUDA thread model on the CPU, so that the kernels in this
// directory compile with a C++20 compiler (g++ -std=c++20 -pthread) and run
// unchanged.
//
// Model:
//   - A launch runs its blocks one after another (x fastest, then y, then z).
//   - The threads of a block are OS threads from a persistent pool; worker i
//     always plays thread i of every block of every launch.
//   - __syncthreads() is a std::barrier over the block's threads (and
//     __syncthreads_count/_or/_and count votes between its phases); warp
//     collectives (shuffles, votes, __syncwarp) use a per-warp std::barrier
//     and a double-buffered per-warp exchange array. A thread that returns
//     from the kernel drops out of both barriers, so early exits never block
//     the threads that remain.
//   - __shared__ is `static`: blocks never overlap, so a function-local static
//     is exactly one block's shared memory. Dynamic shared memory is declared
//     with LORA_DYNAMIC_SHARED(type, name) and sized by the launch.
//   - Warp collectives are full-warp only: every lane of the warp that has not
//     returned must take part (the mask argument is not interpreted).
//   - Launches are serialized by a mutex and synchronous.
//
// The C entry points (lora_emu_launch and friends) are declared in emu_api.h
// and defined here; include this header in exactly one translation unit.
#ifndef LORA_EMU_H
#define LORA_EMU_H

#ifdef __CUDACC__
#error "emu.h emulates CUDA on the CPU; nvcc compiles the kernels natively"
#endif

#include <math.h>
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "emu_api.h"

// ---- CUDA qualifiers -------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
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

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline dim3 blockDim;  // written by the launcher before the workers start
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

// ---- per-block state -----------------------------------------------------------

struct WarpState {
  std::optional<std::barrier<>> bar;
  unsigned size = 0;  // lanes in this warp (the last warp of a block may be partial)
  alignas(64) unsigned long long slot[2][32];
};

struct BlockState;

// Runs once per __syncthreads phase, after the last thread arrives and before
// any leaves: clears the vote counters the next phase will use (every thread
// finished reading them in the previous phase).
struct PhaseEnd {
  BlockState* block;
  void operator()() noexcept;
};

struct BlockState {
  std::optional<std::barrier<PhaseEnd>> bar;
  std::atomic<unsigned> phase{0};
  std::atomic<int> votes_true[2];
  std::atomic<int> votes_false[2];
  WarpState warps[LORA_EMU_MAX_THREADS / 32];
  unsigned nthreads = 0;

  // Fresh barriers for the next block: every thread is counted again.
  void reset() noexcept {
    bar.reset();
    bar.emplace(static_cast<std::ptrdiff_t>(nthreads), PhaseEnd{this});
    phase.store(0, std::memory_order_relaxed);
    for (int p = 0; p < 2; ++p) {
      votes_true[p].store(0, std::memory_order_relaxed);
      votes_false[p].store(0, std::memory_order_relaxed);
    }
    for (unsigned w = 0; w * 32 < nthreads; ++w) {
      unsigned size = std::min(32u, nthreads - w * 32);
      warps[w].size = size;
      warps[w].bar.reset();
      warps[w].bar.emplace(static_cast<std::ptrdiff_t>(size));
    }
  }
};

inline void PhaseEnd::operator()() noexcept {
  unsigned next = block->phase.load(std::memory_order_relaxed) + 1;
  block->votes_true[next & 1].store(0, std::memory_order_relaxed);
  block->votes_false[next & 1].store(0, std::memory_order_relaxed);
  block->phase.store(next, std::memory_order_relaxed);
}

inline BlockState* g_block = nullptr;
inline unsigned char* g_dynamic_shared = nullptr;
inline thread_local unsigned t_lane = 0;
inline thread_local unsigned t_warp = 0;
inline thread_local unsigned t_parity = 0;

inline void* dynamic_shared() { return g_dynamic_shared; }

// Each lane publishes v, waits for its warp, and reads lane src's value.
// Slots alternate between two buffers: a lane rewrites a buffer only after
// the next barrier, which every lane reaches after reading it.
template <class T>
inline T exchange(T v, unsigned src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>);
  WarpState& w = g_block->warps[t_warp];
  unsigned p = t_parity;
  t_parity ^= 1u;
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  w.slot[p][t_lane] = bits;
  w.bar->arrive_and_wait();
  if (src >= w.size) src = t_lane;
  T r;
  std::memcpy(&r, &w.slot[p][src], sizeof r);
  return r;
}

inline unsigned ballot(int pred) {
  WarpState& w = g_block->warps[t_warp];
  unsigned p = t_parity;
  t_parity ^= 1u;
  w.slot[p][t_lane] = pred != 0;
  w.bar->arrive_and_wait();
  unsigned m = 0;
  for (unsigned l = 0; l < w.size; ++l)
    if (w.slot[p][l]) m |= 1u << l;
  return m;
}

}  // namespace lora_emu

inline void __syncthreads() { lora_emu::g_block->bar->arrive_and_wait(); }

namespace lora_emu {
// __syncthreads that also counts a predicate over the block: returns the
// number of threads that passed true (first) and false (second).
inline std::pair<int, int> sync_vote(int pred) {
  BlockState& b = *g_block;
  unsigned p = b.phase.load(std::memory_order_relaxed) & 1;
  (pred ? b.votes_true[p] : b.votes_false[p]).fetch_add(1, std::memory_order_relaxed);
  b.bar->arrive_and_wait();
  return {b.votes_true[p].load(std::memory_order_relaxed), b.votes_false[p].load(std::memory_order_relaxed)};
}
}  // namespace lora_emu

inline int __syncthreads_count(int pred) { return lora_emu::sync_vote(pred).first; }
inline int __syncthreads_or(int pred) { return lora_emu::sync_vote(pred).first != 0; }
inline int __syncthreads_and(int pred) { return lora_emu::sync_vote(pred).second == 0; }
inline void __syncwarp(unsigned = 0xffffffffu) {
  lora_emu::g_block->warps[lora_emu::t_warp].bar->arrive_and_wait();
}
inline unsigned __activemask() { return 0xffffffffu; }

template <class T>
inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  unsigned lane = lora_emu::t_lane;
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  return lora_emu::exchange(v, base + (static_cast<unsigned>(src) & (width - 1)));
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  unsigned lane = lora_emu::t_lane;
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  unsigned src = lane ^ static_cast<unsigned>(mask);
  if (src >= base + width) src = lane;
  return lora_emu::exchange(v, src);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = lora_emu::t_lane;
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  unsigned src = lane + delta;
  if (src >= base + width) src = lane;
  return lora_emu::exchange(v, src);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
  unsigned lane = lora_emu::t_lane;
  unsigned base = lane & ~static_cast<unsigned>(width - 1);
  unsigned src = lane - delta;
  if (lane < base + delta) src = lane;
  return lora_emu::exchange(v, src);
}
inline unsigned __ballot_sync(unsigned, int pred) { return lora_emu::ballot(pred); }
inline int __any_sync(unsigned, int pred) { return lora_emu::ballot(pred) != 0; }
inline int __all_sync(unsigned, int pred) {
  unsigned size = lora_emu::g_block->warps[lora_emu::t_warp].size;
  unsigned all = size == 32 ? 0xffffffffu : (1u << size) - 1;
  return lora_emu::ballot(pred) == all;
}

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
};

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
                           static_cast<int>(sizeof...(P))};
  return true;
}

// ---- worker pool and launcher -----------------------------------------------------

struct Job {
  Call call;
  dim3 grid, block;
  unsigned nthreads = 0;
  struct EndOfBlock {
    void operator()() noexcept { g_block->reset(); }
  };
  std::optional<std::barrier<EndOfBlock>> end;
};

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool;  // never destroyed: workers outlive static destructors
    return *p;
  }

  // Starts workers until there are at least n.
  bool ensure(unsigned n) {
    while (workers_.size() < n) {
      auto w = std::make_unique<Worker>();
      w->pool = this;
      w->idx = static_cast<unsigned>(workers_.size());
      pthread_attr_t attr;
      if (pthread_attr_init(&attr) != 0) return false;
      pthread_attr_setstacksize(&attr, 2u << 20);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      // Workers start with every asynchronous signal blocked, so that those
      // (the Go runtime's among them) go to the host program's own threads;
      // faults raised by a kernel still reach the process's handlers.
      sigset_t all, old;
      sigfillset(&all);
      for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT}) sigdelset(&all, sig);
      pthread_sigmask(SIG_BLOCK, &all, &old);
      pthread_t tid;
      int rc = pthread_create(&tid, &attr, &Pool::main, w.get());
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      pthread_attr_destroy(&attr);
      if (rc != 0) return false;
      workers_.push_back(std::move(w));
    }
    return true;
  }

  // Runs job on workers 0..job.nthreads-1 and waits for all of them.
  void run(Job& job) {
    job_ = &job;
    done_.store(0, std::memory_order_relaxed);
    remaining_.store(job.nthreads, std::memory_order_relaxed);
    for (unsigned i = 0; i < job.nthreads; ++i) {
      workers_[i]->go.fetch_add(1, std::memory_order_release);
      workers_[i]->go.notify_one();
    }
    while (done_.load(std::memory_order_acquire) == 0) done_.wait(0, std::memory_order_acquire);
    job_ = nullptr;
  }

 private:
  struct Worker {
    Pool* pool = nullptr;
    unsigned idx = 0;
    std::atomic<unsigned> go{0};
  };

  static void* main(void* arg) {
    Worker* w = static_cast<Worker*>(arg);
    unsigned seen = 0;
    for (;;) {
      w->go.wait(seen, std::memory_order_acquire);
      unsigned now = w->go.load(std::memory_order_acquire);
      if (now == seen) continue;
      seen = now;
      w->pool->work(w->idx);
      if (w->pool->remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        w->pool->done_.store(1, std::memory_order_release);
        w->pool->done_.notify_one();
      }
    }
    return nullptr;
  }

  // Thread idx of every block of the job, in block order.
  void work(unsigned idx) {
    Job& j = *job_;
    t_lane = idx % 32;
    t_warp = idx / 32;
    threadIdx = uint3{idx % j.block.x, (idx / j.block.x) % j.block.y, idx / (j.block.x * j.block.y)};
    for (unsigned z = 0; z < j.grid.z; ++z)
      for (unsigned y = 0; y < j.grid.y; ++y)
        for (unsigned x = 0; x < j.grid.x; ++x) {
          blockIdx = uint3{x, y, z};
          t_parity = 0;
          j.call();
          g_block->bar->arrive_and_drop();
          g_block->warps[t_warp].bar->arrive_and_drop();
          j.end->arrive_and_wait();
        }
  }

  std::vector<std::unique_ptr<Worker>> workers_;
  Job* job_ = nullptr;
  std::atomic<unsigned> remaining_{0};
  std::atomic<unsigned> done_{0};
};

inline std::mutex& launch_mutex() {
  static auto* m = new std::mutex;
  return *m;
}

inline const Entry* find(const char* name) {
  if (name == nullptr) return nullptr;
  auto& r = registry();
  auto it = r.find(name);
  return it == r.end() ? nullptr : &it->second;
}

}  // namespace lora_emu

#define LORA_EMU_REGISTER(fn) \
  static const bool lora_emu_registered_##fn [[maybe_unused]] = ::lora_emu::register_kernel(#fn, &fn);

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
  if (gx == 0 || gy == 0 || gz == 0 || gy > 65535 || gz > 65535) return LORA_EMU_ERR_GRID;
  if (shmem > LORA_EMU_MAX_SHMEM) return LORA_EMU_ERR_SHMEM;
  if (e->nargs > 0) {
    if (args == nullptr) return LORA_EMU_ERR_ARGS;
    for (int i = 0; i < e->nargs; ++i)
      if (args[i] == nullptr) return LORA_EMU_ERR_ARGS;
  }

  std::lock_guard<std::mutex> lock(launch_mutex());
  unsigned n = bx * by * bz;
  Pool& pool = Pool::get();
  if (!pool.ensure(n)) return LORA_EMU_ERR_THREADS;

  static auto* block = new BlockState;
  static auto* shared = new std::max_align_t[LORA_EMU_MAX_SHMEM / sizeof(std::max_align_t)];
  g_block = block;
  g_dynamic_shared = reinterpret_cast<unsigned char*>(shared);
  block->nthreads = n;
  block->reset();
  blockDim = dim3(bx, by, bz);
  gridDim = dim3(gx, gy, gz);

  Job job;
  job.call = e->bind(e->fn, args);
  job.grid = dim3(gx, gy, gz);
  job.block = dim3(bx, by, bz);
  job.nthreads = n;
  job.end.emplace(static_cast<std::ptrdiff_t>(n));
  pool.run(job);
  return LORA_EMU_OK;
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

#endif  // LORA_EMU_H
