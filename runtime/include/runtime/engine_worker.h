// An Engine stepped by its own thread: the step loop of a worker. Other
// threads (a worker actor's handlers, a server's connections) submit and
// cancel; the loop applies those commands between steps, steps while there
// is work, and sleeps when there is none until a command or a completion
// (a fetch answered, a load reported: the engine's wakeup) arrives. So the
// caller's threads never block on a device step, and the device never waits
// for the caller.
//
//   start ──> RUNNING ──stop(kDrain)──> DRAINING (refuses submits; steps until idle) ──> STOPPED
//                │  └────stop(kCancel)──> cancels what is in flight, then ─────────────────┘
//
// Events go to the sink on the worker thread, in order per request; the
// sink must be quick and must not call back into the worker (forward them:
// a message to an actor, a queue to a connection). Every request submit()
// accepted ends in exactly one final event, also when the worker stops.
// Thread-safe: every public method may be called from any thread.
#pragma once

#include "runtime/background_work.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>

#include "runtime/adapter_source.h"
#include "runtime/clock.h"
#include "runtime/engine.h"
#include "runtime/executor.h"
#include "runtime/request_validation.h"
#include "runtime/scheduler_config.h"
#include "runtime/tokenizer.h"

namespace myriad {

struct EngineWorkerStats {
  uint64_t steps = 0;       // steps that ran rows
  uint64_t in_flight = 0;   // accepted, not yet final
  uint64_t queued = 0;      // waiting in the scheduler's queues
  uint64_t running = 0;     // in the running batch
  bool stopping = false;
};

class EngineWorker {
 public:
  enum class StopMode : uint8_t { kDrain, kCancel };

  // Creates the engine (Engine::create's checks) and starts the thread. The
  // executor, adapter source and sink must outlive the worker.
  static Result<std::unique_ptr<EngineWorker>> start(const SchedulerConfig& config, Executor& executor,
                                                      AdapterSource& adapters, EventSink& sink,
                                                      std::shared_ptr<const Tokenizer> tokenizer = nullptr);
  ~EngineWorker();  // stop(kCancel) if still running
  EngineWorker(const EngineWorker&) = delete;
  EngineWorker& operator=(const EngineWorker&) = delete;

  // Validates at once (validate_request: the same errors Engine::submit
  // gives) and queues it for the loop; kUnavailable-like kCancelled once
  // stopping. An id already in flight fails later, as a Failed event.
  Status submit(Request request);
  // Ends it with Finished(cancelled) if still in flight (asynchronously).
  void cancel(RequestId id);
  // Stops accepting, then drains or cancels what is in flight, and joins.
  void stop(StopMode mode);
  EngineWorkerStats stats() const;
  // The engine's metrics as JSON, taken on the worker thread between steps.
  std::string metrics_json();
  // Runs `fn` on the worker thread between steps (at once on the caller's
  // thread when the loop has ended), without waiting for it: for a worker
  // actor's periodic load and residency reports. `fn` must be quick.
  void inspect(std::function<void(const Engine&)> fn);
  const RequestLimits& limits() const { return limits_; }
  // Interleaves `work` (null: none) with the inference steps: while requests
  // run it gets `share` (in (0, 1)) of the loop's busy time (a unit of d
  // seconds owes inference steps d (1 - share) / share; units run while
  // nothing is owed, the credit a long step earns capped at about one
  // step), one run_once() at a time; with no request it runs back to back. Applied
  // between steps. `work` must outlive the worker (or be replaced first and
  // the worker stopped).
  void set_background(BackgroundWork* work, double share);

 private:
  struct Command {
    enum class Kind : uint8_t { kSubmit, kCancel, kInspect, kBackground } kind = Kind::kSubmit;
    Request request;
    RequestId id = 0;
    std::function<void(const Engine&)> inspect;
    BackgroundWork* background = nullptr;
    double share = 0;
  };
  // Tracks accepted ids so a cancel-stop can end them and stats can count them.
  class TrackingSink final : public EventSink {
   public:
    TrackingSink(EventSink& inner, EngineWorker& owner) : inner_(inner), owner_(owner) {}
    void on_event(const RequestEvent& e) override;

   private:
    EventSink& inner_;
    EngineWorker& owner_;
  };

  EngineWorker(const SchedulerConfig& config, EventSink& sink);
  void run();
  bool apply_commands();  // false once stopped and idle
  void wake();

  SchedulerConfig config_;
  RequestLimits limits_;
  SteadyClock clock_;
  EventSink& sink_;
  TrackingSink tracking_;
  std::unique_ptr<Engine> engine_;
  // Worker thread only: the background work, its share, and the inference
  // seconds owed before its next unit: a unit of d seconds adds
  // d (1 - share) / share of inference while requests are waiting and a
  // step of d seconds takes d off, so the share holds whatever the units'
  // and the steps' lengths (several units follow a step longer than one
  // unit's due). The balance owed to the work is capped at about one decode
  // step (decode_ewma_s_, an average of the times of steps that ran no
  // prefill; 0, so no credit, before the first): a prefill, however long,
  // never buys a run of units longer than a decode step.
  BackgroundWork* background_ = nullptr;
  double background_share_ = 0;
  BackgroundWork* wakes_ = nullptr;  // guarded by mu_: the work whose wakeup calls wake()
  double inference_owed_s_ = 0;
  double decode_ewma_s_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Command> commands_;
  bool woken_ = false;
  bool stopping_ = false;
  bool running_ = true;  // false once the loop has ended: the engine is then free to read
  StopMode stop_mode_ = StopMode::kDrain;
  std::unordered_set<RequestId> in_flight_;  // guarded by mu_ (the sink's thread and submitters)
  EngineWorkerStats stats_;                  // guarded by mu_
  std::mutex join_mu_;  // one joiner
  std::thread thread_;
};

}  // namespace myriad
