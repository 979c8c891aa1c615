#include "gpu/cpu/sampler.h"

#include <algorithm>
#include <cmath>

#include "gpu/cpu/ops.h"
#include "matmul_kernels.h"
#include "ops_kernels.h"
#include "runtime/counter_rng.h"
#include "sampler_kernels.h"

namespace myriad::gpu::cpu {

namespace detail {
double sum_exp_portable(const float* z, int64_t n, float m) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(std::exp(z[i] - m));
  return s;
}
}  // namespace detail

namespace {
// m + log(sum_i exp(z[i] - m)) for m = max(z).
double log_sum_exp_given_max(const float* z, int64_t n, float m) {
  const double s = detail::use_avx2() ? detail::sum_exp_avx2(z, n, m) : detail::sum_exp_portable(z, n, m);
  return double(m) + std::log(s);
}
}  // namespace

double log_sum_exp(const float* z, int64_t n) {
  float m = z[0];
  if (detail::use_avx2()) {
    m = detail::max_avx2(z, n);
  } else {
    for (int64_t i = 1; i < n; ++i) m = z[i] > m ? z[i] : m;
  }
  return log_sum_exp_given_max(z, n, m);
}

double counter_uniform(uint64_t seed, uint32_t output_index) { return myriad::counter_uniform(seed, output_index); }

void apply_penalties(float* logits, int64_t vocab, const SamplingParams& p, std::span<const int32_t> history,
                     uint32_t prompt_len, std::vector<int32_t>& counts) {
  if (!p.needs_history() || history.empty()) return;
  if (p.repetition_penalty != 1.0f) {
    counts.assign(size_t(vocab), 0);
    for (int32_t id : history) {
      if (id < 0 || id >= vocab || counts[size_t(id)]) continue;
      counts[size_t(id)] = 1;  // once per distinct token
      float& l = logits[id];
      l = l > 0 ? l / p.repetition_penalty : l * p.repetition_penalty;
    }
  }
  if (p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    counts.assign(size_t(vocab), 0);
    const size_t start = std::min<size_t>(prompt_len, history.size());
    for (size_t i = start; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < vocab) ++counts[size_t(history[i])];
    for (size_t i = start; i < history.size(); ++i) {
      const int32_t id = history[i];
      if (id < 0 || id >= vocab || counts[size_t(id)] == 0) continue;
      logits[id] -= p.frequency_penalty * float(counts[size_t(id)]) + p.presence_penalty;
      counts[size_t(id)] = 0;  // each distinct token once
    }
  }
}

Sampled Sampler::sample(const float* logits, int64_t vocab, const SamplingParams& p, uint32_t output_index,
                        std::span<const int32_t> history, uint32_t prompt_len, std::span<const LogitBias> bias) {
  const float* z = nullptr;
  double lse = 0.0;
  Sampled s = pick(logits, vocab, p, output_index, history, prompt_len, bias, z, lse);
  if (p.top_logprobs > 0) top_logprobs_of(std::span(z, size_t(vocab)), lse, p.top_logprobs, s.top);
  return s;
}

Sampled Sampler::pick(const float* logits, int64_t vocab, const SamplingParams& p, uint32_t output_index,
                      std::span<const int32_t> history, uint32_t prompt_len, std::span<const LogitBias> bias,
                      const float*& dist, double& lse) {
  const bool penalize = p.needs_history() && !history.empty();
  if (p.temperature <= 0.0f && !penalize && bias.empty()) {  // plain greedy reads the logits in place
    const int32_t tok = int32_t(argmax(logits, vocab));  // its logit is the max: no second max pass
    dist = logits;
    lse = log_sum_exp_given_max(logits, vocab, logits[tok]);
    return {tok, float(double(logits[tok]) - lse), {}};
  }
  work_.assign(logits, logits + vocab);  // bias, penalties and scaling change a copy
  float* z = work_.data();
  dist = z;
  for (const LogitBias& b : bias)
    if (b.token >= 0 && b.token < vocab) z[b.token] += b.bias;
  apply_penalties(z, vocab, p, history, prompt_len, counts_);
  if (p.temperature <= 0.0f) {
    const int32_t tok = int32_t(argmax(z, vocab));
    lse = log_sum_exp(z, vocab);
    return {tok, float(double(z[tok]) - lse), {}};
  }
  const float inv_t = 1.0f / p.temperature;
  for (int64_t i = 0; i < vocab; ++i) z[i] *= inv_t;
  lse = log_sum_exp(z, vocab);
  const double u = counter_uniform(p.seed, output_index);

  const bool top_k = p.top_k > 0 && p.top_k < vocab;
  const bool top_p = p.top_p < 1.0f;
  probs_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) probs_[size_t(i)] = std::exp(double(z[i]) - lse);

  if (!top_k && !top_p) {
    double target = u, c = 0;  // probabilities sum to 1 (up to rounding)
    double total = 0;
    for (int64_t i = 0; i < vocab; ++i) total += probs_[size_t(i)];
    target = u * total;
    for (int64_t i = 0; i < vocab; ++i) {
      c += probs_[size_t(i)];
      if (c > target) return {int32_t(i), float(double(z[i]) - lse), {}};
    }
    int64_t last = vocab - 1;  // rounding: the last token with nonzero probability
    while (last > 0 && probs_[size_t(last)] == 0) --last;
    return {int32_t(last), float(double(z[last]) - lse), {}};
  }

  // Kept set: the best tokens by (logit desc, id asc).
  order_.resize(size_t(vocab));
  for (int64_t i = 0; i < vocab; ++i) order_[size_t(i)] = int32_t(i);
  auto better = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  int64_t kept = vocab;
  if (top_k) {
    std::partial_sort(order_.begin(), order_.begin() + p.top_k, order_.end(), better);
    kept = p.top_k;
  } else {
    std::sort(order_.begin(), order_.end(), better);
  }
  if (top_p) {
    double mass = 0;
    for (int64_t i = 0; i < kept; ++i) mass += probs_[size_t(order_[size_t(i)])];
    // Smallest prefix whose probability (renormalized over the top-k set) reaches top_p.
    double c = 0;
    int64_t n = 0;
    while (n < kept) {
      c += probs_[size_t(order_[size_t(n)])] / mass;
      ++n;
      if (c >= double(p.top_p)) break;
    }
    kept = n;
  }
  std::sort(order_.begin(), order_.begin() + kept);  // walk in id order
  double total = 0;
  for (int64_t i = 0; i < kept; ++i) total += probs_[size_t(order_[size_t(i)])];
  const double target = u * total;
  double c = 0;
  for (int64_t i = 0; i < kept; ++i) {
    const int32_t id = order_[size_t(i)];
    c += probs_[size_t(id)];
    if (c > target) return {id, float(double(z[id]) - lse), {}};
  }
  const int32_t id = order_[size_t(kept - 1)];
  return {id, float(double(z[id]) - lse), {}};
}

}  // namespace myriad::gpu::cpu
