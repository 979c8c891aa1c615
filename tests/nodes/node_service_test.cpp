// The node's serving core: tenants resolve only their own adapters, a
// completion through the service gives exactly what `myriad generate` gives
// (one engine, one answer), adapters published through it survive a restart,
// and draining answers what is in flight.
#include "node_service.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>

#include "cli_run.h"

namespace myriad::node {
namespace {

using myriad::testing_cli::run_cli;
namespace fs = std::filesystem;

// A tiny random model and two random adapters, made by the CLI once.
struct Demo {
  std::string dir, model, a1, a2;
};
const Demo& demo() {
  static const Demo d = [] {
    Demo x;
    x.dir = (fs::temp_directory_path() / ("myriad-node-test-" + std::to_string(::getpid()))).string();
    fs::remove_all(x.dir);
    fs::create_directories(x.dir);
    x.model = x.dir + "/tiny";
    x.a1 = x.dir + "/a1";
    x.a2 = x.dir + "/a2";
    EXPECT_EQ(run_cli("make-model --shape tiny --seed 1 --dtype f32 --out " + x.model).code, 0);
    EXPECT_EQ(run_cli("make-adapter --model " + x.model + " --rank 8 --seed 3 --out " + x.a1).code, 0);
    EXPECT_EQ(run_cli("make-adapter --model " + x.model + " --rank 4 --seed 4 --out " + x.a2).code, 0);
    return x;
  }();
  return d;
}

NodeOptions options(const std::string& data) {
  NodeOptions o;
  o.model_dir = demo().model;
  o.model_name = "tiny";
  o.data_dir = data;
  o.slots = 2;
  o.threads = 1;
  o.max_running = 8;
  return o;
}

// Collects one request's events; wait() until its final event.
struct Collected {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> ids;
  std::string text;
  std::optional<RequestEvent> final;
  NodeService::EventCallback callback() {
    return [this](const RequestEvent& e) {
      std::lock_guard lock(mu);
      if (e.kind == EventKind::kToken) ids.push_back(e.token);
      text += e.text;
      if (e.is_final()) {
        final = e;
        cv.notify_all();
      }
    };
  }
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return final.has_value(); });
  }
};

GenerateCall greedy(const ModelRef& m, std::vector<int32_t> prompt, uint32_t max_tokens) {
  GenerateCall c;
  c.model = m;
  c.prompt = std::move(prompt);
  c.max_tokens = max_tokens;
  c.sampling.temperature = 0.0f;
  return c;
}

TEST(NodeService, TenantsSeeOnlyTheirOwnAdapters) {
  const std::string data = demo().dir + "/data-tenants";
  fs::remove_all(data);
  auto s = NodeService::start(options(data));
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  const Caller alpha{"alpha", false}, beta{"beta", false}, ops{"ops", true};
  auto rec = (*s)->add_adapter_from_path(alpha, "chat", demo().a1);
  ASSERT_TRUE(rec.ok()) << rec.error().to_string();
  EXPECT_EQ(rec->id.to_string(), "alpha/chat@1");
  EXPECT_TRUE((*s)->resolve("chat", alpha).ok());
  EXPECT_TRUE((*s)->resolve("alpha/chat@1", alpha).ok());
  EXPECT_TRUE((*s)->resolve("alpha/chat@latest", alpha).ok());
  EXPECT_TRUE((*s)->resolve("tiny", beta).ok());  // the base, for everyone
  // Another tenant's adapter is exactly like one that does not exist.
  auto other = (*s)->resolve("alpha/chat", beta);
  auto missing = (*s)->resolve("alpha/nope", beta);
  ASSERT_FALSE(other.ok());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kNotFound);
  EXPECT_EQ(other.error().message, "model 'alpha/chat' does not exist");
  EXPECT_EQ(missing.error().message, "model 'alpha/nope' does not exist");
  EXPECT_FALSE((*s)->add_adapter_from_path(beta, "alpha/x", demo().a2).ok());  // not its tenant
  EXPECT_TRUE((*s)->resolve("alpha/chat", ops).ok());                         // an admin sees all
  EXPECT_EQ((*s)->models(beta)->size(), 1u);
  EXPECT_EQ((*s)->models(alpha)->size(), 2u);
  EXPECT_FALSE((*s)->remove_adapter(beta, "alpha/chat").ok());
  EXPECT_TRUE((*s)->remove_adapter(alpha, "chat").ok());
  EXPECT_FALSE((*s)->resolve("chat", alpha).ok());
}

TEST(NodeService, OneEngineOneAnswerAndAdaptersSurviveARestart) {
  const std::string data = demo().dir + "/data-answer";
  fs::remove_all(data);
  const Caller alpha{"alpha", false};
  std::vector<int32_t> base_ids, adapter_ids;
  {
    auto s = NodeService::start(options(data));
    ASSERT_TRUE(s.ok()) << s.error().to_string();
    ASSERT_TRUE((*s)->add_adapter_from_path(alpha, "a1", demo().a1).ok());
    auto prompt = (*s)->encode_prompt("Hello, Myriad");
    ASSERT_TRUE(prompt.ok());
    Collected base, adapted;
    ASSERT_TRUE((*s)->generate(greedy(*(*s)->resolve("tiny", alpha), *prompt, 12), base.callback()).ok());
    ASSERT_TRUE((*s)->generate(greedy(*(*s)->resolve("a1", alpha), *prompt, 12), adapted.callback()).ok());
    ASSERT_TRUE(base.wait());
    ASSERT_TRUE(adapted.wait());
    EXPECT_EQ(base.final->kind, EventKind::kFinished) << base.final->error.to_string();
    EXPECT_EQ(adapted.final->kind, EventKind::kFinished) << adapted.final->error.to_string();
    base_ids = base.ids;
    adapter_ids = adapted.ids;
    EXPECT_NE(base_ids, adapter_ids);
  }
  // What the CLI computes for the same model, adapter, prompt and settings.
  for (const bool with_adapter : {false, true}) {
    auto r = run_cli("generate --model " + demo().model + (with_adapter ? " --adapter " + demo().a1 : "") +
                     " --prompt 'Hello, Myriad' --max-tokens 12 --temperature 0 --json");
    ASSERT_EQ(r.code, 0);
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["ids"].get<std::vector<int32_t>>(), with_adapter ? adapter_ids : base_ids) << r.out;
  }
  // A restart: the adapter is still there and answers the same.
  auto s = NodeService::start(options(data));
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  auto m = (*s)->resolve("alpha/a1", alpha);
  ASSERT_TRUE(m.ok());
  Collected again;
  ASSERT_TRUE((*s)->generate(greedy(*m, *(*s)->encode_prompt("Hello, Myriad"), 12), again.callback()).ok());
  ASSERT_TRUE(again.wait());
  EXPECT_EQ(again.ids, adapter_ids);
}

TEST(NodeService, DrainFinishesWhatRunsAndRefusesNewWork) {
  const std::string data = demo().dir + "/data-drain";
  fs::remove_all(data);
  auto s = NodeService::start(options(data));
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  const Caller c{"default", false};
  Collected a;
  ASSERT_TRUE((*s)->generate(greedy(*(*s)->resolve("tiny", c), {1, 2, 3}, 20), a.callback()).ok());
  (*s)->drain();
  ASSERT_TRUE(a.final.has_value());  // drained: answered before drain() returned
  EXPECT_EQ(a.final->kind, EventKind::kFinished);
  Collected b;
  auto refused = (*s)->generate(greedy(*(*s)->resolve("tiny", c), {1, 2, 3}, 4), b.callback());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("shutting down"), std::string::npos);
}

}  // namespace
}  // namespace myriad::node
