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
#include <vector>

#include "runtime/sampling_params.h"

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
};

struct StepPlan {
  std::vector<SeqRow> rows;
  std::vector<int32_t> tokens;     // all rows' new token ids
  std::vector<int32_t> block_ids;  // all rows' block tables
  std::vector<int32_t> history;    // penalty histories

  void clear() {
    rows.clear();
    tokens.clear();
    block_ids.clear();
    history.clear();
  }
  size_t num_tokens() const { return tokens.size(); }
};

struct SampledToken {
  SeqId seq = 0;
  int32_t token = -1;
  float logprob = 0.0f;  // log-softmax of the chosen token under the (penalized, temperature-scaled) distribution
};

struct StepResult {
  std::vector<SampledToken> sampled;  // one per row with sample=true, in row order
  // Logits of rows that asked, in row order: kLast gives 1 row, kAll gives num_tokens rows.
  std::vector<float> logits;          // [sum of positions, vocab]
  std::vector<uint32_t> logits_rows;  // index into plan.rows for each logits position block start
  // What the step took on the device, as the executor measured it (-1 =
  // not measured); the engine records it in its metrics.
  double device_ms = -1.0;

  void clear() {
    device_ms = -1.0;
    sampled.clear();
    logits.clear();
    logits_rows.clear();
  }
};

}  // namespace myriad
