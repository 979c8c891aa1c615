// The read loops of the bench programs' bandwidth floor (read_bandwidth.h),
// compiled at the build type's flags so the floor is what the machine gives.
#include "read_bandwidth.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <vector>

#include "greedy_decode.h"  // now_s

namespace myriad::bench {
namespace {

// Sums of buf[b, e) with the widest loads the CPU has: a loop with fewer
// instructions per cache line keeps more lines in flight, and on these VMs
// reads 6-9% faster than the same loop compiled to 16-byte loads. The floor
// should be the best read the machine gives.
#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics trip -Wuninitialized once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) uint64_t sum_avx512(const uint64_t* p, int64_t b, int64_t e) {
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
__attribute__((target("avx2"))) uint64_t sum_avx2(const uint64_t* p, int64_t b, int64_t e) {
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
uint64_t sum_portable(const uint64_t* p, int64_t b, int64_t e) {
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
std::vector<SumFn> sum_loops() {
  std::vector<SumFn> v;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) v.push_back(sum_avx512);
  if (__builtin_cpu_supports("avx2")) v.push_back(sum_avx2);
#endif
  v.push_back(sum_portable);
  return v;
}

}  // namespace

double read_bandwidth(ThreadPool& pool, const uint64_t* buf, size_t n, int passes, double& portable_best) {
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

}  // namespace myriad::bench
