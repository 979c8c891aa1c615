// The training tests' shared task: a random tiny model wide enough to learn
// (init std 0.08; at 0.02 its logits stay too close together) and the rule
// "upper-case the last letter" ("kqzb" -> "B"), which the random base cannot
// follow. Used by tests/gpu/lora_training_loop_test.cpp and co_serving_test.cpp.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/checkpoint.h"
#include "runtime/model_factory.h"
#include "runtime/tokenizer.h"
#include "runtime/training/training_data.h"
#include "runtime/training/training_job.h"

namespace myriad::testing {

struct TrainableTiny {
  std::string dir;  // under the temp folder; the caller removes it
  std::shared_ptr<const Checkpoint> ckpt;
  std::shared_ptr<const Tokenizer> tok;
};

// A float32 tiny model of weight seed `seed` in a fresh temp folder named after `tag`.
inline TrainableTiny make_trainable_tiny(uint64_t seed, const std::string& tag) {
  TrainableTiny t;
  t.dir = (std::filesystem::temp_directory_path() / (tag + "_" + std::to_string(std::random_device{}()))).string();
  MakeModelOptions mo;
  mo.shape = "tiny";
  mo.seed = seed;
  mo.dtype = DType::kF32;
  mo.init_std = 0.08f;
  mo.out_dir = t.dir;
  EXPECT_TRUE(make_model(mo).ok());
  auto c = Checkpoint::load(t.dir);
  auto k = Tokenizer::load(t.dir);
  EXPECT_TRUE(c.ok() && k.ok());
  if (c.ok()) t.ckpt = c.value();
  if (k.ok()) t.tok = k.value();
  return t;
}

// n (prompt, completion) pairs of the rule: 3-6 lowercase letters -> the last one upper-cased.
inline std::vector<std::pair<std::string, std::string>> upper_last_task(uint64_t seed, size_t n) {
  std::mt19937_64 rng(seed);
  std::vector<std::pair<std::string, std::string>> out;
  for (size_t i = 0; i < n; ++i) {
    std::string p;
    const size_t len = 3 + rng() % 4;
    for (size_t k = 0; k < len; ++k) p += char('a' + rng() % 26);
    out.emplace_back(p, std::string(1, char(p.back() - 'a' + 'A')));
  }
  return out;
}

// The job that learns the task on the trainable tiny model: rank 8 (alpha
// 16) on every module, lr 1e-2 with 5 warmup steps, 300 steps of 256 tokens.
inline TrainingJobConfig task_job_config(uint64_t seed) {
  TrainingJobConfig c;
  c.targets.rank = 8;
  c.targets.alpha = 16;
  c.adamw.lr = 1e-2;
  c.steps = 300;
  c.batch_tokens = 256;
  c.warmup_steps = 5;
  c.seed = seed;
  return c;
}

// The pairs as prompt/completion training examples.
inline std::vector<TrainingExample> task_examples(const std::vector<std::pair<std::string, std::string>>& pairs,
                                                  const Tokenizer& tok) {
  std::vector<TrainingExample> out;
  for (const auto& [p, c] : pairs) {
    auto ex = encode_training_example(nlohmann::json{{"prompt", p}, {"completion", c}}, tok, {}, "task");
    EXPECT_TRUE(ex.ok()) << ex.error().to_string();
    if (ex.ok()) out.push_back(std::move(ex.value()));
  }
  return out;
}

}  // namespace myriad::testing
