// Private to gpu/src/cpu: the inner loops of paged attention over one KV
// block, portable and AVX2 (attention_avx2.cpp), chosen at run time.
#pragma once

#include <cstdint>

namespace myriad::gpu::cpu::detail {

// scores[j] = dot(q, k + j * stride, hd) * scale for j < n.
void block_scores_portable(const float* q, const float* k, int64_t n, int64_t stride, int64_t hd, float scale,
                           float* scores);
void block_scores_avx2(const float* q, const float* k, int64_t n, int64_t stride, int64_t hd, float scale,
                       float* scores);
// o[d] += sum_j p[j] * v[j * stride + d] for d < hd.
void block_accumulate_portable(const float* p, const float* v, int64_t n, int64_t stride, int64_t hd, float* o);
void block_accumulate_avx2(const float* p, const float* v, int64_t n, int64_t stride, int64_t hd, float* o);

}  // namespace myriad::gpu::cpu::detail
