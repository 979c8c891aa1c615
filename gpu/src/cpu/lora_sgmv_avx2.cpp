// AVX2+FMA shrink/expand for the multi-LoRA kernel (compiled with -mavx2
// -mfma; called only when cpu_info().avx2_fma). The arithmetic order of one
// row never depends on other rows, so a row's result is batch-invariant.
#include <immintrin.h>

#include <cmath>

#include "gpu/cpu/lora_sgmv.h"

namespace myriad::gpu::cpu::detail {

namespace {
inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}
}  // namespace

// h[k] = A[k, :] · x for k < rank. Two A rows at a time share each load of x.
void lora_shrink_avx2(const float* a, int32_t rank, const float* x, int64_t in, float* h) {
  const int64_t n8 = in & ~int64_t(7);
  int32_t k = 0;
  for (; k + 1 < rank; k += 2) {
    const float* a0 = a + int64_t(k) * in;
    const float* a1 = a0 + in;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) {
      const __m256 xv = _mm256_loadu_ps(x + i);
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), xv, s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), xv, s1);
    }
    float r0 = hsum(s0), r1 = hsum(s1);
    for (int64_t i = n8; i < in; ++i) {
      r0 = std::fma(a0[i], x[i], r0);
      r1 = std::fma(a1[i], x[i], r1);
    }
    h[k] = r0;
    h[k + 1] = r1;
  }
  for (; k < rank; ++k) {
    const float* a0 = a + int64_t(k) * in;
    __m256 s0 = _mm256_setzero_ps();
    for (int64_t i = 0; i < n8; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), _mm256_loadu_ps(x + i), s0);
    float r0 = hsum(s0);
    for (int64_t i = n8; i < in; ++i) r0 = std::fma(a0[i], x[i], r0);
    h[k] = r0;
  }
}

// y[o] += sum_k h[k] * Bt[k, o] for o in [o_begin, o_end), k ascending.
void lora_expand_avx2(const float* bt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end,
                      int64_t out) {
  int64_t o = o_begin;
  for (; o + 32 <= o_end; o += 32) {
    __m256 y0 = _mm256_loadu_ps(y + o), y1 = _mm256_loadu_ps(y + o + 8);
    __m256 y2 = _mm256_loadu_ps(y + o + 16), y3 = _mm256_loadu_ps(y + o + 24);
    for (int32_t k = 0; k < rank; ++k) {
      const __m256 hk = _mm256_set1_ps(h[k]);
      const float* b = bt + int64_t(k) * out + o;
      y0 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(b), y0);
      y1 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(b + 8), y1);
      y2 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(b + 16), y2);
      y3 = _mm256_fmadd_ps(hk, _mm256_loadu_ps(b + 24), y3);
    }
    _mm256_storeu_ps(y + o, y0);
    _mm256_storeu_ps(y + o + 8, y1);
    _mm256_storeu_ps(y + o + 16, y2);
    _mm256_storeu_ps(y + o + 24, y3);
  }
  for (; o + 8 <= o_end; o += 8) {
    __m256 y0 = _mm256_loadu_ps(y + o);
    for (int32_t k = 0; k < rank; ++k) {
      y0 = _mm256_fmadd_ps(_mm256_set1_ps(h[k]), _mm256_loadu_ps(bt + int64_t(k) * out + o), y0);
    }
    _mm256_storeu_ps(y + o, y0);
  }
  for (; o < o_end; ++o) {
    float acc = y[o];
    for (int32_t k = 0; k < rank; ++k) acc = std::fma(h[k], bt[int64_t(k) * out + o], acc);
    y[o] = acc;
  }
}

}  // namespace myriad::gpu::cpu::detail
