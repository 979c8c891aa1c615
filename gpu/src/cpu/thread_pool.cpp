#include "gpu/cpu/thread_pool.h"

#include <chrono>

#include "gpu/devices.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MYRIAD_PAUSE() _mm_pause()
#else
#define MYRIAD_PAUSE() std::this_thread::yield()
#endif

namespace myriad::gpu::cpu {

ThreadPool::ThreadPool(int threads, int spin_us) : spin_us_(spin_us) {
  if (threads <= 0) threads = cpu_info().threads;
  workers_.reserve(size_t(threads - 1));
  for (int w = 1; w < threads; ++w) workers_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    epoch_.fetch_add(1);
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

void ThreadPool::work(int worker) {
  for (;;) {
    const int64_t b = next_.fetch_add(job_grain_, std::memory_order_relaxed);
    if (b >= job_n_) return;
    const int64_t e = b + job_grain_ < job_n_ ? b + job_grain_ : job_n_;
    job_fn_(job_ctx_, b, e, worker);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, Trampoline fn, void* ctx) {
  job_fn_ = fn;
  job_ctx_ = ctx;
  job_n_ = n;
  job_grain_ = grain;
  next_.store(0, std::memory_order_relaxed);
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  epoch_.fetch_add(1, std::memory_order_seq_cst);  // publishes the job
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);  // a sleeper checks epoch_ under mu_
    cv_.notify_all();
  }
  work(0);
  // Workers must check out before the job's fields may be rewritten.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; ++spins) {
    if (spins < 4096) {
      MYRIAD_PAUSE();
    } else {
      std::this_thread::yield();  // a worker was descheduled: give it the core
    }
  }
}

void ThreadPool::worker_loop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t cur = epoch_.load(std::memory_order_acquire);
    if (cur == seen) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
      int spins = 0;
      while ((cur = epoch_.load(std::memory_order_acquire)) == seen) {
        MYRIAD_PAUSE();
        if (++spins % 64 == 0 && std::chrono::steady_clock::now() > deadline) break;
      }
      if (cur == seen) {
        std::unique_lock<std::mutex> lock(mu_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        cv_.wait(lock, [&] { return epoch_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        cur = epoch_.load(std::memory_order_acquire);
      }
    }
    seen = cur;
    if (stop_.load()) return;
    work(worker);
    pending_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace myriad::gpu::cpu
