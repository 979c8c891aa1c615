// Placement (runtime/placement.h): adapter affinity within a slack, else the
// least loaded worker; draining workers never chosen; deterministic ties.
#include "runtime/placement.h"

#include <gtest/gtest.h>

namespace myriad {
namespace {

const AdapterId kA{"alpha", "a", 1};
const AdapterId kB{"beta", "b", 2};

WorkerView worker(std::string id, uint32_t load, std::vector<AdapterId> resident = {}) {
  WorkerView w;
  w.id = std::move(id);
  w.running = load;
  w.resident = std::move(resident);
  return w;
}

std::vector<AdapterUse> uses(std::initializer_list<AdapterId> ids) {
  std::vector<AdapterUse> out;
  for (const auto& id : ids) out.push_back(AdapterUse{id, 1.0f});
  return out;
}

TEST(Placement, TheWarmWorkerWinsWithinTheSlack) {
  std::vector<WorkerView> w = {worker("w0", 5), worker("w1", 20, {kA})};
  EXPECT_EQ(place(w, uses({kA})).value(), 1u);  // 20 <= 5 + 32
  EXPECT_EQ(place(w, uses({kB})).value(), 0u);  // nobody holds b: least loaded
  EXPECT_EQ(place(w, {}).value(), 0u);          // the base model: least loaded
  w[1].running = 40;                            // 40 > 5 + 32: a second copy is cheaper
  EXPECT_EQ(place(w, uses({kA})).value(), 0u);
  PlacementOptions wide;
  wide.affinity_slack = 100;
  EXPECT_EQ(place(w, uses({kA}), wide).value(), 1u);
}

TEST(Placement, AMixtureNeedsEveryAdapterOnTheWorker) {
  std::vector<WorkerView> w = {worker("w0", 3, {kA}), worker("w1", 9, {kA, kB})};
  EXPECT_EQ(place(w, uses({kA, kB})).value(), 1u);
  EXPECT_EQ(place(w, uses({kA})).value(), 0u);  // both warm: the less loaded
}

TEST(Placement, LoadCountsWhatWasPlacedSinceTheReport) {
  std::vector<WorkerView> w = {worker("w0", 2), worker("w1", 3)};
  EXPECT_EQ(place(w, {}).value(), 0u);
  w[0].placed_since_report = 2;  // 4 > 3
  EXPECT_EQ(place(w, {}).value(), 1u);
}

TEST(Placement, DrainingWorkersAreSkippedAndTiesGoToTheFirst) {
  std::vector<WorkerView> w = {worker("w0", 1, {kA}), worker("w1", 1), worker("w2", 1)};
  w[0].draining = true;
  EXPECT_EQ(place(w, uses({kA})).value(), 1u);
  for (auto& x : w) x.draining = true;
  auto none = place(w, {});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::kUnavailable);
  EXPECT_FALSE(place(std::vector<WorkerView>{}, {}).ok());
}

}  // namespace
}  // namespace myriad
