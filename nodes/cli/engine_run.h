// How the CLI's commands compute: their requests go to one Engine over a
// CPU executor sized for exactly those requests (KV blocks for every
// position, one slot per distinct adapter, every prompt in one step), run
// to completion, events to `sink`. The path a server's requests take, so
// the CLI shows what a server would answer.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/dtype.h"
#include "runtime/engine_events.h"
#include "runtime/lora_weights.h"
#include "runtime/request.h"
#include "runtime/result.h"
#include "runtime/tokenizer.h"

namespace myriad::cli {

// One adapter of a per-row mixture of slots (a routed mixture of experts).
struct WeightedAdapter {
  std::shared_ptr<const LoraWeights> weights;
  float weight = 1.0f;
};

struct CliRequest {
  Request request;                               // its `adapters` are set here
  std::shared_ptr<const LoraWeights> adapter;    // null: the base model (or `experts`)
  // Non-empty: these adapters, each in its own slot, mixed per row by
  // weight (instead of `adapter`); at most kMaxAdaptersPerRow.
  std::vector<WeightedAdapter> experts;
};

struct EngineRunOptions {
  int threads = 0;                        // 0: every core
  std::optional<DType> kv_dtype;          // nullopt: the model's
  std::shared_ptr<const Tokenizer> tokenizer;  // for text and stop strings
};

// Keeps each request's kLogits rows (by request id) and the first failure.
class LogitsCollector final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override;
  std::map<RequestId, std::vector<float>> logits;  // [positions, vocab] per request
  std::map<RequestId, std::vector<float>> expert_weights;  // requests routed in their prefill
  std::optional<Error> error;
};

// "%.9g" floats (round-trip exact), `vocab` to a row: "[a, b, ...], [...]".
std::string logits_rows_json(const std::vector<float>& logits, size_t vocab);

// Submits every request (in order: request ids 1, 2, ...) and steps until
// all have ended. An Error means nothing ran: a request was refused
// (kInvalidArgument for bad values) or the executor could not be made.
Status run_on_engine(std::shared_ptr<const Checkpoint> checkpoint, std::vector<CliRequest> requests,
                     const EngineRunOptions& options, EventSink& sink);

}  // namespace myriad::cli
