#include "gpu/executor_factory.h"

#include "gpu/cpu/cpu_executor.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/cuda_executor.h"
#endif

namespace myriad::gpu {

namespace {

Status check_device(const ExecutorSpec& s) {
  if (s.device != "cpu" && s.device != "cuda")
    return make_error(ErrorCode::kInvalidArgument, "--device " + s.device + ": expected cpu or cuda");
#ifndef MYRIAD_HAVE_CUDA
  if (s.device == "cuda")
    return make_error(ErrorCode::kUnsupported, "--device cuda: this build has no CUDA (no toolkit at build time)");
#endif
  return ok_status();
}

#ifdef MYRIAD_HAVE_CUDA
cuda::CudaExecutorOptions cuda_options(const ExecutorSpec& s) {
  cuda::CudaExecutorOptions o;
  o.kv_block_size = s.kv_block_size;
  o.kv_num_blocks = s.kv_num_blocks;
  o.num_adapter_slots = s.num_adapter_slots;
  o.max_adapter_rank = s.max_adapter_rank;
  o.max_tokens_per_step = s.max_tokens_per_step;
  o.max_rows = s.max_rows;
  o.cuda_graphs = true;
  return o;
}
#endif

template <class E>
Result<std::unique_ptr<Executor>> as_executor(Result<std::unique_ptr<E>> made) {
  if (!made.ok()) return made.error();
  return std::unique_ptr<Executor>(std::move(made.value()));
}

}  // namespace

ExecutorSpec executor_spec_for(const SchedulerConfig& sc) {
  ExecutorSpec spec;
  spec.kv_block_size = sc.kv_block_size;
  spec.kv_num_blocks = sc.num_kv_blocks;
  spec.num_adapter_slots = sc.num_slots;
  spec.max_tokens_per_step = sc.max_tokens_per_step;
  spec.max_rows = sc.max_running_seqs;
  return spec;
}

Result<std::unique_ptr<Executor>> make_executor(const ExecutorSpec& spec, std::shared_ptr<const Checkpoint> checkpoint) {
  MYRIAD_TRY(check_device(spec));
#ifdef MYRIAD_HAVE_CUDA
  if (spec.device == "cuda") return as_executor(cuda::CudaExecutor::create(std::move(checkpoint), cuda_options(spec)));
#endif
  cpu::CpuExecutorOptions o;
  o.kv_block_size = spec.kv_block_size;
  o.kv_num_blocks = spec.kv_num_blocks;
  o.threads = spec.threads;
  o.num_adapter_slots = spec.num_adapter_slots;
  o.max_adapter_rank = spec.max_adapter_rank;
  return as_executor(cpu::CpuExecutor::create(std::move(checkpoint), o));
}

Result<std::unique_ptr<Executor>> make_random_executor(const ExecutorSpec& spec, const ModelConfig& config,
                                                       uint64_t seed) {
  MYRIAD_TRY(check_device(spec));
  if (spec.device == "cpu")
    return make_error(ErrorCode::kInvalidArgument,
                      "random weights need --device cuda: the CPU executor reads a checkpoint "
                      "(myriad make-model makes one)");
#ifdef MYRIAD_HAVE_CUDA
  return as_executor(cuda::CudaExecutor::create_random(config, cuda_options(spec), seed));
#else
  (void)config;
  (void)seed;
  return make_error(ErrorCode::kInternal, "unreachable: check_device refused cuda");
#endif
}

}  // namespace myriad::gpu
