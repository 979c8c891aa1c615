// A real myriad-node process on 127.0.0.1, driven with curl: bad input and
// overload get clear errors (413, 400 naming the numbers, 429 with
// Retry-After), a client that hangs up has its request cancelled, streamed
// or not, and SIGTERM drains: new requests get 503 while a running one
// finishes, then the process exits 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "node_process.h"
#include "runtime/moe/corpus.h"

namespace myriad::testing_cli {
namespace {

TEST(NodeHttp, AMixtureRoutesEachRequestToItsExpert) {
  Node node({});
  const std::string model = node.dir() + "/tiny", mix = node.dir() + "/mix";
  {
    std::ofstream f(node.dir() + "/corpus.jsonl");
    for (const auto& l : moe::synthetic_corpus(20, 5)) f << nlohmann::json{{"text", l.text}}.dump() << "\n";
  }
  ASSERT_EQ(run_cli("moe create --model " + model + " --corpus " + node.dir() + "/corpus.jsonl --k 4 --steps 10 " +
                    "--batch-tokens 256 --lr 1e-2 --seed 1 --out " + mix).code, 0);
  std::string r = node.post("/v1/mixtures", "{\"name\": \"desk\", \"path\": \"" + mix + "\"}");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const auto added = body_of(r);
  EXPECT_EQ(added["id"], "default/desk");
  ASSERT_EQ(added["experts"].size(), 4u) << r;
  EXPECT_EQ(added["experts"][0], "default/desk.expert-0@1");
  r = sh("curl -s " + node.url() + "/v1/models");
  EXPECT_NE(r.find("\"default/desk\""), std::string::npos) << r;
  r = sh("curl -s " + node.url() + "/v1/mixtures");
  EXPECT_NE(r.find("\"default/desk\""), std::string::npos) << r;

  // Two domains' prompts: each routed top-1 to its own expert, whose output
  // is what that expert adapter gives when named directly.
  std::set<std::string> chosen;
  for (const std::string prompt : {"KYC CHECK | client_id=482913 | document=passport | sanctions_screen=",
                                   "Section 12.3 Policy summary: the Licensee shall indemnify and hold harmless any"}) {
    const std::string req = "{\"model\": \"desk\", \"prompt\": \"" + prompt +
                            "\", \"max_tokens\": 6, \"temperature\": 0}";
    r = node.post("/v1/completions", req);
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    const auto got = body_of(r);
    ASSERT_EQ(got["experts"].size(), 1u) << r;
    EXPECT_EQ(got["experts"][0]["weight"], 1.0);
    const std::string expert = got["experts"][0]["name"];
    chosen.insert(expert);
    r = node.post("/v1/completions", "{\"model\": \"desk." + expert + "\", \"prompt\": \"" + prompt +
                                         "\", \"max_tokens\": 6, \"temperature\": 0}");
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    EXPECT_EQ(body_of(r)["choices"][0]["text"], got["choices"][0]["text"]) << expert;
    EXPECT_EQ(body_of(r).count("experts"), 0u);
  }
  EXPECT_EQ(chosen.size(), 2u);
  // Chat, streamed: the experts ride on every chunk.
  r = node.post("/v1/chat/completions",
                R"({"model": "desk", "messages": [{"role": "user", "content": "Weekly update, project Atlas: status"}],
                    "max_tokens": 3, "stream": true})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("\"experts\":[{\"name\":\"expert-"), std::string::npos) << r;

  // Bad input changes nothing; a name is an adapter or a mixture, not both.
  r = node.post("/v1/mixtures", "{\"name\": \"other\", \"path\": \"" + node.dir() + "/nowhere\"}");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("not a mixture folder"), std::string::npos) << r;
  r = node.post("/v1/adapters", "{\"name\": \"desk\", \"path\": \"" + mix + "/expert-0\"}");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("is a mixture"), std::string::npos) << r;
  r = sh("curl -s -w ' HTTP%{http_code}' -X DELETE " + node.url() + "/v1/mixtures/desk");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "desk", "prompt": "hi", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
  // Its experts stay adapters of their own.
  r = node.post("/v1/completions", R"({"model": "desk.expert-1", "prompt": "hi", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
}

// A hidden-state mixture whose experts adapt the routing layer and above
// routes in each request's own prefill on the node: the experts it reports
// are those the CLI's base pass picks, and its output is the chosen expert's
// named directly. Experts on every layer are refused, saying why.
TEST(NodeHttp, AHiddenStateMixtureRoutesInEachRequestsPrefill) {
  Node node({});
  const std::string model = node.dir() + "/tiny", mix = node.dir() + "/mixh";
  {
    std::ofstream f(node.dir() + "/corpus.jsonl");
    for (const auto& l : moe::synthetic_corpus(20, 5)) f << nlohmann::json{{"text", l.text}}.dump() << "\n";
  }
  const std::string create = "moe create --model " + model + " --corpus " + node.dir() +
                             "/corpus.jsonl --k 4 --steps 10 --batch-tokens 256 --lr 1e-2 --seed 1 "
                             "--embedding hidden --embedding-layer 1 --out ";
  ASSERT_EQ(run_cli(create + mix).code, 0);
  std::string r = node.post("/v1/mixtures", "{\"name\": \"desk\", \"path\": \"" + mix + "\"}");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  std::set<std::string> chosen;
  for (const std::string prompt : {"KYC CHECK | client_id=482913 | document=passport | sanctions_screen=",
                                   "Section 12.3 Policy summary: the Licensee shall indemnify and hold harmless any"}) {
    SCOPED_TRACE(prompt);
    r = node.post("/v1/completions",
                  "{\"model\": \"desk\", \"prompt\": \"" + prompt + "\", \"max_tokens\": 6, \"temperature\": 0}");
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    const auto got = body_of(r);
    ASSERT_EQ(got["experts"].size(), 1u) << r;
    EXPECT_EQ(got["experts"][0]["weight"], 1.0);
    const std::string expert = got["experts"][0]["name"];
    chosen.insert(expert);
    const auto cli = run_cli("generate --model " + model + " --moe " + mix + " --moe-route pass --prompt '" + prompt +
                             "' --max-tokens 1 --temperature 0 --json");
    ASSERT_EQ(cli.code, 0) << cli.out;
    EXPECT_EQ(nlohmann::json::parse(cli.out)["experts"][0]["name"], expert) << "the base pass routes alike";
    r = node.post("/v1/completions", "{\"model\": \"desk." + expert + "\", \"prompt\": \"" + prompt +
                                         "\", \"max_tokens\": 6, \"temperature\": 0}");
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    EXPECT_EQ(body_of(r)["choices"][0]["text"], got["choices"][0]["text"]) << expert;
  }
  EXPECT_EQ(chosen.size(), 2u) << "two domains, two experts";
  // Streamed: the chunks carry the experts once the prefill has chosen them.
  r = node.post("/v1/completions", R"({"model": "desk", "prompt": "Weekly update, project Atlas: status",
                                       "max_tokens": 3, "stream": true})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("\"experts\":[{\"name\":\"expert-"), std::string::npos) << r;

  ASSERT_EQ(run_cli(create + node.dir() + "/mixall --expert-layers all").code, 0);
  r = node.post("/v1/mixtures", "{\"name\": \"desk2\", \"path\": \"" + node.dir() + "/mixall\"}");
  EXPECT_EQ(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("adapts layer 0, below the routing layer 1"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "desk2", "prompt": "hi", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
}

TEST(NodeHttp, BadInputGetsClearErrors) {
  Node node({"--max-body-bytes", "2000"});
  const std::string big(5000, 'x');
  std::string r = node.post("/v1/completions", "{\"model\": \"tiny\", \"prompt\": \"" + big + "\"}");
  EXPECT_NE(r.find("HTTP413"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 100000})");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("exceeds the context left"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "tiny", "prompt": [1, 2, 99999]})");
  EXPECT_NE(r.find("outside the vocabulary"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "tools": [{"type": "function"}]})");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  r = node.post("/v1/adapters", R"({"name": "x", "path": "/nonexistent"})");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  r = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;  // and the node still answers
}

TEST(NodeHttp, AdaptersUploadFromTheClientsHostAndHostileOnesChangeNothing) {
  Node node({});
  const std::string a = node.dir() + "/a";
  ASSERT_EQ(run_cli("make-adapter --model " + node.dir() + "/tiny --rank 4 --seed 2 --out " + a).code, 0);
  const std::string form = " -F name=up -F adapter_config.json=@" + a + "/adapter_config.json" +
                           " -F adapter_model.safetensors=@" + a + "/adapter_model.safetensors ";
  std::string r = sh("curl -s -w ' HTTP%{http_code}'" + form + node.url() + "/v1/adapters");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("\"default/up@1\""), std::string::npos) << r;
  // A truncated weights file: refused, naming it, and the store is as before.
  std::ofstream(node.dir() + "/bad.safetensors") << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  r = sh("curl -s -w ' HTTP%{http_code}' -F name=bad -F adapter_config.json=@" + a + "/adapter_config.json" +
         " -F adapter_model.safetensors=@" + node.dir() + "/bad.safetensors " + node.url() + "/v1/adapters");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("adapter_model.safetensors"), std::string::npos) << r;
  const std::string models = sh("curl -s " + node.url() + "/v1/models");
  EXPECT_NE(models.find("default/up"), std::string::npos) << models;
  EXPECT_EQ(models.find("default/bad"), std::string::npos) << models;
  r = node.post("/v1/completions", R"({"model": "up", "prompt": "hi", "max_tokens": 3})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
}

TEST(NodeHttp, ATenantOverItsOpenLimitGets429WithRetryAfter) {
  // One open request per tenant and one sequence at a time: 20 long requests
  // (ignore_eos, 500 tokens) sent at once keep the node busy for their whole
  // run, so whichever arrive while another is open get 429. (A race-free
  // bound: for none to, every arrival would have to wait out the previous
  // request's 500 tokens.)
  Node node({"--max-open-per-tenant", "1", "--max-running", "1"});
  const std::string out = sh(
      "for i in $(seq 20); do curl -s -i -H 'Content-Type: application/json' -d '{\"model\": \"tiny\", "
      "\"prompt\": \"hi\", \"max_tokens\": 500, \"ignore_eos\": true}' " +
      node.url() + "/v1/completions & done; wait");
  EXPECT_NE(out.find("HTTP/1.1 200"), std::string::npos) << out.substr(0, 2000);
  EXPECT_NE(out.find("HTTP/1.1 429"), std::string::npos) << out.substr(0, 2000);
  EXPECT_NE(out.find("Retry-After: 1"), std::string::npos) << out.substr(0, 2000);
  EXPECT_NE(out.find("rate_limit_exceeded"), std::string::npos) << out.substr(0, 2000);
}

TEST(NodeHttp, ATenantPastItsTokensPerMinuteGets429) {
  Node node({"--tokens-per-minute-per-tenant", "100"});
  const std::string body = R"({"model": "tiny", "prompt": "hi", "max_tokens": 40})";  // ~42 tokens each
  EXPECT_NE(node.post("/v1/completions", body).find("HTTP200"), std::string::npos);
  EXPECT_NE(node.post("/v1/completions", body).find("HTTP200"), std::string::npos);
  const std::string r = node.post("/v1/completions", body, "-i");
  EXPECT_NE(r.find("HTTP429"), std::string::npos) << r;
  EXPECT_NE(r.find("would pass its limit of 100"), std::string::npos) << r;
  EXPECT_NE(r.find("Retry-After: "), std::string::npos) << r;
}

TEST(NodeHttp, AClientThatHangsUpIsCancelledAndSigtermDrains) {
  Node node({"--max-running", "1"});
  // One request at a time, and 40 long ones queued first: the stream below
  // waits in the queue, its client hangs up, and the server sees the closed
  // connection and cancels it (the tiny model is too quick to hang up on).
  std::thread queue([&] {
    (void)sh("for i in $(seq 40); do curl -s -o /dev/null -H 'Content-Type: application/json' -d '{\"model\": "
             "\"tiny\", \"prompt\": \"hi\", \"max_tokens\": 500, \"ignore_eos\": true}' " +
             node.url() + "/v1/completions & done; wait");
  });
  // The stream must queue behind many of them: a 500-token request takes
  // ~30 ms on a fast CPU, so a fixed sleep let it run (and finish) before
  // its client hung up when the curls started slowly.
  for (int i = 0; i < 500; ++i) {
    const std::string m = sh("curl -s " + node.url() + "/metrics");
    const size_t at = m.find("\nmyriad_requests_in_flight ");
    if (at != std::string::npos && std::atof(m.c_str() + at + 27) >= 15) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  (void)sh("curl -s -N -m 0.2 -H 'Content-Type: application/json' -d '{\"model\": \"tiny\", \"prompt\": \"hi\", "
           "\"max_tokens\": 500, \"stream\": true, \"ignore_eos\": true}' " +
           node.url() + "/v1/completions > /dev/null");
  // A whole-body request of two choices, also queued, whose client hangs
  // up: nothing will be written to it, so the server must see the closed
  // connection itself, and both choices are cancelled.
  (void)sh("curl -s -m 0.2 -H 'Content-Type: application/json' -d '{\"model\": \"tiny\", \"prompt\": \"hi\", "
           "\"max_tokens\": 500, \"n\": 2, \"ignore_eos\": true}' " +
           node.url() + "/v1/completions > /dev/null");
  // A client that closes right after sending is seen too. (Its close may
  // even arrive with the request's bytes, raising no readiness edge of its
  // own, which is why the watch looks once before it waits; this test does
  // not force that interleaving.)
  const std::string port = node.url().substr(node.url().rfind(':') + 1);
  {
    std::ofstream py(node.dir() + "/send_and_close.py");
    py << "import socket\n"
          "body = b'{\"model\": \"tiny\", \"prompt\": \"hi\", \"max_tokens\": 500, \"ignore_eos\": true}'\n"
          "s = socket.create_connection(('127.0.0.1', " << port << "))\n"
          "s.sendall(b'POST /v1/completions HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\n'\n"
          "          b'Content-Length: %d\\r\\n\\r\\n' % len(body) + body)\n"
          "s.close()\n";
  }
  (void)sh("python3 " + node.dir() + "/send_and_close.py");
  queue.join();
  std::string metrics;
  for (int i = 0; i < 100; ++i) {
    metrics = sh("curl -s " + node.url() + "/metrics");
    if (metrics.find("outcome=\"cancelled\"} 4") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(metrics.find("outcome=\"cancelled\"} 4"), std::string::npos) << metrics;
  // The gateway's view of its worker, and the step's device and host times.
  EXPECT_NE(metrics.find("myriad_worker_up{worker=\"local/cpu0\"} 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("myriad_worker_pending_tokens{worker=\"local/cpu0\"}"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("myriad_gateway_held_requests 0"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("myriad_step_device_ms_count"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("myriad_step_plan_ms{quantile=\"0.5\"}"), std::string::npos) << metrics;
  // SIGTERM during a running request: it finishes; then the process exits 0.
  std::string running;
  std::thread t([&] {
    running = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 500, "ignore_eos": true})");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(node.terminate_and_wait(), 0);
  t.join();
  EXPECT_NE(running.find("HTTP200"), std::string::npos) << running;
  EXPECT_NE(running.find("\"finish_reason\""), std::string::npos) << running;
  EXPECT_NE(slurp(node.dir() + "/node.out").find("myriad-node: stopped"), std::string::npos);
}

}  // namespace
}  // namespace myriad::testing_cli
