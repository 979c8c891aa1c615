// The machine's memory read bandwidth as the CPU benchmarks measure it
// (bench/decode's floor, bench/multilora's "read bandwidth" line): a
// multi-threaded streaming read of a huge-page buffer far larger than the
// caches, with the widest loads the CPU has, best of several passes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "gpu/cpu/huge_page_buffer.h"
#include "gpu/cpu/thread_pool.h"

namespace myriad::bench {

using gpu::cpu::HugePageBuffer;
using gpu::cpu::ThreadPool;

// Streaming read of buf[0, n) over the pool's threads with each read loop
// this CPU can run (the widest loads first: fewer instructions per cache line
// keep more lines in flight); the best GB/s of `passes`. `portable_best` keeps
// the best of the plain 8-byte loop alone (shown beside it: earlier runs used
// only that loop). In read_bandwidth.cpp, compiled at the build's -O3 (the
// bench programs' own glue compiles at -Og: bench/CMakeLists.txt).
double read_bandwidth(ThreadPool& pool, const uint64_t* buf, size_t n, int passes, double& portable_best);

// The machine's read bandwidth, sampled repeatedly through the run (before
// every timed rep) over one buffer far larger than the caches; best() is the
// largest figure seen, from all threads or one thread (a descheduled worker
// on a busy machine can make the multi-threaded figure lower than what one
// core streams).
class Bandwidth {
 public:
  // The buffer asks for huge pages as the executor's weight copy does, so
  // the floor is what this machine's memory gives at its best, not a figure
  // handicapped by TLB misses the decode does not have.
  Bandwidth(ThreadPool& pool, size_t bytes)
      : pool_(pool), one_(1), n_(bytes / sizeof(uint64_t)), mem_(HugePageBuffer::allocate(bytes).value()),
        buf_(static_cast<uint64_t*>(mem_.data())) {
    pool.parallel_for(int64_t(n_), int64_t(n_ / 64 + 1), [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) buf_[size_t(i)] = uint64_t(i) * 0x9e3779b97f4a7c15ull;
    });
  }
  size_t huge_bytes() const { return mem_.huge_pages_granted(); }
  // One probe: `passes` passes with all threads and with one; returns the
  // best GB/s of this probe and keeps the run's best.
  double sample(int passes) {
    const double now_best = std::max(read_bandwidth(pool_, buf_, n_, passes, portable_best_),
                                      read_bandwidth(one_, buf_, n_, passes, portable_best_));
    best_ = std::max(best_, now_best);
    return now_best;
  }
  double best() const { return best_; }
  double portable_best() const { return portable_best_; }

 private:
  ThreadPool& pool_;
  ThreadPool one_;
  size_t n_;
  HugePageBuffer mem_;
  uint64_t* buf_;
  double best_ = 0;
  double portable_best_ = 0;
};

}  // namespace myriad::bench
