#include "runtime/training/optimizer.h"

#include <algorithm>
#include <cmath>

namespace myriad {

double LrSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return peak * double(step + 1) / double(warmup_steps);
  const int64_t decay = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress = std::clamp(double(step - warmup_steps) / double(decay), 0.0, 1.0);
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));
  return peak * (min_ratio + (1.0 - min_ratio) * cosine);
}

void AdamW::step(LoraParams<float>& params, const LoraParams<float>& grads, double lr) {
  begin_step();
  update(params, grads, lr, 0, params.modules.size());
}

void AdamW::begin_step() {
  ++t_;
  c1_ = 1.0 - std::pow(config_.beta1, double(t_));
  c2_ = 1.0 - std::pow(config_.beta2, double(t_));
}

void AdamW::update(LoraParams<float>& params, const LoraParams<float>& grads, double lr, size_t m0, size_t m1) {
  const double c1 = c1_, c2 = c2_;
  for (size_t mi = m0; mi < m1 && mi < params.modules.size(); ++mi) {
    auto update = [&](std::vector<float>& p, const std::vector<float>& g, std::vector<float>& m, std::vector<float>& v) {
      for (size_t i = 0; i < p.size(); ++i) {
        const double gi = g[i];
        const double mi2 = config_.beta1 * m[i] + (1.0 - config_.beta1) * gi;
        const double vi = config_.beta2 * v[i] + (1.0 - config_.beta2) * gi * gi;
        m[i] = float(mi2);
        v[i] = float(vi);
        double pi = p[i];
        pi -= lr * config_.weight_decay * pi;
        pi -= lr * (mi2 / c1) / (std::sqrt(vi / c2) + config_.eps);
        p[i] = float(pi);
      }
    };
    auto& P = params.modules[mi];
    const auto& G = grads.modules[mi];
    update(P.a, G.a, m_.modules[mi].a, v_.modules[mi].a);
    update(P.b, G.b, m_.modules[mi].b, v_.modules[mi].b);
  }
}

double clip_grad_norm(LoraParams<float>& grads, double max_norm) {
  double ss = 0;
  grads.for_each([&](float& g) { ss += double(g) * double(g); });
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float k = float(max_norm / (norm + 1e-6));
    grads.for_each([&](float& g) { g *= k; });
  }
  return norm;
}

}  // namespace myriad
