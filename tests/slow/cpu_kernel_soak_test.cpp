// Soak (label slow): the CPU kernels against their naive references over
// many random shapes, where the fast tests (tests/gpu/) check fixed grids:
// matmul on every ISA this CPU has, paged attention over random batches of
// sequences, and the multi-LoRA kernels over random slots, ranks and
// mixtures (against the reference, and each row of a batch against the
// same row alone). The checks are tests/cpu_kernel_checks.h's. Each test draws its
// shapes from test_seed() (printed; MYRIAD_TEST_SEED=s reruns them) and runs
// a fixed number of cases, sized for ~20 s in a Release build on 2 cores.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "cpu_kernel_checks.h"
#include "test_seed.h"

namespace myriad::gpu::cpu {
namespace {

int64_t uniform(std::mt19937& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

class CpuKernelSoak : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = myriad::testing::test_seed();
    rng_.seed(static_cast<uint32_t>(seed_));
  }
  uint64_t seed_ = 0;
  std::mt19937 rng_;
};

TEST_F(CpuKernelSoak, MatmulRandomShapesOnEveryIsa) {
  SCOPED_TRACE(myriad::testing::seed_note(seed_));
  ThreadPool pool(2);
  int cases = 0;
  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2, MatmulIsa::kAvx512, MatmulIsa::kAmx}) {
    matmul_limit_isa(isa);
    if (matmul_isa() != isa) continue;  // this CPU lacks it
    for (int i = 0; i < 400; ++i) {
      const DType d = std::vector<DType>{DType::kF32, DType::kBF16, DType::kF16}[size_t(uniform(rng_, 0, 2))];
      // Mostly small T (decode) and both narrow and wide inputs; `in` a
      // multiple of 32 half the time (the AMX tiles' condition).
      const int64_t T = uniform(rng_, 0, 3) ? uniform(rng_, 1, 20) : uniform(rng_, 21, 90);
      const int64_t in = uniform(rng_, 0, 1) ? 32 * uniform(rng_, 1, 80) : uniform(rng_, 1, 2600);
      const int64_t out = uniform(rng_, 1, 130);
      check_matmul(pool, {d, T, in, out}, rng_);
      ++cases;
      if (HasFatalFailure()) break;
    }
    if (HasFatalFailure()) break;
  }
  matmul_limit_isa(MatmulIsa::kAmx);
  std::printf("%d matmul cases\n", cases);
}

TEST_F(CpuKernelSoak, PagedAttentionRandomBatches) {
  SCOPED_TRACE(myriad::testing::seed_note(seed_));
  int cases = 0;
  for (int i = 0; i < 8000 && !HasFatalFailure(); ++i) {
    AttentionShape s;
    s.kv_heads = uniform(rng_, 1, 4);
    s.heads = s.kv_heads * uniform(rng_, 1, 4);
    s.head_dim = uniform(rng_, 0, 1) ? 16 * uniform(rng_, 1, 8) : uniform(rng_, 1, 160);
    s.window = uniform(rng_, 0, 2) ? 0 : uniform(rng_, 1, 24);
    const int32_t bs = int32_t(std::vector<int>{1, 2, 4, 8, 16, 32}[size_t(uniform(rng_, 0, 5))]);
    const DType kv = std::vector<DType>{DType::kF32, DType::kBF16, DType::kF16}[size_t(uniform(rng_, 0, 2))];
    // 1-4 sequences: prefills from 0, chunks continuing at random positions, decodes.
    std::vector<AttentionSeq> batch(size_t(uniform(rng_, 1, 4)));
    for (auto& b : batch) {
      const int64_t kind = uniform(rng_, 0, 2);
      b.start = kind == 0 ? 0 : uniform(rng_, 1, 70);
      b.n = kind == 2 ? 1 : uniform(rng_, 1, 12);
    }
    matmul_force_portable(uniform(rng_, 0, 1) == 1);
    check_attention(s, bs, kv, rng_, batch);
    ++cases;
  }
  matmul_force_portable(false);
  std::printf("%d attention cases\n", cases);
}

TEST_F(CpuKernelSoak, LoraSgmvRandomSlotsRanksMixturesAndBatches) {
  SCOPED_TRACE(myriad::testing::seed_note(seed_));
  int cases = 0;
  for (int i = 0; i < 3000 && !HasFatalFailure(); ++i) {
    const DType d = uniform(rng_, 0, 1) ? DType::kF32 : DType::kBF16;
    const int64_t t = uniform(rng_, 0, 2) ? uniform(rng_, 1, 16) : uniform(rng_, 17, 64);
    const int adapters = int(uniform(rng_, 1, 24));
    std::vector<int> ranks(size_t(uniform(rng_, 1, 4)));
    for (int& r : ranks) r = int(uniform(rng_, 0, 2) ? 8 * uniform(rng_, 1, 8) : uniform(rng_, 1, 64));
    const int64_t in = uniform(rng_, 1, 320), out = uniform(rng_, 1, 320);
    const bool fast = uniform(rng_, 0, 1) == 1;
    const LoraKernel kernel = fast ? lora_sgmv : lora_sgmv_portable;
    const char* name = fast ? "lora_sgmv" : "lora_sgmv_portable";
    if (uniform(rng_, 0, 3)) {
      check_lora(kernel, name, d, t, adapters, ranks, in, out, rng_);
    } else {
      check_lora_batch_invariance(kernel, name, d, t, adapters, ranks, in, out, rng_);
    }
    ++cases;
  }
  std::printf("%d LoRA cases\n", cases);
}

}  // namespace
}  // namespace myriad::gpu::cpu
