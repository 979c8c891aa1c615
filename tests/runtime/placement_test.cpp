// Placement (runtime/placement.h): affinity tiers (slot, then host memory),
// replication past a bound, power of two choices by load in tokens;
// draining workers never chosen; deterministic for a given draw.
#include "runtime/placement.h"

#include <gtest/gtest.h>

#include <map>

namespace myriad {
namespace {

const AdapterId kA{"alpha", "a", 1};
const AdapterId kB{"beta", "b", 2};

WorkerView worker(std::string id, uint64_t tokens, std::vector<AdapterId> resident = {},
                  std::vector<AdapterId> cached = {}) {
  WorkerView w;
  w.id = std::move(id);
  w.pending_tokens = tokens;
  w.resident = std::move(resident);
  w.host_cached = std::move(cached);
  return w;
}

std::vector<AdapterUse> uses(std::initializer_list<AdapterId> ids) {
  std::vector<AdapterUse> out;
  for (const auto& id : ids) out.push_back(AdapterUse{id, 1.0f});
  return out;
}

PlacementOptions least_loaded() {
  PlacementOptions o;
  o.power_of_two = false;
  return o;
}

TEST(Placement, ASlotBeatsHostMemoryBeatsNothingWithinTheBound) {
  std::vector<WorkerView> w = {worker("w0", 100), worker("w1", 900, {}, {kA}), worker("w2", 2000, {kA})};
  EXPECT_EQ(affinity_tier(w[0], uses({kA})), 0);
  EXPECT_EQ(affinity_tier(w[1], uses({kA})), 1);
  EXPECT_EQ(affinity_tier(w[2], uses({kA})), 2);
  EXPECT_EQ(place(w, uses({kA})).value(), 2u);  // 2000 <= 100 + 4096
  w[2].resident.clear();
  EXPECT_EQ(place(w, uses({kA})).value(), 1u);  // in host memory: no fetch
  EXPECT_EQ(place(w, uses({kB})).value(), 0u);  // nobody holds b: least loaded
  EXPECT_EQ(place(w, {}).value(), 0u);          // the base model: least loaded
}

TEST(Placement, AHotAdapterIsReplicatedPastTheBound) {
  std::vector<WorkerView> w = {worker("w0", 100), worker("w1", 5000, {kA})};
  EXPECT_EQ(place(w, uses({kA})).value(), 0u);  // 5000 > 100 + 4096: a second copy on w0
  PlacementOptions wide;
  wide.replicate_above_tokens = 10000;
  EXPECT_EQ(place(w, uses({kA}), wide).value(), 1u);
  // The warm worker past the bound falls back a tier, to host memory, before nothing.
  w.push_back(worker("w2", 3000, {}, {kA}));
  EXPECT_EQ(place(w, uses({kA})).value(), 2u);
}

TEST(Placement, AMixtureNeedsEveryAdapterOnTheWorker) {
  std::vector<WorkerView> w = {worker("w0", 30, {kA}), worker("w1", 90, {kA, kB}), worker("w2", 10, {}, {kB})};
  EXPECT_EQ(place(w, uses({kA, kB}), least_loaded()).value(), 1u);
  EXPECT_EQ(place(w, uses({kA}), least_loaded()).value(), 0u);  // both warm: the less loaded
  w[1].resident = {kB};
  w[1].host_cached = {kA};
  EXPECT_EQ(place(w, uses({kA, kB}), least_loaded()).value(), 1u);  // one in a slot, one in memory: tier 1
}

TEST(Placement, LoadCountsTokensPlacedSinceTheReport) {
  std::vector<WorkerView> w = {worker("w0", 200), worker("w1", 300)};
  EXPECT_EQ(place(w, {}, least_loaded()).value(), 0u);
  w[0].placed_tokens_since_report = 150;  // 350 > 300
  EXPECT_EQ(place(w, {}, least_loaded()).value(), 1u);
  // Tokens, not requests: one long request outweighs three short ones.
  std::vector<WorkerView> v = {worker("long", 2048), worker("short", 3 * 48)};
  EXPECT_EQ(place(v, {}, least_loaded()).value(), 1u);
}

TEST(Placement, PowerOfTwoTakesTheLighterOfTwoDrawnAndSpreadsABurst) {
  std::vector<WorkerView> w = {worker("w0", 0), worker("w1", 0), worker("w2", 0), worker("w3", 50)};
  // Every draw pairs two distinct workers and takes the lighter, so w3 (the
  // heaviest) is never chosen: whoever it is paired with is lighter.
  std::map<size_t, int> chosen;
  for (uint64_t draw = 0; draw < 4 * 3; ++draw) {
    const size_t i = place(w, {}, {}, draw).value();
    ++chosen[i];
    EXPECT_NE(i, 3u) << "draw " << draw << ": w3 is heavier than any worker it can be paired with";
  }
  // Equal reports: the draws spread the requests over the three light
  // workers (always-least-loaded would send every one to w0 until a report).
  EXPECT_EQ(chosen.size(), 3u);
  EXPECT_EQ(place(w, {}, least_loaded(), 7).value(), 0u);
  // The same draw, the same answer.
  EXPECT_EQ(place(w, {}, {}, 5).value(), place(w, {}, {}, 5).value());
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

TEST(Placement, WithoutAffinityEveryLiveWorkerIsDrawnUniformly) {
  std::vector<WorkerView> w(3);
  w[0].id = "w0";
  w[0].resident = {AdapterId{"t", "a", 1}};
  w[1].id = "w1";
  w[2].id = "w2";
  w[2].draining = true;
  PlacementOptions o;
  o.policy = PlacementPolicy::kRandom;
  const std::vector<AdapterUse> uses = {AdapterUse{AdapterId{"t", "a", 1}, 1.0f}};
  std::vector<int> hits(3, 0);
  for (uint64_t draw = 0; draw < 1000; ++draw) ++hits[place(w, uses, o, draw).value()];
  EXPECT_EQ(hits[0], 500);  // the warm worker is not preferred
  EXPECT_EQ(hits[1], 500);
  EXPECT_EQ(hits[2], 0);  // a draining one is never drawn
}

}  // namespace
}  // namespace myriad
