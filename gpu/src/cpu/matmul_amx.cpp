// AMX inner loop of matmul for bf16 weights at T >= 5 (batched decode,
// prefill), on Intel CPUs with AMX-BF16 (Sapphire Rapids and later).
//
// Why: the AVX-512 4x4 tile is bound by its FMAs from T ~ 5 (at T = 8 a
// batch-8 llama-110m step ran at ~55% of its bandwidth floor here), while
// one TDPBF16PS does 16 x 16 x 32 multiply-adds in 16 cycles. With AMX the
// weights' misses are the bound again, though not at the GEMV's rate: the
// strided tile loads of W keep fewer lines in flight (~12.5 GB/s a core
// against ~15 for the GEMV here; see kAmxMinTokens in matmul.cpp for where
// AMX takes over, and the pass times).
//
// Float32 compute, not bf16 activations: each x is split into three bf16
// terms, x = hi + mid + lo, exactly (hi = bf16(x), mid = bf16(x - hi),
// lo = x - hi - mid, each difference exact; 8 + 8 + 8 significant bits
// cover float's 24). A bf16 weight times a bf16 term is exact in float, and
// the tile unit accumulates in float (round to nearest even), so y = W x
// differs from the AVX-512 path only in the order of the float additions.
// (The unit treats bf16 denormals as zero: terms below ~1e-38, far under
// any accumulated rounding. An infinite x gives NaN, inf - inf, where the
// float loops give +-inf or NaN: the step's output is unusable either way.)
//
// Layout: C[16 out rows][columns] += A[16 rows][32 k] (W rows as they lie,
// row stride = in) x B[16 k-pairs][columns x 2] (x packed per 32 columns in
// pairs, see pack_x_for_amx). A tile multiply costs the same for 1 to 16
// columns (16 cycles here), and so does each tile load, so the columns are
// filled:
//  - T <= 8 (batched decode), "narrow": the columns are (term, token), 3T
//    of them in one B tile (T <= 5) or two; y sums a token's three columns.
//    Two row blocks: tiles 0-3 C, 4-5 A, 6-7 B.
//  - T > 8, "wide": the columns are 16 tokens, and the three terms' B tiles
//    add into the same C. Two row blocks: tiles 0-1 C, 2-3 A, 4-6 B.
// At T = 8 the narrow form takes 4 tile multiplies and 4 loads a 32-column
// step of two row blocks where the wide one took 6 and 5: the llama-110m
// matmul pass at T = 8 went from 11.3 ms (AVX-512: 11.5) to 9.1 (AVX-512:
// 10.5) in interleaved A/Bs, as less of each step waits on the unit.
//
// Compiled through `#pragma GCC target` and chosen at run time only where
// AMX-BF16, AVX512-BF16 and the kernel's permission for tile data are
// present (amx_usable()). As in matmul_avx512.cpp, project headers come
// before the pragma and nothing here calls an inline function of theirs.
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

#include "matmul_kernels.h"

#pragma GCC push_options
#pragma GCC target("amx-tile,amx-bf16,avx512f,avx512dq,avx512bw,avx512vl,avx512bf16,avx2,fma")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace myriad::gpu::cpu::detail {
namespace {

constexpr int64_t kK = 32;       // columns of W per tile (64 bytes of bf16)
constexpr int64_t kRows = 16;    // W rows per tile
constexpr int64_t kTokens = 16;  // tokens (C columns) per wide token block
constexpr int64_t kNarrowMax = 8;

// Palette 1 tile configuration.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The narrow form's two column groups (the second empty for T <= 5).
struct Narrow {
  int64_t w0, w1;  // columns of B/C tile 0 and 1
  explicit Narrow(int64_t T) : w0(3 * T < 16 ? 3 * T : 16), w1(3 * T - w0) {}
};

// Loads this thread's tile configuration for T tokens. Every call configures
// and ends with tilerelease (matmul_rows_amx): tile state left live made the
// next batch-1 decode slower (docs/cpu-backend.md).
void configure_tiles(int64_t T) {
  TileConfig c;
  for (int t = 0; t < 8; ++t) c.rows[t] = kRows;
  if (T <= kNarrowMax) {
    const Narrow n(T);
    c.colsb[0] = c.colsb[2] = uint16_t(n.w0 * 4);  // C of row blocks 0 and 1, group 0
    c.colsb[1] = c.colsb[3] = uint16_t(n.w1 * 4);  // group 1 (unused, 0 wide, when empty)
    c.colsb[4] = c.colsb[5] = uint16_t(kK * 2);    // A: 16 rows x 32 bf16
    c.colsb[6] = uint16_t(n.w0 * 4);               // B: 16 k-pairs x columns x 2 bf16
    c.colsb[7] = uint16_t(n.w1 * 4);
    if (n.w1 == 0) c.rows[1] = c.rows[3] = c.rows[7] = 0;
  } else {
    const int64_t N = T < kTokens ? T : kTokens;
    c.colsb[0] = c.colsb[1] = uint16_t(N * 4);
    c.colsb[2] = c.colsb[3] = uint16_t(kK * 2);
    c.colsb[4] = c.colsb[5] = c.colsb[6] = uint16_t(N * 4);
    c.rows[7] = 0;
  }
  // Not _tile_loadconfig: GCC 12 does not see that its builtin reads the
  // struct and, depending on the optimization level, drops the stores that
  // fill it (the unit then has no tiles configured: SIGILL on first use).
  __asm__ volatile("ldtilecfg %0" : : "m"(c));
}

// 16 x 16 32-bit transpose: out row j = lane j of each input row.
inline void transpose16(__m512i (&r)[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int h = 0; h < 16; h += 8) {
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
    }
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
  }
}

inline __m512 widen(__m256bh h) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(reinterpret_cast<__m256i&>(h)), 16));
}

inline __m512i join(__m256bh a, __m256bh b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(reinterpret_cast<__m256i&>(a)), reinterpret_cast<__m256i&>(b), 1);
}

// The three bf16 terms of 32 columns of x as 16 dwords each (dword q:
// columns 2q, 2q + 1, the pair a B row holds).
inline void split3(const float* p, __m512i& hi, __m512i& mid, __m512i& lo) {
  __m256bh h[2], m[2], l[2];
  for (int i = 0; i < 2; ++i) {
    const __m512 x = _mm512_loadu_ps(p + 16 * i);
    h[i] = _mm512_cvtneps_pbh(x);
    const __m512 r1 = _mm512_sub_ps(x, widen(h[i]));
    m[i] = _mm512_cvtneps_pbh(r1);
    l[i] = _mm512_cvtneps_pbh(_mm512_sub_ps(r1, widen(m[i])));
  }
  hi = join(h[0], h[1]);
  mid = join(m[0], m[1]);
  lo = join(l[0], l[1]);
}

// Transposes up to 16 column vectors (the rest zero) into a B tile of
// `cols` columns: row q = dword q of each.
inline void store_b_tile(__m512i (&v)[16], int64_t cols, uint16_t* dst) {
  transpose16(v);
  const __mmask16 m = __mmask16((1u << cols) - 1);
  for (int q = 0; q < 16; ++q) _mm512_mask_storeu_epi32(dst + q * cols * 2, m, v[q]);
}

// 16 rows x n columns of floats (row stride ld) to y[t][r + m] for t < n.
inline void store_transposed(const float* c, int64_t ld, int64_t n, float* y, int64_t ldy, int64_t r) {
  __m512i v[16];
  for (int m = 0; m < 16; ++m) v[m] = _mm512_maskz_loadu_epi32(__mmask16((1u << n) - 1), c + m * ld);
  transpose16(v);
  for (int64_t t = 0; t < n; ++t) _mm512_storeu_si512(y + t * ldy + r, v[t]);
}

// Two 16-row blocks of W (rows r, r + 16; `in` columns) and the L2 prefetch
// of the two blocks after them (32 contiguous rows), spread over the pair's
// 32-column steps so that the misses stay in flight while the tiles work.
struct RowPair {
  const char* a0;
  const char* a1;
  const char* next;
  int64_t ahead_per_step;
  RowPair(const uint16_t* w, int64_t r, int64_t in)
      : a0(reinterpret_cast<const char*>(w + r * in)),
        a1(a0 + kRows * in * 2),
        next(a0 + 2 * kRows * in * 2),
        ahead_per_step(2 * kRows * in * 2 / (in / kK)) {}
  void prefetch_next(int64_t step) const {
    for (int64_t l = 0; l < ahead_per_step; l += 64) _mm_prefetch(next + step * ahead_per_step + l, _MM_HINT_T1);
  }
};

// Float dot products for the last < 16 rows of a range.
void tail_rows(const float* x, int64_t T, const uint16_t* w, int64_t in, int64_t r, int64_t r1, float* y, int64_t ldy) {
  for (; r < r1; ++r) {
    const uint16_t* wr = w + r * in;
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * in;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t k = 0; k < in; k += 16) {
        const __m512 wk = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + k))), 16));
        acc = _mm512_fmadd_ps(wk, _mm512_loadu_ps(xt + k), acc);
      }
      y[t * ldy + r] = _mm512_reduce_add_ps(acc);
    }
  }
}

// Narrow: per 32-column step, B tile 0 (w0 columns) then B tile 1 (w1).
void rows_narrow(const float* x, const uint16_t* xp, int64_t T, const uint16_t* w, int64_t in, int64_t r0, int64_t r1,
                 float* y, int64_t ldy) {
  const Narrow g(T);
  const int64_t steps = in / kK, stride = in * 2, cols = 3 * T;
  const int64_t b0 = kRows * g.w0 * 2, b1 = kRows * g.w1 * 2, step_elems = b0 + b1;
  alignas(64) float c[kRows * 3 * kNarrowMax];
  // c[m][j T + t] (16 x 3T) to y[t][r + m] = its three terms' sum.
  auto finish = [&](int64_t r) {
    alignas(64) float s[kRows * kNarrowMax];
    const __mmask16 mask = __mmask16((1u << T) - 1);
    for (int m = 0; m < 16; ++m) {
      const float* cm = c + m * cols;
      const __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(mask, cm), _mm512_maskz_loadu_ps(mask, cm + T)),
                                     _mm512_maskz_loadu_ps(mask, cm + 2 * T));
      _mm512_mask_storeu_ps(s + m * T, mask, v);
    }
    store_transposed(s, T, T, y, ldy, r);
  };
  // (The tile intrinsics take their tile numbers as literals.)
  auto store_c01 = [&](int64_t r) {
    _tile_stored(0, c, cols * 4);
    if (g.w1 > 0) _tile_stored(1, c + g.w0, cols * 4);
    finish(r);
  };
  auto store_c23 = [&](int64_t r) {
    _tile_stored(2, c, cols * 4);
    if (g.w1 > 0) _tile_stored(3, c + g.w0, cols * 4);
    finish(r);
  };
  int64_t r = r0;
  for (; r + 2 * kRows <= r1; r += 2 * kRows) {
    const RowPair p(w, r, in);
    const uint16_t* b = xp;
    _tile_zero(0);
    _tile_zero(2);
    if (g.w1 > 0) {
      _tile_zero(1);
      _tile_zero(3);
    }
    for (int64_t s = 0; s < steps; ++s, b += step_elems) {
      p.prefetch_next(s);
      _tile_loadd(4, p.a0 + s * kK * 2, stride);
      _tile_loadd(6, b, g.w0 * 4);
      _tile_dpbf16ps(0, 4, 6);
      _tile_loadd(5, p.a1 + s * kK * 2, stride);
      _tile_dpbf16ps(2, 5, 6);
      if (g.w1 > 0) {
        _tile_loadd(7, b + b0, g.w1 * 4);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    store_c01(r);
    store_c23(r + kRows);
  }
  for (; r + kRows <= r1; r += kRows) {
    const char* a0 = reinterpret_cast<const char*>(w + r * in);
    const uint16_t* b = xp;
    _tile_zero(0);
    if (g.w1 > 0) _tile_zero(1);
    for (int64_t s = 0; s < steps; ++s, b += step_elems) {
      _tile_loadd(4, a0 + s * kK * 2, stride);
      _tile_loadd(6, b, g.w0 * 4);
      _tile_dpbf16ps(0, 4, 6);
      if (g.w1 > 0) {
        _tile_loadd(7, b + b0, g.w1 * 4);
        _tile_dpbf16ps(1, 4, 7);
      }
    }
    store_c01(r);
  }
  tail_rows(x, T, w, in, r, r1, y, ldy);
}

// Wide: per token block of 16 and 32-column step, the hi, mid and lo B tiles.
void rows_wide(const float* x, const uint16_t* xp, int64_t T, const uint16_t* w, int64_t in, int64_t r0, int64_t r1,
               float* y, int64_t ldy) {
  const int64_t steps = in / kK, stride = in * 2;
  const int64_t N = T < kTokens ? T : kTokens, tile = kRows * N * 2;
  alignas(64) float c[2][kRows * kTokens];
  int64_t r = r0;
  for (; r + 2 * kRows <= r1; r += 2 * kRows) {
    const RowPair p(w, r, in);
    for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
      const int64_t n = T - t0 < N ? T - t0 : N;
      const uint16_t* b = xp + (t0 / kTokens) * steps * 3 * tile;
      _tile_zero(0);
      _tile_zero(1);
      for (int64_t s = 0; s < steps; ++s, b += 3 * tile) {
        if (t0 == 0) p.prefetch_next(s);
        _tile_loadd(2, p.a0 + s * kK * 2, stride);
        _tile_loadd(3, p.a1 + s * kK * 2, stride);
        _tile_loadd(4, b, N * 4);
        _tile_loadd(5, b + tile, N * 4);
        _tile_loadd(6, b + 2 * tile, N * 4);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(1, 3, 4);
        _tile_dpbf16ps(0, 2, 5);
        _tile_dpbf16ps(1, 3, 5);
        _tile_dpbf16ps(0, 2, 6);
        _tile_dpbf16ps(1, 3, 6);
      }
      _tile_stored(0, c[0], N * 4);
      _tile_stored(1, c[1], N * 4);
      store_transposed(c[0], N, n, y + t0 * ldy, ldy, r);
      store_transposed(c[1], N, n, y + t0 * ldy, ldy, r + kRows);
    }
  }
  for (; r + kRows <= r1; r += kRows) {
    const char* a0 = reinterpret_cast<const char*>(w + r * in);
    for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
      const int64_t n = T - t0 < N ? T - t0 : N;
      const uint16_t* b = xp + (t0 / kTokens) * steps * 3 * tile;
      _tile_zero(0);
      for (int64_t s = 0; s < steps; ++s, b += 3 * tile) {
        _tile_loadd(2, a0 + s * kK * 2, stride);
        _tile_loadd(4, b, N * 4);
        _tile_loadd(5, b + tile, N * 4);
        _tile_loadd(6, b + 2 * tile, N * 4);
        _tile_dpbf16ps(0, 2, 4);
        _tile_dpbf16ps(0, 2, 5);
        _tile_dpbf16ps(0, 2, 6);
      }
      _tile_stored(0, c[0], N * 4);
      store_transposed(c[0], N, n, y + t0 * ldy, ldy, r);
    }
  }
  tail_rows(x, T, w, in, r, r1, y, ldy);
}

}  // namespace

bool amx_usable() {
  static const bool usable = [] {
    unsigned a, b, c, d;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0), "c"(0));
    if (a < 7) return false;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
    const bool amx_bf16 = (d >> 22) & 1, amx_tile = (d >> 24) & 1, avx512f = (b >> 16) & 1;
    const unsigned max_sub = a;
    __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
    const bool avx512_bf16 = max_sub >= 1 && ((a >> 5) & 1);
    if (!(amx_bf16 && amx_tile && avx512f && avx512_bf16)) return false;
    // Linux hands out the 8 KiB tile state only on request (ARCH_REQ_XCOMP_PERM
    // for XFEATURE_XTILEDATA), once per process.
    constexpr long kReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return usable;
}

int64_t amx_packed_x_elems(int64_t T, int64_t in) {
  const int64_t steps = in / kK;
  if (T <= kNarrowMax) return steps * kRows * 3 * T * 2;
  const int64_t N = T < kTokens ? T : kTokens;
  return (T + kTokens - 1) / kTokens * steps * 3 * kRows * N * 2;
}

// Narrow (T <= 8): step s holds B tile 0 (columns 0..w0) then tile 1, column
// j T + t = term j of token t. Wide: token block b, step s, term j is a B
// tile of 16 k-pair rows x N tokens at ((b * steps + s) * 3 + j) * 32 N.
void pack_x_for_amx(const float* x, int64_t T, int64_t in, uint16_t* out) {
  const int64_t steps = in / kK;
  if (T <= kNarrowMax) {
    const Narrow g(T);
    for (int64_t s = 0; s < steps; ++s) {
      __m512i col[3 * kNarrowMax + 8];
      for (int64_t t = 0; t < T; ++t) split3(x + t * in + s * kK, col[t], col[T + t], col[2 * T + t]);
      for (int64_t i = 3 * T; i < 32; ++i) col[i] = _mm512_setzero_si512();
      uint16_t* dst = out + s * kRows * 3 * T * 2;
      store_b_tile(reinterpret_cast<__m512i(&)[16]>(col[0]), g.w0, dst);
      if (g.w1 > 0) store_b_tile(reinterpret_cast<__m512i(&)[16]>(col[16]), g.w1, dst + kRows * g.w0 * 2);
    }
    return;
  }
  const int64_t N = T < kTokens ? T : kTokens, tile = kRows * N * 2;
  for (int64_t t0 = 0; t0 < T; t0 += kTokens) {
    const int64_t n = T - t0 < N ? T - t0 : N;
    for (int64_t s = 0; s < steps; ++s) {
      __m512i term[3][16];
      for (int64_t i = 0; i < 16; ++i) {
        if (i < n) {
          split3(x + (t0 + i) * in + s * kK, term[0][i], term[1][i], term[2][i]);
        } else {
          term[0][i] = term[1][i] = term[2][i] = _mm512_setzero_si512();
        }
      }
      uint16_t* dst = out + ((t0 / kTokens) * steps + s) * 3 * tile;
      for (int j = 0; j < 3; ++j) store_b_tile(term[j], N, dst + j * tile);
    }
  }
}

void matmul_rows_amx(const float* x, const uint16_t* xp, int64_t T, const WeightView& wv, int64_t r0, int64_t r1,
                     float* y, int64_t ldy) {
  const auto* w = static_cast<const uint16_t*>(wv.data);
  configure_tiles(T);
  if (T <= kNarrowMax) {
    rows_narrow(x, xp, T, w, wv.cols, r0, r1, y, ldy);
  } else {
    rows_wide(x, xp, T, w, wv.cols, r0, r1, y, ldy);
  }
  _tile_release();
}

}  // namespace myriad::gpu::cpu::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
