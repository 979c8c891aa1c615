// A deterministic executor that computes nothing: each sampled token is a
// hash of (sequence, output index, adapter name), so a row run on the
// wrong adapter or with a wrong output index gives a different token. It
// checks every plan against what the engine promised (KV continuity and
// block ownership, tokens re-fed identically after a recompute, only ready
// slots used, a sequence never changes adapter) and records violations.
// A load is reported done (LoadDone, inline) at the start of the
// (load_steps + 1)-th step() after it began, counting the empty steps the
// engine issues while it waits; so it is deterministic. With a ManualClock it
// advances time per step, a one-line cost model. For tests, the
// engine_events bench and as a template for the simulator's executor.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/clock.h"
#include "runtime/executor.h"

namespace myriad {

struct FakeExecutorOptions {
  int32_t vocab_size = 1000;
  int32_t kv_block_size = 16;
  int32_t kv_num_blocks = 1024;
  int32_t num_adapter_slots = 4;
  int32_t max_tokens_per_step = 0;  // ExecutorInfo's capacity (0 = no limit); step() refuses larger plans
  int32_t max_rows = 0;
  int32_t load_steps = 0;       // step() calls a load waits before it is reported done
  bool validate = true;         // false: the fastest path (benchmarks), no checks
  ManualClock* clock = nullptr; // advanced by step_ms + per_token_ms * tokens per step
  double step_ms = 0.0;
  double per_token_ms = 0.0;
  double load_ms = 0.0;         // advanced once per begin_load_adapter
  // Alternatives it reports per sampled token (ExecutorInfo::max_top_logprobs):
  // alternative i of token t is (t + i) mod vocab, logprob(t) - i.
  int32_t max_top_logprobs = 0;
  bool applies_logit_bias = false;  // ExecutorInfo's; the fake's tokens ignore it
  // stage_adapter drops A and B and attaches a staged form of half their
  // bytes (as the CUDA executor does with bf16 images), so tests can follow
  // staged adapters from the host cache into slots.
  bool stages_adapters = false;
};

class FakeExecutor final : public Executor {
 public:
  explicit FakeExecutor(const FakeExecutorOptions& options);

  static int32_t token_for(SeqId seq, uint32_t output_index, std::string_view adapter, int32_t vocab_size);
  // The logit it returns for vocabulary entry v at a position whose input
  // token is `token`, so a test can tell which positions it was given.
  static float logit_for(int32_t token, int32_t position, int32_t v);

  const ExecutorInfo& info() const override { return info_; }
  Status step(const StepPlan& plan, StepResult& out) override;
  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) override;
  void unload_adapter(int32_t slot) override;
  Result<std::shared_ptr<const LoraWeights>> stage_adapter(std::shared_ptr<const LoraWeights> weights) const override;

  // Fault injection.
  void fail_next_step(Error e) { fail_step_ = std::move(e); fail_step_armed_ = true; }
  void fail_loads_of(std::string adapter_name) { fail_loads_of_ = std::move(adapter_name); }
  // The next step's first token with alternatives points past top_entries.
  void misplace_next_top() { misplace_top_ = true; }

  const std::vector<std::string>& violations() const { return violations_; }
  uint64_t steps() const { return steps_; }
  uint64_t loads() const { return loads_; }
  uint64_t staged_loads() const { return staged_loads_; }  // loads of weights it staged
  // Name of the adapter each slot holds ("" = free or base).
  std::string slot_name(int32_t slot) const;

 private:
  struct Slot {
    enum class State : uint8_t { kFree, kLoading, kReady } state = State::kFree;
    int32_t steps_left = 0;
    std::string name;
    LoadDone done;
  };
  struct SeqTrack {
    int32_t cached = 0;            // positions in the KV cache; -1 after its blocks were taken
    uint32_t sampled = 0;          // output index of its next sample
    bool has_sampled = false;      // a resumed request's first sample may start past 0
    std::vector<int32_t> tokens;   // every token fed or sampled, by position
    std::vector<int32_t> table;    // block table of its last row
    std::string adapter;           // adapter name of its first row
    bool has_adapter = false;
  };
  void violation(std::string what);
  void finish_loads();
  // The adapter names of a row's slots, "+"-joined ("" = base model); a
  // mixture's are joined into `scratch`, a single adapter's is viewed as is.
  std::string_view row_adapter(const SeqRow& r, std::string& scratch) const;
  Status validate(const StepPlan& plan);

  FakeExecutorOptions opt_;
  ExecutorInfo info_;
  std::vector<Slot> slots_;
  std::unordered_map<SeqId, SeqTrack> seqs_;
  std::vector<SeqId> block_owner_;  // [block]; 0 = none
  std::vector<uint32_t> step_mark_;  // [block] step stamp, for duplicates within one step
  std::vector<std::string> violations_;
  bool fail_step_armed_ = false;
  bool misplace_top_ = false;
  Error fail_step_;
  std::string fail_loads_of_;
  uint64_t steps_ = 0;
  uint64_t loads_ = 0;
  uint64_t staged_loads_ = 0;
  std::string name_scratch_;  // row_adapter's join of a mixture's names
};

}  // namespace myriad
