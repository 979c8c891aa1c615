// AVX2/FMA inner loops of paged attention (see attention_kernels.h).
#include <immintrin.h>

#include "attention_kernels.h"

namespace myriad::gpu::cpu::detail {

void block_scores_avx2(const float* q, const float* k, int64_t n, int64_t stride, int64_t hd, float scale,
                       float* scores) {
  const int64_t h8 = hd / 8 * 8;
  for (int64_t j = 0; j < n; ++j) {
    const float* kj = k + j * stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= h8; d += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d + 8), _mm256_loadu_ps(kj + d + 8), a1);
    }
    if (d < h8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + d), _mm256_loadu_ps(kj + d), a0);
    a0 = _mm256_add_ps(a0, a1);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    float dot = _mm_cvtss_f32(s);
    for (d = h8; d < hd; ++d) dot += q[d] * kj[d];
    scores[j] = dot * scale;
  }
}

void block_accumulate_avx2(const float* p, const float* v, int64_t n, int64_t stride, int64_t hd, float* o) {
  const int64_t h8 = hd / 8 * 8;
  int64_t d = 0;
  // 64 output dims at a time stay in registers across the block's positions.
  for (; d + 64 <= h8; d += 64) {
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_loadu_ps(o + d + 8 * i);
    for (int64_t j = 0; j < n; ++j) {
      const __m256 w = _mm256_set1_ps(p[j]);
      const float* vj = v + j * stride + d;
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(vj + 8 * i), acc[i]);
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(o + d + 8 * i, acc[i]);
  }
  for (; d < h8; d += 8) {
    __m256 acc = _mm256_loadu_ps(o + d);
    for (int64_t j = 0; j < n; ++j) acc = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), _mm256_loadu_ps(v + j * stride + d), acc);
    _mm256_storeu_ps(o + d, acc);
  }
  for (; d < hd; ++d)
    for (int64_t j = 0; j < n; ++j) o[d] += p[j] * v[j * stride + d];
}

}  // namespace myriad::gpu::cpu::detail
