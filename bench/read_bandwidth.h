// The machine's memory read bandwidth as the CPU benchmarks measure it
// (bench/decode's floor, bench/multilora's "read bandwidth" line): a
// multi-threaded streaming read of a huge-page buffer far larger than the
// caches, with the widest loads the CPU has, best of several passes.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gpu/cpu/huge_page_buffer.h"
#include "gpu/cpu/thread_pool.h"
#include "greedy_decode.h"

namespace myriad::bench {

using gpu::cpu::HugePageBuffer;
using gpu::cpu::ThreadPool;

// Sums of buf[b, e) with the widest loads the CPU has: a loop with fewer
// instructions per cache line keeps more lines in flight, and on these VMs
// reads 6-9% faster than the same loop compiled to 16-byte loads. The floor
// should be the best read the machine gives.
#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics trip -Wuninitialized once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) inline uint64_t sum_avx512(const uint64_t* p, int64_t b, int64_t e) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0;
  int64_t i = b;
  for (; i + 16 <= e; i += 16) {
    a0 = _mm512_add_epi64(a0, _mm512_loadu_si512(p + i));
    a1 = _mm512_add_epi64(a1, _mm512_loadu_si512(p + i + 8));
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, _mm512_add_epi64(a0, a1));
  uint64_t s = 0;
  for (uint64_t l : lanes) s += l;
  for (; i < e; ++i) s += p[i];
  return s;
}
__attribute__((target("avx2"))) inline uint64_t sum_avx2(const uint64_t* p, int64_t b, int64_t e) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0;
  int64_t i = b;
  for (; i + 8 <= e; i += 8) {
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 4)));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), _mm256_add_epi64(a0, a1));
  uint64_t s = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  for (; i < e; ++i) s += p[i];
  return s;
}
#pragma GCC diagnostic pop
#endif
inline uint64_t sum_portable(const uint64_t* p, int64_t b, int64_t e) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  int64_t i = b;
  for (; i + 4 <= e; i += 4) {
    a0 += p[i];
    a1 += p[i + 1];
    a2 += p[i + 2];
    a3 += p[i + 3];
  }
  for (; i < e; ++i) a0 += p[i];
  return a0 ^ a1 ^ a2 ^ a3;
}
using SumFn = uint64_t (*)(const uint64_t*, int64_t, int64_t);
// The read loops this CPU can run, widest first.
inline std::vector<SumFn> sum_loops() {
  std::vector<SumFn> v;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) v.push_back(sum_avx512);
  if (__builtin_cpu_supports("avx2")) v.push_back(sum_avx2);
#endif
  v.push_back(sum_portable);
  return v;
}

// Streaming read of buf[0, n) over the pool's threads with each read loop;
// the best GB/s of `passes`. `portable_best` keeps the best of the plain
// 8-byte loop alone (shown beside it: earlier runs used only that loop).
inline double read_bandwidth(ThreadPool& pool, const uint64_t* buf, size_t n, int passes, double& portable_best) {
  double best = 0;
  volatile uint64_t sink = 0;
  static const std::vector<SumFn> loops = sum_loops();
  for (int p = 0; p < passes; ++p) {
    for (SumFn sum : loops) {
      std::vector<uint64_t> partial(size_t(pool.size()), 0);
      const double t0 = now_s();
      pool.parallel_for(int64_t(n), int64_t(1) << 20,
                        [&](int64_t b, int64_t e, int w) { partial[size_t(w)] += sum(buf, b, e); });
      const double dt = now_s() - t0;
      for (auto x : partial) sink = sink + x;
      const double gbps = double(n * sizeof(uint64_t)) / dt / 1e9;
      best = std::max(best, gbps);
      if (sum == sum_portable) portable_best = std::max(portable_best, gbps);
    }
  }
  return best;
}

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
