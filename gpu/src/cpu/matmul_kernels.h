// Private to gpu/src/cpu: the inner loops behind matmul(), one portable and
// one AVX2 (matmul_avx2.cpp, compiled with -mavx2 -mfma -mf16c and chosen at
// run time). Each computes y[t * ldy + r] for rows [r0, r1) of w and tokens
// [0, T) of x.
#pragma once

#include <cstdint>

#include "gpu/cpu/matmul.h"

namespace myriad::gpu::cpu::detail {

// AVX2/FMA/F16C present and not switched off by matmul_limit_isa().
bool use_avx2();

// Whether the T = 1 GEMV prefetches into L2 (Intel cores) rather than L1
// (what measured best on Zen 5); see gemv in matmul_avx512.cpp.
bool gemv_prefetch_into_l2();

// x as the SIMD bf16 loops want it: each full chunk of a row (16 elements
// for AVX2, 32 for AVX-512) stored as its even then its odd elements (the
// order a 32-bit lane shift/mask of bf16 pairs yields); the tail (in % chunk)
// stays in order. Runs on the calling thread before every bf16 matmul.
void permute_x_for_bf16_avx2(const float* x, int64_t T, int64_t in, float* out);
void permute_x_for_bf16_avx512(const float* x, int64_t T, int64_t in, float* out);

// AMX (matmul_amx.cpp): bf16 weights, T >= kAmxMinTokens (matmul.cpp), `in`
// a multiple of 32. x goes
// in as three bf16 terms (hi + mid + lo == x exactly) packed as the tile
// unit's B operand by pack_x_for_amx into amx_packed_x_elems(T, in)
// uint16s; the rows are computed from that, and any last < 16 rows from x.
bool amx_usable();  // AMX-BF16 + AVX512-BF16, and the OS granted tile data
int64_t amx_packed_x_elems(int64_t T, int64_t in);
void pack_x_for_amx(const float* x, int64_t T, int64_t in, uint16_t* out);
void matmul_rows_amx(const float* x, const uint16_t* xp, int64_t T, const WeightView& w, int64_t r0, int64_t r1,
                     float* y, int64_t ldy);

void matmul_rows_portable(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                          int64_t ldy);
// `x` permuted by permute_x_for_bf16_avx2 when w.dtype is bf16, in order otherwise.
void matmul_rows_avx2(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                      int64_t ldy);
// Same, x permuted with chunk 32 for bf16.
void matmul_rows_avx512(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                        int64_t ldy);

}  // namespace myriad::gpu::cpu::detail
