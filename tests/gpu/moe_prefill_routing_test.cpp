// Routing a mixture of experts from the request's own prefill (issue 22;
// Request::prefill_router, CpuExecutor::after_layers), through the real
// engine and scheduler over the CpuExecutor on the tiny-llama fixture:
//  - each routed row gives the tokens and logits of the same prompt sent
//    straight to the expert its hidden state is nearest (top-1), and weighted
//    top-2 gives those of the explicit mixture with the weights it reports,
//    in one batch beside direct requests;
//  - the route equals moe::route over moe::hidden_embed, the base pass the
//    CLI makes otherwise (same experts, same weights);
//  - the experts apply from the routing layer on only (experts that adapt no
//    layer below it, as PEFT's layers_to_transform makes them);
//  - bad routers are refused at submit, naming what is wrong, and an engine
//    whose executor cannot route refuses the request.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <map>
#include <random>
#include <thread>

#include "gpu/cpu/cpu_executor.h"
#include "gpu/cpu/lora_trainer.h"
#include "runtime/adapter_source.h"
#include "runtime/clock.h"
#include "runtime/engine.h"
#include "runtime/fake_executor.h"
#include "runtime/model_factory.h"
#include "runtime/moe/hidden_embedding.h"
#include "runtime/moe/router.h"
#include "test_adapters.h"
#include "test_fixtures.h"
#include "test_seed.h"

namespace myriad::gpu::cpu {
namespace {

using testing::test_adapter;

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> last_logits;  // the prompt's last position
  std::vector<float> expert_weights;
  int finals = 0;
  bool failed = false;
};

struct Sink final : EventSink {
  std::map<RequestId, Output> out;
  void on_event(const RequestEvent& e) override {
    Output& o = out[e.id];
    if (e.kind == EventKind::kToken) o.tokens.push_back(e.token);
    if (e.kind == EventKind::kLogits) o.last_logits.assign(e.logits.begin(), e.logits.end());
    if (e.num_expert_weights > 0)
      o.expert_weights.assign(e.expert_weights.begin(), e.expert_weights.begin() + e.num_expert_weights);
    o.finals += e.is_final();
    o.failed |= e.kind == EventKind::kFailed;
  }
};

SchedulerConfig engine_config() {
  SchedulerConfig c;
  c.num_slots = 4;
  c.max_tokens_per_step = 256;
  c.max_running_seqs = 16;
  c.kv_block_size = 16;
  c.num_kv_blocks = 128;
  return c;
}

class MoePrefillRouting : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ck = Checkpoint::load(testing::fixtures_dir() + "/tiny-llama");
    ASSERT_TRUE(ck.ok()) << ck.error().to_string();
    ckpt_ = std::move(ck.value());
  }

  // Four rank-8 experts on all seven modules of layers [first_layer, n).
  void make_experts(int first_layer, uint64_t seed) {
    for (int e = 0; e < 4; ++e) {
      auto w = random_lora(ckpt_->config(), 8, 16.0f, seed * 10 + uint64_t(e), "x" + std::to_string(e), 0.08f);
      for (int l = 0; l < first_layer; ++l)
        for (int m = 0; m < kNumLinearModules; ++m) w->at(l, LinearModule(m)) = LoraModuleWeights{};
      source_->put(test_adapter("x" + std::to_string(e)), w);
    }
  }

  // Each prompt's mean hidden state after `layer` layers by the base pass
  // (moe::hidden_embed, skipping nothing), as the mixture's centroids.
  std::vector<float> base_pass_embeddings(const std::vector<std::vector<int32_t>>& prompts, int layer,
                                         int32_t context_tokens = 0) {
    CpuLoraTrainingBackend backend(ckpt_, 1);
    auto e = moe::hidden_embed(backend, ckpt_->config(), prompts, layer, 4096, context_tokens);
    EXPECT_TRUE(e.ok()) << e.error().to_string();
    return e.ok() ? e.value() : std::vector<float>{};
  }

  std::unique_ptr<CpuExecutor> executor() {
    CpuExecutorOptions o;
    o.kv_num_blocks = 128;
    o.kv_block_size = 16;
    o.threads = 2;
    o.num_adapter_slots = 4;
    o.max_adapter_rank = 8;
    auto ex = CpuExecutor::create(ckpt_, o);
    EXPECT_TRUE(ex.ok()) << ex.error().to_string();
    return ex.ok() ? std::move(ex).value() : nullptr;
  }

  // Runs `requests` together in one engine until all finish.
  std::map<RequestId, Output> run(std::vector<Request> requests) {
    auto ex = executor();
    Sink sink;
    SteadyClock clock;
    auto en = Engine::create(engine_config(), *ex, *source_, clock, sink);
    EXPECT_TRUE(en.ok()) << en.error().to_string();
    if (!en.ok()) return {};
    Engine& engine = *en.value();
    for (Request& r : requests) {
      auto id = engine.submit(std::move(r));
      EXPECT_TRUE(id.ok()) << id.error().to_string();
    }
    for (int step = 0; step < 100000 && engine.has_work(); ++step) {
      EXPECT_TRUE(engine.step().ok());
      if (engine.last_schedule().plan.rows.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return sink.out;
  }

  static Request request(RequestId id, const std::vector<int32_t>& prompt, std::vector<AdapterUse> adapters) {
    Request r;
    r.id = id;
    r.prompt = prompt;
    r.adapters = std::move(adapters);
    r.max_tokens = 8;
    r.sampling.temperature = 0.0f;
    r.prompt_logits = LogitsRequest::kLast;
    return r;
  }

  static std::vector<AdapterUse> experts() {
    std::vector<AdapterUse> a;
    for (int e = 0; e < 4; ++e) a.push_back({test_adapter("x" + std::to_string(e)), 0.0f});
    return a;
  }

  std::shared_ptr<const Checkpoint> ckpt_;
  std::unique_ptr<StaticAdapterSource> source_ = std::make_unique<StaticAdapterSource>();
};

std::vector<std::vector<int32_t>> random_prompts(uint64_t seed, int64_t vocab) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int len : {5, 12, 3, 20}) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = int32_t(rng() % uint64_t(vocab));
    prompts.push_back(p);
  }
  return prompts;
}

// Logits computed along different paths (a routed row adds no delta below
// the routing layer; a direct row adds rank-0 modules' nothing) in f32:
// the same products in the same order, so within float rounding.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), 1e-5 + 1e-4 * std::fabs(want[i])) << what << ", logit " << i;
}

TEST_F(MoePrefillRouting, Top1RowsEqualTheirExpertAndTheBasePassRoute) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto prompts = random_prompts(seed, ckpt_->config().vocab_size);
  for (int layer : {0, 1}) {
    SCOPED_TRACE("routing layer " + std::to_string(layer));
    source_ = std::make_unique<StaticAdapterSource>();
    make_experts(layer, seed);
    // Centroid e is prompt e's own embedding: prompt e routes to expert e.
    auto router = std::make_shared<PrefillRouter>();
    router->layer = layer;
    router->dim = int32_t(ckpt_->config().hidden_size);
    router->centroids = base_pass_embeddings(prompts, layer);
    router->top_k = 1;
    std::vector<Request> batch;
    for (size_t p = 0; p < prompts.size(); ++p) {
      Request routed = request(RequestId(1 + p), prompts[p], experts());
      routed.prefill_router = router;
      batch.push_back(routed);
      batch.push_back(request(RequestId(101 + p), prompts[p], {{test_adapter("x" + std::to_string(p)), 1.0f}}));
    }
    auto out = run(batch);
    for (size_t p = 0; p < prompts.size(); ++p) {
      SCOPED_TRACE("prompt " + std::to_string(p));
      const Output& routed = out[RequestId(1 + p)];
      const Output& direct = out[RequestId(101 + p)];
      ASSERT_EQ(routed.finals, 1);
      ASSERT_FALSE(routed.failed);
      // The base pass routes the same: moe::route over its embedding.
      const std::span<const float> emb(router->centroids.data() + p * size_t(router->dim), size_t(router->dim));
      auto want = moe::route(emb, router->centroids, 4, true, moe::RoutingOptions{1, 0.05});
      ASSERT_TRUE(want.ok());
      ASSERT_EQ(want->front().expert, int32_t(p));
      std::vector<float> weights(4, 0.0f);
      weights[p] = 1.0f;
      EXPECT_EQ(routed.expert_weights, weights);
      EXPECT_EQ(routed.tokens, direct.tokens);
      expect_close(routed.last_logits, direct.last_logits, "prompt logits");
    }
  }
}

// The executor's pooled hidden state is the base pass's (moe::hidden_embed
// with the same BOS as context, not averaged): each prompt's own centroid is
// at cosine similarity 1 (f32; the same sums in another order), at every
// routing layer including the last (before head) and the first (the
// embeddings), with the routed tokens placed anywhere in the step.
TEST_F(MoePrefillRouting, TheExecutorPoolsWhatTheBasePassPools) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto prompts = random_prompts(seed + 2, ckpt_->config().vocab_size);
  make_experts(0, seed);
  auto ex = executor();
  ASSERT_NE(ex, nullptr);
  for (int e = 0; e < 4; ++e) {
    std::atomic<bool> done{false};
    auto w = std::make_shared<const LoraWeights>(*random_lora(ckpt_->config(), 8, 16.0f, uint64_t(e), "x", 0.08f));
    ASSERT_TRUE(ex->begin_load_adapter(e, w, [&](Status st) {
                    EXPECT_TRUE(st.ok());
                    done = true;
                  }).ok());
    while (!done) std::this_thread::yield();
  }
  for (int layer = 0; layer <= int(ckpt_->config().num_layers); ++layer) {
    PrefillRouter router;
    router.layer = layer;
    router.dim = int32_t(ckpt_->config().hidden_size);
    std::vector<std::vector<int32_t>> behind_bos;
    for (const auto& p : prompts) {
      behind_bos.push_back({1});
      behind_bos.back().insert(behind_bos.back().end(), p.begin(), p.end());
    }
    router.centroids = base_pass_embeddings(behind_bos, layer, /*context_tokens=*/1);
    // One step: a plain row first, then every prompt routing behind a token
    // that is not pooled (skip 1), so rows start at different offsets.
    StepPlan plan;
    int32_t next_block = 0;
    auto add_row = [&](const std::vector<int32_t>& ids) {
      SeqRow& r = plan.rows.emplace_back();
      r.seq = SeqId(plan.rows.size());
      r.token_offset = uint32_t(plan.tokens.size());
      r.num_tokens = uint32_t(ids.size());
      plan.tokens.insert(plan.tokens.end(), ids.begin(), ids.end());
      r.block_offset = uint32_t(plan.block_ids.size());
      r.num_blocks = uint32_t((ids.size() + 15) / 16);
      for (uint32_t b = 0; b < r.num_blocks; ++b) plan.block_ids.push_back(next_block++);
      r.sample = true;
      r.sampling.temperature = 0.0f;
      return &r;
    };
    add_row({7, 8, 9});
    for (size_t p = 0; p < prompts.size(); ++p) {
      std::vector<int32_t> ids = {1};
      ids.insert(ids.end(), prompts[p].begin(), prompts[p].end());
      SeqRow* r = add_row(ids);
      r->route = int32_t(plan.routes.size());
      RowRoute& route = plan.routes.emplace_back();
      route.router = &router;
      route.first_token = 1;
      route.num_tokens = uint32_t(prompts[p].size());
      route.expert_slots = {0, 1, 2, 3};
    }
    StepResult res;
    ASSERT_TRUE(ex->step(plan, res).ok());
    ASSERT_EQ(res.routed.size(), prompts.size());
    for (size_t p = 0; p < prompts.size(); ++p) {
      SCOPED_TRACE("layer " + std::to_string(layer) + ", prompt " + std::to_string(p));
      EXPECT_EQ(res.routed[p].row, uint32_t(p + 1));
      EXPECT_EQ(res.routed[p].weights[p], 1.0f);
      EXPECT_NEAR(res.routed[p].similarities[p], 1.0, 2e-6);
    }
  }
}

TEST_F(MoePrefillRouting, WeightedTopTwoEqualsTheExplicitMixtureItReports) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const auto prompts = random_prompts(seed + 1, ckpt_->config().vocab_size);
  make_experts(1, seed);
  auto router = std::make_shared<PrefillRouter>();
  router->layer = 1;
  router->dim = int32_t(ckpt_->config().hidden_size);
  router->centroids = base_pass_embeddings(prompts, 1);
  router->top_k = 2;
  router->temperature = 0.5;  // soft: both chosen experts weigh
  std::vector<Request> routed_batch;
  for (size_t p = 0; p < prompts.size(); ++p) {
    Request r = request(RequestId(1 + p), prompts[p], experts());
    r.prefill_router = router;
    routed_batch.push_back(r);
  }
  auto routed = run(routed_batch);
  std::vector<Request> direct_batch;
  for (size_t p = 0; p < prompts.size(); ++p) {
    const Output& o = routed[RequestId(1 + p)];
    ASSERT_EQ(o.expert_weights.size(), 4u);
    std::vector<AdapterUse> mix;
    double sum = 0;
    for (int e = 0; e < 4; ++e)
      if (o.expert_weights[size_t(e)] != 0.0f) {
        mix.push_back({test_adapter("x" + std::to_string(e)), o.expert_weights[size_t(e)]});
        sum += o.expert_weights[size_t(e)];
      }
    ASSERT_EQ(mix.size(), 2u) << "prompt " << p;
    EXPECT_NEAR(sum, 1.0, 1e-6);
    EXPECT_GT(o.expert_weights[p], 0.5f) << "prompt " << p << "'s own centroid weighs most";
    direct_batch.push_back(request(RequestId(101 + p), prompts[p], mix));
  }
  auto direct = run(direct_batch);
  for (size_t p = 0; p < prompts.size(); ++p) {
    SCOPED_TRACE("prompt " + std::to_string(p));
    EXPECT_EQ(routed[RequestId(1 + p)].tokens, direct[RequestId(101 + p)].tokens);
    expect_close(routed[RequestId(1 + p)].last_logits, direct[RequestId(101 + p)].last_logits, "prompt logits");
  }
}

TEST_F(MoePrefillRouting, BadRoutersAndExecutorsThatCannotRouteAreRefused) {
  make_experts(1, 1);
  auto ex = executor();
  Sink sink;
  SteadyClock clock;
  auto en = Engine::create(engine_config(), *ex, *source_, clock, sink);
  ASSERT_TRUE(en.ok());
  const int32_t H = int32_t(ckpt_->config().hidden_size);
  auto refused = [&](const PrefillRouter& router, size_t experts_named, const std::string& says) {
    Request r = request(1, {5, 6, 7}, experts());
    r.adapters.resize(experts_named);
    r.prefill_router = std::make_shared<PrefillRouter>(router);
    auto id = en.value()->submit(r);
    ASSERT_FALSE(id.ok()) << says;
    EXPECT_NE(id.error().message.find(says), std::string::npos) << id.error().message;
  };
  PrefillRouter good;
  good.layer = 1;
  good.dim = H;
  good.centroids.assign(size_t(4 * H), 0.5f);
  PrefillRouter r = good;
  refused(r, 3, "4 centroids for 3 adapters");
  r.top_k = 5;
  refused(r, 4, "top_k 5 outside [1, 4]");
  r = good;
  r.temperature = 0;
  refused(r, 4, "temperature");
  r = good;
  r.layer = 3;
  refused(r, 4, "layer 3 but the model has 2");
  r = good;
  r.dim = H / 2;
  r.centroids.assign(size_t(4 * H / 2), 0.5f);
  refused(r, 4, "hidden size is 64");
  r = good;
  r.centroids[7] = std::nanf("");
  refused(r, 4, "not finite");
  EXPECT_FALSE(en.value()->has_work());

  // An executor without routing (the fake) refuses a routed request at submit.
  FakeExecutor fake(FakeExecutorOptions{.kv_block_size = 16, .kv_num_blocks = 128, .num_adapter_slots = 4});
  auto fen = Engine::create(engine_config(), fake, *source_, clock, sink);
  ASSERT_TRUE(fen.ok());
  Request routed = request(2, {5, 6, 7}, experts());
  routed.prefill_router = std::make_shared<PrefillRouter>(good);
  auto id = fen.value()->submit(routed);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(id.error().message.find("does not route"), std::string::npos) << id.error().message;
}

}  // namespace
}  // namespace myriad::gpu::cpu
