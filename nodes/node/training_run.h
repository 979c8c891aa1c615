// A training loop its client drives (issue 20's TrainingRun, in the spirit
// of Tinker's API): the client sends batches and decides when to step, when
// to publish and what to sample, while the node keeps the adapter, its
// gradients and AdamW state on the worker that serves, beside everyone
// else's traffic and jobs.
//
//   forward_backward(batch)  loss of the batch (mean per target token) and
//                            its gradient, added to the gradients held
//   optim_step(lr, clip)     clips the held gradients (global norm), one
//                            AdamW step at lr, then zeroes them
//   snapshot()               the adapter as it is now (FineTuning publishes
//                            it as the next version of tenant/name, served
//                            from memory)
//
// Calls run in the order posted, each answered through its callback. A
// LocalTrainingRun holds its tensors on this node's worker; a cluster's
// gateway holds ClusterTrainingRuns (cluster_training_run.h), whose tensors
// are a worker's LocalTrainingRun.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/adapter_id.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/result.h"
#include "runtime/safetensors.h"
#include "runtime/training/lora_params.h"
#include "runtime/training/lora_training_backend.h"
#include "runtime/training/optimizer.h"
#include "runtime/training/training_data.h"
#include "runtime/training/training_work.h"

namespace myriad::node {

struct TrainingRunOptions {
  std::string tenant;
  std::string adapter;  // its versions are published as tenant/adapter@N
  LoraTargets targets;
  AdamWConfig adamw;  // betas, eps, weight decay; the rate comes with each step
  uint64_t seed = 0;  // of the adapter's initialisation (PEFT's)
  // The open request it was made from, less its name: what a checkpoint of
  // it keeps, so a run opened from that checkpoint has the same shape.
  nlohmann::json request = nlohmann::json::object();
};

struct ForwardBackwardResult {
  double loss = 0;  // mean per target token of the batch
  int64_t tokens = 0, target_tokens = 0;
};

// What a run is between calls: its adapter, AdamW's moments and its step
// count (gradients accumulated since the last optim_step are not part of it).
struct TrainingRunState {
  LoraParams<float> params, m, v;
  int64_t steps = 0;
};

struct OptimStepResult {
  int64_t step = 0;       // optimizer steps done, this one included
  double grad_norm = 0;   // of the held gradients, before clipping
  int64_t accumulated = 0;  // forward_backward calls whose gradients it applied
};

struct RunSnapshot {
  std::shared_ptr<const LoraWeights> weights;
  int64_t step = 0;  // optimizer steps done
};

// The state's tensors as safetensors bytes ("params.", and with
// `with_moments` "adam_m." and "adam_v."): a run checkpoint's and the
// cluster's messages' layout.
std::vector<TensorToWrite> run_state_tensors(const TrainingRunState& state, bool with_moments);
// Reads them into a state shaped for a run of `options` on `base` (without
// `with_moments`, its AdamW moments stay zero), with `steps`; kBadFile naming
// a tensor that is missing or misshaped.
Result<TrainingRunState> read_run_state(const SafetensorsFile& file, const ModelConfig& base,
                                        const TrainingRunOptions& options, bool with_moments, int64_t steps);
// The same from safetensors bytes (a cluster message's); errors name `what`.
Result<TrainingRunState> run_state_from_bytes(std::string_view bytes, const std::string& what, const ModelConfig& base,
                                              const TrainingRunOptions& options, bool with_moments, int64_t steps);

class TrainingRun : public std::enable_shared_from_this<TrainingRun> {
 public:
  explicit TrainingRun(TrainingRunOptions options) : options_(std::move(options)) {}
  virtual ~TrainingRun() = default;

  const TrainingRunOptions& options() const { return options_; }
  std::string adapter_name() const { return options_.tenant + "/" + options_.adapter; }

  // Empty batches, tokens out of the vocabulary and rows past the context
  // are errors that change nothing.
  virtual void forward_backward(std::vector<TrainingExample> batch,
                                std::function<void(Result<ForwardBackwardResult>)> done) = 0;
  // learning_rate > 0; max_grad_norm <= 0: no clipping. kInvalidArgument
  // when no forward_backward came since the last step.
  virtual void optim_step(double learning_rate, double max_grad_norm,
                          std::function<void(Result<OptimStepResult>)> done) = 0;
  virtual void snapshot(std::function<void(Result<RunSnapshot>)> done) = 0;
  // A copy of the run's state, made between calls (FineTuning::save_run_state
  // writes it).
  virtual void state(std::function<void(Result<std::shared_ptr<const TrainingRunState>>)> done) = 0;

  // The newest version published from this run (empty before the first).
  void set_published(const AdapterId& id);
  std::optional<AdapterId> published() const;

  // {"object": "training_run", "adapter", "rank", "alpha", "targets", "seed", ...}
  virtual nlohmann::json describe() const;

 protected:
  TrainingRunOptions options_;

 private:
  mutable std::mutex mu_;
  std::optional<AdapterId> published_;
};

// A run on this node's worker: every call runs on the worker's thread
// between training rounds and inference steps (TrainingWork::post), and
// answers there; the run's tensors are touched by that thread only. A
// forward_backward runs in the backend's units, a turn at a time like a
// job's round (TrainingWork::post_units), so inference steps go on between
// them.
class LocalTrainingRun final : public TrainingRun {
 public:
  // `work` and `backend` must outlive every call posted.
  LocalTrainingRun(TrainingRunOptions options, const ModelConfig& base, TrainingWork& work,
                   LoraTrainingBackend& backend);

  void forward_backward(std::vector<TrainingExample> batch,
                        std::function<void(Result<ForwardBackwardResult>)> done) override;
  void optim_step(double learning_rate, double max_grad_norm,
                  std::function<void(Result<OptimStepResult>)> done) override;
  void snapshot(std::function<void(Result<RunSnapshot>)> done) override;
  void state(std::function<void(Result<std::shared_ptr<const TrainingRunState>>)> done) override;
  // Puts a saved state in place; only before the run's first call (it must
  // have the run's shape: FineTuning::open_run checks the file against it).
  void restore(TrainingRunState state);

 private:
  std::shared_ptr<LocalTrainingRun> self() { return std::static_pointer_cast<LocalTrainingRun>(shared_from_this()); }

  TrainingWork& work_;
  LoraTrainingBackend& backend_;
  // The worker thread's.
  LoraParams<float> params_, grads_;
  AdamW adamw_;
  int64_t steps_ = 0;
  int64_t accumulated_ = 0;  // forward_backward calls since the last step
};

}  // namespace myriad::node
