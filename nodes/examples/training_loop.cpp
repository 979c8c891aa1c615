// A training loop driven over Myriad's RPC API (docs/training.md, "Training
// runs"): the client owns the loop (batches, steps, when to publish and what
// to sample); the node keeps the adapter, its gradients and optimizer state
// on the worker that serves. It teaches a toy rule the base does not know
// (3-6 lowercase letters are answered with the last one upper-cased:
// "kqzb" -> "B"), then samples held-out words from the published version.
//
//   myriad-training-loop --server 127.0.0.1:PORT [--api-key KEY] [--name letters]
//                        [--steps 300] [--batch 32] [--lr 0.01] [--seed 1]
//
// Prints a line per step, then one JSON object: loss_first, loss_last,
// steps, adapter (the version published last), held_out_correct_before (of
// the untrained adapter), held_out_correct, held_out.
#include <capnp/ez-rpc.h>
#include <kj/exception.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "schema/api.capnp.h"

namespace api = myriad::schema::api;
using json = nlohmann::json;

namespace {

std::string flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]).substr(0, 2) == "--" && argv[i] + 2 == name) return argv[i + 1];
  return fallback;
}

std::string random_word(std::mt19937& rng) {
  std::string w;
  const unsigned len = 3 + rng() % 4;
  for (unsigned i = 0; i < len; ++i) w += char('a' + rng() % 26);
  return w;
}

// "X" for a word ending in x: the completion.
std::string answer_of(const std::string& word) { return std::string(1, char(word.back() - 'a' + 'A')); }

// The JSON answer of a call, or exit naming the node's error.
json answer(api::JsonResult::Reader r, const char* what) {
  if (r.isError()) {
    std::fprintf(stderr, "training-loop: %s: %s\n", what, r.getError().getMessage().cStr());
    std::exit(1);
  }
  return json::parse(r.getJson().cStr());
}

}  // namespace

int main(int argc, char** argv) {
  const std::string server = flag(argc, argv, "server", "127.0.0.1:8081");
  const std::string key = flag(argc, argv, "api-key", "");
  const std::string name = flag(argc, argv, "name", "letters");
  const int steps = std::atoi(flag(argc, argv, "steps", "300").c_str());
  const int batch = std::atoi(flag(argc, argv, "batch", "32").c_str());
  const double lr = std::atof(flag(argc, argv, "lr", "0.01").c_str());
  const unsigned seed = unsigned(std::atoi(flag(argc, argv, "seed", "1").c_str()));
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    capnp::EzRpcClient client(server);
    auto& ws = client.getWaitScope();
    api::Myriad::Client session = client.getMain<api::Myriad>();
    if (!key.empty()) {
      auto login = session.loginRequest();
      login.setApiKey(key);
      auto r = login.send().wait(ws).getResult();
      if (r.isError()) {
        std::fprintf(stderr, "training-loop: login: %s\n", r.getError().getMessage().cStr());
        std::exit(1);
      }
      session = r.getSession();
    }
    auto fine_tuning = session.fineTuningRequest().send().wait(ws).getFineTuning();

    // Open the run: a rank-8 adapter on every projection.
    auto open = fine_tuning.trainingRunRequest();
    open.setRequestJson(json{{"name", name}, {"rank", 8}, {"alpha", 16}, {"seed", seed}}.dump());
    auto opened = open.send().wait(ws);
    const json run_info = answer(opened.getResult(), "trainingRun");
    auto run = opened.getRun();
    std::fprintf(stderr, "training run for %s\n", run_info["adapter"].get<std::string>().c_str());

    // Held-out words, answered by a version: published now, the untrained
    // adapter (B = 0: the base); at the end, the trained one.
    std::vector<std::string> held_out;
    std::mt19937 other(seed + 1000);
    for (int i = 0; i < 16; ++i) held_out.push_back(random_word(other));
    auto held_out_correct = [&] {
      int correct = 0;
      for (const std::string& w : held_out) {
        auto s = run.sampleRequest();
        s.setPrompt(w);
        s.setMaxTokens(1);
        s.setTemperature(0);
        const json got = answer(s.send().wait(ws).getResult(), "sample");
        correct += got["text"].get<std::string>() == answer_of(w);
      }
      return correct;
    };
    (void)answer(run.publishRequest().send().wait(ws).getResult(), "publish");
    const int correct_before = held_out_correct();

    // The loop: a fresh batch of the rule each step, one forward/backward, one AdamW step.
    std::mt19937 rng(seed);
    double first = 0, last = 0;
    for (int step = 1; step <= steps; ++step) {
      auto fb = run.forwardBackwardRequest();
      auto examples = fb.initExamples(unsigned(batch));
      for (int i = 0; i < batch; ++i) {
        const std::string w = random_word(rng);
        examples.set(unsigned(i), json{{"prompt", w}, {"completion", answer_of(w)}}.dump());
      }
      const json loss = answer(fb.send().wait(ws).getResult(), "forwardBackward");
      auto opt = run.optimStepRequest();
      opt.setLearningRate(lr);
      opt.setMaxGradNorm(1.0);
      const json stepped = answer(opt.send().wait(ws).getResult(), "optimStep");
      if (step == 1) first = loss["loss"];
      last = loss["loss"];
      std::fprintf(stderr, "step %d loss %.4f grad_norm %.3f\n", stepped["step"].get<int>(), last,
                   stepped["grad_norm"].get<double>());
    }

    // Publish, then sample the held-out words from the version just published.
    const json published = answer(run.publishRequest().send().wait(ws).getResult(), "publish");
    const int correct = held_out_correct();
    std::printf("%s\n", json{{"loss_first", first},
                             {"loss_last", last},
                             {"steps", steps},
                             {"adapter", published["adapter"]},
                             {"held_out_correct_before", correct_before},
                             {"held_out_correct", correct},
                             {"held_out", held_out.size()}}
                            .dump()
                            .c_str());
  })) {
    std::fprintf(stderr, "training-loop: the node at %s: %s\n", server.c_str(), e->getDescription().cStr());
    return 1;
  }
  return 0;
}
