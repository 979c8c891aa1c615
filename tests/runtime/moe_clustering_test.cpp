// Clustering for the mixture of experts (runtime/moe/): k-means on seeded
// blobs, the adjusted Rand index against hand-computed values, and the
// synthetic multi-domain corpus recovered by TF-IDF + k-means.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "runtime/model_factory.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_config.h"
#include "test_seed.h"

namespace myriad::moe {
namespace {

TEST(MoeClustering, AdjustedRandIndexKnownValues) {
  EXPECT_DOUBLE_EQ(adjusted_rand_index({0, 0, 1, 1}, {1, 1, 0, 0}), 1.0);  // renamed
  // sklearn.metrics.adjusted_rand_score([0,0,0,1,1,1], [0,0,1,1,2,2]) = 0.24242424...
  EXPECT_NEAR(adjusted_rand_index({0, 0, 0, 1, 1, 1}, {0, 0, 1, 1, 2, 2}), 0.242424242424, 1e-9);
  // adjusted_rand_score([0,0,1,1], [0,1,0,1]) = -0.5
  EXPECT_NEAR(adjusted_rand_index({0, 0, 1, 1}, {0, 1, 0, 1}), -0.5, 1e-12);
}

TEST(MoeClustering, KMeansRecoversSeparatedBlobs) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  const int64_t k = 5, per = 40, dim = 8;
  std::normal_distribution<float> centre(0.f, 10.f), noise(0.f, 0.5f);
  std::vector<float> centres(size_t(k * dim)), pts;
  for (auto& c : centres) c = centre(rng);
  std::vector<int32_t> labels;
  for (int64_t c = 0; c < k; ++c)
    for (int64_t i = 0; i < per; ++i) {
      for (int64_t j = 0; j < dim; ++j) pts.push_back(centres[size_t(c * dim + j)] + noise(rng));
      labels.push_back(int32_t(c));
    }
  KMeansOptions o;
  o.k = int32_t(k);
  o.cosine = false;
  o.seed = seed;
  auto r = kmeans(pts, k * per, dim, o);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_GE(adjusted_rand_index(labels, r->assignment), 0.99);
  EXPECT_GT(mean_silhouette(pts, k * per, dim, r->assignment, false), 0.7);
  for (int64_t s : r->sizes) EXPECT_EQ(s, per);
  // Same seed, same clusters.
  auto again = kmeans(pts, k * per, dim, o);
  EXPECT_EQ(again->assignment, r->assignment);
  o.k = 0;
  EXPECT_FALSE(kmeans(pts, k * per, dim, o).ok());
  o.k = int32_t(k * per + 1);
  EXPECT_FALSE(kmeans(pts, k * per, dim, o).ok());
}

TEST(MoeClustering, TfidfAndKMeansRecoverTheSyntheticDomains) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  auto cfg = parse_tokenizer_config(nlohmann::json::parse(builtin_tokenizer_config_json()), "builtin");
  auto tok = Tokenizer::from_json(nlohmann::json::parse(builtin_tokenizer_json()), cfg.value(), "builtin");
  ASSERT_TRUE(tok.ok());
  const auto corpus = synthetic_corpus(50, seed);
  ASSERT_EQ(corpus.size(), size_t(4 * 50));
  std::vector<std::vector<int32_t>> docs;
  std::vector<int32_t> labels;
  for (const auto& l : corpus) {
    docs.push_back(tok.value()->encode(l.text, false));
    labels.push_back(l.domain);
  }
  const int64_t dim = 1024;
  const auto emb = tfidf_embed(docs, dim);
  std::printf("[ moe      ] k | inertia | silhouette | ARI vs hidden domains\n");
  double ari_at_4 = 0;
  for (int32_t k = 2; k <= 6; ++k) {
    KMeansOptions o;
    o.k = k;
    o.seed = seed;
    auto r = kmeans(emb, int64_t(docs.size()), dim, o);
    ASSERT_TRUE(r.ok());
    const double ari = adjusted_rand_index(labels, r->assignment);
    std::printf("[ moe      ] %d | %.2f | %.3f | %.3f\n", k, r->inertia,
                mean_silhouette(emb, int64_t(docs.size()), dim, r->assignment, true), ari);
    if (k == 4) ari_at_4 = ari;
  }
  EXPECT_GE(ari_at_4, 0.9);
}

}  // namespace
}  // namespace myriad::moe
