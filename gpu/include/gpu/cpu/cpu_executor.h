// The Llama-family forward pass on the CPU (llama, mistral, qwen2): an
// Executor over a memory-mapped Checkpoint and a paged KV cache.
//
// One step() runs every row of the plan together (prefill chunks and
// decodes mixed): each weight matrix is read once for all tokens of all
// rows; attention reads each row's K/V through its block table. Logits are
// computed only for positions that need them (a sampled row's last token,
// LogitsRequest kLast/kAll); sampling happens here (sampler.h). All compute
// is float32; weights stay in the checkpoint's dtype and are converted on
// the fly; the KV cache holds K and V in the weights' dtype unless
// options.kv_dtype says otherwise (bf16 halves what attention reads).
//
// Not thread-safe (one engine thread drives it); it owns a ThreadPool sized
// to the machine (or options.threads). Adapters come through a CpuLoraHook
// (lora_hook.h): with num_adapter_slots > 0 the executor's CpuLoraSlots is
// installed as the hook; with none, adapter loads are kUnsupported.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "gpu/cpu/huge_page_buffer.h"
#include "gpu/cpu/kv_cache.h"
#include "gpu/cpu/lora_hook.h"
#include "gpu/cpu/lora_slots.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/paged_attention.h"
#include "gpu/cpu/sampler.h"
#include "gpu/cpu/thread_pool.h"
#include "gpu/llama_graph.h"
#include "runtime/checkpoint.h"
#include "runtime/executor.h"

namespace myriad::gpu::cpu {

// Where the executor reads the linear weights (q..down of every layer and
// lm_head) from. The checkpoint maps its files with 4 KiB pages; a copy in
// one anonymous huge-page buffer streams 3-10% faster (huge_page_buffer.h)
// at the cost of its size in RAM and a parallel copy at creation (~0.1 s/GB).
enum class WeightPlacement : uint8_t {
  kAuto,    // kCopy when the weights fit in half of MemAvailable, else kMapped
  kMapped,  // in place, in the checkpoint's mapping
  kCopy,    // copied; create() fails if the buffer cannot be mapped
};

struct CpuExecutorOptions {
  int32_t kv_num_blocks = 256;
  int32_t kv_block_size = 16;
  int threads = 0;  // 0 => the machine's hardware threads
  int32_t num_adapter_slots = 0;
  int32_t max_adapter_rank = 0;
  // Slot storage: kF32 (exact) or kBF16 (half the bytes to stream per row).
  // Unset: the model's precision, bf16 for a bf16 model (its own weights are
  // bf16 already), else f32 (adapter_slot_dtype).
  std::optional<DType> adapter_dtype;
  WeightPlacement weight_placement = WeightPlacement::kAuto;
  // Element type of the KV cache; unset: the linear weights' dtype (vLLM's
  // kv_cache_dtype "auto"). kF32 keeps K and V exact.
  std::optional<DType> kv_dtype;
};

// The slots' storage for these options over a model whose linear weights are `model_dtype`.
inline DType adapter_slot_dtype(const CpuExecutorOptions& o, DType model_dtype) {
  return o.adapter_dtype.value_or(model_dtype == DType::kBF16 ? DType::kBF16 : DType::kF32);
}

// The Llama graph (gpu/llama_graph.h) runs over its LlamaOps, privately:
// callers see an Executor.
class CpuExecutor final : public Executor, private LlamaOps {
 public:
  // Errors: options out of range, or a model shape this backend cannot run
  // (odd head_dim, heads not a multiple of kv heads).
  static Result<std::unique_ptr<CpuExecutor>> create(std::shared_ptr<const Checkpoint> ckpt,
                                                     const CpuExecutorOptions& options);

  const ExecutorInfo& info() const override { return info_; }
  // Validates the whole plan first (token ids, block tables covering every
  // position, block ids in range, history slices); an invalid plan changes
  // nothing and returns kInvalidArgument naming the row and field.
  // out.logits holds, in row order, kAll rows' every position and kLast rows'
  // last one; out.logits_rows has one entry per logits position: its row.
  Status step(const StepPlan& plan, StepResult& out) override;

  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) override;
  void unload_adapter(int32_t slot) override;
  // Whether the load into `slot` has finished (tests; the engine is told by LoadDone).
  bool adapter_ready(int32_t slot) const;

  // Installs the LoRA hook (not owned; must outlive its use; null removes it).
  void set_lora_hook(CpuLoraHook* hook) { lora_ = hook; }
  // The adapter slots (num_adapter_slots > 0; installed as the hook), else null.
  CpuLoraSlots* lora_slots() { return slots_.get(); }
  ThreadPool& pool() { return pool_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  const CpuExecutorOptions& options() const { return options_; }
  KvCache& kv_cache() { return kv_; }
  // Whether the linear weights were copied into huge pages (weight_placement).
  bool weights_copied() const { return weight_copy_.data() != nullptr; }

 private:
  CpuExecutor(std::shared_ptr<const Checkpoint> ckpt, const CpuExecutorOptions& options, HugePageBuffer weight_copy);
  // Bytes of the linear weights and lm_head, each rounded up to a cache line.
  static size_t linear_weight_bytes(const Checkpoint& ckpt);
  static DType kv_dtype_for(const Checkpoint& ckpt, const CpuExecutorOptions& options);
  // Copies them into weight_copy_ (in parallel) and points the views there.
  void copy_linear_weights();
  Status validate(const StepPlan& plan) const;
  void lora(int layer, LinearModule m, const float* x, float* y);
  void lora_group(int layer, std::span<const LinearModule> ms, const float* x, std::span<float* const> ys);
  // LlamaOps over this step's plan_ and T_ tokens (x_, h_, q_/k_/v_, attn_, o_, gate_/up_).
  Status embed() override;
  Status attn_norm(int layer) override;
  Status qkv(int layer) override;
  Status rope_and_cache(int layer) override;
  Status attention(int layer) override;
  Status out_proj(int layer) override;
  Status mlp_norm(int layer) override;
  Status gate_up(int layer) override;
  Status act(int layer) override;
  Status down(int layer) override;
  Status head() override;
  Status after_layers(int layers_done) override;
  int64_t token_grain() const;

  std::shared_ptr<const Checkpoint> ckpt_;
  CpuExecutorOptions options_;
  ExecutorInfo info_;
  ThreadPool pool_;
  KvCache kv_;
  CpuLoraHook* lora_ = nullptr;
  std::unique_ptr<CpuLoraSlots> slots_;  // after pool_: destroyed first

  struct Layer {
    std::vector<float> input_norm, post_attn_norm;  // [hidden]
    std::vector<float> q_bias, k_bias, v_bias, o_bias;  // empty when absent
    WeightView q, k, v, o, gate, up, down;
  };
  std::vector<Layer> layers_;
  HugePageBuffer weight_copy_;  // the linear weights when copied, else empty
  std::vector<float> final_norm_;
  WeightView embed_, lm_head_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
  int64_t window_ = 0;           // sliding window (0 = full causal)

  // Per-step scratch, reused across steps.
  const StepPlan* plan_ = nullptr;  // the step being run
  int64_t T_ = 0;                   // its new tokens
  std::vector<float> x_, h_, q_, k_, v_, attn_, o_, gate_, up_;  // [T, *]
  std::vector<float> cos_, sin_;  // [T, head_dim / 2]
  std::vector<int64_t> pos_;      // [T] position of each token
  std::vector<int32_t> row_of_;   // [T] row of each token
  std::vector<int32_t> tokens_;   // [T] token ids in step order
  std::vector<AttentionRow> attn_rows_;
  std::vector<AdapterMix> mix_;   // [T] when adapters are in use
  bool any_adapter_ = false;
  std::vector<RoutedRow> routed_;  // the step's routing rows' choices
  std::vector<float> route_embedding_;  // [hidden]
  std::vector<int64_t> logit_tokens_;  // tokens whose logits are computed
  std::vector<float> lh_, logits_;     // [P, hidden], [P, vocab]
  // Rows that sample are sampled in parallel, one Sampler (scratch) per worker.
  std::vector<Sampler> samplers_;  // [workers]
  struct SampleJob {
    uint32_t row;
    int64_t logits_pos;  // index into logits_ of the row's last position
  };
  std::vector<SampleJob> sample_jobs_;
  std::vector<Sampled> sampled_;
};

}  // namespace myriad::gpu::cpu
