// The one reference every backend is compared with: plain loops in double,
// written from the models' definitions (Hugging Face transformers, vLLM's
// fused_add_rms_norm, PEFT's LoRA), sharing no code with the kernels. Inputs
// are the values the backends see (already rounded to their dtype); outputs
// are not rounded (the tolerance accounts for the backend's storage).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/model_config.h"
#include "runtime/step_plan.h"

namespace myriad::backend_ops::ref {

// out[t] = table[ids[t]]. table: [vocab, hidden].
std::vector<float> embedding(const std::vector<float>& table, int64_t hidden, const std::vector<int32_t>& ids);

// RMSNorm of T rows of width n. With a residual (vLLM fused_add_rms_norm):
// residual = dtype(residual + x) first, and the rows normalised are that sum.
void rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t n, float eps,
             std::vector<float>* residual, DType residual_dtype, std::vector<float>& out);

// Rotate-half RoPE in place on `heads` heads of one token at `pos`. inv_freq
// is computed in double from the config (theta^(-2i/d), then llama3 scaling
// as transformers' _compute_llama3_parameters) and held in float32, and the
// angle pos * inv_freq is a float32 product, as transformers computes both.
std::vector<float> rope_inv_freq(const ModelConfig& c);
void rope(float* x, int64_t heads, int64_t head_dim, int32_t pos, const std::vector<float>& inv_freq);

// out[t, i] = silu(gate[t, i]) * up[t, i] from gate_up [T, 2 * inter].
std::vector<float> silu_mul(const std::vector<float>& gate_up, int64_t T, int64_t inter);

// y[T, out] = x[T, in] . W[out, in]^T.
std::vector<float> gemm(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t in, int64_t out);

// Causal GQA attention of one query token over contiguous K/V rows [lo, pos]
// ([ctx, kv_heads * head_dim], row 0 = position lo): out [heads * head_dim].
void attention(const float* q, const float* k, const float* v, int64_t ctx, int64_t heads, int64_t kv_heads,
               int64_t head_dim, float* out);

// One LoRA slot of one module: A [rank, in], B [out, rank] (PEFT layout).
struct LoraSlot {
  std::vector<float> a, b;
  int32_t rank = 0;
  float scale = 0;
};
// y[t] += sum over (slot, weight) of row t's mix: weight * scale * B (A x[t]).
void lora(std::span<const AdapterMix> mixes, std::span<const LoraSlot> slots, const std::vector<float>& x,
          int64_t in, std::vector<float>& y, int64_t out);

// Greedy: argmax (ties to the lowest id) and its log-softmax.
struct Greedy {
  int32_t token;
  double logprob;
};
Greedy greedy(const float* logits, int64_t vocab);

}  // namespace myriad::backend_ops::ref
