// Converters between the runtime's training types and the messages of
// fine-tuning jobs on a cluster (schema/messages.capnp: TrainJob,
// TrainProgress, TrainVersion). Reading never throws (the wires are decoded
// and checked first); a field out of range is kInvalidArgument naming it.
#pragma once

#include <cstdint>
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

TrainProgressWire train_progress_wire(const std::string& job, const TrainingStepRecord& rec);
Result<std::pair<std::string, TrainingStepRecord>> read_train_progress(const TrainProgressWire& wire);

struct TrainVersionMsg {
  std::string job;
  uint64_t version = 0;
  double eval_loss = 0;
  std::string checkpoint;
};
TrainVersionWire train_version_wire(const std::string& job, uint64_t version, double eval_loss,
                                    std::string_view checkpoint);
Result<TrainVersionMsg> read_train_version(const TrainVersionWire& wire);

}  // namespace myriad::actors
