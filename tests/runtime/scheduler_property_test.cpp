// Property tests over random workloads and configurations (fixed seeds,
// so every run checks the same ones; tests/slow/ soaks many fresh ones).
// The workload and the properties it checks: tests/scheduler_workload.h.
#include <gtest/gtest.h>

#include <cstdio>

#include "scheduler_workload.h"

namespace myriad::testing {
namespace {

TEST(SchedulerProperty, TimesliceRandomWorkloads) {
  WorkloadStats stats;
  for (uint64_t seed = 1; seed <= iterations(150); ++seed) {
    run_random_workload(seed, SchedulerPolicy::kTimeslice, &stats);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::printf("worst slot wait / starvation bound over the runs: %.3f\n", stats.worst_ratio);
  EXPECT_GT(stats.worst_ratio, 0.0);  // adapters did wait for slots
}

TEST(SchedulerProperty, FcfsRandomWorkloads) {
  for (uint64_t seed = 1001; seed < 1001 + iterations(60); ++seed) {
    run_random_workload(seed, SchedulerPolicy::kFcfs);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(SchedulerProperty, OneAtATimeRandomWorkloads) {
  for (uint64_t seed = 2001; seed < 2001 + iterations(60); ++seed) {
    run_random_workload(seed, SchedulerPolicy::kOneAtATime);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// Mixtures of two adapters among single-adapter requests: every request ends
// exactly once with the tokens of its adapter set, slots are shared and all
// freed at the end (the starvation bound is stated for single adapters).
TEST(SchedulerProperty, MixtureRandomWorkloads) {
  for (uint64_t seed = 3001; seed < 3001 + iterations(80); ++seed) {
    run_random_workload(seed, seed % 2 ? SchedulerPolicy::kTimeslice : SchedulerPolicy::kFcfs, nullptr,
                        BoundCheck::kNone, /*mixtures=*/true);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// The bound is tight enough to mean something: a crafted worst case (every
// adapter busy, one slot) comes within a small factor of it.
TEST(SchedulerProperty, StarvationBoundFormula) {
  SchedulerConfig c;
  c.num_slots = 2;
  c.quantum_ms = 10;
  c.max_tokens_per_step = 8;
  c.max_running_seqs = 4;  // g = 2
  // S = ceil(12 / 2) + 4 = 10; C = 10 + (10 + 1 + 3) * 1 = 24; ceil(5 / 2) = 3 rounds; + (1 + 1) * 1.
  EXPECT_DOUBLE_EQ(starvation_bound_ms(c, 5, 12, 4, 1.0, 1), 3 * 24.0 + 2.0);
}

}  // namespace
}  // namespace myriad::testing
