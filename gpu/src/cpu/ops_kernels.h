// Private to gpu/src/cpu: AVX2 variants of the per-token ops in ops.h
// (ops_avx2.cpp, chosen at run time where detail::use_avx2()).
#pragma once

#include <cstdint>

namespace myriad::gpu::cpu::detail {

// out[i] = silu(gate[i]) * up[i] with the vector exp (~2e-7 relative).
void silu_mul_avx2(const float* gate, const float* up, int64_t n, float* out);
// In-place softmax of n >= 1 values with the vector exp.
void softmax_avx2(float* x, int64_t n);
// Largest of n >= 1 values (NaN-free input; with NaNs the result is unspecified).
float max_avx2(const float* x, int64_t n);
// First index of the largest value, or -1 when NaNs hide it.
int64_t argmax_avx2(const float* x, int64_t n);
// out[i] = bf16 of x[i], rounded to nearest even, NaN kept quiet: bit for
// bit what f32_to_bf16 gives (the KV cache's writes).
void f32_to_bf16_avx2(const float* x, int64_t n, uint16_t* out);

}  // namespace myriad::gpu::cpu::detail
