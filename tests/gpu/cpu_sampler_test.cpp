// The CPU sampler against a naive reference (penalties, temperature, top-k,
// top-p, logprob), and the counter-based RNG's determinism and spread.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gpu/cpu/matmul.h"
#include "gpu/cpu/sampler.h"
#include "test_seed.h"

namespace myriad::gpu::cpu {
namespace {

// The biased, penalized logits, temperature-scaled unless greedy: the
// distribution the logprob (and top_logprobs) is taken from, in double.
std::vector<double> reference_distribution(const std::vector<float>& logits, const SamplingParams& p,
                                           const std::vector<int32_t>& history, uint32_t prompt_len,
                                           const std::vector<LogitBias>& bias = {}) {
  std::vector<double> z(logits.begin(), logits.end());
  // float, as the sampler adds it: a double sum could round the other way at a tie.
  for (const LogitBias& b : bias) z[size_t(b.token)] = double(logits[size_t(b.token)] + b.bias);
  std::set<int32_t> seen(history.begin(), history.end());
  for (int32_t id : seen) z[size_t(id)] = z[size_t(id)] > 0 ? z[size_t(id)] / p.repetition_penalty : z[size_t(id)] * p.repetition_penalty;
  std::map<int32_t, int> counts;
  for (size_t i = prompt_len; i < history.size(); ++i) counts[history[i]]++;
  for (auto [id, n] : counts) z[size_t(id)] -= p.frequency_penalty * n + p.presence_penalty;
  if (p.temperature > 0)
    for (auto& x : z) x /= p.temperature;
  return z;
}

double reference_lse(const std::vector<double>& v) {
  double m = *std::max_element(v.begin(), v.end()), s = 0;
  for (double x : v) s += std::exp(x - m);
  return m + std::log(s);
}

// Straightforward reading of the semantics in sampler.h, in double.
Sampled reference(const std::vector<float>& logits, const SamplingParams& p, uint32_t idx,
                  const std::vector<int32_t>& history, uint32_t prompt_len, const std::vector<LogitBias>& bias = {}) {
  const size_t V = logits.size();
  const std::vector<double> z = reference_distribution(logits, p, history, prompt_len, bias);
  if (p.temperature == 0) {
    size_t best = 0;
    for (size_t i = 1; i < V; ++i)
      if (z[i] > z[best]) best = i;
    return {int32_t(best), float(z[best] - reference_lse(z)), {}};
  }
  const double l = reference_lse(z);
  std::vector<double> prob(V);
  for (size_t i = 0; i < V; ++i) prob[i] = std::exp(z[i] - l);
  std::vector<int32_t> order(V);
  for (size_t i = 0; i < V; ++i) order[i] = int32_t(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return z[size_t(a)] > z[size_t(b)] || (z[size_t(a)] == z[size_t(b)] && a < b); });
  size_t keep = p.top_k > 0 ? std::min(V, size_t(p.top_k)) : V;
  if (p.top_p < 1) {
    double mass = 0;
    for (size_t i = 0; i < keep; ++i) mass += prob[size_t(order[i])];
    double c = 0;
    size_t n = 0;
    while (n < keep) {
      c += prob[size_t(order[n++])] / mass;
      if (c >= p.top_p) break;
    }
    keep = n;
  }
  std::vector<bool> kept(V, false);
  double total = 0;
  for (size_t i = 0; i < keep; ++i) {
    kept[size_t(order[i])] = true;
    total += prob[size_t(order[i])];
  }
  const double u = counter_uniform(p.seed, idx) * total;
  double c = 0;
  int32_t last = -1;
  for (size_t i = 0; i < V; ++i) {
    if (!kept[i]) continue;
    c += prob[i];
    last = int32_t(i);
    if (c > u) return {int32_t(i), float(z[i] - l), {}};
  }
  return {last, float(z[size_t(last)] - l), {}};
}

TEST(CpuSampler, MatchesNaiveReferenceOnRandomCases) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Sampler s;
  int mismatches = 0;
  for (int trial = 0; trial < 600; ++trial) {
    const int V = 2 + int(rng() % 700);
    std::normal_distribution<float> nd(0.0f, 1.0f + float(rng() % 4));
    std::vector<float> logits(static_cast<size_t>(V));
    for (auto& x : logits) x = nd(rng);
    SamplingParams p;
    p.seed = rng();
    p.temperature = trial % 5 == 0 ? 0.0f : 0.2f + float(rng() % 20) / 10.0f;
    if (rng() % 2) p.top_k = 1 + int(rng() % uint32_t(V + 3));
    if (rng() % 2) p.top_p = 0.05f + float(rng() % 95) / 100.0f;
    if (rng() % 2) p.repetition_penalty = 0.7f + float(rng() % 10) / 10.0f;
    if (rng() % 2) p.presence_penalty = float(rng() % 20) / 10.0f - 0.5f;
    if (rng() % 2) p.frequency_penalty = float(rng() % 20) / 10.0f - 0.5f;
    std::vector<int32_t> hist(rng() % 40);
    for (auto& h : hist) h = int32_t(rng() % uint32_t(std::min(V, 30)));  // repeats likely
    const uint32_t prompt_len = hist.empty() ? 0 : uint32_t(rng() % (hist.size() + 1));
    const uint32_t idx = rng() % 1000;
    std::vector<LogitBias> bias;  // distinct tokens, some among the history's
    if (rng() % 3 == 0)
      for (int32_t t = int32_t(rng() % 7); t < V && bias.size() < 6; t += 1 + int32_t(rng() % 50))
        bias.push_back({t, float(int(rng() % 401) - 200) / 2.0f});  // [-100, 100]
    auto work = logits;
    const Sampled got = s.sample(work.data(), V, p, idx, hist, prompt_len, bias);
    EXPECT_EQ(work, logits) << "trial " << trial << ": the logits are left as they were";
    const Sampled want = reference(logits, p, idx, hist, prompt_len, bias);
    // float vs double penalties can only flip a draw that lands within ~1e-7
    // of a boundary: allow no more than one such case in the whole run.
    if (got.token != want.token) {
      ++mismatches;
      continue;
    }
    ASSERT_NEAR(got.logprob, want.logprob, 1e-4 * (1 + std::fabs(want.logprob))) << "trial " << trial;
  }
  EXPECT_LE(mismatches, 1);
}

TEST(CpuSampler, TopLogprobsAreTheMostLikelyOfTheDistributionTheLogprobIsFrom) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Sampler s;
  for (int trial = 0; trial < 400; ++trial) {
    const int V = 1 + int(rng() % 400);
    std::normal_distribution<float> nd(0.0f, 1.0f + float(rng() % 4));
    std::vector<float> logits(static_cast<size_t>(V));
    for (auto& x : logits) x = nd(rng);
    if (V > 4) logits[3] = logits[1];  // a tie: the lower id first
    SamplingParams p;
    p.seed = rng();
    p.temperature = trial % 3 == 0 ? 0.0f : 0.2f + float(rng() % 20) / 10.0f;
    if (rng() % 2) p.top_k = 1 + int(rng() % uint32_t(V + 3));
    if (rng() % 2) p.repetition_penalty = 0.7f + float(rng() % 10) / 10.0f;
    if (rng() % 2) p.presence_penalty = float(rng() % 20) / 10.0f - 0.5f;
    std::vector<int32_t> hist(rng() % 20);
    for (auto& h : hist) h = int32_t(rng() % uint32_t(std::min(V, 30)));
    const uint32_t prompt_len = hist.empty() ? 0 : uint32_t(rng() % (hist.size() + 1));
    const uint32_t idx = rng() % 1000;
    const Sampled plain = s.sample(logits.data(), V, p, idx, hist, prompt_len);
    p.top_logprobs = 1 + uint32_t(rng() % kMaxTopLogprobs);
    const Sampled got = s.sample(logits.data(), V, p, idx, hist, prompt_len);
    // Asking for alternatives changes nothing about the draw.
    ASSERT_EQ(got.token, plain.token) << "trial " << trial;
    ASSERT_EQ(got.logprob, plain.logprob) << "trial " << trial;
    ASSERT_EQ(plain.top.count, 0) << "trial " << trial;
    const std::vector<double> z = reference_distribution(logits, p, hist, prompt_len);
    const double lse = reference_lse(z);
    std::vector<int32_t> order(static_cast<size_t>(V));
    for (int i = 0; i < V; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return z[size_t(a)] > z[size_t(b)]; });
    ASSERT_EQ(got.top.count, std::min<uint32_t>(p.top_logprobs, uint32_t(V))) << "trial " << trial;
    for (uint32_t i = 0; i < got.top.count; ++i) {
      const double want = z[size_t(order[i])] - lse;
      // float penalties against double ones: values agree to ~1e-6; an id
      // may differ only where two values are that close.
      ASSERT_NEAR(got.top.entries[i].logprob, want, 1e-4 * (1 + std::fabs(want)))
          << "trial " << trial << " rank " << i;
      const int32_t id = got.top.entries[i].token;
      if (id != order[i]) {
        ASSERT_NEAR(z[size_t(id)], z[size_t(order[i])], 1e-5 * (1 + std::fabs(z[size_t(id)])))
            << "trial " << trial << " rank " << i;
      }
    }
    // The sampled token's logprob is one of the distribution's: no alternative beats the top one.
    ASSERT_LE(got.logprob, got.top.entries[0].logprob + 1e-6f) << "trial " << trial;
    if (p.temperature == 0 && got.top.count > 0) {
      ASSERT_EQ(got.top.entries[0].token, got.token) << "trial " << trial;
    }
  }
}

TEST(CpuSampler, LogitBiasForcesOrBansATokenAndTheLogprobIsUnderTheBiasedDistribution) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Sampler s;
  for (int trial = 0; trial < 100; ++trial) {
    const int V = 50 + int(rng() % 500);
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::vector<float> logits(static_cast<size_t>(V));
    for (auto& x : logits) x = nd(rng);
    SamplingParams p;
    p.seed = rng();
    p.temperature = trial % 2 ? 0.0f : 1.0f;
    p.top_logprobs = 3;
    const int32_t forced = int32_t(rng() % uint32_t(V));
    const std::vector<LogitBias> force = {{forced, 100.0f}};
    const Sampled f = s.sample(logits.data(), V, p, uint32_t(trial), {}, 0, force);
    ASSERT_EQ(f.token, forced) << "trial " << trial;
    ASSERT_GT(f.logprob, -1e-3f) << "trial " << trial << ": +100 leaves nearly all the mass on it";
    ASSERT_EQ(f.top.entries[0].token, forced) << "trial " << trial;
    // -100 on the unbiased greedy choice: another token wins.
    p.temperature = 0.0f;
    const Sampled plain = s.sample(logits.data(), V, p, 0, {}, 0);
    const std::vector<LogitBias> ban = {{plain.token, -100.0f}};
    const Sampled b = s.sample(logits.data(), V, p, 0, {}, 0, ban);
    ASSERT_NE(b.token, plain.token) << "trial " << trial;
    for (uint32_t i = 0; i < b.top.count; ++i) ASSERT_NE(b.top.entries[i].token, plain.token) << "trial " << trial;
  }
}

TEST(TopLogprobsOf, KeepsTheLowerIdOfEqualValuesAndSkipsNaN) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> z = {1.0f, nan, 3.0f, 3.0f, -2.0f, 3.0f};
  TopLogprobs top;
  top_logprobs_of(z, 0.5, 4, top);
  ASSERT_EQ(top.count, 4);
  const int32_t want[] = {2, 3, 5, 0};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(top.entries[size_t(i)].token, want[i]) << i;
  EXPECT_FLOAT_EQ(top.entries[0].logprob, 2.5f);
  EXPECT_FLOAT_EQ(top.entries[3].logprob, 0.5f);
  top_logprobs_of(z, 0.0, 20, top);  // more than there are (NaN not counted)
  EXPECT_EQ(top.count, 5);
  top_logprobs_of(z, 0.0, 0, top);
  EXPECT_EQ(top.count, 0);
}

TEST(CpuSampler, LogSumExpMatchesDoubleReferenceOnEveryIsa) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  for (MatmulIsa isa : {MatmulIsa::kPortable, MatmulIsa::kAvx2}) {
    matmul_limit_isa(isa);
    for (int n : {1, 7, 8, 9, 100, 1023, 1025, 32000, 40001}) {
      std::normal_distribution<float> nd(0.0f, 1.0f + float(rng() % 20));
      std::vector<float> z(static_cast<size_t>(n));
      for (auto& x : z) x = nd(rng);
      if (n > 10) z[3] = -1e30f, z[5] = -200.0f;  // underflow to 0
      double m = -1e300, s = 0;
      for (float x : z) m = std::max(m, double(x));
      for (float x : z) s += std::exp(double(x) - m);
      const double want = m + std::log(s);
      // float exponentials (~2e-7 relative each) summed in double.
      ASSERT_NEAR(log_sum_exp(z.data(), n), want, 1e-6 * (1 + std::fabs(want))) << "n " << n << " isa " << int(isa);
    }
  }
  matmul_limit_isa(MatmulIsa::kAmx);
}

TEST(CpuSampler, GreedyTiesGoToTheLowestIdAndTopKOneIsGreedy) {
  Sampler s;
  std::vector<float> z = {0.5f, 2.0f, -1.0f, 2.0f};
  SamplingParams g;
  g.temperature = 0;
  auto w = z;
  EXPECT_EQ(s.sample(w.data(), 4, g, 0, {}, 0).token, 1);
  SamplingParams k1;
  k1.top_k = 1;
  k1.temperature = 5.0f;
  for (uint32_t i = 0; i < 50; ++i) {
    w = z;
    EXPECT_EQ(s.sample(w.data(), 4, k1, i, {}, 0).token, 1);
  }
}

TEST(CpuSampler, RepetitionPenaltyCoversPromptButPresenceOnlyOutputs) {
  Sampler s;
  std::vector<int32_t> counts;
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 10.0f;  // token 0 is in the prompt only: not penalized
  const std::vector<float> z = {1.0f, 0.9f, 0.0f};
  const std::vector<int32_t> hist = {0, 1};  // prompt {0}, output {1}
  auto w = z;
  apply_penalties(w.data(), 3, p, hist, 1, counts);
  EXPECT_FLOAT_EQ(w[0], 1.0f);
  EXPECT_FLOAT_EQ(w[1], 0.9f - 10.0f);
  EXPECT_EQ(s.sample(z.data(), 3, p, 0, hist, 1).token, 0);
  SamplingParams r;
  r.temperature = 0;
  r.repetition_penalty = 2.0f;  // the prompt token is penalized too
  w = z;
  apply_penalties(w.data(), 3, r, hist, 1, counts);
  EXPECT_FLOAT_EQ(w[0], 0.5f);
  EXPECT_FLOAT_EQ(w[1], 0.45f);
  EXPECT_EQ(s.sample(z.data(), 3, r, 0, hist, 1).token, 0);
  // The logprob is under the penalized logits.
  const Sampled got = s.sample(z.data(), 3, r, 0, hist, 1);
  EXPECT_NEAR(got.logprob, 0.5 - std::log(std::exp(0.5) + std::exp(0.45) + 1.0), 1e-6);
}

TEST(CpuSampler, LeavesTheLogitsUnchanged) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::vector<float> z(5000);
  for (auto& x : z) x = nd(rng);
  const auto before = z;
  Sampler s;
  const std::vector<int32_t> hist = {1, 2, 3, 3, 4000};
  for (float temp : {0.0f, 0.7f}) {
    for (float rep : {1.0f, 1.3f}) {
      SamplingParams p;
      p.temperature = temp;
      p.repetition_penalty = rep;
      p.frequency_penalty = rep == 1.0f ? 0.0f : 0.5f;
      p.top_k = temp > 0 ? 50 : 0;
      p.top_p = temp > 0 ? 0.9f : 1.0f;
      (void)s.sample(z.data(), int64_t(z.size()), p, 3, hist, 2);
      ASSERT_EQ(z, before) << "temperature " << temp << " repetition " << rep;
    }
  }
}

TEST(CpuSampler, CounterRngIsDeterministicAndSpread) {
  EXPECT_EQ(counter_uniform(42, 7), counter_uniform(42, 7));
  EXPECT_NE(counter_uniform(42, 7), counter_uniform(42, 8));
  EXPECT_NE(counter_uniform(42, 7), counter_uniform(43, 7));
  std::vector<int> bins(10, 0);
  double mean = 0;
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    const double u = counter_uniform(1234, uint32_t(i));
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    mean += u / n;
    bins[size_t(u * 10)]++;
  }
  EXPECT_NEAR(mean, 0.5, 0.005);
  for (int b : bins) EXPECT_NEAR(b, n / 10, n / 100);  // 10% of a bin (many sigma)
}

TEST(CpuSampler, EmpiricalFrequenciesFollowTheSoftmax) {
  Sampler s;
  const std::vector<float> z = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
  double denom = 0;
  for (float x : z) denom += std::exp(double(x));
  std::vector<int> counts(5, 0);
  SamplingParams p;
  p.seed = 99;
  const int n = 40000;
  for (int i = 0; i < n; ++i) {
    auto w = z;
    counts[size_t(s.sample(w.data(), 5, p, uint32_t(i), {}, 0).token)]++;
  }
  for (size_t i = 0; i < 5; ++i) EXPECT_NEAR(double(counts[i]) / n, std::exp(double(z[i])) / denom, 0.01) << i;
}

}  // namespace
}  // namespace myriad::gpu::cpu
