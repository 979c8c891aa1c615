// The CPU backend's small per-token kernels (everything but matmul and
// attention), each beside a naive reference used by the tests. Shapes are in
// floats; all compute is float32. Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "gpu/cpu/matmul.h"
#include "runtime/model_config.h"

namespace myriad::gpu::cpu {

// y[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w, for T rows of width n. y may alias x.
void rmsnorm(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y);
void rmsnorm_reference(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y);

// RoPE inverse frequencies [head_dim / 2] in float32 as Hugging Face computes
// them (theta^(-2i/d)), with the "llama3" rope_scaling adjustment if configured.
std::vector<float> rope_inv_freq(const ModelConfig& c);
// cos/sin [head_dim / 2] of angle pos * inv_freq[i], computed in float32.
void rope_cos_sin(int64_t pos, const float* inv_freq, int64_t half, float* cos_out, float* sin_out);
// Rotate-half RoPE in place on one token's n_heads heads x[h * head_dim + i]:
// dimension i pairs with i + head_dim / 2.
void rope_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin);
// Reference: frequencies, llama3 scaling and angles in double from the config.
void rope_reference(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const ModelConfig& c);

// out[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)).
void silu_mul(const float* gate, const float* up, int64_t n, float* out);
void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out);

// out[t] = table[ids[t]] converted to float. table: [vocab, hidden].
void embedding(const WeightView& table, const int32_t* ids, int64_t T, float* out);

// In-place softmax of n values (max-subtracted).
void softmax(float* x, int64_t n);
void softmax_reference(const float* x, int64_t n, double* out);

// Index of the largest value; ties go to the lowest index.
int64_t argmax(const float* x, int64_t n);

// out[i] = f32_to_bf16(x[i]) (round to nearest even), vectorized.
void to_bf16(const float* x, int64_t n, uint16_t* out);

// y[t] += b for T rows of width n.
void add_bias(float* y, const float* b, int64_t T, int64_t n);

}  // namespace myriad::gpu::cpu
