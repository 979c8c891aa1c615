// LlamaLoraTrainer (lora_trainer.h): forward with saved activations, masked
// cross-entropy, backward into each row's adapter.
#include "gpu/cpu/lora_trainer.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "gpu/cpu/ops.h"
#include "gpu/cpu/train_kernels.h"

namespace myriad::gpu::cpu {

namespace {

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
  return v;
}

WeightView weight_view(const TensorView& t) { return WeightView{t.dtype, t.data, t.shape[0], t.shape[1]}; }

constexpr int64_t kHeadChunk = 256;  // logits positions computed at once (bounds [P, vocab])


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
}

template <class Real>
Status LlamaLoraTrainer<Real>::validate(std::span<const TrainingRow> rows,
                                        std::span<TrainingJobTensors<Real>> jobs) const {
  const ModelConfig& c = ckpt_->config();
  for (size_t r = 0; r < rows.size(); ++r) {
    const TrainingRow& row = rows[r];
    const std::string at = "training row " + std::to_string(r);
    if (row.job < 0 || size_t(row.job) >= jobs.size() || !jobs[size_t(row.job)].params)
      return make_error(ErrorCode::kInvalidArgument, at + ": job " + std::to_string(row.job) + " out of range");
    if (!row.tokens || !row.targets || row.tokens->empty() || row.targets->size() != row.tokens->size())
      return make_error(ErrorCode::kInvalidArgument, at + ": tokens and targets must be non-empty and of one length");
    if (int64_t(row.tokens->size()) > c.max_position_embeddings)
      return make_error(ErrorCode::kInvalidArgument, at + ": " + std::to_string(row.tokens->size()) +
                                                         " tokens exceed the context of " +
                                                         std::to_string(c.max_position_embeddings));
    for (int32_t t : *row.tokens)
      if (t < 0 || t >= c.vocab_size)
        return make_error(ErrorCode::kInvalidArgument, at + ": token " + std::to_string(t) + " outside the vocabulary");
    const LoraParams<Real>& p = *jobs[size_t(row.job)].params;
    if (p.num_layers != c.num_layers || p.modules.size() != size_t(c.num_layers) * kNumLinearModules)
      return make_error(ErrorCode::kInvalidArgument, at + ": the job's adapter does not have the base's layers");
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int m = 0; m < kNumLinearModules; ++m) {
        const auto& mp = p.at(int(l), LinearModule(m));
        const auto [out, in] = linear_module_shape(c, LinearModule(m));
        if (mp.rank < 0 || mp.a.size() != size_t(mp.rank * in) || mp.b.size() != size_t(out * mp.rank))
          return make_error(ErrorCode::kInvalidArgument, at + ": the job's " + linear_module_name(LinearModule(m)) +
                                                             " of layer " + std::to_string(l) +
                                                             " does not match its rank and the base's shape");
      }
  }
  for (const auto& j : jobs) {
    if (!j.params || !j.grads) continue;
    bool same = j.grads->modules.size() == j.params->modules.size();
    for (size_t m = 0; same && m < j.params->modules.size(); ++m)
      same = j.grads->modules[m].a.size() == j.params->modules[m].a.size() &&
             j.grads->modules[m].b.size() == j.params->modules[m].b.size();
    if (!same) return make_error(ErrorCode::kInvalidArgument, "a job's gradients do not match its parameters");
  }
  return ok_status();
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
  rmax_ = 0;
  for (const auto& j : jobs)
    if (j.params)
      for (const auto& m : j.params->modules) rmax_ = std::max<int64_t>(rmax_, m.rank);
  // Bᵀ of every adapted module of every job in the step (this step's values).
  bt_.assign(jobs.size() * size_t(c.num_layers) * kNumLinearModules, {});
  for (size_t j = 0; j < jobs.size(); ++j) {
    if (!jobs[j].params || job_spans_[j].empty()) continue;
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (int m = 0; m < kNumLinearModules; ++m) {
        const auto& p = jobs[j].params->at(int(l), LinearModule(m));
        if (p.rank == 0) continue;
        const int64_t r = p.rank, out = int64_t(p.b.size()) / r;
        auto& bt = bt_[(j * size_t(c.num_layers) + size_t(l)) * kNumLinearModules + size_t(m)];
        bt.resize(p.b.size());
        for (int64_t o = 0; o < out; ++o)
          for (int64_t k = 0; k < r; ++k) bt[size_t(k * out + o)] = p.b[size_t(o * r + k)];
      }
  }
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
void LlamaLoraTrainer<Real>::linear(int l, LinearModule m, const Real* x, Real* y, Real* z) {
  const WeightView& w = layers_[size_t(l)].w[int(m)];
  const int64_t in = w.cols, out = w.rows;
  base_matmul(w, x, T_, y);
  const Layer& L = layers_[size_t(l)];
  const std::vector<float>* bias = m == LinearModule::kQ   ? &L.q_bias
                                   : m == LinearModule::kK ? &L.k_bias
                                   : m == LinearModule::kV ? &L.v_bias
                                   : m == LinearModule::kO ? &L.o_bias
                                                           : nullptr;
  if (bias && !bias->empty()) {
    pool_.parallel_for(T_, 16, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t)
        for (int64_t o = 0; o < out; ++o) y[t * out + o] += Real((*bias)[size_t(o)]);
    });
  }
  if (rmax_ == 0) return;
  pool_.parallel_for(T_, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      Real* yt = y + t * out;
      const auto& p = jobs_[size_t(job_of_[size_t(t)])].params->at(l, m);
      if (p.rank == 0) continue;
      const int64_t r = p.rank;
      Real* zt = z + t * rmax_;
      const Real* xt = x + t * in;
      for (int64_t k = 0; k < r; ++k) zt[k] = train::dot(xt, p.a.data() + k * in, in);
      const Real* bt = b_transposed(job_of_[size_t(t)], l, m);
      for (int64_t k = 0; k < r; ++k) {
        const Real c = p.scale * zt[k];
        const Real* btk = bt + k * out;
        for (int64_t o = 0; o < out; ++o) yt[o] += c * btk[o];
      }
    }
  });
}

// y = W x + s B (A x): dx += Wᵀ dy + Aᵀ dz with dz = s Bᵀ dy; dB += s dy zᵀ; dA += dz xᵀ.
template <class Real>
void LlamaLoraTrainer<Real>::linear_backward(int l, LinearModule m, const Real* x, const Real* z, const Real* dy,
                                             Real* dx) {
  const WeightView& w = layers_[size_t(l)].w[int(m)];
  const int64_t in = w.cols, out = w.rows;
  base_input_grad(w, dy, T_, dx);
  if (rmax_ == 0) return;
  dz_.assign(size_t(T_ * rmax_), Real(0));
  pool_.parallel_for(T_, 4, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
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
  // Each job's dA and dB: sums over its rows' tokens in row order, split over
  // output elements (so no two threads write one element and the order of
  // each sum does not depend on the other jobs in the step).
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
      train::accumulate_outer(spans, z, rmax_, r, dy, out, b, e, p.scale, dbt_.data(), out);
      for (int64_t o = b; o < e; ++o)
        for (int64_t k = 0; k < r; ++k) gp.b[size_t(o * r + k)] += dbt_[size_t(k * out + o)];
    });
  }
}

template <class Real>
void LlamaLoraTrainer<Real>::forward_layer(int l, const Real* x_in, Acts& a, Real* x_out) {
  const ModelConfig& c = ckpt_->config();
  const Layer& L = layers_[size_t(l)];
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), half = c.head_dim / 2;
  const double eps = c.rms_norm_eps;
  std::copy(x_in, x_in + T_ * H, a.x_in.begin());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      a.r1[size_t(t)] = train::rmsnorm_row(x_in + t * H, L.input_norm.data(), H, eps, a.h1.data() + t * H);
  });
  linear(l, LinearModule::kQ, a.h1.data(), a.q.data(), a.z[int(LinearModule::kQ)].data());
  linear(l, LinearModule::kK, a.h1.data(), a.k.data(), a.z[int(LinearModule::kK)].data());
  linear(l, LinearModule::kV, a.h1.data(), a.v.data(), a.z[int(LinearModule::kV)].data());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      train::rope_row(a.q.data() + t * Q, c.num_heads, c.head_dim, cos_.data() + t * half, sin_.data() + t * half);
      train::rope_row(a.k.data() + t * KV, c.num_kv_heads, c.head_dim, cos_.data() + t * half, sin_.data() + t * half);
    }
  });
  const int64_t G = c.num_kv_heads;
  pool_.parallel_for(int64_t(rows_.size()) * G, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t task = b; task < e; ++task) {
      const Segment& s = rows_[size_t(task / G)];
      const train::AttentionShape shape{s.end - s.begin, c.num_heads, c.num_kv_heads, c.head_dim, window_};
      train::attention_forward(shape, task % G, a.q.data() + s.begin * Q, a.k.data() + s.begin * KV,
                               a.v.data() + s.begin * KV, a.attn.data() + s.begin * Q,
                               a.lse.data() + s.begin * c.num_heads);
    }
  });
  linear(l, LinearModule::kO, a.attn.data(), a.x_mid.data(), a.z[int(LinearModule::kO)].data());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      Real* xm = a.x_mid.data() + t * H;
      for (int64_t i = 0; i < H; ++i) xm[i] += x_in[t * H + i];
      a.r2[size_t(t)] = train::rmsnorm_row(xm, L.post_attn_norm.data(), H, eps, a.h2.data() + t * H);
    }
  });
  linear(l, LinearModule::kGate, a.h2.data(), a.g.data(), a.z[int(LinearModule::kGate)].data());
  linear(l, LinearModule::kUp, a.h2.data(), a.u.data(), a.z[int(LinearModule::kUp)].data());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      train::silu_mul_row(a.g.data() + t * I, a.u.data() + t * I, I, a.act.data() + t * I);
  });
  linear(l, LinearModule::kDown, a.act.data(), x_out, a.z[int(LinearModule::kDown)].data());
  pool_.parallel_for(T_ * H, 4096, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) x_out[i] += a.x_mid[size_t(i)];
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::backward_mlp(int l, Acts& a, Real* dx) {
  const ModelConfig& c = ckpt_->config();
  const Layer& L = layers_[size_t(l)];
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  // MLP: x_out = x_mid + down(silu(gate(h2)) * up(h2)), h2 = rmsnorm(x_mid).
  dtmp_i1_.assign(size_t(T_ * I), Real(0));  // d act
  linear_backward(l, LinearModule::kDown, a.act.data(), a.z[int(LinearModule::kDown)].data(), dx, dtmp_i1_.data());
  std::vector<Real>& dg = dg_;
  dg.assign(size_t(T_ * I), Real(0));
  dtmp_i2_.assign(size_t(T_ * I), Real(0));  // d up
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      train::silu_mul_row_backward(a.g.data() + t * I, a.u.data() + t * I, dtmp_i1_.data() + t * I, I,
                                   dg.data() + t * I, dtmp_i2_.data() + t * I);
  });
  dtmp_h_.assign(size_t(T_ * H), Real(0));  // d h2
  linear_backward(l, LinearModule::kGate, a.h2.data(), a.z[int(LinearModule::kGate)].data(), dg.data(),
                  dtmp_h_.data());
  linear_backward(l, LinearModule::kUp, a.h2.data(), a.z[int(LinearModule::kUp)].data(), dtmp_i2_.data(),
                  dtmp_h_.data());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      train::rmsnorm_row_backward(a.x_mid.data() + t * H, L.post_attn_norm.data(), a.r2[size_t(t)],
                                  dtmp_h_.data() + t * H, H, dx + t * H);
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::backward_attention(int l, Acts& a, Real* dx) {
  const ModelConfig& c = ckpt_->config();
  const Layer& L = layers_[size_t(l)];
  const int64_t H = c.hidden_size, Q = c.q_dim(), KV = c.kv_dim(), half = c.head_dim / 2;
  // Attention: x_mid = x_in + o(attention(rope(q(h1)), rope(k(h1)), v(h1))), h1 = rmsnorm(x_in).
  dattn_.assign(size_t(T_ * Q), Real(0));
  linear_backward(l, LinearModule::kO, a.attn.data(), a.z[int(LinearModule::kO)].data(), dx, dattn_.data());
  dq_.assign(size_t(T_ * Q), Real(0));
  dk_.assign(size_t(T_ * KV), Real(0));
  dv_.assign(size_t(T_ * KV), Real(0));
  const int64_t G = c.num_kv_heads;
  pool_.parallel_for(int64_t(rows_.size()) * G, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t task = b; task < e; ++task) {
      const Segment& s = rows_[size_t(task / G)];
      const train::AttentionShape shape{s.end - s.begin, c.num_heads, c.num_kv_heads, c.head_dim, window_};
      train::attention_backward(shape, task % G, a.q.data() + s.begin * Q, a.k.data() + s.begin * KV,
                                a.v.data() + s.begin * KV, a.attn.data() + s.begin * Q,
                                a.lse.data() + s.begin * c.num_heads, dattn_.data() + s.begin * Q,
                                dq_.data() + s.begin * Q, dk_.data() + s.begin * KV, dv_.data() + s.begin * KV);
    }
  });
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t) {
      train::rope_row_backward(dq_.data() + t * Q, c.num_heads, c.head_dim, cos_.data() + t * half,
                               sin_.data() + t * half);
      train::rope_row_backward(dk_.data() + t * KV, c.num_kv_heads, c.head_dim, cos_.data() + t * half,
                               sin_.data() + t * half);
    }
  });
  dtmp_h_.assign(size_t(T_ * H), Real(0));  // d h1
  linear_backward(l, LinearModule::kQ, a.h1.data(), a.z[int(LinearModule::kQ)].data(), dq_.data(), dtmp_h_.data());
  linear_backward(l, LinearModule::kK, a.h1.data(), a.z[int(LinearModule::kK)].data(), dk_.data(), dtmp_h_.data());
  linear_backward(l, LinearModule::kV, a.h1.data(), a.z[int(LinearModule::kV)].data(), dv_.data(), dtmp_h_.data());
  pool_.parallel_for(T_, 8, [&](int64_t b, int64_t e, int) {
    for (int64_t t = b; t < e; ++t)
      train::rmsnorm_row_backward(a.x_in.data() + t * H, L.input_norm.data(), a.r1[size_t(t)],
                                  dtmp_h_.data() + t * H, H, dx + t * H);
  });
}

template <class Real>
void LlamaLoraTrainer<Real>::head(const Real* x_last, Real* dx_last, bool backward) {
  const ModelConfig& c = ckpt_->config();
  const int64_t H = c.hidden_size, V = c.vocab_size;
  // Target positions: token t predicts t + 1 of its row.
  std::vector<int64_t> positions;
  for (const Segment& s : rows_)
    for (int64_t t = s.begin; t + 1 < s.end; ++t)
      if ((*s.targets)[size_t(t + 1 - s.begin)]) positions.push_back(t);
  std::vector<Real> xf, logits, dlogits, dxf;
  std::vector<Real> r(kHeadChunk);
  std::vector<double> loss(kHeadChunk);
  for (size_t c0 = 0; c0 < positions.size(); c0 += kHeadChunk) {
    const int64_t P = std::min<int64_t>(kHeadChunk, int64_t(positions.size() - c0));
    xf.resize(size_t(P * H));
    logits.resize(size_t(P * V));
    dlogits.resize(size_t(P * V));
    for (int64_t p = 0; p < P; ++p)
      r[size_t(p)] = train::rmsnorm_row(x_last + positions[c0 + size_t(p)] * H, final_norm_.data(), H,
                                        c.rms_norm_eps, xf.data() + p * H);
    base_matmul(lm_head_, xf.data(), P, logits.data());
    pool_.parallel_for(P, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t p = b; p < e; ++p) {
        const int64_t t = positions[c0 + size_t(p)];
        const auto& job = jobs_[size_t(job_of_[size_t(t)])];
        loss[size_t(p)] = train::cross_entropy_row(logits.data() + p * V, V, tokens_[size_t(t + 1)], job.loss_weight,
                                                   dlogits.data() + p * V);
      }
    });
    for (int64_t p = 0; p < P; ++p) {
      auto& job = jobs_[size_t(job_of_[size_t(positions[c0 + size_t(p)])])];
      job.loss_sum += loss[size_t(p)];
      job.loss_tokens += 1;
    }
    if (!backward) continue;
    // Jobs without gradients contribute no gradient.
    for (int64_t p = 0; p < P; ++p)
      if (!jobs_[size_t(job_of_[size_t(positions[c0 + size_t(p)])])].grads)
        std::fill(dlogits.begin() + p * V, dlogits.begin() + (p + 1) * V, Real(0));
    dxf.assign(size_t(P * H), Real(0));
    base_input_grad(lm_head_, dlogits.data(), P, dxf.data());
    for (int64_t p = 0; p < P; ++p) {
      const int64_t t = positions[c0 + size_t(p)];
      train::rmsnorm_row_backward(x_last + t * H, final_norm_.data(), r[size_t(p)], dxf.data() + p * H, H,
                                  dx_last + t * H);
    }
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
  acts_.resize(1);
  resize(acts_[0]);
  embed_tokens(xs_[0].data());
  for (int l = 0; l < layers; ++l) forward_layer(l, xs_[size_t(l % 2)].data(), acts_[0], xs_[size_t((l + 1) % 2)].data());
  const Real* x = xs_[size_t(layers % 2)].data();
  out.assign(rows_.size() * size_t(H), 0.0f);
  for (size_t r = 0; r < rows_.size(); ++r) {
    const double inv = 1.0 / double(rows_[r].end - rows_[r].begin);
    for (int64_t i = 0; i < H; ++i) {
      double sum = 0;
      for (int64_t t = rows_[r].begin; t < rows_[r].end; ++t) sum += double(x[t * H + i]);
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
  acts_.resize(keep_all_ ? size_t(nl) : 1);
  for (auto& a : acts_) resize(a);
  // Embedding (the table is frozen: the backward stops at its output).
  embed_tokens(xs_[0].data());
  activation_bytes_ = 0;
  if (backward_) {
    for (const auto& x : xs_) activation_bytes_ += x.size() * sizeof(Real);
    for (const auto& a : acts_) {
      for (const auto* v : {&a.x_in, &a.r1, &a.h1, &a.q, &a.k, &a.v, &a.lse, &a.attn, &a.x_mid, &a.r2, &a.h2, &a.g,
                            &a.u, &a.act})
        activation_bytes_ += v->size() * sizeof(Real);
      for (const auto& z : a.z) activation_bytes_ += z.size() * sizeof(Real);
    }
  }
  unit_ = 0;
  in_flight_ = true;
  return ok_status();
}

// Units: 0..L-1 the layers' forward, L the head, then two per layer from
// the last: its MLP's backward (after recomputing the layer, with recompute
// on), then its attention's.
template <class Real>
bool LlamaLoraTrainer<Real>::advance() {
  MYRIAD_CHECK(in_flight_, "advance() without begin()");
  const ModelConfig& c = ckpt_->config();
  const int nl = int(c.num_layers);
  const int u = unit_++;
  if (u < nl) {
    forward_layer(u, xs_[size_t(u)].data(), acts_[keep_all_ ? size_t(u) : 0], xs_[size_t(u) + 1].data());
    return false;
  }
  if (u == nl) {
    dx_.assign(size_t(T_ * c.hidden_size), Real(0));
    head(xs_[size_t(nl)].data(), dx_.data(), backward_);
    in_flight_ = backward_;
    return !backward_;
  }
  const int k = u - nl - 1;
  const int l = nl - 1 - k / 2;
  Acts& a = acts_[keep_all_ ? size_t(l) : 0];
  if (k % 2 == 0) {
    if (!keep_all_) {
      // Recompute this layer's activations from its kept input (the output
      // buffer of the layer above is free by now: its gradient is in dx_).
      forward_layer(l, xs_[size_t(l)].data(), a, xs_[size_t(l) + 1].data());
    }
    backward_mlp(l, a, dx_.data());
    return false;
  }
  backward_attention(l, a, dx_.data());
  in_flight_ = l > 0;
  return l == 0;
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
