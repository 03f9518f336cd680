// harness.cc: every kernel of lora.cu run through the emulator (emu.h)
// under ThreadSanitizer, or under AddressSanitizer and
// UndefinedBehaviorSanitizer, on the launches of a trace.
//
//   harness TRACE   replays TRACE (written by the cudaemu build of package
//                   cuda with LORA_EMU_TRACE=TRACE): for each kernel, up to
//                   LORA_SANITIZE_CASES (default 8) of its launches, from
//                   the smallest to the largest within a bound, each on
//                   buffers of exactly the traced allocation sizes filled
//                   with random values in [0, 1) (finite as 16-bit halves
//                   too), run twice (blocks and threads
//                   in two random orders). A launch fails when the emulator
//                   reports a fault, when an output word that the input did
//                   not hold as NaN comes out NaN (a read of shared memory
//                   the block did not write: the emulator fills it with NaN),
//                   or when the two runs disagree beyond rounding (code that
//                   depends on the order of blocks or threads). A kernel of
//                   the module missing from the trace fails too; a kernel
//                   that takes index arrays or structs as input (which
//                   random values cannot stand for) is skipped, and said so,
//                   but for the Bank's kernels (lora_bank_*): those run on a
//                   slot table, packed ids, tiles and a permutation built
//                   here (replay_bank), on buffers of exactly their sizes. The
//                   sanitizers stop the process at their first report.
//   harness TRACE I/N
//                   the share I (0 ≤ I < N) of that replay: its units (a
//                   kernel's launch, or a Bank kernel's whole run) are
//                   numbered in the order above and dealt out in turn to N
//                   processes, so that N of them, run at once, replay the
//                   whole trace on N cores; share 0 also reports what the
//                   trace lacks and what is skipped.
//   harness self    checks the emulator itself: shared memory reads NaN
//                   until written, blocks run in a random order, and a warp
//                   collective whose mask names a lane that has returned or
//                   waits elsewhere is a fault.
//   harness race    a kernel with a race that only ThreadSanitizer sees:
//                   under -fsanitize=thread, the process must fail.
//
// LORA_EMU_SEED fixes the order of blocks and threads; the seed is printed
// at the start and with every failure.
#include "../lora.cu"

#include <cinttypes>
#include <cstdarg>
#include <errno.h>
#include <fstream>
#include <random>
#include <sstream>

// ---- kernels that check the emulator ---------------------------------------

// out[t] = s[t] after only thread 0 wrote s[0].
extern "C" __global__ void emutest_unwritten(float* out) {
  __shared__ float s[64];
  LORA_DYNAMIC_SHARED(int, d);
  if (threadIdx.x == 0) {
    s[0] = 1.0f;
    d[0] = 7;
  }
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
  out[64 + threadIdx.x] = static_cast<float>(d[threadIdx.x]);
}

// order[k] = the k-th block to run.
extern "C" __global__ void emutest_order(int* counter, int* order) {
  if (threadIdx.x == 0) order[atomicAdd(counter, 1)] = blockIdx.x;
}

// Lane 0 returns; the others shuffle over the full warp.
extern "C" __global__ void emutest_exited(float* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

// Lanes 0-15 shuffle over the full warp while lanes 16-31 wait at
// __syncthreads.
extern "C" __global__ void emutest_divergent(float* out) {
  if (threadIdx.x < 16) out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
  __syncthreads();
}

// Lanes 0-15 shuffle among themselves, lanes 16-31 among themselves: legal.
extern "C" __global__ void emutest_halves(float* out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  out[threadIdx.x] = __shfl_xor_sync(mask, static_cast<float>(lane), 1) +
                     static_cast<float>(__ballot_sync(mask, lane % 2 == 0) == (lane < 16 ? 0x5555u : 0x55550000u));
}

// Thread 1 reads what thread 0 writes, with no barrier between.
extern "C" __global__ void emutest_race(float* out) {
  __shared__ float s[2];
  if (threadIdx.x == 0) s[0] = 1.0f;
  if (threadIdx.x == 1) out[0] = s[0];
}

LORA_EMU_REGISTER(emutest_unwritten)
LORA_EMU_REGISTER(emutest_order)
LORA_EMU_REGISTER(emutest_exited)
LORA_EMU_REGISTER(emutest_divergent)
LORA_EMU_REGISTER(emutest_halves)
LORA_EMU_REGISTER(emutest_race)

namespace {

unsigned long long g_seed;
int g_failures = 0;

// The share of the replay this process runs (harness TRACE I/N), and the
// units of the replay counted so far.
int g_share = 0, g_shares = 1;
long g_unit = 0;

// mine counts a unit of the replay and reports whether it is this share's.
bool mine() { return g_unit++ % g_shares == g_share; }

void failf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void failf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stdout, "FAIL: ");
  vfprintf(stdout, fmt, ap);
  fprintf(stdout, " [LORA_EMU_SEED=%llu]\n", g_seed);
  va_end(ap);
  fflush(stdout);
  ++g_failures;
}

// launch runs kernel synchronously; the emulator's fault, or "".
std::string launch(const char* kernel, dim3 g, dim3 b, unsigned shmem, std::vector<uint64_t> vals) {
  std::vector<void*> args;
  for (auto& v : vals) args.push_back(&v);
  int n = static_cast<int>(vals.size());
  int rc = lora_emu_launch(kernel, g.x, g.y, g.z, b.x, b.y, b.z, shmem, args.data(), n);
  if (rc != LORA_EMU_OK) return "launch refused: code " + std::to_string(rc);
  char msg[2048];
  if (lora_emu_sync(msg, sizeof msg) != LORA_EMU_OK) return msg;
  return "";
}

uint64_t P(const void* p) { return reinterpret_cast<uint64_t>(p); }

int self_test() {
  // Unwritten shared memory reads NaN (and a large negative int).
  std::vector<float> out(128, 0.0f);
  std::string err = launch("emutest_unwritten", dim3(2), dim3(64), 256, {P(out.data())});
  if (!err.empty()) failf("emutest_unwritten: %s", err.c_str());
  if (out[0] != 1.0f || out[64] != 7.0f) failf("emutest_unwritten: written values read %g and %g", out[0], out[64]);
  for (int t = 1; t < 64; ++t) {
    if (!std::isnan(out[t])) failf("emutest_unwritten: unwritten static shared s[%d] reads %g, not NaN", t, out[t]);
    if (!(out[64 + t] < -1e6f)) failf("emutest_unwritten: unwritten dynamic shared d[%d] reads %g as int", t, out[64 + t]);
  }
  // Blocks run in a random order: 64 blocks in order would be a 1/64! chance.
  std::vector<int> order(64, -1);
  int counter = 0;
  err = launch("emutest_order", dim3(64), dim3(32), 0, {P(&counter), P(order.data())});
  bool sorted = std::is_sorted(order.begin(), order.end());
  std::vector<int> seen = order;
  std::sort(seen.begin(), seen.end());
  bool perm = true;
  for (int i = 0; i < 64; ++i) perm = perm && seen[i] == i;
  if (!err.empty() || sorted || !perm) failf("emutest_order: blocks ran in order %s (err %s)", sorted ? "0..63" : "not a permutation", err.c_str());
  // Legal partial masks.
  out.assign(128, 0.0f);
  err = launch("emutest_halves", dim3(1), dim3(64), 0, {P(out.data())});
  if (!err.empty()) failf("emutest_halves: %s", err.c_str());
  for (unsigned t = 0; t < 64; ++t)
    if (out[t] != static_cast<float>((t % 32) ^ 1u) + 1.0f) failf("emutest_halves: thread %u reads %g", t, out[t]);
  // The two faults; the emulator is sticky, so each runs in a child.
  struct Bad {
    const char* kernel;
    const char* want;
  } bad[] = {
      {"emutest_exited", "names lane 0, which has returned from the kernel"},
      {"emutest_divergent", "which waits at __syncthreads (a deadlock on a GPU)"},
  };
  for (const Bad& c : bad) {
    std::string cmd = "\"" + std::string(program_invocation_name) + "\" fault " + c.kernel + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string got;
    char buf[512];
    while (p != nullptr && fgets(buf, sizeof buf, p) != nullptr) got += buf;
    int status = p == nullptr ? -1 : pclose(p);
    if (status != 0 || got.find(c.want) == std::string::npos || got.find("LORA_EMU_SEED=") == std::string::npos)
      failf("%s: the emulator reported %s, want a fault with \"%s\" and the seed", c.kernel, got.c_str(), c.want);
    else
      printf("ok   %s: %s", c.kernel, got.c_str());
  }
  return g_failures;
}

// fault_child launches kernel, which must fault; prints the fault.
int fault_child(const char* kernel) {
  std::vector<float> out(64);
  std::string err = launch(kernel, dim3(1), dim3(32), 0, {P(out.data())});
  if (err.empty()) {
    printf("no fault\n");
    return 1;
  }
  // A later launch does not run, and the fault stays.
  out[5] = 42;
  std::string again = launch("emutest_halves", dim3(1), dim3(64), 0, {P(out.data())});
  if (again != err || out[5] != 42) {
    printf("the fault is not sticky: %s\n", again.c_str());
    return 1;
  }
  printf("%s\n", err.c_str());
  return 0;
}

// ---- trace replay ---------------------------------------------------------------

struct Arg {
  bool ptr = false;
  uint64_t val = 0;  // value, or the allocation's address in the traced run
  uint64_t size = 0, off = 0;
};

struct Case {
  std::string line, kernel;
  dim3 grid, block;
  unsigned shmem = 0;
  std::vector<Arg> args;
  double cost = 0;
};

bool parse(const std::string& line, Case& c) {
  std::istringstream in(line);
  unsigned n = 0;
  if (!(in >> c.kernel >> c.grid.x >> c.grid.y >> c.grid.z >> c.block.x >> c.block.y >> c.block.z >> c.shmem >> n)) return false;
  c.line = line;
  uint64_t bytes = 0;
  for (unsigned i = 0; i < n; ++i) {
    std::string t;
    if (!(in >> t) || t.size() < 2) return false;
    Arg a;
    if (t[0] == 'v') {
      a.val = strtoull(t.c_str() + 1, nullptr, 16);
    } else if (t[0] == 'p') {
      a.ptr = true;
      if (sscanf(t.c_str(), "p%" SCNu64 "+%" SCNu64 "@%" SCNx64, &a.size, &a.off, &a.val) != 3) return false;
      bytes += a.size;
    } else {
      return false;
    }
    c.args.push_back(a);
  }
  c.cost = static_cast<double>(c.grid.x) * c.grid.y * c.grid.z * c.block.x * c.block.y * c.block.z + bytes / 4.0;
  return true;
}

// run replays c twice; false on a failure (reported).
bool replay(const Case& c, uint64_t data_seed) {
  std::map<uint64_t, std::vector<uint32_t>> in;  // traced allocation -> initial words
  std::map<uint64_t, uint64_t> sizes;
  std::mt19937_64 rng(data_seed);
  // Positive: AdamW's second moments must be, and every kernel takes them.
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (const Arg& a : c.args)
    if (a.ptr && !in.count(a.val)) {
      sizes[a.val] = a.size;
      std::vector<uint32_t> w((a.size + 3) / 4);
      // Bit 14 cleared: each 16-bit half of a word is then finite read as
      // binary16 or bfloat16 too (its exponent not all ones), for the
      // kernels that take 16-bit operands; the float stays in [0, 1).
      for (auto& x : w) x = std::bit_cast<uint32_t>(u(rng)) & ~0x4000u;
      in[a.val] = std::move(w);
    }
  std::map<uint64_t, std::vector<uint32_t>> out[2];
  for (int run = 0; run < 2; ++run) {
    // Exactly the traced sizes, so that AddressSanitizer sees a read past
    // the end of any of them.
    std::map<uint64_t, char*> buf;
    for (auto& [k, w] : in) {
      char* p = static_cast<char*>(malloc(sizes[k]));
      memcpy(p, w.data(), sizes[k]);
      buf[k] = p;
    }
    std::vector<uint64_t> vals;
    for (const Arg& a : c.args) vals.push_back(a.ptr ? P(buf[a.val] + a.off) : a.val);
    std::string err = launch(c.kernel.c_str(), c.grid, c.block, c.shmem, vals);
    if (!err.empty()) {
      failf("%s: %s\n      launch: %s", c.kernel.c_str(), err.c_str(), c.line.c_str());
      return false;
    }
    for (auto& [k, p] : buf) {
      std::vector<uint32_t> w((sizes[k] + 3) / 4, 0);
      memcpy(w.data(), p, sizes[k]);
      out[run][k] = std::move(w);
      free(p);
    }
  }
  for (auto& [k, w0] : out[0]) {
    const auto& w1 = out[1][k];
    const auto& w = in[k];
    for (size_t i = 0; i < w0.size(); ++i) {
      if (w0[i] == w[i] && w1[i] == w[i]) continue;
      float a = std::bit_cast<float>(w0[i]), b = std::bit_cast<float>(w1[i]);
      if (std::isnan(a) || std::isnan(b)) {
        failf("%s: word %zu of a buffer of %" PRIu64 " bytes comes out NaN from finite inputs (%#x, %#x): a read of shared memory that was not written?\n      launch: %s",
              c.kernel.c_str(), i, sizes[k], w0[i], w1[i], c.line.c_str());
        return false;
      }
      if (w0[i] != w1[i] && !(std::fabs(a - b) <= 1e-4f * std::max(std::fabs(a), std::fabs(b)) + 1e-6f)) {
        failf("%s: word %zu of a buffer of %" PRIu64 " bytes is %.9g in one order of blocks and threads, %.9g in another\n      launch: %s",
              c.kernel.c_str(), i, sizes[k], a, b, c.line.c_str());
        return false;
      }
    }
  }
  return true;
}

// ---- the Bank's kernels ----------------------------------------------------------

// A Bank's kernels take a slot table (LoraBankSlot), ids packed in their
// parameters or tiles and a permutation: random words cannot stand for them.
// replay_bank builds them as bank_device.go does, for a table of 2^20 slots
// (MaxBankCapacity) of which four hold adapters, ranks 1, 3 and 8 (= rmax)
// among them, the last slot included, every other slot zero (r = 0); rows
// with id -1 mixed in. Every buffer is a vector of exactly its size, filled
// with random values in [0, 1). Each kernel runs twice (two orders of blocks
// and threads) on the same inputs; as in replay, an output that comes out NaN
// or that differs between the runs beyond rounding fails.

struct BankShape {
  int n, in, out;
};

// bank_pack packs ids (n <= LORA_BANK_N_MAX) as bankPack in bank_device.go does.
void bank_pack(const std::vector<int>& ids, uint64_t (&p)[6]) {
  for (auto& w : p) w = 0;
  for (size_t i = 0; i < ids.size(); ++i) p[i / 3] |= static_cast<uint64_t>(ids[i] + 1) << (21 * (i % 3));
}

// bank_twice launches kernel twice, outs restored to their first contents
// before each run, and compares the two runs; false on a failure (reported).
bool bank_twice(const char* kernel, const char* what, dim3 g, dim3 b, const std::vector<uint64_t>& vals,
                std::vector<std::vector<float>*> outs) {
  std::vector<std::vector<float>> first, initial;
  for (auto* o : outs) initial.push_back(*o);
  for (int run = 0; run < 2; ++run) {
    for (size_t i = 0; i < outs.size(); ++i) *outs[i] = initial[i];
    std::string err = launch(kernel, g, b, 0, vals);
    if (!err.empty()) {
      failf("%s (%s): %s", kernel, what, err.c_str());
      return false;
    }
    if (run == 0)
      for (auto* o : outs) first.push_back(*o);
  }
  for (size_t i = 0; i < outs.size(); ++i) {
    for (size_t j = 0; j < outs[i]->size(); ++j) {
      const float a = first[i][j], c = (*outs[i])[j];
      if (std::isnan(a) || std::isnan(c)) {
        failf("%s (%s): output %zu word %zu comes out NaN from finite inputs", kernel, what, i, j);
        return false;
      }
      if (a != c && !(std::fabs(a - c) <= 1e-4f * std::max(std::fabs(a), std::fabs(c)) + 1e-6f)) {
        failf("%s (%s): output %zu word %zu is %.9g in one order of blocks and threads, %.9g in another", kernel,
              what, i, j, a, c);
        return false;
      }
    }
  }
  return true;
}

// replay_bank runs the Bank's kernel k on each shape; it returns the number of
// launches that passed and sets *total.
int replay_bank(const std::string& k, int* total) {
  constexpr int kSlots = 1 << 20, rmax = 8;
  const BankShape shapes[] = {{3, 37, 45}, {16, 40, 33}};
  std::mt19937_64 rng(g_seed ^ 0xba4cull);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  auto fill = [&](size_t n) {
    std::vector<float> v(n);
    for (auto& x : v) x = u(rng);
    return v;
  };
  int ok = 0;
  *total = 0;
  for (const BankShape& sh : shapes) {
    const int n = sh.n, in = sh.in, out = sh.out;
    const int used[] = {0, 5, 77, kSlots - 1}, ranks[] = {1, 3, rmax, 2};
    std::vector<std::vector<float>> as, bs;
    std::vector<LoraBankSlot> slots(kSlots, LoraBankSlot{nullptr, nullptr, 0, 0.0f});
    for (int q = 0; q < 4; ++q) {
      as.push_back(fill(static_cast<size_t>(ranks[q]) * in));
      bs.push_back(fill(static_cast<size_t>(out) * ranks[q]));
    }
    for (int q = 0; q < 4; ++q) slots[used[q]] = LoraBankSlot{as[q].data(), bs[q].data(), ranks[q], 0.5f + q};
    std::vector<int> ids(n);
    for (int i = 0; i < n; ++i) ids[i] = i % 4 == 2 ? -1 : used[(i * 5 + i / 3) % 4];
    std::vector<float> x = fill(static_cast<size_t>(n) * in), W = fill(static_cast<size_t>(out) * in);
    std::vector<float> T = fill(static_cast<size_t>(n) * rmax), y = fill(static_cast<size_t>(n) * out);
    uint64_t p[6];
    bank_pack(ids, p);
    // Tiles and perm as bankGroups and forward in bank_device.go make them.
    std::vector<int> order, perm, tiles;
    for (int id : ids)
      if (id >= 0 && std::find(order.begin(), order.end(), id) == order.end()) order.push_back(id);
    for (int id : order) {
      const int start = static_cast<int>(perm.size());
      for (int i = 0; i < n; ++i)
        if (ids[i] == id) perm.push_back(i);
      for (int q = start; q < static_cast<int>(perm.size()); q += LORA_BANK_ROWS)
        tiles.insert(tiles.end(), {q, std::min(LORA_BANK_ROWS, static_cast<int>(perm.size()) - q), id});
    }
    const int ntiles = static_cast<int>(tiles.size() / 3);
    char what[64];
    snprintf(what, sizeof what, "n=%d in=%d out=%d", n, in, out);
    bool pass = true;
    const uint64_t P0 = p[0], P1 = p[1], P2 = p[2], P3 = p[3], P4 = p[4], P5 = p[5];
    if (k == "lora_bank_rowshrink") {
      pass = bank_twice(k.c_str(), what, dim3(n, (rmax + LORA_BANK_SHRINK_KS - 1) / LORA_BANK_SHRINK_KS),
                        dim3(LORA_BANK_SHRINK_THREADS),
                        {P(x.data()), P(slots.data()), P(T.data()), uint64_t(n), uint64_t(in), uint64_t(rmax), P0, P1, P2,
                         P3, P4, P5},
                        {&T});
    } else if (k == "lora_bank_rowexpand") {
      pass = bank_twice(k.c_str(), what, dim3((out + LORA_BANK_EXPAND_THREADS - 1) / LORA_BANK_EXPAND_THREADS, n),
                        dim3(LORA_BANK_EXPAND_THREADS),
                        {P(T.data()), P(slots.data()), P(y.data()), uint64_t(n), uint64_t(out), uint64_t(rmax), P0, P1,
                         P2, P3, P4, P5},
                        {&y});
    } else if (k == "lora_bank_small") {
      pass = bank_twice(k.c_str(), what,
                        dim3((out + LORA_BANK_SMALL_ROWS_PER_BLOCK - 1) / LORA_BANK_SMALL_ROWS_PER_BLOCK),
                        dim3(LORA_BANK_SMALL_THREADS),
                        {P(x.data()), P(W.data()), P(T.data()), P(slots.data()), P(y.data()), uint64_t(n), uint64_t(in),
                         uint64_t(out), uint64_t(rmax), P0, P1, P2, P3, P4, P5},
                        {&y});
    } else if (k == "lora_bank_shrink") {
      pass = bank_twice(k.c_str(), what, dim3(ntiles, (rmax + LORA_BANK_SHRINK_KS - 1) / LORA_BANK_SHRINK_KS),
                        dim3(LORA_BANK_SHRINK_THREADS),
                        {P(x.data()), P(slots.data()), P(tiles.data()), P(perm.data()), P(T.data()), uint64_t(ntiles),
                         uint64_t(in), uint64_t(rmax)},
                        {&T});
    } else if (k == "lora_bank_expand") {
      pass = bank_twice(k.c_str(), what, dim3(ntiles, (out + LORA_BANK_EXPAND_THREADS - 1) / LORA_BANK_EXPAND_THREADS),
                        dim3(LORA_BANK_EXPAND_THREADS),
                        {P(T.data()), P(slots.data()), P(tiles.data()), P(perm.data()), P(y.data()), uint64_t(ntiles),
                         uint64_t(out), uint64_t(rmax)},
                        {&y});
    } else {
      failf("%s: a Bank kernel replay_bank does not know: add it there", k.c_str());
      pass = false;
    }
    ++*total;
    ok += pass ? 1 : 0;
  }
  return ok;
}

int replay_trace(const char* path) {
  std::ifstream f(path);
  if (!f) {
    failf("cannot read the trace %s", path);
    return 1;
  }
  std::map<std::string, std::vector<Case>> by;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (line.empty()) continue;
    Case c;
    if (!parse(line, c)) {
      failf("%s:%d: cannot parse %s", path, lineno, line.c_str());
      continue;
    }
    if (lora_emu_kernel_nargs(c.kernel.c_str()) != static_cast<int>(c.args.size())) {
      failf("%s:%d: %s takes %d arguments, the trace has %zu", path, lineno, c.kernel.c_str(),
            lora_emu_kernel_nargs(c.kernel.c_str()), c.args.size());
      continue;
    }
    by[c.kernel].push_back(std::move(c));
  }
  const char* e = getenv("LORA_SANITIZE_CASES");
  size_t want = e != nullptr ? strtoul(e, nullptr, 10) : 8;
  const double max_cost = 1 << 21;
  int kernels = 0, launches = 0, skipped = 0;
  for (int i = 0; i < lora_emu_kernel_count(); ++i) {
    std::string k = lora_emu_kernel_name(i);
    if (k.rfind("emutest_", 0) == 0) continue;
    ++kernels;
    if (k.rfind("lora_bank_", 0) == 0) {
      if (!mine()) continue;
      int total = 0;
      const int ok = replay_bank(k, &total);
      launches += total;
      printf("%-4s %-22s %d/%d launches (slot table, ids and tiles built by replay_bank)\n",
             ok == total ? "ok" : "FAIL", k.c_str(), ok, total);
      fflush(stdout);
      continue;
    }
    if (!lora_emu::find(k.c_str())->plain) {
      if (g_share == 0) {
        printf("skip %-22s takes index arrays or structs as input: random buffers cannot drive it\n", k.c_str());
        ++skipped;
      }
      continue;
    }
    auto it = by.find(k);
    if (it == by.end()) {
      if (g_share == 0) failf("%s: no launch in the trace %s", k.c_str(), path);
      continue;
    }
    auto& cs = it->second;
    std::sort(cs.begin(), cs.end(), [](const Case& a, const Case& b) { return a.cost < b.cost; });
    size_t usable = 0;
    while (usable < cs.size() && cs[usable].cost <= max_cost) ++usable;
    if (usable == 0) usable = 1;
    // From the smallest to the largest usable, evenly spaced.
    std::vector<size_t> pick;
    size_t m = std::min(want, usable);
    for (size_t j = 0; j < m; ++j) {
      size_t idx = m == 1 ? 0 : j * (usable - 1) / (m - 1);
      if (pick.empty() || pick.back() != idx) pick.push_back(idx);
    }
    int ok = 0, ran = 0;
    for (size_t idx : pick) {
      if (!mine()) continue;
      ok += replay(cs[idx], 1000 + idx);
      ++ran;
    }
    if (ran == 0) continue;
    launches += ran;
    if (g_shares == 1) {
      printf("%-4s %-22s %d/%d launches (of %zu traced)\n", ok == ran ? "ok" : "FAIL", k.c_str(), ok, ran, cs.size());
    } else {
      printf("%-4s %-22s %d/%d launches (of the %zu picked from %zu traced)\n", ok == ran ? "ok" : "FAIL", k.c_str(),
             ok, ran, pick.size(), cs.size());
    }
    fflush(stdout);
  }
  if (g_shares > 1) printf("share %d of %d: ", g_share, g_shares);
  printf("%d kernels (%d skipped), %d launches, %d failures\n", kernels, skipped, launches, g_failures);
  return g_failures;
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  g_seed = lora_emu_seed();
  if (argc == 3 && std::string(argv[1]) == "fault") return fault_child(argv[2]);
  printf("lora sanitize harness, LORA_EMU_SEED=%llu\n", g_seed);
  if (argc == 2 && std::string(argv[1]) == "self") return self_test() != 0;
  if (argc == 2 && std::string(argv[1]) == "race") {
    std::vector<float> out(2);
    std::string err = launch("emutest_race", dim3(1), dim3(32), 0, {P(out.data())});
    printf("emutest_race ran: %s\n", err.empty() ? "no fault from the emulator" : err.c_str());
    return 0;
  }
  if (argc == 2) return replay_trace(argv[1]) != 0;
  if (argc == 3) {
    char* end = nullptr;
    g_share = static_cast<int>(strtol(argv[2], &end, 10));
    if (end != argv[2] && *end == '/') {
      const char* n = end + 1;
      g_shares = static_cast<int>(strtol(n, &end, 10));
      if (end != n && *end == 0 && g_shares > 0 && g_share >= 0 && g_share < g_shares) return replay_trace(argv[1]) != 0;
    }
    fprintf(stderr, "harness: %s is not a share I/N with 0 <= I < N\n", argv[2]);
    return 2;
  }
  fprintf(stderr, "usage: harness TRACE [I/N] | self | race\n");
  return 2;
}
