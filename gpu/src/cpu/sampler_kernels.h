// Private to gpu/src/cpu: the vocabulary-wide pass of the sampler,
// sum_i exp(z[i] - m), portable and AVX2 (sampler_avx2.cpp).
#pragma once

#include <cstdint>

namespace myriad::gpu::cpu::detail {

double sum_exp_portable(const float* z, int64_t n, float m);
// Cephes-style vector exp (relative error ~2e-7), float lanes summed per
// block into a double.
double sum_exp_avx2(const float* z, int64_t n, float m);

}  // namespace myriad::gpu::cpu::detail
