// The counter-based random source every backend samples with: the draw for
// a sequence's output token i depends only on (seed, i), so a sequence gives
// the same tokens whatever it is batched with, after a preemption recompute,
// and on the CPU and CUDA alike (both include this one definition; it
// compiles as host and device code under nvcc).
//   u = top 53 bits of splitmix64(splitmix64(seed) ^ (i * 0xd1b54a32d192ed03 + 1))
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define MYRIAD_HOST_DEVICE __host__ __device__
#else
#define MYRIAD_HOST_DEVICE
#endif

namespace myriad {

MYRIAD_HOST_DEVICE inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [0, 1), 53 bits.
MYRIAD_HOST_DEVICE inline double counter_uniform(uint64_t seed, uint32_t output_index) {
  const uint64_t h = splitmix64(splitmix64(seed) ^ (uint64_t(output_index) * 0xd1b54a32d192ed03ull + 1));
  return double(h >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace myriad
