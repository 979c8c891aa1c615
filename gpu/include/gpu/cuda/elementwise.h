// Small element-wise device kernels of the Llama block: SiLU-and-multiply
// (the MLP's activation over the fused gate|up GEMM output), embedding
// lookup, bias add and dtype conversion. Stateless; thread-safe.
#pragma once

#include <cstdint>

#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/lora.h"
#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::gpu::cuda {

// out[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i], silu(x) = x / (1 + e^-x).
// lora (optional): gate|up's BGMV expand as an epilogue over gate_up's
// columns (lora.h), applied before the activation; gate_up is not written.
Status silu_mul(DType dtype, void* out,   // [tokens, inter]
                const void* gate_up,      // [tokens, 2 * inter]: gate then up
                int64_t tokens, int64_t inter, StreamHandle stream, const LoraEpilogue* lora = nullptr);

// out[t, :] = table[ids[t], :]. ids must be in [0, vocab) (the executor
// validates them on the host); an id outside writes zeros.
Status embedding(DType dtype, void* out,  // [tokens, hidden]
                 const void* table,       // [vocab, hidden]
                 const int32_t* ids,      // [tokens] (device)
                 int64_t tokens, int64_t hidden, int64_t vocab, StreamHandle stream);

// y[t, j] += bias[j] for j < n, row stride ldy (qwen2's q/k/v biases).
Status add_bias(DType dtype, void* y, int64_t ldy, const void* bias, int64_t tokens, int64_t n, StreamHandle stream);

// dst[i] = dtype(src[i]) for n elements; src is float32 (weights upload).
Status convert_from_f32(DType dst_dtype, void* dst, const float* src, int64_t n, StreamHandle stream);

// Fills n elements with uniform values in [-scale, scale) from a counter-based
// hash of (seed, index): random weights made on the device (benchmarks).
Status fill_random(DType dtype, void* dst, int64_t n, float scale, uint64_t seed, StreamHandle stream);

}  // namespace myriad::gpu::cuda
