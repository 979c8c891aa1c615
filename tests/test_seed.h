// Seeds for randomized tests: a fresh one each run (so CI keeps exploring new
// inputs), reproducible on demand. test_seed() returns MYRIAD_TEST_SEED from
// the environment when set, else a std::random_device value, and prints it at
// once (so even a crash shows it). A caller names it in every failure:
//   const uint64_t seed = myriad::testing::test_seed();
//   SCOPED_TRACE(myriad::testing::seed_note(seed));
//   std::mt19937 rng(seed);
// Fixed-seed tests (std::mt19937 rng(7)) are deterministic and need none of it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

namespace myriad::testing {

// What a failure prints: the seed and how to rerun with it.
inline std::string seed_note(uint64_t seed) {
  return "seed " + std::to_string(seed) + " (rerun with MYRIAD_TEST_SEED=" + std::to_string(seed) + ")";
}

// 32-bit values when fresh, so std::mt19937 (32-bit seeds) uses all of it.
inline uint64_t test_seed() {
  uint64_t seed = 0;
  if (const char* e = std::getenv("MYRIAD_TEST_SEED"); e != nullptr && *e != '\0') {
    seed = std::strtoull(e, nullptr, 10);
  } else {
    seed = std::random_device{}();
  }
  std::printf("[ seed     ] %s\n", seed_note(seed).c_str());
  std::fflush(stdout);
  return seed;
}

}  // namespace myriad::testing
