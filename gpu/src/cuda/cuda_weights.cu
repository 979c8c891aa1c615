// CudaExecutor's base weights: their device layout (q|k|v and gate|up fused),
// uploaded from a checkpoint (converted to the compute dtype on the host) or
// filled with seeded random values.
#include <cuda_runtime.h>

#include <cstring>
#include <random>

#include "cuda_executor_impl.cuh"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rope.h"

namespace myriad::gpu::cuda {

Status CudaExecutor::Impl::init_common(const ModelConfig& c, const CudaExecutorOptions& o) {
  if (auto why = device_unavailable_reason()) return make_error(ErrorCode::kUnsupported, "CudaExecutor: " + *why);
  if (o.compute != DType::kBF16 && o.compute != DType::kF32)
    return make_error(ErrorCode::kUnsupported,
                      std::string("CudaExecutor: compute dtype ") + dtype_name(o.compute) + " (BF16 or F32)");
  if (o.kv_num_blocks <= 0 || o.kv_block_size <= 0 || o.max_tokens_per_step <= 0 || o.max_rows <= 0 ||
      o.max_logits_rows < 0 || o.max_history < 0 || o.num_adapter_slots < 0 || o.max_adapter_rank < 0 ||
      o.max_adapter_rank > kMaxLoraRank || (o.num_adapter_slots > 0 && o.max_adapter_rank == 0) ||
      o.attention_splits < 0 || o.attention_splits > kMaxAttentionSplits || o.small_gemm < 0 || o.small_gemm > 2)
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
  info.applies_logit_bias = true;  // the sampler adds each row's entries (sampling.h), so min_tokens works too
  info.max_top_logprobs = int32_t(kMaxTopLogprobs);
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

}  // namespace myriad::gpu::cuda
