// Soak (label slow): the scheduler property workloads of
// tests/scheduler_workload.h, hundreds of times more of them than the fast
// suite's fixed seeds, and fresh ones every run: workload seeds base,
// base + 1, ... where base comes from test_seed() (printed). A failure names
// its workload's seed s: MYRIAD_TEST_SEED=s MYRIAD_PROPERTY_ITERS=1 reruns
// just that workload, MYRIAD_TRACE_SEED=s prints its steps. Counts are sized
// for ~10-20 s a test in a Release build (a workload takes ~0.5 ms);
// MYRIAD_PROPERTY_ITERS=n overrides them. The timeslice starvation bound is
// asserted until a workload's first preemption and only reported after it
// (BoundCheck::kUntilPreemption in scheduler_workload.h: a gap this soak found).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "scheduler_workload.h"
#include "test_seed.h"

namespace myriad::testing {
namespace {

void soak(SchedulerPolicy policy, uint64_t workloads) {
  const uint64_t base = test_seed();
  SCOPED_TRACE(seed_note(base));
  WorkloadStats stats;
  const uint64_t n = iterations(workloads);
  for (uint64_t i = 0; i < n; ++i) {
    run_random_workload(base + i, policy, &stats, BoundCheck::kUntilPreemption);
    if (::testing::Test::HasFailure()) return;  // one workload's failures are enough to read
  }
  std::printf("%llu workloads from seed %llu\n", static_cast<unsigned long long>(n),
              static_cast<unsigned long long>(base));
  if (policy != SchedulerPolicy::kTimeslice) return;
  std::printf("worst slot wait / starvation bound (asserted): %.3f\n", stats.worst_ratio);
  if (n >= 100) {
    EXPECT_GT(stats.worst_ratio, 0.0);  // adapters did wait for slots (not necessarily in a rerun of one)
  }
  // Known gap (BoundCheck::kUntilPreemption): reported, not failed.
  std::printf("starvation bound exceeded after a preemption in %zu workloads\n",
              stats.bound_exceeded_after_preemption.size());
  for (const std::string& s : stats.bound_exceeded_after_preemption) std::printf("  %s\n", s.c_str());
  ::testing::Test::RecordProperty("bound_exceeded_after_preemption",
                                  int(stats.bound_exceeded_after_preemption.size()));
}

TEST(SchedulerSoak, TimesliceRandomWorkloads) { soak(SchedulerPolicy::kTimeslice, 40000); }
TEST(SchedulerSoak, FcfsRandomWorkloads) { soak(SchedulerPolicy::kFcfs, 30000); }
TEST(SchedulerSoak, OneAtATimeRandomWorkloads) { soak(SchedulerPolicy::kOneAtATime, 30000); }

}  // namespace
}  // namespace myriad::testing
