// AdapterTraffic counts each request's events under its adapter as they
// pass to the front end's callback, unchanged.
#include "adapter_traffic.h"

#include <gtest/gtest.h>

#include <vector>

namespace myriad::node {
namespace {

RequestEvent token(uint32_t index) {
  RequestEvent e;
  e.kind = EventKind::kToken;
  e.index = index;
  return e;
}

RequestEvent final_event(EventKind kind, FinishReason reason = FinishReason::kStop) {
  RequestEvent e;
  e.kind = kind;
  e.reason = reason;
  return e;
}

TEST(AdapterTraffic, CountsEachRequestsOutcomeTokensAndLatencyUnderItsAdapter) {
  AdapterTraffic traffic;
  EXPECT_FALSE(traffic.figures("a/x").has_value());
  std::vector<EventKind> seen;
  auto inner = [&](const RequestEvent& e) { seen.push_back(e.kind); };

  auto first = traffic.count("a/x", inner);
  traffic.accepted("a/x");
  first(token(0));
  first(token(1));
  first(token(2));
  first(final_event(EventKind::kFinished, FinishReason::kLength));
  auto second = traffic.count("a/x", inner);
  traffic.accepted("a/x");
  second(final_event(EventKind::kFinished, FinishReason::kCancelled));
  auto third = traffic.count("a/x", inner);
  traffic.accepted("a/x");
  third(token(0));
  third(final_event(EventKind::kFailed));
  auto other = traffic.count("b/x", inner);
  traffic.accepted("b/x");
  other(final_event(EventKind::kFinished, FinishReason::kDeadline));

  const auto f = traffic.figures("a/x");
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->requests, 3u);
  EXPECT_EQ(f->finished, 1u);
  EXPECT_EQ(f->cancelled, 1u);
  EXPECT_EQ(f->failed, 1u);
  EXPECT_EQ(f->output_tokens, 4u);
  EXPECT_EQ(f->ttft_ms.count(), 2u);  // the requests that had a token
  EXPECT_EQ(f->itl_ms.count(), 2u);   // gaps within the first
  EXPECT_EQ(f->e2e_ms.count(), 3u);
  const auto b = traffic.figures("b/x");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->cancelled, 1u);  // a deadline ends it unfinished too
  EXPECT_EQ(b->output_tokens, 0u);
  // Every event reached the callback, in order.
  EXPECT_EQ(seen.size(), 4u + 1u + 2u + 1u);
  EXPECT_EQ(seen[3], EventKind::kFinished);
}

}  // namespace
}  // namespace myriad::node
