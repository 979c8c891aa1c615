// CudaLoraTrainingBackend (gpu/cuda/lora_trainer.h) against the CPU trainer
// (gpu/cpu/lora_trainer.h, checked against finite differences in float64 by
// tests/gpu/lora_training_test.cpp): the same rows of several jobs (ranks and
// targets differ; loss weights differ, one is 0; one job takes no gradients) give the
// same losses and gradients, on three random models that between them cover
// grouped heads, q/k/v/o biases, tied embeddings, a bf16 checkpoint and a
// sliding window. Then the units, recompute, accumulation, mean_hidden, the
// errors, and a job's training loop end to end.
//
// Tolerances: both sides compute in float32, only the order of sums differs
// (cuBLAS's against the CPU's blocked GEMMs, through 2 layers and a softmax
// over the vocabulary): losses 1e-5 relative; gradients 1e-4 of the module's
// largest |gradient| + 1e-3 relative, the scale of the CPU's own float-vs-double test.
#include "gpu/cpu/lora_trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cuda_test_util.h"
#include "gpu/cuda/lora_trainer.h"
#include "runtime/model_factory.h"
#include "runtime/training/training_job.h"
#include "training_task.h"

namespace myriad::cuda_test {
namespace {

namespace fs = std::filesystem;
using gpu::cuda::CudaLoraTrainingBackend;

struct Variant {
  const char* name;
  DType dtype;
  std::optional<ModelConfig> config;
};

std::vector<Variant> variants() {
  ModelConfig tiny = model_shape("tiny").value();
  ModelConfig biased = tiny;  // llama's attention_bias: q, k, v and o biases
  biased.attention_bias = true;
  biased.o_proj_bias = true;
  biased.tie_word_embeddings = true;
  ModelConfig windowed = tiny;
  windowed.arch = ModelArch::kMistral;
  windowed.model_type = "mistral";
  windowed.sliding_window = 5;
  windowed.use_sliding_window = true;
  return {{"tiny f32 (4 heads over 2 kv heads)", DType::kF32, std::nullopt},
          {"biases, tied embeddings, bf16", DType::kBF16, biased},
          {"mistral, sliding window 5", DType::kF32, windowed}};
}

std::shared_ptr<const Checkpoint> load_variant(const Variant& v, uint64_t seed) {
  MakeModelOptions mo;
  mo.shape = "tiny";
  mo.config = v.config;
  mo.seed = seed;
  mo.dtype = v.dtype;
  mo.init_std = 0.08f;
  mo.out_dir =
      (fs::temp_directory_path() / ("myriad_cuda_train_" + std::to_string(std::random_device{}()))).string();
  auto made = make_model(mo);
  EXPECT_TRUE(made.ok()) << made.error().to_string();
  auto c = Checkpoint::load(mo.out_dir);
  EXPECT_TRUE(c.ok()) << c.error().to_string();
  fs::remove_all(mo.out_dir);  // the weights stay mapped
  return c.ok() ? c.value() : nullptr;
}

// Four jobs: rank 4 on every module (loss weight 0.5); rank 2 on q and v
// (weight 2); rank 3 on every module, loss only (no gradients); rank 4,
// gradients asked for at loss weight 0 (they must come out zero). B is
// random (A's gradient is zero while B is). Rows of 6, 4, 9, 40 (past the
// window) and 7 tokens.
struct TrainerBatch {
  LoraParams<float> p[4];
  LoraParams<float> g[4];
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<uint8_t>> targets;
  std::vector<TrainingRow> rows;
  std::vector<TrainingJobTensors<float>> jobs() {
    return {{&p[0], &g[0], 0.5, 0, 0},
            {&p[1], &g[1], 2.0, 0, 0},
            {&p[2], nullptr, 1.0, 0, 0},
            {&p[3], &g[3], 0.0, 0, 0}};
  }
};

TrainerBatch make_batch(uint64_t seed, const ModelConfig& c) {
  TrainerBatch b;
  LoraTargets t0, t1, t2;
  t0.rank = 4;
  t0.alpha = 8;
  t1.rank = 2;
  t1.alpha = 2;
  for (int m = 0; m < kNumLinearModules; ++m)
    t1.modules[m] = m == int(LinearModule::kQ) || m == int(LinearModule::kV);
  t2.rank = 3;
  t2.alpha = 3;
  b.p[0] = init_lora_params(c, t0, seed);
  b.p[1] = init_lora_params(c, t1, seed + 1);
  b.p[2] = init_lora_params(c, t2, seed + 2);
  b.p[3] = init_lora_params(c, t0, seed + 3);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.2f);
  for (auto& p : b.p)
    for (auto& m : p.modules)
      for (auto& v : m.b) v = nd(rng);
  for (int i = 0; i < 4; ++i) b.g[i] = b.p[i].zeros_like();
  const int64_t lengths[] = {6, 4, 9, 40, 7};
  const int32_t owner[] = {0, 1, 0, 2, 3};
  for (int64_t len : lengths) {
    std::vector<int32_t> tok(size_t(len), 0);
    std::vector<uint8_t> tgt(size_t(len), 0);
    for (auto& v : tok) v = int32_t(rng() % uint64_t(c.vocab_size));
    for (auto& v : tgt) v = uint8_t(rng() % 3 != 0);
    // Every row has a loss position (1 seed in 729 draws none for the 7-token row).
    if (std::count(tgt.begin() + 1, tgt.end(), 1) == 0) tgt.back() = 1;
    b.tokens.push_back(tok);
    b.targets.push_back(tgt);
  }
  for (size_t r = 0; r < b.tokens.size(); ++r) b.rows.push_back({owner[r], &b.tokens[r], &b.targets[r]});
  return b;
}

// The absolute tolerance scales with the job's largest gradient, not the
// tensor's: a gradient can be zero analytically (a row whose only target
// follows its first token gives every q a zero gradient, its attention being
// one weight of 1) and then the two sides' summation orders leave rounding
// residue of the size of the terms that cancelled, not zero.
::testing::AssertionResult same_grads(const LoraParams<float>& got, const LoraParams<float>& ref,
                                      const std::string& what) {
  float largest = 0;
  for (const auto& m : ref.modules)
    for (const auto* t : {&m.a, &m.b})
      for (float v : *t) largest = std::max(largest, std::fabs(v));
  for (size_t i = 0; i < ref.modules.size(); ++i)
    for (bool is_b : {false, true}) {
      const auto& r = is_b ? ref.modules[i].b : ref.modules[i].a;
      const auto& g = is_b ? got.modules[i].b : got.modules[i].a;
      auto close = all_close(g, r, {1e-4f * largest, 1e-3f},
                             what + " module " + std::to_string(i) + (is_b ? " B" : " A"));
      if (!close) return close;
    }
  return ::testing::AssertionSuccess();
}

TEST(CudaLoraTrainer, LossesAndGradientsEqualTheCpuTrainer) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  // The CPU's side first (it runs without a device too): each variant is what
  // it says (the factory and the loader keep these), and its reference pass.
  std::vector<std::shared_ptr<const Checkpoint>> models;
  std::vector<TrainerBatch> refs;
  std::vector<std::vector<TrainingJobTensors<float>>> ref_jobs;
  refs.reserve(variants().size());
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    models.push_back(load_variant(v, seed));
    ASSERT_TRUE(models.back());
    const ModelConfig& c = models.back()->config();
    if (v.config) {
      EXPECT_EQ(c.attention_bias, v.config->attention_bias);
      EXPECT_EQ(c.o_proj_bias, v.config->o_proj_bias);
      EXPECT_EQ(c.tie_word_embeddings, v.config->tie_word_embeddings);
      EXPECT_EQ(c.use_sliding_window && c.sliding_window == 5, v.config->use_sliding_window);
    }
    refs.push_back(make_batch(seed, c));
    ref_jobs.push_back(refs.back().jobs());
    gpu::cpu::CpuLoraTrainingBackend reference(models.back(), 2);
    ASSERT_TRUE(reference.forward_backward(refs.back().rows, ref_jobs.back()).ok());
    EXPECT_GT(ref_jobs.back()[2].loss_tokens, 0);
    EXPECT_GT(ref_jobs.back()[3].loss_tokens, 0);
  }
  MYRIAD_REQUIRE_CUDA();
  for (size_t i = 0; i < models.size(); ++i) {
    SCOPED_TRACE(variants()[i].name);
    auto backend = CudaLoraTrainingBackend::create(models[i]);
    ASSERT_TRUE(backend.ok()) << backend.error().to_string();
    TrainerBatch dev = make_batch(seed, models[i]->config());
    auto dev_jobs = dev.jobs();
    MYRIAD_ASSERT_OK(backend.value()->forward_backward(dev.rows, dev_jobs));
    const auto& cpu_jobs = ref_jobs[i];
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_EQ(dev_jobs[j].loss_tokens, cpu_jobs[j].loss_tokens) << "job " << j;
      EXPECT_NEAR(dev_jobs[j].loss_sum, cpu_jobs[j].loss_sum, 1e-5 * std::abs(cpu_jobs[j].loss_sum))
          << "job " << j;
    }
    EXPECT_TRUE(same_grads(dev.g[0], refs[i].g[0], "job 0"));
    EXPECT_TRUE(same_grads(dev.g[1], refs[i].g[1], "job 1"));
    for (const auto& m : dev.g[3].modules) {  // loss weight 0: its dlogits are zero, so is everything after
      for (float x : m.a) ASSERT_EQ(x, 0.0f);
      for (float x : m.b) ASSERT_EQ(x, 0.0f);
    }
  }
}

TEST(CudaLoraTrainer, UnitsRecomputeAndAccumulationGiveTheSameGradients) {
  MYRIAD_REQUIRE_CUDA();
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto ck = load_variant(variants()[0], seed);
  ASSERT_TRUE(ck);
  auto backend = CudaLoraTrainingBackend::create(ck);
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  CudaLoraTrainingBackend& b = *backend.value();
  TrainerBatch whole = make_batch(seed, ck->config());
  auto whole_jobs = whole.jobs();
  MYRIAD_ASSERT_OK(b.forward_backward(whole.rows, whole_jobs));
  // In units: every layer's forward, the head, every layer's backward, the gradients.
  TrainerBatch units = make_batch(seed, ck->config());
  auto unit_jobs = units.jobs();
  MYRIAD_ASSERT_OK(b.begin(units.rows, unit_jobs));
  int n = 1;
  while (!b.advance()) ++n;
  EXPECT_EQ(n, 2 * int(ck->config().num_layers) + 2);
  // Recomputing activations: the same kernels on the same inputs, bit for bit.
  TrainerBatch recomputed = make_batch(seed, ck->config());
  auto recomputed_jobs = recomputed.jobs();
  b.set_recompute(true);
  MYRIAD_ASSERT_OK(b.forward_backward(recomputed.rows, recomputed_jobs));
  b.set_recompute(false);
  // A second pass adds into the gradients: twice the first, exactly.
  MYRIAD_ASSERT_OK(b.forward_backward(whole.rows, whole_jobs));
  for (int j : {0, 1})
    for (size_t i = 0; i < whole.g[j].modules.size(); ++i) {
      ASSERT_EQ(units.g[j].modules[i].a, recomputed.g[j].modules[i].a) << "job " << j << " module " << i;
      ASSERT_EQ(units.g[j].modules[i].b, recomputed.g[j].modules[i].b) << "job " << j << " module " << i;
      for (size_t k = 0; k < whole.g[j].modules[i].a.size(); ++k)
        ASSERT_EQ(whole.g[j].modules[i].a[k], 2.0f * units.g[j].modules[i].a[k])
            << "job " << j << " module " << i;
      for (size_t k = 0; k < whole.g[j].modules[i].b.size(); ++k)
        ASSERT_EQ(whole.g[j].modules[i].b[k], 2.0f * units.g[j].modules[i].b[k])
            << "job " << j << " module " << i;
    }
  EXPECT_GT(b.activation_bytes(), 0u);
  EXPECT_GT(b.base_bytes(), 0u);
}

TEST(CudaLoraTrainer, MeanHiddenEqualsTheCpus) {
  MYRIAD_REQUIRE_CUDA();
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto ck = load_variant(variants()[1], seed);
  ASSERT_TRUE(ck);
  auto backend = CudaLoraTrainingBackend::create(ck);
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  gpu::cpu::CpuLoraTrainingBackend reference(ck, 2);
  TrainerBatch batch = make_batch(seed, ck->config());
  for (int layers = 0; layers <= int(ck->config().num_layers); ++layers) {
    auto jobs = batch.jobs();
    std::vector<float> got, ref;
    MYRIAD_ASSERT_OK(backend.value()->mean_hidden(batch.rows, jobs, layers, got));
    ASSERT_TRUE(reference.mean_hidden(batch.rows, jobs, layers, ref).ok());
    EXPECT_TRUE(
        all_close(got, ref, {1e-5f, 1e-4f}, "mean hidden after " + std::to_string(layers) + " layers"));
  }
  auto jobs = batch.jobs();
  std::vector<float> out;
  const auto st = backend.value()->mean_hidden(batch.rows, jobs, int(ck->config().num_layers) + 1, out);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInvalidArgument);
}

TEST(CudaLoraTrainer, BadRowsAreRefusedAsOnTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  const auto ck = load_variant(variants()[0], 1);
  ASSERT_TRUE(ck);
  auto backend = CudaLoraTrainingBackend::create(ck);
  ASSERT_TRUE(backend.ok()) << backend.error().to_string();
  auto p = init_lora_params(ck->config(), LoraTargets{}, 1);
  auto g = p.zeros_like();
  std::vector<int32_t> tok = {1, 2, 999};
  std::vector<uint8_t> tgt = {0, 1, 1};
  TrainingRow row{0, &tok, &tgt};
  TrainingJobTensors<float> job{&p, &g, 1.0, 0, 0};
  auto st = backend.value()->forward_backward(std::span(&row, 1), std::span(&job, 1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("token 999 outside the vocabulary"), std::string::npos)
      << st.error().message;
  row.job = 3;
  tok[2] = 3;
  st = backend.value()->forward_backward(std::span(&row, 1), std::span(&job, 1));
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("job 3 out of range"), std::string::npos) << st.error().message;
  for (const auto& m : g.modules)
    for (float v : m.a) ASSERT_EQ(v, 0.0f) << "a refused step accumulated gradients";
  // After refusals the backend still trains.
  row.job = 0;
  MYRIAD_ASSERT_OK(backend.value()->forward_backward(std::span(&row, 1), std::span(&job, 1)));
  EXPECT_GT(job.loss_tokens, 0);
}

// A job's whole loop (AdamW, schedule, clipping) on each backend: the same
// losses step by step while float rounding has not yet grown (20 steps),
// and on the device the rule is learnt (loss under half its start).
TEST(CudaLoraTrainer, AJobTrainsOnTheDeviceAsOnTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  auto tiny = testing::make_trainable_tiny(3, "myriad_cuda_train_loop");
  ASSERT_TRUE(tiny.ckpt && tiny.tok);
  const auto examples = testing::task_examples(testing::upper_last_task(seed, 300), *tiny.tok);
  auto run = [&](LoraTrainingBackend& backend, int64_t steps) {
    auto c = testing::task_job_config(seed);
    c.steps = steps;
    auto job = TrainingJob::create("upper", tiny.ckpt->config(), c, examples);
    EXPECT_TRUE(job.ok()) << job.error().to_string();
    JobTrainer trainer(backend);
    trainer.add(job.value().get());
    while (!trainer.idle()) EXPECT_TRUE(trainer.round().ok());
    return job.value()->history();
  };
  gpu::cpu::CpuLoraTrainingBackend cpu(tiny.ckpt, 2);
  auto cuda = CudaLoraTrainingBackend::create(tiny.ckpt);
  ASSERT_TRUE(cuda.ok()) << cuda.error().to_string();
  // The same 20-step job (its schedule depends on its step count) on each.
  const auto on_cpu = run(cpu, 20);
  const auto short_on_device = run(*cuda.value(), 20);
  ASSERT_EQ(on_cpu.size(), 20u);
  ASSERT_EQ(short_on_device.size(), 20u);
  for (size_t i = 0; i < on_cpu.size(); ++i) {
    EXPECT_EQ(short_on_device[i].target_tokens, on_cpu[i].target_tokens) << "step " << i + 1;
    EXPECT_NEAR(short_on_device[i].loss, on_cpu[i].loss, 1e-3 * on_cpu[i].loss) << "step " << i + 1;
  }
  const auto on_device = run(*cuda.value(), 300);
  ASSERT_EQ(on_device.size(), 300u);
  std::printf("[ cuda     ] upper-case the last letter on the device: train loss %.3f -> %.3f in 300 steps\n",
              mean_loss_first(on_device), mean_loss_last(on_device));
  EXPECT_LT(mean_loss_last(on_device), 0.5 * mean_loss_first(on_device));
  fs::remove_all(tiny.dir);
}

}  // namespace
}  // namespace myriad::cuda_test
