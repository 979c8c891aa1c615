// LlamaLoraTrainer (lora_trainer.h): forward with saved activations, masked
// cross-entropy, backward into each row's adapter.
#include "gpu/cpu/lora_trainer.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "gpu/cpu/ops.h"
#include "gpu/cpu/train_kernels.h"
#include "runtime/training/training_batch.h"

namespace myriad::gpu::cpu {

namespace {

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
  return v;
}

WeightView weight_view(const TensorView& t) { return WeightView{t.dtype, t.data, t.shape[0], t.shape[1]}; }

constexpr int64_t kHeadChunk = 256;  // logits positions computed at once (bounds [P, vocab])
// lm_head rows one head unit reads: 3 MB of a 32k x 768 bf16 head, about
// one linear's chunk's time, not the whole 49 MB at once.
constexpr int64_t kHeadSlice = 2048;
constexpr int64_t kHeadLossPositions = 32;  // positions of one cross-entropy unit (each reads a vocabulary of logits)

// Rows [r0, r1) of a weight, as a weight of their own.
WeightView weight_rows(const WeightView& w, int64_t r0, int64_t r1) {
  return WeightView{w.dtype, static_cast<const char*>(w.data) + size_t(r0 * w.cols) * dtype_size(w.dtype), r1 - r0,
                    w.cols};
}


}  // namespace

template <class Real>
LlamaLoraTrainer<Real>::LlamaLoraTrainer(std::shared_ptr<const Checkpoint> ckpt, ThreadPool& pool)
    : ckpt_(std::move(ckpt)), pool_(pool) {
  const ModelConfig& c = ckpt_->config();
  for (const LayerWeights& lw : ckpt_->layers()) {
    Layer L;
    L.input_norm = to_f32(lw.input_norm);
    L.post_attn_norm = to_f32(lw.post_attn_norm);
    if (lw.q_bias.data) L.q_bias = to_f32(lw.q_bias);
    if (lw.k_bias.data) L.k_bias = to_f32(lw.k_bias);
    if (lw.v_bias.data) L.v_bias = to_f32(lw.v_bias);
    if (lw.o_bias.data) L.o_bias = to_f32(lw.o_bias);
    for (int m = 0; m < kNumLinearModules; ++m) L.w[m] = weight_view(lw.linear(LinearModule(m)));
    layers_.push_back(std::move(L));
  }
  final_norm_ = to_f32(ckpt_->final_norm());
  embed_ = weight_view(ckpt_->embed_tokens());
  lm_head_ = weight_view(ckpt_->lm_head());
  inv_freq_ = rope_inv_freq(c);
  if (c.use_sliding_window && c.sliding_window) window_ = *c.sliding_window;
  lora_parallel_ = [this](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    pool_.parallel_for(n, 1, [&](int64_t b, int64_t e, int) { body(b, e); });
  };
}

template <class Real>
Status LlamaLoraTrainer<Real>::validate(std::span<const TrainingRow> rows,
                                        std::span<TrainingJobTensors<Real>> jobs) const {
  return check_training_batch(ckpt_->config(), rows, jobs);
}

template <class Real>
void LlamaLoraTrainer<Real>::resize(Acts& a) const {
  const ModelConfig& c = ckpt_->config();
  const size_t T = size_t(T_), H = size_t(c.hidden_size), I = size_t(c.intermediate_size);
  const size_t Q = size_t(c.q_dim()), KV = size_t(c.kv_dim());
  a.x_in.resize(T * H);
  a.r1.resize(T);
  a.h1.resize(T * H);
  a.q.resize(T * Q);
  a.k.resize(T * KV);
  a.v.resize(T * KV);
  a.lse.resize(T * size_t(c.num_heads));
  a.attn.resize(T * Q);
  a.x_mid.resize(T * H);
  a.r2.resize(T);
  a.h2.resize(T * H);
  a.g.resize(T * I);
  a.u.resize(T * I);
  a.act.resize(T * I);
  for (auto& z : a.z) z.assign(T * size_t(rmax_), Real(0));
}

template <class Real>
void LlamaLoraTrainer<Real>::prepare(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs) {
  const ModelConfig& c = ckpt_->config();
  jobs_ = jobs;
  T_ = 0;
  for (const auto& r : rows) T_ += int64_t(r.tokens->size());
  tokens_.clear();
  job_of_.clear();
  pos_.clear();
  rows_.clear();
  job_spans_.assign(jobs.size(), {});
  for (const auto& r : rows) {
    const int64_t b = int64_t(tokens_.size());
    for (size_t i = 0; i < r.tokens->size(); ++i) {
      tokens_.push_back((*r.tokens)[i]);
      job_of_.push_back(r.job);
      pos_.push_back(int64_t(i));
    }
    rows_.push_back({b, int64_t(tokens_.size()), r.job, r.targets});
    auto& spans = job_spans_[size_t(r.job)];
    if (!spans.empty() && spans.back().second == b) {
      spans.back().second = int64_t(tokens_.size());  // contiguous with the job's previous row: one run
    } else {
      spans.emplace_back(b, int64_t(tokens_.size()));
    }
  }
  if constexpr (std::is_same_v<Real, float>) {
    // One plan per chunk of kUnitTokens tokens (rows relative to the chunk).
    const int64_t chunks = (T_ + kUnitTokens - 1) / kUnitTokens;
    lora_plans_.resize(size_t(chunks));
    std::vector<AdapterMix> per_token;
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t t0 = ch * kUnitTokens, t1 = std::min(T_, t0 + kUnitTokens);
      per_token.assign(size_t(t1 - t0), AdapterMix{});
      for (int64_t t = t0; t < t1; ++t) per_token[size_t(t - t0)] = AdapterMix::single(job_of_[size_t(t)]);
      lora_plans_[size_t(ch)].build(per_token);
    }
  }
  rmax_ = 0;
  for (const auto& j : jobs)
    if (j.params)
      for (const auto& m : j.params->modules) rmax_ = std::max<int64_t>(rmax_, m.rank);
  // Bᵀ of every adapted module of every job in the step (this step's
  // values), made layer by layer in the layer's first forward unit.
  bt_.resize(jobs.size() * size_t(c.num_layers) * kNumLinearModules);
  bt_ready_.assign(size_t(c.num_layers), 0);
  const int64_t half = c.head_dim / 2;
  cos_.resize(size_t(T_ * half));
  sin_.resize(size_t(T_ * half));
  for (int64_t t = 0; t < T_; ++t) {
    if constexpr (std::is_same_v<Real, float>) {
      rope_cos_sin(pos_[size_t(t)], inv_freq_.data(), half, cos_.data() + t * half, sin_.data() + t * half);
    } else {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(pos_[size_t(t)]) * double(inv_freq_[size_t(i)]);
        cos_[size_t(t * half + i)] = std::cos(angle);
        sin_[size_t(t * half + i)] = std::sin(angle);
      }
    }
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::base_matmul(const WeightView& w, const Real* x, int64_t T, Real* y) {
  if constexpr (std::is_same_v<Real, float>) {
    matmul(pool_, x, T, w, y);
  } else {
    pool_.parallel_for(T, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        for (int64_t o = 0; o < w.rows; ++o) {
          double s = 0;
          for (int64_t i = 0; i < w.cols; ++i) s += x[t * w.cols + i] * double(weight_at(w, o * w.cols + i));
          y[t * w.rows + o] = s;
        }
    });
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::base_input_grad(const WeightView& w, const Real* dy, int64_t T, Real* dx) {
  if constexpr (std::is_same_v<Real, float>) {
    if (!cache_transposed_ || T < 16) {
      train::matmul_input_grad(pool_, dy, T, w, dx, /*accumulate=*/true);
      return;
    }
    auto it = transposed_.find(w.data);
    if (it == transposed_.end()) {
      it = transposed_.emplace(w.data, std::pair<WeightView, std::vector<uint32_t>>{}).first;
      it->second.first = train::transpose_weight(pool_, w, it->second.second);
    }
    train::matmul_input_grad(pool_, dy, T, w, it->second.first, dx, /*accumulate=*/true);
  } else {
    pool_.parallel_for(T, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        for (int64_t i = 0; i < w.cols; ++i) {
          double s = 0;
          for (int64_t o = 0; o < w.rows; ++o) s += dy[t * w.rows + o] * double(weight_at(w, o * w.cols + i));
          dx[t * w.cols + i] += s;
        }
    });
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::transpose_b(int l) {
  if (bt_ready_[size_t(l)]) return;
  bt_ready_[size_t(l)] = 1;
  const size_t nl = layers_.size();
  for (size_t j = 0; j < jobs_.size(); ++j) {
    if (!jobs_[j].params || job_spans_[j].empty()) continue;
    for (int m = 0; m < kNumLinearModules; ++m) {
      const auto& p = jobs_[j].params->at(l, LinearModule(m));
      if (p.rank == 0) continue;
      const int64_t r = p.rank, out = int64_t(p.b.size()) / r;
      auto& bt = bt_[(j * nl + size_t(l)) * kNumLinearModules + size_t(m)];
      bt.resize(p.b.size());
      for (int64_t o = 0; o < out; ++o)
        for (int64_t k = 0; k < r; ++k) bt[size_t(k * out + o)] = p.b[size_t(o * r + k)];
    }
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::set_lora_views(int l, LinearModule m, bool backward) {
  if constexpr (std::is_same_v<Real, float>) {  // the double path keeps its loops
    lora_views_.assign(jobs_.size(), LoraModuleView{});
    for (size_t j = 0; j < jobs_.size(); ++j) {
      if (job_spans_[j].empty()) continue;
      const auto& p = jobs_[j].params->at(l, m);
      const float* bt = b_transposed(int32_t(j), l, m);
      // Backward: dz = s·Bᵀ dy and dx += dz·A, the same kernel with A and Bᵀ swapped.
      lora_views_[j] = backward ? LoraModuleView{bt, p.a.data(), p.rank, p.scale, DType::kF32}
                                : LoraModuleView{p.a.data(), bt, p.rank, p.scale, DType::kF32};
    }
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::linear_rows(int l, LinearModule m, const Real* x, Real* y, Real* z, int64_t c) {
  const WeightView& w = layers_[size_t(l)].w[int(m)];
  const int64_t in = w.cols, out = w.rows;
  const int64_t t0 = c * kUnitTokens, t1 = std::min(T_, t0 + kUnitTokens);
  base_matmul(w, x + t0 * in, t1 - t0, y + t0 * out);
  const Layer& L = layers_[size_t(l)];
  const std::vector<float>* bias = m == LinearModule::kQ   ? &L.q_bias
                                   : m == LinearModule::kK ? &L.k_bias
                                   : m == LinearModule::kV ? &L.v_bias
                                   : m == LinearModule::kO ? &L.o_bias
                                                           : nullptr;
  if (bias && !bias->empty()) {
    pool_.parallel_for(t1 - t0, 16, [&](int64_t b, int64_t e, int) {
      for (int64_t t = t0 + b; t < t0 + e; ++t)
        for (int64_t o = 0; o < out; ++o) y[t * out + o] += Real((*bias)[size_t(o)]);
    });
  }
  if (rmax_ == 0) return;
  if constexpr (std::is_same_v<Real, float>) {
    set_lora_views(l, m, /*backward=*/false);
    lora_delta(c, x + t0 * in, in, y + t0 * out, out, z + t0 * rmax_);
    return;
  }
  pool_.parallel_for(t1 - t0, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = t0 + b; t < t0 + e; ++t) {
      Real* yt = y + t * out;
      const auto& p = jobs_[size_t(job_of_[size_t(t)])].params->at(l, m);
      if (p.rank == 0) continue;
      const int64_t r = p.rank;
      Real* zt = z + t * rmax_;
      const Real* xt = x + t * in;
      for (int64_t k = 0; k < r; ++k) zt[k] = p.scale * train::dot(xt, p.a.data() + k * in, in);
      const Real* bt = b_transposed(job_of_[size_t(t)], l, m);
      for (int64_t k = 0; k < r; ++k) {
        const Real zk = zt[k];
        const Real* btk = bt + k * out;
        for (int64_t o = 0; o < out; ++o) yt[o] += zk * btk[o];
      }
    }
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::lora_delta(int64_t c, const float* x, int64_t in, float* y, int64_t out, float* dst) {
  const LoraBatchPlan& plan = lora_plans_[size_t(c)];
  lora_sgmv(plan, lora_views_, x, in, y, out, lora_scratch_, lora_parallel_);
  // The shrink's results, scale (x weight 1) applied, per entry of the plan.
  for (size_t g = 0; g < plan.segments.size(); ++g) {
    const LoraSegment& seg = plan.segments[g];
    const int32_t r = lora_views_[size_t(seg.slot)].rank;
    if (r == 0) continue;
    const float* h = lora_scratch_.h.data() + lora_scratch_.h_offset[g];
    for (uint32_t e = seg.begin; e < seg.end; ++e, h += r) std::copy_n(h, r, dst + int64_t(plan.rows[e]) * rmax_);
  }
}

// y = W x + s B (A x): dx += Wᵀ dy + Aᵀ dz with dz = s Bᵀ dy; dB += dy zᵀ (z = s A x, kept); dA += dz xᵀ.
// The input gradient of chunk c's tokens, with their dz (kept in dz_ for
// the module's weight_grads).
template <class Real>
void LlamaLoraTrainer<Real>::input_grad_rows(int l, LinearModule m, const Real* dy, Real* dx, int64_t c) {
  const WeightView& w = layers_[size_t(l)].w[int(m)];
  const int64_t in = w.cols, out = w.rows;
  const int64_t t0 = c * kUnitTokens, t1 = std::min(T_, t0 + kUnitTokens);
  base_input_grad(w, dy + t0 * out, t1 - t0, dx + t0 * in);
  if (rmax_ == 0) return;
  dz_.resize(size_t(T_ * rmax_));
  std::fill(dz_.begin() + t0 * rmax_, dz_.begin() + t1 * rmax_, Real(0));
  if constexpr (std::is_same_v<Real, float>) {
    set_lora_views(l, m, /*backward=*/true);
    lora_delta(c, dy + t0 * out, out, dx + t0 * in, in, dz_.data() + t0 * rmax_);
  } else {
    pool_.parallel_for(t1 - t0, 4, [&](int64_t b, int64_t e, int) {
      for (int64_t t = t0 + b; t < t0 + e; ++t) {
        const auto& p = jobs_[size_t(job_of_[size_t(t)])].params->at(l, m);
        if (p.rank == 0) continue;
        const int64_t r = p.rank;
        Real* dzt = dz_.data() + t * rmax_;
        const Real* dyt = dy + t * out;
        const Real* bt = b_transposed(job_of_[size_t(t)], l, m);
        for (int64_t k = 0; k < r; ++k) dzt[k] = p.scale * train::dot(dyt, bt + k * out, out);
        Real* dxt = dx + t * in;
        for (int64_t k = 0; k < r; ++k) {
          const Real* a = p.a.data() + k * in;
          const Real d = dzt[k];
          for (int64_t i = 0; i < in; ++i) dxt[i] += d * a[i];
        }
      }
    });
  }
}

// Each job's dA and dB: sums over its rows' tokens in row order, split over
// output elements (so no two threads write one element and the order of
// each sum does not depend on the other jobs in the step).
template <class Real>
void LlamaLoraTrainer<Real>::weight_grads(int l, LinearModule m, const Real* x, const Real* z, const Real* dy) {
  const WeightView& w = layers_[size_t(l)].w[int(m)];
  const int64_t in = w.cols, out = w.rows;
  if (rmax_ == 0) return;
  for (size_t j = 0; j < jobs_.size(); ++j) {
    auto& job = jobs_[j];
    if (!job.grads || job_spans_[j].empty()) continue;
    const auto& p = job.params->at(l, m);
    if (p.rank == 0) continue;
    auto& gp = job.grads->at(l, m);
    const int64_t r = p.rank;
    const auto& spans = job_spans_[j];
    pool_.parallel_for(in, 64, [&](int64_t b, int64_t e, int) {
      train::accumulate_outer(spans, dz_.data(), rmax_, r, x, in, b, e, Real(1), gp.a.data(), in);
    });
    // dBᵀ [r, out] first (rows of `out`: vectorised), then added into B's layout.
    dbt_.assign(size_t(r * out), Real(0));
    pool_.parallel_for(out, 256, [&](int64_t b, int64_t e, int) {
      train::accumulate_outer(spans, z, rmax_, r, dy, out, b, e, Real(1), dbt_.data(), out);  // z has s in it
      for (int64_t o = b; o < e; ++o)
        for (int64_t k = 0; k < r; ++k) gp.b[size_t(o * r + k)] += dbt_[size_t(k * out + o)];
    });
  }
}

// Runs of whole rows of about kUnitTokens / 2 tokens (a row longer than that alone):
// attention's units (its cost grows with a row's length squared).
template <class Real>
std::vector<std::pair<int64_t, int64_t>> LlamaLoraTrainer<Real>::row_groups() const {
  std::vector<std::pair<int64_t, int64_t>> groups;
  for (int64_t r = 0; r < int64_t(rows_.size());) {
    int64_t e = r, tokens = 0;
    while (e < int64_t(rows_.size()) && (e == r || tokens + (rows_[size_t(e)].end - rows_[size_t(e)].begin) <=
                                                       kUnitTokens / 2)) {
      tokens += rows_[size_t(e)].end - rows_[size_t(e)].begin;
      ++e;
    }
    groups.emplace_back(r, e);
    r = e;
  }
  return groups;
}

// fn(row, its attention shape, kv head) for every kv head of rows [r0, r1),
// in parallel: attention's tasks (each writes its own part of the outputs).
template <class Real>
template <class Fn>
void LlamaLoraTrainer<Real>::for_each_row_head(int64_t r0, int64_t r1, const Fn& fn) {
  const ModelConfig& c = ckpt_->config();
  const int64_t G = c.num_kv_heads;
  pool_.parallel_for((r1 - r0) * G, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t task = b; task < e; ++task) {
      const Segment& s = rows_[size_t(r0 + task / G)];
      fn(s, train::AttentionShape{s.end - s.begin, c.num_heads, c.num_kv_heads, c.head_dim, window_}, task % G);
    }
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::plan_forward(std::vector<std::function<void()>>& units, int l, const Real* x_in, Acts& a,
                                          Real* x_out) {
  const ModelConfig& c = ckpt_->config();
  const Layer& L = layers_[size_t(l)];
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), half = c.head_dim / 2;
  const double eps = c.rms_norm_eps;
  const int64_t chunks = (T_ + kUnitTokens - 1) / kUnitTokens;
  Acts* ap = &a;
  auto each_chunk = [&](LinearModule m, const Real* x, Real* y) {
    Real* z = ap->z[int(m)].data();
    for (int64_t ch = 0; ch < chunks; ++ch) units.push_back([this, l, m, x, y, z, ch] { linear_rows(l, m, x, y, z, ch); });
  };
  units.push_back([this, l, &L, x_in, ap, H, eps] {
    transpose_b(l);
    std::copy(x_in, x_in + T_ * H, ap->x_in.begin());
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        ap->r1[size_t(t)] = train::rmsnorm_row(x_in + t * H, L.input_norm.data(), H, eps, ap->h1.data() + t * H);
    });
  });
  each_chunk(LinearModule::kQ, a.h1.data(), a.q.data());
  each_chunk(LinearModule::kK, a.h1.data(), a.k.data());
  each_chunk(LinearModule::kV, a.h1.data(), a.v.data());
  units.push_back([this, &c, ap, Q, KV, half] {
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        train::rope_row(ap->q.data() + t * Q, c.num_heads, c.head_dim, cos_.data() + t * half, sin_.data() + t * half);
        train::rope_row(ap->k.data() + t * KV, c.num_kv_heads, c.head_dim, cos_.data() + t * half,
                        sin_.data() + t * half);
      }
    });
  });
  for (const auto& [r0, r1] : row_groups())
    units.push_back([this, &c, ap, Q, KV, r0, r1] {
      for_each_row_head(r0, r1, [&](const Segment& s, const train::AttentionShape& shape, int64_t kv_head) {
        train::attention_forward(shape, kv_head, ap->q.data() + s.begin * Q, ap->k.data() + s.begin * KV,
                                 ap->v.data() + s.begin * KV, ap->attn.data() + s.begin * Q,
                                 ap->lse.data() + s.begin * c.num_heads);
      });
    });
  each_chunk(LinearModule::kO, a.attn.data(), a.x_mid.data());
  units.push_back([this, &L, ap, H, eps] {
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        Real* xm = ap->x_mid.data() + t * H;
        for (int64_t i = 0; i < H; ++i) xm[i] += ap->x_in[size_t(t * H + i)];
        ap->r2[size_t(t)] = train::rmsnorm_row(xm, L.post_attn_norm.data(), H, eps, ap->h2.data() + t * H);
      }
    });
  });
  each_chunk(LinearModule::kGate, a.h2.data(), a.g.data());
  each_chunk(LinearModule::kUp, a.h2.data(), a.u.data());
  units.push_back([this, ap, I] {
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        train::silu_mul_row(ap->g.data() + t * I, ap->u.data() + t * I, I, ap->act.data() + t * I);
    });
  });
  each_chunk(LinearModule::kDown, a.act.data(), x_out);
  units.push_back([this, ap, x_out, H] {
    pool_.parallel_for(T_ * H, 4096, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) x_out[i] += ap->x_mid[size_t(i)];
    });
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::forward_layer(int l, const Real* x_in, Acts& a, Real* x_out) {
  std::vector<std::function<void()>> units;
  plan_forward(units, l, x_in, a, x_out);
  for (auto& u : units) u();
}

// The backward of one linear: its input gradient a chunk of tokens at a
// time, then its weight gradients over all tokens.
template <class Real>
void LlamaLoraTrainer<Real>::plan_linear_backward(int l, LinearModule m, Acts& a, const Real* x, const Real* dy,
                                                  Real* dx) {
  const int64_t chunks = (T_ + kUnitTokens - 1) / kUnitTokens;
  for (int64_t ch = 0; ch < chunks; ++ch) plan_.push_back([this, l, m, dy, dx, ch] { input_grad_rows(l, m, dy, dx, ch); });
  const Real* z = a.z[int(m)].data();
  plan_.push_back([this, l, m, x, z, dy] { weight_grads(l, m, x, z, dy); });
}

// MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2)), h2 = rmsnorm(x_mid);
// attention: x_mid = x_in + o(attention(rope(q(h1)), rope(k(h1)), v(h1))),
// h1 = rmsnorm(x_in). dx_: the gradient of the layer's output on entry, of
// its input after the last unit. The scratch gradients are sized in begin().
template <class Real>
void LlamaLoraTrainer<Real>::plan_backward(int l, Acts& a) {
  const ModelConfig& c = ckpt_->config();
  const Layer& L = layers_[size_t(l)];
  const int64_t I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), half = c.head_dim / 2;
  Acts* ap = &a;
  Real* dx = dx_.data();
  plan_.push_back([this] { std::fill(dtmp_i1_.begin(), dtmp_i1_.end(), Real(0)); });  // d act
  plan_linear_backward(l, LinearModule::kDown, a, a.act.data(), dx, dtmp_i1_.data());
  plan_.push_back([this, ap, I] {
    std::fill(dg_.begin(), dg_.end(), Real(0));
    std::fill(dtmp_i2_.begin(), dtmp_i2_.end(), Real(0));  // d up
    std::fill(dtmp_h_.begin(), dtmp_h_.end(), Real(0));    // d h2
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        train::silu_mul_row_backward(ap->g.data() + t * I, ap->u.data() + t * I, dtmp_i1_.data() + t * I, I,
                                     dg_.data() + t * I, dtmp_i2_.data() + t * I);
    });
  });
  plan_linear_backward(l, LinearModule::kGate, a, a.h2.data(), dg_.data(), dtmp_h_.data());
  plan_linear_backward(l, LinearModule::kUp, a, a.h2.data(), dtmp_i2_.data(), dtmp_h_.data());
  plan_.push_back([this, &L, ap, dx] {
    rmsnorm_backward_rows(ap->x_mid.data(), L.post_attn_norm.data(), ap->r2, dx);
    std::fill(dattn_.begin(), dattn_.end(), Real(0));
  });
  plan_linear_backward(l, LinearModule::kO, a, a.attn.data(), dx, dattn_.data());
  plan_.push_back([this] {
    std::fill(dq_.begin(), dq_.end(), Real(0));
    std::fill(dk_.begin(), dk_.end(), Real(0));
    std::fill(dv_.begin(), dv_.end(), Real(0));
  });
  // Rows (each kv head of each) write disjoint parts of dq, dk, dv.
  for (const auto& [r0, r1] : row_groups())
    plan_.push_back([this, &c, ap, Q, KV, r0, r1] {
      for_each_row_head(r0, r1, [&](const Segment& s, const train::AttentionShape& shape, int64_t kv_head) {
        train::attention_backward(shape, kv_head, ap->q.data() + s.begin * Q, ap->k.data() + s.begin * KV,
                                  ap->v.data() + s.begin * KV, ap->attn.data() + s.begin * Q,
                                  ap->lse.data() + s.begin * c.num_heads, dattn_.data() + s.begin * Q,
                                  dq_.data() + s.begin * Q, dk_.data() + s.begin * KV, dv_.data() + s.begin * KV);
      });
    });
  plan_.push_back([this, &c, Q, KV, half] {
    pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) {
        train::rope_row_backward(dq_.data() + t * Q, c.num_heads, c.head_dim, cos_.data() + t * half,
                                 sin_.data() + t * half);
        train::rope_row_backward(dk_.data() + t * KV, c.num_kv_heads, c.head_dim, cos_.data() + t * half,
                                 sin_.data() + t * half);
      }
    });
    std::fill(dtmp_h_.begin(), dtmp_h_.end(), Real(0));  // d h1
  });
  plan_linear_backward(l, LinearModule::kQ, a, a.h1.data(), dq_.data(), dtmp_h_.data());
  plan_linear_backward(l, LinearModule::kK, a, a.h1.data(), dk_.data(), dtmp_h_.data());
  plan_linear_backward(l, LinearModule::kV, a, a.h1.data(), dv_.data(), dtmp_h_.data());
  plan_.push_back([this, &L, ap, dx] { rmsnorm_backward_rows(ap->x_in.data(), L.input_norm.data(), ap->r1, dx); });
}

template <class Real>
void LlamaLoraTrainer<Real>::rmsnorm_backward_rows(const Real* x, const float* w, const std::vector<Real>& r,
                                                   Real* dx) {
  const int64_t H = ckpt_->config().hidden_size;
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      train::rmsnorm_row_backward(x + t * H, w, r[size_t(t)], dtmp_h_.data() + t * H, H, dx + t * H);
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::plan_head() {
  const int64_t V = ckpt_->config().vocab_size;
  head_positions_.clear();
  for (const Segment& s : rows_)
    for (int64_t t = s.begin; t + 1 < s.end; ++t)
      if ((*s.targets)[size_t(t + 1 - s.begin)]) head_positions_.push_back(t);
  for (size_t c0 = 0; c0 < head_positions_.size(); c0 += size_t(kHeadChunk)) {
    plan_.push_back([this, c0] { head_norm(c0); });
    for (int64_t v0 = 0; v0 < V; v0 += kHeadSlice) plan_.push_back([this, c0, v0] { head_logits(c0, v0); });
    const int64_t P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
    for (int64_t p0 = 0; p0 < P; p0 += kHeadLossPositions)
      plan_.push_back([this, c0, p0, P] { head_cross_entropy(c0, p0, std::min(P, p0 + kHeadLossPositions)); });
    plan_.push_back([this, c0] { head_loss(c0); });
    if (!backward_) continue;
    for (int64_t v0 = 0; v0 < V; v0 += kHeadSlice) plan_.push_back([this, c0, v0] { head_input_grad(c0, v0); });
    plan_.push_back([this, c0] { head_norm_backward(c0); });
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::head_norm(size_t c0) {
  const ModelConfig& c = ckpt_->config();
  const int64_t H = c.hidden_size, P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
  const Real* x_last = xs_.back().data();
  head_x_.resize(size_t(P * H));
  head_r_.resize(size_t(P));
  head_logits_.resize(size_t(P * c.vocab_size));
  head_dlogits_.resize(size_t(P * c.vocab_size));
  head_loss_.resize(size_t(P));
  for (int64_t p = 0; p < P; ++p)
    head_r_[size_t(p)] = train::rmsnorm_row(x_last + head_positions_[c0 + size_t(p)] * H, final_norm_.data(), H,
                                            c.rms_norm_eps, head_x_.data() + p * H);
}

template <class Real>
void LlamaLoraTrainer<Real>::head_logits(size_t c0, int64_t v0) {
  const int64_t V = ckpt_->config().vocab_size, P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
  const int64_t n = std::min(kHeadSlice, V - v0);
  head_slice_.resize(size_t(P * n));
  base_matmul(weight_rows(lm_head_, v0, v0 + n), head_x_.data(), P, head_slice_.data());
  pool_.parallel_for(P, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p)
      std::copy_n(head_slice_.data() + p * n, n, head_logits_.data() + p * V + v0);
  });
}

// Positions [p0, p1) of the chunk: their loss and dlogits.
template <class Real>
void LlamaLoraTrainer<Real>::head_cross_entropy(size_t c0, int64_t p0, int64_t p1) {
  const int64_t V = ckpt_->config().vocab_size;
  pool_.parallel_for(p1 - p0, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t p = p0 + b; p < p0 + e; ++p) {
      const int64_t t = head_positions_[c0 + size_t(p)];
      const auto& job = jobs_[size_t(job_of_[size_t(t)])];
      head_loss_[size_t(p)] = train::cross_entropy_row(head_logits_.data() + p * V, V, tokens_[size_t(t + 1)],
                                                       job.loss_weight, head_dlogits_.data() + p * V);
    }
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::head_loss(size_t c0) {
  const ModelConfig& c = ckpt_->config();
  const int64_t V = c.vocab_size, P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
  for (int64_t p = 0; p < P; ++p) {
    auto& job = jobs_[size_t(job_of_[size_t(head_positions_[c0 + size_t(p)])])];
    job.loss_sum += head_loss_[size_t(p)];
    job.loss_tokens += 1;
    if (!job.grads)  // jobs without gradients contribute none
      std::fill(head_dlogits_.begin() + p * V, head_dlogits_.begin() + (p + 1) * V, Real(0));
  }
  if (backward_) head_dx_.assign(size_t(P * c.hidden_size), Real(0));
}

template <class Real>
void LlamaLoraTrainer<Real>::head_input_grad(size_t c0, int64_t v0) {
  const int64_t V = ckpt_->config().vocab_size, P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
  const int64_t n = std::min(kHeadSlice, V - v0);
  head_slice_.resize(size_t(P * n));
  pool_.parallel_for(P, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t p = b; p < e; ++p)
      std::copy_n(head_dlogits_.data() + p * V + v0, n, head_slice_.data() + p * n);
  });
  base_input_grad(weight_rows(lm_head_, v0, v0 + n), head_slice_.data(), P, head_dx_.data());
}

template <class Real>
void LlamaLoraTrainer<Real>::head_norm_backward(size_t c0) {
  const ModelConfig& c = ckpt_->config();
  const int64_t H = c.hidden_size, P = std::min<int64_t>(kHeadChunk, int64_t(head_positions_.size() - c0));
  const Real* x_last = xs_.back().data();
  for (int64_t p = 0; p < P; ++p) {
    const int64_t t = head_positions_[c0 + size_t(p)];
    train::rmsnorm_row_backward(x_last + t * H, final_norm_.data(), head_r_[size_t(p)], head_dx_.data() + p * H, H,
                                dx_.data() + t * H);
  }
}

template <class Real>
Status LlamaLoraTrainer<Real>::forward_backward(std::span<const TrainingRow> rows,
                                                std::span<TrainingJobTensors<Real>> jobs) {
  MYRIAD_TRY(begin(rows, jobs));
  while (!advance()) {
  }
  return ok_status();
}

template <class Real>
void LlamaLoraTrainer<Real>::embed_tokens(Real* x0) const {
  const int64_t H = ckpt_->config().hidden_size;
  if constexpr (std::is_same_v<Real, float>) {
    embedding(embed_, tokens_.data(), T_, x0);
  } else {
    for (int64_t t = 0; t < T_; ++t)
      for (int64_t i = 0; i < H; ++i) x0[t * H + i] = weight_at(embed_, int64_t(tokens_[size_t(t)]) * H + i);
  }
}

template <class Real>
Status LlamaLoraTrainer<Real>::mean_hidden(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs,
                                           int layers, std::vector<float>& out) {
  MYRIAD_CHECK(!in_flight_, "mean_hidden() while a pass is in flight");
  const ModelConfig& c = ckpt_->config();
  if (layers < 0 || layers > c.num_layers)
    return make_error(ErrorCode::kInvalidArgument,
                      "layer " + std::to_string(layers) + " outside [0, " + std::to_string(c.num_layers) + "]");
  MYRIAD_TRY(validate(rows, jobs));
  prepare(rows, jobs);
  backward_ = keep_all_ = false;
  const int64_t H = c.hidden_size;
  // Two buffers, ping-pong through the layers; begin() sizes them again.
  xs_.resize(std::max<size_t>(xs_.size(), 2));
  for (size_t i = 0; i < 2; ++i) xs_[i].resize(size_t(T_ * H));
  if (acts_.empty()) acts_.resize(1);  // never shrunk (begin())
  resize(acts_[0]);
  embed_tokens(xs_[0].data());
  for (int l = 0; l < layers; ++l) forward_layer(l, xs_[size_t(l % 2)].data(), acts_[0], xs_[size_t((l + 1) % 2)].data());
  const Real* x = xs_[size_t(layers % 2)].data();
  out.assign(rows_.size() * size_t(H), 0.0f);
  for (size_t r = 0; r < rows_.size(); ++r) {
    // The positions the row's targets mark (all of them when none is).
    const Segment& seg = rows_[r];
    const auto& marks = *seg.targets;
    const bool marked = std::any_of(marks.begin(), marks.end(), [](uint8_t m) { return m != 0; });
    int64_t n = 0;
    for (int64_t t = seg.begin; t < seg.end; ++t) n += !marked || marks[size_t(t - seg.begin)] != 0;
    const double inv = 1.0 / double(n);
    for (int64_t i = 0; i < H; ++i) {
      double sum = 0;
      for (int64_t t = seg.begin; t < seg.end; ++t)
        if (!marked || marks[size_t(t - seg.begin)] != 0) sum += double(x[t * H + i]);
      out[r * size_t(H) + size_t(i)] = float(sum * inv);
    }
  }
  return ok_status();
}

template <class Real>
Status LlamaLoraTrainer<Real>::begin(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs) {
  MYRIAD_TRY(validate(rows, jobs));
  prepare(rows, jobs);
  const ModelConfig& c = ckpt_->config();
  const int nl = int(c.num_layers);
  const int64_t H = c.hidden_size;
  backward_ = false;
  for (const auto& j : jobs) backward_ = backward_ || j.grads != nullptr;
  keep_all_ = backward_ && !recompute_;
  xs_.resize(size_t(nl) + 1);
  for (auto& x : xs_) x.resize(size_t(T_ * H));
  // Never shrunk: a forward-only pass between training rounds (a version's
  // eval) would free every layer's activations, which the next round then
  // allocates and zeroes again (80-90 ms for llama-110m, in one unit).
  const size_t kept = keep_all_ ? size_t(nl) : 1;
  if (acts_.size() < kept) acts_.resize(kept);
  for (size_t i = 0; i < kept; ++i) resize(acts_[i]);
  // Embedding (the table is frozen: the backward stops at its output).
  embed_tokens(xs_[0].data());
  activation_bytes_ = 0;
  if (backward_) {
    for (const auto& x : xs_) activation_bytes_ += x.size() * sizeof(Real);
    for (size_t i = 0; i < kept; ++i) {
      const Acts& a = acts_[i];
      for (const auto* v : {&a.x_in, &a.r1, &a.h1, &a.q, &a.k, &a.v, &a.lse, &a.attn, &a.x_mid, &a.r2, &a.h2, &a.g,
                            &a.u, &a.act})
        activation_bytes_ += v->size() * sizeof(Real);
      for (const auto& z : a.z) activation_bytes_ += z.size() * sizeof(Real);
    }
  }
  dx_.assign(size_t(T_ * H), Real(0));
  if (backward_) {  // the backward's scratch gradients, zeroed by the units that start them
    const size_t TH = size_t(T_ * H), TI = size_t(T_ * c.intermediate_size);
    dtmp_i1_.resize(TI);
    dtmp_i2_.resize(TI);
    dg_.resize(TI);
    dtmp_h_.resize(TH);
    dattn_.resize(size_t(T_ * c.q_dim()));
    dq_.resize(size_t(T_ * c.q_dim()));
    dk_.resize(size_t(T_ * c.kv_dim()));
    dv_.resize(size_t(T_ * c.kv_dim()));
  }
  // The pass's units: every layer's forward, the head, then from the last
  // layer its backward (after recomputing the layer, with recompute on).
  plan_.clear();
  next_unit_ = 0;
  for (int l = 0; l < nl; ++l) plan_forward(plan_, l, xs_[size_t(l)].data(), acts_of(l), xs_[size_t(l) + 1].data());
  plan_head();
  if (backward_) {
    for (int l = nl - 1; l >= 0; --l) {
      // Recomputing writes the layer's output buffer again: free by now,
      // as its gradient is in dx_.
      if (!keep_all_) plan_forward(plan_, l, xs_[size_t(l)].data(), acts_of(l), xs_[size_t(l) + 1].data());
      plan_backward(l, acts_of(l));
    }
  }
  in_flight_ = true;
  return ok_status();
}

template <class Real>
bool LlamaLoraTrainer<Real>::advance() {
  MYRIAD_CHECK(in_flight_, "advance() without begin()");
  if (next_unit_ < plan_.size()) plan_[next_unit_++]();
  if (next_unit_ < plan_.size()) return false;
  in_flight_ = false;
  plan_.clear();
  return true;
}

template <class Real>
size_t LlamaLoraTrainer<Real>::transposed_bytes() const {
  size_t n = 0;
  for (const auto& [_, t] : transposed_) n += t.second.size() * sizeof(uint32_t);
  return n;
}

template class LlamaLoraTrainer<float>;
template class LlamaLoraTrainer<double>;

CpuLoraTrainingBackend::CpuLoraTrainingBackend(std::shared_ptr<const Checkpoint> ckpt, int threads)
    : own_pool_(std::make_unique<ThreadPool>(threads)), trainer_(std::move(ckpt), *own_pool_) {}

CpuLoraTrainingBackend::CpuLoraTrainingBackend(std::shared_ptr<const Checkpoint> ckpt, ThreadPool& shared)
    : trainer_(std::move(ckpt), shared) {}

}  // namespace myriad::gpu::cpu
