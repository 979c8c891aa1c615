// The Llama-family forward pass (llama, mistral, qwen2) on one CUDA device:
// an Executor over a Checkpoint (or random weights made on the device, for
// benchmarks), with a paged KV cache and multi-LoRA adapter slots.
//
// Everything is allocated once in create(): weights (q|k|v and gate|up fused
// into one matrix each), the KV pool, adapter slots, per-step scratch sized by
// the options, pinned host staging. step() never allocates. Compute dtype is
// BF16 (serving; float32 accumulation) or F32 (TF32 off: the fixtures' goldens).
//
// Adapters: the slots are one device pool of whole-slot images
// (gpu/lora_slot_image.h). stage_adapter writes an adapter's image into
// pinned memory once, as it enters the host cache; begin_load_adapter then
// copies the image's span on a separate upload stream (an unstaged adapter
// is first written into one pinned staging buffer, and a second such load
// waits on the host for the previous copy), records an event, and queues a
// host callback on that stream which reports the load (LoadDone) once the
// copies have landed; adapter_ready(slot) is the event's completion.
//
// Decode steps (every row 1 token, LoRA by BGMV or none) may be replayed from
// CUDA graphs keyed by (tokens, sampled rows, logits rows, LoRA on/off) when
// options.cuda_graphs is set.
//
// Not thread-safe: one engine thread drives it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/dtype.h"
#include "runtime/executor.h"
#include "runtime/model_config.h"

namespace myriad::gpu::cuda {

struct CudaExecutorOptions {
  DType compute = DType::kBF16;      // kBF16 or kF32
  int32_t kv_num_blocks = 1024;
  int32_t kv_block_size = 16;
  int32_t max_tokens_per_step = 2048;  // scratch capacity (sum of rows' new tokens)
  int32_t max_rows = 256;
  int32_t max_logits_rows = 256;       // logits positions returned per step (kLast/kAll)
  int32_t max_history = 1 << 20;       // penalty history ids per step
  int32_t num_adapter_slots = 0;
  int32_t max_adapter_rank = 0;        // <= 128
  bool cuda_graphs = false;
  // Split-K attention (flash-decoding) for launches too small to fill the
  // device: 0 lets the kernel choose per launch shape, 1 never splits (the
  // benches' A/B), 2..16 forces that many shares on every launch, prefill
  // included (tests), whose workspace then grows with max_tokens_per_step
  // (tokens x heads x splits x (head_dim + 2) floats).
  int32_t attention_splits = 0;
  // Decode GEMMs (M <= 8 rows) as weight-streaming GEMV (small_gemm.h): 0
  // times it against cuBLAS at create() for each of the model's linear
  // shapes and M and keeps the faster, 1 never (cuBLAS only; the benches'
  // A/B), 2 always.
  int32_t small_gemm = 0;
};

class CudaExecutor final : public Executor {
 public:
  // Errors: no usable device (kUnsupported, with the CUDA reason), options
  // out of range, unsupported model shape, out of device memory.
  static Result<std::unique_ptr<CudaExecutor>> create(std::shared_ptr<const Checkpoint> ckpt,
                                                      const CudaExecutorOptions& options);
  // Random weights generated on the device (uniform, small), norms 1: for
  // benchmarks of models too large to write and read back.
  static Result<std::unique_ptr<CudaExecutor>> create_random(const ModelConfig& config,
                                                             const CudaExecutorOptions& options, uint64_t seed);
  ~CudaExecutor() override;

  const ExecutorInfo& info() const override;
  // Validates the plan first (as CpuExecutor); an invalid plan changes nothing.
  // out.logits: kAll rows' every position and kLast rows' last one, row
  // order; out.logits_rows: the row of each logits position.
  Status step(const StepPlan& plan, StepResult& out) override;
  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) override;
  void unload_adapter(int32_t slot) override;
  // The adapter's slot image (device dtype, padded to the slots' max rank) in
  // pinned memory, its float32 A and B dropped: a load of the result is one
  // copy with no conversion. Thread-safe (reads only the fixed slot layout).
  Result<std::shared_ptr<const LoraWeights>> stage_adapter(std::shared_ptr<const LoraWeights> weights) const override;
  // Whether the copies into `slot` have landed (tests, clone_adapter_slot).
  bool adapter_ready(int32_t slot);

  // Figures for benchmarks.
  size_t weight_bytes() const;            // base weights resident on the device
  size_t kv_bytes_per_token() const;      // K+V, all layers
  size_t adapter_bytes(int32_t slot) const;  // A and B bytes actually used by the slot's ranks
  int graphs_captured() const;
  int small_gemm_choices() const;  // (shape, M) pairs the create-time tuning gave to small_gemm
  // Benchmarks: makes `dst` (empty) a device-side copy of the ready slot
  // `src` (D2D on the upload stream; ready once uploads are waited for).
  Status clone_adapter_slot(int32_t src, int32_t dst);
  // Waits for the upload stream (tests and benches).
  Status wait_for_uploads();
  // Benchmarks: runs one step as step() does but never from a graph, with a
  // timing event after each operation (GEMM, LoRA, attention, ...), and
  // gives milliseconds per operation name summed over the layers, in the
  // order the names first ran. Each event costs a few microseconds of its
  // own, so the shares are what to read, not the total.
  Status profile_step(const StepPlan& plan, StepResult& out, std::vector<std::pair<std::string, double>>& ms_by_op);
  // LoRA out of line (default: the shrinks beside their base GEMMs on a
  // second stream, and in decode steps with one adapter level the expands as
  // epilogues of the kernels that read the GEMMs' outputs), or in line on
  // the compute stream (false): the benches' A/B. The same bits; steps under
  // either setting replay their own graphs.
  void set_lora_side_stream(bool on);

  struct Impl;

 private:
  explicit CudaExecutor(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace myriad::gpu::cuda
