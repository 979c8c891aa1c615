// CudaExecutor's insides, shared by its translation units (one job each):
//   cuda_executor.cu       create, validate, step: per-step metadata, LoRA segments, graph replay, results
//   cuda_weights.cu        base weights: device layout, checkpoint upload or random init
//   cuda_step_buffers.cu   the per-step scratch and the fixed metadata arena (pinned host + device)
//   cuda_forward.cu        the shared Llama graph's operations (LlamaOps) and LoRA application
//   cuda_adapter_slots.cu  adapter slots: staged uploads, load reports, clone, unload
//   cuda_graph_cache.cu    captured decode-step CUDA graphs
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "cuda_check.cuh"
#include "cuda_graph_cache.cuh"
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/gemm.h"
#include "gpu/cuda/lora.h"
#include "gpu/cuda/sampling.h"
#include "gpu/llama_graph.h"
#include "gpu/lora_slot_image.h"

namespace myriad::gpu::cuda {

inline constexpr int kLevels = kMaxAdaptersPerRow;  // mixture levels (BGMV and SGMV)

struct LayerDev {
  DeviceBuffer in_norm, post_norm;  // [H]
  DeviceBuffer qkv;                 // [Q + 2KV, H]
  DeviceBuffer qkv_bias;            // [Q + 2KV] or empty
  DeviceBuffer o;                   // [H, Q]
  DeviceBuffer o_bias;              // [H] or empty
  DeviceBuffer gate_up;             // [2I, H]
  DeviceBuffer down;                // [H, I]
};

// A typed array at a fixed offset of the pinned host / device metadata areas.
template <class T>
struct MetaArray {
  size_t offset = 0, capacity = 0;
  T* host = nullptr;
  T* dev = nullptr;
};

inline Result<DeviceBuffer> alloc_dev(size_t bytes, size_t& total) {
  total += bytes;
  return DeviceBuffer::alloc(bytes);
}

#define MYRIAD_ASSIGN(lhs, expr)           \
  do {                                     \
    auto myriad_r_ = (expr);               \
    if (!myriad_r_.ok()) return myriad_r_.error(); \
    lhs = std::move(myriad_r_.value());    \
  } while (0)

// lora_mode
inline constexpr int kNoLora = 0, kBgmv = 1, kSgmv = 2;

struct CudaExecutor::Impl final : LlamaOps {
  ModelConfig cfg;
  CudaExecutorOptions opt;
  ExecutorInfo info;
  DType dt = DType::kBF16;
  size_t esz = 2;
  std::shared_ptr<const Checkpoint> ckpt;
  int64_t H = 0, Q = 0, KV = 0, I = 0, V = 0, L = 0, D = 0, QKV = 0;

  Stream compute, upload;
  Blas blas;
  size_t weight_bytes = 0;
  std::vector<LayerDev> layers;
  DeviceBuffer embed_w, lm_head_own, final_norm, inv_freq;
  const void* lm_head = nullptr;
  std::vector<DeviceBuffer> k_cache, v_cache;

  // LoRA slots: one pool of whole-slot images (gpu/lora_slot_image.h), so a
  // load is one copy of the adapter's span.
  int32_t slots = 0, R = 0;
  LoraSlotLayout lora_layout;
  DeviceBuffer lora_pool;                  // [slots, lora_layout.slot_bytes]
  DeviceBuffer lora_ranks, lora_scales;    // [slots, L * 7]
  enum class SlotState : uint8_t { kEmpty, kLoading, kReady };
  std::vector<SlotState> slot_state;
  std::vector<Event> slot_event;
  std::vector<size_t> slot_bytes;
  // What a load in flight copies from, kept alive until the copy lands.
  std::vector<std::shared_ptr<const StagedAdapter>> slot_source;
  PinnedBuffer staging;  // image of an adapter that came unstaged
  Event staging_event;
  Event compute_mark;  // uploads wait for work queued on compute (e.g. an unload's rank reset)
  bool staging_used = false;
  // LoRA shrinks run on lora_side beside their group's base GEMM (both only
  // read the input), forked from and joined back into compute by events, so
  // graphs capture them as a parallel branch; set_lora_side_stream toggles.
  Stream lora_side;
  Event lora_fork, lora_join;
  bool lora_side_stream = true;
  bool lora_joined = true;  // no shrink is in flight on lora_side
  // In decode steps with one adapter level, unfused norms and the side stream
  // on (lora_as_epilogue()), a group's expand is no launch of its own: the
  // consumer of the GEMM's output (RoPE + KV write, SiLU-mul, the next
  // RMSNorm) joins the shrink and applies it as an epilogue (lora.h), so no
  // LoRA launch waits in line on the compute stream.
  LoraEpilogue pending_lora;
  bool lora_pending = false;  // pending_lora awaits its consumer

  // Scratch
  // res: the residual stream (o_proj and down accumulate into it); hbuf: its RMSNorm.
  DeviceBuffer res, hbuf, qkvbuf, attn, gate_up_buf, act_buf, lh, logits, sample_work, lora_v;
  DeviceBuffer sample_out;  // tokens [max_rows] i32, then logprobs [max_rows] f32
  DeviceBuffer sample_top;  // [max_rows, kMaxTopLogprobs] alternatives of the rows that ask
  DeviceBuffer attn_ws;     // split-K attention partials, sized for the largest split launch

  // Metadata
  PinnedBuffer meta_h;
  DeviceBuffer meta_d;
  MetaArray<int32_t> tokens, pos, tok_row, slot_map, row_block_off, block_ids, logit_idx, history;
  // BGMV (decode steps): level l is each token's l-th adapter (-1: none) and its mixture weight.
  MetaArray<int32_t> token_slot[kLevels];
  MetaArray<float> token_weight[kLevels];
  int bgmv_levels = 0;
  bool bgmv_weighted = false;  // a mixture in the step: the expands read token_weight
  MetaArray<SampleRow> sample_rows;
  MetaArray<LogitBias> logit_bias;  // the sampling rows' bias entries (SampleRow::bias_offset)
  MetaArray<int32_t> seg_slot[kLevels], seg_start[kLevels], entry_token[kLevels];
  MetaArray<float> entry_weight[kLevels];
  int32_t num_segments[kLevels] = {}, max_seg_len[kLevels] = {};
  int levels = 0;
  struct SgmvEntry {
    int32_t slot, token;
    float weight;
  };
  std::vector<SgmvEntry> sgmv_entries, sgmv_sorted;  // one level's entries, then grouped by slot
  std::vector<int32_t> sgmv_slot_next;                // the counting sort's next index per slot

  // Results
  PinnedBuffer out_h;  // tokens [Rmax] i32, logprobs [Rmax] f32, logits [max_logits_rows, V] f32
  PinnedBuffer top_h;  // [Rmax, kMaxTopLogprobs] alternatives

  GraphCache graphs;  // decode steps' captured graphs

  // profile_step's timing events: marks[i] closes the operation named
  // mark_names[i] (string literals); only a profiled step records them.
  bool profiling = false;
  std::vector<Event> marks;
  std::vector<const char*> mark_names;
  size_t marks_used = 0;
  // Records the end of operation `what` on the compute stream when profiling.
  Status mark(const char* what);

  // ---- setup ----
  Status init_common(const ModelConfig& c, const CudaExecutorOptions& o);
  Status alloc_weights();
  Status load_checkpoint();
  Status random_weights(uint64_t seed);
  Status upload_tensor(void* dst, const TensorView& t);
  Status alloc_runtime();
  // Chooses cuBLAS or small_gemm per decode GEMM shape (options.small_gemm).
  Status tune_gemms();
  int small_gemm_choices = 0;

  // ---- step ----
  Status validate(const StepPlan& plan) const;
  // The graph over this step's T tokens, P logits rows (S of them sampled).
  Status forward(int64_t T, int64_t P, int64_t S, int lora_mode);
  int64_t step_T = 0, step_P = 0;
  int step_mode = 0;
  Status embed() override;
  // Whether this step's GEMV of N outputs over the hidden state runs on
  // small_gemm, which then normalizes as it reads (small_gemm_rmsnorm): the
  // norm's own launch is skipped.
  bool norm_fused_into(int64_t N) const;
  Status normed_gemm(const void* norm_w, const void* w, void* y, int64_t N, const char* gemm_name,
                     const char* fused_name);
  // Whether gate|up's GEMV applies SiLU-mul as it stores (small_gemm_silu_mul):
  // its GEMV is small_gemm's and no LoRA is added to gate or up before the
  // activation. act() is then skipped.
  bool act_fused_into_gate_up() const;
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
  // LoRA of `count` consecutive modules from `first` that read x and write
  // adjacent column ranges of y (q|k|v, gate|up): one shrink and one expand
  // launch a level. lora_shrink (every level's v rows) goes before the base
  // GEMM when x is ready then, on lora_side unless profiling; lora_expand
  // after the GEMM joins it back first.
  LoraGroupSlots lora_group_slots(int layer, LinearModule first, int count) const;
  SgmvBatch sgmv_batch(int level) const;
  float* lora_v_level(int level) const;
  Status lora_shrink(int layer, LinearModule first, int count, const void* x, int64_t ldx, bool beside_gemm);
  Status lora_expand(int layer, LinearModule first, int count, void* y, int64_t ldy);
  bool lora_as_epilogue() const;
  // The pending epilogue (its shrink joined into compute first), or nullptr.
  Status take_lora_epilogue(const LoraEpilogue*& lora);
  // rmsnorm of res into hbuf, applying a pending epilogue to res first.
  Status norm_res(const void* norm_w);
  template <class T>
  Status upload_meta(const MetaArray<T>& a, size_t n) {
    return copy_h2d(a.dev, a.host, n * sizeof(T), compute.get());
  }
};

}  // namespace myriad::gpu::cuda
