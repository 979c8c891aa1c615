// Converters between the runtime's training types and the messages of
// fine-tuning jobs and training runs on a cluster (schema/messages.capnp:
// TrainJob, TrainProgress, TrainVersion, RunCall, RunAnswer). Reading never throws (the wires are decoded
// and checked first); a field out of range is kInvalidArgument naming it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "actors/messages.h"
#include "runtime/result.h"
#include "runtime/training/training_job.h"

namespace myriad::actors {

struct TrainJobSpec {
  std::string job;
  TrainingJobConfig config;
  std::vector<TrainingExample> train, eval;
  std::string checkpoint;  // safetensors bytes; empty: from the start
  int64_t publish_every = 1;
};

// `job`'s config and examples, with `checkpoint` (its bytes, or empty).
TrainJobWire train_job_wire(const TrainingJob& job, std::string_view checkpoint, int64_t publish_every);
Result<TrainJobSpec> read_train_job(const TrainJobWire& wire);

// Reports name the worker that sends them (`worker`).
struct TrainProgressMsg {
  std::string job, worker;
  TrainingStepRecord record;
};
TrainProgressWire train_progress_wire(const std::string& job, const std::string& worker, const TrainingStepRecord& rec);
Result<TrainProgressMsg> read_train_progress(const TrainProgressWire& wire);

struct TrainVersionMsg {
  std::string job, worker;
  uint64_t version = 0;
  double eval_loss = 0;
  std::string checkpoint;
};
TrainVersionWire train_version_wire(const std::string& job, const std::string& worker, uint64_t version,
                                    double eval_loss, std::string_view checkpoint);
Result<TrainVersionMsg> read_train_version(const TrainVersionWire& wire);

// A training run's call (the gateway's) and its answer (the trainer's).
enum class RunOp { kOpen, kForwardBackward, kOptimStep, kSnapshot, kState, kClose };

struct RunCallMsg {
  std::string run;
  uint64_t call = 0;
  RunOp op = RunOp::kClose;
  std::string options_json, state;  // kOpen: the options; a saved state's safetensors bytes (empty: fresh)
  int64_t steps = 0;                // kOpen: the saved state's optimizer steps
  std::vector<TrainingExample> batch;            // kForwardBackward
  double learning_rate = 0, max_grad_norm = 0;  // kOptimStep
};
RunCallWire run_call_wire(const RunCallMsg& msg);
Result<RunCallMsg> read_run_call(const RunCallWire& wire);

struct RunAnswerMsg {
  enum class Kind { kNone, kForwardBackward, kOptimStep, kTensors };
  std::string run;
  uint64_t call = 0;
  std::optional<Error> error;  // the call failed (kind is kNone then)
  Kind kind = Kind::kNone;
  double loss = 0;  // kForwardBackward
  int64_t tokens = 0, target_tokens = 0;
  int64_t step = 0;  // kOptimStep
  double grad_norm = 0;
  int64_t accumulated = 0;
  std::string safetensors;  // kTensors: a snapshot's or a state's tensors
  int64_t steps = 0;        // kTensors: the run's optimizer steps then
};
RunAnswerWire run_answer_wire(const RunAnswerMsg& msg);
Result<RunAnswerMsg> read_run_answer(const RunAnswerWire& wire);

}  // namespace myriad::actors
