// AVX2+FMA training kernels for float (train_kernels.h; compiled with -mavx2
// -mfma, called where lora_isa() is at least kAvx2): attention forward and
// backward, the larger part of a step after the GEMMs once sequences reach a
// few hundred tokens (30% of a llama-110m step at ~160 tokens with the
// portable loops, which the build vectorises for SSE2 only), and LoRA's
// dA/dBᵀ sums. Same algorithms and the same per-element order of sums over
// tokens as the portable loops; dot products and exponentials round
// differently (FMA, a polynomial exp), within float tolerance of them.
//
// Nothing here uses the standard library's templates or a shared inline
// function: an AVX2 copy of one could be picked by the linker for every
// caller. Scratch memory comes from the caller.
#include <immintrin.h>

#include <cstdint>
#include <utility>

#include "../vec_math_avx2.h"
#include "gpu/cpu/train_kernels.h"

namespace myriad::gpu::cpu::train::detail {

namespace {

using cpu::detail::exp256_nonpositive;

inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  lo = _mm_add_ps(lo, _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

// a · b[r] for 4 rows b[r] at once (a's loads shared); d a multiple of 8.
inline void dot4(const float* a, const float* b0, const float* b1, const float* b2, const float* b3, int64_t d,
                 float* out) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  for (int64_t c = 0; c < d; c += 8) {
    const __m256 x = _mm256_loadu_ps(a + c);
    s0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b0 + c), s0);
    s1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b1 + c), s1);
    s2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b2 + c), s2);
    s3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(b3 + c), s3);
  }
  out[0] = hsum(s0);
  out[1] = hsum(s1);
  out[2] = hsum(s2);
  out[3] = hsum(s3);
}

inline float dot1(const float* a, const float* b, int64_t d) {
  __m256 s = _mm256_setzero_ps();
  for (int64_t c = 0; c < d; c += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s);
  return hsum(s);
}

// out[j] = a · rows[j * stride] for j in [j0, j1).
inline void dots(const float* a, const float* rows, int64_t stride, int64_t j0, int64_t j1, int64_t d, float* out) {
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    const float* r = rows + j * stride;
    dot4(a, r, r + stride, r + 2 * stride, r + 3 * stride, d, out + j);
  }
  for (; j < j1; ++j) out[j] = dot1(a, rows + j * stride, d);
}

// p[j] = exp(min(p[j] * mul - sub, 0)) for j in [j0, j1); returns their sum
// (lanes in order of 8, then the tail).
inline float exp_shifted(float* p, int64_t j0, int64_t j1, float mul, float sub) {
  const __m256 vm = _mm256_set1_ps(mul), vs = _mm256_set1_ps(sub), zero = _mm256_setzero_ps();
  __m256 acc = zero;
  int64_t j = j0;
  for (; j + 8 <= j1; j += 8) {
    const __m256 e = exp256_nonpositive(_mm256_min_ps(_mm256_fmsub_ps(_mm256_loadu_ps(p + j), vm, vs), zero));
    _mm256_storeu_ps(p + j, e);
    acc = _mm256_add_ps(acc, e);
  }
  if (j < j1) {  // the tail through a padded lane buffer: the same arithmetic
    alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    const int64_t n = j1 - j;
    for (int64_t l = 0; l < n; ++l) t[l] = p[j + l];
    const __m256 e = exp256_nonpositive(_mm256_min_ps(_mm256_fmsub_ps(_mm256_load_ps(t), vm, vs), zero));
    _mm256_store_ps(t, e);
    for (int64_t l = 0; l < n; ++l) p[j + l] = t[l];
    float sum = hsum(acc);
    for (int64_t l = 0; l < n; ++l) sum += t[l];
    return sum;
  }
  return hsum(acc);
}

// out[c] (+)= sum over j in [j0, j1) of w[j] * mul * rows[j * stride + c],
// for c in [0, d), d a multiple of 8; 32 columns of sums in registers at a
// time. Each column's sum runs over j in order.
inline void weighted_rows(const float* w, float mul, const float* rows, int64_t stride, int64_t j0, int64_t j1,
                          int64_t d, float* out, bool accumulate) {
  const __m256 vm = _mm256_set1_ps(mul);
  int64_t c = 0;
  for (; c + 32 <= d; c += 32) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = j0; j < j1; ++j) {
      const __m256 g = _mm256_mul_ps(_mm256_set1_ps(w[j]), vm);
      const float* r = rows + j * stride + c;
      a0 = _mm256_fmadd_ps(g, _mm256_loadu_ps(r), a0);
      a1 = _mm256_fmadd_ps(g, _mm256_loadu_ps(r + 8), a1);
      a2 = _mm256_fmadd_ps(g, _mm256_loadu_ps(r + 16), a2);
      a3 = _mm256_fmadd_ps(g, _mm256_loadu_ps(r + 24), a3);
    }
    if (accumulate) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(out + c));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(out + c + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(out + c + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(out + c + 24));
    }
    _mm256_storeu_ps(out + c, a0);
    _mm256_storeu_ps(out + c + 8, a1);
    _mm256_storeu_ps(out + c + 16, a2);
    _mm256_storeu_ps(out + c + 24, a3);
  }
  for (; c < d; c += 8) {
    __m256 a0 = _mm256_setzero_ps();
    for (int64_t j = j0; j < j1; ++j)
      a0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(w[j]), vm), _mm256_loadu_ps(rows + j * stride + c), a0);
    if (accumulate) a0 = _mm256_add_ps(a0, _mm256_loadu_ps(out + c));
    _mm256_storeu_ps(out + c, a0);
  }
}

}  // namespace

void attention_forward_avx2(const AttentionShape& s, int64_t kv_head, const float* q, const float* k, const float* v,
                            float* out, float* lse, float* p) {
  const int64_t d = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const int64_t qs = s.num_heads * d, ks = s.num_kv_heads * d;
  const float scale = 1.0f / __builtin_sqrtf(float(d));
  const float* kh = k + kv_head * d;
  const float* vh = v + kv_head * d;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i = 0; i < s.T; ++i) {
      const float* qi = q + i * qs + h * d;
      const int64_t j0 = s.window > 0 && i - s.window + 1 > 0 ? i - s.window + 1 : 0;
      dots(qi, kh, ks, j0, i + 1, d, p);
      float m = p[j0];
      for (int64_t j = j0 + 1; j <= i; ++j) m = p[j] > m ? p[j] : m;
      const float sum = exp_shifted(p, j0, i + 1, scale, m * scale);
      weighted_rows(p, 1.0f / sum, vh, ks, j0, i + 1, d, out + i * qs + h * d, false);
      lse[i * s.num_heads + h] = m * scale + __builtin_logf(sum);
    }
  }
}

void attention_backward_avx2(const AttentionShape& s, int64_t kv_head, const float* q, const float* k, const float* v,
                             const float* out, const float* lse, const float* d_out, float* dq, float* dk, float* dv,
                             float* P, float* dS, float* column) {
  const int64_t block = kAttentionBackwardBlock;
  const int64_t d = s.head_dim, group = s.num_heads / s.num_kv_heads, T = s.T;
  const int64_t qs = s.num_heads * d, ks = s.num_kv_heads * d;
  const float scale = 1.0f / __builtin_sqrtf(float(d));
  const float* kh = k + kv_head * d;
  const float* vh = v + kv_head * d;
  auto first_key = [&](int64_t i) { return s.window > 0 && i - s.window + 1 > 0 ? i - s.window + 1 : int64_t(0); };
  float* colP = column;
  float* colS = column + block;
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = 0; i0 < T; i0 += block) {
      const int64_t i1 = T < i0 + block ? T : i0 + block;
      for (int64_t i = i0; i < i1; ++i) {
        const float* qi = q + i * qs + h * d;
        const float* doi = d_out + i * qs + h * d;
        const float D = dot1(doi, out + i * qs + h * d, d);
        float* Pi = P + (i - i0) * T;
        float* dSi = dS + (i - i0) * T;
        const int64_t j0 = first_key(i);
        dots(qi, kh, ks, j0, i + 1, d, Pi);
        dots(doi, vh, ks, j0, i + 1, d, dSi);
        exp_shifted(Pi, j0, i + 1, scale, lse[i * s.num_heads + h]);
        const __m256 vD = _mm256_set1_ps(D), vscale = _mm256_set1_ps(scale);
        int64_t j = j0;
        for (; j + 8 <= i + 1; j += 8)
          _mm256_storeu_ps(dSi + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(Pi + j),
                                                                _mm256_sub_ps(_mm256_loadu_ps(dSi + j), vD)),
                                                  vscale));
        for (; j <= i; ++j) dSi[j] = Pi[j] * (dSi[j] - D) * scale;
        weighted_rows(dSi, 1.0f, kh, ks, j0, i + 1, d, dq + i * qs + h * d, true);
      }
      // Keys this block of queries saw: j in [first_key(i0), i1); their
      // column of P and dS gathered so the sums over queries run in order.
      for (int64_t j = first_key(i0); j < i1; ++j) {
        const int64_t ib = i0 > j ? i0 : j;
        const int64_t ie = s.window > 0 && j + s.window < i1 ? j + s.window : i1;
        for (int64_t i = ib; i < ie; ++i) {
          colP[i - ib] = P[(i - i0) * T + j];
          colS[i - ib] = dS[(i - i0) * T + j];
        }
        weighted_rows(colS, 1.0f, q + ib * qs + h * d, qs, 0, ie - ib, d, dk + j * ks + kv_head * d, true);
        weighted_rows(colP, 1.0f, d_out + ib * qs + h * d, qs, 0, ie - ib, d, dv + j * ks + kv_head * d, true);
      }
    }
  }
}

void accumulate_outer_avx2(const std::pair<int64_t, int64_t>* spans, int64_t num_spans, const float* u, int64_t ld_u,
                           int64_t nk, const float* v, int64_t ld_v, int64_t i0, int64_t i1, float scale, float* out,
                           int64_t ld_out) {
  // A 4 x 24 block of sums in 12 registers; the columns' tail masked.
  constexpr int64_t kW = 24, kK = 4, kV = kW / 8;
  const __m256 s = _mm256_set1_ps(scale);
  for (int64_t c0 = i0; c0 < i1; c0 += kW) {
    const int64_t nc = i1 - c0 < kW ? i1 - c0 : kW;
    __m256i mask[kV];
    for (int64_t j = 0; j < kV; ++j) {
      const int64_t lanes = nc - 8 * j;
      mask[j] = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(lanes < 0 ? 0 : lanes)),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    }
    for (int64_t k0 = 0; k0 < nk; k0 += kK) {
      const int64_t nkk = nk - k0 < kK ? nk - k0 : kK;
      __m256 acc[kK][kV];
      for (int64_t k = 0; k < kK; ++k)
        for (int64_t j = 0; j < kV; ++j) acc[k][j] = _mm256_setzero_ps();
      for (int64_t sp = 0; sp < num_spans; ++sp)
        for (int64_t t = spans[sp].first; t < spans[sp].second; ++t) {
          const float* vt = v + t * ld_v + c0;
          const float* ut = u + t * ld_u + k0;
          __m256 x[kV];
          for (int64_t j = 0; j < kV; ++j) x[j] = _mm256_maskload_ps(vt + 8 * j, mask[j]);
          for (int64_t k = 0; k < kK; ++k) {
            const __m256 dk = _mm256_set1_ps(k < nkk ? ut[k] : 0.0f);
            for (int64_t j = 0; j < kV; ++j) acc[k][j] = _mm256_fmadd_ps(dk, x[j], acc[k][j]);
          }
        }
      for (int64_t k = 0; k < nkk; ++k) {
        float* o = out + (k0 + k) * ld_out + c0;
        for (int64_t j = 0; j < kV; ++j) {
          const __m256 cur = _mm256_maskload_ps(o + 8 * j, mask[j]);
          _mm256_maskstore_ps(o + 8 * j, mask[j], _mm256_fmadd_ps(s, acc[k][j], cur));
        }
      }
    }
  }
}

}  // namespace myriad::gpu::cpu::train::detail
