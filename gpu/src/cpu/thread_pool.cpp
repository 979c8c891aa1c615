#include "gpu/cpu/thread_pool.h"

#include <chrono>

#include "gpu/devices.h"
#include "runtime/result.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MYRIAD_PAUSE() _mm_pause()
#else
#define MYRIAD_PAUSE() std::this_thread::yield()
#endif

namespace myriad::gpu::cpu {
namespace {
constexpr uint64_t kStopEpoch = 0xffffffffu;
inline uint32_t epoch_of(uint64_t c) { return uint32_t(c >> 32); }
}  // namespace

ThreadPool::ThreadPool(int threads, int spin_us) : spin_us_(spin_us) {
  if (threads <= 0) threads = cpu_info().threads;
  shares_.reset(new Share[size_t(threads)]);
  workers_.reserve(size_t(threads - 1));
  for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    claim_.store(kStopEpoch << 32);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

int64_t ThreadPool::grain_for(int64_t n, int chunks_per_thread, int64_t multiple) const {
  const int64_t chunks = int64_t(size()) * chunks_per_thread;
  int64_t g = (n + chunks - 1) / chunks;
  if (multiple > 1) g = (g + multiple - 1) / multiple * multiple;
  return g < 1 ? 1 : g;
}

namespace {
inline uint64_t share_word(uint32_t epoch, int64_t front, int64_t back) {
  return uint64_t(epoch) << 32 | uint64_t(front) << 16 | uint64_t(back);
}
inline int64_t share_front(uint64_t w) { return int64_t((w >> 16) & 0xffff); }
inline int64_t share_back(uint64_t w) { return int64_t(w & 0xffff); }
}  // namespace

void ThreadPool::work_shares(uint32_t epoch, int worker) {
  Job& job = jobs_[epoch & 1];
  const int64_t n = job.n.load(std::memory_order_relaxed);
  const int64_t piece = job.grain.load(std::memory_order_relaxed);
  const int own = job.own_pieces.load(std::memory_order_relaxed);
  auto run_pieces = [&](int64_t p0, int64_t p1) {
    // The pieces are ours and the job cannot complete without them: its fields are stable.
    const int64_t e = p1 * piece < n ? p1 * piece : n;
    job.fn.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), p0 * piece, e, worker);
    done_.fetch_add(p1 - p0, std::memory_order_acq_rel);
  };
  // Own share, from the front.
  std::atomic<uint64_t>& mine = shares_[size_t(worker)].word;
  uint64_t cur = mine.load(std::memory_order_acquire);
  for (;;) {
    if (epoch_of(cur) != epoch) return;  // superseded: a later job owns the slot
    const int64_t f = share_front(cur), b = share_back(cur);
    if (f >= b) break;
    const int64_t f1 = f + own < b ? f + own : b;
    if (!mine.compare_exchange_weak(cur, share_word(epoch, f1, b), std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    run_pieces(f, f1);
    cur = mine.load(std::memory_order_acquire);
  }
  // Then single pieces from the back of the largest share left.
  for (;;) {
    int victim = -1;
    int64_t most = 0;
    uint64_t vw = 0;
    for (int i = 0; i < size(); ++i) {
      const uint64_t w = shares_[size_t(i)].word.load(std::memory_order_acquire);
      if (epoch_of(w) != epoch) return;
      if (share_back(w) - share_front(w) > most) most = share_back(w) - share_front(w), victim = i, vw = w;
    }
    if (victim < 0) return;
    const int64_t f = share_front(vw), b = share_back(vw);
    if (!shares_[size_t(victim)].word.compare_exchange_weak(vw, share_word(epoch, f, b - 1), std::memory_order_acq_rel,
                                                            std::memory_order_acquire))
      continue;
    run_pieces(b - 1, b);
  }
}

void ThreadPool::work(uint32_t epoch, int worker) {
  Job& job = jobs_[epoch & 1];
  if (job.own_pieces.load(std::memory_order_relaxed) > 0) {
    work_shares(epoch, worker);
    return;
  }
  // Read after seeing `epoch` (acquire); if the slot has since been reused for
  // a later job, the CAS below fails because claim_ moved on.
  const int64_t n = job.n.load(std::memory_order_relaxed);
  const int64_t grain = job.grain.load(std::memory_order_relaxed);
  uint64_t cur = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (epoch_of(cur) != epoch) return;
    const int64_t b = int64_t(uint32_t(cur));
    if (b >= n) return;
    const int64_t e = b + grain < n ? b + grain : n;
    if (!claim_.compare_exchange_weak(cur, (uint64_t(epoch) << 32) | uint64_t(e), std::memory_order_acq_rel,
                                      std::memory_order_acquire))
      continue;
    // The chunk is ours and the job cannot complete without it: its fields are stable.
    job.fn.load(std::memory_order_relaxed)(job.ctx.load(std::memory_order_relaxed), b, e, worker);
    done_.fetch_add(e - b, std::memory_order_acq_rel);
    cur = claim_.load(std::memory_order_acquire);
  }
}

ThreadPool::Job& ThreadPool::next_job(Trampoline fn, void* ctx, int64_t n, int64_t grain, int own_pieces) {
  epoch_ = (epoch_ + 1) % uint32_t(kStopEpoch);
  Job& job = jobs_[epoch_ & 1];
  job.fn.store(fn, std::memory_order_relaxed);
  job.ctx.store(ctx, std::memory_order_relaxed);
  job.n.store(n, std::memory_order_relaxed);
  job.grain.store(grain, std::memory_order_relaxed);
  job.own_pieces.store(own_pieces, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  return job;
}

void ThreadPool::publish_and_join(int64_t done_when) {
  claim_.store(uint64_t(epoch_) << 32, std::memory_order_seq_cst);  // publishes the job
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);  // a sleeper checks claim_ under mu_
    cv_.notify_all();
  }
  work(epoch_, 0);
  // Wait for chunks other workers claimed.
  for (int spins = 0; done_.load(std::memory_order_acquire) != done_when; ++spins) {
    if (spins < 2048) {
      MYRIAD_PAUSE();
    } else {
      std::this_thread::yield();  // its worker was descheduled: give it the core
    }
  }
}

void ThreadPool::run(int64_t n, int64_t grain, Trampoline fn, void* ctx) {
  MYRIAD_CHECK(n < (int64_t(1) << 31), "parallel_for: too many items");
  next_job(fn, ctx, n, grain, 0);
  publish_and_join(n);
}

void ThreadPool::run_shares(int64_t n, int64_t piece, int own_pieces, Trampoline fn, void* ctx) {
  next_job(fn, ctx, n, piece, own_pieces);
  const int64_t pieces = (n + piece - 1) / piece, p = size();
  for (int i = 0; i < p; ++i)
    shares_[size_t(i)].word.store(share_word(epoch_, pieces * i / p, pieces * (i + 1) / p), std::memory_order_relaxed);
  publish_and_join(pieces);  // done_ counts pieces in a shares job
}

void ThreadPool::worker_loop(int worker) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t cur = epoch_of(claim_.load(std::memory_order_acquire));
    if (cur == seen) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
      int spins = 0;
      while ((cur = epoch_of(claim_.load(std::memory_order_acquire))) == seen) {
        MYRIAD_PAUSE();
        if (++spins % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
      }
      if (cur == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lock, [&] { return epoch_of(claim_.load(std::memory_order_seq_cst)) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        cur = epoch_of(claim_.load(std::memory_order_acquire));
      }
    }
    seen = cur;
    if (stop_.load()) return;
    work(cur, worker);
  }
}

}  // namespace myriad::gpu::cpu
