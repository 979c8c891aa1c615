// RegistryIndex: the registry's in-memory catalog answers as the store does.
#include "actors/registry_index.h"

#include <gtest/gtest.h>

namespace myriad::actors {
namespace {

AdapterRecord rec(const std::string& tenant, const std::string& name, uint64_t version) {
  AdapterRecord r;
  r.id = AdapterId{tenant, name, version};
  r.sha256 = tenant + name + std::to_string(version);
  return r;
}

std::vector<std::string> names(const std::vector<AdapterRecord>& v) {
  std::vector<std::string> out;
  for (const auto& r : v) out.push_back(r.id.to_string());
  return out;
}

TEST(RegistryIndex, ResolvesNewestOrExactVersion) {
  RegistryIndex index;
  index.add(rec("alpha", "a1", 1));
  index.add(rec("alpha", "a1", 3));
  index.add(rec("alpha", "a1", 2));
  ASSERT_TRUE(index.resolve({"alpha", "a1", 0}).has_value());
  EXPECT_EQ(index.resolve({"alpha", "a1", 0})->id.version, 3u);
  EXPECT_EQ(index.resolve({"alpha", "a1", 2})->sha256, "alphaa12");
  EXPECT_FALSE(index.resolve({"alpha", "a1", 4}).has_value());
  EXPECT_FALSE(index.resolve({"beta", "a1", 0}).has_value());  // names are per tenant
  EXPECT_FALSE(index.resolve({"alpha", "a2", 0}).has_value());
}

TEST(RegistryIndex, RemovingTheNewestFallsBackAndTheLastForgetsTheName) {
  RegistryIndex index;
  index.add(rec("alpha", "a1", 1));
  index.add(rec("alpha", "a1", 2));
  index.remove(AdapterId{"alpha", "a1", 2});
  EXPECT_EQ(index.resolve({"alpha", "a1", 0})->id.version, 1u);
  index.remove(AdapterId{"alpha", "a1", 1});
  EXPECT_FALSE(index.resolve({"alpha", "a1", 0}).has_value());
  EXPECT_TRUE(index.versions("alpha", "a1").empty());
  EXPECT_TRUE(index.list("").empty());
  index.remove(AdapterId{"alpha", "a1", 1});  // gone already: nothing happens
}

TEST(RegistryIndex, ListsInTheStoresOrderFilteredByTenant) {
  RegistryIndex index;
  index.add(rec("beta", "b", 1));
  index.add(rec("alpha", "z", 1));
  index.add(rec("alpha", "a", 2));
  index.add(rec("alpha", "a", 1));
  index.add(rec("alphabet", "a", 1));  // a tenant whose name starts with another's
  EXPECT_EQ(names(index.list("")),
            (std::vector<std::string>{"alpha/a@1", "alpha/a@2", "alpha/z@1", "alphabet/a@1", "beta/b@1"}));
  EXPECT_EQ(names(index.list("alpha")), (std::vector<std::string>{"alpha/a@1", "alpha/a@2", "alpha/z@1"}));
  EXPECT_EQ(names(index.list("gamma")), std::vector<std::string>{});
  EXPECT_EQ(names(index.versions("alpha", "a")), (std::vector<std::string>{"alpha/a@1", "alpha/a@2"}));
}

}  // namespace
}  // namespace myriad::actors
