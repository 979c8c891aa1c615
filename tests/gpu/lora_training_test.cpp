// The training compute (gpu/cpu/train_kernels.h, gpu/cpu/lora_trainer.h)
// against finite differences in float64, and the loop logic
// (runtime/training/) end to end on a random-weight tiny model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/lora_trainer.h"
#include "gpu/cpu/train_kernels.h"
#include "runtime/model_factory.h"
#include "runtime/training/training_job.h"
#include "test_seed.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;
using gpu::cpu::LlamaLoraTrainer;
using gpu::cpu::ThreadPool;
namespace train = gpu::cpu::train;

// Central differences of f at x[i] (h = 1e-6: truncation ~1e-12, rounding ~1e-10 in double).
double finite_difference(std::vector<double>& x, size_t i, const std::function<double()>& f) {
  const double h = 1e-6, x0 = x[i];
  x[i] = x0 + h;
  const double up = f();
  x[i] = x0 - h;
  const double down = f();
  x[i] = x0;
  return (up - down) / (2 * h);
}

// |got - ref| <= atol + rtol |ref|: double analytic gradients against central differences.
void expect_close(double got, double ref, const std::string& what) {
  EXPECT_LE(std::abs(got - ref), 1e-7 + 1e-5 * std::abs(ref)) << what << ": analytic " << got << " vs numeric " << ref;
}

std::vector<double> randn(std::mt19937_64& rng, size_t n, double s = 1.0) {
  std::normal_distribution<double> d(0.0, s);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(TrainKernels, BackwardsMatchFiniteDifferences) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  // Each check: L = <forward(x), R> for a random R; dL/dx from the backward.
  {  // RMSNorm
    const int64_t n = 12;
    auto x = randn(rng, n), R = randn(rng, n);
    std::vector<float> w(n);
    for (auto& v : w) v = float(1.0 + 0.3 * randn(rng, 1)[0]);
    std::vector<double> y(n), dx(n, 0.0);
    auto f = [&] {
      train::rmsnorm_row(x.data(), w.data(), n, 1e-5, y.data());
      return dot(y, R);
    };
    const double r = train::rmsnorm_row(x.data(), w.data(), n, 1e-5, y.data());
    train::rmsnorm_row_backward(x.data(), w.data(), r, R.data(), n, dx.data());
    for (size_t i = 0; i < size_t(n); ++i) expect_close(dx[i], finite_difference(x, i, f), "rmsnorm x" + std::to_string(i));
  }
  {  // RoPE (2 heads of 8)
    const int64_t heads = 2, d = 8;
    auto x = randn(rng, size_t(heads * d)), R = randn(rng, x.size());
    std::vector<double> cs(d / 2), sn(d / 2);
    for (int64_t i = 0; i < d / 2; ++i) {
      const double a = 3.0 * std::pow(10000.0, -2.0 * double(i) / double(d));
      cs[size_t(i)] = std::cos(a);
      sn[size_t(i)] = std::sin(a);
    }
    auto f = [&] {
      auto y = x;
      train::rope_row(y.data(), heads, d, cs.data(), sn.data());
      return dot(y, R);
    };
    auto dx = R;
    train::rope_row_backward(dx.data(), heads, d, cs.data(), sn.data());
    for (size_t i = 0; i < x.size(); ++i) expect_close(dx[i], finite_difference(x, i, f), "rope x" + std::to_string(i));
  }
  {  // SiLU-mul
    const int64_t n = 10;
    auto g = randn(rng, n, 2.0), u = randn(rng, n), R = randn(rng, n);
    std::vector<double> a(n), dg(n, 0.0), du(n, 0.0);
    auto f = [&] {
      train::silu_mul_row(g.data(), u.data(), n, a.data());
      return dot(a, R);
    };
    train::silu_mul_row_backward(g.data(), u.data(), R.data(), n, dg.data(), du.data());
    for (size_t i = 0; i < size_t(n); ++i) {
      expect_close(dg[i], finite_difference(g, i, f), "silu gate " + std::to_string(i));
      expect_close(du[i], finite_difference(u, i, f), "silu up " + std::to_string(i));
    }
  }
  for (int64_t window : {int64_t(0), int64_t(3)}) {  // attention, GQA (4 query heads over 2 kv heads)
    const train::AttentionShape s{7, 4, 2, 6, window};
    const size_t qn = size_t(s.T * s.num_heads * s.head_dim), kn = size_t(s.T * s.num_kv_heads * s.head_dim);
    auto q = randn(rng, qn), k = randn(rng, kn), v = randn(rng, kn), R = randn(rng, qn);
    std::vector<double> out(qn), lse(size_t(s.T * s.num_heads));
    auto f = [&] {
      for (int64_t g = 0; g < s.num_kv_heads; ++g) train::attention_forward(s, g, q.data(), k.data(), v.data(), out.data(), lse.data());
      return dot(out, R);
    };
    f();
    std::vector<double> dq(qn, 0.0), dk(kn, 0.0), dv(kn, 0.0);
    for (int64_t g = 0; g < s.num_kv_heads; ++g)
      train::attention_backward(s, g, q.data(), k.data(), v.data(), out.data(), lse.data(), R.data(), dq.data(),
                                dk.data(), dv.data());
    const std::string w = " (window " + std::to_string(window) + ")";
    for (size_t i = 0; i < qn; ++i) expect_close(dq[i], finite_difference(q, i, f), "attention q" + std::to_string(i) + w);
    for (size_t i = 0; i < kn; ++i) {
      expect_close(dk[i], finite_difference(k, i, f), "attention k" + std::to_string(i) + w);
      expect_close(dv[i], finite_difference(v, i, f), "attention v" + std::to_string(i) + w);
    }
  }
  {  // cross-entropy
    const int64_t V = 9;
    auto logits = randn(rng, V, 3.0);
    std::vector<double> dl(V);
    auto f = [&] { return 0.7 * train::cross_entropy_row(logits.data(), V, 4, 0.7, dl.data()); };
    train::cross_entropy_row(logits.data(), V, 4, 0.7, dl.data());
    const auto grad = dl;
    for (size_t i = 0; i < size_t(V); ++i) expect_close(grad[i], finite_difference(logits, i, f), "cross-entropy " + std::to_string(i));
  }
}

TEST(TrainKernels, InputGradientMatchesItsReference) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (DType dt : {DType::kF32, DType::kBF16})
    for (int64_t T : {1, 5, 70}) {
      const int64_t out = 37, in = 300;
      std::vector<float> wf(size_t(out * in)), dy(size_t(T * out));
      std::normal_distribution<float> nd(0.f, 1.f);
      for (auto& v : wf) v = nd(rng);
      for (auto& v : dy) v = nd(rng);
      std::vector<uint16_t> wb(wf.size());
      for (size_t i = 0; i < wf.size(); ++i) {
        uint32_t bits;
        std::memcpy(&bits, &wf[i], 4);
        wb[i] = uint16_t(bits >> 16);
      }
      gpu::cpu::WeightView w{dt, dt == DType::kF32 ? static_cast<const void*>(wf.data()) : wb.data(), out, in};
      std::vector<float> got(size_t(T * in), 1.0f), ref(size_t(T * in));
      train::matmul_input_grad(pool, dy.data(), T, w, got.data(), /*accumulate=*/true);
      train::matmul_input_grad_reference(dy.data(), T, w, ref.data());
      // float32 sums of `out` products of unit-variance values: atol 1e-4 covers their rounding.
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_LE(std::abs(got[i] - 1.0f - ref[i]), 1e-4f + 1e-5f * std::abs(ref[i]))
            << "T " << T << " dtype " << dtype_name(dt) << " element " << i;
    }
}

// LoRA's dA/dB sums (accumulate_outer) on every instruction set this CPU
// has (AVX-512 FMAs or the portable loops) against a double reference:
// odd widths and ranks (masked tails), several spans, a column sub-range.
// The kernel sets this CPU runs, portable first.
std::vector<gpu::cpu::LoraIsa> every_isa() {
  std::vector<gpu::cpu::LoraIsa> isas;
  for (int i = 0; i <= int(gpu::cpu::lora_best_isa()); ++i) isas.push_back(gpu::cpu::LoraIsa(i));
  return isas;
}

// float attention (forward: out, lse; backward: dq, dk, dv) on each kernel
// set against the same kernels in double (which the finite-difference test
// above checks): causal and windowed, grouped heads, head dims that do and do
// not take the vector path, sequences across the backward's 64-query blocks.
TEST(TrainKernels, AttentionInFloatMatchesDoubleOnEveryIsa) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  for (gpu::cpu::LoraIsa isa : every_isa())
    for (int64_t T : {1, 7, 70, 131})
      for (int64_t d : {8, 12, 64})
        for (int64_t window : {0, 5}) {
          train::AttentionShape sh;
          sh.T = T, sh.num_heads = 4, sh.num_kv_heads = 2, sh.head_dim = d, sh.window = window;
          const size_t nq = size_t(T * 4 * d), nkv = size_t(T * 2 * d);
          const std::vector<double> q = randn(rng, nq), k = randn(rng, nkv), v = randn(rng, nkv), dout = randn(rng, nq);
          auto to_float = [](const std::vector<double>& x) { return std::vector<float>(x.begin(), x.end()); };
          // Each side gets inputs of the same values (the float ones, widened).
          const std::vector<float> qf = to_float(q), kf = to_float(k), vf = to_float(v), df = to_float(dout);
          const std::vector<double> qd(qf.begin(), qf.end()), kd(kf.begin(), kf.end()), vd(vf.begin(), vf.end()),
              dd(df.begin(), df.end());
          std::vector<double> out_d(nq), lse_d(size_t(T * 4)), dq_d(nq, 0.0), dk_d(nkv, 0.0), dv_d(nkv, 0.0);
          std::vector<float> out_f(nq), lse_f(size_t(T * 4)), dq_f(nq, 0.f), dk_f(nkv, 0.f), dv_f(nkv, 0.f);
          gpu::cpu::lora_limit_isa(isa);
          for (int64_t kv = 0; kv < 2; ++kv) {
            train::attention_forward(sh, kv, qd.data(), kd.data(), vd.data(), out_d.data(), lse_d.data());
            train::attention_forward(sh, kv, qf.data(), kf.data(), vf.data(), out_f.data(), lse_f.data());
          }
          for (int64_t kv = 0; kv < 2; ++kv) {
            train::attention_backward(sh, kv, qd.data(), kd.data(), vd.data(), out_d.data(), lse_d.data(), dd.data(),
                                      dq_d.data(), dk_d.data(), dv_d.data());
            train::attention_backward(sh, kv, qf.data(), kf.data(), vf.data(), out_f.data(), lse_f.data(), df.data(),
                                      dq_f.data(), dk_f.data(), dv_f.data());
          }
          gpu::cpu::lora_limit_isa(gpu::cpu::LoraIsa::kAvx512);
          // float32 dot products of up to 64 unit-variance terms and sums of
          // up to 131 weighted rows, exp to ~2e-7 relative: 1e-4 + 1e-4 |ref|
          // holds them with a margin of ~10x over what was observed.
          auto check = [&](const std::vector<float>& got, const std::vector<double>& ref, const char* what) {
            for (size_t i = 0; i < ref.size(); ++i)
              ASSERT_LE(std::abs(double(got[i]) - ref[i]), 1e-4 + 1e-4 * std::abs(ref[i]))
                  << gpu::cpu::lora_isa_name(isa) << " " << what << "[" << i << "] T " << T << " d " << d
                  << " window " << window;
          };
          check(out_f, out_d, "out");
          check(lse_f, lse_d, "lse");
          check(dq_f, dq_d, "dq");
          check(dk_f, dk_d, "dk");
          check(dv_f, dv_d, "dv");
        }
}

TEST(TrainKernels, OuterProductSumsMatchTheirReferenceOnEveryIsa) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t T = 50, ld_u = 19, ld_v = 203;
  std::vector<float> u(size_t(T * ld_u)), v(size_t(T * ld_v));
  for (auto& x : u) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  const std::vector<std::pair<int64_t, int64_t>> spans = {{0, 7}, {12, 30}, {31, 50}};
  for (gpu::cpu::LoraIsa isa : every_isa())
    for (int64_t nk : {1, 3, 4, 17})
      for (auto [i0, i1] : {std::pair<int64_t, int64_t>{0, 203}, {5, 69}, {64, 128}}) {
        gpu::cpu::lora_limit_isa(isa);
        const float scale = 0.75f;
        std::vector<float> got(size_t(nk * ld_v), 0.5f);
        train::accumulate_outer(spans, u.data(), ld_u, nk, v.data(), ld_v, i0, i1, scale, got.data(), ld_v);
        gpu::cpu::lora_limit_isa(gpu::cpu::LoraIsa::kAvx512);
        for (int64_t k = 0; k < nk; ++k)
          for (int64_t i = 0; i < ld_v; ++i) {
            double ref = 0.5;
            if (i >= i0 && i < i1) {
              double sum = 0;
              for (const auto& [t0, t1] : spans)
                for (int64_t t = t0; t < t1; ++t) sum += double(u[size_t(t * ld_u + k)]) * double(v[size_t(t * ld_v + i)]);
              ref += double(scale) * sum;
            }
            // float32 sums of up to 50 unit-variance products: atol 1e-4 covers their rounding.
            ASSERT_LE(std::abs(double(got[size_t(k * ld_v + i)]) - ref), 1e-4 + 1e-5 * std::abs(ref))
                << gpu::cpu::lora_isa_name(isa) << " nk " << nk << " columns [" << i0 << ", " << i1 << ") k " << k
                << " i " << i;
          }
      }
}

// A random-weight tiny model (4 heads over 2 kv heads) in float32, made once.
const std::shared_ptr<const Checkpoint>& tiny_model() {
  static std::shared_ptr<const Checkpoint> ck = [] {
    const fs::path dir = fs::temp_directory_path() / ("myriad_train_tiny_" + std::to_string(std::random_device{}()));
    MakeModelOptions mo;
    mo.shape = "tiny";
    mo.seed = 7;
    mo.dtype = DType::kF32;
    mo.init_std = 0.08f;
    mo.out_dir = dir.string();
    EXPECT_TRUE(make_model(mo).ok());
    auto c = Checkpoint::load(mo.out_dir);
    EXPECT_TRUE(c.ok()) << c.error().to_string();
    return c.ok() ? c.value() : nullptr;
  }();
  return ck;
}

template <class Real>
LoraParams<Real> convert(const LoraParams<float>& p) {
  LoraParams<Real> out;
  out.num_layers = p.num_layers;
  for (const auto& m : p.modules)
    out.modules.push_back({m.rank, Real(m.scale), std::vector<Real>(m.a.begin(), m.a.end()),
                           std::vector<Real>(m.b.begin(), m.b.end())});
  return out;
}

// Two jobs (rank 4 on every module; rank 2 on q and v only) with random
// non-zero B (A's gradient is zero while B is), over three rows.
struct GradCase {
  LoraParams<float> p0, p1;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> targets;
  std::vector<TrainingRow> rows;
};

GradCase grad_case(uint64_t seed, const ModelConfig& c) {
  GradCase g;
  LoraTargets t0;
  t0.rank = 4;
  t0.alpha = 8;
  LoraTargets t1;
  t1.rank = 2;
  t1.alpha = 2;
  for (int m = 0; m < kNumLinearModules; ++m) t1.modules[m] = m == int(LinearModule::kQ) || m == int(LinearModule::kV);
  g.p0 = init_lora_params(c, t0, seed);
  g.p1 = init_lora_params(c, t1, seed + 1);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.2f);
  for (auto* p : {&g.p0, &g.p1})
    for (auto& m : p->modules)
      for (auto& v : m.b) v = nd(rng);
  for (int64_t len : {6, 4, 9}) {
    std::vector<int32_t> tok(static_cast<size_t>(len));
    std::vector<uint8_t> tgt(static_cast<size_t>(len));
    for (auto& v : tok) v = int32_t(rng() % uint64_t(c.vocab_size));
    for (auto& v : tgt) v = uint8_t(rng() % 3 != 0);
    g.tokens.push_back(tok);
    g.targets.push_back(tgt);
  }
  for (size_t r = 0; r < g.tokens.size(); ++r) g.rows.push_back({int32_t(r == 1 ? 1 : 0), &g.tokens[r], &g.targets[r]});
  return g;
}

TEST(LoraTrainer, ModelGradientsMatchFiniteDifferencesInDouble) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto& ck = tiny_model();
  ASSERT_TRUE(ck);
  ThreadPool pool(2);
  LlamaLoraTrainer<double> tr(ck, pool);
  GradCase gc = grad_case(seed, ck->config());
  auto p0 = convert<double>(gc.p0), p1 = convert<double>(gc.p1);
  auto g0 = p0.zeros_like(), g1 = p1.zeros_like();
  auto loss = [&](bool grads) {
    TrainingJobTensors<double> jobs[2] = {{&p0, grads ? &g0 : nullptr, 0.5, 0, 0}, {&p1, grads ? &g1 : nullptr, 2.0, 0, 0}};
    EXPECT_TRUE(tr.forward_backward(gc.rows, jobs).ok());
    return 0.5 * jobs[0].loss_sum + 2.0 * jobs[1].loss_sum;
  };
  loss(true);
  // Recomputing activations gives the same gradients.
  auto g0_kept = g0;
  g0.set_zero();
  g1.set_zero();
  tr.set_recompute(true);
  loss(true);
  tr.set_recompute(false);
  for (size_t i = 0; i < g0.modules.size(); ++i) {
    ASSERT_EQ(g0.modules[i].a, g0_kept.modules[i].a) << "recompute changed module " << i;
    ASSERT_EQ(g0.modules[i].b, g0_kept.modules[i].b) << "recompute changed module " << i;
  }
  std::mt19937_64 rng(seed ^ 0xfd);
  const int nl = int(ck->config().num_layers);
  int checked = 0;
  for (auto [p, g, name] : {std::tuple{&p0, &g0, "job0"}, std::tuple{&p1, &g1, "job1"}})
    for (int l = 0; l < nl; ++l)
      for (int m = 0; m < kNumLinearModules; ++m) {
        auto& mp = p->at(l, LinearModule(m));
        auto& mg = g->at(l, LinearModule(m));
        if (mp.rank == 0) {
          continue;
        }
        for (bool is_b : {false, true}) {
          auto& vals = is_b ? mp.b : mp.a;
          auto& grads = is_b ? mg.b : mg.a;
          for (int k = 0; k < 3; ++k) {
            const size_t i = size_t(rng() % vals.size());
            const double fd = finite_difference(vals, i, [&] { return loss(false); });
            expect_close(grads[i], fd,
                         std::string(name) + " layer " + std::to_string(l) + " " +
                             linear_module_name(LinearModule(m)) + (is_b ? " B[" : " A[") + std::to_string(i) + "]");
            ++checked;
          }
        }
      }
  EXPECT_EQ(checked, 2 * 3 * nl * (7 + 2));
}

TEST(LoraTrainer, FloatGradientsAgreeWithDouble) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto& ck = tiny_model();
  ASSERT_TRUE(ck);
  ThreadPool pool(2);
  GradCase gc = grad_case(seed, ck->config());
  LlamaLoraTrainer<double> td(ck, pool);
  LlamaLoraTrainer<float> tf(ck, pool);
  auto d0 = convert<double>(gc.p0), d1 = convert<double>(gc.p1);
  auto dg0 = d0.zeros_like(), dg1 = d1.zeros_like();
  auto fg0 = gc.p0.zeros_like(), fg1 = gc.p1.zeros_like();
  TrainingJobTensors<double> dj[2] = {{&d0, &dg0, 1.0, 0, 0}, {&d1, &dg1, 1.0, 0, 0}};
  TrainingJobTensors<float> fj[2] = {{&gc.p0, &fg0, 1.0, 0, 0}, {&gc.p1, &fg1, 1.0, 0, 0}};
  ASSERT_TRUE(td.forward_backward(gc.rows, dj).ok());
  ASSERT_TRUE(tf.forward_backward(gc.rows, fj).ok());
  EXPECT_NEAR(fj[0].loss_sum, dj[0].loss_sum, 1e-4 * std::abs(dj[0].loss_sum));
  EXPECT_EQ(fj[0].loss_tokens, dj[0].loss_tokens);
  // float32 activations through 2 layers: a few ulps per op, ~1e-5 relative; atol for near-zero entries.
  double max_ref = 0;
  for (const auto& m : dg0.modules)
    for (double v : m.b) max_ref = std::max(max_ref, std::abs(v));
  for (size_t i = 0; i < dg0.modules.size(); ++i)
    for (bool is_b : {false, true}) {
      const auto& d = is_b ? dg0.modules[i].b : dg0.modules[i].a;
      const auto& f = is_b ? fg0.modules[i].b : fg0.modules[i].a;
      for (size_t k = 0; k < d.size(); ++k)
        ASSERT_LE(std::abs(double(f[k]) - d[k]), 1e-5 * max_ref + 1e-3 * std::abs(d[k])) << "module " << i << (is_b ? " B" : " A") << k;
    }
}

TEST(LoraTrainer, BadRowsAreRefusedNamingWhatIsWrong) {
  const auto& ck = tiny_model();
  ASSERT_TRUE(ck);
  ThreadPool pool(1);
  LlamaLoraTrainer<float> tr(ck, pool);
  auto p = init_lora_params(ck->config(), LoraTargets{}, 1);
  auto g = p.zeros_like();
  std::vector<int32_t> tok = {1, 2, 999};
  std::vector<uint8_t> tgt = {0, 1, 1};
  TrainingRow row{0, &tok, &tgt};
  TrainingJobTensors<float> job{&p, &g, 1.0, 0, 0};
  auto st = tr.forward_backward(std::span(&row, 1), std::span(&job, 1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("token 999 outside the vocabulary"), std::string::npos) << st.error().message;
  row.job = 3;
  tok[2] = 3;
  st = tr.forward_backward(std::span(&row, 1), std::span(&job, 1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("job 3 out of range"), std::string::npos) << st.error().message;
  for (const auto& m : g.modules)
    for (float v : m.a) ASSERT_EQ(v, 0.0f) << "a refused step accumulated gradients";
}

}  // namespace
}  // namespace myriad
