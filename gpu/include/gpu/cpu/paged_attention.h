// Causal grouped-query attention over the paged KV cache. Each new token of
// a row attends to positions [0, its position] of its own sequence, reading
// K and V only through the row's block table (no contiguous copy). Query
// head h reads kv head h / (heads / kv_heads); scores are scaled by
// 1/sqrt(head_dim); softmax in float32.
//
// Stateless (per-thread scratch only); thread-safe for distinct outputs.
#pragma once

#include <cstdint>
#include <span>

#include "gpu/cpu/kv_cache.h"
#include "gpu/cpu/thread_pool.h"

namespace myriad::gpu::cpu {

struct AttentionRow {
  int64_t token_begin = 0;        // first of the row's rows in q / out
  int32_t num_tokens = 0;         // new tokens of the row
  int64_t start_pos = 0;          // position of the first new token
  const int32_t* blocks = nullptr;  // block table covering [0, start_pos + num_tokens)
};

struct AttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  // Sliding window W > 0: position i attends to (i - W, i], W positions
  // (transformers' Mistral/Qwen2 mask: j <= i - W is excluded); 0 = full causal.
  int64_t window = 0;
};

// q, out: [T, heads * head_dim]. The K/V of every new token must already be
// in the cache (written for this layer).
void paged_attention(ThreadPool& pool, const KvCache& cache, int64_t layer, const AttentionShape& s,
                     std::span<const AttentionRow> rows, const float* q, float* out);

// Reference for one query token over contiguous K/V [ctx, kv_heads * head_dim]
// (double math, full causal: all ctx positions): out [heads * head_dim].
void attention_reference(const AttentionShape& s, const float* q, const float* k, const float* v, int64_t ctx,
                         float* out);

}  // namespace myriad::gpu::cpu
