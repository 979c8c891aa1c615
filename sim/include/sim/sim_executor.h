// An Executor that computes nothing and charges a CostModel: the simulated
// device of one worker. step() samples a deterministic token per sampling
// row (a hash of the sequence and its output index; never a stop token, so
// requests run to max_tokens) and reports the step's cost as device_ms.
// Slot loads complete on the virtual clock: begin_load_adapter queues the
// load behind the ones in flight (one copy engine), and the simulator calls
// finish_loads(now) when the clock passes their end.
// Single-threaded, like the simulator.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "runtime/executor.h"
#include "sim/cost_model.h"

namespace myriad::sim {

struct SimExecutorOptions {
  int32_t vocab_size = 32000;
  int32_t kv_block_size = 16;
  int32_t kv_num_blocks = 4096;
  int32_t num_adapter_slots = 16;
  int32_t max_adapter_rank = 64;
  int32_t max_tokens_per_step = 0;
  int32_t max_rows = 0;
};

class SimExecutor final : public Executor {
 public:
  SimExecutor(const SimExecutorOptions& options, const CostModel& cost);

  const ExecutorInfo& info() const override { return info_; }
  Status step(const StepPlan& plan, StepResult& out) override;
  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) override;
  void unload_adapter(int32_t slot) override;

  // The clock's time now, for loads begun from here on.
  void set_now(double now_ms) { now_ms_ = now_ms; }
  // Completes the loads that end at or before `now_ms` (their LoadDone is
  // called); returns when the next one ends, or a negative number if none.
  double finish_loads(double now_ms);
  double next_load_end_ms() const { return loads_.empty() ? -1.0 : loads_.front().end_ms; }
  uint64_t loads() const { return loads_started_; }

 private:
  struct Load {
    int32_t slot = -1;
    double end_ms = 0;
    LoadDone done;
  };
  ExecutorInfo info_;
  CostModel cost_;
  std::vector<int32_t> slot_rank_;  // rank of the adapter in each slot (0: empty)
  std::deque<Load> loads_;          // in flight, by end time (one copy engine: FIFO)
  double now_ms_ = 0.0;
  uint64_t loads_started_ = 0;
};

}  // namespace myriad::sim
