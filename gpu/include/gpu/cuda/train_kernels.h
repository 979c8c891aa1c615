// The CUDA backend's training kernels: the forward pieces a backward needs
// saved (inverse RMS, attention log-sum-exp) and the backward of each op of
// the Llama graph (gpu/llama_graph.h), in float32, on whole sequences (no KV
// cache). The CPU's kernels (gpu/cpu/train_kernels.h, checked against finite
// differences in float64) are their reference: the same formulas and
// contracts, one token or one (token, head) per block instead of a loop.
// Backward functions add into their outputs (+=) unless named otherwise.
// All pointers are device memory; every call is asynchronous on `stream`.
// Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda::train {

// y[t] = x[src(t)] * r[t] * w with r[t] = 1 / sqrt(mean(x[src(t)]^2) + eps),
// rows of n; src(t) = rows ? rows[t] : t (the head normalises only the
// positions it predicts from).
Status rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* r,
                       const int32_t* rows, StreamHandle stream);
// dx[src(t)] += d(y[t])/d(x[src(t)])^T dy[t], given r[t]. The rows of a
// gathered call must be distinct.
Status rmsnorm_backward(const float* x, const float* w, const float* r, const float* dy, int64_t T, int64_t n,
                        float* dx, const int32_t* rows, StreamHandle stream);

// Rotate-half RoPE in place on x [T, heads * head_dim]; cos, sin: [T, head_dim / 2]
// (each token's own angles). The backward rotates the gradient back (-sin).
Status rope_forward(float* x, int64_t T, int64_t heads, int64_t head_dim, const float* cos, const float* sin,
                    StreamHandle stream);
Status rope_backward(float* dx, int64_t T, int64_t heads, int64_t head_dim, const float* cos,
                     const float* sin, StreamHandle stream);

// a = silu(g) * u over n values; backward: dg += da * u * silu'(g), du += da * silu(g).
Status silu_mul_forward(const float* g, const float* u, int64_t n, float* a, StreamHandle stream);
Status silu_mul_backward(const float* g, const float* u, const float* da, int64_t n, float* dg, float* du,
                         StreamHandle stream);

// y[i] += x[i] for n values.
Status add_into(float* y, const float* x, int64_t n, StreamHandle stream);
// y[t, j] += bias[j], T rows of n.
Status add_bias_rows(float* y, const float* bias, int64_t T, int64_t n, StreamHandle stream);
// out[t] = table[ids[t]], rows of H; ids must be in the table (checked on the host).
Status embed_rows(const float* table, const int32_t* ids, int64_t T, int64_t H, float* out,
                  StreamHandle stream);

// Causal self-attention over sequences packed one after another: token t
// belongs to the sequence of tokens [row_start[t], row_end[t]) and attends to
// the tokens of it up to itself (and, window > 0, only those j > t - window).
// q: [T, num_heads * head_dim], k, v: [T, num_kv_heads * head_dim]; query
// head h reads kv head h / (num_heads / num_kv_heads).
struct AttentionShape {
  int64_t T = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, window = 0;
  // The longest sequence (its scores fit in shared memory: see
  // kMaxAttentionLength). A precondition: the kernels size shared memory by
  // it and cannot check the sequences against it.
  int64_t max_len = 0;
};
// The longest sequence these kernels take (a block keeps one query's scores
// in 48 KB of shared memory, beside its vectors).
inline constexpr int64_t kMaxAttentionLength = 10240;
inline constexpr int64_t kMaxAttentionHeadDim = 256;
// row_start is all the forward needs; the backward's keys need row_end too.
// out: [T, num_heads * head_dim] (written); lse: [T, num_heads] (written),
// the log-sum-exp of each query's scaled scores.
Status attention_forward(const AttentionShape& s, const int32_t* row_start, const float* q, const float* k,
                         const float* v, float* out, float* lse, StreamHandle stream);
// dq, dk, dv += the gradients from d_out, recomputing the probabilities from
// lse. delta: [T, num_heads] scratch (written: d_out . out per query head).
Status attention_backward(const AttentionShape& s, const int32_t* row_start, const int32_t* row_end,
                          const float* q, const float* k, const float* v, const float* out, const float* lse,
                          const float* d_out, float* delta, float* dq, float* dk, float* dv,
                          StreamHandle stream);

// Cross-entropy of P positions over a vocabulary of V, in place: logits
// [P, V] become weight[p] * (softmax - onehot(target[p])) (zeros where
// weight is 0); loss[p] = -log softmax(logits)[target[p]]. Targets must be in
// the vocabulary (checked on the host).
Status cross_entropy(float* logits, int64_t P, int64_t V, const int32_t* target, const float* weight,
                     float* loss, StreamHandle stream);

}  // namespace myriad::gpu::cuda::train
