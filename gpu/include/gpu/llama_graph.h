// The Llama-family forward pass (Llama 2/3, Mistral, Qwen2), written once
// over the operations a backend implements. The CPU and CUDA executors
// implement LlamaOps over their own buffers and kernels (fusions such as the
// qkv and gate|up GEMMs, residual+norm, and CUDA graphs are theirs); this
// file fixes the order, so both compute the same graph. The training issue's
// backward pass is meant to be a second function over a matching table.
//
// One step, T new tokens of all rows concatenated ([T, hidden] activations):
//
//   embed                          x = E[tokens]
//   for each layer l:
//     after_layers(l)              rows routed in their prefill pick their experts (l: layers done)
//     attn_norm(l)                 x += mlp_out (l > 0);  h = rmsnorm(x) · w_in
//     qkv(l)                       q|k|v = h · Wqkv (+ bias: Qwen2 / attention_bias) + LoRA_q,k,v
//     rope_and_cache(l)            RoPE(q, k) at each token's position; k, v into the paged KV cache
//     attention(l)                 attn = softmax(q Kᵀ / √d) V over each row's block table (causal,
//                                  sliding window where the model has one)
//     out_proj(l)                  attn_out = attn · Wo (+ bias) + LoRA_o
//     mlp_norm(l)                  x += attn_out;  h = rmsnorm(x) · w_post
//     gate_up(l)                   g|u = h · Wgu + LoRA_gate,up
//     act(l)                       a = silu(g) · u
//     down(l)                      mlp_out = a · Wdown + LoRA_down
//   after_layers(num_layers)
//   head                           x += mlp_out at the logits positions; logits = rmsnorm(x) · W_lm
//
// Sampling follows the graph (each backend's sampler, one counter RNG).
// Not thread-safe: an executor runs it on its own step.
#pragma once

#include "runtime/result.h"

namespace myriad::gpu {

class LlamaOps {
 public:
  virtual ~LlamaOps() = default;
  virtual Status embed() = 0;
  virtual Status attn_norm(int layer) = 0;
  virtual Status qkv(int layer) = 0;
  virtual Status rope_and_cache(int layer) = 0;
  virtual Status attention(int layer) = 0;
  virtual Status out_proj(int layer) = 0;
  virtual Status mlp_norm(int layer) = 0;
  virtual Status gate_up(int layer) = 0;
  virtual Status act(int layer) = 0;
  virtual Status down(int layer) = 0;
  virtual Status head() = 0;
  // Between layers, once `layers_done` layers are complete (0 before the
  // first, num_layers before head): where rows routed in their prefill pick
  // their experts (PrefillRouter). A backend that takes no routes has nothing to do.
  virtual Status after_layers(int /*layers_done*/) { return ok_status(); }
};

// The forward pass of `num_layers` layers over `ops`, stopping at the first
// error.
inline Status run_llama_forward(LlamaOps& ops, int num_layers) {
  MYRIAD_TRY(ops.embed());
  for (int l = 0; l < num_layers; ++l) {
    MYRIAD_TRY(ops.after_layers(l));
    MYRIAD_TRY(ops.attn_norm(l));
    MYRIAD_TRY(ops.qkv(l));
    MYRIAD_TRY(ops.rope_and_cache(l));
    MYRIAD_TRY(ops.attention(l));
    MYRIAD_TRY(ops.out_proj(l));
    MYRIAD_TRY(ops.mlp_norm(l));
    MYRIAD_TRY(ops.gate_up(l));
    MYRIAD_TRY(ops.act(l));
    MYRIAD_TRY(ops.down(l));
  }
  MYRIAD_TRY(ops.after_layers(num_layers));
  return ops.head();
}

}  // namespace myriad::gpu
