// Private to gpu/src/cpu: the inner loops of paged attention over one KV
// block, portable (paged_attention.cpp) and AVX2 (attention_avx2.cpp, built
// with -mavx2 -mfma -mf16c), chosen at run time, for each element type the
// cache can hold. K/V rows are `stride` elements apart.
#pragma once

#include <cstdint>

namespace myriad::gpu::cpu::detail {

// The cache's element type. Not DType: the AVX2 file must not include a
// header with inline functions (an AVX2 copy of one could reach the link).
enum class KvElem : uint8_t { kF32, kBF16, kF16 };

// scores[j] = dot(q, k + j * stride, hd) * scale for j < n.
template <KvElem E>
void block_scores_portable(const float* q, const void* k, int64_t n, int64_t stride, int64_t hd, float scale,
                           float* scores);
template <KvElem E>
void block_scores_avx2(const float* q, const void* k, int64_t n, int64_t stride, int64_t hd, float scale,
                       float* scores);
// o[d] += sum_j p[j] * v[j * stride + d] for d < hd.
template <KvElem E>
void block_accumulate_portable(const float* p, const void* v, int64_t n, int64_t stride, int64_t hd, float* o);
template <KvElem E>
void block_accumulate_avx2(const float* p, const void* v, int64_t n, int64_t stride, int64_t hd, float* o);

}  // namespace myriad::gpu::cpu::detail
