// Routing for the mixture of experts (runtime/moe/router.h, mixture.h): the
// fitted TF-IDF embeds a held-out line as the corpus was embedded, the
// router picks the nearest centroids with softmax weights, held-out lines of
// the synthetic corpus go to their domain's cluster, and mixture.json
// round-trips and refuses hostile values.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "runtime/model_factory.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/moe/mixture.h"
#include "runtime/moe/router.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_config.h"
#include "test_seed.h"

namespace myriad::moe {
namespace {

using nlohmann::json;

std::shared_ptr<const Tokenizer> builtin_tokenizer() {
  auto cfg = parse_tokenizer_config(json::parse(builtin_tokenizer_config_json()), "builtin");
  return Tokenizer::from_json(json::parse(builtin_tokenizer_json()), cfg.value(), "builtin").value();
}

TEST(MoeRouting, FittedEmbeddingMatchesTheCorpusEmbedding) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> docs(20);
  for (auto& d : docs) {
    d.resize(5 + rng() % 30);
    for (auto& t : d) t = int32_t(rng() % 50);
  }
  docs.push_back({});  // an empty document embeds as zeros
  const int64_t dim = 64;
  const std::vector<float> all = tfidf_embed(docs, dim);
  const TfidfModel m = TfidfModel::fit(docs, dim);
  for (size_t d = 0; d < docs.size(); ++d) {
    const std::vector<float> row = m.embed(docs[d]);
    for (int64_t j = 0; j < dim; ++j) ASSERT_EQ(row[size_t(j)], all[d * size_t(dim) + size_t(j)]) << d << "," << j;
  }
  // Saved and restored idf values embed alike.
  auto back = TfidfModel::from_idf(m.idf(), m.num_docs());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->embed(docs[3]), m.embed(docs[3]));
  EXPECT_FALSE(TfidfModel::from_idf({}, 0).ok());
  EXPECT_FALSE(TfidfModel::from_idf({1.0, -1.0}, 0).ok());
  EXPECT_FALSE(TfidfModel::from_idf({1.0, std::nan("")}, 0).ok());
}

TEST(MoeRouting, TopKIsTheNearestCentroidsSoftmaxWeighted) {
  // Three unit centroids in 3-D; the point is nearest to 1, then 0.
  const std::vector<float> centroids = {1, 0, 0, 0, 1, 0, 0, 0, 1};
  const std::vector<float> e = {0.6f, 0.8f, 0.0f};
  RoutingOptions o;
  auto top1 = route(e, centroids, 3, true, o);
  ASSERT_TRUE(top1.ok());
  ASSERT_EQ(top1->size(), 1u);
  EXPECT_EQ((*top1)[0].expert, 1);
  EXPECT_EQ((*top1)[0].weight, 1.0);
  EXPECT_NEAR((*top1)[0].similarity, 0.8, 1e-6);

  o.top_k = 2;
  o.temperature = 0.1;
  auto top2 = route(e, centroids, 3, true, o);
  ASSERT_TRUE(top2.ok());
  ASSERT_EQ(top2->size(), 2u);
  EXPECT_EQ((*top2)[0].expert, 1);
  EXPECT_EQ((*top2)[1].expert, 0);
  // softmax([0.8, 0.6] / 0.1)
  const double w0 = 1.0 / (1.0 + std::exp((0.6 - 0.8) / 0.1));
  EXPECT_NEAR((*top2)[0].weight, w0, 1e-6);
  EXPECT_NEAR((*top2)[1].weight, 1.0 - w0, 1e-6);

  // Euclidean: minus the squared distance.
  auto euclid = route(std::vector<float>{0.f, 0.f, 0.9f}, centroids, 3, false, RoutingOptions{});
  ASSERT_TRUE(euclid.ok());
  EXPECT_EQ((*euclid)[0].expert, 2);
  EXPECT_NEAR((*euclid)[0].similarity, -0.01, 1e-6);

  // Out of range.
  o.top_k = 4;
  EXPECT_FALSE(route(e, centroids, 3, true, o).ok());
  o.top_k = 1;
  o.temperature = 0;
  EXPECT_FALSE(route(e, centroids, 3, true, o).ok());
  EXPECT_FALSE(route(e, std::vector<float>(8, 0.f), 3, true, RoutingOptions{}).ok());
}

TEST(MoeRouting, HeldOutLinesRouteToTheirDomainsCluster) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  auto tok = builtin_tokenizer();
  const auto corpus = synthetic_corpus(60, seed);  // 40 per domain to fit, 20 held out
  std::vector<std::vector<int32_t>> train_docs;
  std::vector<int32_t> train_domain;
  std::vector<CorpusLine> held_out;
  std::map<int32_t, int> seen;
  for (const auto& l : corpus) {
    if (seen[l.domain]++ < 40) {
      train_docs.push_back(tok->encode(l.text, false));
      train_domain.push_back(l.domain);
    } else {
      held_out.push_back(l);
    }
  }
  const int64_t dim = 1024;
  Mixture m;
  m.embedding = TfidfModel::fit(train_docs, dim);
  std::vector<float> emb;
  for (const auto& d : train_docs) {
    const auto row = m.embedding.embed(d);
    emb.insert(emb.end(), row.begin(), row.end());
  }
  KMeansOptions ko;
  ko.k = kSyntheticDomains;
  ko.seed = seed;
  auto km = kmeans(emb, int64_t(train_docs.size()), dim, ko);
  ASSERT_TRUE(km.ok());
  m.centroids = km->centroids;
  for (int32_t c = 0; c < kSyntheticDomains; ++c) m.experts.emplace_back().name = "expert-" + std::to_string(c);
  // The cluster most of each domain's training lines went to.
  std::map<int32_t, std::map<int32_t, int>> votes;
  for (size_t i = 0; i < train_domain.size(); ++i) ++votes[train_domain[i]][km->assignment[i]];
  std::map<int32_t, int32_t> cluster_of;
  for (const auto& [d, v] : votes)
    cluster_of[d] = std::max_element(v.begin(), v.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
  int right = 0;
  for (const auto& l : held_out) {
    auto r = m.route(tok->encode(l.text, false), m.routing);
    ASSERT_TRUE(r.ok());
    right += (*r)[0].expert == cluster_of[l.domain];
  }
  std::printf("[ moe      ] held-out lines routed to their domain's cluster: %d / %zu\n", right, held_out.size());
  EXPECT_GE(double(right) / double(held_out.size()), 0.95);
}

TEST(MoeRouting, MixtureJsonRoundTripsAndRefusesHostileValues) {
  Mixture m;
  m.embedding = TfidfModel::fit({{1, 2, 3}, {4, 5}}, 16);
  m.centroids.assign(2 * 16, 0.25f);
  m.experts = {{"expert-0", 3, {"a line"}, {"word"}, 5.0, 1.0}, {"expert-1", 2, {}, {}, 4.0, 2.0}};
  m.routing.top_k = 2;
  m.routing.temperature = 0.5;
  const json j = m.to_json();
  auto back = Mixture::from_json(j, "mixture.json");
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->k(), 2);
  EXPECT_EQ(back->dim(), 16);
  EXPECT_EQ(back->centroids, m.centroids);
  EXPECT_EQ(back->embedding.idf(), m.embedding.idf());
  EXPECT_EQ(back->routing.top_k, 2);
  EXPECT_EQ(back->experts[0].samples, m.experts[0].samples);

  const auto refused = [&](const std::function<void(json&)>& edit, const std::string& says) {
    json bad = j;
    edit(bad);
    auto r = Mixture::from_json(bad, "mixture.json");
    ASSERT_FALSE(r.ok()) << says;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
  };
  refused([](json& b) { b["experts"][0]["name"] = "../../etc"; }, "experts[0].name");
  refused([](json& b) { b["experts"][1]["name"] = "expert-0"; }, "repeats");
  refused([](json& b) { b["centroids"][1].erase(0); }, "centroids[1] has 15 values");
  refused([](json& b) { b["centroids"].erase(0); }, "centroids must be a list of 2 rows");
  refused([](json& b) { b["embedding"]["idf"][3] = -1; }, "idf[3]");
  refused([](json& b) { b["embedding"]["idf"][3] = "x"; }, "embedding.idf");
  refused([](json& b) { b["routing"]["top_k"] = 3; }, "routing.top_k");
  refused([](json& b) { b["routing"]["temperature"] = 0; }, "routing.temperature");
  refused([](json& b) { b["format"] = "other"; }, "format");
  refused([](json& b) { b["distance"] = "manhattan"; }, "distance");

  // load(): the experts' folders must be there.
  const auto dir = std::filesystem::temp_directory_path() / ("myriad_mixture_" + std::to_string(std::random_device{}()));
  std::filesystem::create_directories(dir / "expert-0");
  std::ofstream(dir / "mixture.json") << j.dump();
  auto missing = Mixture::load(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("expert folder expert-1 is missing"), std::string::npos);
  std::filesystem::create_directories(dir / "expert-1");
  EXPECT_TRUE(Mixture::load(dir.string()).ok());
  std::ofstream(dir / "mixture.json") << "{not json";
  EXPECT_FALSE(Mixture::load(dir.string()).ok());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace myriad::moe
