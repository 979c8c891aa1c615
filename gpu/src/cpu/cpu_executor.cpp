#include "gpu/cpu/cpu_executor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>

#include "gpu/cpu/ops.h"
#include "gpu/cpu/paged_attention.h"
#include "gpu/devices.h"
#include "runtime/log.h"
#include "runtime/moe/router.h"
#include "runtime/plan_validation.h"

namespace myriad::gpu::cpu {
namespace {

WeightView view(const TensorView& t) {
  return {t.dtype, t.data, t.shape.empty() ? 0 : t.shape[0], t.shape.size() < 2 ? 1 : t.shape[1]};
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(size_t(t.nbytes / dtype_size(t.dtype)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
  return v;
}


// Each copied weight starts on a cache line.
size_t line_bytes(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

Result<std::unique_ptr<CpuExecutor>> CpuExecutor::create(std::shared_ptr<const Checkpoint> ckpt,
                                                         const CpuExecutorOptions& o) {
  if (!ckpt) return make_error(ErrorCode::kInvalidArgument, "CpuExecutor: no checkpoint");
  if (o.kv_num_blocks <= 0 || o.kv_block_size <= 0)
    return make_error(ErrorCode::kInvalidArgument, "CpuExecutor: kv_num_blocks (" + std::to_string(o.kv_num_blocks) +
                                                       ") and kv_block_size (" + std::to_string(o.kv_block_size) +
                                                       ") must be positive");
  if (o.num_adapter_slots < 0 || o.max_adapter_rank < 0)
    return make_error(ErrorCode::kInvalidArgument, "CpuExecutor: negative adapter slots or rank");
  if (o.num_adapter_slots > 0 && o.max_adapter_rank <= 0)
    return make_error(ErrorCode::kInvalidArgument, "CpuExecutor: num_adapter_slots " + std::to_string(o.num_adapter_slots) +
                                                       " needs a positive max_adapter_rank");
  const auto& c = ckpt->config();
  if (c.head_dim <= 0 || c.head_dim % 2 != 0)
    return make_error(ErrorCode::kUnsupported, ckpt->dir() + ": head_dim " + std::to_string(c.head_dim) + " is not even");
  if (c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0)
    return make_error(ErrorCode::kUnsupported, ckpt->dir() + ": num_attention_heads " + std::to_string(c.num_heads) +
                                                   " is not a multiple of num_key_value_heads " +
                                                   std::to_string(c.num_kv_heads));
  const size_t kv_bytes = size_t(o.kv_num_blocks) * size_t(o.kv_block_size) *
                          KvCache::bytes_per_token(c.num_layers, c.kv_dim(), kv_dtype_for(*ckpt, o));
  if (kv_bytes > (size_t(1) << 40))
    return make_error(ErrorCode::kResourceExhausted, "CpuExecutor: KV cache of " + std::to_string(kv_bytes) + " bytes");
  HugePageBuffer copy;
  if (o.weight_placement != WeightPlacement::kMapped) {
    const size_t bytes = linear_weight_bytes(*ckpt);
    if (o.weight_placement == WeightPlacement::kCopy || bytes <= mem_available_bytes() / 2) {
      auto buf = HugePageBuffer::allocate(bytes);
      if (buf.ok()) {
        copy = std::move(*buf);
      } else if (o.weight_placement == WeightPlacement::kCopy) {
        return buf.error();
      }  // kAuto: read the mapping in place
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto ex = std::unique_ptr<CpuExecutor>(new CpuExecutor(std::move(ckpt), o, std::move(copy)));
  const ExecutorInfo& info = ex->info();
  const std::string slots = info.num_adapter_slots == 0
                                ? std::string("no adapter slots")
                                : fmt::format("{} adapter slots up to rank {} ({})", info.num_adapter_slots,
                                              info.max_adapter_rank, dtype_name(ex->slots_->storage()));
  log_info("executor: {}; {} KV blocks of {} tokens ({:.2f} MiB); {}; ready in {:.3f} s", info.device,
           info.kv_num_blocks, info.kv_block_size, double(kv_bytes) / double(1 << 20), slots,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return ex;
}

DType CpuExecutor::kv_dtype_for(const Checkpoint& ck, const CpuExecutorOptions& o) {
  if (o.kv_dtype) return *o.kv_dtype;
  return ck.layers().empty() ? DType::kF32 : ck.layers()[0].q.dtype;
}

size_t CpuExecutor::linear_weight_bytes(const Checkpoint& ck) {
  size_t total = line_bytes(ck.lm_head().nbytes);
  for (const auto& l : ck.layers())
    for (int m = 0; m < kNumLinearModules; ++m) total += line_bytes(l.linear(LinearModule(m)).nbytes);
  return total;
}

void CpuExecutor::copy_linear_weights() {
  std::vector<WeightView*> views;
  for (Layer& l : layers_)
    for (WeightView* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) views.push_back(w);
  views.push_back(&lm_head_);
  std::vector<size_t> offsets;
  size_t off = 0;
  for (const WeightView* w : views) {
    offsets.push_back(off);
    off += line_bytes(w->bytes());
  }
  MYRIAD_CHECK(off <= weight_copy_.size(), "weight copy buffer too small");
  auto* base = static_cast<std::byte*>(weight_copy_.data());
  // In 1 MiB pieces over the pool: first touch faults the huge pages in.
  constexpr size_t kPiece = size_t(1) << 20;
  struct Piece {
    const std::byte* src;
    std::byte* dst;
    size_t n;
  };
  std::vector<Piece> pieces;
  for (size_t i = 0; i < views.size(); ++i) {
    const auto* src = static_cast<const std::byte*>(views[i]->data);
    const size_t n = views[i]->bytes();
    for (size_t p = 0; p < n; p += kPiece) pieces.push_back({src + p, base + offsets[i] + p, n - p < kPiece ? n - p : kPiece});
  }
  pool_.parallel_for(int64_t(pieces.size()), 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) std::memcpy(pieces[size_t(i)].dst, pieces[size_t(i)].src, pieces[size_t(i)].n);
  });
  for (size_t i = 0; i < views.size(); ++i) views[i]->data = base + offsets[i];
}

CpuExecutor::CpuExecutor(std::shared_ptr<const Checkpoint> ckpt, const CpuExecutorOptions& o,
                         HugePageBuffer weight_copy)
    : ckpt_(std::move(ckpt)),
      options_(o),
      pool_(o.threads),
      kv_(ckpt_->config().num_layers, o.kv_num_blocks, o.kv_block_size, ckpt_->config().kv_dim(),
          kv_dtype_for(*ckpt_, o)) {
  const auto& c = ckpt_->config();
  info_.vocab_size = int32_t(c.vocab_size);
  info_.kv_block_size = o.kv_block_size;
  info_.kv_num_blocks = o.kv_num_blocks;
  info_.num_adapter_slots = o.num_adapter_slots;
  info_.max_adapter_rank = o.max_adapter_rank;
  for (const auto& lw : ckpt_->layers()) {
    Layer l;
    l.input_norm = to_f32(lw.input_norm);
    l.post_attn_norm = to_f32(lw.post_attn_norm);
    if (lw.q_bias.data) l.q_bias = to_f32(lw.q_bias);
    if (lw.k_bias.data) l.k_bias = to_f32(lw.k_bias);
    if (lw.v_bias.data) l.v_bias = to_f32(lw.v_bias);
    if (lw.o_bias.data) l.o_bias = to_f32(lw.o_bias);
    l.q = view(lw.q);
    l.k = view(lw.k);
    l.v = view(lw.v);
    l.o = view(lw.o);
    l.gate = view(lw.gate);
    l.up = view(lw.up);
    l.down = view(lw.down);
    layers_.push_back(std::move(l));
  }
  final_norm_ = to_f32(ckpt_->final_norm());
  embed_ = view(ckpt_->embed_tokens());
  lm_head_ = view(ckpt_->lm_head());
  weight_copy_ = std::move(weight_copy);
  if (weight_copy_.data()) copy_linear_weights();
  {
    const size_t huge = weights_copied() ? weight_copy_.huge_pages_granted() : 0;
    info_.device = "cpu (" + std::to_string(pool_.size()) + " threads, " + matmul_kernel_name() + ", weights " +
                   (weights_copied() ? "copied, " + std::to_string(huge >> 20) + " MiB in huge pages" : "mapped") +
                   ", KV " + dtype_name(kv_.dtype()) + ")";
  }
  info_.routes_in_prefill = o.num_adapter_slots > 0;
  info_.max_top_logprobs = int32_t(kMaxTopLogprobs);
  info_.applies_logit_bias = true;
  info_.hidden_size = int32_t(c.hidden_size);
  info_.num_layers = int32_t(c.num_layers);
  inv_freq_ = rope_inv_freq(c);
  if (c.use_sliding_window && c.sliding_window) window_ = *c.sliding_window;
  if (o.num_adapter_slots > 0) {
    slots_ = std::make_unique<CpuLoraSlots>(c, o.num_adapter_slots, o.max_adapter_rank, &pool_,
                                            adapter_slot_dtype(o, ckpt_->dtype()));
    lora_ = slots_.get();
  }
}

Status CpuExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) {
  if (!slots_) {
    return make_error(ErrorCode::kUnsupported, "CpuExecutor: no adapter slots (num_adapter_slots is 0); cannot load "
                                               "into slot " + std::to_string(slot));
  }
  return slots_->begin_load(slot, std::move(weights), std::move(done));
}
bool CpuExecutor::adapter_ready(int32_t slot) const { return slots_ && slots_->ready(slot); }
void CpuExecutor::unload_adapter(int32_t slot) {
  if (slots_) slots_->unload(slot);
}

Status CpuExecutor::validate(const StepPlan& plan) const {
  // A test's own LoRA hook takes any slot in range; the slots need a finished load.
  return validate_plan(plan, info(), [this](int32_t s) { return lora_ && (lora_ != slots_.get() || slots_->ready(s)); });
}

void CpuExecutor::lora(int layer, LinearModule m, const float* x, float* y) {
  if (lora_ && any_adapter_) lora_->apply(layer, m, x, y, mix_);
}
void CpuExecutor::lora_group(int layer, std::span<const LinearModule> ms, const float* x,
                             std::span<float* const> ys) {
  if (lora_ && any_adapter_) lora_->apply_group(layer, ms, x, ys, mix_);
}

// Per-token ops (norms, RoPE + K/V writes, residuals): split over the
// threads from 4 tokens on (at batch 8 they were ~5% of a step with the
// other thread idle), in chunks of at most 16 tokens; inline below that.
int64_t CpuExecutor::token_grain() const {
  return T_ < 4 ? T_ : std::min<int64_t>(16, (T_ + pool_.size() - 1) / pool_.size());
}

Status CpuExecutor::embed() {
  embedding(embed_, tokens_.data(), T_, x_.data());
  return ok_status();
}

Status CpuExecutor::attn_norm(int li) {
  const auto& c = ckpt_->config();
  const int64_t H = c.hidden_size;
  const Layer& L = layers_[size_t(li)];
  // The previous layer's MLP residual (its down_proj output in o_) is added
  // here, in the same region as this layer's norm.
  pool_.parallel_for(T_, token_grain(), [&](int64_t b, int64_t e, int) {
    if (li > 0)
      for (int64_t i = b * H; i < e * H; ++i) x_[size_t(i)] += o_[size_t(i)];
    rmsnorm(x_.data() + b * H, L.input_norm.data(), e - b, H, c.rms_norm_eps, h_.data() + b * H);
  });
  return ok_status();
}

Status CpuExecutor::qkv(int li) {
  const auto& c = ckpt_->config();
  const Layer& L = layers_[size_t(li)];
  const MatmulTarget qkv[] = {{L.q, q_.data()}, {L.k, k_.data()}, {L.v, v_.data()}};
  matmul_many(pool_, h_.data(), T_, qkv);
  if (!L.q_bias.empty()) add_bias(q_.data(), L.q_bias.data(), T_, c.q_dim());
  if (!L.k_bias.empty()) add_bias(k_.data(), L.k_bias.data(), T_, c.kv_dim());
  if (!L.v_bias.empty()) add_bias(v_.data(), L.v_bias.data(), T_, c.kv_dim());
  constexpr LinearModule kQkv[] = {LinearModule::kQ, LinearModule::kK, LinearModule::kV};
  float* const qkv_out[] = {q_.data(), k_.data(), v_.data()};
  lora_group(li, kQkv, h_.data(), qkv_out);
  return ok_status();
}

Status CpuExecutor::rope_and_cache(int li) {
  const auto& c = ckpt_->config();
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), hd = c.head_dim, half = hd / 2;
  const StepPlan& plan = *plan_;
  pool_.parallel_for(T_, token_grain(), [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      const float* cs = cos_.data() + t * half;
      const float* sn = sin_.data() + t * half;
      rope_apply(q_.data() + t * qd, c.num_heads, hd, cs, sn);
      rope_apply(k_.data() + t * kvd, c.num_kv_heads, hd, cs, sn);
      const SeqRow& r = plan.rows[size_t(row_of_[size_t(t)])];
      kv_.write(li, plan.block_ids.data() + r.block_offset, pos_[size_t(t)], k_.data() + t * kvd, v_.data() + t * kvd);
    }
  });
  return ok_status();
}

Status CpuExecutor::attention(int li) {
  const auto& c = ckpt_->config();
  const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, window_};
  paged_attention(pool_, kv_, li, shape, attn_rows_, q_.data(), attn_.data());
  return ok_status();
}

Status CpuExecutor::out_proj(int li) {
  const Layer& L = layers_[size_t(li)];
  matmul(pool_, attn_.data(), T_, L.o, o_.data());
  if (!L.o_bias.empty()) add_bias(o_.data(), L.o_bias.data(), T_, ckpt_->config().hidden_size);
  lora(li, LinearModule::kO, attn_.data(), o_.data());
  return ok_status();
}

Status CpuExecutor::mlp_norm(int li) {
  const auto& c = ckpt_->config();
  const int64_t H = c.hidden_size;
  const Layer& L = layers_[size_t(li)];
  pool_.parallel_for(T_, token_grain(), [&](int64_t b, int64_t e, int) {
    for (int64_t i = b * H; i < e * H; ++i) x_[size_t(i)] += o_[size_t(i)];
    rmsnorm(x_.data() + b * H, L.post_attn_norm.data(), e - b, H, c.rms_norm_eps, h_.data() + b * H);
  });
  return ok_status();
}

Status CpuExecutor::gate_up(int li) {
  const Layer& L = layers_[size_t(li)];
  const MatmulTarget gu[] = {{L.gate, gate_.data()}, {L.up, up_.data()}};
  matmul_many(pool_, h_.data(), T_, gu);
  constexpr LinearModule kGateUp[] = {LinearModule::kGate, LinearModule::kUp};
  float* const gate_up_out[] = {gate_.data(), up_.data()};
  lora_group(li, kGateUp, h_.data(), gate_up_out);
  return ok_status();
}

Status CpuExecutor::act(int /*layer*/) {
  const int64_t I = ckpt_->config().intermediate_size;
  // SiLU-mul by elements: two halves of a batch-8 step's 16k, none of a
  // decode's 2k, 4 chunks a thread of a prefill's.
  const int64_t silu_grain = std::max<int64_t>(8192, pool_.grain_for(T_ * I, 4, 16));
  pool_.parallel_for(T_ * I, silu_grain, [&](int64_t b, int64_t e, int) {
    silu_mul(gate_.data() + b, up_.data() + b, e - b, gate_.data() + b);
  });
  return ok_status();
}

Status CpuExecutor::down(int li) {
  matmul(pool_, gate_.data(), T_, layers_[size_t(li)].down, o_.data());
  lora(li, LinearModule::kDown, gate_.data(), o_.data());
  // The residual x += o_ is left to the next layer's attn_norm, or for the
  // last layer to head(), for the rows that need logits only.
  return ok_status();
}

// Logits at the positions logits_positions() names (the last layer's MLP
// residual is added for those rows only).
Status CpuExecutor::head() {
  const auto& c = ckpt_->config();
  const int64_t H = c.hidden_size, V = c.vocab_size;
  logits_positions(*plan_, logit_tokens_);
  const int64_t P = int64_t(logit_tokens_.size());
  if (P == 0) return ok_status();
  if (lh_.size() < size_t(P * H)) lh_.resize(size_t(P * H));
  if (logits_.size() < size_t(P * V)) logits_.resize(size_t(P * V));
  for (int64_t p = 0; p < P; ++p) {
    const float* xr = x_.data() + logit_tokens_[size_t(p)] * H;
    const float* orow = o_.data() + logit_tokens_[size_t(p)] * H;
    float* dst = lh_.data() + p * H;
    if (layers_.empty()) {
      std::memcpy(dst, xr, size_t(H) * sizeof(float));
    } else {
      for (int64_t i = 0; i < H; ++i) dst[i] = xr[i] + orow[i];
    }
  }
  rmsnorm(lh_.data(), final_norm_.data(), P, H, c.rms_norm_eps, lh_.data());
  matmul(pool_, lh_.data(), P, lm_head_, logits_.data());
  return ok_status();
}

// Rows routed in their prefill whose router reads the hidden state after
// `layers_done` layers: their routed tokens' mean hidden state (the residual
// stream: x_ plus the previous layer's MLP output, still in o_), normalised
// as moe::hidden_embed does, picks their experts; the chosen slots apply to
// the row's tokens from this layer on.
Status CpuExecutor::after_layers(int layers_done) {
  const StepPlan& plan = *plan_;
  if (plan.routes.empty()) return ok_status();
  const int64_t H = ckpt_->config().hidden_size;
  route_embedding_.resize(size_t(H));
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    if (r.route < 0) continue;
    const RowRoute& route = plan.routes[size_t(r.route)];
    const PrefillRouter& router = *route.router;
    if (router.layer != layers_done) continue;
    const int64_t first = attn_rows_[i].token_begin + route.first_token, n = route.num_tokens;
    const double inv_n = 1.0 / double(n);
    double norm = 0;
    for (int64_t k = 0; k < H; ++k) {
      double sum = 0;
      for (int64_t t = first; t < first + n; ++t)
        sum += double(x_[size_t(t * H + k)]) + (layers_done > 0 ? double(o_[size_t(t * H + k)]) : 0.0);
      const float mean = float(sum * inv_n);
      route_embedding_[size_t(k)] = mean;
      norm += double(mean) * double(mean);
    }
    const float inv_norm = norm > 0 ? float(1.0 / std::sqrt(norm)) : 0.0f;
    for (float& v : route_embedding_) v *= inv_norm;
    auto choices = moe::route(route_embedding_, router.centroids, router.num_experts(), router.cosine,
                              moe::RoutingOptions{router.top_k, router.temperature});
    if (!choices.ok()) return choices.error();
    AdapterMix mix;
    RoutedRow& out = routed_.emplace_back();
    out.row = uint32_t(i);
    for (const moe::ExpertChoice& c : choices.value()) {
      mix.refs[mix.count++] = {route.expert_slots[size_t(c.expert)], float(c.weight)};
      out.weights[size_t(c.expert)] = float(c.weight);
      out.similarities[size_t(c.expert)] = float(c.similarity);
    }
    for (int64_t t = attn_rows_[i].token_begin; t < attn_rows_[i].token_begin + r.num_tokens; ++t) mix_[size_t(t)] = mix;
  }
  return ok_status();
}

Status CpuExecutor::step(const StepPlan& plan, StepResult& out) {
  const auto t0 = std::chrono::steady_clock::now();  // the CPU is the device: its step time is wall time
  out.clear();
  MYRIAD_TRY(validate(plan));
  const auto& c = ckpt_->config();
  const int64_t H = c.hidden_size, V = c.vocab_size, half = c.head_dim / 2;
  int64_t T = 0;
  for (const SeqRow& r : plan.rows) T += r.num_tokens;
  if (T == 0) return ok_status();

  auto grow = [](std::vector<float>& v, int64_t n) {
    if (v.size() < size_t(n)) v.resize(size_t(n));
  };
  grow(x_, T * H);
  grow(h_, T * H);
  grow(o_, T * H);
  grow(q_, T * c.q_dim());
  grow(attn_, T * c.q_dim());
  grow(k_, T * c.kv_dim());
  grow(v_, T * c.kv_dim());
  grow(gate_, T * c.intermediate_size);
  grow(up_, T * c.intermediate_size);
  grow(cos_, T * half);
  grow(sin_, T * half);
  pos_.resize(size_t(T));
  row_of_.resize(size_t(T));
  tokens_.resize(size_t(T));
  mix_.clear();
  any_adapter_ = false;
  {
    int64_t t = 0;
    for (size_t i = 0; i < plan.rows.size(); ++i) {
      const SeqRow& r = plan.rows[i];
      any_adapter_ |= r.adapters.count > 0 || r.route >= 0;
      for (uint32_t j = 0; j < r.num_tokens; ++j, ++t) {
        pos_[size_t(t)] = int64_t(r.start_pos) + j;
        row_of_[size_t(t)] = int32_t(i);
        tokens_[size_t(t)] = plan.tokens[r.token_offset + j];
      }
    }
  }
  if (lora_ && any_adapter_) {
    for (int64_t t = 0; t < T; ++t) mix_.push_back(plan.rows[size_t(row_of_[size_t(t)])].adapters);
  }
  for (int64_t t = 0; t < T; ++t)
    rope_cos_sin(pos_[size_t(t)], inv_freq_.data(), half, cos_.data() + t * half, sin_.data() + t * half);
  attn_rows_.clear();
  {
    int64_t first = 0;
    for (const SeqRow& r : plan.rows) {
      attn_rows_.push_back({first, int32_t(r.num_tokens), r.start_pos, plan.block_ids.data() + r.block_offset});
      first += r.num_tokens;
    }
  }
  plan_ = &plan;
  T_ = T;
  routed_.clear();
  const Status forward = run_llama_forward(*this, int(layers_.size()));
  plan_ = nullptr;
  MYRIAD_TRY(forward);
  std::sort(routed_.begin(), routed_.end(), [](const RoutedRow& a, const RoutedRow& b) { return a.row < b.row; });
  out.routed.assign(routed_.begin(), routed_.end());
  const int64_t P = int64_t(logit_tokens_.size());
  if (P == 0) {
    out.device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    return ok_status();
  }

  // Hand out logits in row order and collect the rows to sample.
  sample_jobs_.clear();
  int64_t p = 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    int64_t n = 0;
    if (r.logits == LogitsRequest::kAll) {
      n = r.num_tokens;
    } else if (r.logits == LogitsRequest::kLast || r.sample) {
      n = 1;
    }
    if (n == 0) continue;
    if (r.logits != LogitsRequest::kNone) {
      const int64_t first = r.logits == LogitsRequest::kAll ? p : p + n - 1;
      const int64_t count = r.logits == LogitsRequest::kAll ? n : 1;
      out.logits.insert(out.logits.end(), logits_.begin() + first * V, logits_.begin() + (first + count) * V);
      for (int64_t j = 0; j < count; ++j) out.logits_rows.push_back(uint32_t(i));
    }
    if (r.sample) sample_jobs_.push_back({uint32_t(i), p + n - 1});
    p += n;
  }
  // Sampling (a vocabulary-wide pass or sort per row) in parallel over rows.
  if (!sample_jobs_.empty()) {
    if (samplers_.size() < size_t(pool_.size())) {
      samplers_.resize(size_t(pool_.size()));
    }
    sampled_.resize(sample_jobs_.size());
    pool_.parallel_for(int64_t(sample_jobs_.size()), 1, [&](int64_t b, int64_t e, int w) {
      for (int64_t j = b; j < e; ++j) {
        const SeqRow& r = plan.rows[sample_jobs_[size_t(j)].row];
        const float* last = logits_.data() + sample_jobs_[size_t(j)].logits_pos * V;
        const std::span<const int32_t> hist(plan.history.data() + r.history_offset, r.history_len);
        const std::span<const LogitBias> bias(plan.logit_bias.data() + r.bias_offset, r.bias_count);
        sampled_[size_t(j)] =
            samplers_[size_t(w)].sample(last, V, r.sampling, r.output_index, hist, r.prompt_len, bias);
      }
    });
    for (size_t j = 0; j < sample_jobs_.size(); ++j)
      out.add_sampled(plan.rows[sample_jobs_[j].row].seq, sampled_[j].token, sampled_[j].logprob, sampled_[j].top.view());
  }
  out.device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return ok_status();
}

}  // namespace myriad::gpu::cpu
