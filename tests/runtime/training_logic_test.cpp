// Training logic in runtime/training/: JSONL datasets (which tokens are
// learned, errors naming the line), AdamW against its closed form, the
// learning-rate schedule and gradient clipping.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

#include "runtime/checkpoint.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"
#include "runtime/safetensors.h"
#include "runtime/tokenizer.h"
#include "runtime/tokenizer_config.h"
#include "runtime/training/optimizer.h"
#include "runtime/training/training_data.h"
#include "runtime/training/training_job.h"
#include "test_fixtures.h"
#include "test_seed.h"

namespace myriad {
namespace {

using nlohmann::json;

std::shared_ptr<const Tokenizer> builtin_tokenizer() {
  auto cfg = parse_tokenizer_config(json::parse(builtin_tokenizer_config_json()), "builtin");
  EXPECT_TRUE(cfg.ok());
  auto tok = Tokenizer::from_json(json::parse(builtin_tokenizer_json()), cfg.value(), "builtin");
  EXPECT_TRUE(tok.ok());
  return tok.value();
}

std::shared_ptr<const Tokenizer> fixture_tokenizer(const std::string& name) {
  auto tok = Tokenizer::load(testing::fixtures_dir() + "/tokenizers/" + name);
  EXPECT_TRUE(tok.ok()) << tok.error().to_string();
  return tok.value();
}

// The learned tokens of an example, decoded.
std::string learned_text(const Tokenizer& tok, const TrainingExample& ex) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < ex.tokens.size(); ++i)
    if (ex.targets[i]) ids.push_back(ex.tokens[i]);
  return tok.decode(ids);
}

TEST(TrainingData, PromptCompletionLearnsTheCompletionAndEos) {
  auto tok = fixture_tokenizer("llama3");
  auto ex = encode_training_example(json{{"prompt", "The capital of France is"}, {"completion", " Paris."}}, *tok, {},
                                    "x:1");
  ASSERT_TRUE(ex.ok()) << ex.error().to_string();
  const auto prompt_ids = tok->encode("The capital of France is", true);
  ASSERT_GE(ex->tokens.size(), prompt_ids.size() + 2);
  EXPECT_TRUE(std::equal(prompt_ids.begin(), prompt_ids.end(), ex->tokens.begin()));
  for (size_t i = 0; i < prompt_ids.size(); ++i) EXPECT_EQ(ex->targets[i], 0) << i;
  EXPECT_EQ(ex->tokens.back(), tok->eos_ids()[0]);
  EXPECT_EQ(learned_text(*tok, *ex), " Paris.<|end_of_text|>");
  // The completion's tokens are those of the whole text after the prompt's.
  const auto full = tok->encode("The capital of France is Paris.", true);
  EXPECT_TRUE(std::equal(full.begin(), full.end(), ex->tokens.begin()));
  // A prompt ending in a space: its last token joins the answer's first word
  // in the whole text, and that word is learned whole, not dropped.
  auto spaced = encode_training_example(json{{"prompt", "Answer: "}, {"completion", "yes it is"}}, *tok, {}, "x:2");
  ASSERT_TRUE(spaced.ok()) << spaced.error().to_string();
  EXPECT_EQ(learned_text(*tok, *spaced), " yes it is<|end_of_text|>");
  auto whole = tok->encode("Answer: yes it is", true);
  whole.push_back(tok->eos_ids()[0]);
  EXPECT_EQ(spaced->tokens, whole);
}

TEST(TrainingData, MessagesLearnEveryAssistantTurnWithItsEndOfTurn) {
  // Qwen3's template renders an earlier answer differently once later turns
  // follow (no empty think block); Llama 3's keeps every prefix.
  for (const auto& [name, eot] : {std::pair<std::string, std::string>{"qwen3", "<|im_end|>"}, {"llama3", "<|eot_id|>"}}) {
  SCOPED_TRACE(name);
  auto tok = fixture_tokenizer(name);
  const json line = {{"messages",
                      {{{"role", "system"}, {"content", "Be brief."}},
                       {{"role", "user"}, {"content", "2+2?"}},
                       {{"role", "assistant"}, {"content", "4"}},
                       {{"role", "user"}, {"content", "3+3?"}},
                       {{"role", "assistant"}, {"content", "6"}}}}};
  auto ex = encode_training_example(line, *tok, {}, "x:1");
  ASSERT_TRUE(ex.ok()) << ex.error().to_string();
  const std::string learned = learned_text(*tok, *ex);
  EXPECT_NE(learned.find("4" + eot), std::string::npos) << learned;
  EXPECT_NE(learned.find("6" + eot), std::string::npos) << learned;
  EXPECT_EQ(learned.find("2+2"), std::string::npos) << learned;
  EXPECT_EQ(learned.find("Be brief"), std::string::npos) << learned;
  EXPECT_EQ(learned.find("assistant"), std::string::npos) << "the generation prompt is not learned: " << learned;
  }
}

TEST(TrainingData, ATextLineIsLanguageModellingOnAllOfItAsTheCorpusLinesOfAMixture) {
  auto tok = builtin_tokenizer();
  auto r = parse_training_jsonl("{\"text\": \"hello world\"}\n", *tok, {}, "corpus.jsonl");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u);
  const int32_t eos = tok->eos_ids().at(0);
  auto want = text_example("hello world", *tok, eos, 0, 1);
  ASSERT_TRUE(want.has_value());
  EXPECT_EQ((*r)[0].tokens, want->tokens);
  EXPECT_EQ((*r)[0].targets, want->targets);
  EXPECT_EQ((*r)[0].tokens.back(), eos);
  EXPECT_EQ((*r)[0].target_count(), int64_t(want->tokens.size()) - 1);
  EXPECT_EQ((*r)[0].line, 1);
}

TEST(TrainingData, MalformedLinesAreErrorsNamingTheLine) {
  auto tok = builtin_tokenizer();
  struct Case {
    std::string text, expect;
  } cases[] = {
      {"{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json}\n", "data.jsonl:2: not a JSON object"},
      {"\n\n{\"prompt\": \"a\"}\n", "data.jsonl:3: needs both \"prompt\" and \"completion\""},
      {"{\"prompt\": 1, \"completion\": \"b\"}\n", "data.jsonl:1: \"prompt\" and \"completion\" must be strings"},
      {"{\"input\": \"a\"}\n",
       "data.jsonl:1: needs \"prompt\" and \"completion\" strings, a \"messages\" list, or a \"text\" string"},
      {"{\"text\": \"\"}\n", "data.jsonl:1: \"text\" must be a non-empty string"},
      {"{\"text\": 3}\n", "data.jsonl:1: \"text\" must be a non-empty string"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", "data.jsonl:1: \"messages\" has no assistant turn"},
      {"{\"messages\": [{\"role\": \"user\"}]}\n", "data.jsonl:1: message 0 needs \"role\" and \"content\" strings"},
      {"[1, 2]\n", "data.jsonl:1: an example must be a JSON object"},
      {std::string(100, '[') + std::string(100, ']') + "\n", "data.jsonl:1: JSON nested deeper than"},
      {"\n  \n", "data.jsonl: no examples"},
  };
  for (const auto& c : cases) {
    auto r = parse_training_jsonl(c.text, *tok, {}, "data.jsonl");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << r.error().message << "\nexpected: " << c.expect;
  }
}

TEST(TrainingData, LongExamplesAreTruncatedOrRejectedBySetting) {
  auto tok = builtin_tokenizer();
  const json line = {{"prompt", "abcdef"}, {"completion", "ghijkl"}};
  DatasetOptions o;
  o.max_tokens = 9;
  auto cut = encode_training_example(line, *tok, o, "d:4");
  ASSERT_TRUE(cut.ok()) << cut.error().to_string();
  EXPECT_EQ(cut->tokens.size(), 9u);
  o.overflow = OverflowPolicy::kReject;
  auto refused = encode_training_example(line, *tok, o, "d:4");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("d:4: "), std::string::npos);
  EXPECT_NE(refused.error().message.find("exceed the limit of 9"), std::string::npos) << refused.error().message;
  o.overflow = OverflowPolicy::kTruncate;
  o.max_tokens = 4;  // the prompt alone is longer: nothing left to learn
  auto empty = encode_training_example(line, *tok, o, "d:4");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("no token left to learn"), std::string::npos) << empty.error().message;
}

TEST(TrainingJobs, ExamplesThatDoNotFitTheBaseAreRefusedAtCreation) {
  const ModelConfig base = model_shape("tiny").value();  // vocabulary 260, context 512
  TrainingExample ok_ex{{1, 2, 3}, {0, 1, 1}, 1};
  TrainingExample bad_token{{1, 999, 3}, {0, 1, 1}, 7};
  TrainingExample too_long{std::vector<int32_t>(600, 5), std::vector<uint8_t>(600, 1), 9};
  auto r = TrainingJob::create("j", base, {}, {ok_ex, bad_token});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("training example 2 (line 7): token 999 is outside the base's vocabulary"),
            std::string::npos)
      << r.error().message;
  r = TrainingJob::create("j", base, {}, {ok_ex}, {too_long});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("eval example 1 (line 9): 600 tokens exceed the base's context of 512"),
            std::string::npos)
      << r.error().message;
  EXPECT_TRUE(TrainingJob::create("j", base, {}, {ok_ex}).ok());
}

LoraParams<float> one_value(float v) {
  LoraParams<float> p;
  p.num_layers = 1;
  p.modules.resize(kNumLinearModules);
  p.modules[0].rank = 1;
  p.modules[0].a = {v};
  return p;
}

TEST(Optimizer, AdamWFollowsItsClosedForm) {
  AdamWConfig c;
  c.lr = 0.1;
  c.weight_decay = 0.01;
  auto p = one_value(1.0f);
  AdamW opt(p, c);
  const double grads[3] = {0.5, -0.2, 0.3};
  double x = 1.0, m = 0, v = 0;
  for (int t = 1; t <= 3; ++t) {
    auto g = one_value(float(grads[t - 1]));
    opt.step(p, g, c.lr);
    const double gi = grads[t - 1];
    m = 0.9 * m + 0.1 * gi;
    v = 0.999 * v + 0.001 * gi * gi;
    x -= c.lr * c.weight_decay * x;
    x -= c.lr * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.999, t))) + c.eps);
    EXPECT_NEAR(p.modules[0].a[0], x, 1e-6) << "step " << t;
  }
  EXPECT_EQ(opt.steps(), 3);
}

// The step in pieces (a serving loop's units) is the same step, bit for bit.
TEST(Optimizer, AdamWInModuleRangesIsBitIdenticalToOneStep) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  std::mt19937 rng{uint32_t(seed)};
  std::normal_distribution<float> nd(0.f, 1.f);
  LoraParams<float> p;
  p.num_layers = 2;
  p.modules.resize(2 * kNumLinearModules);
  for (auto& m : p.modules) {
    m.rank = 2;
    m.a.resize(6);
    m.b.resize(8);
    for (auto& x : m.a) x = nd(rng);
    for (auto& x : m.b) x = nd(rng);
  }
  AdamWConfig c;
  c.weight_decay = 0.01;
  LoraParams<float> whole = p, pieces = p;
  AdamW a(p, c), b(p, c);
  for (int step = 0; step < 3; ++step) {
    LoraParams<float> g = p.zeros_like();
    g.for_each([&](float& x) { x = nd(rng); });
    a.step(whole, g, 1e-2);
    b.begin_step();
    for (size_t m0 = 0; m0 < pieces.modules.size(); m0 += 5) b.update(pieces, g, 1e-2, m0, m0 + 5);
    for (size_t m = 0; m < p.modules.size(); ++m) {
      ASSERT_EQ(whole.modules[m].a, pieces.modules[m].a) << "step " << step << " module " << m;
      ASSERT_EQ(whole.modules[m].b, pieces.modules[m].b) << "step " << step << " module " << m;
    }
  }
  EXPECT_EQ(b.steps(), 3);
}

TEST(Optimizer, WarmupThenCosineAndClipping) {
  LrSchedule s{1.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.1 + 0.9 * 0.5, 1e-12);  // half way through the decay
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.at(500), 0.1, 1e-12);
  LoraParams<float> g = one_value(3.0f);
  g.modules[0].b = {4.0f};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g, 1.0), 5.0);
  EXPECT_NEAR(g.modules[0].a[0], 0.6, 1e-6);
  EXPECT_NEAR(g.modules[0].b[0], 0.8, 1e-6);
  EXPECT_NEAR(clip_grad_norm(g, 10.0), 1.0, 1e-6);  // under the limit: unchanged
  EXPECT_NEAR(g.modules[0].a[0], 0.6, 1e-6);
}

// A weighted sum of adapters (a mixture's top-k as one adapter) has, module
// by module, the weighted sum of their deltas: scale · B A = Σ w_i scale_i B_i A_i.
TEST(TrainingParams, AWeightedSumsDeltaIsTheWeightedSumOfTheDeltas) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  auto base = Checkpoint::load(testing::fixtures_dir() + "/tiny-llama");
  ASSERT_TRUE(base.ok()) << base.error().to_string();
  std::mt19937 rng{uint32_t(seed)};
  std::normal_distribution<float> nd(0.f, 0.1f);
  auto random_params = [&](int32_t rank, float alpha, bool only_q) {
    LoraTargets t;
    t.rank = rank;
    t.alpha = alpha;
    if (only_q) std::fill(std::begin(t.modules) + 1, std::end(t.modules), false);
    auto p = init_lora_params(base.value()->config(), t, rng());
    for (auto& m : p.modules)
      for (auto& v : m.b) v = nd(rng);
    return p;
  };
  const auto x = random_params(4, 8, false), y = random_params(8, 32, true);
  const double wx = 0.3, wy = 0.7;
  const LoraParams<float> sum = weighted_sum({{&x, wx}, {&y, wy}});
  ASSERT_EQ(sum.modules.size(), x.modules.size());
  auto delta = [](const LoraModuleParams<float>& m, size_t r, size_t c) {  // scale · (B A)[r, c]
    if (m.rank == 0) return 0.0;
    const size_t in = m.a.size() / size_t(m.rank);
    double d = 0;
    for (int32_t k = 0; k < m.rank; ++k) d += double(m.b[r * size_t(m.rank) + size_t(k)]) * m.a[size_t(k) * in + c];
    return d * m.scale;
  };
  for (size_t i = 0; i < sum.modules.size(); ++i) {
    const LoraModuleParams<float>& mx = x.modules[i];
    const LoraModuleParams<float>& my = y.modules[i];
    const LoraModuleParams<float>& ms = sum.modules[i];
    EXPECT_EQ(ms.rank, mx.rank + my.rank) << i;
    const size_t in = mx.a.size() / size_t(mx.rank), out = mx.b.size() / size_t(mx.rank);
    for (size_t r = 0; r < out; r += 7)
      for (size_t c = 0; c < in; c += 5) {
        const double want = wx * delta(mx, r, c) + wy * delta(my, r, c);
        EXPECT_NEAR(delta(ms, r, c), want, 1e-6 + 1e-5 * std::abs(want)) << "module " << i << " [" << r << "," << c << "]";
      }
  }
}

// What a job publishes follows PEFT's conventions: the same tensor names,
// shapes and dtype as an adapter PEFT itself saved for the same base (the
// fixture r8-all), the config fields PEFT reads, and it loads back exactly.
TEST(TrainingPublish, AJobsAdapterIsAPeftAdapterThatLoadsBackExactly) {
  const std::string base_dir = testing::fixtures_dir() + "/tiny-llama";
  auto base = Checkpoint::load(base_dir);
  ASSERT_TRUE(base.ok()) << base.error().to_string();
  LoraTargets t;
  t.rank = 8;
  t.alpha = 16;
  auto p = init_lora_params(base.value()->config(), t, 3);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.f, 0.1f);
  for (auto& m : p.modules)
    for (auto& v : m.b) v = nd(rng);  // a trained adapter has non-zero B
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("myriad_publish_" + std::to_string(std::random_device{}()));
  ASSERT_TRUE(save_peft_adapter(dir.string(), to_lora_weights(p, "job"), base_dir).ok());

  auto ours = SafetensorsFile::open((dir / "adapter_model.safetensors").string());
  auto peft = SafetensorsFile::open(base_dir + "/adapters/r8-all/adapter_model.safetensors");
  ASSERT_TRUE(ours.ok() && peft.ok());
  ASSERT_EQ(ours.value()->tensors().size(), peft.value()->tensors().size());
  for (const TensorView& theirs : peft.value()->tensors()) {
    const TensorView* mine = ours.value()->find(theirs.name);
    ASSERT_NE(mine, nullptr) << "PEFT's tensor " << theirs.name << " is missing";
    EXPECT_EQ(mine->shape, theirs.shape) << theirs.name;
    EXPECT_EQ(mine->dtype, theirs.dtype) << theirs.name;
  }
  std::ifstream a(dir / "adapter_config.json"), b(base_dir + "/adapters/r8-all/adapter_config.json");
  const json mine = json::parse(a), theirs = json::parse(b);
  for (const char* k : {"peft_type", "r", "lora_alpha", "bias", "fan_in_fan_out", "task_type", "use_dora", "use_rslora",
                        "modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"})
    EXPECT_EQ(mine.at(k), theirs.at(k)) << k;
  auto sorted = [](json l) {
    std::vector<std::string> v = l.get<std::vector<std::string>>();
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(mine["target_modules"]), sorted(theirs["target_modules"]));

  auto back = load_peft_adapter(dir.string(), base.value()->config());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  const LoraParams<float> again = lora_params_from(*back.value());
  ASSERT_EQ(again.modules.size(), p.modules.size());
  for (size_t i = 0; i < p.modules.size(); ++i) {
    EXPECT_EQ(again.modules[i].a, p.modules[i].a) << i;
    EXPECT_EQ(again.modules[i].b, p.modules[i].b) << i;
    EXPECT_EQ(again.modules[i].scale, p.modules[i].scale) << i;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace myriad
