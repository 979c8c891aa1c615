// AVX2/FMA inner loops of matmul (see matmul_kernels.h). A microkernel keeps
// R rows x TT tokens of 8-wide accumulators (and TT tokens of x) in registers and walks `in` 16
// weights at a time; bf16 weights are widened by a 32-bit shift (even
// elements) and mask (odd elements), so x comes pre-permuted to match.
#include <immintrin.h>

#include "matmul_kernels.h"

namespace myriad::gpu::cpu::detail {
namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <DType D>
struct Weights;

template <>
struct Weights<DType::kBF16> {
  using T = uint16_t;
  static inline void load16(const T* p, __m256& a, __m256& b) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    a = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    b = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(int(0xffff0000u))));
  }
  static inline float one(const T* p) {  // not dtype.h's inline: no AVX2 copy of it may reach the link
    const uint32_t u = uint32_t(*p) << 16;
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
  }
};

template <>
struct Weights<DType::kF16> {
  using T = uint16_t;
  static inline void load16(const T* p, __m256& a, __m256& b) {
    a = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    b = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)));
  }
  static inline float one(const T* p) { return _cvtsh_ss(*p); }
};

template <>
struct Weights<DType::kF32> {
  using T = float;
  static inline void load16(const T* p, __m256& a, __m256& b) {
    a = _mm256_loadu_ps(p);
    b = _mm256_loadu_ps(p + 8);
  }
  static inline float one(const T* p) { return *p; }
};

// y[t * ldy + r0 + i] for i < R, t < TT.
template <DType D, int R, int TT>
inline void micro(const float* x, int64_t in, const typename Weights<D>::T* w, int64_t r0, float* y, int64_t ldy) {
  using W = Weights<D>;
  const int64_t k16 = in / 16 * 16;
  __m256 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_setzero_ps();
  const typename W::T* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (r0 + r) * in;
  for (int64_t k = 0; k < k16; k += 16) {
    // x in registers for the whole row group: per 16 columns, TT * 2 loads
    // of x and R of weights feed R * TT * 2 FMAs.
    __m256 x0[TT], x1[TT];
    for (int t = 0; t < TT; ++t) {
      x0[t] = _mm256_loadu_ps(x + t * in + k);
      x1[t] = _mm256_loadu_ps(x + t * in + k + 8);
    }
    for (int r = 0; r < R; ++r) {
      // The same columns R rows on: the next group's rows stream in while
      // this group computes (rows are short, so the hardware prefetcher
      // alone restarts cold at every group).
      _mm_prefetch(reinterpret_cast<const char*>(wr[r] + R * in + k), _MM_HINT_T0);
      __m256 a, b;
      W::load16(wr[r] + k, a, b);
      for (int t = 0; t < TT; ++t) {
        acc[r][t] = _mm256_fmadd_ps(a, x0[t], acc[r][t]);
        acc[r][t] = _mm256_fmadd_ps(b, x1[t], acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < TT; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t k = k16; k < in; ++k) s += W::one(wr[r] + k) * x[t * in + k];
      y[t * ldy + r0 + r] = s;
    }
  }
}

template <DType D, int R, int TT>
inline void rows_tile(const float* x, int64_t in, const typename Weights<D>::T* w, int64_t r0, int64_t r1, float* y,
                      int64_t ldy) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) micro<D, R, TT>(x, in, w, r, y, ldy);
  for (; r < r1; ++r) micro<D, 1, TT>(x, in, w, r, y, ldy);
}

// T = 1: one sequential stream, 64 weights a step into 8 accumulators,
// prefetching 12 KiB ahead (see gemv in matmul_avx512.cpp for why not the
// 4-row tile).
template <DType D>
void gemv(const float* x, int64_t in, const typename Weights<D>::T* w, int64_t r0, int64_t r1, float* y) {
  using W = Weights<D>;
  constexpr int kPrefetchBytes = 12288;
  constexpr int kStepBytes = 64 * int(sizeof(typename W::T));
  const int64_t k64 = in / 64 * 64, k16 = in / 16 * 16;
  for (int64_t r = r0; r < r1; ++r) {
    const typename W::T* wr = w + r * in;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t k = 0;
    for (; k < k64; k += 64) {
      const char* ahead = reinterpret_cast<const char*>(wr + k) + kPrefetchBytes;
      for (int l = 0; l < kStepBytes; l += 64) _mm_prefetch(ahead + l, _MM_HINT_T0);
      __m256 w0, w1, w2, w3, w4, w5, w6, w7;
      W::load16(wr + k, w0, w1);
      W::load16(wr + k + 16, w2, w3);
      W::load16(wr + k + 32, w4, w5);
      W::load16(wr + k + 48, w6, w7);
      a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + k + 8), a1);
      a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(x + k + 16), a2);
      a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(x + k + 24), a3);
      a4 = _mm256_fmadd_ps(w4, _mm256_loadu_ps(x + k + 32), a4);
      a5 = _mm256_fmadd_ps(w5, _mm256_loadu_ps(x + k + 40), a5);
      a6 = _mm256_fmadd_ps(w6, _mm256_loadu_ps(x + k + 48), a6);
      a7 = _mm256_fmadd_ps(w7, _mm256_loadu_ps(x + k + 56), a7);
    }
    for (; k < k16; k += 16) {
      __m256 wa, wb;
      W::load16(wr + k, wa, wb);
      a0 = _mm256_fmadd_ps(wa, _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(wb, _mm256_loadu_ps(x + k + 8), a1);
    }
    float s = hsum(_mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                                 _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7))));
    for (; k < in; ++k) s += W::one(wr + k) * x[k];
    y[r] = s;
  }
}

template <DType D>
void rows(const float* x, int64_t T, const WeightView& wv, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const typename Weights<D>::T*>(wv.data);
  const int64_t in = wv.cols;
  if (T == 1) {
    gemv<D>(x, in, w, r0, r1, y);
    return;
  }
  // A group of rows stays in L1 while every token tile of the block uses it
  // (4 rows: f32 rows of 16 did not fit L1 with x, 46 -> 54 GFLOP/s at T = 8).
  constexpr int64_t kRowGroup = 4;
  for (int64_t g = r0; g < r1; g += kRowGroup) {
    const int64_t g1 = g + kRowGroup < r1 ? g + kRowGroup : r1;
    // Tiles of 2 tokens x 4 rows (measured best on Zen 4 among 2x4, 3x3,
    // 4x3, 4x2, 2x6: 91 GFLOP/s a core at T = 8 for bf16, since x stays in
    // registers), then a 1-token tile.
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) rows_tile<D, 4, 2>(x + t * in, in, w, g, g1, y + t * ldy, ldy);
    if (t < T) rows_tile<D, 4, 1>(x + t * in, in, w, g, g1, y + t * ldy, ldy);
  }
}

}  // namespace

void permute_x_for_bf16_avx2(const float* x, int64_t T, int64_t in, float* out) {
  const int64_t kc = in / 16 * 16;
  for (int64_t t = 0; t < T; ++t) {
    const float* src = x + t * in;
    float* dst = out + t * in;
    for (int64_t k = 0; k < kc; k += 16) {
      const __m256 a = _mm256_loadu_ps(src + k), b = _mm256_loadu_ps(src + k + 8);
      // Within 128-bit lanes, then the lanes' 64-bit halves into order.
      const __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
      const __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
      _mm256_storeu_ps(dst + k, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), 0xD8)));
      _mm256_storeu_ps(dst + k + 8, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), 0xD8)));
    }
    for (int64_t k = kc; k < in; ++k) dst[k] = src[k];
  }
}

void matmul_rows_avx2(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                      int64_t ldy) {
  switch (w.dtype) {
    case DType::kBF16: rows<DType::kBF16>(x, T, w, r0, r1, y, ldy); break;
    case DType::kF16: rows<DType::kF16>(x, T, w, r0, r1, y, ldy); break;
    case DType::kF32: rows<DType::kF32>(x, T, w, r0, r1, y, ldy); break;
  }
}

}  // namespace myriad::gpu::cpu::detail
