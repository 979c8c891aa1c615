#include "runtime/moe/router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "runtime/counter_rng.h"

namespace myriad::moe {

namespace {

// bucket -> count of the hashed 1..kNgrams-grams of `doc`.
std::unordered_map<int64_t, double> term_counts(std::span<const int32_t> doc, int64_t dim) {
  std::unordered_map<int64_t, double> tf;
  for (size_t i = 0; i < doc.size(); ++i) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (size_t len = 1; len <= size_t(TfidfModel::kNgrams) && i + len <= doc.size(); ++len) {
      h = splitmix64(h ^ uint64_t(uint32_t(doc[i + len - 1])) ^ (uint64_t(len) << 40));
      tf[int64_t(h % uint64_t(dim))] += 1.0;
    }
  }
  return tf;
}

}  // namespace

TfidfModel TfidfModel::fit(const std::vector<std::vector<int32_t>>& docs, int64_t dim) {
  std::vector<int64_t> df(size_t(std::max<int64_t>(dim, 1)), 0);
  for (const auto& d : docs)
    for (const auto& [bucket, _] : term_counts(d, int64_t(df.size()))) ++df[size_t(bucket)];
  TfidfModel m;
  m.num_docs_ = int64_t(docs.size());
  m.idf_.resize(df.size());
  const double n = double(docs.size());
  for (size_t b = 0; b < df.size(); ++b) m.idf_[b] = std::log((1.0 + n) / (1.0 + double(df[b])) + 1.0);
  return m;
}

Result<TfidfModel> TfidfModel::from_idf(std::vector<double> idf, int64_t num_docs) {
  if (idf.empty()) return make_error(ErrorCode::kInvalidArgument, "tfidf: no idf values");
  for (size_t b = 0; b < idf.size(); ++b)
    if (!std::isfinite(idf[b]) || idf[b] <= 0)
      return make_error(ErrorCode::kInvalidArgument, "tfidf: idf[" + std::to_string(b) + "] is not a positive number");
  TfidfModel m;
  m.idf_ = std::move(idf);
  m.num_docs_ = num_docs;
  return m;
}

std::vector<float> TfidfModel::embed(std::span<const int32_t> doc) const {
  std::vector<float> out(idf_.size(), 0.0f);
  double norm = 0;
  for (const auto& [bucket, count] : term_counts(doc, dim())) {
    const double w = (1.0 + std::log(count)) * idf_[size_t(bucket)];
    out[size_t(bucket)] = float(w);
    norm += w * w;
  }
  if (norm > 0) {
    const float inv = float(1.0 / std::sqrt(norm));
    for (float& v : out) v *= inv;
  }
  return out;
}

Result<std::vector<ExpertChoice>> route(std::span<const float> embedding, std::span<const float> centroids, int64_t k,
                                        bool cosine, const RoutingOptions& options) {
  const int64_t dim = int64_t(embedding.size());
  if (k < 1 || dim < 1 || int64_t(centroids.size()) != k * dim)
    return make_error(ErrorCode::kInvalidArgument, "route: " + std::to_string(centroids.size()) +
                                                       " centroid values for " + std::to_string(k) + " experts of dim " +
                                                       std::to_string(dim));
  if (options.top_k < 1 || options.top_k > k)
    return make_error(ErrorCode::kInvalidArgument,
                      "route: top_k " + std::to_string(options.top_k) + " outside [1, " + std::to_string(k) + "]");
  if (!(options.temperature > 0) || !std::isfinite(options.temperature))
    return make_error(ErrorCode::kInvalidArgument, "route: temperature must be a positive number");
  std::vector<double> sim(static_cast<size_t>(k));
  for (int64_t c = 0; c < k; ++c) {
    const float* row = centroids.data() + c * dim;
    double dot = 0, cc = 0, ee = 0, d2 = 0;
    for (int64_t j = 0; j < dim; ++j) {
      const double e = embedding[size_t(j)], v = row[j];
      dot += e * v;
      cc += v * v;
      ee += e * e;
      d2 += (e - v) * (e - v);
    }
    sim[size_t(c)] = cosine ? (cc > 0 && ee > 0 ? dot / std::sqrt(cc * ee) : 0.0) : -d2;
  }
  std::vector<int32_t> order(static_cast<size_t>(k));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return sim[size_t(a)] > sim[size_t(b)]; });
  std::vector<ExpertChoice> out(static_cast<size_t>(options.top_k));
  double total = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].expert = order[i];
    out[i].similarity = sim[size_t(order[i])];
    // Relative to the best, so exp never overflows.
    out[i].weight = std::exp((out[i].similarity - out[0].similarity) / options.temperature);
    total += out[i].weight;
  }
  for (auto& c : out) c.weight /= total;
  return out;
}

std::vector<ExpertChoice> choices_of_weights(std::span<const float> weights) {
  std::vector<ExpertChoice> out;
  for (size_t e = 0; e < weights.size(); ++e)
    if (weights[e] != 0.0f) out.push_back({int32_t(e), double(weights[e]), 0.0});
  std::stable_sort(out.begin(), out.end(), [](const ExpertChoice& a, const ExpertChoice& b) { return a.weight > b.weight; });
  return out;
}

}  // namespace myriad::moe
