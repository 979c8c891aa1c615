// A fork/join thread pool for the CPU backend: `parallel_for` splits [0, n)
// into chunks that the calling thread and the pool's workers claim from a
// shared counter (dynamic, so a descheduled worker on a busy machine does
// not stall the step), and returns when every chunk has run.
//
// Built for ~100 parallel regions per decoded token: workers spin briefly
// (spin_us) after a region before sleeping on a condition variable, so back
// to back regions cost a few atomics, not a wake-up each. A region waits only
// for chunks already claimed, never for a worker that has not woken (on a
// busy shared machine the caller then simply runs more chunks itself).
//
// Owned by one executor (one pool per process in practice: size it to the
// machine). parallel_for may be called by one thread at a time and must not
// be nested (a chunk must not call parallel_for on the same pool).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <utility>
#include <mutex>
#include <thread>
#include <vector>

namespace myriad::gpu::cpu {

class ThreadPool {
 public:
  // `threads` participants including the caller; <= 0 => the machine's
  // hardware threads. `spin_us`: how long an idle worker spins before sleeping.
  explicit ThreadPool(int threads = 0, int spin_us = 200);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Calls fn(begin, end, worker) for disjoint chunks covering [0, n), each of
  // `grain` items (the last may be shorter); worker is in [0, size()).
  // Runs inline when there is a single chunk or a single thread.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (workers_.empty() || n <= grain) {
      fn(int64_t(0), n, 0);
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run(n, grain, [](void* ctx, int64_t b, int64_t e, int w) { (*static_cast<Fn*>(ctx))(b, e, w); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Calls fn(begin, end, worker) for pieces covering [0, n) where each
  // participant owns a contiguous share (n / size()) and takes `own_pieces`
  // pieces of `piece` items at a time from its front; one that has finished
  // its share takes single pieces from the back of the largest share left.
  // For streaming work (a weight matrix read once): each thread reads one
  // long contiguous run (the hardware prefetcher stays trained), and the
  // region still ends within one piece of balanced, also when a worker is
  // descheduled or never wakes (its share is taken from the back). Falls
  // back to parallel_for above 65535 pieces.
  template <class F>
  void parallel_for_shares(int64_t n, int64_t piece, int own_pieces, F&& fn) {
    if (n <= 0) return;
    if (piece < 1) piece = 1;
    if (own_pieces < 1) own_pieces = 1;
    const int64_t pieces = (n + piece - 1) / piece;
    if (workers_.empty() || pieces <= 1 || pieces > kMaxSharePieces) {
      parallel_for(n, piece * own_pieces, std::forward<F>(fn));
      return;
    }
    using Fn = std::remove_reference_t<F>;
    run_shares(n, piece, own_pieces,
               [](void* ctx, int64_t b, int64_t e, int w) { (*static_cast<Fn*>(ctx))(b, e, w); },
               const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // A chunk size giving each participant about `chunks_per_thread` chunks of
  // [0, n), rounded up to a multiple of `multiple`.
  int64_t grain_for(int64_t n, int chunks_per_thread = 4, int64_t multiple = 1) const;

 private:
  static constexpr int64_t kMaxSharePieces = 0xffff;
  using Trampoline = void (*)(void*, int64_t, int64_t, int);
  void run(int64_t n, int64_t grain, Trampoline fn, void* ctx);
  void run_shares(int64_t n, int64_t piece, int own_pieces, Trampoline fn, void* ctx);
  struct Job;
  // Fills the next job slot (a new epoch), not yet visible to workers.
  Job& next_job(Trampoline fn, void* ctx, int64_t n, int64_t grain, int own_pieces);
  // Publishes it, runs chunks on the caller, waits until done_ reaches done_when.
  void publish_and_join(int64_t done_when);
  // Claims and runs chunks of job `epoch` until none is left or it is superseded.
  void work(uint32_t epoch, int worker);
  void work_shares(uint32_t epoch, int worker);
  void worker_loop(int worker);

  // Jobs alternate between two slots; a job's fields are written before its
  // epoch is published in claim_ and stay put until all its items are done.
  // claim_ packs (epoch << 32 | next unclaimed item): a worker claims a chunk
  // by CAS, which fails if the job it read has been superseded, so a worker
  // that wakes late never blocks or corrupts a later job, and completion
  // waits only for chunks actually claimed (not for every worker to wake).
  struct Job {
    std::atomic<Trampoline> fn{nullptr};
    std::atomic<void*> ctx{nullptr};
    std::atomic<int64_t> n{0};
    std::atomic<int64_t> grain{1};       // items a chunk (parallel_for) or a piece (shares)
    std::atomic<int> own_pieces{0};      // 0: parallel_for; else a shares job
  };
  Job jobs_[2];
  // Shares jobs: participant i's remaining pieces [front, back), packed as
  // (epoch << 32 | front << 16 | back) so that a claim by a worker still on an
  // older job fails its CAS. A job's done_ counts pieces, not items.
  struct alignas(64) Share {
    std::atomic<uint64_t> word{0};
  };
  std::unique_ptr<Share[]> shares_;
  alignas(64) std::atomic<uint64_t> claim_{0};
  alignas(64) std::atomic<int64_t> done_{0};     // items of the current job finished
  alignas(64) std::atomic<int> sleepers_{0};
  uint32_t epoch_ = 0;                           // caller's copy of the current epoch
  std::atomic<bool> stop_{false};
  int spin_us_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> workers_;
};

}  // namespace myriad::gpu::cpu
