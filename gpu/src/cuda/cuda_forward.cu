// The shared Llama graph's operations on the CUDA backend (LlamaOps), in
// order on the compute stream, and LoRA application (BGMV or SGMV levels),
// whose shrinks run beside their base GEMMs on a second stream; in decode
// steps with one adapter level the expands are epilogues of the kernels that
// read the GEMMs' outputs (lora_as_epilogue).
// mark(name) after each piece of work names it for profile_step (a no-op
// in any other step).
#include <cuda_runtime.h>

#include <cmath>

#include "cuda_executor_impl.cuh"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/rope.h"
#include "gpu/cuda/small_gemm.h"

namespace myriad::gpu::cuda {

LoraGroupSlots CudaExecutor::Impl::lora_group_slots(int layer, LinearModule first, int count) const {
  LoraGroupSlots w;
  w.count = count;
  for (int i = 0; i < count; ++i) {
    const int idx = layer * kNumLinearModules + int(first) + i;
    const int mod = int(first) + i;
    LoraModuleSlots& m = w.member[i];
    m.a = static_cast<const char*>(lora_pool.data()) + lora_layout.a_offset[size_t(idx)];
    m.b = static_cast<const char*>(lora_pool.data()) + lora_layout.b_offset[size_t(idx)];
    m.slot_stride = int64_t(lora_layout.slot_bytes / esz);
    m.ranks = lora_ranks.as<int32_t>() + idx;
    m.scales = lora_scales.as<float>() + idx;
    m.meta_stride = int32_t(L * kNumLinearModules);
    m.num_slots = slots;
    m.max_rank = R;
    m.in = lora_layout.in[mod];
    m.out = lora_layout.out[mod];
  }
  return w;
}

SgmvBatch CudaExecutor::Impl::sgmv_batch(int level) const {
  return {seg_slot[level].dev,    seg_start[level].dev,    entry_token[level].dev,
          entry_weight[level].dev, num_segments[level], max_seg_len[level]};
}

// lora_v holds a slice per level (its shrink's v rows, count * R floats a token).
float* CudaExecutor::Impl::lora_v_level(int level) const {
  return lora_v.as<float>() + int64_t(level) * step_T * kMaxLoraGroup * R;
}

// Every LoRA group of the step is an epilogue, or none: the consumers that
// apply them (RoPE + KV write, SiLU-mul, the RMSNorms) are all unfused, the
// step is BGMV's (a token's slot is all a consumer needs) with one level (an
// epilogue applies one; mixtures expand each level in line).
bool CudaExecutor::Impl::lora_as_epilogue() const {
  return step_mode == kBgmv && bgmv_levels == 1 && lora_side_stream && !profiling && !norm_fused_into(QKV) &&
         !norm_fused_into(2 * I);
}

Status CudaExecutor::Impl::lora_shrink(int layer, LinearModule first, int count, const void* x, int64_t ldx,
                                       bool beside_gemm) {
  if (step_mode == kNoLora) return ok_status();
  const LoraGroupSlots w = lora_group_slots(layer, first, count);
  const bool side = beside_gemm && lora_side_stream && !profiling;
  if (lora_pending) return make_error(ErrorCode::kInternal, "lora: an epilogue was left unapplied before a new group");
  cudaStream_t s = compute.get();
  if (side) {
    MYRIAD_TRY(lora_fork.record(s));
    MYRIAD_TRY(lora_fork.wait_in(lora_side.get()));
    s = lora_side.get();
    lora_joined = false;
  }
  for (int l = 0; l < (step_mode == kBgmv ? bgmv_levels : levels); ++l) {
    if (step_mode == kBgmv) {
      MYRIAD_TRY(bgmv_shrink(dt, lora_v_level(l), x, ldx, w, token_slot[l].dev, step_T, s));
    } else {
      MYRIAD_TRY(sgmv_shrink(dt, lora_v_level(l), x, ldx, w, sgmv_batch(l), s));
    }
    MYRIAD_TRY(mark("lora shrink"));
  }
  if (side && lora_as_epilogue()) {
    MYRIAD_ASSIGN(pending_lora, lora_epilogue(dt, w, lora_v_level(0), token_slot[0].dev,
                                              bgmv_weighted ? token_weight[0].dev : nullptr));
    lora_pending = true;
  }
  if (side) MYRIAD_TRY(lora_join.record(s));
  return ok_status();
}

Status CudaExecutor::Impl::lora_expand(int layer, LinearModule first, int count, void* y, int64_t ldy) {
  if (step_mode == kNoLora || lora_pending) return ok_status();  // the consumer applies it
  if (!lora_joined) {
    MYRIAD_TRY(lora_join.wait_in(compute.get()));
    lora_joined = true;
  }
  const LoraGroupSlots w = lora_group_slots(layer, first, count);
  for (int l = 0; l < (step_mode == kBgmv ? bgmv_levels : levels); ++l) {
    if (step_mode == kBgmv) {
      MYRIAD_TRY(bgmv_expand(dt, y, ldy, lora_v_level(l), w, token_slot[l].dev, step_T, compute.get(),
                             bgmv_weighted ? token_weight[l].dev : nullptr));
    } else {
      MYRIAD_TRY(sgmv_expand(dt, y, ldy, lora_v_level(l), w, sgmv_batch(l), compute.get()));
    }
    MYRIAD_TRY(mark("lora expand"));
  }
  return ok_status();
}

Status CudaExecutor::Impl::take_lora_epilogue(const LoraEpilogue*& lora) {
  lora = nullptr;
  if (!lora_pending) return ok_status();
  lora_pending = false;
  MYRIAD_TRY(lora_join.wait_in(compute.get()));
  lora_joined = true;
  lora = &pending_lora;
  return ok_status();
}

Status CudaExecutor::Impl::norm_res(const void* norm_w) {
  const LoraEpilogue* lora = nullptr;
  MYRIAD_TRY(take_lora_epilogue(lora));
  if (lora)
    return rmsnorm_add_lora(dt, hbuf.data(), res.data(), *lora, norm_w, step_T, H, cfg.rms_norm_eps, compute.get());
  return rmsnorm(dt, hbuf.data(), nullptr, res.data(), norm_w, step_T, H, cfg.rms_norm_eps, compute.get());
}

Status CudaExecutor::Impl::forward(int64_t T, int64_t P, int64_t S, int mode) {
  step_T = T;
  step_P = P;
  step_mode = mode;
  lora_pending = false;  // a failed step's epilogue is void (step() joined its side stream)
  MYRIAD_TRY(mark("begin"));  // the reference point; the names after it are timed
  MYRIAD_TRY(run_llama_forward(*this, int(L)));
  if (P == 0 || S == 0) return ok_status();
  MYRIAD_TRY(sample(logits.as<float>(), V, sample_work.as<float>(), sample_rows.dev, history.dev, S, V,
                    sample_out.as<int32_t>(), sample_out.as<float>() + opt.max_rows, compute.get(), logit_bias.dev,
                    sample_top.as<TopLogprobs::Entry>()));
  return mark("sample");
}

Status CudaExecutor::Impl::embed() {
  MYRIAD_TRY(embedding(dt, res.data(), embed_w.data(), tokens.dev, step_T, H, V, compute.get()));
  return mark("embed");
}

bool CudaExecutor::Impl::norm_fused_into(int64_t N) const { return blas.uses_small_gemm(dt, dt, step_T, N, H); }

// hbuf = RMSNorm(res) * norm_w, then y = hbuf . w^T: one small_gemm_rmsnorm
// launch when the GEMV is small_gemm's (it writes hbuf too when LoRA will
// read it), else the norm's launch (attn_norm, mlp_norm) then the GEMM.
Status CudaExecutor::Impl::normed_gemm(const void* norm_w, const void* w, void* y, int64_t N, const char* gemm_name,
                                       const char* fused_name) {
  if (!norm_fused_into(N)) {
    MYRIAD_TRY(blas.gemm(dt, dt, hbuf.data(), H, w, y, N, step_T, N, H));
    return mark(gemm_name);
  }
  MYRIAD_TRY(small_gemm_rmsnorm(dt, dt, res.data(), H, norm_w, cfg.rms_norm_eps,
                                step_mode == kNoLora ? nullptr : hbuf.data(), H, w, y, N, step_T, N, H, 1.0f, 0.0f,
                                compute.get()));
  return mark(fused_name);
}

// A pending epilogue here is the previous layer's down LoRA (lora_as_epilogue
// rules out the fused norm then).
Status CudaExecutor::Impl::attn_norm(int li) {
  if (norm_fused_into(QKV)) return ok_status();  // qkv() normalizes as it reads
  MYRIAD_TRY(norm_res(layers[size_t(li)].in_norm.data()));
  return mark("rmsnorm");
}

Status CudaExecutor::Impl::qkv(int li) {
  const LayerDev& w = layers[size_t(li)];
  char* q = static_cast<char*>(qkvbuf.data());
  // q, k and v: one group over hbuf writing qkvbuf's adjacent column ranges.
  // hbuf is ready before the GEMM unless the GEMM's fused norm writes it.
  const bool hbuf_ready = !norm_fused_into(QKV);
  if (hbuf_ready) MYRIAD_TRY(lora_shrink(li, LinearModule::kQ, 3, hbuf.data(), H, true));
  MYRIAD_TRY(normed_gemm(w.in_norm.data(), w.qkv.data(), q, QKV, "qkv gemm", "rmsnorm+qkv gemm"));
  if (!hbuf_ready) MYRIAD_TRY(lora_shrink(li, LinearModule::kQ, 3, hbuf.data(), H, false));
  if (w.qkv_bias.data()) {
    MYRIAD_TRY(add_bias(dt, q, QKV, w.qkv_bias.data(), step_T, QKV, compute.get()));
    MYRIAD_TRY(mark("bias"));
  }
  return lora_expand(li, LinearModule::kQ, 3, q, QKV);
}

Status CudaExecutor::Impl::rope_and_cache(int li) {
  char* q = static_cast<char*>(qkvbuf.data());
  cudaStream_t s = compute.get();
  const LoraEpilogue* lora = nullptr;  // q|k|v's expand when it is an epilogue
  MYRIAD_TRY(take_lora_epilogue(lora));
  MYRIAD_TRY(rope_kv_write(dt, q, QKV, pos.dev, inv_freq.as<float>(), k_cache[size_t(li)].data(),
                           v_cache[size_t(li)].data(), slot_map.dev, step_T, cfg.num_heads, cfg.num_kv_heads, D, s,
                           lora));
  return mark("rope+kv write");
}

Status CudaExecutor::Impl::attention(int li) {
  const AttentionBatch ab{pos.dev, tok_row.dev, row_block_off.dev, block_ids.dev};
  const AttentionWorkspace ws{attn_ws.as<float>(), int64_t(attn_ws.bytes() / sizeof(float)),
                              opt.attention_splits};
  MYRIAD_TRY(paged_attention(dt, attn.data(), Q, qkvbuf.data(), QKV, k_cache[size_t(li)].data(),
                             v_cache[size_t(li)].data(), ab, step_T, cfg.num_heads, cfg.num_kv_heads, D,
                             opt.kv_block_size, 1.0f / std::sqrt(float(D)), compute.get(), ws));
  return mark("attention");
}

// The residual adds ride on the GEMMs: o_proj (and its bias and LoRA) add
// into res (beta = 1), as down does, so no norm has a residual to add.
Status CudaExecutor::Impl::out_proj(int li) {
  const LayerDev& w = layers[size_t(li)];
  MYRIAD_TRY(lora_shrink(li, LinearModule::kO, 1, attn.data(), Q, true));
  MYRIAD_TRY(blas.gemm(dt, dt, attn.data(), Q, w.o.data(), res.data(), H, step_T, H, Q, 1.0f, 1.0f));
  MYRIAD_TRY(mark("o gemm"));
  if (w.o_bias.data()) {
    MYRIAD_TRY(add_bias(dt, res.data(), H, w.o_bias.data(), step_T, H, compute.get()));
    MYRIAD_TRY(mark("bias"));
  }
  return lora_expand(li, LinearModule::kO, 1, res.data(), H);
}

// A pending epilogue here is o_proj's LoRA.
Status CudaExecutor::Impl::mlp_norm(int li) {
  if (norm_fused_into(2 * I)) return ok_status();  // gate_up() normalizes as it reads
  MYRIAD_TRY(norm_res(layers[size_t(li)].post_norm.data()));
  return mark("rmsnorm");
}

bool CudaExecutor::Impl::act_fused_into_gate_up() const { return step_mode == kNoLora && norm_fused_into(2 * I); }

Status CudaExecutor::Impl::gate_up(int li) {
  const LayerDev& w = layers[size_t(li)];
  if (act_fused_into_gate_up()) {
    MYRIAD_TRY(small_gemm_silu_mul(dt, res.data(), H, w.post_norm.data(), cfg.rms_norm_eps, w.gate_up.data(),
                                   act_buf.data(), I, step_T, I, H, compute.get()));
    return mark("rmsnorm+gate_up gemm+silu_mul");
  }
  char* gu = static_cast<char*>(gate_up_buf.data());
  const bool hbuf_ready = !norm_fused_into(2 * I);  // as in qkv()
  if (hbuf_ready) MYRIAD_TRY(lora_shrink(li, LinearModule::kGate, 2, hbuf.data(), H, true));  // gate|up
  MYRIAD_TRY(normed_gemm(w.post_norm.data(), w.gate_up.data(), gu, 2 * I, "gate_up gemm", "rmsnorm+gate_up gemm"));
  if (!hbuf_ready) MYRIAD_TRY(lora_shrink(li, LinearModule::kGate, 2, hbuf.data(), H, false));
  return lora_expand(li, LinearModule::kGate, 2, gu, 2 * I);
}

Status CudaExecutor::Impl::act(int /*layer*/) {
  if (act_fused_into_gate_up()) return ok_status();  // gate_up() stored silu(gate) * up
  const LoraEpilogue* lora = nullptr;  // gate|up's expand when it is an epilogue
  MYRIAD_TRY(take_lora_epilogue(lora));
  MYRIAD_TRY(silu_mul(dt, act_buf.data(), gate_up_buf.data(), step_T, I, compute.get(), lora));
  return mark("silu_mul");
}

Status CudaExecutor::Impl::down(int li) {
  MYRIAD_TRY(lora_shrink(li, LinearModule::kDown, 1, act_buf.data(), I, true));
  MYRIAD_TRY(
      blas.gemm(dt, dt, act_buf.data(), I, layers[size_t(li)].down.data(), res.data(), H, step_T, H, I, 1.0f, 1.0f));
  MYRIAD_TRY(mark("down gemm"));
  return lora_expand(li, LinearModule::kDown, 1, res.data(), H);
}

// Final norm over every token, then lm_head on the gathered logits rows only.
Status CudaExecutor::Impl::head() {
  cudaStream_t s = compute.get();
  MYRIAD_TRY(norm_res(final_norm.data()));  // with the last down's LoRA when it is an epilogue
  MYRIAD_TRY(mark("rmsnorm"));
  if (step_P == 0) return ok_status();
  MYRIAD_TRY(embedding(dt, lh.data(), hbuf.data(), logit_idx.dev, step_P, H, step_T, s));  // gather rows
  MYRIAD_TRY(mark("gather"));
  MYRIAD_TRY(blas.gemm(dt, DType::kF32, lh.data(), H, lm_head, logits.data(), V, step_P, V, H));
  return mark("lm_head");
}

}  // namespace myriad::gpu::cuda
