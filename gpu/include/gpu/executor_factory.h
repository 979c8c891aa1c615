// An Executor for a device named by the user ("cpu" or "cuda"), made the
// one way a node, the serving bench and the simulator's calibration all make
// it: the CPU executor, or the CUDA one with CUDA graphs on where the build
// has CUDA.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "runtime/checkpoint.h"
#include "runtime/executor.h"
#include "runtime/model_config.h"
#include "runtime/result.h"
#include "runtime/scheduler_config.h"

namespace myriad::gpu {

struct ExecutorSpec {
  std::string device = "cpu";          // cpu | cuda
  int32_t kv_block_size = 16;
  int32_t kv_num_blocks = 1024;
  int32_t num_adapter_slots = 0;
  int32_t max_adapter_rank = 0;
  int threads = 0;                     // cpu: 0 = the machine's hardware threads
  int32_t max_tokens_per_step = 2048;  // cuda: scratch for one step's new tokens
  int32_t max_rows = 256;              // cuda: rows of one step
};

// The capacities an engine configured by `sc` plans against: its KV pool,
// adapter slots, and a step's tokens and rows. Device, threads and
// max_adapter_rank stay the defaults for the caller to set.
ExecutorSpec executor_spec_for(const SchedulerConfig& sc);

// Over a checkpoint's weights. kInvalidArgument for a device other than cpu
// and cuda (named as the flag `--device`), kUnsupported for cuda in a build
// without it, or the executor's own error.
Result<std::unique_ptr<Executor>> make_executor(const ExecutorSpec& spec, std::shared_ptr<const Checkpoint> checkpoint);

// Random weights of `config` made on the device, for shapes too large to
// write and read back: cuda only (the CPU executor reads a checkpoint).
Result<std::unique_ptr<Executor>> make_random_executor(const ExecutorSpec& spec, const ModelConfig& config,
                                                       uint64_t seed);

}  // namespace myriad::gpu
