// The optimizer side of a training step: AdamW (decoupled weight decay, as
// torch.optim.AdamW), the learning-rate schedule (linear warmup, then cosine
// decay to a floor, as transformers' get_cosine_schedule_with_warmup) and
// global-norm gradient clipping (torch.nn.utils.clip_grad_norm_). Plain
// values; one per job.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/training/lora_params.h"

namespace myriad {

struct AdamWConfig {
  double lr = 2e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
};

struct LrSchedule {
  double peak = 2e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double min_ratio = 0.0;  // the floor as a fraction of peak
  // The rate of optimizer step `step` (0-based).
  double at(int64_t step) const;
};

class AdamW {
 public:
  AdamW() = default;
  AdamW(const LoraParams<float>& like, AdamWConfig config) : config_(config), m_(like.zeros_like()), v_(like.zeros_like()) {}
  // params -= lr * (m̂ / (sqrt(v̂) + eps) + weight_decay * params), with the step counter advanced.
  void step(LoraParams<float>& params, const LoraParams<float>& grads, double lr);
  // The same step in pieces (a serving loop runs inference between them):
  // begin_step() advances the counter, then update() once over each module
  // range [m0, m1) until every module is done. Bit-identical to step().
  void begin_step();
  void update(LoraParams<float>& params, const LoraParams<float>& grads, double lr, size_t m0, size_t m1);
  int64_t steps() const { return t_; }
  const LoraParams<float>& first_moment() const { return m_; }
  const LoraParams<float>& second_moment() const { return v_; }
  // Restores a checkpointed state.
  void restore(LoraParams<float> m, LoraParams<float> v, int64_t steps) {
    m_ = std::move(m);
    v_ = std::move(v);
    t_ = steps;
  }
  const AdamWConfig& config() const { return config_; }

 private:
  AdamWConfig config_;
  LoraParams<float> m_, v_;
  int64_t t_ = 0;
  double c1_ = 1, c2_ = 1;  // this step's bias corrections
};

// The gradients' global L2 norm (before clipping); when it exceeds max_norm
// (> 0), scales them by max_norm / (norm + 1e-6) as PyTorch does.
double clip_grad_norm(LoraParams<float>& grads, double max_norm);

}  // namespace myriad
