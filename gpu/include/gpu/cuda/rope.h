// Rotary position embedding on the device, Hugging Face "rotate_half" layout:
// dimension i pairs with i + head_dim/2, angle = position * inv_freq[i]
// (float32, as HF computes it), applied in place to q and k.
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/lora.h"
#include "runtime/dtype.h"
#include "runtime/model_config.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// inv_freq[i] = rope_theta^(-2i/head_dim) in float32, then Llama 3 frequency
// scaling when config.rope_scaling is "llama3" (HF _compute_llama3_parameters).
std::vector<float> rope_inv_freq(const ModelConfig& config);  // [head_dim / 2]

// q: [tokens, q_stride] holding num_heads heads of head_dim at column 0;
// k: [tokens, k_stride] holding num_kv_heads heads (strides let q and k be
// slices of one fused qkv buffer). positions: [tokens] (device, int32);
// inv_freq: [head_dim/2] (device, float32). head_dim must be even.
Status rope(DType dtype, void* q, int64_t q_stride, void* k, int64_t k_stride, const int32_t* positions,
            const float* inv_freq, int64_t tokens, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
            StreamHandle stream);

// rope() on a fused qkv buffer ([tokens, qkv_stride]: q heads at column 0,
// then the k heads, then v) followed by kv_cache_write of the rotated k and
// v (paged_attention.h's layout; slot_mapping[t] < 0 skips a token), in one
// launch instead of two (decode runs it once per layer). Bit-identical to
// the two kernels in sequence. lora (optional): q|k|v's BGMV expand as an
// epilogue over qkv's columns (lora.h), applied before the rotation; q and k
// then hold the rotated sums, v's go to the cache only.
Status rope_kv_write(DType dtype, void* qkv, int64_t qkv_stride, const int32_t* positions, const float* inv_freq,
                     void* k_cache, void* v_cache, const int32_t* slot_mapping, int64_t tokens, int64_t num_heads,
                     int64_t num_kv_heads, int64_t head_dim, StreamHandle stream,
                     const LoraEpilogue* lora = nullptr);

}  // namespace myriad::gpu::cuda
