// The engine loop: each step() applies the completions reported since the
// last one (adapter fetches from the AdapterSource, slot loads from the
// executor; both arrive through the engine's inbox from any thread), asks
// the scheduler for a plan, executes the adapter evictions and loads it
// names, runs the executor (which samples),
// feeds the sampled tokens back to the scheduler and emits per-request
// events to the EventSink, recording metrics on the way. With a tokenizer,
// an OutputProcessor per request turns its tokens into text deltas on the
// events and ends it at a stop string. Time comes from
// an injected Clock, so tests and the simulator control it; the executor
// may be real (gpu/cpu, gpu/cuda) or simulated.
//
// Owns the scheduler and the inbox; borrows the executor, adapter source,
// clock and sink (they must outlive it). Not thread-safe: one thread calls
// submit/cancel/step (an actor serializes them); only the inbox is posted to
// from other threads. A steady decode step allocates nothing: the
// plan, the result and the event buffer are reused.
//
// Request lifecycle (every accepted request ends in exactly one final
// event: Finished or Failed):
//
//            submit()
//   ─────────────────────┬──(1) invalid (validate_request) ──> rejected (Error returned, no events)
//                        │(2) accepted; versions not in host memory are fetched
//                        v
//                     QUEUED ──(3) cancel / deadline ─────────────────────────────> FINISHED (cancelled | deadline)
//                      │  ^  └─(4) an adapter's fetch or load failed ──────────────> FAILED
//   (5) adapter active,│  │
//   fits batch, tokens │  │(6) KV blocks ran out (youngest first) or adapter
//   and KV blocks      │  │    swapped out with pause_on_swap_out: KV freed,
//                      v  │    recomputed (prompt + tokens so far) when readmitted
//                     RUNNING ──(7) prefill chunk / decode step, a Token event per sampled token ──┐
//                      │  │  ^────────────────────────────────────────────────────────────────────┘
//                      │  └──(8) stop token | max_tokens | cancel | deadline ──────> FINISHED (stop | length | cancelled | deadline)
//                      └─────(9) executor step failed ─────────────────────────────> FAILED
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "runtime/adapter_source.h"
#include "runtime/clock.h"
#include "runtime/engine_events.h"
#include "runtime/engine_inbox.h"
#include "runtime/engine_metrics.h"
#include "runtime/executor.h"
#include "runtime/output_processor.h"
#include "runtime/request.h"
#include "runtime/result.h"
#include "runtime/scheduler.h"
#include "runtime/scheduler_config.h"
#include "runtime/tokenizer.h"

namespace myriad {

class Engine {
 public:
  // Checks the config against the executor (slots, KV pool, block size,
  // step capacity) and takes the executor's vocabulary size when
  // config.vocab_size is 0. `tokenizer` (optional) gives events their text
  // and requests their stop strings.
  static Result<std::unique_ptr<Engine>> create(const SchedulerConfig& config, Executor& executor,
                                                AdapterSource& adapters, const Clock& clock, EventSink& sink,
                                                std::shared_ptr<const Tokenizer> tokenizer = nullptr);

  // Error => rejected (no events follow). Otherwise its events follow.
  // The request's adapters are AdapterIds, resolved by the caller.
  Result<RequestId> submit(Request request);
  // Emits the Finished(cancelled) event before returning true.
  bool cancel(RequestId id);
  // One iteration in two halves, for a caller that runs the device step
  // itself (a worker overlapping the next plan with the device, a simulator
  // on a virtual clock): plan_step(now) applies the completions in the
  // inbox, schedules, issues evictions and loads, and returns the plan (it
  // may have no rows); the caller runs Executor::step(plan, result) and then calls
  // complete_step(status, result, now), which applies the sampled tokens
  // (or the failure) and delivers the events. `result` must stay alive
  // until complete_step returns (logits events point into it).
  const StepPlan& plan_step(double now_ms);
  Status complete_step(const Status& status, const StepResult& result, double now_ms);
  // Both halves around the executor, on the engine's clock. Requests hurt by
  // an executor failure get Failed events; the engine keeps going. Returns
  // the executor's error for information.
  Status step();
  bool has_work() const { return scheduler_->has_work(); }
  // Called (on the posting thread) whenever a completion arrives: a worker
  // waiting for one with nothing to run wakes up and steps.
  void set_wakeup(std::function<void()> wakeup) { inbox_->set_wakeup(std::move(wakeup)); }
  // Steps until no work is left; kDeadlineExceeded if max_steps ran out.
  Status run_until_idle(uint64_t max_steps);

  const EngineMetrics& metrics() const { return metrics_; }
  const Scheduler& scheduler() const { return *scheduler_; }
  const ScheduleOutput& last_schedule() const { return *last_; }

 private:
  struct Track {
    double submit_ms = 0.0;
    double last_token_ms = 0.0;
    RequestMetrics* adapter = nullptr;
    std::unique_ptr<OutputProcessor> output;  // with a tokenizer
    std::string text;                         // the delta the current event views
    std::vector<int32_t> stop_token_ids;      // their text is not shown
    bool got_token = false;                   // its first token (TTFT) came
  };

  Engine(std::unique_ptr<Scheduler> scheduler, Executor& executor, AdapterSource& adapters, const Clock& clock,
         EventSink& sink, std::shared_ptr<const Tokenizer> tokenizer);
  void prime_output(Request& request, Track& track);
  void start_fetches();
  void apply_completions(double now_ms);
  void dispatch_events();
  void add_text(RequestEvent& e, Track& t);
  void record(const RequestEvent& e, Track& t);

  std::unique_ptr<Scheduler> scheduler_;
  Executor& executor_;
  AdapterSource& adapters_;
  // Shared with the fetch and load callbacks, which may outlive the engine.
  std::shared_ptr<EngineInbox> inbox_ = std::make_shared<EngineInbox>();
  std::vector<Completion> completions_;  // scratch
  const Clock& clock_;
  EventSink& sink_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::vector<RequestId> stopped_;  // scratch: matched a stop string, not yet finished
  bool step_in_flight_ = false;     // between plan_step and complete_step
  SchedulerStats stats_before_;     // at plan_step, for the metrics' deltas
  StepResult result_;
  const ScheduleOutput* last_ = nullptr;
  ScheduleOutput empty_;
  std::vector<double> load_start_ms_;  // [slot]
  std::unordered_map<RequestId, Track> tracks_;
  EngineMetrics metrics_;
};

}  // namespace myriad
