// AVX-512 accumulate_outer for float (train_kernels.h): LoRA's dA and dBᵀ
// sums, a 4 x 64 block of sums in 16 zmm registers (the portable loop's
// block spills there on SSE2, the baseline the library is built for).
// Each element's sum still runs over the tokens in order, so a job's result
// does not depend on the other jobs of the step or on the column split.
//
// Compiled through `#pragma GCC target` (the build gives no -mavx512 flags)
// and chosen at run time only where AVX-512F is present (lora_isa()).
// Project headers are included before the pragma, and nothing here calls an
// inline function of theirs, so no AVX-512 copy of a shared inline function
// reaches the link.
#include <immintrin.h>

#include <cstdint>
#include <utility>

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
// GCC 12's AVX-512 intrinsics pass _mm512_undefined_*() as the merge source
// of unmasked forms, which -Wuninitialized flags once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace myriad::gpu::cpu::train::detail {

void accumulate_outer_avx512(const std::pair<int64_t, int64_t>* spans, int64_t num_spans, const float* u, int64_t ld_u,
                             int64_t nk, const float* v, int64_t ld_v, int64_t i0, int64_t i1, float scale, float* out,
                             int64_t ld_out) {
  constexpr int64_t kW = 64, kK = 4, kV = kW / 16;
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t c0 = i0; c0 < i1; c0 += kW) {
    const int64_t nc = i1 - c0 < kW ? i1 - c0 : kW;
    __mmask16 mask[kV];
    for (int64_t j = 0; j < kV; ++j) {
      const int64_t lanes = nc - 16 * j;
      mask[j] = lanes >= 16 ? __mmask16(0xFFFF) : lanes <= 0 ? __mmask16(0) : __mmask16((1u << lanes) - 1);
    }
    for (int64_t k0 = 0; k0 < nk; k0 += kK) {
      const int64_t nkk = nk - k0 < kK ? nk - k0 : kK;
      __m512 acc[kK][kV];
      for (int64_t k = 0; k < kK; ++k)
        for (int64_t j = 0; j < kV; ++j) acc[k][j] = _mm512_setzero_ps();
      for (int64_t sp = 0; sp < num_spans; ++sp)
        for (int64_t t = spans[sp].first; t < spans[sp].second; ++t) {
          const float* vt = v + t * ld_v + c0;
          const float* ut = u + t * ld_u + k0;
          __m512 x[kV];
          for (int64_t j = 0; j < kV; ++j) x[j] = _mm512_maskz_loadu_ps(mask[j], vt + 16 * j);
          for (int64_t k = 0; k < kK; ++k) {
            const __m512 d = _mm512_set1_ps(k < nkk ? ut[k] : 0.0f);
            for (int64_t j = 0; j < kV; ++j) acc[k][j] = _mm512_fmadd_ps(d, x[j], acc[k][j]);
          }
        }
      for (int64_t k = 0; k < nkk; ++k) {
        float* o = out + (k0 + k) * ld_out + c0;
        for (int64_t j = 0; j < kV; ++j) {
          const __m512 cur = _mm512_maskz_loadu_ps(mask[j], o + 16 * j);
          _mm512_mask_storeu_ps(o + 16 * j, mask[j], _mm512_fmadd_ps(s, acc[k][j], cur));
        }
      }
    }
  }
}

}  // namespace myriad::gpu::cpu::train::detail

#pragma GCC diagnostic pop
#pragma GCC pop_options
