// AVX2+FMA shrink/expand for the multi-LoRA kernel (compiled with -mavx2
// -mfma; called only when cpu_info().avx2_fma), for f32 and bf16 slot
// weights (bf16 -> f32 is a 16-bit shift; accumulation is f32). The
// arithmetic order of one row never depends on other rows, so a row's
// result is batch-invariant.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "gpu/cpu/lora_sgmv.h"
#include "runtime/dtype.h"

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

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline float load1(const float* p) { return *p; }
inline float load1(const uint16_t* p) { return bf16_to_f32(*p); }

// A kernel's place in its LoraPrefetch (never null): where it starts (the
// span with bytes left; a kernel moves to the next span only when it
// starts), ticks on plain locals in the loop, and where it stopped. A tick is
// straight-line code (two prefetches and a min) on locals: with the state in
// an object, or a branch in the tick, GCC 12 kept the kernels' accumulators
// in memory, storing each one every iteration. Each tick covers the next 128
// bytes, so every line of a tick's bytes (at most 128) is prefetched.
class PrefetchCursor {
 public:
  explicit PrefetchCursor(LoraPrefetch* pf) : pf_(pf) {
    while (pf_->current < pf_->count && pf_->at[pf_->current] >= pf_->end[pf_->current]) ++pf_->current;
  }
  // The span's next byte and its last byte (a cached line when none is left).
  const char* at() const {
    return pf_->current < pf_->count ? pf_->at[pf_->current] : reinterpret_cast<const char*>(pf_);
  }
  const char* last() const {
    return pf_->current < pf_->count ? pf_->end[pf_->current] - 1 : reinterpret_cast<const char*>(pf_);
  }
  void stop_at(const char* at) {
    if (pf_->current < pf_->count) pf_->at[pf_->current] = at < last() ? at : pf_->end[pf_->current];
  }
  // `bytes` (at most 128: the loops' ticks) of weights were just read:
  // prefetch the next 128 of the span (into L1: a probe on the AVX2 EPYC
  // found T0 a little ahead of T1 and NTA); returns the new place.
  static const char* tick(const char* at, const char* last, int64_t bytes) {
    _mm_prefetch(at, _MM_HINT_T0);
    _mm_prefetch(at + 64, _MM_HINT_T0);
    return std::min(at + bytes, last);
  }

 private:
  LoraPrefetch* pf_;
};

// The loops without a prefetch to run (one slot shared by the rows, or f32
// slots) tick nothing; kPf selects the build of each loop.
struct NoPrefetch {
  explicit NoPrefetch(LoraPrefetch*) {}
  const char* at() const { return nullptr; }
  const char* last() const { return nullptr; }
  void stop_at(const char*) {}
  static const char* tick(const char* at, const char*, int64_t) { return at; }
};
template <bool kPf>
using Cursor = std::conditional_t<kPf, PrefetchCursor, NoPrefetch>;

// Calls run(std::bool_constant<pf != nullptr>): the build of the loops with
// the prefetch when there is one to run.
template <class Run>
void with_prefetch(LoraPrefetch* pf, Run&& run) {
  if (pf != nullptr) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
}

// h[r, k] = A[k, :] · xs[r] for KB rows of A and N rows of x at once: each
// (row, k) pair is one FMA chain in a fixed order, whatever the grouping.
template <class W, int N, int KB, bool kPf>
void shrink_block(const W* a, int32_t k, int64_t in, int64_t n8, int32_t rank, const float* const* xs, float* h,
                  LoraPrefetch* pf) {
  __m256 s[N][KB];
  for (int r = 0; r < N; ++r)
    for (int j = 0; j < KB; ++j) s[r][j] = _mm256_setzero_ps();
  // The same columns of the next KB rows (contiguous after these): KB
  // interleaved row streams get no help from the hardware prefetcher.
  const W* next = a + int64_t(k + KB) * in;
  Cursor<kPf> cursor(pf);
  const char* pf_at = cursor.at();
  const char* const pf_last = cursor.last();
  for (int64_t i = 0; i < n8; i += 8) {
    if ((i * int64_t(sizeof(W))) % 64 == 0)
      for (int j = 0; j < KB; ++j) _mm_prefetch(reinterpret_cast<const char*>(next + int64_t(j) * in + i), _MM_HINT_T0);
    // 16 vector registers: the N·KB accumulators and either the N rows of x
    // (then one row of A at a time) or the KB rows of A (then one row of x at
    // a time). A spilled accumulator makes its chain a store and a reload an
    // iteration (perf annotate: 4 x 3 with x held spilled one and ran at the
    // speed of that chain).
    if constexpr (N * KB + N + 1 <= 16) {
      __m256 xv[N];
      for (int r = 0; r < N; ++r) xv[r] = _mm256_loadu_ps(xs[r] + i);
      for (int j = 0; j < KB; ++j) {
        const __m256 av = load8(a + int64_t(k + j) * in + i);
        for (int r = 0; r < N; ++r) s[r][j] = _mm256_fmadd_ps(av, xv[r], s[r][j]);
      }
    } else {
      __m256 av[KB];
      for (int j = 0; j < KB; ++j) av[j] = load8(a + int64_t(k + j) * in + i);
      for (int r = 0; r < N; ++r) {
        const __m256 xv = _mm256_loadu_ps(xs[r] + i);
        for (int j = 0; j < KB; ++j) s[r][j] = _mm256_fmadd_ps(av[j], xv, s[r][j]);
      }
    }
    pf_at = cursor.tick(pf_at, pf_last, KB * 8 * int64_t(sizeof(W)));
  }
  cursor.stop_at(pf_at);
  for (int r = 0; r < N; ++r) {
    for (int j = 0; j < KB; ++j) {
      const W* ak = a + int64_t(k + j) * in;
      float acc = hsum(s[r][j]);
      for (int64_t i = n8; i < in; ++i) acc = std::fma(load1(ak + i), xs[r][i], acc);
      h[r * rank + k + j] = acc;
    }
  }
}

// Rows of A a block takes per row count: >= 8 independent chains hide the
// FMA latency, and the more rows of x share each converted row of A, the
// fewer loads and bf16 shifts an FMA costs. Measured on the AVX2 EPYC
// (Zen 3), the loops alone with A in L2, bf16: 4 rows x 3 took 0.20-0.23 ns
// an FMA against 0.35-0.53 for 4 x 2, 3 rows x 4 0.23 against 0.31 for
// 3 x 2. With the loops of N x KB = 12 holding no accumulator in memory
// (shrink_block, expand_rows_n), the LoRA part of a decode step with one
// bf16 adapter shared by 32 rows went from 4.47 to 2.78 ms on one thread.
template <int N>
constexpr int shrink_k_block() {
  return N == 1 ? 8 : (N == 2 ? 4 : (N == 3 ? 4 : 3));
}

template <class W, int N, bool kPf>
void shrink_rows(const W* a, int32_t rank, const float* const* xs, int64_t in, float* h, LoraPrefetch* pf) {
  constexpr int KB = shrink_k_block<N>();
  const int64_t n8 = in & ~int64_t(7);
  int32_t k = 0;
  for (; k + KB <= rank; k += KB) shrink_block<W, N, KB, kPf>(a, k, in, n8, rank, xs, h, pf);
  if constexpr (KB > 2) {
    for (; k + 2 <= rank; k += 2) shrink_block<W, N, 2, kPf>(a, k, in, n8, rank, xs, h, pf);
  }
  for (; k < rank; ++k) shrink_block<W, N, 1, kPf>(a, k, in, n8, rank, xs, h, pf);
}

template <class W, bool kPf>
void shrink_n(const W* a, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h, LoraPrefetch* pf) {
  switch (nrows) {
    case 4: shrink_rows<W, 4, kPf>(a, rank, xs, in, h, pf); break;
    case 3: shrink_rows<W, 3, kPf>(a, rank, xs, in, h, pf); break;
    case 2: shrink_rows<W, 2, kPf>(a, rank, xs, in, h, pf); break;
    default: shrink_rows<W, 1, kPf>(a, rank, xs, in, h, pf); break;
  }
}

template <class W>
void shrink_any(const W* a, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h,
                LoraPrefetch* pf) {
  with_prefetch(pf, [&](auto kPf) { shrink_n<W, kPf()>(a, rank, xs, nrows, in, h, pf); });
}

// y[o] += sum_k h[k] * Bt[k, o] for o in [o_begin, o_end), k ascending.
template <class W, bool kPf>
void expand_one(const W* bt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end, int64_t out,
                LoraPrefetch* pf) {
  int64_t o = o_begin;
  Cursor<kPf> cursor(pf);
  const char* pf_at = cursor.at();
  const char* const pf_last = cursor.last();
  // 64 columns at a time: 8 independent accumulator chains.
  for (; o + 64 <= o_end; o += 64) {
    __m256 acc[8];
    for (int j = 0; j < 8; ++j) acc[j] = _mm256_loadu_ps(y + o + 8 * j);
    for (int32_t k = 0; k < rank; ++k) {
      const __m256 hk = _mm256_set1_ps(h[k]);
      const W* b = bt + int64_t(k) * out + o;
      // rank row streams, `out` apart: prefetch this row's columns two blocks on.
      for (int l = 0; l < 64 * int(sizeof(W)); l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(b + 128) + l, _MM_HINT_T0);
      for (int j = 0; j < 8; ++j) acc[j] = _mm256_fmadd_ps(hk, load8(b + 8 * j), acc[j]);
      pf_at = cursor.tick(pf_at, pf_last, 64 * int64_t(sizeof(W)));
    }
    for (int j = 0; j < 8; ++j) _mm256_storeu_ps(y + o + 8 * j, acc[j]);
  }
  cursor.stop_at(pf_at);
  for (; o + 8 <= o_end; o += 8) {
    __m256 y0 = _mm256_loadu_ps(y + o);
    for (int32_t k = 0; k < rank; ++k) y0 = _mm256_fmadd_ps(_mm256_set1_ps(h[k]), load8(bt + int64_t(k) * out + o), y0);
    _mm256_storeu_ps(y + o, y0);
  }
  for (; o < o_end; ++o) {
    float acc = y[o];
    for (int32_t k = 0; k < rank; ++k) acc = std::fma(h[k], load1(bt + int64_t(k) * out + o), acc);
    y[o] = acc;
  }
}

template <class W>
void expand_any(const W* bt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end, int64_t out,
                LoraPrefetch* pf) {
  with_prefetch(pf, [&](auto kPf) { expand_one<W, kPf()>(bt, rank, h, y, o_begin, o_end, out, pf); });
}

// expand_any for N rows of one slot at once: each load of Bᵀ serves every
// row (with one adapter shared by many rows, expand was one load per FMA).
// Q vectors (8Q columns) a row: N·Q accumulators, Q converted loads and N
// broadcasts for N·Q FMAs. Measured on the AVX2 EPYC (Zen 3), bf16 Bᵀ in
// L2: 4 rows x 24 columns 0.23 ns an FMA against 0.34 for x 16, 3 rows
// x 24 0.30 against 0.51, 2 rows x 32 0.36 against 0.87. Per element of y
// the same FMAs over k in order, so the bits do not depend on how rows or
// columns are blocked.
template <int N>
constexpr int expand_vectors() {
  return N == 2 ? 4 : 3;
}

template <class W, int N, bool kPf>
void expand_rows_n(const W* bt, int32_t rank, const float* const* hs, float* const* ys, int64_t o_begin,
                   int64_t o_end, int64_t out, LoraPrefetch* pf) {
  constexpr int Q = expand_vectors<N>();
  constexpr int64_t C = 8 * Q;
  int64_t o = o_begin;
  Cursor<kPf> cursor(pf);
  const char* pf_at = cursor.at();
  const char* const pf_last = cursor.last();
  for (; o + C <= o_end; o += C) {
    __m256 acc[N][Q];
    for (int r = 0; r < N; ++r)
      for (int q = 0; q < Q; ++q) acc[r][q] = _mm256_loadu_ps(ys[r] + o + 8 * q);
    for (int32_t k = 0; k < rank; ++k) {
      const W* b = bt + int64_t(k) * out + o;
      // rank row streams, `out` apart: this row's columns 128 on, a prefetch
      // per 64 bytes of the block's (some lines twice: cheap next to the
      // N·Q FMAs).
      for (int l = 0; l < C * int(sizeof(W)); l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(b + 128) + l, _MM_HINT_T0);
      __m256 bv[Q];
      for (int q = 0; q < Q; ++q) bv[q] = load8(b + 8 * q);
      for (int r = 0; r < N; ++r) {
        const __m256 hk = _mm256_broadcast_ss(hs[r] + k);
        for (int q = 0; q < Q; ++q) acc[r][q] = _mm256_fmadd_ps(hk, bv[q], acc[r][q]);
      }
      pf_at = cursor.tick(pf_at, pf_last, C * int64_t(sizeof(W)));
    }
    for (int r = 0; r < N; ++r)
      for (int q = 0; q < Q; ++q) _mm256_storeu_ps(ys[r] + o + 8 * q, acc[r][q]);
  }
  cursor.stop_at(pf_at);
  for (int r = 0; r < N; ++r) expand_one<W, false>(bt, rank, hs[r], ys[r], o, o_end, out, nullptr);
}

template <class W, bool kPf>
void expand_rows_pf(const W* bt, int32_t rank, const float* const* hs, float* const* ys, int nrows,
                    int64_t o_begin, int64_t o_end, int64_t out, LoraPrefetch* pf) {
  switch (nrows) {
    case 4:
      expand_rows_n<W, 4, kPf>(bt, rank, hs, ys, o_begin, o_end, out, pf);
      break;
    case 3:
      expand_rows_n<W, 3, kPf>(bt, rank, hs, ys, o_begin, o_end, out, pf);
      break;
    case 2:
      expand_rows_n<W, 2, kPf>(bt, rank, hs, ys, o_begin, o_end, out, pf);
      break;
    default:
      expand_one<W, kPf>(bt, rank, hs[0], ys[0], o_begin, o_end, out, pf);
      break;  // 64-column blocks
  }
}

template <class W>
void expand_rows_any(const W* bt, int32_t rank, const float* const* hs, float* const* ys, int nrows,
                     int64_t o_begin, int64_t o_end, int64_t out, LoraPrefetch* pf) {
  with_prefetch(pf, [&](auto kPf) { expand_rows_pf<W, kPf()>(bt, rank, hs, ys, nrows, o_begin, o_end, out, pf); });
}

}  // namespace

void lora_shrink_avx2(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h,
                      LoraPrefetch* prefetch) {
  if (dt == DType::kBF16) {
    shrink_any(static_cast<const uint16_t*>(a), rank, xs, nrows, in, h, prefetch);
  } else {
    shrink_any(static_cast<const float*>(a), rank, xs, nrows, in, h, prefetch);
  }
}

void lora_expand_avx2(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end,
                      int64_t out, LoraPrefetch* prefetch) {
  if (dt == DType::kBF16) {
    expand_any(static_cast<const uint16_t*>(bt), rank, h, y, o_begin, o_end, out, prefetch);
  } else {
    expand_any(static_cast<const float*>(bt), rank, h, y, o_begin, o_end, out, prefetch);
  }
}

void lora_expand_rows_avx2(const void* bt, DType dt, int32_t rank, const float* const* hs, float* const* ys,
                           int nrows, int64_t o_begin, int64_t o_end, int64_t out, LoraPrefetch* prefetch) {
  if (dt == DType::kBF16) {
    expand_rows_any(static_cast<const uint16_t*>(bt), rank, hs, ys, nrows, o_begin, o_end, out, prefetch);
  } else {
    expand_rows_any(static_cast<const float*>(bt), rank, hs, ys, nrows, o_begin, o_end, out, prefetch);
  }
}

}  // namespace myriad::gpu::cpu::detail
