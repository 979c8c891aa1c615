// A real myriad-node process on 127.0.0.1 serving the Cap'n Proto RPC API
// (schema/api.capnp), driven by the `myriad` client commands and by a
// Cap'n Proto client in this process: generate over RPC equals `myriad
// generate` token for token (base and adapter); an adapter uploads, serves,
// lists and deletes; keys scope a session to its tenant and another
// tenant's adapter answers exactly like a missing one; a client that drops
// its call has its request cancelled while the node keeps serving; a
// hostile upload changes nothing.
#ifdef MYRIAD_NODE

#include <capnp/ez-rpc.h>
#include <gtest/gtest.h>
#include <kj/debug.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "cli_run.h"
#include "schema/api.capnp.h"

namespace myriad::testing_cli {
namespace {

namespace fs = std::filesystem;
namespace api = schema::api;
using nlohmann::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string text_of(capnp::Text::Reader t) { return std::string(t.begin(), t.size()); }

// A node with --http and --rpc on free ports, over the tiny model.
class RpcNode {
 public:
  explicit RpcNode(const std::vector<std::string>& extra = {}) {
    dir_ = (fs::temp_directory_path() /
            ("myriad-node-rpc-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++)))
               .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    EXPECT_EQ(run_cli("make-model --shape tiny --seed 1 --dtype f32 --out " + dir_ + "/tiny").code, 0);
    pid_ = fork();
    if (pid_ == 0) {
      freopen((dir_ + "/node.out").c_str(), "w", stdout);
      freopen((dir_ + "/node.err").c_str(), "w", stderr);
      std::vector<std::string> args = {MYRIAD_NODE, "--model", dir_ + "/tiny", "--data", dir_ + "/data",
                                       "--http",    "127.0.0.1:0", "--rpc", "127.0.0.1:0", "--threads", "1",
                                       "--log-level", "warn"};
      args.insert(args.end(), extra.begin(), extra.end());
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(MYRIAD_NODE, argv.data());
      _exit(127);
    }
    for (int i = 0; i < 200 && (rpc_.empty() || http_.empty()); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const std::string out = slurp(dir_ + "/node.out");
      std::smatch m;
      if (std::regex_search(out, m, std::regex("rpc://(127\\.0\\.0\\.1:[0-9]+)"))) rpc_ = m[1].str();
      if (std::regex_search(out, m, std::regex("http://127\\.0\\.0\\.1:[0-9]+"))) http_ = m.str();
    }
    EXPECT_FALSE(rpc_.empty()) << slurp(dir_ + "/node.out") << slurp(dir_ + "/node.err");
  }
  ~RpcNode() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  // `myriad <cmd> --server ADDR <rest>`.
  CliRun client(const std::string& cmd, const std::string& rest, bool with_stderr = false) const {
    return run_cli(cmd + " --server " + rpc_ + " " + rest, with_stderr);
  }
  std::string metrics() const { return sh("curl -s " + http_ + "/metrics"); }
  bool alive() const { return kill(pid_, 0) == 0; }
  const std::string& rpc() const { return rpc_; }
  const std::string& http() const { return http_; }
  const std::string& dir() const { return dir_; }
  std::string model() const { return dir_ + "/tiny"; }
  // A random adapter of the tiny model in dir()/NAME.
  std::string make_adapter(const std::string& name, int seed) const {
    const std::string out = dir_ + "/" + name;
    EXPECT_EQ(run_cli("make-adapter --model " + model() + " --rank 4 --seed " + std::to_string(seed) + " --out " + out)
                  .code,
              0);
    return out;
  }

 private:
  static inline int counter_ = 0;
  std::string dir_, rpc_, http_;
  pid_t pid_ = -1;
};

// curl's output (status line and body) for a POST of `body` to the node's HTTP API.
std::string http_post(const std::string& url, const std::string& body) {
  return sh("curl -s -i -H 'Content-Type: application/json' -d '" + body + "' " + url);
}

json parse_json(const CliRun& r) {
  const json j = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

const std::string kSampling =
    " --max-tokens 24 --temperature 0.8 --top-p 1 --top-k 0 --repetition-penalty 1 --seed 7 --ignore-eos --json";

TEST(NodeRpc, GenerateEqualsTheLocalGenerateForTheBaseAndAnAdapter) {
  RpcNode node;
  const std::string a = node.make_adapter("a", 3);
  ASSERT_EQ(node.client("adapters add", "--name default/a --path " + a).code, 0);
  for (const auto& [model, adapter_flag] :
       {std::pair{std::string("tiny"), std::string()}, std::pair{std::string("default/a"), " --adapter " + a}}) {
    const CliRun local = run_cli("generate --model " + node.model() + " --prompt 'Hello there'" + kSampling +
                                 " --threads 1" + adapter_flag);
    const CliRun remote = node.client("complete", "--model " + model + " --prompt 'Hello there'" + kSampling, true);
    ASSERT_EQ(local.code, 0) << local.out;
    ASSERT_EQ(remote.code, 0) << remote.out;
    const json l = parse_json(local), r = parse_json(remote);
    EXPECT_EQ(l["ids"], r["ids"]) << model;
    EXPECT_EQ(l["text"], r["text"]) << model;
    EXPECT_EQ(r["ids"].size(), 24u);
    EXPECT_EQ(r["finish_reason"], "length");
    EXPECT_EQ(r["model"], model == "tiny" ? "tiny" : "default/a@1");
  }
  // The streamed form prints the same text (then a newline).
  const CliRun streamed = node.client("complete", "--model default/a --prompt 'Hello there'" +
                                                      kSampling.substr(0, kSampling.size() - 7));
  const CliRun as_json = node.client("complete", "--model default/a --prompt 'Hello there'" + kSampling);
  EXPECT_EQ(streamed.out, parse_json(as_json)["text"].get<std::string>() + "\n");

  // Without a sink the result carries every token: the same ids.
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  auto req = root.generateRequest();
  auto g = req.initRequest();
  g.setModel("tiny");
  g.getPrompt().setText("Hello there");
  g.setMaxTokens(24);
  g.setIgnoreEos(true);
  auto s = g.initSampling();
  s.setTemperature(0.8f);
  s.setSeed(7);
  g.setRequestId("no-sink");
  auto res = req.send().wait(ws);
  auto r = res.getResult();
  ASSERT_FALSE(r.isError()) << text_of(r.getError().getMessage()).c_str();
  const json local = parse_json(run_cli("generate --model " + node.model() + " --prompt 'Hello there'" + kSampling +
                                        " --threads 1"));
  json ids = json::array();
  std::string text;
  for (auto t : r.getTokens()) {
    ids.push_back(t.getTokenId());
    text += text_of(t.getText());
  }
  text += text_of(r.getText());
  EXPECT_EQ(ids, local["ids"]);
  EXPECT_EQ(text, local["text"]);
  EXPECT_EQ(text_of(r.getRequestId()), "no-sink");
  EXPECT_EQ(r.getCompletionTokens(), 24u);
  EXPECT_GT(r.getPromptTokens(), 0u);
  EXPECT_GE(r.getTtftMs(), 0.0);
}

// The RPC API takes logit_bias and min_tokens and returns top alternatives
// as the HTTP API does: one engine request underneath.
TEST(NodeRpc, LogitBiasMinTokensAndTopAlternativesAsOverHttp) {
  RpcNode node;
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  auto ask = [&](int32_t forced, uint32_t min_tokens, uint32_t max_tokens) {
    auto req = root.generateRequest();
    auto g = req.initRequest();
    g.setModel("tiny");
    g.getPrompt().setText("Hello there");
    g.setMaxTokens(max_tokens);
    g.setIgnoreEos(true);
    g.setLogprobs(true);
    auto s = g.initSampling();
    s.setTemperature(1.0f);
    s.setSeed(3);
    s.setTopLogprobs(3);
    auto bias = g.initLogitBias(1);
    bias[0].setToken(forced);
    bias[0].setBias(100.0f);
    g.setMinTokens(min_tokens);
    return req.send().wait(ws);
  };
  auto forced = ask(42, 2, 4);
  auto r = forced.getResult();
  ASSERT_FALSE(r.isError()) << text_of(r.getError().getMessage());
  ASSERT_EQ(r.getTokens().size(), 4u);
  for (auto t : r.getTokens()) {
    EXPECT_EQ(t.getTokenId(), 42);
    EXPECT_GT(t.getLogprob(), -1e-3f) << "+100 leaves nearly all the mass on it";
    ASSERT_EQ(t.getTop().size(), 3u);
    EXPECT_EQ(t.getTop()[0].getToken(), 42);
    EXPECT_NEAR(t.getTop()[0].getLogprob(), t.getLogprob(), 1e-6);
    EXPECT_LE(t.getTop()[1].getLogprob(), t.getTop()[0].getLogprob());
    EXPECT_LE(t.getTop()[2].getLogprob(), t.getTop()[1].getLogprob());
  }
  auto too_many = ask(42, 5, 4);
  ASSERT_TRUE(too_many.getResult().isError());
  EXPECT_NE(text_of(too_many.getResult().getError().getMessage()).find("min_tokens = 5 exceeds max_tokens = 4"),
            std::string::npos)
      << text_of(too_many.getResult().getError().getMessage());
  auto outside = ask(9999999, 0, 4);
  ASSERT_TRUE(outside.getResult().isError());
  EXPECT_NE(text_of(outside.getResult().getError().getMessage()).find("logit_bias of token 9999999: outside"),
            std::string::npos)
      << text_of(outside.getResult().getError().getMessage());
}

TEST(NodeRpc, CliUploadsServesListsAndDeletesAnAdapter) {
  RpcNode node;
  const std::string a = node.make_adapter("a", 5);
  CliRun r = node.client("adapters add", "--name default/up --path " + a, true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("published default/up@1"), std::string::npos) << r.out;
  r = node.client("complete", "--model default/up --prompt hi --max-tokens 5 --ignore-eos --temperature 0", true);
  EXPECT_EQ(r.code, 0) << r.out;
  r = node.client("adapters ls", "", true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("NAME"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("CREATED"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("default/up"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("q_proj"), std::string::npos) << r.out;
  const json ls = parse_json(node.client("adapters ls", "--json"));
  ASSERT_EQ(ls.size(), 1u);
  EXPECT_EQ(ls[0]["rank"], 4);
  EXPECT_EQ(ls[0]["version"], 1);
  r = node.client("adapters rm", "--name default/up", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("deleted default/up@1"), std::string::npos) << r.out;
  r = node.client("complete", "--model default/up --prompt hi --max-tokens 5", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("model 'default/up' does not exist (notFound)"), std::string::npos) << r.out;
  r = node.client("adapters rm", "--name default/up", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("(notFound)"), std::string::npos) << r.out;
  EXPECT_EQ(parse_json(node.client("adapters ls", "--json")).size(), 0u);
}

TEST(NodeRpc, KeysScopeSessionsToTheirTenant) {
  const std::string keys =
      (fs::temp_directory_path() / ("myriad-rpc-keys-" + std::to_string(::getpid()) + ".json")).string();
  std::ofstream(keys) << R"({"key-alice": "alice", "key-bob": "bob"})";
  RpcNode node({"--api-keys", keys});
  const std::string a = node.make_adapter("a", 9);

  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  // The bootstrap: health answers, generate and adapters do not.
  EXPECT_EQ(root.healthRequest().send().wait(ws).getHealth().getState(), api::HealthState::SERVING);
  {
    auto req = root.generateRequest();
    req.initRequest().setModel("tiny");
    req.getRequest().getPrompt().setText("hi");
    auto res = req.send().wait(ws);
    ASSERT_TRUE(res.getResult().isError());
    EXPECT_EQ(res.getResult().getError().getCode(), schema::ErrorCode::UNAUTHENTICATED);
    auto list = root.adaptersRequest().send().getAdapters().listRequest().send().wait(ws);
    ASSERT_TRUE(list.getResult().isError());
    EXPECT_EQ(list.getResult().getError().getCode(), schema::ErrorCode::UNAUTHENTICATED);
  }
  auto login = [&](const char* key) {
    auto req = root.loginRequest();
    req.setApiKey(key);
    return req.send().wait(ws);
  };
  {
    auto bad = login("key-mallory");
    ASSERT_TRUE(bad.getResult().isError());
    EXPECT_EQ(bad.getResult().getError().getCode(), schema::ErrorCode::UNAUTHENTICATED);
    EXPECT_EQ(text_of(bad.getResult().getTenant()), "");
  }
  // Alice publishes with the CLI; her name without a tenant is hers.
  CliRun r = node.client("adapters add", "--api-key key-alice --name secret --path " + a, true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("published alice/secret@1"), std::string::npos) << r.out;
  EXPECT_EQ(node.client("adapters add", "--name x --path " + a, true).code, 1);  // no key: unauthenticated
  r = node.client("adapters add", "--api-key key-bob --name alice/planted --path " + a, true);
  EXPECT_EQ(r.code, 1) << r.out;

  auto bob_login = login("key-bob");
  ASSERT_FALSE(bob_login.getResult().isError());
  EXPECT_EQ(text_of(bob_login.getResult().getTenant()), "bob");
  auto bob = bob_login.getResult().getSession();
  auto bob_adapters = bob.adaptersRequest().send().getAdapters();
  // Another tenant's adapter answers exactly like one that does not exist.
  auto get = [&](const std::string& name) {
    auto req = bob_adapters.getRequest();
    req.setName(name);
    auto res = req.send().wait(ws);
    EXPECT_TRUE(res.getResult().isError()) << name;
    if (!res.getResult().isError()) return std::string("found");
    std::string m = text_of(res.getResult().getError().getMessage());
    m = std::regex_replace(m, std::regex(name), "NAME");
    return std::to_string(int(res.getResult().getError().getCode())) + " " + m;
  };
  EXPECT_EQ(get("alice/secret"), get("alice/missing"));
  EXPECT_EQ(get("alice/secret").rfind(std::to_string(int(schema::ErrorCode::NOT_FOUND)) + " ", 0), 0u);
  auto list = bob_adapters.listRequest().send().wait(ws);
  ASSERT_FALSE(list.getResult().isError());
  EXPECT_EQ(list.getResult().getAdapters().size(), 0u);
  // Generate and delete through the CLI as bob: the same answers as a missing adapter.
  const CliRun gen_secret = node.client("complete", "--api-key key-bob --model alice/secret --prompt hi", true);
  const CliRun gen_missing = node.client("complete", "--api-key key-bob --model alice/nothing --prompt hi", true);
  EXPECT_EQ(gen_secret.code, 1);
  EXPECT_EQ(std::regex_replace(gen_secret.out, std::regex("alice/secret"), "X"),
            std::regex_replace(gen_missing.out, std::regex("alice/nothing"), "X"));
  r = node.client("adapters rm", "--api-key key-bob --name alice/secret", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("(notFound)"), std::string::npos) << r.out;
  // Alice still has it and can use it.
  r = node.client("complete", "--api-key key-alice --model secret --prompt hi --max-tokens 3 --ignore-eos", true);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(parse_json(node.client("adapters ls", "--api-key key-alice --json")).size(), 1u);
  fs::remove(keys);
}

// Counts the sink's tokens. A stalling one never acknowledges a token: its
// client has stopped reading its stream.
class CountingSink final : public api::TokenSink::Server {
 public:
  explicit CountingSink(int& n, bool stall = false) : n_(n), stall_(stall) {}
  kj::Promise<void> token(TokenContext) override {
    ++n_;
    if (stall_) return kj::NEVER_DONE;
    return kj::READY_NOW;
  }

 private:
  int& n_;
  bool stall_;
};

TEST(NodeRpc, ADroppedCallIsCancelledAndTheNodeKeepsServing) {
  RpcNode node({"--max-running", "1"});
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  auto long_request = [&](const char* id, int* tokens) {
    auto req = root.generateRequest();
    auto g = req.initRequest();
    g.setModel("tiny");
    g.getPrompt().setText("hi");
    g.setMaxTokens(500);
    g.setIgnoreEos(true);
    g.setRequestId(id);
    if (tokens) req.setSink(kj::heap<CountingSink>(*tokens));
    return req.send();
  };
  // One sequence at a time and 20 long requests ahead: the dropped one is
  // still queued when the node learns of the drop (one long request ahead
  // raced the tiny model's speed under a loaded CI machine).
  std::vector<capnp::RemotePromise<api::Myriad::GenerateResults>> ahead;
  for (int i = 0; i < 20; ++i) ahead.push_back(long_request(("ahead-" + std::to_string(i)).c_str(), nullptr));
  int tokens = 0;
  {
    auto dropped = long_request("dropped", &tokens);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (tokens == 0 && std::chrono::steady_clock::now() < deadline) ws.poll();
  }  // the call's promise is released here: the node cancels the request
  for (auto& p : ahead) {
    auto a = p.wait(ws);
    EXPECT_FALSE(a.getResult().isError());
  }
  uint64_t cancelled = 0;
  for (int i = 0; i < 100 && cancelled == 0; ++i) {
    cancelled = root.statsRequest().send().wait(ws).getStats().getRequestsCancelled();
    if (cancelled == 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(cancelled, 1u) << node.metrics();
  EXPECT_NE(node.metrics().find("outcome=\"cancelled\"} 1"), std::string::npos) << node.metrics();
  // cancel(requestId): a running request ends with finishReason cancelled.
  {
    int n = 0;
    auto victim = long_request("victim", &n);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    bool found = false;
    while (!found && std::chrono::steady_clock::now() < deadline) {
      auto c = root.cancelRequest();
      c.setRequestId("victim");
      found = c.send().wait(ws).getFound();
    }
    EXPECT_TRUE(found);
    auto v = victim.wait(ws);
    ASSERT_FALSE(v.getResult().isError());
    EXPECT_EQ(v.getResult().getFinishReason(), schema::FinishReason::CANCELLED);
    auto c = root.cancelRequest();
    c.setRequestId("victim");
    EXPECT_FALSE(c.send().wait(ws).getFound());  // finished: nothing to cancel
  }
  // A client process killed mid-stream: its connection drops, the node goes on.
  (void)run_cli("complete --server " + node.rpc() + " --model tiny --prompt hi --max-tokens 500 --ignore-eos & sleep 0.3; kill -9 $!");
  const CliRun after = node.client("complete", "--model tiny --prompt hi --max-tokens 4 --ignore-eos --json", true);
  EXPECT_EQ(after.code, 0) << after.out;
  EXPECT_TRUE(node.alive());
}

double output_tokens(const std::string& metrics) {
  double total = 0;
  std::istringstream in(metrics);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("myriad_output_tokens_total{", 0) == 0) total += std::stod(line.substr(line.rfind(' ') + 1));
  return total;
}

TEST(NodeRpc, AClientThatStopsReadingNeverStallsTheStepLoop) {
  RpcNode node({"--max-running", "4"});
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  int got = 0;
  auto req = root.generateRequest();
  auto g = req.initRequest();
  g.setModel("tiny");
  g.getPrompt().setText("hi");
  g.setMaxTokens(400);
  g.setIgnoreEos(true);
  req.setSink(kj::heap<CountingSink>(got, /*stall=*/true));
  auto stalled = req.send();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (got == 0 && std::chrono::steady_clock::now() < deadline) ws.poll();
  ASSERT_GT(got, 0);
  // From here this client acknowledges nothing, and while curl runs below it
  // does not even read its socket (its event loop is not polled).
  const std::string other = http_post(
      node.http() + "/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 20, "ignore_eos": true})");
  EXPECT_NE(other.find("HTTP/1.1 200"), std::string::npos) << other;
  EXPECT_NE(other.find("\"completion_tokens\":20"), std::string::npos) << other;
  // The engine went on with the stalled request as well: its 400 tokens were
  // generated whether or not its client takes them.
  double tokens = 0;
  for (int i = 0; i < 200 && tokens < 420; ++i) {
    tokens = output_tokens(node.metrics());
    if (tokens < 420) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(tokens, 420) << node.metrics();
  EXPECT_LE(got, 400);
  // Dropping the stalled call frees it; the node keeps serving.
  { auto dropped = kj::mv(stalled); }
  const CliRun after = node.client("complete", "--model tiny --prompt hi --max-tokens 4 --ignore-eos --json", true);
  EXPECT_EQ(after.code, 0) << after.out;
  EXPECT_TRUE(node.alive());
}

// A client that stops acknowledging for longer than its buffer allows
// loses that request, not the node: past --rpc-max-buffered-events the
// request is cancelled (its KV freed, no more tokens generated) and the
// call answers resourceExhausted naming the limit.
TEST(NodeRpc, ASlowReaderPastItsBufferIsCancelledWithResourceExhausted) {
  RpcNode node({"--max-running", "4", "--rpc-max-buffered-events", "8"});
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  int got = 0;
  auto req = root.generateRequest();
  auto g = req.initRequest();
  g.setModel("tiny");
  g.getPrompt().setText("hi");
  g.setMaxTokens(500);
  g.setIgnoreEos(true);
  req.setSink(kj::heap<CountingSink>(got, /*stall=*/true));
  auto response = req.send().wait(ws);
  auto result = response.getResult();
  ASSERT_TRUE(result.isError()) << "a stalled reader of 500 tokens with room for 8 must be cut off";
  EXPECT_EQ(result.getError().getCode(), schema::ErrorCode::RESOURCE_EXHAUSTED);
  const std::string message = text_of(result.getError().getMessage());
  EXPECT_NE(message.find("8 events"), std::string::npos) << message;
  EXPECT_LT(result.getCompletionTokens(), 500u);
  // Cancelled, not run to its end: the engine stops short of 500 tokens.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LT(output_tokens(node.metrics()), 500) << node.metrics();
  const CliRun after = node.client("complete", "--model tiny --prompt hi --max-tokens 4 --ignore-eos --json", true);
  EXPECT_EQ(after.code, 0) << after.out;
  EXPECT_TRUE(node.alive());
}

TEST(NodeRpc, AHostileUploadIsRejectedAndChangesNothing) {
  RpcNode node({"--max-body-bytes", "200000"});
  const std::string good = node.make_adapter("good", 11);
  ASSERT_EQ(node.client("adapters add", "--name kept --path " + good).code, 0);
  const std::string before = node.client("adapters ls", "--json").out;
  // A truncated header claiming more bytes than there are.
  const std::string bad = node.dir() + "/bad";
  fs::create_directories(bad);
  fs::copy_file(good + "/adapter_config.json", bad + "/adapter_config.json");
  std::ofstream(bad + "/adapter_model.safetensors") << std::string("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":", 14);
  CliRun r = node.client("adapters add", "--name evil --path " + bad, true);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("adapter_model.safetensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(badFile)"), std::string::npos) << r.out;
  // Over the node's upload limit: refused before a byte is sent.
  std::ofstream(bad + "/adapter_model.safetensors") << std::string(300000, 'x');
  r = node.client("adapters add", "--name huge --path " + bad, true);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("(resourceExhausted)"), std::string::npos) << r.out;
  EXPECT_EQ(node.client("adapters ls", "--json").out, before);
  EXPECT_EQ(node.client("complete", "--model kept --prompt hi --max-tokens 2", true).code, 0);
}

TEST(NodeRpc, HealthAndModelsDescribeTheNode) {
  RpcNode node;
  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto root = client.getMain<api::Myriad>();
  auto h = root.healthRequest().send().wait(ws);
  EXPECT_EQ(text_of(h.getHealth().getBaseModel()), "tiny");
  auto m = root.modelsRequest().send().wait(ws);
  ASSERT_FALSE(m.getResult().isError());
  ASSERT_GE(m.getResult().getModels().size(), 1u);
  EXPECT_EQ(m.getResult().getModels()[0].getBase().getContextLength(), 512u);
}

TEST(NodeRpc, HttpAndRpcCountAgainstOneTokensPerMinuteLimit) {
  // 100 tokens a minute: two HTTP requests of ~42 (prompt + max_tokens)
  // leave too little for a third of the same size over RPC.
  RpcNode node({"--tokens-per-minute-per-tenant", "100"});
  const std::string body = R"({"model": "tiny", "prompt": "hi", "max_tokens": 40})";
  EXPECT_NE(http_post(node.http() + "/v1/completions", body).find("HTTP/1.1 200"), std::string::npos);
  EXPECT_NE(http_post(node.http() + "/v1/completions", body).find("HTTP/1.1 200"), std::string::npos);
  const CliRun r = node.client("complete", "--model tiny --prompt hi --max-tokens 40", true);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("would pass its limit of 100"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace myriad::testing_cli

#endif  // MYRIAD_NODE
