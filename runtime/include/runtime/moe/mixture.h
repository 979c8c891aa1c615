// A mixture of adapter experts as a folder (issue 22): DIR/mixture.json
// holds the embedding (the fitted TF-IDF's idf values, or which layer of the
// base model's hidden states is pooled: hidden_embedding.h), the centroids, the
// routing settings and one entry per expert (its PEFT folder DIR/<name>,
// cluster size, sample texts, frequent terms, training losses);
// DIR/assignments.json the cluster of every corpus line. Written by
// `myriad moe create`, read by everything that routes (generate / logits
// --moe, the node). A value type; load() validates everything it reads, so
// a hostile file is an error naming the field, never a bad index.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/lora_weights.h"
#include "runtime/moe/router.h"
#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad::moe {

inline constexpr const char* kMixtureFormat = "myriad-mixture-1";

struct MixtureExpert {
  std::string name;                  // its PEFT folder inside the mixture folder: [A-Za-z0-9._-]+, not "." or ".."
  int64_t lines = 0;                 // corpus lines in its cluster
  std::vector<std::string> samples;  // a few of them
  std::vector<std::string> terms;    // words frequent in the cluster and rarer elsewhere
  double train_loss_first = 0, train_loss_last = 0;
};

enum class EmbeddingKind : uint8_t {
  kTfidf,       // "tfidf-token-ngrams": lexical, no model pass (the default)
  kHiddenMean,  // "hidden-mean": the base's mean hidden state after `layer` layers
};

struct Mixture {
  std::string base_model;            // the folder the experts were trained on (informational)
  EmbeddingKind embedding_kind = EmbeddingKind::kTfidf;
  TfidfModel embedding;              // kTfidf
  int32_t hidden_layer = 0;          // kHiddenMean: decoder layers before pooling
  int64_t hidden_dim = 0;            // kHiddenMean: the base's hidden size
  // kHiddenMean: leading special tokens (a BOS) each line was embedded
  // behind, attended to but not averaged: a request's prompt is pooled the
  // same way (its own prefill sees its BOS). 0 in mixtures made before.
  int32_t hidden_context = 0;
  bool cosine = true;                // else euclidean
  std::vector<float> centroids;      // [k, dim]
  RoutingOptions routing;            // the defaults a request may override
  std::vector<MixtureExpert> experts;  // [k]
  double silhouette = 0;

  int64_t k() const { return int64_t(experts.size()); }
  int64_t dim() const { return embedding_kind == EmbeddingKind::kTfidf ? embedding.dim() : hidden_dim; }

  // kTfidf: the experts for a prompt's token ids (embedded as the corpus
  // was). kHiddenMean needs the base pass: kUnsupported here.
  Result<std::vector<ExpertChoice>> route(std::span<const int32_t> prompt, const RoutingOptions& options) const;
  // The experts for an embedding made as the corpus's were ([dim()]).
  Result<std::vector<ExpertChoice>> route_embedding(std::span<const float> embedding,
                                                    const RoutingOptions& options) const;

  // A hidden-state mixture routed in each request's own prefill: why it
  // cannot be ("" when it can). It can when it has at most
  // kMaxAdaptersPerRow experts (one row mixes them all) and `experts` (its
  // experts' weights, in order) adapt no layer below hidden_layer, where a
  // routing row still runs as the base.
  std::string why_not_routed_in_prefill(const std::vector<std::shared_ptr<const LoraWeights>>& experts) const;
  // The PrefillRouter of such a mixture (routing as given; skip_tokens 0).
  std::shared_ptr<PrefillRouter> prefill_router(const RoutingOptions& options) const;

  nlohmann::json to_json() const;
  // kBadFile naming `where` and the field for anything missing or malformed.
  static Result<Mixture> from_json(const nlohmann::json& j, const std::string& where);
  // Reads DIR/mixture.json; the experts' folders are checked to exist.
  static Result<Mixture> load(const std::string& dir);
};

// Whether `prompt` starts with one of the base's BOS ids (`bos_ids`).
bool starts_with_bos(std::span<const int32_t> prompt, std::span<const int64_t> bos_ids);

// `router` for one prompt: a leading BOS (when more follows) is context, not
// averaged, as the corpus lines' was (Mixture::hidden_context), and top_k is
// the request's where it gives one. `router` itself when neither applies.
std::shared_ptr<const PrefillRouter> router_for_prompt(const std::shared_ptr<const PrefillRouter>& router,
                                                       std::span<const int32_t> prompt,
                                                       std::span<const int64_t> bos_ids,
                                                       std::optional<int32_t> top_k = std::nullopt);

}  // namespace myriad::moe
