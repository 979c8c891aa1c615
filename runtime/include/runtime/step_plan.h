// One engine step as the executor sees it: rows of sequences with their new
// tokens, where their KV lives, which adapter slots they use and how to
// sample. About sequences and tokens only: no request lifecycle here.
//
// Flat arrays with offsets (not pointers) so a plan can be reused across
// steps without allocating (clear() keeps capacity) and serialized later.
// Owned by the engine; the executor reads it during step() only.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/logit_bias.h"
#include "runtime/sampling_params.h"
#include "runtime/top_logprobs.h"

namespace myriad {

using SeqId = uint64_t;

// One adapter slot a row uses, with its mixing weight (a mixture of experts
// row has several; a plain adapter row has one with weight 1).
struct AdapterRef {
  int32_t slot = -1;
  float weight = 1.0f;
};
inline constexpr int kMaxAdaptersPerRow = 4;

struct AdapterMix {
  uint8_t count = 0;  // 0 => base model only
  std::array<AdapterRef, kMaxAdaptersPerRow> refs{};

  static AdapterMix none() { return {}; }
  static AdapterMix single(int32_t slot) {
    AdapterMix m;
    if (slot >= 0) m.refs[m.count++] = {slot, 1.0f};
    return m;
  }
};

enum class LogitsRequest : uint8_t { kNone, kLast, kAll };

// How a request to a mixture of experts routed by hidden state picks its
// experts during its own prefill, with no second pass: after `layer` decoder
// layers, the row's hidden states (the residual stream) over its routed
// tokens are averaged, L2-normalised and matched to the centroids; the top_k
// experts, softmax-weighted by similarity / temperature, apply from that
// layer on (moe::route). Below `layer` the row runs as the base model, so
// this equals routing by a base pass only when the experts adapt no layer
// below it (PEFT's layers_to_transform). Immutable once made; a request
// shares it with its rows.
struct PrefillRouter {
  int32_t layer = 0;            // in [0, num_layers]
  uint32_t skip_tokens = 0;     // leading prompt tokens not averaged (a BOS)
  uint32_t max_tokens = 0;      // prompt tokens averaged at most after the skipped ones (0: all)
  int32_t dim = 0;              // the model's hidden size
  std::vector<float> centroids;  // [experts, dim]; expert e is the request's adapters[e]
  bool cosine = true;           // else minus the squared euclidean distance
  int32_t top_k = 1;
  double temperature = 0.05;
  int32_t num_experts() const { return dim > 0 ? int32_t(centroids.size() / size_t(dim)) : 0; }
};

// A row that routes in this step: its tokens [first_token, first_token +
// num_tokens) are averaged, and the chosen experts' slots replace the row's
// adapters (none until then) from router->layer on.
struct RowRoute {
  const PrefillRouter* router = nullptr;  // owned by the request, alive during step()
  uint32_t first_token = 0;
  uint32_t num_tokens = 0;
  std::array<int32_t, kMaxAdaptersPerRow> expert_slots{};  // the slot of expert e
};

struct SeqRow {
  SeqId seq = 0;
  uint32_t token_offset = 0;  // into StepPlan::tokens
  uint32_t num_tokens = 0;    // new tokens: a prefill chunk, or 1 when decoding
  int32_t start_pos = 0;      // position of the first new token; [0, start_pos) is in the KV cache
  uint32_t block_offset = 0;  // into StepPlan::block_ids
  uint32_t num_blocks = 0;    // covers positions [0, start_pos + num_tokens)
  AdapterMix adapters;
  bool sample = false;        // sample a token after the last new token (false for a non-final prefill chunk)
  LogitsRequest logits = LogitsRequest::kNone;
  SamplingParams sampling;
  uint32_t output_index = 0;  // index of the token being sampled among the sequence's outputs (RNG counter)
  uint32_t history_offset = 0;  // into StepPlan::history: prompt + generated ids, for penalties only
  uint32_t history_len = 0;
  uint32_t prompt_len = 0;      // the first prompt_len ids of history are the prompt (frequency/presence count outputs only)
  uint32_t bias_offset = 0;     // into StepPlan::logit_bias: added to the logits before the row samples
  uint32_t bias_count = 0;
  int32_t route = -1;           // into StepPlan::routes: the row picks its experts during this step
};

struct StepPlan {
  std::vector<SeqRow> rows;
  std::vector<int32_t> tokens;     // all rows' new token ids
  std::vector<int32_t> block_ids;  // all rows' block tables
  std::vector<int32_t> history;    // penalty histories
  std::vector<RowRoute> routes;    // rows routing in their prefill (see PrefillRouter)
  std::vector<LogitBias> logit_bias;  // sampling rows' biases (SeqRow::bias_offset)

  void clear() {
    rows.clear();
    tokens.clear();
    block_ids.clear();
    history.clear();
    routes.clear();
    logit_bias.clear();
  }
  size_t num_tokens() const { return tokens.size(); }
};

struct SampledToken {
  SeqId seq = 0;
  int32_t token = -1;
  float logprob = 0.0f;  // log-softmax of the chosen token under the (penalized, temperature-scaled) distribution
  // The row's sampling.top_logprobs most likely tokens, under the same
  // distribution: StepResult::top_entries[top_offset, top_offset + top_count).
  // Kept out of line so a token that asked for none costs no more to carry.
  uint32_t top_offset = 0;
  uint32_t top_count = 0;
};

// The experts a routing row chose: each expert's weight (0: not chosen) and
// similarity, in the router's expert order.
struct RoutedRow {
  uint32_t row = 0;  // index into plan.rows
  std::array<float, kMaxAdaptersPerRow> weights{};
  std::array<float, kMaxAdaptersPerRow> similarities{};
};

struct StepResult {
  std::vector<SampledToken> sampled;  // one per row with sample=true, in row order
  std::vector<TopLogprobs::Entry> top_entries;  // the sampled tokens' alternatives (SampledToken::top_offset)
  // Logits of rows that asked, in row order: kLast gives 1 row, kAll gives num_tokens rows.
  std::vector<float> logits;          // [sum of positions, vocab]
  std::vector<uint32_t> logits_rows;  // index into plan.rows for each logits position block start
  std::vector<RoutedRow> routed;      // one per plan row with a route, in row order
  // What the step took on the device, as the executor measured it (-1 =
  // not measured); the engine records it in its metrics.
  double device_ms = -1.0;

  // Appends a sampled token and its alternatives.
  void add_sampled(SeqId seq, int32_t token, float logprob, std::span<const TopLogprobs::Entry> top = {}) {
    sampled.push_back({seq, token, logprob, uint32_t(top_entries.size()), uint32_t(top.size())});
    if (!top.empty()) top_entries.insert(top_entries.end(), top.begin(), top.end());
  }
  // A sampled token's alternatives; empty when its range is out of
  // top_entries (the scheduler checks ranges before it reads them).
  std::span<const TopLogprobs::Entry> top_of(const SampledToken& t) const {
    if (t.top_offset > top_entries.size() || t.top_count > top_entries.size() - t.top_offset) return {};
    return {top_entries.data() + t.top_offset, t.top_count};
  }

  void clear() {
    device_ms = -1.0;
    sampled.clear();
    top_entries.clear();
    logits.clear();
    logits_rows.clear();
    routed.clear();
  }
};

}  // namespace myriad
