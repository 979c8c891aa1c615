// AVX-512 shrink/expand for the multi-LoRA kernel (see lora_sgmv.h), for
// CPUs with full 512-bit FMA: the same structure as lora_sgmv_avx2.cpp at 16
// floats a vector, f32 and bf16 slot weights (bf16 -> f32 is a 16-bit shift;
// accumulation is f32). A row's arithmetic order never depends on other rows
// (each (row, k) dot product is one chain over the columns in order), so a
// row's result is batch-invariant.
//
// Compiled through `#pragma GCC target` (the build gives no -mavx512 flags)
// and chosen at run time only where AVX-512F/BW are present. Project headers
// are included before the pragma, and nothing here calls an inline function
// of theirs, so no AVX-512 copy of a shared inline function reaches the link.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "gpu/cpu/lora_sgmv.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the merge source
// of unmasked forms, which -Wuninitialized flags once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace myriad::gpu::cpu::detail {

namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) {
  const uint32_t bits = uint32_t(*p) << 16;
  float f;
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

// A fixed-order horizontal sum (the same for every row).
inline float hsum(__m512 v) {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  __m256 s = _mm256_add_ps(lo, hi);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// h[r, k] = A[k, :] · xs[r] for KB rows of A and N rows of x at once.
template <class W, int N, int KB>
void shrink_block(const W* a, int32_t k, int64_t in, int64_t n16, int32_t rank, const float* const* xs, float* h) {
  __m512 s[N][KB];
  for (int r = 0; r < N; ++r)
    for (int j = 0; j < KB; ++j) s[r][j] = _mm512_setzero_ps();
  // The same columns of the next KB rows: KB interleaved row streams get no
  // help from the hardware prefetcher.
  const W* next = a + int64_t(k + KB) * in;
  for (int64_t i = 0; i < n16; i += 16) {
    __m512 xv[N];
    for (int r = 0; r < N; ++r) xv[r] = _mm512_loadu_ps(xs[r] + i);
    if ((i * int64_t(sizeof(W))) % 64 == 0)
      for (int j = 0; j < KB; ++j) _mm_prefetch(reinterpret_cast<const char*>(next + int64_t(j) * in + i), _MM_HINT_T0);
    for (int j = 0; j < KB; ++j) {
      const __m512 av = load16(a + int64_t(k + j) * in + i);
      for (int r = 0; r < N; ++r) s[r][j] = _mm512_fmadd_ps(av, xv[r], s[r][j]);
    }
  }
  for (int r = 0; r < N; ++r) {
    for (int j = 0; j < KB; ++j) {
      const W* ak = a + int64_t(k + j) * in;
      float acc = hsum(s[r][j]);
      for (int64_t i = n16; i < in; ++i) acc = __builtin_fmaf(load1(ak + i), xs[r][i], acc);
      h[r * rank + k + j] = acc;
    }
  }
}

template <class W, int N>
void shrink_rows(const W* a, int32_t rank, const float* const* xs, int64_t in, float* h) {
  constexpr int KB = N <= 2 ? 8 : 4;  // N * KB <= 16 accumulators of 32 registers
  const int64_t n16 = in & ~int64_t(15);
  int32_t k = 0;
  for (; k + KB <= rank; k += KB) shrink_block<W, N, KB>(a, k, in, n16, rank, xs, h);
  for (; k + 2 <= rank; k += 2) shrink_block<W, N, 2>(a, k, in, n16, rank, xs, h);
  for (; k < rank; ++k) shrink_block<W, N, 1>(a, k, in, n16, rank, xs, h);
}

template <class W>
void shrink_any(const W* a, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h) {
  switch (nrows) {
    case 4: shrink_rows<W, 4>(a, rank, xs, in, h); break;
    case 3: shrink_rows<W, 3>(a, rank, xs, in, h); break;
    case 2: shrink_rows<W, 2>(a, rank, xs, in, h); break;
    default: shrink_rows<W, 1>(a, rank, xs, in, h); break;
  }
}

// y[o] += sum_k h[k] * Bt[k, o] for o in [o_begin, o_end), k ascending.
template <class W>
void expand_any(const W* bt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end, int64_t out) {
  int64_t o = o_begin;
  // 128 columns at a time: 8 independent accumulator chains.
  for (; o + 128 <= o_end; o += 128) {
    __m512 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm512_loadu_ps(y + o + 16 * j);
    for (int32_t k = 0; k < rank; ++k) {
      const __m512 hk = _mm512_set1_ps(h[k]);
      const W* b = bt + int64_t(k) * out + o;
      // rank row streams, `out` apart: prefetch this row's columns two blocks on.
      for (int l = 0; l < 128 * int(sizeof(W)); l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(b + 256) + l, _MM_HINT_T0);
      for (int j = 0; j < 8; ++j) acc[j] = _mm512_fmadd_ps(hk, load16(b + 16 * j), acc[j]);
    }
    for (int j = 0; j < 8; ++j) _mm512_storeu_ps(y + o + 16 * j, acc[j]);
  }
  for (; o + 16 <= o_end; o += 16) {
    __m512 y0 = _mm512_loadu_ps(y + o);
    for (int32_t k = 0; k < rank; ++k) y0 = _mm512_fmadd_ps(_mm512_set1_ps(h[k]), load16(bt + int64_t(k) * out + o), y0);
    _mm512_storeu_ps(y + o, y0);
  }
  for (; o < o_end; ++o) {
    float acc = y[o];
    for (int32_t k = 0; k < rank; ++k) acc = __builtin_fmaf(h[k], load1(bt + int64_t(k) * out + o), acc);
    y[o] = acc;
  }
}

}  // namespace

void lora_shrink_avx512(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in,
                        float* h) {
  if (dt == DType::kBF16) {
    shrink_any(static_cast<const uint16_t*>(a), rank, xs, nrows, in, h);
  } else {
    shrink_any(static_cast<const float*>(a), rank, xs, nrows, in, h);
  }
}

void lora_expand_avx512(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin,
                        int64_t o_end, int64_t out) {
  if (dt == DType::kBF16) {
    expand_any(static_cast<const uint16_t*>(bt), rank, h, y, o_begin, o_end, out);
  } else {
    expand_any(static_cast<const float*>(bt), rank, h, y, o_begin, o_end, out);
  }
}

}  // namespace myriad::gpu::cpu::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
