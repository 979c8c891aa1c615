// AVX2/FMA variants of the per-token ops (see ops_kernels.h). SiLU runs over
// the intermediate width (2048-14336 floats) once per layer and token: with
// scalar expf it was ~2% of a llama-110m decode step.
#include <immintrin.h>

#include "ops_kernels.h"
#include "vec_math_avx2.h"

namespace myriad::gpu::cpu::detail {
namespace {

// g * sigmoid(g) * u. sigmoid(g) = 1 / (1 + e) for g >= 0 and e / (1 + e) for
// g < 0, with e = exp(-|g|) <= 1: the exponential never overflows.
inline __m256 silu_mul8(__m256 g, __m256 u) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 e = exp256_nonpositive(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_and_ps(g, abs_mask)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 num = _mm256_blendv_ps(one, e, g);  // sign bit of g selects e
  const __m256 sig = _mm256_div_ps(num, _mm256_add_ps(one, e));
  return _mm256_mul_ps(_mm256_mul_ps(g, sig), u);
}

}  // namespace

void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, silu_mul8(_mm256_loadu_ps(gate + i), _mm256_loadu_ps(up + i)));
  if (i < n) {  // tail through a padded lane buffer: same arithmetic as the body
    alignas(32) float g[8] = {0, 0, 0, 0, 0, 0, 0, 0}, u[8] = {0, 0, 0, 0, 0, 0, 0, 0}, o[8];
    for (int64_t j = i; j < n; ++j) g[j - i] = gate[j], u[j - i] = up[j];
    _mm256_store_ps(o, silu_mul8(_mm256_load_ps(g), _mm256_load_ps(u)));
    for (int64_t j = i; j < n; ++j) out[j] = o[j - i];
  }
}

float max_avx2(const float* x, int64_t n) {
  int64_t i = 0;
  float m = x[0];
  if (n >= 32) {
    __m256 a = _mm256_loadu_ps(x), b = a, c = a, d = a;
    for (; i + 32 <= n; i += 32) {
      a = _mm256_max_ps(a, _mm256_loadu_ps(x + i));
      b = _mm256_max_ps(b, _mm256_loadu_ps(x + i + 8));
      c = _mm256_max_ps(c, _mm256_loadu_ps(x + i + 16));
      d = _mm256_max_ps(d, _mm256_loadu_ps(x + i + 24));
    }
    a = _mm256_max_ps(_mm256_max_ps(a, b), _mm256_max_ps(c, d));
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    m = _mm_cvtss_f32(s);
  }
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

int64_t argmax_avx2(const float* x, int64_t n) {
  const __m256 m = _mm256_set1_ps(max_avx2(x, n));
  const float ms = _mm256_cvtss_f32(m);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int bits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), m, _CMP_EQ_OQ));
    if (bits) return i + __builtin_ctz(unsigned(bits));
  }
  for (; i < n; ++i)
    if (x[i] == ms) return i;
  return -1;
}

void softmax_avx2(float* x, int64_t n) {
  const float ms = max_avx2(x, n);
  const __m256 m = _mm256_set1_ps(ms);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp256_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, acc);
  float s = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; i < n; ++i) {
    x[i] = _mm256_cvtss_f32(exp256_nonpositive(_mm256_set1_ps(x[i] - ms)));
    s += x[i];
  }
  const __m256 inv = _mm256_set1_ps(1.0f / s);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
  for (; i < n; ++i) x[i] *= _mm256_cvtss_f32(inv);
}

void f32_to_bf16_avx2(const float* x, int64_t n, uint16_t* out) {
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(hi, one)), 16);
    const __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, quiet), nan);
    // 8 x 32-bit -> 8 x 16-bit (values fit: the upper halves are zero).
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), packed);
  }
  for (; i < n; ++i) {
    uint32_t u;
    __builtin_memcpy(&u, x + i, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      out[i] = uint16_t((u >> 16) | 0x40);
    } else {
      out[i] = uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
  }
}

}  // namespace myriad::gpu::cpu::detail
