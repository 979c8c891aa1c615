// AVX2/FMA inner loops of paged attention (see attention_kernels.h).
#include <immintrin.h>

#include "attention_kernels.h"

namespace myriad::gpu::cpu::detail {
namespace {

template <KvElem E>
struct Elems;

template <>
struct Elems<KvElem::kF32> {
  using T = float;
  static __m256 load8(const T* p) { return _mm256_loadu_ps(p); }
  static float one(const T* p) { return *p; }
};

template <>
struct Elems<KvElem::kBF16> {
  using T = uint16_t;
  static __m256 load8(const T* p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
  static float one(const T* p) { return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(*p) << 16)))); }
};

template <>
struct Elems<KvElem::kF16> {
  using T = uint16_t;
  static __m256 load8(const T* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static float one(const T* p) { return _cvtsh_ss(*p); }
};

}  // namespace

// Eight sums in one vector: r[i] = sum of a[i]'s lanes.
inline __m256 hsum8(const __m256 (&a)[8]) {
  const __m256 h0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 h4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(h0123, h4567, 0x20), _mm256_permute2f128_ps(h0123, h4567, 0x31));
}

template <KvElem E>
void block_scores_avx2(const float* q, const void* kv, int64_t n, int64_t stride, int64_t hd, float scale,
                       float* scores) {
  using L = Elems<E>;
  const auto* k = static_cast<const typename L::T*>(kv);
  const int64_t h8 = hd / 8 * 8;
  int64_t j = 0;
  // Eight positions at a time: eight independent FMA chains and one shared
  // reduction, where a position at a time waited on its own chain and
  // horizontal sum (3x slower at head_dim 64).
  if (h8 == hd) {
    const __m256 vscale = _mm256_set1_ps(scale);
    for (; j + 8 <= n; j += 8) {
      const auto* kj = k + j * stride;
      __m256 acc[8];
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
      for (int64_t d = 0; d < hd; d += 8) {
        const __m256 qd = _mm256_loadu_ps(q + d);
        for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(qd, L::load8(kj + i * stride + d), acc[i]);
      }
      _mm256_storeu_ps(scores + j, _mm256_mul_ps(hsum8(acc), vscale));
    }
  }
  for (; j < n; ++j) {
    const auto* kj = k + j * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= h8; d += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), L::load8(kj + d), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), L::load8(kj + d + 8), a1);
    }
    if (d < h8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), L::load8(kj + d), a0);
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float dot = _mm_cvtss_f32(s);
    for (d = h8; d < hd; ++d) dot += q[d] * L::one(kj + d);
    scores[j] = dot * scale;
  }
}

template <KvElem E>
void block_accumulate_avx2(const float* p, const void* vv, int64_t n, int64_t stride, int64_t hd, float* o) {
  using L = Elems<E>;
  const auto* v = static_cast<const typename L::T*>(vv);
  const int64_t h8 = hd / 8 * 8;
  int64_t d = 0;
  // 64 output dims at a time stay in registers across the block's positions.
  for (; d + 64 <= h8; d += 64) {
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_loadu_ps(o + d + 8 * i);
    for (int64_t j = 0; j < n; ++j) {
      const __m256 w = _mm256_set1_ps(p[j]);
      const auto* vj = v + j * stride + d;
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(w, L::load8(vj + 8 * i), acc[i]);
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(o + d + 8 * i, acc[i]);
  }
  for (; d < h8; d += 8) {
    __m256 acc = _mm256_loadu_ps(o + d);
    for (int64_t j = 0; j < n; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), L::load8(v + j * stride + d), acc);
    _mm256_storeu_ps(o + d, acc);
  }
  for (; d < hd; ++d)
    for (int64_t j = 0; j < n; ++j) o[d] += p[j] * L::one(v + j * stride + d);
}

#define MYRIAD_ATTENTION_AVX2(E)                                                                                    \
  template void block_scores_avx2<E>(const float*, const void*, int64_t, int64_t, int64_t, float, float*);         \
  template void block_accumulate_avx2<E>(const float*, const void*, int64_t, int64_t, int64_t, float*);
MYRIAD_ATTENTION_AVX2(KvElem::kF32)
MYRIAD_ATTENTION_AVX2(KvElem::kBF16)
MYRIAD_ATTENTION_AVX2(KvElem::kF16)
#undef MYRIAD_ATTENTION_AVX2

}  // namespace myriad::gpu::cpu::detail
