#include "runtime/adapter_id.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace myriad {
namespace {

TEST(AdapterId, ParsesEveryWayAClientWritesAName) {
  auto a = parse_adapter_name("alpha/chat", "dflt");
  ASSERT_TRUE(a.ok()) << a.error().to_string();
  EXPECT_EQ(a.value().tenant, "alpha");
  EXPECT_EQ(a.value().name, "chat");
  EXPECT_EQ(a.value().version, 0u);

  auto b = parse_adapter_name("alpha/chat@3", "dflt");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.value().version, 3u);
  EXPECT_EQ(b.value().to_string(), "alpha/chat@3");

  auto c = parse_adapter_name("alpha/chat@latest", "dflt");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.value().version, 0u);
  EXPECT_EQ(c.value().to_string(), "alpha/chat");

  auto d = parse_adapter_name("chat@2", "dflt");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d.value().tenant, "dflt");
  EXPECT_EQ(d.value().pinned(2), (AdapterId{"dflt", "chat", 2}));
}

TEST(AdapterId, RejectsMalformedNamesNamingThePart) {
  for (const char* bad : {"", "alpha/", "/chat", "alpha/chat@", "alpha/chat@0", "alpha/chat@x", "a/b/c", "alpha/.hidden",
                          "alpha/-x", "al pha/chat", "alpha/ch%61t"}) {
    auto r = parse_adapter_name(bad, "dflt");
    EXPECT_FALSE(r.ok()) << "accepted '" << bad << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kInvalidArgument) << bad;
    }
  }
  auto r = parse_adapter_name("alpha/chat@x", "dflt");
  EXPECT_NE(r.error().message.find("version 'x'"), std::string::npos) << r.error().message;
  EXPECT_FALSE(parse_adapter_name(std::string(65, 'a'), "dflt").ok());
  EXPECT_TRUE(parse_adapter_name(std::string(64, 'a'), "dflt").ok());
}

TEST(AdapterId, RoundTripsThroughItsText) {
  const AdapterId id{"beta", "sql-v2.1", 17};
  EXPECT_EQ(id.to_string(), "beta/sql-v2.1@17");
  auto back = parse_adapter_id(id.to_string());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back.value(), id);
  EXPECT_FALSE(parse_adapter_id("beta/sql").ok());       // no version
  EXPECT_FALSE(parse_adapter_id("sql@3").ok());          // no tenant
  EXPECT_FALSE(parse_adapter_id("beta/sql@latest").ok());  // not a pinned id
}

TEST(AdapterId, ACallerNamesOnlyItsOwnTenantsAdaptersUnlessAdmin) {
  auto own = parse_adapter_name_for("sql@2", "beta", false);
  ASSERT_TRUE(own.ok());
  EXPECT_EQ(own.value().to_string(), "beta/sql@2");
  EXPECT_TRUE(parse_adapter_name_for("beta/sql", "beta", false).ok());
  auto other = parse_adapter_name_for("alpha/sql", "beta", false);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(other.error().message, "adapter 'alpha/sql' does not exist");  // as a missing one answers
  auto admin = parse_adapter_name_for("alpha/sql", "ops", true);
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin.value().tenant, "alpha");
  auto bad = parse_adapter_name_for("beta/sql@x", "beta", false);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidArgument);
}

TEST(AdapterId, HashAndOrderSeparateEveryField) {
  std::unordered_set<AdapterId, AdapterIdHash> set{{"a", "x", 1}, {"a", "x", 2}, {"b", "x", 1}, {"a", "y", 1}};
  EXPECT_EQ(set.size(), 4u);
  EXPECT_LT((AdapterId{"a", "x", 1}), (AdapterId{"a", "x", 2}));
  EXPECT_LT((AdapterId{"a", "y", 9}), (AdapterId{"b", "a", 1}));
}

}  // namespace
}  // namespace myriad
