// Training runs on a cluster's workers: the gateway's side. A client drives
// a run through the gateway's HTTP or RPC API as on a single node; the run's
// adapter, gradients and AdamW state live in a LocalTrainingRun on one
// worker (the trainer with the fewest open runs when it opened), and every
// call is a RunCall message to that worker's trainer, answered by a
// RunAnswer to the gateway's job host, which hands it here.
//
//   open ─> a worker's trainer (fresh, or from a saved state the gateway read)
//   forward_backward | optim_step | snapshot | state ─> that trainer ─> answer
//   the run dropped (DELETE, the RPC capability released) ─> close
//   the worker lost ─> its calls in flight and every later call: kUnavailable
//                      (a close of each of its runs is sent first: a hung
//                      worker that wakes lets go of their state)
//
// A run does not move when its worker is lost: its state was on that worker
// only. The client opens a new run from its last saved state (save_state,
// which the gateway keeps) and goes on from there exactly.
//
// Thread-safe: calls come from the APIs' threads, answers and trainers from
// the job host actor's; callbacks are called on the latter (or on the
// caller's thread when the call cannot be sent), never under the lock.
#pragma once

#include <caf/all.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "actors/service_actors.h"
#include "actors/training_wire.h"
#include "runtime/model_config.h"
#include "training_run.h"

namespace myriad::node {

class ClusterRuns : public std::enable_shared_from_this<ClusterRuns> {
 public:
  explicit ClusterRuns(actors::run_sink_actor sink) : sink_(std::move(sink)) {}

  // The job host actor's thread.
  void joined(const std::string& worker, actors::trainer_actor trainer);
  void lost(const std::string& worker);
  void answered(const actors::RunAnswerWire& wire);
  // Fails every call in flight and drops every actor handle (before the
  // actor system goes); later calls answer kUnavailable. Idempotent.
  void stop();

  // A run on the worker with the fewest open runs; kUnavailable when no
  // worker that trains has joined.
  Result<std::shared_ptr<TrainingRun>> open(TrainingRunOptions options, const ModelConfig& base,
                                            std::optional<TrainingRunState> from);

  // One call of run `msg.run` to `worker`'s trainer (msg.call is set here);
  // `done` gets the answer (an error answer as an error). `done` may be
  // empty (close: nothing waits for it).
  void call(const std::string& worker, actors::RunCallMsg msg,
            std::function<void(Result<actors::RunAnswerMsg>)> done);
  // Forgets a closed run of `worker` (fewer open runs there).
  void closed(const std::string& worker, const std::string& run);

 private:
  struct Pending {
    std::string worker, run;
    std::function<void(Result<actors::RunAnswerMsg>)> done;
  };

  std::mutex mu_;
  actors::run_sink_actor sink_;
  std::map<std::string, actors::trainer_actor> trainers_;   // by worker
  std::map<std::string, std::set<std::string>> open_runs_;  // by worker: its runs' ids
  std::map<uint64_t, Pending> pending_;                     // by call
  uint64_t next_call_ = 1;
  bool stopped_ = false;
};

// A run whose tensors are on `worker` (ClusterRuns::open makes them).
class ClusterTrainingRun final : public TrainingRun {
 public:
  ClusterTrainingRun(TrainingRunOptions options, const ModelConfig& base, std::string id, std::string worker,
                     std::shared_ptr<ClusterRuns> runs);
  ~ClusterTrainingRun() override;  // closes the run on its worker

  void forward_backward(std::vector<TrainingExample> batch,
                        std::function<void(Result<ForwardBackwardResult>)> done) override;
  void optim_step(double learning_rate, double max_grad_norm,
                  std::function<void(Result<OptimStepResult>)> done) override;
  void snapshot(std::function<void(Result<RunSnapshot>)> done) override;
  void state(std::function<void(Result<std::shared_ptr<const TrainingRunState>>)> done) override;
  // describe() with "worker": where its tensors are.
  nlohmann::json describe() const override;

  const std::string& worker() const { return worker_; }

 private:
  // The run's state as the worker has it (kSnapshot: the adapter alone,
  // zero moments; kState: with its AdamW moments).
  void fetch_state(actors::RunOp op, std::function<void(Result<TrainingRunState>)> done);

  ModelConfig base_;
  std::string id_, worker_;
  std::shared_ptr<ClusterRuns> runs_;
};

// The options as the open call carries them, and back (the worker's side).
std::string run_options_json(const TrainingRunOptions& options);
Result<TrainingRunOptions> run_options_from_json(const std::string& text);

}  // namespace myriad::node
