// cuda_emu's scheduler: fibers, barriers, shuffles and launches. One block
// runs at a time. A fiber runs until it reaches a barrier or returns, then
// hands the thread to the next ready fiber in thread order; a barrier's last
// arrival marks the waiting fibers ready. See cuda_emu.h for what is emulated.
#include "cuda_emu.h"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdarg>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "cuda_emu_internal.h"
#include "include/cuda_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_EMU_ASAN 1
#else
#define CUDA_EMU_ASAN 0
#endif

#if defined(__x86_64__)
#define CUDA_EMU_ASM_SWITCH 1
#else
#define CUDA_EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

extern "C" [[noreturn]] void cuda_emu_fiber_entry();

#if CUDA_EMU_ASM_SWITCH
// Saves the callee-saved registers on the current stack, stores its pointer
// in *save_sp and resumes the stack next_sp (System V x86-64). glibc's
// swapcontext does the same plus a sigprocmask system call per switch. MXCSR
// and the x87 control word are not switched (ldmxcsr and fldcw were a third
// of a switch): no fiber changes them, so all share the launching thread's.
extern "C" void cuda_emu_switch(void** save_sp, void* next_sp);
asm(R"(
  .text
  .p2align 4
  .globl cuda_emu_switch
  .hidden cuda_emu_switch
  .type cuda_emu_switch, @function
cuda_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuda_emu_switch, .-cuda_emu_switch
)");
#endif

namespace cuda_emu {

const uint3* g_thread_idx = nullptr;
uint3 g_block_idx;
dim3 g_block_dim, g_grid_dim;

namespace {

struct Context {
#if CUDA_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc{};
#endif
  void* fake_stack = nullptr;  // AddressSanitizer's per-fiber state
  const void* bottom = nullptr;
  size_t size = 0;
};

void switch_context(Context& from, Context& to, bool from_finished = false) {
#if CUDA_EMU_ASAN
  __sanitizer_start_switch_fiber(from_finished ? nullptr : &from.fake_stack, to.bottom, to.size);
#else
  (void)from_finished;
#endif
#if CUDA_EMU_ASM_SWITCH
  cuda_emu_switch(&from.sp, to.sp);
#else
  swapcontext(&from.uc, &to.uc);
#endif
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(from.fake_stack, nullptr, nullptr);
#endif
}

void make_context(Context& c, char* stack, size_t size) {
  c.bottom = stack;
  c.size = size;
  c.fake_stack = nullptr;
#if CUDA_EMU_ASM_SWITCH
  // The frame cuda_emu_switch pops: a pad word, r15..rbp (zero: the frame
  // chain ends here), then the "return address" cuda_emu_fiber_entry, entered
  // with rsp = 8 mod 16 as after a call.
  const uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top - 9 * 8);
  for (int i = 0; i <= 6; ++i) sp[i] = 0;
  sp[7] = reinterpret_cast<uint64_t>(&cuda_emu_fiber_entry);
  sp[8] = 0;
  c.sp = sp;
#else
  getcontext(&c.uc);
  c.uc.uc_stack.ss_sp = stack;
  c.uc.uc_stack.ss_size = size;
  c.uc.uc_link = nullptr;
  makecontext(&c.uc, reinterpret_cast<void (*)()>(&cuda_emu_fiber_entry), 0);
#endif
}

enum class State : uint8_t { kReady, kAtSyncthreads, kAtShuffle, kDone };
const char* state_name(State s) {
  switch (s) {
    case State::kReady: return "ready";
    case State::kAtSyncthreads: return "at __syncthreads";
    case State::kAtShuffle: return "at a warp shuffle";
    case State::kDone: return "returned";
  }
  return "?";
}

struct Fiber {
  Context ctx;
  uint3 idx;
  int linear = 0;
  unsigned shuffles = 0;  // parity picks the exchange slots (see warp_exchange)
  State state = State::kReady;
};

struct Warp {
  int lanes = 0, arrived = 0, exited = 0;
  uint64_t slots[2][32];
};

// Fiber stacks: one mapping for the most threads a block may have, each stack
// above a guard page, so a deep kernel faults instead of corrupting a neighbour.
constexpr size_t kStackBytes = size_t(CUDA_EMU_ASAN ? 256 : 64) << 10;  // ASan's redzones make frames larger
constexpr size_t kGuardBytes = 4096;
constexpr unsigned kMaxThreads = 1024;
char* fiber_stack(unsigned i) {
  static char* base = [] {
    const size_t total = size_t(kMaxThreads) * (kStackBytes + kGuardBytes);
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "cuda_emu: cannot map %zu bytes of fiber stacks\n", total);
      std::abort();
    }
    for (unsigned t = 0; t < kMaxThreads; ++t)
      mprotect(static_cast<char*>(p) + size_t(t) * (kStackBytes + kGuardBytes), kGuardBytes, PROT_NONE);
    return static_cast<char*>(p);
  }();
  return base + size_t(i) * (kStackBytes + kGuardBytes) + kGuardBytes;
}

struct Launch {
  const char* kernel = "";
  const std::function<void()>* body = nullptr;
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  Fiber* current = nullptr;
  int live = 0, at_syncthreads = 0;
  Context scheduler;
  void* shared = nullptr;
};
Launch* g_launch = nullptr;
std::mutex g_launch_mutex;  // the state above is one launch's

// Names the kernel, block and thread, then the printf-formatted reason; aborts.
[[noreturn]] __attribute__((format(printf, 1, 2))) void fail(const char* format, ...) {
  const Launch& l = *g_launch;
  std::fprintf(stderr, "cuda_emu: kernel %s block (%u,%u,%u)", l.kernel, g_block_idx.x, g_block_idx.y, g_block_idx.z);
  if (l.current) std::fprintf(stderr, " thread (%u,%u,%u)", l.current->idx.x, l.current->idx.y, l.current->idx.z);
  std::fprintf(stderr, ": ");
  va_list args;
  va_start(args, format);
  std::vfprintf(stderr, format, args);
  va_end(args);
  std::fprintf(stderr, "\n");
  std::fflush(stderr);
  std::abort();
}

// Hands the OS thread to the next ready fiber after f in thread order, or to
// the scheduler when there is none (it starts again from thread 0, or finds
// the block done or stuck): one switch per blocked fiber, not two.
void pass_on(Launch& l, Fiber& f, bool finished = false) {
  for (size_t i = size_t(f.linear) + 1; i < l.fibers.size(); ++i) {
    Fiber& next = l.fibers[i];
    if (next.state != State::kReady) continue;
    l.current = &next;
    g_thread_idx = &next.idx;
    switch_context(f.ctx, next.ctx, finished);
    return;  // f resumed: whoever switched to it made it current
  }
  switch_context(f.ctx, l.scheduler, finished);
}
void yield(Launch& l, Fiber& f) { pass_on(l, f); }

void release(Launch& l, State waiting, int first, int count) {
  for (int i = first; i < first + count; ++i)
    if (l.fibers[size_t(i)].state == waiting) l.fibers[size_t(i)].state = State::kReady;
}

void finish_fiber(Launch& l, Fiber& f) {
  f.state = State::kDone;
  --l.live;
  Warp& w = l.warps[size_t(f.linear / 32)];
  ++w.exited;
  if (w.arrived > 0)
    fail("warp shuffle after a lane returned: this lane returned while %d lane(s) wait in a shuffle", w.arrived);
  if (l.at_syncthreads > 0 && l.at_syncthreads == l.live) {
    release(l, State::kAtSyncthreads, 0, int(l.fibers.size()));
    l.at_syncthreads = 0;
  }
}

[[noreturn]] void fail_deadlock(const Launch& l) {
  int counts[4] = {};
  const Fiber* example[4] = {};
  for (const Fiber& f : l.fibers) {
    const int s = int(f.state);
    if (counts[s]++ == 0) example[s] = &f;
  }
  char states[3][96] = {};
  for (int s = 1; s < 4; ++s)
    if (counts[s])
      std::snprintf(states[s - 1], sizeof states[s - 1], " %d %s (first: thread %u,%u,%u)", counts[s],
                    state_name(State(s)), example[s]->idx.x, example[s]->idx.y, example[s]->idx.z);
  fail("deadlock: no thread can go on (a barrier or shuffle that not every thread reaches);%s%s%s", states[0],
       states[1], states[2]);
}

void run_block(Launch& l, unsigned threads) {
  const dim3 b = g_block_dim;
#if CUDA_EMU_ASAN
  if (!l.scheduler.bottom) {  // the launching thread's stack, where fibers switch back to
    pthread_attr_t attr;
    void* addr = nullptr;
    size_t size = 0;
    pthread_getattr_np(pthread_self(), &attr);
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
    l.scheduler.bottom = addr;
    l.scheduler.size = size;
  }
#endif
  for (unsigned i = 0; i < threads; ++i) {
    Fiber& f = l.fibers[i];
    f.idx = uint3{i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
    f.linear = int(i);
    f.shuffles = 0;
    f.state = State::kReady;
    char* stack = fiber_stack(i);
#if CUDA_EMU_ASAN
    __asan_unpoison_memory_region(stack, kStackBytes);  // a finished fiber's frames leave poison behind
#endif
    make_context(f.ctx, stack, kStackBytes);
  }
  for (size_t w = 0; w < l.warps.size(); ++w)
    l.warps[w] = Warp{std::min(32, int(threads) - int(w) * 32), 0, 0, {}};
  l.live = int(threads);
  l.at_syncthreads = 0;
  while (l.live > 0) {
    Fiber* ready = nullptr;
    for (Fiber& f : l.fibers)
      if (f.state == State::kReady) {
        ready = &f;
        break;
      }
    l.current = ready;
    if (!ready) fail_deadlock(l);
    g_thread_idx = &ready->idx;
    switch_context(l.scheduler, ready->ctx);
  }
  l.current = nullptr;
}

std::mutex g_optin_mutex;
std::map<const void*, int> g_dynamic_shared_optin;  // kernel -> bytes, by cudaFuncSetAttribute

}  // namespace

void syncthreads() {
  Launch& l = *g_launch;
  Fiber& f = *l.current;
  if (++l.at_syncthreads == l.live) {
    release(l, State::kAtSyncthreads, 0, int(l.fibers.size()));
    l.at_syncthreads = 0;
    return;
  }
  f.state = State::kAtSyncthreads;
  yield(l, f);
}

// Two slot sets alternate: a lane that has read shuffle g's value and runs on
// to g + 1 writes the other set, and cannot reach g + 2 (this set again) before
// every lane has arrived at g + 1, i.e. has read g.
uint64_t warp_exchange(uint64_t bits, int src) {
  Launch& l = *g_launch;
  Fiber& f = *l.current;
  Warp& w = l.warps[size_t(f.linear / 32)];
  const int lane = f.linear % 32;
  if (w.lanes < 32) fail("full-warp shuffle in a warp of %d threads", w.lanes);
  if (w.exited) fail("warp shuffle after a lane returned: %d lane(s) of this warp already returned", w.exited);
  const unsigned set = f.shuffles++ & 1u;
  w.slots[set][lane] = bits;
  if (++w.arrived == w.lanes) {
    release(l, State::kAtShuffle, f.linear - lane, w.lanes);
    w.arrived = 0;
  } else {
    f.state = State::kAtShuffle;
    yield(l, f);
  }
  return w.slots[set][src];
}

void check_full_mask(unsigned mask) {
  if (mask != 0xffffffffu) fail("only full-warp shuffle masks are emulated");
}

void* dynamic_shared_memory() { return g_launch->shared; }

void set_dynamic_shared_optin(const void* kernel, int bytes) {
  std::lock_guard lock(g_optin_mutex);
  g_dynamic_shared_optin[kernel] = bytes;
}

void launch(const char* kernel, const void* kernel_address, const LaunchConfig& cfg, std::function<void()> body) {
  const dim3 g = cfg.grid, b = cfg.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  size_t shared_limit = 48 << 10;
  {
    std::lock_guard lock(g_optin_mutex);
    if (auto it = g_dynamic_shared_optin.find(kernel_address); it != g_dynamic_shared_optin.end())
      shared_limit = size_t(it->second);
  }
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.y > 65535 || g.z > 65535 || threads == 0 || threads > kMaxThreads ||
      b.z > 64 || cfg.shared_bytes > shared_limit) {
    report(cudaErrorInvalidConfiguration);
    return;
  }
  enqueue(cfg.stream, [kernel, cfg, body = std::move(body)] { run_grid(kernel, cfg, body); });
}

void run_grid(const char* kernel, const LaunchConfig& cfg, const std::function<void()>& body) {
  const dim3 g = cfg.grid, b = cfg.block;
  const unsigned long long threads = 1ull * b.x * b.y * b.z;
  std::lock_guard lock(g_launch_mutex);
  Launch l;
  l.kernel = kernel;
  l.body = &body;
  l.fibers.resize(threads);
  l.warps.resize((threads + 31) / 32);
  std::unique_ptr<unsigned char[]> shared(new unsigned char[cfg.shared_bytes]);
  l.shared = shared.get();
  Launch* const outer = g_launch;
  g_launch = &l;
  g_grid_dim = g;
  g_block_dim = b;
  for (unsigned z = 0; z < g.z; ++z)
    for (unsigned y = 0; y < g.y; ++y)
      for (unsigned x = 0; x < g.x; ++x) {
        g_block_idx = uint3{x, y, z};
        std::memset(l.shared, 0xff, cfg.shared_bytes);  // uninitialised on a device: NaN here
        run_block(l, unsigned(threads));
      }
  g_launch = outer;
}

}  // namespace cuda_emu

extern "C" [[noreturn]] void cuda_emu_fiber_entry() {
  using namespace cuda_emu;
  Launch& l = *g_launch;
#if CUDA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
  (*l.body)();
  Fiber& f = *l.current;
  finish_fiber(l, f);
  pass_on(l, f, /*finished=*/true);
  __builtin_unreachable();  // a finished fiber is never resumed
}
