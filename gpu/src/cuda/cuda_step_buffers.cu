// CudaExecutor's per-step scratch and its metadata arena: every per-step
// array at a fixed offset of one pinned host block and one device block, so
// device pointers never change (CUDA graphs replay them).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda_executor_impl.cuh"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/small_gemm.h"

namespace myriad::gpu::cuda {

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
  MYRIAD_ASSIGN(qkvbuf, alloc_dev(T * QKV * esz, ignore));
  MYRIAD_ASSIGN(attn, alloc_dev(T * Q * esz, ignore));
  MYRIAD_ASSIGN(gate_up_buf, alloc_dev(T * 2 * I * esz, ignore));
  MYRIAD_ASSIGN(act_buf, alloc_dev(T * I * esz, ignore));
  MYRIAD_ASSIGN(lh, alloc_dev(P * H * esz, ignore));
  MYRIAD_ASSIGN(logits, alloc_dev(P * V * sizeof(float), ignore));
  MYRIAD_ASSIGN(sample_work, alloc_dev(size_t(opt.max_rows) * V * sizeof(float), ignore));
  MYRIAD_ASSIGN(sample_out, alloc_dev(size_t(opt.max_rows) * 8, ignore));
  const size_t top_bytes = size_t(opt.max_rows) * kMaxTopLogprobs * sizeof(TopLogprobs::Entry);
  MYRIAD_ASSIGN(sample_top, alloc_dev(top_bytes, ignore));
  MYRIAD_ASSIGN(top_h, PinnedBuffer::alloc(top_bytes));
  if (opt.attention_splits != 1) {
    int64_t ws = 0;  // only small launches split, so this loop's maximum is reached early
    for (int64_t t = 1; t <= int64_t(T); ++t) {
      auto n = paged_attention_workspace_floats(t, cfg.num_heads, cfg.num_kv_heads, D, opt.attention_splits);
      if (!n.ok()) return n.error();
      ws = std::max(ws, n.value());
    }
    if (ws > 0) MYRIAD_ASSIGN(attn_ws, alloc_dev(size_t(ws) * sizeof(float), ignore));
  }

  // LoRA slots.
  if (slots > 0) {
    MYRIAD_ASSIGN(lora_layout, LoraSlotLayout::make(cfg, R, dt));
    MYRIAD_ASSIGN(lora_pool, alloc_dev(size_t(slots) * lora_layout.slot_bytes, ignore));
    const size_t L7 = size_t(L) * kNumLinearModules;
    MYRIAD_ASSIGN(lora_ranks, alloc_dev(size_t(slots) * L7 * sizeof(int32_t), ignore));
    MYRIAD_ASSIGN(lora_scales, alloc_dev(size_t(slots) * L7 * sizeof(float), ignore));
    MYRIAD_TRY(fill_bytes(lora_ranks.data(), 0, lora_ranks.bytes(), compute.get()));
    MYRIAD_TRY(fill_bytes(lora_scales.data(), 0, lora_scales.bytes(), compute.get()));
    MYRIAD_ASSIGN(staging, PinnedBuffer::alloc(lora_layout.max_image_bytes()));
    MYRIAD_ASSIGN(staging_event, Event::create());
    MYRIAD_ASSIGN(compute_mark, Event::create());
    slot_state.assign(size_t(slots), SlotState::kEmpty);
    slot_bytes.assign(size_t(slots), 0);
    slot_source.assign(size_t(slots), nullptr);
    for (int32_t s = 0; s < slots; ++s) {
      Event e;
      MYRIAD_ASSIGN(e, Event::create());
      slot_event.push_back(std::move(e));
    }
    // A group's v rows for every level: each level's shrink runs before any expand.
    MYRIAD_ASSIGN(lora_v, alloc_dev(kLevels * T * kMaxLoraGroup * R * sizeof(float), ignore));
    MYRIAD_ASSIGN(lora_side, Stream::create());
    MYRIAD_ASSIGN(lora_fork, Event::create());
    MYRIAD_ASSIGN(lora_join, Event::create());
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
  for (int l = 0; l < kLevels; ++l) {
    place(token_slot[l], T);
    place(token_weight[l], T);
    place(seg_slot[l], T);
    place(seg_start[l], T + 1);
    place(entry_token[l], T);
    place(entry_weight[l], T);
  }
  place(history, std::max<size_t>(1, size_t(opt.max_history)));
  // Every row at a request's most: its logit_bias and min_tokens' stop-id bans.
  place(logit_bias, rows * (kMaxLogitBias + kMaxStopTokenIds));
  MYRIAD_ASSIGN(meta_h, PinnedBuffer::alloc(off));
  MYRIAD_ASSIGN(meta_d, alloc_dev(off, ignore));
  auto bind = [&](auto& a) {
    using E = std::remove_pointer_t<decltype(a.host)>;
    a.host = reinterpret_cast<E*>(static_cast<char*>(meta_h.data()) + a.offset);
    a.dev = reinterpret_cast<E*>(static_cast<char*>(meta_d.data()) + a.offset);
  };
  bind(tokens), bind(pos), bind(tok_row), bind(slot_map), bind(row_block_off), bind(block_ids), bind(logit_idx);
  bind(sample_rows), bind(history), bind(logit_bias);
  for (int l = 0; l < kLevels; ++l) {
    bind(token_slot[l]), bind(token_weight[l]);
    bind(seg_slot[l]), bind(seg_start[l]), bind(entry_token[l]), bind(entry_weight[l]);
  }
  MYRIAD_ASSIGN(out_h, PinnedBuffer::alloc(rows * 8 + size_t(opt.max_logits_rows) * V * sizeof(float) + 16));
  MYRIAD_TRY(tune_gemms());
  return sync_stream(compute.get());
}

// Each linear layer of a decode step, timed on scratch of its shape (the
// buffers step() uses; their contents are garbage here and overwritten).
Status CudaExecutor::Impl::tune_gemms() {
  if (opt.small_gemm != 0) {
    blas.set_small_gemm(opt.small_gemm == 1 ? Blas::SmallGemm::kNever : Blas::SmallGemm::kAlways);
    return ok_status();
  }
  const int64_t rows = std::min<int64_t>({kSmallGemmMaxRows, opt.max_tokens_per_step, opt.max_rows});
  // Every layer's weights in turn, so timings stream them from memory as a step does.
  std::vector<const void*> qkv_w, o_w, gate_up_w, down_w;
  for (const LayerDev& l : layers) {
    qkv_w.push_back(l.qkv.data());
    o_w.push_back(l.o.data());
    gate_up_w.push_back(l.gate_up.data());
    down_w.push_back(l.down.data());
  }
  const std::vector<const void*> head_w = {lm_head};
  struct Shape {
    const void* x;
    const std::vector<const void*>* w;
    void* y;
    int64_t ldx, ldy, N, K, max_rows;
    DType out;
    Blas::TunedPaths paths;
  };
  // qkv and gate|up as a step without LoRA runs them (cuda_forward.cu): on
  // small_gemm the norm (and gate|up's SiLU-mul) fused in, on cuBLAS their
  // own launches around the GEMM; the scratch rows are the residual stream.
  cudaStream_t cs = compute.get();
  const void* norm_w = layers[0].in_norm.data();
  auto norm_into_hbuf = [this, cs, norm_w](int64_t M) {
    return rmsnorm(dt, hbuf.data(), nullptr, res.data(), norm_w, M, H, cfg.rms_norm_eps, cs);
  };
  Blas::TunedPaths qkv_paths, gate_up_paths;
  qkv_paths.cublas_before = norm_into_hbuf;
  qkv_paths.small = [this, cs, norm_w](int64_t M, const void* w) {
    return small_gemm_rmsnorm(dt, dt, res.data(), H, norm_w, cfg.rms_norm_eps, nullptr, 0, w, qkvbuf.data(), QKV, M,
                              QKV, H, 1.0f, 0.0f, cs);
  };
  gate_up_paths.cublas_before = norm_into_hbuf;
  gate_up_paths.cublas_after = [this, cs](int64_t M) {
    return silu_mul(dt, act_buf.data(), gate_up_buf.data(), M, I, cs);
  };
  gate_up_paths.small = [this, cs, norm_w](int64_t M, const void* w) {
    return small_gemm_silu_mul(dt, res.data(), H, norm_w, cfg.rms_norm_eps, w, act_buf.data(), I, M, I, H, cs);
  };
  const int64_t P = opt.max_rows + opt.max_logits_rows;
  const Shape shapes[] = {
      {hbuf.data(), &qkv_w, qkvbuf.data(), H, QKV, QKV, H, rows, dt, qkv_paths},
      {attn.data(), &o_w, res.data(), Q, H, H, Q, rows, dt, {}},
      {hbuf.data(), &gate_up_w, gate_up_buf.data(), H, 2 * I, 2 * I, H, rows, dt, gate_up_paths},
      {act_buf.data(), &down_w, res.data(), I, H, H, I, rows, dt, {}},
      {lh.data(), &head_w, logits.data(), H, V, V, H, std::min(rows, P), DType::kF32, {}},
  };
  small_gemm_choices = 0;
  for (const Shape& s : shapes) {
    auto n = blas.tune_small_gemm(dt, s.out, s.x, s.ldx, *s.w, s.y, s.ldy, s.max_rows, s.N, s.K, s.paths);
    if (!n.ok()) return n.error();
    small_gemm_choices += n.value();
  }
  return ok_status();
}

}  // namespace myriad::gpu::cuda
