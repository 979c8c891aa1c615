// The training loop's logic (runtime/: no device code): a TrainingJob is one
// adapter being trained (its dataset, tensors, AdamW state, schedule and
// progress); a JobTrainer packs the rows of several jobs into each
// forward/backward on a LoraTrainingBackend and steps each job's optimizer.
//
// Determinism: a job's micro-batches depend only on its dataset, its config
// and its seed (an epoch's order is a seeded shuffle), its loss weight is
// 1 / (target tokens of its optimizer step), and the backend keeps each
// job's gradient to its own rows; so K jobs trained together give the
// adapters each gives alone, up to the base GEMMs' float rounding.
//
// Not thread-safe: one thread drives a JobTrainer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model_config.h"
#include "runtime/training/lora_training_backend.h"
#include "runtime/training/optimizer.h"
#include "runtime/training/training_data.h"

namespace myriad {

struct TrainingJobConfig {
  LoraTargets targets;
  AdamWConfig adamw;
  int64_t steps = 0;         // optimizer steps; 0: `epochs` passes over the data
  double epochs = 1.0;
  int64_t batch_tokens = 4096;  // tokens of one micro-batch (at least one example)
  int64_t grad_accum = 1;       // micro-batches per optimizer step
  int64_t warmup_steps = 0;     // < 0: 3% of the steps
  double min_lr_ratio = 0.0;    // cosine floor
  double max_grad_norm = 1.0;   // <= 0: no clipping
  uint64_t seed = 0;
};

struct TrainingStepRecord {
  int64_t step = 0;  // 1-based optimizer step
  double loss = 0;   // mean loss per target token of the step
  int64_t tokens = 0;  // tokens of its rows (prompt and targets)
  int64_t target_tokens = 0;
  double lr = 0;
  double grad_norm = 0;  // before clipping
};

class TrainingJob {
 public:
  // Errors: an empty dataset, a config out of range.
  static Result<std::unique_ptr<TrainingJob>> create(std::string name, const ModelConfig& base,
                                                     TrainingJobConfig config, std::vector<TrainingExample> train,
                                                     std::vector<TrainingExample> eval = {});

  const std::string& name() const { return name_; }
  const TrainingJobConfig& config() const { return config_; }
  int64_t total_steps() const { return total_steps_; }
  int64_t steps_done() const { return step_; }
  bool done() const { return step_ >= total_steps_; }
  const LoraParams<float>& params() const { return params_; }
  const std::vector<TrainingStepRecord>& history() const { return history_; }
  const std::vector<TrainingExample>& eval_examples() const { return eval_; }
  const std::vector<TrainingExample>& train_examples() const { return train_; }

  // The next micro-batch's rows (tagged `job_index`) and whether it ends an
  // optimizer step. Call only when !done() and after the previous
  // micro-batch was applied.
  std::vector<TrainingRow> next_micro_batch(int32_t job_index);
  // This micro-batch's tensors for the backend (grads accumulate across the
  // optimizer step's micro-batches).
  TrainingJobTensors<float> tensors();
  // After the backend ran the micro-batch: records its loss; on the step's
  // last micro-batch clips, updates and returns the step's record.
  std::optional<TrainingStepRecord> apply(const TrainingJobTensors<float>& ran);
  // apply() in pieces, for a serving loop's units: accumulate(ran) records
  // the micro-batch's loss and returns whether it ends an optimizer step;
  // then step_unit() until it returns the step's record: the clipping, then
  // AdamW over about kStepUnitParams parameters at a time. Same result.
  static constexpr int64_t kStepUnitParams = int64_t(1) << 19;
  bool accumulate(const TrainingJobTensors<float>& ran);
  std::optional<TrainingStepRecord> step_unit();

  // Everything a restarted process needs to go on exactly where this job is
  // (adapter, AdamW moments and step, data position, loss history), in one
  // safetensors file written atomically (temp, fsync, rename). Only between
  // optimizer steps.
  Status save_checkpoint(const std::string& path) const;
  // The same, copied now and written later (on another thread: the copy is
  // quick, the write and its fsync are not).
  class Snapshot {
   public:
    Status save(const std::string& path) const;
    // The checkpoint file's bytes (what a cluster's worker sends its gateway).
    Result<std::string> to_bytes() const;

   private:
    friend class TrainingJob;
    std::vector<TensorToWrite> tensors() const;  // views of the copies below
    LoraParams<float> params_, m_, v_;
    std::string state_;
  };
  Snapshot snapshot() const;
  // Restores a checkpoint of this same job: same base shape, config and data
  // (checked by a fingerprint; a mismatch or a damaged file is an error that
  // changes nothing). Returns false when `path` does not exist.
  Result<bool> load_checkpoint(const std::string& path);
  // The same from a checkpoint file's bytes (Snapshot::to_bytes).
  Status load_checkpoint_bytes(std::string_view bytes);
  // sha256 over the config and the dataset's tokens: what a checkpoint must match.
  const std::string& fingerprint() const { return fingerprint_; }

 private:
  TrainingJob(std::string name, TrainingJobConfig config, std::vector<TrainingExample> train,
              std::vector<TrainingExample> eval, LoraParams<float> params);
  // load_checkpoint's reading; errors name `where`.
  Status load_checkpoint_file(const SafetensorsFile& file, const std::string& where);
  // Example indices of micro-batch `n` (0-based, across epochs).
  std::vector<size_t> micro_batch(int64_t n);
  void plan_epoch(int64_t epoch);

  std::string name_;
  TrainingJobConfig config_;
  std::vector<TrainingExample> train_, eval_;
  LoraParams<float> params_, grads_;
  AdamW adamw_;
  LrSchedule schedule_;
  int64_t total_steps_ = 0;
  int64_t step_ = 0;         // optimizer steps done
  int64_t micro_ = 0;        // micro-batches done
  // The current optimizer step's micro-batches (example indices), planned
  // together so the loss weight covers all of them.
  std::vector<std::vector<size_t>> step_batches_;
  double step_weight_ = 0;
  double step_loss_sum_ = 0;
  int64_t step_loss_tokens_ = 0, step_tokens_ = 0;
  // The optimizer step in progress (step_unit): its record, and the first
  // module AdamW has not updated yet (-1: not clipped yet).
  TrainingStepRecord stepping_;
  int64_t step_module_ = -1;
  bool grads_zero_ = true;  // grads_ hold nothing since the last step (or ever)
  // Micro-batches in order: epoch e's shuffled examples packed to batch_tokens.
  std::vector<std::vector<size_t>> planned_;
  int64_t planned_epochs_ = 0;
  std::vector<TrainingStepRecord> history_;
  std::string fingerprint_;
};

// Trains several jobs together: each round takes every active job's next
// micro-batch and runs them as one forward/backward.
class JobTrainer {
 public:
  explicit JobTrainer(LoraTrainingBackend& backend) : backend_(backend) {}
  // Owned by the caller; must outlive its time here.
  void add(TrainingJob* job) { jobs_.push_back(job); }
  void remove(TrainingJob* job);
  bool idle() const;
  using Records = std::vector<std::pair<TrainingJob*, TrainingStepRecord>>;
  // One round; returns the records of jobs that finished an optimizer step.
  Result<Records> round();
  // The same round a unit at a time: begin_round() (false: no active job),
  // then advance_round() until it returns the records (a unit: one of the
  // backend's, or a piece of one job's optimizer step). No job may be added
  // or removed while a round is in flight.
  Result<bool> begin_round();
  std::optional<Records> advance_round();
  bool round_in_flight() const { return in_flight_; }
  // Mean loss per target token of `job`'s eval examples (forward only),
  // micro-batched to batch_tokens; NaN without eval examples.
  Result<double> evaluate(TrainingJob& job);
  // Mean loss of arbitrary examples under `params` (forward only).
  Result<double> loss(const LoraParams<float>& params, const std::vector<TrainingExample>& examples,
                      int64_t batch_tokens);
  // loss() a unit at a time, like a round, for a serving loop: begin_loss()
  // (`examples` not empty), then advance_loss() until it returns the mean
  // loss (the same number loss() gives) or the backend's error. params and
  // examples must stay valid meanwhile; no round may begin or be in flight.
  void begin_loss(const LoraParams<float>& params, const std::vector<TrainingExample>& examples,
                  int64_t batch_tokens);
  std::optional<Result<double>> advance_loss();
  bool loss_in_flight() const { return loss_.active; }

 private:
  LoraTrainingBackend& backend_;
  std::vector<TrainingJob*> jobs_;
  // The round in flight.
  bool in_flight_ = false;
  std::vector<TrainingJob*> active_;
  std::vector<TrainingRow> rows_;
  std::vector<TrainingJobTensors<float>> tensors_;
  // The loss pass in flight (begin_loss).
  struct LossPass {
    bool active = false;
    const LoraParams<float>* params = nullptr;
    const std::vector<TrainingExample>* examples = nullptr;
    std::vector<std::vector<size_t>> batches;
    size_t next = 0;          // the batch begun or to begin
    bool batch_begun = false;
    std::vector<TrainingRow> rows;
    TrainingJobTensors<float> tensors;
    double sum = 0;
    int64_t tokens = 0;
  };
  LossPass loss_;
  // After the backend's last unit: the jobs' optimizer steps, one piece per
  // advance_round(), from active_[applying_] on (-1: the backend's pass).
  int64_t applying_ = -1;
  bool stepping_ = false;  // active_[applying_] is between step_unit() calls
  Records records_;
};

// A job's config as JSON and back (a cluster's gateway ships jobs to its
// workers this way): every field, doubles to the last bit. kInvalidArgument
// naming a field that is missing or of the wrong type.
nlohmann::json training_job_config_json(const TrainingJobConfig& c);
Result<TrainingJobConfig> training_job_config_from_json(const nlohmann::json& j);

// Mean of the first / last n records' losses (train_loss_first / _last).
double mean_loss_first(const std::vector<TrainingStepRecord>& h, size_t n = 10);
double mean_loss_last(const std::vector<TrainingStepRecord>& h, size_t n = 10);

}  // namespace myriad
