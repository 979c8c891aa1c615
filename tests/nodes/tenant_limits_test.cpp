// TenantLimits: one book of per-tenant limits that HTTP and RPC share.
#include "tenant_limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace myriad::node {
namespace {

using Clock = TenantLimits::Clock;

TEST(TenantLimits, OpenRequestsAreBoundedPerTenantUntilTheirTicketsEnd) {
  auto limits = TenantLimits::create({2, 0});
  auto [a, no_a] = limits->admit("alpha", 10);
  auto [b, no_b] = limits->admit("alpha", 10);
  ASSERT_TRUE(a && b);
  auto [c, refused] = limits->admit("alpha", 10);
  EXPECT_FALSE(c);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message.find("tenant 'alpha' has 2 requests open"), std::string::npos) << refused->message;
  EXPECT_EQ(refused->retry_after_s, 1);
  EXPECT_TRUE(limits->admit("beta", 10).first) << "another tenant has its own count";
  a->release();
  a->release();  // once only
  EXPECT_EQ(limits->open("alpha"), 1);
  { auto moved = std::move(*b); }  // a moved ticket ends once, where it ends
  EXPECT_EQ(limits->open("alpha"), 0);
  EXPECT_TRUE(limits->admit("alpha", 10).first);
}

TEST(TenantLimits, ARequestOfSeveralChoicesCountsEachAsOpen) {
  auto limits = TenantLimits::create({4, 0});
  auto [three, no] = limits->admit("alpha", 10, 3);
  ASSERT_TRUE(three);
  EXPECT_EQ(limits->open("alpha"), 3);
  auto [two, refused] = limits->admit("alpha", 10, 2);
  EXPECT_FALSE(two);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message.find("has 3 requests open and this one runs 2; at most 4"), std::string::npos)
      << refused->message;
  auto [five, never] = limits->admit("beta", 10, 5);
  EXPECT_FALSE(five);
  ASSERT_TRUE(never);
  EXPECT_NE(never->message.find("runs 5 requests"), std::string::npos) << never->message;
  EXPECT_EQ(never->retry_after_s, 60);
  EXPECT_TRUE(limits->admit("alpha", 10, 1).first);
  { auto moved = std::move(*three); }
  EXPECT_EQ(limits->open("alpha"), 0) << "the ticket gave back all three";
}

TEST(TenantLimits, TokensPerMinuteSlideAndSayWhenToRetry) {
  Clock::time_point now{};
  auto limits = TenantLimits::create({100, 100}, [&] { return now; });
  EXPECT_TRUE(limits->admit("alpha", 60).first);
  now += std::chrono::seconds(20);
  EXPECT_TRUE(limits->admit("alpha", 40).first);
  auto [t, refused] = limits->admit("alpha", 1);
  EXPECT_FALSE(t);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message.find("asked for 100 tokens in the last minute"), std::string::npos) << refused->message;
  EXPECT_NE(refused->message.find("limit of 100"), std::string::npos);
  EXPECT_EQ(refused->retry_after_s, 41);  // the first 60 leave the window 40 s from now
  now += std::chrono::seconds(40);
  EXPECT_TRUE(limits->admit("alpha", 60).first) << "the first admission left the window";
  EXPECT_FALSE(limits->admit("alpha", 1).first);
  EXPECT_TRUE(limits->admit("beta", 100).first);
  auto [huge, never] = limits->admit("gamma", 101);
  ASSERT_TRUE(never);
  EXPECT_EQ(never->retry_after_s, 61);
}

TEST(TenantLimits, ConcurrentAdmissionsNeverPassTheLimit) {
  auto limits = TenantLimits::create({5, 0});
  std::atomic<int> admitted{0}, peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        auto [ticket, refused] = limits->admit("alpha", 1);
        if (!ticket) continue;
        const int open = limits->open("alpha");
        int p = peak.load();
        while (open > p && !peak.compare_exchange_weak(p, open)) {
        }
        ++admitted;
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 5);
  EXPECT_GT(admitted.load(), 0);
  EXPECT_EQ(limits->open("alpha"), 0);
}

}  // namespace
}  // namespace myriad::node
