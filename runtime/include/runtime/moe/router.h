// Routing for the mixture of adapter experts (issue 22): the fitted lexical
// embedding (TF-IDF over hashed token 1- to 3-grams, with the corpus's
// document frequencies kept so a request is embedded exactly as the corpus
// was) and the choice of experts for one embedded request: the top-k
// centroids by similarity, weighted by a softmax over the chosen ones.
// Pure functions and value types.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/result.h"

namespace myriad::moe {

// TF-IDF of hashed n-grams (n = 1..kNgrams) of token ids, fitted on a
// corpus: weight (1 + log tf) * idf[bucket], idf = log((1 + N) / (1 + df) + 1),
// each row L2-normalised (zeros for an empty document).
class TfidfModel {
 public:
  static constexpr int32_t kNgrams = 3;

  // Counts the document frequencies of `docs`. dim >= 1.
  static TfidfModel fit(const std::vector<std::vector<int32_t>>& docs, int64_t dim);
  // From saved idf values (a mixture folder). kInvalidArgument: empty, or a
  // value not finite or not positive.
  static Result<TfidfModel> from_idf(std::vector<double> idf, int64_t num_docs);

  // [dim]: the L2-normalised embedding of one document.
  std::vector<float> embed(std::span<const int32_t> doc) const;

  int64_t dim() const { return int64_t(idf_.size()); }
  int64_t num_docs() const { return num_docs_; }
  const std::vector<double>& idf() const { return idf_; }

 private:
  std::vector<double> idf_;  // [dim]
  int64_t num_docs_ = 0;
};

struct RoutingOptions {
  int32_t top_k = 1;          // experts per request, 1..kMaxAdaptersPerRow
  double temperature = 0.05;  // of the softmax over the chosen experts' similarities
};

struct ExpertChoice {
  int32_t expert = 0;       // index into the mixture's experts (and centroid rows)
  double weight = 1.0;      // sums to 1 over one request's choices
  double similarity = 0.0;  // cosine similarity, or minus the squared euclidean distance
};

// The top_k experts for `embedding` ([dim]) among `centroids` ([k, dim]),
// most similar first (ties: lower index), softmax-weighted by similarity /
// temperature. Top-1 has weight 1. kInvalidArgument: top_k outside [1, k],
// temperature not > 0, or mismatched sizes.
Result<std::vector<ExpertChoice>> route(std::span<const float> embedding, std::span<const float> centroids, int64_t k,
                                        bool cosine, const RoutingOptions& options);

// The choices a routed request's per-expert weights ([k], 0 = not chosen; as
// a prefill route reports them) stand for: heaviest first (ties: lower
// index), similarity unknown (0).
std::vector<ExpertChoice> choices_of_weights(std::span<const float> weights);

}  // namespace myriad::moe
