// LoRA training on the CPU: the Llama-family forward over whole sequences
// (no KV cache: every token of a row attends to the row's earlier tokens),
// masked cross-entropy, and the backward through the frozen base into each
// row's adapter (gradients for A and B only; the base gets none and no
// weight gradient is ever stored). Rows of several jobs share each GEMM over
// the base weights; each row's LoRA delta uses its own job's tensors, as an
// inference row uses its own slot.
//
// The op order is llama_graph.h's. Kept per layer for the backward: its
// input, the normed inputs and inverse RMS, q/k (after RoPE), v, the
// attention output and log-sum-exp, gate/up/act and the LoRA intermediates
// x·Aᵀ. With recompute on, only each layer's input is kept and the rest is
// recomputed layer by layer in the backward (activation checkpointing:
// about one more forward, for ~1/12 of the memory on llama-110m).
//
// Real = float trains; Real = double exists for the finite-difference
// gradient checks (the base weights are read exactly, in double).
// Not thread-safe: one caller at a time; it uses the pool it is given.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/thread_pool.h"
#include "runtime/checkpoint.h"
#include "runtime/training/lora_training_backend.h"

namespace myriad::gpu::cpu {

template <class Real>
class LlamaLoraTrainer {
 public:
  // `pool` must outlive the trainer.
  LlamaLoraTrainer(std::shared_ptr<const Checkpoint> ckpt, ThreadPool& pool);

  // See LoraTrainingBackend::forward_backward. Jobs with null grads get
  // their loss only; when no job has grads the backward is skipped.
  Status forward_backward(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs);
  // The same pass a unit at a time (at most about one linear over
  // kUnitTokens tokens each), so a serving loop can run inference steps between units:
  // begin() validates and embeds; each advance() runs one unit and returns
  // true after the last. `rows`, their tokens and `jobs` must stay valid and
  // unchanged until then.
  Status begin(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs);
  bool advance();

  void set_recompute(bool on) { recompute_ = on; }
  // See LoraTrainingBackend::mean_hidden (not while a pass is in flight).
  Status mean_hidden(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs, int layers,
                     std::vector<float>& out);
  // Keep Wᵀ of every base weight after its first backward (default on): the
  // input gradients then skip a transposing pass over each weight per step
  // (~11% of a llama-110m step) for the base weights' size again in memory.
  void set_cache_transposed(bool on) {
    cache_transposed_ = on;
    if (!on) transposed_.clear();
  }
  size_t transposed_bytes() const;
  bool recompute() const { return recompute_; }
  // Bytes of activations the last step kept for its backward.
  size_t activation_bytes() const { return activation_bytes_; }
  const ModelConfig& config() const { return ckpt_->config(); }

 private:
  struct Layer {
    std::vector<float> input_norm, post_attn_norm;
    std::vector<float> q_bias, k_bias, v_bias, o_bias;  // empty when absent
    WeightView w[kNumLinearModules];
  };
  // What one layer's backward needs, for all T tokens.
  struct Acts {
    std::vector<Real> x_in, r1, h1, q, k, v, lse, attn, x_mid, r2, h2, g, u, act;
    std::vector<Real> z[kNumLinearModules];  // [T, rmax]: s·x·Aᵀ of each token's adapter (s: its scale)
  };

  Status validate(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs) const;
  void embed_tokens(Real* x0) const;  // x0 [T, H] = the embedding rows of this step's tokens
  void prepare(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<Real>> jobs);
  void resize(Acts& a) const;
  // A pass is a list of units (closures run in order), each at most one
  // linear over kUnitTokens tokens, or the element-wise work or attention
  // of the whole step, so a serving loop waits for little: a layer's
  // forward, the head (a kHeadSlice of lm_head at a time), a layer's
  // backward (a linear's input gradient a chunk of tokens at a time, then
  // its weight gradients over all of them: a job's sums never depend on
  // the chunking).
  static constexpr int64_t kUnitTokens = 128;
  void plan_forward(std::vector<std::function<void()>>& units, int l, const Real* x_in, Acts& a, Real* x_out);
  void forward_layer(int l, const Real* x_in, Acts& a, Real* x_out);  // all of plan_forward's units now
  void plan_backward(int l, Acts& a);
  std::vector<std::pair<int64_t, int64_t>> row_groups() const;  // [r0, r1) of rows_
  template <class Fn>
  void for_each_row_head(int64_t r0, int64_t r1, const Fn& fn);
  void plan_linear_backward(int l, LinearModule m, Acts& a, const Real* x, const Real* dy, Real* dx);
  // dx += the input gradient of RMSNorm(x; w) of every token, given the
  // gradient of its output in dtmp_h_ and its inverse RMS r.
  void rmsnorm_backward_rows(const Real* x, const float* w, const std::vector<Real>& r, Real* dx);
  Acts& acts_of(int l) { return acts_[keep_all_ ? size_t(l) : 0]; }
  // The head over the target positions [c0, c0 + kHeadChunk): final norm,
  // logits a slice of the vocabulary at a time, the loss (and dlogits),
  // then dx_ += their gradient, a slice at a time.
  void plan_head();
  void head_norm(size_t c0);
  void head_logits(size_t c0, int64_t v0);
  void head_cross_entropy(size_t c0, int64_t p0, int64_t p1);
  void head_loss(size_t c0);
  void head_input_grad(size_t c0, int64_t v0);
  void head_norm_backward(size_t c0);

  // For chunk c's tokens: y = x·Wᵀ (+ bias) + each token's LoRA delta;
  // z = s·x·Aᵀ is kept.
  void linear_rows(int l, LinearModule m, const Real* x, Real* y, Real* z, int64_t c);
  // For chunk c's tokens: dx += dy·W + the LoRA path's input gradient, its
  // dz kept in dz_; then, over all tokens, the jobs' dA, dB +=.
  void input_grad_rows(int l, LinearModule m, const Real* dy, Real* dx, int64_t c);
  void weight_grads(int l, LinearModule m, const Real* x, const Real* z, const Real* dy);
  void base_matmul(const WeightView& w, const Real* x, int64_t T, Real* y);
  void base_input_grad(const WeightView& w, const Real* dy, int64_t T, Real* dx);

  std::shared_ptr<const Checkpoint> ckpt_;
  ThreadPool& pool_;
  std::vector<Layer> layers_;
  std::vector<float> final_norm_, inv_freq_;
  WeightView embed_, lm_head_;
  int64_t window_ = 0;
  bool recompute_ = false;
  bool cache_transposed_ = true;
  bool backward_ = false, keep_all_ = false, in_flight_ = false;
  std::vector<std::function<void()>> plan_;  // this pass's units, in order
  size_t next_unit_ = 0;
  std::map<const void*, std::pair<WeightView, std::vector<uint32_t>>> transposed_;  // by W's data
  size_t activation_bytes_ = 0;

  // This step.
  std::span<TrainingJobTensors<Real>> jobs_;
  int64_t T_ = 0;
  int64_t rmax_ = 0;
  std::vector<int32_t> tokens_, job_of_;
  std::vector<int64_t> pos_;
  struct Segment {
    int64_t begin, end;  // tokens [begin, end) of one row
    int32_t job;
    const std::vector<uint8_t>* targets;
  };
  std::vector<Segment> rows_;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> job_spans_;  // per job: its rows' token ranges in order
  std::vector<Real> cos_, sin_;  // [T, head_dim / 2]
  std::vector<std::vector<Real>> bt_;  // [job][layer][module]: Bᵀ [rank, out] for this step
  std::vector<char> bt_ready_;         // [layer]: its Bᵀ are made (transpose_b)
  void transpose_b(int l);
  const Real* b_transposed(int32_t job, int l, LinearModule m) const {
    return bt_[(size_t(job) * layers_.size() + size_t(l)) * kNumLinearModules + size_t(m)].data();
  }
  // The float path's LoRA runs through lora_sgmv (the serving kernels, AVX-512
  // or AVX2), each job a slot: this step's tokens grouped by job.
  std::vector<LoraBatchPlan> lora_plans_;  // per chunk of kUnitTokens
  LoraScratch lora_scratch_;
  std::vector<LoraModuleView> lora_views_;
  LoraParallelFor lora_parallel_;
  // lora_views_ of (l, m): A and Bᵀ of each job, swapped for the backward.
  void set_lora_views(int l, LinearModule m, bool backward);
  // lora_sgmv over chunk c's tokens (x, y, dst at its first token) with
  // lora_views_; then each token's shrink result (s·x·Aᵀ) into dst[t * rmax_ ...].
  void lora_delta(int64_t c, const float* x, int64_t in, float* y, int64_t out, float* dst);
  std::vector<std::vector<Real>> xs_;  // [L + 1][T, H]: every layer's input, then the last output
  std::vector<Acts> acts_;             // [L], or [1] scratch with recompute
  std::vector<Real> dx_, dg_, dbt_, dtmp_h_, dtmp_i1_, dtmp_i2_, dq_, dk_, dv_, dattn_, dz_;
  // The head's: target positions (token t predicts t + 1), and per chunk of
  // them the normed inputs and inverse RMS, logits, dlogits, d(normed).
  std::vector<int64_t> head_positions_;
  std::vector<Real> head_x_, head_r_, head_logits_, head_dlogits_, head_dx_, head_slice_;
  std::vector<double> head_loss_;
};

extern template class LlamaLoraTrainer<float>;
extern template class LlamaLoraTrainer<double>;

// The LoraTrainingBackend of the CPU: a LlamaLoraTrainer<float> over its own
// thread pool (threads <= 0: every hardware thread), or over a serving
// CpuExecutor's pool when it trains beside it on the same thread (co-serving:
// one set of threads for both, never two pools fighting for the cores).
class CpuLoraTrainingBackend final : public LoraTrainingBackend {
 public:
  CpuLoraTrainingBackend(std::shared_ptr<const Checkpoint> ckpt, int threads);
  // `shared` must outlive the backend and be used by one thread at a time.
  CpuLoraTrainingBackend(std::shared_ptr<const Checkpoint> ckpt, ThreadPool& shared);
  Status forward_backward(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) override {
    return trainer_.forward_backward(rows, jobs);
  }
  Status begin(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) override {
    return trainer_.begin(rows, jobs);
  }
  bool advance() override { return trainer_.advance(); }
  void set_recompute(bool on) override { trainer_.set_recompute(on); }
  Status mean_hidden(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs, int layers,
                     std::vector<float>& out) override {
    return trainer_.mean_hidden(rows, jobs, layers, out);
  }
  size_t activation_bytes() const override { return trainer_.activation_bytes(); }

 private:
  std::unique_ptr<ThreadPool> own_pool_;
  LlamaLoraTrainer<float> trainer_;
};

}  // namespace myriad::gpu::cpu
