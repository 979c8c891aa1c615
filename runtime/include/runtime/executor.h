// The seam between the engine (runtime/) and a device (gpu/cpu, gpu/cuda, or
// the simulator's cost model): "run this step plan, return the sampled
// tokens; load this adapter into slot s".
//
// Not thread-safe: one engine thread drives one executor. An adapter load
// completes in the background and the executor reports it (the engine is
// never asked to poll): a slot's rows may run only after its LoadDone said
// ok.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "runtime/lora_weights.h"
#include "runtime/result.h"
#include "runtime/step_plan.h"

namespace myriad {

struct ExecutorInfo {
  std::string device;        // e.g. "cpu (2 threads, avx2)" or "NVIDIA H100 (sm_90)"
  int32_t vocab_size = 0;
  int32_t kv_block_size = 16;    // tokens per KV block
  int32_t kv_num_blocks = 0;     // blocks in the preallocated pool
  int32_t num_adapter_slots = 0;
  int32_t max_adapter_rank = 0;
  // Capacity of one step (0 = no limit): a plan beyond them is refused by
  // step(), so Engine::create refuses a configuration that could plan one.
  int32_t max_tokens_per_step = 0;  // sum of the rows' new tokens
  int32_t max_rows = 0;             // rows (sequences) in one plan
  int32_t max_logits_rows = 0;      // logits positions returned (kLast: 1 a row, kAll: its tokens)
  // Rows that pick their experts at a layer of their own prefill
  // (PrefillRouter): an executor that takes them says so and gives the
  // model's shape the routers must match.
  bool routes_in_prefill = false;
  int32_t hidden_size = 0;
  int32_t num_layers = 0;
  // Alternatives a sampled token can report (SamplingParams::top_logprobs);
  // a request asking for more is refused at submit.
  int32_t max_top_logprobs = 0;
  // Whether its sampler adds Request::logit_bias; a request with a bias is
  // refused at submit by one that does not.
  bool applies_logit_bias = false;
};

// Called exactly once per accepted load, from any thread (the executor's
// loader thread, a CUDA callback thread, or inline): ok once every byte is
// in the slot, else why it failed. Must be cheap and must not call back
// into the executor (the engine posts it to its inbox).
using LoadDone = std::function<void(Status)>;

class Executor {
 public:
  virtual ~Executor() = default;

  virtual const ExecutorInfo& info() const = 0;

  // Runs one forward step over all rows and samples where rows ask.
  // `out` is cleared and refilled (its capacity is reused across steps).
  // An empty plan computes nothing and returns at once; the engine issues
  // one while it waits for loads, so a synchronous executor (the fake, a
  // simulator) can make progress.
  virtual Status step(const StepPlan& plan, StepResult& out) = 0;

  // Starts copying `weights` into `slot`; returns at once and reports the
  // end through `done`. An error returned here (slot out of range or busy,
  // the adapter does not fit) changes nothing and `done` is not called.
  virtual Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) = 0;
  // Frees the slot's contents (waiting for a load in flight into it). The
  // caller guarantees no row uses it.
  virtual void unload_adapter(int32_t slot) = 0;

  // The form of `weights` this executor loads fastest, made once as the
  // adapter enters the host cache rather than at every load (CUDA: the
  // slot's bytes in the device dtype, in pinned memory, so a load is one
  // copy; the float32 A and B are dropped). Thread-safe, unlike the rest:
  // the host cache's fetch thread calls it while steps run. An adapter that
  // does not fit the slots is an error naming why. The default stages
  // nothing and returns `weights` as they are.
  virtual Result<std::shared_ptr<const LoraWeights>> stage_adapter(std::shared_ptr<const LoraWeights> weights) const {
    return weights;
  }
};

}  // namespace myriad
