// The benchmarks' hand-built step plans (runtime/bench_plans.h) are plans
// every executor accepts: validate_plan passes them, and their block tables
// cover the positions they name.
#include <gtest/gtest.h>

#include "runtime/bench_plans.h"
#include "runtime/plan_validation.h"

namespace myriad {
namespace {

ExecutorInfo info_for(int32_t blocks, int32_t block_size) {
  ExecutorInfo info;
  info.vocab_size = 128;
  info.kv_block_size = block_size;
  info.kv_num_blocks = blocks;
  return info;
}

TEST(BenchPlans, APrefillIsOneSampledRowFromPositionZero) {
  for (int tokens : {1, 15, 16, 17, 2048}) {
    StepPlan plan;
    plan_prefill(tokens, 16, plan);
    ASSERT_EQ(plan.rows.size(), 1u);
    const SeqRow& r = plan.rows[0];
    EXPECT_EQ(r.start_pos, 0);
    EXPECT_EQ(r.num_tokens, uint32_t(tokens));
    EXPECT_TRUE(r.sample);
    EXPECT_EQ(plan.tokens.size(), size_t(tokens));
    EXPECT_EQ(r.num_blocks, uint32_t((tokens + 15) / 16));
    const Status st = validate_plan(plan, info_for(int32_t(r.num_blocks), 16), [](int32_t) { return false; });
    EXPECT_TRUE(st.ok()) << tokens << ": " << st.error().to_string();
    // The table is exactly blocks [0, num_blocks): a pool one block smaller refuses it.
    if (r.num_blocks > 1) {
      const Status small = validate_plan(plan, info_for(int32_t(r.num_blocks) - 1, 16), [](int32_t) { return false; });
      EXPECT_FALSE(small.ok()) << tokens;
    }
  }
}

TEST(BenchPlans, DecodeBatchesStayValidAsTheyAdvance) {
  StepPlan plan;
  const int batch = 4, ctx = 30, steps = 5;
  plan_decode_batch(batch, ctx, steps, 16, {}, plan);
  const int32_t per_row = (ctx + steps + 15) / 16;
  const ExecutorInfo info = info_for(batch * per_row, 16);
  for (int s = 0; s < steps; ++s) {
    const Status st = validate_plan(plan, info, [](int32_t) { return false; });
    ASSERT_TRUE(st.ok()) << "step " << s << ": " << st.error().to_string();
    EXPECT_EQ(plan.rows[0].start_pos, ctx + s);
    advance_decode_batch(plan);
  }
}

}  // namespace
}  // namespace myriad
