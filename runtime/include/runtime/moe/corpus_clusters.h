// A corpus split into clusters, as `myriad moe create` and the node's
// mixture builds (POST /v1/mixtures with a training_file) both need it: the
// corpus JSONL read ({"text": ...} a line), TF-IDF clustering into a
// Mixture's router, and what describes each cluster (size, samples,
// frequent terms). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/moe/mixture.h"
#include "runtime/result.h"
#include "runtime/tokenizer.h"

namespace myriad::moe {

// The "text" of every non-blank line; kBadFile naming `source`:line when a
// line is not {"text": non-empty string}, or when there is no line.
Result<std::vector<std::string>> parse_corpus_jsonl(std::string_view jsonl, const std::string& source);

// Per cluster: up to `count` words with the largest share of its lines
// minus their share of the other clusters' lines (frequent here, rarer
// elsewhere); lower-cased letters and digits.
std::vector<std::vector<std::string>> frequent_terms(const std::vector<std::string>& texts,
                                                     const std::vector<int32_t>& assignment, int64_t k, size_t count);

// Names the experts "expert-I" and fills their lines, samples (the first 3
// of the cluster) and terms from the clustering; training losses stay 0.
void describe_clusters(Mixture& mixture, const std::vector<std::string>& texts, const std::vector<int32_t>& assignment,
                       int64_t k);

struct ClusteredCorpus {
  Mixture mixture;                  // TF-IDF router: embedding, centroids, silhouette, experts described
  std::vector<int32_t> assignment;  // [n]: each line's cluster
};

// TF-IDF (tfidf_dim buckets) over the lines' tokens, spherical k-means
// (k-means++ seeding, restarts), the silhouette, and describe_clusters.
// kInvalidArgument when k is not in [1, lines].
Result<ClusteredCorpus> cluster_corpus_tfidf(const std::vector<std::string>& texts, const Tokenizer& tokenizer,
                                             int64_t k, uint64_t seed, int64_t tfidf_dim = 1024);

}  // namespace myriad::moe
