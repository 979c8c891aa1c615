// AVX-512 inner loops of matmul (see matmul_kernels.h), for CPUs with full
// 512-bit FMA (Zen 5 here: twice the AVX2 FLOPs, which batched decode and
// prefill need). Same structure as matmul_avx2.cpp at 32 columns a step; bf16
// x comes permuted per 32-column chunk (16 even, then 16 odd elements).
//
// Compiled through `#pragma GCC target` (the build gives no -mavx512 flags)
// and chosen at run time only where AVX-512F/DQ are present. Project headers are
// included before the pragma, and nothing here calls an inline function of
// theirs, so no AVX-512 copy of a shared inline function can reach the link.
#include <cstdint>

#include "matmul_kernels.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the merge source
// of unmasked forms, which -Wuninitialized flags once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace myriad::gpu::cpu::detail {
namespace {

inline float bf16_value(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

// Horizontal sum.
inline float hsum(__m512 v) {
  __m256 s8 = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(__mmask8(0xff), v, 0), _mm512_maskz_extractf32x8_ps(__mmask8(0xff), v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 16 sums of a 4x4 tile's accumulators in one vector, z[4t + r] =
// sum(acc[r][t]): three levels of lane shuffles and adds (~45 ops) where 16
// separate horizontal sums take ~130, which at 768 columns were ~15% of the
// tile's vector ops. The additions pair lanes exactly as hsum does.
inline __m512 reduce_4x4(const __m512 (&acc)[4][4]) {
  __m512 u[8], w[4];
  for (int j = 0; j < 8; ++j) {  // u[j] lanes 0-1: half sums of source 2j; lanes 2-3: of 2j + 1
    const __m512 a = acc[j / 2][2 * (j % 2)], b = acc[j / 2][2 * (j % 2) + 1];
    u[j] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_f32x4(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  }
  for (int m = 0; m < 4; ++m) {  // w[m] lane L: 4 partial sums of source 4m + L (= acc[m][L])
    const __m512 c = u[2 * m], d = u[2 * m + 1];
    w[m] = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(c, d, _MM_SHUFFLE(3, 1, 3, 1)));
  }
  const __m512 x01 = _mm512_add_ps(_mm512_unpacklo_ps(w[0], w[1]), _mm512_unpackhi_ps(w[0], w[1]));
  const __m512 x23 = _mm512_add_ps(_mm512_unpacklo_ps(w[2], w[3]), _mm512_unpackhi_ps(w[2], w[3]));
  return _mm512_add_ps(_mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(1, 0, 1, 0)),
                       _mm512_shuffle_ps(x01, x23, _MM_SHUFFLE(3, 2, 3, 2)));
}

template <DType D>
struct Weights;

template <>
struct Weights<DType::kBF16> {
  using T = uint16_t;
  static constexpr int kLinesPer32 = 1;
  static inline void load32(const T* p, __m512& a, __m512& b) {
    const __m512i v = _mm512_loadu_si512(p);
    a = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(__mmask16(0xffff), v, 16));
    b = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(int(0xffff0000u))));
  }
  static inline float one(const T* p) { return bf16_value(*p); }
};

template <>
struct Weights<DType::kF16> {
  using T = uint16_t;
  static constexpr int kLinesPer32 = 1;
  static inline void load32(const T* p, __m512& a, __m512& b) {
    a = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    b = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)));
  }
  static inline float one(const T* p) { return _cvtsh_ss(*p); }
};

template <>
struct Weights<DType::kF32> {
  using T = float;
  static constexpr int kLinesPer32 = 2;
  static inline void load32(const T* p, __m512& a, __m512& b) {
    a = _mm512_loadu_ps(p);
    b = _mm512_loadu_ps(p + 16);
  }
  static inline float one(const T* p) { return *p; }
};

// Rows [r0, r0 + R) x tokens [0, TT) over `len` columns; x and w rows are
// `in` apart. ACC adds to y (a later column chunk) instead of storing.
template <DType D, int R, int TT, bool ACC>
inline void micro(const float* x, int64_t in, int64_t len, const typename Weights<D>::T* w, int64_t r0, float* y,
                  int64_t ldy) {
  using W = Weights<D>;
  const int64_t k32 = len / 32 * 32;
  __m512 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_setzero_ps();
  const typename W::T* wr[R];
  for (int r = 0; r < R; ++r) wr[r] = w + (r0 + r) * in;
  for (int64_t k = 0; k < k32; k += 32) {
    __m512 x0[TT], x1[TT];
    for (int t = 0; t < TT; ++t) {
      x0[t] = _mm512_loadu_ps(x + t * in + k);
      x1[t] = _mm512_loadu_ps(x + t * in + k + 16);
    }
    for (int r = 0; r < R; ++r) {
      // The next row group's same columns into L1 (see matmul_avx2.cpp),
      // and three groups on into L2. Interleaved A/B at T = 8 over a 245 MB
      // bf16 matrix: the L2 prefetch streamed 297 -> 322 GFLOP/s on 2
      // threads (187 -> 203 on one); whole llama-110m batch-8 steps did not
      // change measurably (two A/Bs: +1.6% and -2%, medians equal).
      // Two groups ahead into L1 instead made those steps ~7% slower.
      for (int l = 0; l < W::kLinesPer32; ++l) {
        _mm_prefetch(reinterpret_cast<const char*>(wr[r] + R * in + k + l * 16), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(wr[r] + 3 * R * in + k + l * 16), _MM_HINT_T1);
      }
      __m512 a, b;
      W::load32(wr[r] + k, a, b);
      for (int t = 0; t < TT; ++t) {
        acc[r][t] = _mm512_fmadd_ps(a, x0[t], acc[r][t]);
        acc[r][t] = _mm512_fmadd_ps(b, x1[t], acc[r][t]);
      }
    }
  }
  if constexpr (R == 4 && TT == 4) {
    if (k32 == len) {
      const __m512 z = reduce_4x4(acc);
      float* yt[4] = {y + r0, y + ldy + r0, y + 2 * ldy + r0, y + 3 * ldy + r0};
      __m128 s[4] = {_mm512_extractf32x4_ps(z, 0), _mm512_extractf32x4_ps(z, 1), _mm512_extractf32x4_ps(z, 2),
                     _mm512_extractf32x4_ps(z, 3)};
      for (int t = 0; t < 4; ++t) _mm_storeu_ps(yt[t], ACC ? _mm_add_ps(_mm_loadu_ps(yt[t]), s[t]) : s[t]);
      return;
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < TT; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t k = k32; k < len; ++k) s += W::one(wr[r] + k) * x[t * in + k];
      y[t * ldy + r0 + r] = ACC ? y[t * ldy + r0 + r] + s : s;
    }
  }
}

template <DType D, int R, int TT, bool ACC>
inline void rows_tile(const float* x, int64_t in, int64_t len, const typename Weights<D>::T* w, int64_t r0, int64_t r1,
                      float* y, int64_t ldy) {
  int64_t r = r0;
  for (; r + R <= r1; r += R) micro<D, R, TT, ACC>(x, in, len, w, r, y, ldy);
  for (; r < r1; ++r) micro<D, 1, TT, ACC>(x, in, len, w, r, y, ldy);
}

// All token tiles of T tokens over rows [g, g1), columns [c0, c0 + len).
template <DType D, bool ACC>
inline void token_tiles(const float* x, int64_t T, int64_t in, int64_t c0, int64_t len,
                        const typename Weights<D>::T* w, int64_t g, int64_t g1, float* y, int64_t ldy) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) rows_tile<D, 4, 4, ACC>(x + t * in + c0, in, len, w + c0, g, g1, y + t * ldy, ldy);
  if (T - t >= 2) {
    rows_tile<D, 4, 2, ACC>(x + t * in + c0, in, len, w + c0, g, g1, y + t * ldy, ldy);
    t += 2;
  }
  if (t < T) rows_tile<D, 4, 1, ACC>(x + t * in + c0, in, len, w + c0, g, g1, y + t * ldy, ldy);
}

// T = 1 (batch-1 decode): a GEMV bound by memory. Rows are walked one after
// another, which for a row-major matrix is one sequential stream, 128 weights
// a step into 8 independent accumulators, with a software prefetch 12 KiB
// ahead. Why not the 4-row tile: interleaving 4 rows (4 streams 1 row apart)
// kept fewer lines in flight: in an interleaved A/B over the llama-110m
// decode matmuls on 2 threads it streamed 41-44 GB/s where this loop and a
// plain load-only read streamed 52-53 (and the tile with the loads alone,
// no FMAs, was no faster than with them: the access pattern, not the
// arithmetic, was the limit). 8 accumulators keep the FMA chains short so a
// burst of arriving lines drains quickly. The prefetch distance: 2 KiB gave
// 53-54 GB/s (median 50), 8-16 KiB 58-60 (median 52-54), 32 KiB no more;
// past the end of a row range it runs into the next rows or matrix, which
// the weight copy lays out in the order a step reads them.
// Those figures are Zen 5's, prefetching into L1. On Intel server cores
// (here a 2-core KVM slice of a Xeon with AMX) the prefetch goes to L2
// instead (kHint = T1): L1 prefetches hold one of the core's ~16 fill
// buffers until the line arrives, L2 prefetches use the L2's deeper miss
// queue. Interleaved A/B over the llama-110m decode matmuls on 2 threads,
// 15 passes: T0 12 KiB 26.7 GB/s (median 26.4), T1 12 KiB 31.7 (30.3),
// T1 32 KiB 31.5 (30.4), no prefetch 28.1 (27.5), a plain read 30.5 (29.6).
template <DType D, int kHint>
void gemv(const float* x, int64_t in, const typename Weights<D>::T* w, int64_t r0, int64_t r1, float* y) {
  using W = Weights<D>;
  constexpr int kPrefetchBytes = 12288;
  constexpr int kStepBytes = 128 * int(sizeof(typename W::T));
  const int64_t k128 = in / 128 * 128, k32 = in / 32 * 32;
  for (int64_t r = r0; r < r1; ++r) {
    const typename W::T* wr = w + r * in;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    int64_t k = 0;
    for (; k < k128; k += 128) {
      const char* ahead = reinterpret_cast<const char*>(wr + k) + kPrefetchBytes;
      for (int l = 0; l < kStepBytes; l += 64) _mm_prefetch(ahead + l, static_cast<_mm_hint>(kHint));
      __m512 w0, w1, w2, w3, w4, w5, w6, w7;
      W::load32(wr + k, w0, w1);
      W::load32(wr + k + 32, w2, w3);
      W::load32(wr + k + 64, w4, w5);
      W::load32(wr + k + 96, w6, w7);
      a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), a0);
      a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), a1);
      a2 = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + k + 32), a2);
      a3 = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + k + 48), a3);
      a4 = _mm512_fmadd_ps(w4, _mm512_loadu_ps(x + k + 64), a4);
      a5 = _mm512_fmadd_ps(w5, _mm512_loadu_ps(x + k + 80), a5);
      a6 = _mm512_fmadd_ps(w6, _mm512_loadu_ps(x + k + 96), a6);
      a7 = _mm512_fmadd_ps(w7, _mm512_loadu_ps(x + k + 112), a7);
    }
    for (; k < k32; k += 32) {
      __m512 wa, wb;
      W::load32(wr + k, wa, wb);
      a0 = _mm512_fmadd_ps(wa, _mm512_loadu_ps(x + k), a0);
      a1 = _mm512_fmadd_ps(wb, _mm512_loadu_ps(x + k + 16), a1);
    }
    float s = hsum(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                                 _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7))));
    for (; k < in; ++k) s += W::one(wr + k) * x[k];
    y[r] = s;
  }
}

// x bytes (all T tokens) that share the 48 KB L1 with a 4-row group of
// weights; and the narrowest column chunk worth a pass of its own.
constexpr int64_t kL1XBytes = 32 << 10;
constexpr int64_t kMinColumnChunk = 256;

template <DType D>
void rows(const float* x, int64_t T, const WeightView& wv, int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const auto* w = static_cast<const typename Weights<D>::T*>(wv.data);
  const int64_t in = wv.cols;
  if (T == 1) {
    static const bool into_l2 = gemv_prefetch_into_l2();
    if (into_l2) {
      gemv<D, _MM_HINT_T1>(x, in, w, r0, r1, y);
    } else {
      gemv<D, _MM_HINT_T0>(x, in, w, r0, r1, y);
    }
    return;
  }
  // 4 rows x 4 tokens (16 accumulators + 8 of x in the 32 registers): at
  // T = 8 for bf16 on Zen 5, 234 GFLOP/s a core with the weights in L2
  // (peak: 260) and ~200 streamed from memory; 4x2, 8x2 (row group 8), 4x6,
  // 3x4, 6x4, 3x8, 2x8 and 1x8 measured lower. The token tiles of a 4-row
  // group run back to back, so its rows stay in L1 across them, as long as
  // the tokens' x fits in L1 beside them. Where it does not (down_proj's
  // 2048 columns at T = 8: 64 KB of x), the columns are split into chunks
  // whose x does fit, each a pass over all the rows adding into y: T = 8
  // down_proj streamed at 135 GFLOP/s a core unsplit, against 181 for
  // gate_proj's 768 columns.
  constexpr int64_t kRowGroup = 4;
  int64_t chunk = in;
  if (T * in * int64_t(sizeof(float)) > kL1XBytes) {
    chunk = kL1XBytes / (T * int64_t(sizeof(float))) / 32 * 32;
    if (chunk < kMinColumnChunk) chunk = in;  // prefill-sized T: x is in L2 either way
  }
  for (int64_t c0 = 0; c0 < in; c0 += chunk) {
    const int64_t len = in - c0 < chunk ? in - c0 : chunk;
    for (int64_t g = r0; g < r1; g += kRowGroup) {
      const int64_t g1 = g + kRowGroup < r1 ? g + kRowGroup : r1;
      if (c0 == 0) {
        token_tiles<D, false>(x, T, in, c0, len, w, g, g1, y, ldy);
      } else {
        token_tiles<D, true>(x, T, in, c0, len, w, g, g1, y, ldy);
      }
    }
  }
}

}  // namespace

void permute_x_for_bf16_avx512(const float* x, int64_t T, int64_t in, float* out) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const int64_t kc = in / 32 * 32;
  for (int64_t t = 0; t < T; ++t) {
    const float* src = x + t * in;
    float* dst = out + t * in;
    for (int64_t k = 0; k < kc; k += 32) {
      const __m512 a = _mm512_loadu_ps(src + k), b = _mm512_loadu_ps(src + k + 16);
      _mm512_storeu_ps(dst + k, _mm512_permutex2var_ps(a, even, b));
      _mm512_storeu_ps(dst + k + 16, _mm512_permutex2var_ps(a, odd, b));
    }
    for (int64_t k = kc; k < in; ++k) dst[k] = src[k];
  }
}

void matmul_rows_avx512(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                        int64_t ldy) {
  switch (w.dtype) {
    case DType::kBF16: rows<DType::kBF16>(x, T, w, r0, r1, y, ldy); break;
    case DType::kF16: rows<DType::kF16>(x, T, w, r0, r1, y, ldy); break;
    case DType::kF32: rows<DType::kF32>(x, T, w, r0, r1, y, ldy); break;
  }
}

}  // namespace myriad::gpu::cpu::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
