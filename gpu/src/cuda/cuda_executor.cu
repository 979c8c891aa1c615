// CudaExecutor: see the header. One step runs, on the compute stream:
//   embedding -> per layer [rmsnorm (fused residual add) -> qkv GEMM (+bias)
//   (+LoRA q,k,v) -> RoPE -> KV write -> paged attention -> o GEMM (+LoRA)
//   -> rmsnorm (fused residual add) -> gate|up GEMM (+LoRA) -> SiLU-mul ->
//   down GEMM (+LoRA)] -> final rmsnorm -> gather logits positions -> lm_head
//   GEMM (float32 out) -> sampling.
// Per-step metadata is written into fixed-capacity pinned host arrays and
// copied to fixed device arrays, so device pointers never change (CUDA graphs
// replay them).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include "cuda_check.cuh"
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/gemm.h"
#include "gpu/cuda/lora.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/rope.h"
#include "gpu/cuda/sampling.h"
#include "gpu/llama_graph.h"
#include "runtime/plan_validation.h"

namespace myriad::gpu::cuda {
namespace {

constexpr int kLevels = kMaxAdaptersPerRow;  // SGMV mixture levels

struct LayerDev {
  DeviceBuffer in_norm, post_norm;  // [H]
  DeviceBuffer qkv;                 // [Q + 2KV, H]
  DeviceBuffer qkv_bias;            // [Q + 2KV] or empty
  DeviceBuffer o;                   // [H, Q]
  DeviceBuffer o_bias;              // [H] or empty
  DeviceBuffer gate_up;             // [2I, H]
  DeviceBuffer down;                // [H, I]
};

struct LoraDev {  // one (layer, module), all slots
  DeviceBuffer a, b;  // [slots, R, in], [slots, out, R]
  int64_t in = 0, out = 0;
};

// A typed array at a fixed offset of the pinned host / device metadata areas.
template <class T>
struct MetaArray {
  size_t offset = 0, capacity = 0;
  T* host = nullptr;
  T* dev = nullptr;
};

Result<DeviceBuffer> alloc_dev(size_t bytes, size_t& total) {
  total += bytes;
  return DeviceBuffer::alloc(bytes);
}

#define MYRIAD_ASSIGN(lhs, expr)           \
  do {                                     \
    auto myriad_r_ = (expr);               \
    if (!myriad_r_.ok()) return myriad_r_.error(); \
    lhs = std::move(myriad_r_.value());    \
  } while (0)

}  // namespace

// Runs the shared Llama graph (gpu/llama_graph.h) over its LlamaOps.
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

  // LoRA slots
  int32_t slots = 0, R = 0;
  std::vector<LoraDev> lora;               // [L * 7]
  DeviceBuffer lora_ranks, lora_scales;    // [slots, L * 7]
  enum class SlotState : uint8_t { kEmpty, kLoading, kReady };
  std::vector<SlotState> slot_state;
  std::vector<Event> slot_event;
  std::vector<size_t> slot_bytes;
  PinnedBuffer staging;
  Event staging_event;
  Event compute_mark;  // uploads wait for work queued on compute (e.g. an unload's rank reset)
  bool staging_used = false;

  // Scratch
  DeviceBuffer res, hbuf, proj, qkvbuf, attn, gate_up_buf, act_buf, lh, logits, sample_work, lora_v;
  DeviceBuffer sample_out;  // tokens [max_rows] i32, then logprobs [max_rows] f32

  // Metadata
  PinnedBuffer meta_h;
  DeviceBuffer meta_d;
  MetaArray<int32_t> tokens, pos, tok_row, slot_map, row_block_off, block_ids, logit_idx, history, token_slot;
  MetaArray<SampleRow> sample_rows;
  MetaArray<int32_t> seg_slot[kLevels], seg_start[kLevels], entry_token[kLevels];
  MetaArray<float> entry_weight[kLevels];
  int32_t num_segments[kLevels] = {}, max_seg_len[kLevels] = {};
  int levels = 0;

  // Results
  PinnedBuffer out_h;  // tokens [Rmax] i32, logprobs [Rmax] f32, logits [max_logits_rows, V] f32

  // Graphs keyed by (tokens, sampled rows, logits rows, lora on)
  std::map<std::tuple<int64_t, int64_t, int64_t, bool>, cudaGraphExec_t> graphs;

  ~Impl() {
    for (auto& [k, g] : graphs) (void)cudaGraphExecDestroy(g);
  }

  // ---- setup ----
  Status init_common(const ModelConfig& c, const CudaExecutorOptions& o);
  Status alloc_weights();
  Status load_checkpoint();
  Status random_weights(uint64_t seed);
  Status upload_tensor(void* dst, const TensorView& t);
  Status alloc_runtime();

  // ---- step ----
  Status validate(const StepPlan& plan) const;
  // The graph over this step's T tokens, P logits rows (S of them sampled).
  Status forward(int64_t T, int64_t P, int64_t S, int lora_mode);
  int64_t step_T = 0, step_P = 0;
  int step_mode = 0;
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
  Status apply_lora(int layer, LinearModule m, const void* x, int64_t ldx, void* y, int64_t ldy, int64_t T,
                    int lora_mode);
  template <class T>
  Status upload_meta(const MetaArray<T>& a, size_t n) {
    return copy_h2d(a.dev, a.host, n * sizeof(T), compute.get());
  }
};

namespace {
// lora_mode
constexpr int kNoLora = 0, kBgmv = 1, kSgmv = 2;
}  // namespace

Status CudaExecutor::Impl::init_common(const ModelConfig& c, const CudaExecutorOptions& o) {
  if (auto why = device_unavailable_reason()) return make_error(ErrorCode::kUnsupported, "CudaExecutor: " + *why);
  if (o.compute != DType::kBF16 && o.compute != DType::kF32)
    return make_error(ErrorCode::kUnsupported,
                      std::string("CudaExecutor: compute dtype ") + dtype_name(o.compute) + " (BF16 or F32)");
  if (o.kv_num_blocks <= 0 || o.kv_block_size <= 0 || o.max_tokens_per_step <= 0 || o.max_rows <= 0 ||
      o.max_logits_rows < 0 || o.max_history < 0 || o.num_adapter_slots < 0 || o.max_adapter_rank < 0 ||
      o.max_adapter_rank > kMaxLoraRank || (o.num_adapter_slots > 0 && o.max_adapter_rank == 0))
    return make_error(ErrorCode::kInvalidArgument, "CudaExecutor: options out of range (kv_num_blocks " +
                                                       std::to_string(o.kv_num_blocks) + ", max_adapter_rank " +
                                                       std::to_string(o.max_adapter_rank) + ")");
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 256)
    return make_error(ErrorCode::kUnsupported, "CudaExecutor: head_dim " + std::to_string(c.head_dim));
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    return make_error(ErrorCode::kUnsupported, "CudaExecutor: heads " + std::to_string(c.num_heads) +
                                                   " not a multiple of kv heads " + std::to_string(c.num_kv_heads));
  if (c.use_sliding_window && c.sliding_window)
    return make_error(ErrorCode::kUnsupported, "CudaExecutor: sliding-window attention is not implemented");
  cfg = c;
  opt = o;
  dt = o.compute;
  esz = dtype_size(dt);
  H = c.hidden_size;
  Q = c.q_dim();
  KV = c.kv_dim();
  I = c.intermediate_size;
  V = c.vocab_size;
  L = c.num_layers;
  D = c.head_dim;
  QKV = Q + 2 * KV;
  slots = o.num_adapter_slots;
  R = o.max_adapter_rank;
  MYRIAD_ASSIGN(compute, Stream::create());
  MYRIAD_ASSIGN(upload, Stream::create());
  MYRIAD_ASSIGN(blas, Blas::create(compute.get()));
  auto props = device_props();
  if (!props) return props.error();
  info.device = props->name + " (sm_" + std::to_string(props->sm_major) + std::to_string(props->sm_minor) + ", " +
                dtype_name(dt) + ")";
  info.vocab_size = int32_t(V);
  info.kv_block_size = o.kv_block_size;
  info.kv_num_blocks = o.kv_num_blocks;
  info.num_adapter_slots = o.num_adapter_slots;
  info.max_adapter_rank = o.max_adapter_rank;
  info.max_tokens_per_step = o.max_tokens_per_step;
  info.max_rows = o.max_rows;
  info.max_logits_rows = o.max_logits_rows;
  return ok_status();
}

Status CudaExecutor::Impl::alloc_weights() {
  size_t& t = weight_bytes;
  layers.resize(size_t(L));
  const bool qkv_bias = cfg.attention_bias || cfg.arch == ModelArch::kQwen2;
  for (auto& l : layers) {
    MYRIAD_ASSIGN(l.in_norm, alloc_dev(size_t(H) * esz, t));
    MYRIAD_ASSIGN(l.post_norm, alloc_dev(size_t(H) * esz, t));
    MYRIAD_ASSIGN(l.qkv, alloc_dev(size_t(QKV) * H * esz, t));
    if (qkv_bias) MYRIAD_ASSIGN(l.qkv_bias, alloc_dev(size_t(QKV) * esz, t));
    MYRIAD_ASSIGN(l.o, alloc_dev(size_t(H) * Q * esz, t));
    if (cfg.o_proj_bias) MYRIAD_ASSIGN(l.o_bias, alloc_dev(size_t(H) * esz, t));
    MYRIAD_ASSIGN(l.gate_up, alloc_dev(size_t(2 * I) * H * esz, t));
    MYRIAD_ASSIGN(l.down, alloc_dev(size_t(H) * I * esz, t));
  }
  MYRIAD_ASSIGN(embed_w, alloc_dev(size_t(V) * H * esz, t));
  MYRIAD_ASSIGN(final_norm, alloc_dev(size_t(H) * esz, t));
  if (cfg.tie_word_embeddings) {
    lm_head = embed_w.data();
  } else {
    MYRIAD_ASSIGN(lm_head_own, alloc_dev(size_t(V) * H * esz, t));
    lm_head = lm_head_own.data();
  }
  const auto inv = rope_inv_freq(cfg);
  size_t ignore = 0;
  MYRIAD_ASSIGN(inv_freq, alloc_dev(inv.size() * sizeof(float), ignore));
  MYRIAD_TRY(copy_h2d(inv_freq.data(), inv.data(), inv.size() * sizeof(float), compute.get()));
  return sync_stream(compute.get());
}

// Converts a checkpoint tensor to the compute dtype on the host and copies it.
Status CudaExecutor::Impl::upload_tensor(void* dst, const TensorView& t) {
  const size_t n = size_t(t.numel());
  std::vector<uint8_t> buf(n * esz);
  if (t.dtype == dt) {
    std::memcpy(buf.data(), t.data, buf.size());
  } else if (dt == DType::kF32) {
    for (size_t i = 0; i < n; ++i) {
      const float f = t.at(i);
      std::memcpy(&buf[4 * i], &f, 4);
    }
  } else {
    for (size_t i = 0; i < n; ++i) {
      const uint16_t h = f32_to_bf16(t.at(i));
      std::memcpy(&buf[2 * i], &h, 2);
    }
  }
  MYRIAD_TRY(copy_h2d(dst, buf.data(), buf.size(), upload.get()));
  return sync_stream(upload.get());  // buf dies here
}

Status CudaExecutor::Impl::load_checkpoint() {
  auto at = [&](const DeviceBuffer& b, int64_t elems) { return static_cast<char*>(b.data()) + size_t(elems) * esz; };
  for (int64_t li = 0; li < L; ++li) {
    const LayerWeights& w = ckpt->layers()[size_t(li)];
    LayerDev& d = layers[size_t(li)];
    MYRIAD_TRY(upload_tensor(d.in_norm.data(), w.input_norm));
    MYRIAD_TRY(upload_tensor(d.post_norm.data(), w.post_attn_norm));
    MYRIAD_TRY(upload_tensor(at(d.qkv, 0), w.q));
    MYRIAD_TRY(upload_tensor(at(d.qkv, Q * H), w.k));
    MYRIAD_TRY(upload_tensor(at(d.qkv, (Q + KV) * H), w.v));
    if (d.qkv_bias.data()) {
      if (!w.q_bias.data || !w.k_bias.data || !w.v_bias.data)
        return make_error(ErrorCode::kBadFile, ckpt->dir() + ": layer " + std::to_string(li) + " lacks q/k/v biases");
      MYRIAD_TRY(upload_tensor(at(d.qkv_bias, 0), w.q_bias));
      MYRIAD_TRY(upload_tensor(at(d.qkv_bias, Q), w.k_bias));
      MYRIAD_TRY(upload_tensor(at(d.qkv_bias, Q + KV), w.v_bias));
    }
    MYRIAD_TRY(upload_tensor(d.o.data(), w.o));
    if (d.o_bias.data()) MYRIAD_TRY(upload_tensor(d.o_bias.data(), w.o_bias));
    MYRIAD_TRY(upload_tensor(at(d.gate_up, 0), w.gate));
    MYRIAD_TRY(upload_tensor(at(d.gate_up, I * H), w.up));
    MYRIAD_TRY(upload_tensor(d.down.data(), w.down));
  }
  MYRIAD_TRY(upload_tensor(embed_w.data(), ckpt->embed_tokens()));
  MYRIAD_TRY(upload_tensor(final_norm.data(), ckpt->final_norm()));
  if (lm_head_own.data()) MYRIAD_TRY(upload_tensor(lm_head_own.data(), ckpt->lm_head()));
  return ok_status();
}

Status CudaExecutor::Impl::random_weights(uint64_t seed) {
  const float scale = 0.02f * 1.7320508f;  // uniform(-a, a) with std 0.02
  std::vector<float> ones(size_t(std::max(H, QKV)), 1.0f);
  size_t ignore = 0;
  DeviceBuffer ones_d;
  MYRIAD_ASSIGN(ones_d, alloc_dev(ones.size() * sizeof(float), ignore));
  MYRIAD_TRY(copy_h2d(ones_d.data(), ones.data(), ones.size() * sizeof(float), compute.get()));
  auto fill = [&](DeviceBuffer& b, int64_t n) { return fill_random(dt, b.data(), n, scale, seed++, compute.get()); };
  auto one = [&](DeviceBuffer& b, int64_t n) { return convert_from_f32(dt, b.data(), ones_d.as<float>(), n, compute.get()); };
  for (auto& d : layers) {
    MYRIAD_TRY(one(d.in_norm, H));
    MYRIAD_TRY(one(d.post_norm, H));
    MYRIAD_TRY(fill(d.qkv, QKV * H));
    if (d.qkv_bias.data()) MYRIAD_TRY(fill(d.qkv_bias, QKV));
    MYRIAD_TRY(fill(d.o, H * Q));
    if (d.o_bias.data()) MYRIAD_TRY(fill(d.o_bias, H));
    MYRIAD_TRY(fill(d.gate_up, 2 * I * H));
    MYRIAD_TRY(fill(d.down, H * I));
  }
  MYRIAD_TRY(fill(embed_w, V * H));
  MYRIAD_TRY(one(final_norm, H));
  if (lm_head_own.data()) MYRIAD_TRY(fill(lm_head_own, V * H));
  return sync_stream(compute.get());
}

Status CudaExecutor::Impl::alloc_runtime() {
  size_t ignore = 0;
  const size_t kv_layer = size_t(opt.kv_num_blocks) * opt.kv_block_size * size_t(KV) * esz;
  for (int64_t li = 0; li < L; ++li) {
    DeviceBuffer k, v;
    MYRIAD_ASSIGN(k, alloc_dev(kv_layer, ignore));
    MYRIAD_ASSIGN(v, alloc_dev(kv_layer, ignore));
    k_cache.push_back(std::move(k));
    v_cache.push_back(std::move(v));
  }
  const size_t T = size_t(opt.max_tokens_per_step);
  const size_t P = size_t(opt.max_rows) + size_t(opt.max_logits_rows);
  MYRIAD_ASSIGN(res, alloc_dev(T * H * esz, ignore));
  MYRIAD_ASSIGN(hbuf, alloc_dev(T * H * esz, ignore));
  MYRIAD_ASSIGN(proj, alloc_dev(T * H * esz, ignore));
  MYRIAD_ASSIGN(qkvbuf, alloc_dev(T * QKV * esz, ignore));
  MYRIAD_ASSIGN(attn, alloc_dev(T * Q * esz, ignore));
  MYRIAD_ASSIGN(gate_up_buf, alloc_dev(T * 2 * I * esz, ignore));
  MYRIAD_ASSIGN(act_buf, alloc_dev(T * I * esz, ignore));
  MYRIAD_ASSIGN(lh, alloc_dev(P * H * esz, ignore));
  MYRIAD_ASSIGN(logits, alloc_dev(P * V * sizeof(float), ignore));
  MYRIAD_ASSIGN(sample_work, alloc_dev(size_t(opt.max_rows) * V * sizeof(float), ignore));
  MYRIAD_ASSIGN(sample_out, alloc_dev(size_t(opt.max_rows) * 8, ignore));

  // LoRA slots.
  if (slots > 0) {
    lora.resize(size_t(L) * kNumLinearModules);
    size_t stage = 0;
    for (int64_t li = 0; li < L; ++li)
      for (int m = 0; m < kNumLinearModules; ++m) {
        auto [out, in] = linear_module_shape(cfg, LinearModule(m));
        LoraDev& d = lora[size_t(li) * kNumLinearModules + m];
        d.in = in;
        d.out = out;
        MYRIAD_ASSIGN(d.a, alloc_dev(size_t(slots) * R * in * esz, ignore));
        MYRIAD_ASSIGN(d.b, alloc_dev(size_t(slots) * out * R * esz, ignore));
        stage += size_t(R) * (in + out) * esz;
      }
    const size_t L7 = size_t(L) * kNumLinearModules;
    MYRIAD_ASSIGN(lora_ranks, alloc_dev(size_t(slots) * L7 * sizeof(int32_t), ignore));
    MYRIAD_ASSIGN(lora_scales, alloc_dev(size_t(slots) * L7 * sizeof(float), ignore));
    MYRIAD_TRY(fill_bytes(lora_ranks.data(), 0, lora_ranks.bytes(), compute.get()));
    MYRIAD_TRY(fill_bytes(lora_scales.data(), 0, lora_scales.bytes(), compute.get()));
    MYRIAD_ASSIGN(staging, PinnedBuffer::alloc(stage + 16 + L7 * (sizeof(int32_t) + sizeof(float))));  // 16: alignment of the rank table
    MYRIAD_ASSIGN(staging_event, Event::create());
    MYRIAD_ASSIGN(compute_mark, Event::create());
    slot_state.assign(size_t(slots), SlotState::kEmpty);
    slot_bytes.assign(size_t(slots), 0);
    for (int32_t s = 0; s < slots; ++s) {
      Event e;
      MYRIAD_ASSIGN(e, Event::create());
      slot_event.push_back(std::move(e));
    }
    MYRIAD_ASSIGN(lora_v, alloc_dev(T * R * sizeof(float), ignore));
  }

  // Metadata layout (fixed offsets, 16-byte aligned).
  size_t off = 0;
  auto place = [&](auto& a, size_t cap) {
    a.offset = off;
    a.capacity = cap;
    off += (cap * sizeof(*a.host) + 15) / 16 * 16;
  };
  const size_t rows = size_t(opt.max_rows);
  const size_t blocks = size_t(opt.kv_num_blocks) + rows;  // each row's table, plus sharing slack
  place(tokens, T);
  place(pos, T);
  place(tok_row, T);
  place(slot_map, T);
  place(row_block_off, rows);
  place(block_ids, std::max(blocks, 2 * size_t(opt.kv_num_blocks)));
  place(logit_idx, P);
  place(sample_rows, rows);
  place(token_slot, T);
  for (int l = 0; l < kLevels; ++l) {
    place(seg_slot[l], T);
    place(seg_start[l], T + 1);
    place(entry_token[l], T);
    place(entry_weight[l], T);
  }
  place(history, std::max<size_t>(1, size_t(opt.max_history)));
  MYRIAD_ASSIGN(meta_h, PinnedBuffer::alloc(off));
  MYRIAD_ASSIGN(meta_d, alloc_dev(off, ignore));
  auto bind = [&](auto& a) {
    using E = std::remove_pointer_t<decltype(a.host)>;
    a.host = reinterpret_cast<E*>(static_cast<char*>(meta_h.data()) + a.offset);
    a.dev = reinterpret_cast<E*>(static_cast<char*>(meta_d.data()) + a.offset);
  };
  bind(tokens), bind(pos), bind(tok_row), bind(slot_map), bind(row_block_off), bind(block_ids), bind(logit_idx);
  bind(sample_rows), bind(token_slot), bind(history);
  for (int l = 0; l < kLevels; ++l) bind(seg_slot[l]), bind(seg_start[l]), bind(entry_token[l]), bind(entry_weight[l]);
  MYRIAD_ASSIGN(out_h, PinnedBuffer::alloc(rows * 8 + size_t(opt.max_logits_rows) * V * sizeof(float) + 16));
  return sync_stream(compute.get());
}

// ---------------------------------------------------------------------------

Status CudaExecutor::Impl::validate(const StepPlan& plan) const {
  MYRIAD_TRY(validate_plan(plan, info, [this](int32_t s) { return slot_state[size_t(s)] == SlotState::kReady; }));
  if (plan.block_ids.size() > block_ids.capacity || plan.history.size() > history.capacity)
    return make_error(ErrorCode::kResourceExhausted, "step's block tables or penalty history exceed capacity");
  return ok_status();
}

Status CudaExecutor::Impl::apply_lora(int layer, LinearModule m, const void* x, int64_t ldx, void* y, int64_t ldy,
                                      int64_t T, int mode) {
  if (mode == kNoLora) return ok_status();
  const int idx = layer * kNumLinearModules + int(m);
  const LoraDev& d = lora[size_t(idx)];
  LoraModuleSlots w;
  w.a = d.a.data();
  w.b = d.b.data();
  w.ranks = lora_ranks.as<int32_t>() + idx;
  w.scales = lora_scales.as<float>() + idx;
  w.meta_stride = int32_t(L * kNumLinearModules);
  w.num_slots = slots;
  w.max_rank = R;
  w.in = d.in;
  w.out = d.out;
  float* v = lora_v.as<float>();
  if (mode == kBgmv) {
    MYRIAD_TRY(bgmv_shrink(dt, v, x, ldx, w, token_slot.dev, T, compute.get()));
    return bgmv_expand(dt, y, ldy, v, w, token_slot.dev, T, compute.get());
  }
  for (int l = 0; l < levels; ++l) {
    SgmvBatch b{seg_slot[l].dev, seg_start[l].dev, entry_token[l].dev, entry_weight[l].dev, num_segments[l],
                max_seg_len[l]};
    MYRIAD_TRY(sgmv_shrink(dt, v, x, ldx, w, b, compute.get()));
    MYRIAD_TRY(sgmv_expand(dt, y, ldy, v, w, b, compute.get()));
  }
  return ok_status();
}

Status CudaExecutor::Impl::forward(int64_t T, int64_t P, int64_t S, int mode) {
  step_T = T;
  step_P = P;
  step_mode = mode;
  MYRIAD_TRY(run_llama_forward(*this, int(L)));
  if (P == 0 || S == 0) return ok_status();
  return sample(logits.as<float>(), V, sample_work.as<float>(), sample_rows.dev, history.dev, S, V,
                sample_out.as<int32_t>(), sample_out.as<float>() + opt.max_rows, compute.get());
}

Status CudaExecutor::Impl::embed() {
  return embedding(dt, res.data(), embed_w.data(), tokens.dev, step_T, H, V, compute.get());
}

Status CudaExecutor::Impl::attn_norm(int li) {
  const LayerDev& w = layers[size_t(li)];
  // Layer 0 normalizes the embeddings; later layers first add the previous MLP output (proj).
  return rmsnorm(dt, hbuf.data(), li == 0 ? nullptr : res.data(), li == 0 ? res.data() : proj.data(),
                 w.in_norm.data(), step_T, H, cfg.rms_norm_eps, compute.get());
}

Status CudaExecutor::Impl::qkv(int li) {
  const LayerDev& w = layers[size_t(li)];
  char* q = static_cast<char*>(qkvbuf.data());
  MYRIAD_TRY(blas.gemm(dt, dt, hbuf.data(), H, w.qkv.data(), q, QKV, step_T, QKV, H));
  if (w.qkv_bias.data()) MYRIAD_TRY(add_bias(dt, q, QKV, w.qkv_bias.data(), step_T, QKV, compute.get()));
  MYRIAD_TRY(apply_lora(li, LinearModule::kQ, hbuf.data(), H, q, QKV, step_T, step_mode));
  MYRIAD_TRY(apply_lora(li, LinearModule::kK, hbuf.data(), H, q + Q * esz, QKV, step_T, step_mode));
  return apply_lora(li, LinearModule::kV, hbuf.data(), H, q + (Q + KV) * esz, QKV, step_T, step_mode);
}

Status CudaExecutor::Impl::rope_and_cache(int li) {
  char* q = static_cast<char*>(qkvbuf.data());
  cudaStream_t s = compute.get();
  MYRIAD_TRY(rope(dt, q, QKV, q + Q * esz, QKV, pos.dev, inv_freq.as<float>(), step_T, cfg.num_heads,
                  cfg.num_kv_heads, D, s));
  return kv_cache_write(dt, k_cache[size_t(li)].data(), v_cache[size_t(li)].data(), q + Q * esz, QKV,
                        q + (Q + KV) * esz, QKV, slot_map.dev, step_T, cfg.num_kv_heads, D, s);
}

Status CudaExecutor::Impl::attention(int li) {
  const AttentionBatch ab{pos.dev, tok_row.dev, row_block_off.dev, block_ids.dev};
  return paged_attention(dt, attn.data(), Q, qkvbuf.data(), QKV, k_cache[size_t(li)].data(),
                         v_cache[size_t(li)].data(), ab, step_T, cfg.num_heads, cfg.num_kv_heads, D,
                         opt.kv_block_size, 1.0f / std::sqrt(float(D)), compute.get());
}

Status CudaExecutor::Impl::out_proj(int li) {
  const LayerDev& w = layers[size_t(li)];
  MYRIAD_TRY(blas.gemm(dt, dt, attn.data(), Q, w.o.data(), proj.data(), H, step_T, H, Q));
  if (w.o_bias.data()) MYRIAD_TRY(add_bias(dt, proj.data(), H, w.o_bias.data(), step_T, H, compute.get()));
  return apply_lora(li, LinearModule::kO, attn.data(), Q, proj.data(), H, step_T, step_mode);
}

Status CudaExecutor::Impl::mlp_norm(int li) {
  return rmsnorm(dt, hbuf.data(), res.data(), proj.data(), layers[size_t(li)].post_norm.data(), step_T, H,
                 cfg.rms_norm_eps, compute.get());
}

Status CudaExecutor::Impl::gate_up(int li) {
  char* gu = static_cast<char*>(gate_up_buf.data());
  MYRIAD_TRY(blas.gemm(dt, dt, hbuf.data(), H, layers[size_t(li)].gate_up.data(), gu, 2 * I, step_T, 2 * I, H));
  MYRIAD_TRY(apply_lora(li, LinearModule::kGate, hbuf.data(), H, gu, 2 * I, step_T, step_mode));
  return apply_lora(li, LinearModule::kUp, hbuf.data(), H, gu + I * esz, 2 * I, step_T, step_mode);
}

Status CudaExecutor::Impl::act(int /*layer*/) { return silu_mul(dt, act_buf.data(), gate_up_buf.data(), step_T, I, compute.get()); }

Status CudaExecutor::Impl::down(int li) {
  MYRIAD_TRY(blas.gemm(dt, dt, act_buf.data(), I, layers[size_t(li)].down.data(), proj.data(), H, step_T, H, I));
  return apply_lora(li, LinearModule::kDown, act_buf.data(), I, proj.data(), H, step_T, step_mode);
}

// Final norm over every token (with the last MLP residual), then lm_head on
// the gathered logits rows only.
Status CudaExecutor::Impl::head() {
  cudaStream_t s = compute.get();
  MYRIAD_TRY(rmsnorm(dt, hbuf.data(), res.data(), proj.data(), final_norm.data(), step_T, H, cfg.rms_norm_eps, s));
  if (step_P == 0) return ok_status();
  MYRIAD_TRY(embedding(dt, lh.data(), hbuf.data(), logit_idx.dev, step_P, H, step_T, s));  // gather rows
  return blas.gemm(dt, DType::kF32, lh.data(), H, lm_head, logits.data(), V, step_P, V, H);
}

// ---------------------------------------------------------------------------

CudaExecutor::CudaExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaExecutor::~CudaExecutor() {
  if (impl_) {
    (void)cudaStreamSynchronize(impl_->upload.get());
    (void)cudaStreamSynchronize(impl_->compute.get());
  }
}

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create(std::shared_ptr<const Checkpoint> ckpt,
                                                           const CudaExecutorOptions& options) {
  if (!ckpt) return make_error(ErrorCode::kInvalidArgument, "CudaExecutor: no checkpoint");
  auto impl = std::make_unique<Impl>();
  impl->ckpt = ckpt;
  MYRIAD_TRY(impl->init_common(ckpt->config(), options));
  MYRIAD_TRY(impl->alloc_weights());
  MYRIAD_TRY(impl->load_checkpoint());
  MYRIAD_TRY(impl->alloc_runtime());
  return std::unique_ptr<CudaExecutor>(new CudaExecutor(std::move(impl)));
}

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create_random(const ModelConfig& config,
                                                                  const CudaExecutorOptions& options, uint64_t seed) {
  auto impl = std::make_unique<Impl>();
  MYRIAD_TRY(impl->init_common(config, options));
  MYRIAD_TRY(impl->alloc_weights());
  MYRIAD_TRY(impl->random_weights(seed));
  MYRIAD_TRY(impl->alloc_runtime());
  return std::unique_ptr<CudaExecutor>(new CudaExecutor(std::move(impl)));
}

const ExecutorInfo& CudaExecutor::info() const { return impl_->info; }
size_t CudaExecutor::weight_bytes() const { return impl_->weight_bytes; }
size_t CudaExecutor::kv_bytes_per_token() const { return size_t(2 * impl_->L * impl_->KV) * impl_->esz; }
size_t CudaExecutor::adapter_bytes(int32_t slot) const {
  return slot >= 0 && slot < impl_->slots ? impl_->slot_bytes[size_t(slot)] : 0;
}
int CudaExecutor::graphs_captured() const { return int(impl_->graphs.size()); }
Status CudaExecutor::wait_for_uploads() { return sync_stream(impl_->upload.get()); }

Status CudaExecutor::step(const StepPlan& plan, StepResult& out) {
  Impl& m = *impl_;
  out.clear();
  if (plan.rows.empty()) return ok_status();
  const auto t0 = std::chrono::steady_clock::now();
  for (const SeqRow& r : plan.rows)  // promote finished loads (validate requires ready slots)
    for (uint8_t a = 0; a < r.adapters.count && a < kMaxAdaptersPerRow; ++a) (void)adapter_ready(r.adapters.refs[a].slot);
  MYRIAD_TRY(m.validate(plan));
  const int64_t bs = m.opt.kv_block_size;

  // Token-level metadata.
  int64_t T = 0;
  bool any_adapter = false, mixture = false, all_decode = true;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    m.row_block_off.host[i] = int32_t(r.block_offset);
    any_adapter |= r.adapters.count > 0;
    mixture |= r.adapters.count > 1 || (r.adapters.count == 1 && r.adapters.refs[0].weight != 1.0f);
    all_decode &= r.num_tokens == 1;
    for (uint32_t j = 0; j < r.num_tokens; ++j, ++T) {
      const int32_t p = r.start_pos + int32_t(j);
      m.tokens.host[T] = plan.tokens[r.token_offset + j];
      m.pos.host[T] = p;
      m.tok_row.host[T] = int32_t(i);
      m.slot_map.host[T] = plan.block_ids[r.block_offset + uint32_t(p / bs)] * int32_t(bs) + p % int32_t(bs);
      m.token_slot.host[T] = r.adapters.count > 0 ? r.adapters.refs[0].slot : -1;
    }
  }
  if (T == 0) return ok_status();
  std::copy(plan.block_ids.begin(), plan.block_ids.end(), m.block_ids.host);
  std::copy(plan.history.begin(), plan.history.end(), m.history.host);

  // Logits positions: sampled rows' last tokens first (S), then requested ones (Qn).
  int64_t S = 0, Qn = 0;
  {
    int64_t t = 0;
    for (const SeqRow& r : plan.rows) {
      if (r.sample) {
        m.logit_idx.host[S] = int32_t(t + r.num_tokens - 1);
        SampleRow& p = m.sample_rows.host[S];
        p.temperature = r.sampling.temperature;
        p.top_k = r.sampling.top_k;
        p.top_p = r.sampling.top_p;
        p.output_index = r.output_index;
        p.seed = r.sampling.seed;
        p.repetition_penalty = r.sampling.repetition_penalty;
        p.presence_penalty = r.sampling.presence_penalty;
        p.frequency_penalty = r.sampling.frequency_penalty;
        p.history_offset = r.history_offset;
        p.history_len = r.history_len;
        p.prompt_len = r.prompt_len;
        ++S;
      }
      t += r.num_tokens;
    }
    t = 0;
    for (const SeqRow& r : plan.rows) {
      if (r.logits == LogitsRequest::kAll)
        for (uint32_t j = 0; j < r.num_tokens; ++j) m.logit_idx.host[S + Qn++] = int32_t(t + j);
      else if (r.logits == LogitsRequest::kLast)
        m.logit_idx.host[S + Qn++] = int32_t(t + r.num_tokens - 1);
      t += r.num_tokens;
    }
  }
  const int64_t P = S + Qn;

  // LoRA form.
  int mode = kNoLora;
  if (any_adapter) mode = (mixture || !all_decode) ? kSgmv : kBgmv;
  m.levels = 0;
  if (mode == kSgmv) {
    struct Entry {
      int32_t slot, token;
      float weight;
    };
    std::vector<Entry> entries;  // small; this allocation is host-side only
    for (int l = 0; l < kLevels; ++l) {
      entries.clear();
      int64_t t = 0;
      for (const SeqRow& r : plan.rows) {
        if (r.adapters.count > l)
          for (uint32_t j = 0; j < r.num_tokens; ++j)
            entries.push_back({r.adapters.refs[l].slot, int32_t(t + j), r.adapters.refs[l].weight});
        t += r.num_tokens;
      }
      if (entries.empty()) break;
      std::stable_sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.slot < b.slot; });
      int32_t segs = 0, max_len = 0;
      for (size_t e = 0; e < entries.size(); ++e) {
        if (e == 0 || entries[e].slot != entries[e - 1].slot) {
          if (segs > 0) max_len = std::max(max_len, int32_t(e) - m.seg_start[l].host[segs - 1]);
          m.seg_slot[l].host[segs] = entries[e].slot;
          m.seg_start[l].host[segs] = int32_t(e);
          ++segs;
        }
        m.entry_token[l].host[e] = entries[e].token;
        m.entry_weight[l].host[e] = entries[e].weight;
      }
      m.seg_start[l].host[segs] = int32_t(entries.size());
      max_len = std::max(max_len, int32_t(entries.size()) - m.seg_start[l].host[segs - 1]);
      m.num_segments[l] = segs;
      m.max_seg_len[l] = max_len;
      m.levels = l + 1;
    }
  }

  // Upload metadata.
  MYRIAD_TRY(m.upload_meta(m.tokens, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.pos, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.tok_row, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.slot_map, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.row_block_off, plan.rows.size()));
  MYRIAD_TRY(m.upload_meta(m.block_ids, plan.block_ids.size()));
  MYRIAD_TRY(m.upload_meta(m.logit_idx, size_t(P)));
  MYRIAD_TRY(m.upload_meta(m.sample_rows, size_t(S)));
  if (!plan.history.empty()) MYRIAD_TRY(m.upload_meta(m.history, plan.history.size()));
  if (mode == kBgmv) MYRIAD_TRY(m.upload_meta(m.token_slot, size_t(T)));
  for (int l = 0; l < m.levels; ++l) {
    const size_t n = size_t(m.seg_start[l].host[m.num_segments[l]]);
    MYRIAD_TRY(m.upload_meta(m.seg_slot[l], size_t(m.num_segments[l])));
    MYRIAD_TRY(m.upload_meta(m.seg_start[l], size_t(m.num_segments[l]) + 1));
    MYRIAD_TRY(m.upload_meta(m.entry_token[l], n));
    MYRIAD_TRY(m.upload_meta(m.entry_weight[l], n));
  }

  // Forward: replayed from a graph for plain decode steps when enabled.
  cudaStream_t s = m.compute.get();
  // Every kernel argument that changes between such steps lives in the fixed
  // device metadata arrays; the launch shapes depend only on the key.
  const bool graphable = m.opt.cuda_graphs && all_decode && mode != kSgmv;
  if (graphable) {
    const auto key = std::make_tuple(T, S, Qn, mode == kBgmv);
    auto it = m.graphs.find(key);
    if (it == m.graphs.end()) {
      MYRIAD_CUDA_TRY(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      const Status st = m.forward(T, P, S, mode);
      cudaGraph_t graph = nullptr;
      const cudaError_t end = cudaStreamEndCapture(s, &graph);
      if (!st.ok()) {
        if (graph) (void)cudaGraphDestroy(graph);
        return st;
      }
      MYRIAD_CUDA_TRY(end);
      cudaGraphExec_t exec = nullptr;
      const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
      (void)cudaGraphDestroy(graph);
      MYRIAD_CUDA_TRY(inst);
      it = m.graphs.emplace(key, exec).first;
    }
    MYRIAD_CUDA_TRY(cudaGraphLaunch(it->second, s));
  } else {
    MYRIAD_TRY(m.forward(T, P, S, mode));
  }

  // Results to the host.
  char* oh = static_cast<char*>(m.out_h.data());
  auto* tok_h = reinterpret_cast<int32_t*>(oh);
  auto* lp_h = reinterpret_cast<float*>(oh + size_t(m.opt.max_rows) * 4);
  auto* logits_h = reinterpret_cast<float*>(oh + size_t(m.opt.max_rows) * 8);
  if (S > 0) {
    MYRIAD_TRY(copy_d2h(tok_h, m.sample_out.as<int32_t>(), size_t(S) * 4, s));
    MYRIAD_TRY(copy_d2h(lp_h, m.sample_out.as<float>() + m.opt.max_rows, size_t(S) * 4, s));
  }
  if (Qn > 0) MYRIAD_TRY(copy_d2h(logits_h, m.logits.as<float>() + size_t(S) * m.V, size_t(Qn) * m.V * 4, s));
  MYRIAD_TRY(sync_stream(s));
  // Host launch overhead included: the step ends when its results are back.
  out.device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  int64_t si = 0, qi = 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    const int64_t n = r.logits == LogitsRequest::kAll ? r.num_tokens : r.logits == LogitsRequest::kLast ? 1 : 0;
    if (n > 0) {
      out.logits.insert(out.logits.end(), logits_h + qi * m.V, logits_h + (qi + n) * m.V);
      for (int64_t j = 0; j < n; ++j) out.logits_rows.push_back(uint32_t(i));
      qi += n;
    }
    if (r.sample) {
      out.sampled.push_back({r.seq, tok_h[si], lp_h[si]});
      ++si;
    }
  }
  return ok_status();
}

namespace {
// Runs on a CUDA callback thread once the upload stream reaches it: it may
// not call CUDA, only report.
void CUDART_CB report_load(void* user) {
  std::unique_ptr<LoadDone> done(static_cast<LoadDone*>(user));
  (*done)(ok_status());
}
}  // namespace

Status CudaExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> w, LoadDone done) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots)
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter slot " + std::to_string(slot) + " outside [0, " + std::to_string(m.slots) + ")");
  if (m.slot_state[size_t(slot)] != Impl::SlotState::kEmpty)
    return make_error(ErrorCode::kInvalidArgument, "adapter slot " + std::to_string(slot) + " is busy");
  if (!w) return make_error(ErrorCode::kInvalidArgument, "no adapter weights");
  if (w->num_layers != m.L || w->modules.size() != size_t(m.L) * kNumLinearModules)
    return make_error(ErrorCode::kInvalidArgument, "adapter " + w->name + ": " + std::to_string(w->num_layers) +
                                                       " layers, base model has " + std::to_string(m.L));
  for (int64_t li = 0; li < m.L; ++li)
    for (int mi = 0; mi < kNumLinearModules; ++mi) {
      const LoraModuleWeights& mw = w->at(int(li), LinearModule(mi));
      const LoraDev& d = m.lora[size_t(li) * kNumLinearModules + mi];
      if (mw.rank < 0 || mw.rank > m.R)
        return make_error(ErrorCode::kResourceExhausted,
                          "adapter " + w->name + ": rank " + std::to_string(mw.rank) + " of layer " +
                              std::to_string(li) + " " + linear_module_name(LinearModule(mi)) +
                              " exceeds the slots' max rank " + std::to_string(m.R));
      if (mw.rank > 0 && (mw.a.size() != size_t(mw.rank) * d.in || mw.b.size() != size_t(d.out) * mw.rank))
        return make_error(ErrorCode::kInvalidArgument, "adapter " + w->name + ": layer " + std::to_string(li) + " " +
                                                           linear_module_name(LinearModule(mi)) +
                                                           " A/B sizes do not match rank and shape");
    }
  // The staging buffer may still feed the previous upload.
  if (m.staging_used) MYRIAD_TRY(m.staging_event.synchronize());
  char* st = static_cast<char*>(m.staging.data());
  size_t off = 0, bytes = 0;
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  auto put = [&](float f) {
    if (m.dt == DType::kF32) {
      std::memcpy(st + off, &f, 4);
    } else {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(st + off, &h, 2);
    }
    off += m.esz;
  };
  cudaStream_t us = m.upload.get();
  MYRIAD_TRY(m.compute_mark.record(m.compute.get()));
  MYRIAD_TRY(m.compute_mark.wait_in(us));
  for (size_t idx = 0; idx < L7; ++idx) {
    const LoraModuleWeights& mw = w->modules[idx];
    if (mw.rank == 0) continue;
    const LoraDev& d = m.lora[idx];
    const size_t a_off = off;
    for (float f : mw.a) put(f);
    const size_t b_off = off;
    for (int64_t o = 0; o < d.out; ++o)
      for (int32_t r = 0; r < m.R; ++r) put(r < mw.rank ? mw.b[size_t(o) * mw.rank + r] : 0.0f);
    MYRIAD_TRY(copy_h2d(static_cast<char*>(d.a.data()) + size_t(slot) * m.R * d.in * m.esz, st + a_off, b_off - a_off, us));
    MYRIAD_TRY(copy_h2d(static_cast<char*>(d.b.data()) + size_t(slot) * d.out * m.R * m.esz, st + b_off, off - b_off, us));
    bytes += size_t(mw.rank) * (d.in + d.out) * m.esz;
  }
  off = (off + 15) / 16 * 16;
  auto* ranks = reinterpret_cast<int32_t*>(st + off);
  auto* scales = reinterpret_cast<float*>(st + off + L7 * 4);
  for (size_t idx = 0; idx < L7; ++idx) {
    ranks[idx] = w->modules[idx].rank;
    scales[idx] = w->modules[idx].scale;
  }
  // Ranks last: until they land, the slot contributes nothing.
  MYRIAD_TRY(copy_h2d(m.lora_scales.as<float>() + size_t(slot) * L7, scales, L7 * 4, us));
  MYRIAD_TRY(copy_h2d(m.lora_ranks.as<int32_t>() + size_t(slot) * L7, ranks, L7 * 4, us));
  MYRIAD_TRY(m.slot_event[size_t(slot)].record(us));
  MYRIAD_TRY(m.staging_event.record(us));
  m.staging_used = true;
  m.slot_state[size_t(slot)] = Impl::SlotState::kLoading;
  m.slot_bytes[size_t(slot)] = bytes;
  if (done) {
    auto* user = new LoadDone(std::move(done));
    if (cudaLaunchHostFunc(us, report_load, user) != cudaSuccess) {
      // Report it from here once the copies are done, rather than never.
      (void)cudaGetLastError();
      std::unique_ptr<LoadDone> d(user);
      MYRIAD_TRY(m.slot_event[size_t(slot)].synchronize());
      (*d)(ok_status());
    }
  }
  return ok_status();
}

Status CudaExecutor::clone_adapter_slot(int32_t src, int32_t dst) {
  Impl& m = *impl_;
  if (src < 0 || src >= m.slots || dst < 0 || dst >= m.slots || src == dst || !adapter_ready(src) ||
      m.slot_state[size_t(dst)] != Impl::SlotState::kEmpty)
    return make_error(ErrorCode::kInvalidArgument,
                      "clone_adapter_slot: bad slots " + std::to_string(src) + " -> " + std::to_string(dst));
  cudaStream_t us = m.upload.get();
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  for (size_t idx = 0; idx < L7; ++idx) {
    const LoraDev& d = m.lora[idx];
    const size_t a = size_t(m.R) * d.in * m.esz, b = size_t(d.out) * m.R * m.esz;
    MYRIAD_TRY(copy_d2d(static_cast<char*>(d.a.data()) + dst * a, static_cast<char*>(d.a.data()) + src * a, a, us));
    MYRIAD_TRY(copy_d2d(static_cast<char*>(d.b.data()) + dst * b, static_cast<char*>(d.b.data()) + src * b, b, us));
  }
  MYRIAD_TRY(copy_d2d(m.lora_scales.as<float>() + dst * L7, m.lora_scales.as<float>() + src * L7, L7 * 4, us));
  MYRIAD_TRY(copy_d2d(m.lora_ranks.as<int32_t>() + dst * L7, m.lora_ranks.as<int32_t>() + src * L7, L7 * 4, us));
  MYRIAD_TRY(m.slot_event[size_t(dst)].record(us));
  m.slot_state[size_t(dst)] = Impl::SlotState::kLoading;
  m.slot_bytes[size_t(dst)] = m.slot_bytes[size_t(src)];
  return ok_status();
}

bool CudaExecutor::adapter_ready(int32_t slot) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots) return false;
  auto& st = m.slot_state[size_t(slot)];
  if (st == Impl::SlotState::kLoading && m.slot_event[size_t(slot)].done()) st = Impl::SlotState::kReady;
  return st == Impl::SlotState::kReady;
}

void CudaExecutor::unload_adapter(int32_t slot) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots) return;
  if (m.slot_state[size_t(slot)] == Impl::SlotState::kLoading) (void)m.slot_event[size_t(slot)].synchronize();
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  // On the compute stream: steps already queued may still read the slot.
  (void)fill_bytes(m.lora_ranks.as<int32_t>() + size_t(slot) * L7, 0, L7 * 4, m.compute.get());
  m.slot_state[size_t(slot)] = Impl::SlotState::kEmpty;
  m.slot_bytes[size_t(slot)] = 0;
}

}  // namespace myriad::gpu::cuda
