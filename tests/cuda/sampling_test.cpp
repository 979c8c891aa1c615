// Device sampling vs a plain CPU reference: greedy (ties to the lowest id),
// temperature, top-k, top-p, both, the three penalties and logit bias
// (forcing, banning with -inf, an id biased twice) and the top_logprobs
// alternatives; the draw is
// counter-based, so the reference predicts the exact token from (seed,
// output_index). Also: the token does not depend on the batch around the row,
// and 4000 draws of one distribution match its probabilities.
#include <algorithm>
#include <cmath>
#include <map>

#include "cuda_test_util.h"
#include "gpu/cpu/sampler.h"
#include "gpu/cuda/sampling.h"

namespace myriad::cuda_test {
namespace {

using gpu::cuda::SampleRow;

struct RefResult {
  int token;
  double logprob;
  std::vector<bool> kept;
  std::vector<double> e;
  double target;
  std::vector<float> x;  // the scaled logits the logprobs are under
  double log_norm;       // their log-sum-exp
};

// The CPU twin. Penalties and scaling in float like the device (x = l * (1/T));
// sums in double.
RefResult sample_ref(std::vector<float> l, const SampleRow& p, const std::vector<int32_t>& hist, float top_p_slack,
                     const std::vector<LogitBias>& bias = {}) {
  const int V = int(l.size());
  for (uint32_t i = 0; i < p.bias_count; ++i) {
    const LogitBias& b = bias[p.bias_offset + i];
    if (b.token >= 0 && b.token < V) l[size_t(b.token)] += b.bias;
  }
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    std::map<int, int> count;
    std::vector<int> order;
    for (uint32_t i = 0; i < p.history_len; ++i) {
      const int tok = hist[p.history_offset + i];
      if (!count.count(tok)) order.push_back(tok), count[tok] = 0;
      if (i >= p.prompt_len) count[tok]++;
    }
    for (int tok : order) {
      float& x = l[tok];
      if (p.repetition_penalty != 1.0f) x = x > 0 ? x / p.repetition_penalty : x * p.repetition_penalty;
      x -= p.presence_penalty * (count[tok] > 0 ? 1.0f : 0.0f) + p.frequency_penalty * float(count[tok]);
    }
  }
  const float inv_t = p.temperature > 0 ? 1.0f / p.temperature : 1.0f;
  std::vector<float> x(V);
  for (int i = 0; i < V; ++i) x[i] = l[i] * inv_t;
  int am = 0;
  for (int i = 1; i < V; ++i) if (x[i] > x[am]) am = i;
  RefResult r;
  r.e.resize(V);
  double z = 0;
  for (int i = 0; i < V; ++i) z += (r.e[i] = std::exp(double(x[i]) - x[am]));
  r.x = x;
  r.log_norm = double(x[am]) + std::log(z);
  const bool greedy = !(p.temperature > 0) || p.top_k == 1 || !(p.top_p > 0);
  r.kept.assign(V, true);
  if (greedy) {
    r.token = am;
    r.logprob = double(x[am]) - x[am] - std::log(z);
    return r;
  }
  if (p.top_k > 0 && p.top_k < V) {
    std::vector<float> s = x;
    std::nth_element(s.begin(), s.begin() + (p.top_k - 1), s.end(), std::greater<float>());
    const float kth = s[p.top_k - 1];
    for (int i = 0; i < V; ++i) r.kept[i] = x[i] >= kth;
  }
  if (p.top_p < 1.0f) {
    double zk = 0;
    for (int i = 0; i < V; ++i) if (r.kept[i]) zk += r.e[i];
    std::vector<int> idx;
    for (int i = 0; i < V; ++i) if (r.kept[i]) idx.push_back(i);
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return x[a] > x[b]; });
    std::vector<bool> keep(V, false);
    double above = 0;  // mass strictly above the current value
    for (size_t j = 0; j < idx.size();) {
      size_t k = j;
      double tie = 0;
      while (k < idx.size() && x[idx[k]] == x[idx[j]]) tie += r.e[idx[k++]];
      if (above < p.top_p * zk * top_p_slack)
        for (size_t q = j; q < k; ++q) keep[idx[q]] = true;
      above += tie;
      j = k;
    }
    r.kept = keep;
  }
  double zk = 0;
  for (int i = 0; i < V; ++i) if (r.kept[i]) zk += r.e[i];
  r.target = double(gpu::cuda::sampling_uniform(p.seed, p.output_index)) * zk;
  double acc = 0;
  r.token = -1;
  for (int i = 0; i < V; ++i)
    if (r.kept[i]) {
      acc += r.e[i];
      if (acc > r.target) { r.token = i; break; }
    }
  if (r.token < 0) for (int i = V - 1; i >= 0 && r.token < 0; --i) if (r.kept[i]) r.token = i;
  r.logprob = double(x[r.token]) - x[am] - std::log(z);
  return r;
}

// True if `tok` is what the reference would draw up to float rounding: kept
// (with a little top-p slack) and the target falls in its cumulative interval
// (with a little slack).
bool token_acceptable(const std::vector<float>& l, const SampleRow& p, const std::vector<int32_t>& h, int tok,
                      const std::vector<LogitBias>& bias = {}) {
  const RefResult r = sample_ref(l, p, h, 1.0f, bias);
  if (tok == r.token) return true;
  const RefResult loose = sample_ref(l, p, h, 1.0f + 1e-4f, bias);
  if (tok < 0 || tok >= int(l.size()) || !loose.kept[size_t(tok)]) return false;
  double before = 0, zk = 0;
  for (size_t i = 0; i < l.size(); ++i) if (r.kept[i]) { zk += r.e[i]; if (int(i) < tok) before += r.e[i]; }
  const double slack = 1e-5 * zk;
  return r.target >= before - slack && r.target <= before + r.e[size_t(tok)] + slack;
}

struct SamplingBatch {
  std::vector<float> logits;  // [rows, V]
  std::vector<SampleRow> rows;
  std::vector<int32_t> history;
  std::vector<LogitBias> bias;
};

using TopEntry = TopLogprobs::Entry;

void run(const SamplingBatch& b, int V, std::vector<int32_t>& tokens, std::vector<float>& logprobs,
         std::vector<TopEntry>* top = nullptr) {
  const int R = int(b.rows.size());
  auto dl = upload(b.logits, DType::kF32);
  auto dw = poisoned(size_t(R) * V, DType::kF32);
  auto dp = upload_raw(b.rows);
  auto dh = upload_raw(b.history);
  auto db = upload_raw(b.bias.empty() ? std::vector<LogitBias>(1) : b.bias);
  auto dt = poisoned(R, DType::kF32);  // NaN bytes: 0xFFFFFFFF = -1 as int32
  auto dlp = poisoned(R, DType::kF32);
  auto dtop = poisoned(size_t(R) * kMaxTopLogprobs * 2, DType::kF32);
  auto st = gpu::cuda::sample(dl.as<float>(), V, dw.as<float>(), dp.as<SampleRow>(), dh.as<int32_t>(), R, V,
                              dt.as<int32_t>(), dlp.as<float>(), nullptr, db.as<LogitBias>(), dtop.as<TopEntry>());
  ASSERT_TRUE(st.ok()) << st.error().to_string();
  tokens = download_raw<int32_t>(dt, R);
  logprobs = download(dlp, R, DType::kF32);
  if (top) *top = download_raw<TopEntry>(dtop, size_t(R) * kMaxTopLogprobs);
}

SampleRow row(float t, int k, float p, uint64_t seed, uint32_t idx) {
  SampleRow r;
  r.temperature = t;
  r.top_k = k;
  r.top_p = p;
  r.seed = seed;
  r.output_index = idx;
  return r;
}

TEST(Sampling, UniformIsBitIdenticalToTheCpuBackend) {
  // Host-side check (no device needed): both backends draw the same u.
  for (uint64_t seed : {0ull, 1ull, 12345ull, ~0ull})
    for (uint32_t i : {0u, 1u, 7u, 1000000u}) EXPECT_EQ(gpu::cuda::sampling_uniform(seed, i), gpu::cpu::counter_uniform(seed, i));
}

class SamplingTest : public ::testing::TestWithParam<int> {};

TEST_P(SamplingTest, MatchesCpuReference) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const int V = GetParam();
  SamplingBatch b;
  std::vector<SampleRow> kinds = {row(0, 0, 1, 0, 0),      row(1.0f, 0, 1, 0, 0),   row(0.7f, 0, 1, 0, 0),
                                  row(1.0f, 5, 1, 0, 0),   row(1.0f, 0, 0.9f, 0, 0), row(0.8f, 50, 0.8f, 0, 0),
                                  row(1.3f, 1, 1, 0, 0),   row(1.0f, 0, 0.3f, 0, 0)};
  for (int rep = 0; rep < 5; ++rep)
    for (auto k : kinds) {
      k.seed = rng()();
      k.output_index = uint32_t(rng()() % 1000);
      if (rep == 4) {  // logit bias: a boost, a ban of the whole top, an id biased twice
        k.bias_offset = uint32_t(b.bias.size());
        const int32_t boosted = int32_t(rng()() % uint64_t(V)), twice = int32_t(rng()() % uint64_t(V));
        b.bias.push_back({boosted, 6.0f});
        b.bias.push_back({twice, 3.0f});
        b.bias.push_back({twice, -1.5f});
        b.bias.push_back({int32_t(V / 3), -INFINITY});  // the greedy rows' tied maximum, banned
        b.bias.push_back({int32_t(V + 5), 50.0f});      // outside the vocabulary: ignored
        k.bias_count = uint32_t(b.bias.size()) - k.bias_offset;
        k.top_logprobs = kMaxTopLogprobs;
      }
      if (rep == 3) k.top_logprobs = 5;  // under the penalized distribution
      if (rep == 3) {  // penalties over a history with repeats
        k.history_offset = uint32_t(b.history.size());
        k.history_len = 40;
        k.prompt_len = 15;
        for (int i = 0; i < 40; ++i) b.history.push_back(int32_t(rng()() % std::min(V, 60)));
        k.repetition_penalty = 1.3f;
        k.presence_penalty = 0.5f;
        k.frequency_penalty = 0.25f;
      }
      b.rows.push_back(k);
      auto l = randn(V, DType::kF32, 2.0f);
      if (k.temperature == 0) {  // a tie for the maximum: the lower id wins
        const float mx = *std::max_element(l.begin(), l.end()) + 1.0f;
        l[V / 2] = mx;
        l[V / 3] = mx;
      }
      b.logits.insert(b.logits.end(), l.begin(), l.end());
    }
  if (b.history.empty()) b.history.push_back(0);
  std::vector<int32_t> tok;
  std::vector<float> lp;
  std::vector<TopEntry> top;
  run(b, V, tok, lp, &top);
  for (size_t r = 0; r < b.rows.size(); ++r) {
    const std::vector<float> l(b.logits.begin() + r * V, b.logits.begin() + (r + 1) * V);
    const RefResult ref = sample_ref(l, b.rows[r], b.history, 1.0f, b.bias);
    EXPECT_TRUE(token_acceptable(l, b.rows[r], b.history, tok[r], b.bias))
        << "row " << r << ": got " << tok[r] << ", reference " << ref.token << " (T=" << b.rows[r].temperature
        << " k=" << b.rows[r].top_k << " p=" << b.rows[r].top_p << ")";
    if (b.rows[r].temperature == 0 && b.rows[r].bias_count == 0) {
      EXPECT_EQ(tok[r], V / 3) << "greedy tie must go to the lowest id";
    }
    if (b.rows[r].temperature == 0 && b.rows[r].bias_count > 0) {  // the banned V/3 is never drawn
      EXPECT_NE(tok[r], V / 3);
      EXPECT_EQ(tok[r], ref.token);
    }
    if (tok[r] == ref.token) {
      EXPECT_NEAR(lp[r], ref.logprob, 1e-4 + 1e-5 * std::fabs(ref.logprob)) << "row " << r;
    }
    // Alternatives: the k largest scaled logits, equal ones by lower id,
    // under the logprob's distribution.
    const uint32_t k = b.rows[r].top_logprobs;
    std::vector<int> order(size_t(V), 0);
    for (int i = 0; i < V; ++i) order[size_t(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return ref.x[size_t(a)] > ref.x[size_t(c)]; });
    for (uint32_t j = 0; j < k; ++j) {
      const TopEntry& got = top[r * kMaxTopLogprobs + j];
      const int want = order[j];
      ASSERT_EQ(got.token, want) << "row " << r << " alternative " << j;
      const double want_lp = double(ref.x[size_t(want)]) - ref.log_norm;
      if (std::isinf(want_lp)) {
        EXPECT_TRUE(std::isinf(got.logprob) && got.logprob < 0) << "row " << r << " alternative " << j;
      } else {
        EXPECT_NEAR(got.logprob, want_lp, 1e-4 + 1e-5 * std::fabs(want_lp)) << "row " << r << " alternative " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Vocab, SamplingTest, ::testing::Values(512, 32000, 128256));

TEST(Sampling, TokenIndependentOfBatch) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const int V = 1000;
  SamplingBatch a, b;
  auto l = randn(V, DType::kF32, 1.0f);
  const SampleRow target = row(0.9f, 40, 0.95f, 12345, 7);
  a.rows = {target};
  a.logits = l;
  a.history = {0};
  for (int i = 0; i < 9; ++i) {  // other rows around it, target in the middle
    if (i == 4) {
      b.rows.push_back(target);
      b.logits.insert(b.logits.end(), l.begin(), l.end());
    } else {
      b.rows.push_back(row(1.0f, 0, 1, rng()(), uint32_t(i)));
      auto o = randn(V, DType::kF32, 1.0f);
      b.logits.insert(b.logits.end(), o.begin(), o.end());
    }
  }
  b.history = {0};
  std::vector<int32_t> ta, tb;
  std::vector<float> la, lb;
  run(a, V, ta, la);
  run(b, V, tb, lb);
  EXPECT_EQ(ta[0], tb[4]);
  EXPECT_EQ(la[0], lb[4]);
}

TEST(Sampling, DrawsFollowTheDistribution) {
  MYRIAD_REQUIRE_CUDA();
  const int V = 8, N = 4000;
  const std::vector<float> l = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f, 0.0f};
  SamplingBatch b;
  for (int i = 0; i < N; ++i) {
    b.rows.push_back(row(1.0f, 0, 1, 99, uint32_t(i)));
    b.logits.insert(b.logits.end(), l.begin(), l.end());
  }
  b.history = {0};
  std::vector<int32_t> tok;
  std::vector<float> lp;
  run(b, V, tok, lp);
  double z = 0;
  for (float x : l) z += std::exp(x);
  std::vector<int> count(V, 0);
  for (int t : tok) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, V);
    count[t]++;
  }
  for (int i = 0; i < V; ++i) {
    const double p = std::exp(l[i]) / z, sd = std::sqrt(N * p * (1 - p));
    EXPECT_NEAR(count[i], N * p, 5 * sd + 1) << "token " << i;
  }
}

}  // namespace
}  // namespace myriad::cuda_test
