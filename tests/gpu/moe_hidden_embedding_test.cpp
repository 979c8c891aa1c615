// The mixture of experts' hidden-state embedding (runtime/moe/
// hidden_embedding.h over LlamaLoraTrainer::mean_hidden): after 0 layers it
// is the mean of the rows' token embeddings; after every layer, the last
// hidden state through the final norm and lm_head scores the next token as
// the trainer's own loss does; rows batched together embed as each alone;
// bad layers and empty documents are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "gpu/cpu/lora_trainer.h"
#include "runtime/moe/hidden_embedding.h"
#include "runtime/training/lora_params.h"
#include "test_seed.h"
#include "training_task.h"

namespace myriad::gpu::cpu {
namespace {

TEST(MoeHiddenEmbedding, PoolsTheBasesHiddenStates) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  auto tiny = testing::make_trainable_tiny(3, "myriad_moe_hidden");
  ASSERT_TRUE(tiny.ckpt);
  const ModelConfig& c = tiny.ckpt->config();
  const int64_t H = c.hidden_size;
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> docs;
  for (int64_t len : {1, 5, 9, 3}) {
    std::vector<int32_t> d(static_cast<size_t>(len));
    for (auto& t : d) t = int32_t(rng() % uint64_t(c.vocab_size));
    docs.push_back(d);
  }
  CpuLoraTrainingBackend backend(tiny.ckpt, 2);
  LoraParams<float> none;
  none.num_layers = int32_t(c.num_layers);
  none.modules.resize(size_t(c.num_layers) * kNumLinearModules);
  std::vector<TrainingJobTensors<float>> jobs(1);
  jobs[0].params = &none;
  std::vector<std::vector<uint8_t>> zeros;
  for (const auto& d : docs) zeros.emplace_back(d.size(), 0);
  const auto rows_of = [&](size_t b, size_t e) {
    std::vector<TrainingRow> rows;
    for (size_t i = b; i < e; ++i) rows.push_back({0, &docs[i], &zeros[i]});
    return rows;
  };

  // Layer 0: the mean of the embedding rows.
  std::vector<float> h0;
  ASSERT_TRUE(backend.mean_hidden(rows_of(0, docs.size()), jobs, 0, h0).ok());
  for (size_t r = 0; r < docs.size(); ++r)
    for (int64_t i = 0; i < H; ++i) {
      double want = 0;
      for (int32_t t : docs[r]) want += tiny.ckpt->embed_tokens().at(size_t(t) * size_t(H) + size_t(i));
      want /= double(docs[r].size());
      ASSERT_NEAR(h0[r * size_t(H) + size_t(i)], want, 1e-6 + 1e-5 * std::abs(want)) << r << "," << i;
    }

  // Every layer, one token: the final norm and lm_head of it give the loss
  // the trainer computes for the next token.
  const int32_t next = int32_t(rng() % uint64_t(c.vocab_size));
  std::vector<float> hl;
  ASSERT_TRUE(backend.mean_hidden(rows_of(0, 1), jobs, int(c.num_layers), hl).ok());
  double ss = 0;
  for (int64_t i = 0; i < H; ++i) ss += double(hl[size_t(i)]) * hl[size_t(i)];
  const double inv = 1.0 / std::sqrt(ss / double(H) + c.rms_norm_eps);
  std::vector<double> logits(size_t(c.vocab_size));
  double mx = -1e300;
  for (int64_t v = 0; v < c.vocab_size; ++v) {
    double s = 0;
    for (int64_t i = 0; i < H; ++i)
      s += tiny.ckpt->lm_head().at(size_t(v) * size_t(H) + size_t(i)) * hl[size_t(i)] * inv *
           tiny.ckpt->final_norm().at(size_t(i));
    logits[size_t(v)] = s;
    mx = std::max(mx, s);
  }
  double z = 0;
  for (double l : logits) z += std::exp(l - mx);
  const double want_loss = -(logits[size_t(next)] - mx - std::log(z));
  std::vector<int32_t> pair = {docs[0][0], next};
  std::vector<uint8_t> target = {0, 1};
  std::vector<TrainingRow> loss_row = {{0, &pair, &target}};
  jobs[0].loss_sum = 0;
  jobs[0].loss_tokens = 0;
  ASSERT_TRUE(backend.forward_backward(loss_row, jobs).ok());
  ASSERT_EQ(jobs[0].loss_tokens, 1);
  EXPECT_NEAR(jobs[0].loss_sum, want_loss, 1e-4 + 1e-4 * want_loss);

  // Batched rows embed as each alone (f32: the same op order per row).
  const int mid = int(c.num_layers / 2 + 1);
  std::vector<float> together;
  ASSERT_TRUE(backend.mean_hidden(rows_of(0, docs.size()), jobs, mid, together).ok());
  for (size_t r = 0; r < docs.size(); ++r) {
    std::vector<float> alone;
    ASSERT_TRUE(backend.mean_hidden(rows_of(r, r + 1), jobs, mid, alone).ok());
    for (int64_t i = 0; i < H; ++i)
      ASSERT_NEAR(together[r * size_t(H) + size_t(i)], alone[size_t(i)], 1e-5 + 1e-5 * std::abs(alone[size_t(i)]))
          << r << "," << i;
  }

  // hidden_embed: L2-normalised rows, packed into passes; refusals name the problem.
  auto e = moe::hidden_embed(backend, c, docs, mid, /*batch_tokens=*/8);
  ASSERT_TRUE(e.ok()) << e.error().to_string();
  ASSERT_EQ(e->size(), docs.size() * size_t(H));
  for (size_t r = 0; r < docs.size(); ++r) {
    double n2 = 0, dot = 0, t2 = 0;
    for (int64_t i = 0; i < H; ++i) {
      const double a = (*e)[r * size_t(H) + size_t(i)], b = together[r * size_t(H) + size_t(i)];
      n2 += a * a;
      dot += a * b;
      t2 += b * b;
    }
    EXPECT_NEAR(n2, 1.0, 1e-5);
    EXPECT_NEAR(dot / std::sqrt(t2), 1.0, 1e-5) << "row " << r << " points elsewhere";
  }
  auto bad_layer = moe::hidden_embed(backend, c, docs, int32_t(c.num_layers + 1));
  ASSERT_FALSE(bad_layer.ok());
  EXPECT_NE(bad_layer.error().message.find("outside [0, "), std::string::npos);
  auto empty = moe::hidden_embed(backend, c, {docs[0], {}}, 1);
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("document 1 is empty"), std::string::npos);
  std::filesystem::remove_all(tiny.dir);
}

}  // namespace
}  // namespace myriad::gpu::cpu
