// Fine-tuning jobs through a real myriad-node's HTTP API (OpenAI's shape),
// driven with curl: a training file uploaded, a job that trains beside
// inference and publishes versions that answer at once, its events,
// checkpoints and loss curve, cancel, bad input, tenant isolation, and a
// node killed with SIGKILL mid-job that resumes it to the same final loss
// as an uninterrupted run.
#include <capnp/ez-rpc.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "node_process.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "schema/api.capnp.h"

namespace myriad::testing_cli {
namespace {

using json = nlohmann::json;

// The rule the finetune CLI tests use: a lowercase word's answer is its last letter upper-cased.
std::string write_task(const std::string& path, int seed, int n) {
  std::ofstream f(path);
  uint32_t x = uint32_t(seed) * 2654435761u + 1;
  for (int i = 0; i < n; ++i) {
    std::string p;
    for (int k = 0; k < 3; ++k) {
      x = x * 1664525u + 1013904223u;
      p += char('a' + (x >> 24) % 26);
    }
    f << json{{"prompt", p}, {"completion", std::string(1, char(p.back() - 'a' + 'A'))}}.dump() << "\n";
  }
  return path;
}

std::string upload(Node& node, const std::string& file, const std::string& key = "") {
  const std::string auth = key.empty() ? "" : " -H 'Authorization: Bearer " + key + "'";
  return sh("curl -s -w ' HTTP%{http_code}'" + auth + " -F purpose=fine-tune -F file=@" + file + " " + node.url() +
            "/v1/files");
}

json get(Node& node, const std::string& path, const std::string& key = "") {
  const std::string auth = key.empty() ? "" : " -H 'Authorization: Bearer " + key + "'";
  return body_of(sh("curl -s -w ' HTTP%{http_code}'" + auth + " '" + node.url() + path + "'"));
}

// Polls the job until it leaves queued/running (or 120 s pass).
json wait_done(Node& node, const std::string& id) {
  json job;
  for (int i = 0; i < 1200; ++i) {
    job = get(node, "/v1/fine_tuning/jobs/" + id);
    const std::string st = job.value("status", "");
    if (st != "queued" && st != "running") return job;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return job;
}

TEST(NodeFineTuning, AJobTrainsPublishesVersionsThatAnswerAndKeepsItsEventsAndCurve) {
  Node node({"--publish-every", "5"});
  const std::string train = write_task(node.dir() + "/train.jsonl", 1, 24);
  std::string r = upload(node, train);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const json file = body_of(r);
  EXPECT_EQ(file["object"], "file");
  EXPECT_EQ(file["purpose"], "fine-tune");
  EXPECT_EQ(file["myriad"]["examples"], 24);
  const std::string file_id = file["id"];
  EXPECT_EQ(get(node, "/v1/files")["data"][0]["id"], file_id);
  EXPECT_EQ(sh("curl -s " + node.url() + "/v1/files/" + file_id + "/content").size(),
            size_t(file["bytes"].get<int64_t>()));

  r = node.post("/v1/fine_tuning/jobs",
                json{{"model", "tiny"},
                     {"training_file", file_id},
                     {"suffix", "caps"},
                     {"seed", 3},
                     {"hyperparameters", {{"steps", 12}, {"learning_rate", 1e-2}, {"batch_tokens", 64}, {"rank", 4}}}}
                    .dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const json created = body_of(r);
  EXPECT_EQ(created["object"], "fine_tuning.job");
  EXPECT_TRUE(created["status"] == "queued" || created["status"] == "running") << created;
  EXPECT_EQ(created["myriad"]["total_steps"], 12);
  const std::string id = created["id"];

  const json done = wait_done(node, id);
  ASSERT_EQ(done["status"], "succeeded") << done.dump(1) << slurp(node.dir() + "/node.err");
  EXPECT_EQ(done["fine_tuned_model"], "default/caps");
  EXPECT_GT(done["trained_tokens"].get<int64_t>(), 0);
  EXPECT_EQ(done["myriad"]["step"], 12);
  EXPECT_TRUE(done["finished_at"].is_number());
  // Versions at steps 5, 10 and the last, 12; newest first, as OpenAI lists checkpoints.
  ASSERT_EQ(done["myriad"]["versions"], json({"default/caps@1", "default/caps@2", "default/caps@3"})) << done;
  const json ckpts = get(node, "/v1/fine_tuning/jobs/" + id + "/checkpoints");
  ASSERT_EQ(ckpts["data"].size(), 3u) << ckpts;
  EXPECT_EQ(ckpts["data"][0]["fine_tuned_model_checkpoint"], "default/caps@3");
  EXPECT_EQ(ckpts["data"][0]["step_number"], 12);
  EXPECT_EQ(ckpts["data"][2]["step_number"], 5);

  // Events, newest first: the end, the last version, a metrics event per step.
  const json events = get(node, "/v1/fine_tuning/jobs/" + id + "/events?limit=100");
  ASSERT_GE(events["data"].size(), 12u + 3u + 3u) << events;
  EXPECT_EQ(events["data"][0]["message"], "The job has successfully completed");
  int metrics = 0;
  for (const json& e : events["data"])
    if (e["type"] == "metrics") {
      ++metrics;
      EXPECT_TRUE(e["data"]["train_loss"].is_number()) << e;
      EXPECT_GT(e["data"]["tokens_per_second"].get<double>(), 0) << e;
    }
  EXPECT_EQ(metrics, 12);
  // Paging: limit and after.
  const json first = get(node, "/v1/fine_tuning/jobs/" + id + "/events?limit=2");
  ASSERT_EQ(first["data"].size(), 2u);
  EXPECT_TRUE(first["has_more"].get<bool>());
  const json next = get(node, "/v1/fine_tuning/jobs/" + id + "/events?limit=1&after=" +
                                  first["data"][1]["id"].get<std::string>());
  EXPECT_EQ(next["data"][0]["id"], events["data"][2]["id"]);

  // The loss curve: a CSV row per step and a chart; the loss went down.
  const std::string csv = sh("curl -s " + node.url() + "/v1/fine_tuning/jobs/" + id + "/loss.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 13) << csv;
  EXPECT_EQ(sh("curl -s " + node.url() + "/v1/fine_tuning/jobs/" + id + "/loss.svg").rfind("<svg", 0), 0u);
  double first_loss = 0;
  for (const json& e : events["data"])
    if (e["type"] == "metrics" && e["data"]["step"] == 1) first_loss = e["data"]["train_loss"];
  EXPECT_LT(done["myriad"]["train_loss"].get<double>(), first_loss);

  // Each version answers, by its own name and as the adapter's newest.
  for (const std::string model : {"caps", "default/caps@1", "default/caps@latest"}) {
    r = node.post("/v1/completions", json{{"model", model}, {"prompt", "abc"}, {"max_tokens", 2}}.dump());
    EXPECT_NE(r.find("HTTP200"), std::string::npos) << model << ": " << r;
  }
  EXPECT_EQ(get(node, "/v1/fine_tuning/jobs")["data"][0]["id"], id);
  // /metrics counts the jobs and what they trained.
  const std::string prom = sh("curl -s " + node.url() + "/metrics");
  EXPECT_NE(prom.find("myriad_fine_tuning_jobs{status=\"succeeded\"} 1\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("myriad_fine_tuning_jobs{status=\"running\"} 0\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("myriad_fine_tuning_steps_total 12\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("myriad_fine_tuning_versions_total 3\n"), std::string::npos) << prom;
  EXPECT_NE(prom.find("myriad_fine_tuning_trained_tokens_total " + std::to_string(done["trained_tokens"].get<int64_t>()) + "\n"),
            std::string::npos) << prom;
  // A file a job trains on cannot be deleted while it runs; after, it can.
  r = sh("curl -s -w ' HTTP%{http_code}' -X DELETE " + node.url() + "/v1/files/" + file_id);
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
}

TEST(NodeFineTuning, AValidationFileGivesEachVersionAnEvalLoss) {
  Node node({"--publish-every", "6"});
  const json train = body_of(upload(node, write_task(node.dir() + "/train.jsonl", 1, 24)));
  const json valid = body_of(upload(node, write_task(node.dir() + "/valid.jsonl", 2, 8)));
  ASSERT_TRUE(train.contains("id") && valid.contains("id")) << train << valid;
  const std::string r = node.post(
      "/v1/fine_tuning/jobs",
      json{{"model", "tiny"}, {"training_file", train["id"]}, {"validation_file", valid["id"]}, {"seed", 3},
           {"hyperparameters", {{"steps", 12}, {"learning_rate", 1e-2}, {"batch_tokens", 64}, {"rank", 4}}}}
          .dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string id = body_of(r)["id"];
  const json done = wait_done(node, id);
  ASSERT_EQ(done["status"], "succeeded") << done.dump(1);
  EXPECT_EQ(done["validation_file"], valid["id"]);
  // One eval loss per version (steps 6 and 12), and it fell: the rule generalizes.
  const json ckpts = get(node, "/v1/fine_tuning/jobs/" + id + "/checkpoints");
  ASSERT_EQ(ckpts["data"].size(), 2u) << ckpts;
  const double last = ckpts["data"][0]["metrics"]["valid_loss"], first = ckpts["data"][1]["metrics"]["valid_loss"];
  EXPECT_GT(first, 0.0);
  EXPECT_LT(last, first);
  EXPECT_EQ(done["myriad"]["valid_loss"].get<double>(), last);
  // The CSV gains an eval_loss column, filled on the versions' steps only.
  const std::string csv = sh("curl -s " + node.url() + "/v1/fine_tuning/jobs/" + id + "/loss.csv");
  std::istringstream lines(csv);
  std::string line;
  std::getline(lines, line);
  EXPECT_EQ(line, "step,loss,lr,grad_norm,tokens,target_tokens,eval_loss");
  int filled = 0;
  while (std::getline(lines, line)) {
    const std::string eval = line.substr(line.rfind(',') + 1);
    const std::string step = line.substr(0, line.find(','));
    EXPECT_EQ(!eval.empty(), step == "6" || step == "12") << line;
    filled += !eval.empty();
  }
  EXPECT_EQ(filled, 2);
}

// Polls a mixture build until it leaves "training" (or 300 s pass).
json wait_build(Node& node, const std::string& id) {
  json b;
  for (int i = 0; i < 3000; ++i) {
    b = get(node, "/v1/mixture_builds/" + id);
    if (b.value("status", "") != "training") return b;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return b;
}

TEST(NodeFineTuning, AMixtureBuiltFromAnUploadedCorpusRoutesEachDomainToTheExpertItTrained) {
  Node node({});
  const auto corpus = moe::synthetic_corpus(20, 5);
  std::vector<int32_t> domains;
  {
    std::ofstream f(node.dir() + "/corpus.jsonl");
    for (const auto& l : corpus) {
      f << json{{"text", l.text}}.dump() << "\n";
      domains.push_back(l.domain);
    }
  }
  std::string r = upload(node, node.dir() + "/corpus.jsonl");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string file_id = body_of(r)["id"];
  const json hyper = {{"steps", 10}, {"learning_rate", 1e-2}, {"batch_tokens", 256}, {"rank", 8}};
  const size_t jobs_before = get(node, "/v1/fine_tuning/jobs?limit=100")["data"].size();
  {
    std::ofstream f(node.dir() + "/small.jsonl");
    for (int i = 0; i < 3; ++i) f << json{{"text", corpus[size_t(i)].text}}.dump() << "\n";
  }
  const std::string small_id = body_of(upload(node, node.dir() + "/small.jsonl"))["id"];

  // Bad requests answer at once, naming the field, and make nothing.
  struct Bad {
    json body;
    std::string expect;
  } bad[] = {
      {{{"name", "desk"}, {"training_file", file_id}, {"k", 0}}, "k: required"},
      {{{"name", "desk"}, {"training_file", small_id}, {"k", 4}}, "k must be in [1, 3]"},
      {{{"name", "desk"}, {"training_file", "file-nope"}, {"k", 2}}, "training_file: "},
      {{{"name", "desk"}, {"training_file", file_id}, {"k", 2}, {"top_k", 3}}, "top_k: expected an integer in [1, 2]"},
      {{{"name", "other/desk"}, {"training_file", file_id}, {"k", 2}}, "own tenant"},
      {{{"name", "desk"}, {"training_file", file_id}, {"k", 2}, {"hyperparameters", {{"steps", -1}}}},
       "hyperparameters.steps"},
  };
  for (const Bad& b : bad) {
    r = node.post("/v1/mixtures", b.body.dump());
    EXPECT_NE(r.find("HTTP400"), std::string::npos) << b.body << " -> " << r;
    EXPECT_NE(r.find(b.expect), std::string::npos) << b.body << " -> " << r;
  }
  const std::string qa = write_task(node.dir() + "/qa.jsonl", 1, 4);  // prompt/completion lines: no "text"
  const std::string qa_id = body_of(upload(node, qa))["id"];
  r = node.post("/v1/mixtures", json{{"name", "desk"}, {"training_file", qa_id}, {"k", 2}}.dump());
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find(qa_id + ":1: needs a non-empty \\\"text\\\" string"), std::string::npos) << r;
  EXPECT_EQ(get(node, "/v1/fine_tuning/jobs?limit=100")["data"].size(), jobs_before);
  EXPECT_EQ(get(node, "/v1/mixture_builds")["data"].size(), 0u);

  // The build: clusters at once (the domains, unlabelled), then one job per cluster.
  r = node.post("/v1/mixtures", json{{"name", "desk"}, {"training_file", file_id}, {"k", 4}, {"seed", 1},
                                     {"hyperparameters", hyper}}.dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const json created = body_of(r);
  EXPECT_EQ(created["object"], "mixture.build");
  EXPECT_EQ(created["status"], "training");
  EXPECT_EQ(created["name"], "default/desk");
  EXPECT_EQ(created["lines"], 80);
  ASSERT_EQ(created["clusters"].size(), 4u) << created;
  int64_t lines = 0;
  for (const json& c : created["clusters"]) {
    lines += c["lines"].get<int64_t>();
    EXPECT_FALSE(c["terms"].empty()) << c;
    EXPECT_EQ(c["samples"].size(), 3u) << c;
    EXPECT_EQ(c["total_steps"], 10) << c;
  }
  EXPECT_EQ(lines, 80);
  const std::string id = created["id"];
  const json assignments = get(node, "/v1/mixture_builds/" + id + "/assignments");
  ASSERT_EQ(assignments.size(), domains.size()) << assignments;
  const double ari = moe::adjusted_rand_index(domains, assignments.get<std::vector<int32_t>>());
  EXPECT_GE(ari, 0.9) << "adjusted Rand index of the clusters against the hidden domains";

  const json done = wait_build(node, id);
  ASSERT_EQ(done["status"], "succeeded") << done.dump(1) << slurp(node.dir() + "/node.err");
  EXPECT_EQ(done["mixture"], "default/desk");
  EXPECT_EQ(done["progress"]["step"], 40);
  EXPECT_EQ(done["progress"]["total_steps"], 40);
  ASSERT_EQ(done["experts"].size(), 4u);
  EXPECT_EQ(done["experts"][0], "default/desk.expert-0@1") << done;
  r = sh("curl -s " + node.url() + "/v1/mixtures");
  EXPECT_NE(r.find("\"default/desk\""), std::string::npos) << r;

  // Each domain's prompt goes to one expert, whose output is what that
  // expert's adapter gives when named directly.
  std::set<std::string> chosen;
  for (const std::string prompt : {"KYC CHECK | client_id=482913 | document=passport | sanctions_screen=",
                                   "Section 12.3 Policy summary: the Licensee shall indemnify and hold harmless any"}) {
    r = node.post("/v1/completions",
                  json{{"model", "desk"}, {"prompt", prompt}, {"max_tokens", 6}, {"temperature", 0}}.dump());
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    const json got = body_of(r);
    ASSERT_EQ(got["experts"].size(), 1u) << r;
    const std::string expert = got["experts"][0]["name"];
    chosen.insert(expert);
    r = node.post("/v1/completions", json{{"model", "desk." + expert}, {"prompt", prompt}, {"max_tokens", 6},
                                          {"temperature", 0}}.dump());
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    EXPECT_EQ(body_of(r)["choices"][0]["text"], got["choices"][0]["text"]) << expert;
  }
  EXPECT_EQ(chosen.size(), 2u);

  // A name that is an adapter's cannot be a mixture's; a build cancelled
  // mid-training cancels its jobs and stores nothing.
  r = node.post("/v1/mixtures", json{{"name", "desk.expert-0"}, {"training_file", file_id}, {"k", 2}}.dump());
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("is an adapter"), std::string::npos) << r;
  r = node.post("/v1/mixtures", json{{"name", "slow"}, {"training_file", file_id}, {"k", 2},
                                     {"hyperparameters", {{"steps", 100000}, {"batch_tokens", 64}}}}.dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const json slow = body_of(r);
  r = node.post("/v1/mixture_builds/" + slow["id"].get<std::string>() + "/cancel", "");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["status"], "cancelled");
  for (const json& c : slow["clusters"])
    EXPECT_EQ(wait_done(node, c["job"])["status"], "cancelled") << c;
  r = node.post("/v1/completions", R"({"model": "slow", "prompt": "hi", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
  EXPECT_EQ(get(node, "/v1/mixture_builds")["data"].size(), 2u);
}

TEST(NodeFineTuning, CancelStopsAJobAndBadInputIsAClearErrorThatChangesNothing) {
  Node node({});
  const std::string train = write_task(node.dir() + "/train.jsonl", 2, 16);
  const json file = body_of(upload(node, train));
  const std::string file_id = file["id"];
  std::string r = node.post(
      "/v1/fine_tuning/jobs",
      json{{"model", "tiny"}, {"training_file", file_id}, {"hyperparameters", {{"steps", 100000}}}}.dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string id = body_of(r)["id"];
  // In use: the file stays.
  r = sh("curl -s -w ' HTTP%{http_code}' -X DELETE " + node.url() + "/v1/files/" + file_id);
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("in use by " + id), std::string::npos) << r;
  // Inference goes on beside the training job, and the job's adapter answers
  // while it trains: its name is its newest version.
  r = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hello", "max_tokens": 4})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  json running;
  for (int i = 0; i < 500; ++i) {
    running = get(node, "/v1/fine_tuning/jobs/" + id);
    if (running["myriad"]["versions"].size() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(running["status"], "running") << running;
  ASSERT_GE(running["myriad"]["versions"].size(), 2u) << running;
  r = node.post("/v1/completions",
                json{{"model", running["fine_tuned_model"]}, {"prompt", "abc"}, {"max_tokens", 2}}.dump());
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["model"], running["fine_tuned_model"]) << r;
  r = node.post("/v1/fine_tuning/jobs/" + id + "/cancel", "");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["status"], "cancelled");
  EXPECT_EQ(get(node, "/v1/fine_tuning/jobs/" + id)["status"], "cancelled");
  // (A version being published as the cancel came is still announced after it.)
  const json events = get(node, "/v1/fine_tuning/jobs/" + id + "/events?limit=3");
  bool cancelled = false;
  for (const json& e : events["data"])
    cancelled = cancelled || e["message"].get<std::string>().find("cancelled at step") != std::string::npos;
  EXPECT_TRUE(cancelled) << events;

  // Bad files: the line at fault is named, nothing is kept.
  {
    std::ofstream f(node.dir() + "/bad.jsonl");
    f << json{{"prompt", "ab"}, {"completion", "B"}}.dump() << "\n{\"prompt\": \"x\"}\n";
  }
  r = upload(node, node.dir() + "/bad.jsonl");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("bad.jsonl:2"), std::string::npos) << r;
  r = sh("curl -s -w ' HTTP%{http_code}' -F purpose=assistants -F file=@" + train + " " + node.url() + "/v1/files");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("purpose"), std::string::npos) << r;
  EXPECT_EQ(get(node, "/v1/files")["data"].size(), 1u);
  // Bad jobs: each names its field.
  const std::vector<std::pair<json, std::string>> bad = {
      {json{{"model", "other"}, {"training_file", file_id}}, "model"},
      {json{{"model", "tiny"}, {"training_file", "file-nope"}}, "training_file"},
      {json{{"model", "tiny"}}, "training_file"},
      {json{{"model", "tiny"}, {"training_file", file_id}, {"hyperparameters", {{"n_epochs", -1}}}}, "n_epochs"},
      {json{{"model", "tiny"}, {"training_file", file_id}, {"hyperparameters", {{"flux", 1}}}}, "flux"},
      {json{{"model", "tiny"}, {"training_file", file_id}, {"hyperparameters", {{"targets", {"qq_proj"}}}}},
       "qq_proj"},
      {json{{"model", "tiny"}, {"training_file", file_id}, {"method", {{"type", "dpo"}}}}, "supervised"},
      {json{{"model", "tiny"}, {"training_file", file_id}, {"suffix", "no/slash"}}, "suffix"}};
  for (const auto& [body, names] : bad) {
    r = node.post("/v1/fine_tuning/jobs", body.dump());
    EXPECT_NE(r.find("HTTP400"), std::string::npos) << body << " -> " << r;
    EXPECT_NE(r.find(names), std::string::npos) << body << " -> " << r;
  }
  EXPECT_EQ(get(node, "/v1/fine_tuning/jobs")["data"].size(), 1u);
  r = sh("curl -s -w ' HTTP%{http_code}' " + node.url() + "/v1/fine_tuning/jobs/ftjob-nope");
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
}

TEST(NodeFineTuning, ATenantSeesAndUsesOnlyItsOwnFilesAndJobs) {
  Node probe({});  // for a folder with the tiny model
  probe.keep();
  const std::string dir = probe.dir();
  probe.kill_now();
  std::ofstream(dir + "/keys.json") << R"({"ka": "acme", "kb": "blue", "kadmin": {"tenant": "ops", "admin": true}})";
  Node node({"--api-keys", dir + "/keys.json"}, dir);
  const std::string train = write_task(dir + "/train.jsonl", 4, 8);
  std::string r = upload(node, train, "ka");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string file_id = body_of(r)["id"];
  EXPECT_NE(sh("curl -s -w ' HTTP%{http_code}' -H 'Authorization: Bearer kb' " + node.url() + "/v1/files/" + file_id)
                .find("HTTP404"),
            std::string::npos);
  EXPECT_EQ(get(node, "/v1/files", "kb")["data"].size(), 0u);
  EXPECT_EQ(get(node, "/v1/files", "kadmin")["data"].size(), 1u);
  const std::string job = json{{"model", "tiny"}, {"training_file", file_id}, {"hyperparameters", {{"steps", 2}}}}.dump();
  r = node.post("/v1/fine_tuning/jobs", job, "-H 'Authorization: Bearer kb'");
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  r = node.post("/v1/fine_tuning/jobs", job, "-H 'Authorization: Bearer ka'");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string id = body_of(r)["id"];
  r = sh("curl -s -w ' HTTP%{http_code}' -H 'Authorization: Bearer kb' " + node.url() + "/v1/fine_tuning/jobs/" + id);
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
  r = sh("curl -s -w ' HTTP%{http_code}' -X POST -H 'Authorization: Bearer kb' " + node.url() +
         "/v1/fine_tuning/jobs/" + id + "/cancel");
  EXPECT_NE(r.find("HTTP404"), std::string::npos) << r;
  EXPECT_EQ(get(node, "/v1/fine_tuning/jobs", "kb")["data"].size(), 0u);
  r = sh("curl -s -w ' HTTP%{http_code}' " + node.url() + "/v1/fine_tuning/jobs");
  EXPECT_NE(r.find("HTTP401"), std::string::npos) << r;
}

TEST(NodeFineTuning, ANodeKilledMidJobResumesItToTheSameFinalLoss) {
  const json hp = {{"steps", 200}, {"learning_rate", 5e-3}, {"batch_tokens", 64}, {"rank", 4}};
  auto job_body = [&](const std::string& file_id) {
    return json{{"model", "tiny"}, {"training_file", file_id}, {"seed", 11}, {"hyperparameters", hp}}.dump();
  };
  // Uninterrupted.
  double expected = 0;
  {
    Node node({"--publish-every", "5"});
    const json file = body_of(upload(node, write_task(node.dir() + "/train.jsonl", 5, 20)));
    const std::string id = body_of(node.post("/v1/fine_tuning/jobs", job_body(file["id"])))["id"];
    const json done = wait_done(node, id);
    ASSERT_EQ(done["status"], "succeeded") << done;
    expected = done["myriad"]["train_loss"];
  }
  // Killed with SIGKILL once a version is out, then restarted over the same --data.
  Node first({"--publish-every", "5"});
  first.keep();
  const std::string dir = first.dir();
  const json file = body_of(upload(first, write_task(dir + "/train.jsonl", 5, 20)));
  const std::string id = body_of(first.post("/v1/fine_tuning/jobs", job_body(file["id"])))["id"];
  json seen;
  for (int i = 0; i < 600; ++i) {
    seen = get(first, "/v1/fine_tuning/jobs/" + id);
    if (!seen["myriad"]["versions"].empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_FALSE(seen["myriad"]["versions"].empty()) << seen;
  first.kill_now();
  Node second({"--publish-every", "5"}, dir);
  const json done = wait_done(second, id);
  ASSERT_EQ(done["status"], "succeeded") << done.dump(1) << slurp(dir + "/node.err");
  EXPECT_EQ(done["myriad"]["step"], 200);
  // One thread, the same seed and data: the resumed run is the uninterrupted one.
  EXPECT_NEAR(done["myriad"]["train_loss"].get<double>(), expected, 1e-6 + 1e-5 * std::abs(expected));
  const json events = get(second, "/v1/fine_tuning/jobs/" + id + "/events?limit=1000");
  bool resumed = false;
  for (const json& e : events["data"])
    resumed = resumed || e["message"].get<std::string>().find("resumed at step") != std::string::npos;
  EXPECT_TRUE(resumed) << events;
  // Its versions keep counting: the newest answers.
  const std::string r =
      second.post("/v1/completions", json{{"model", done["fine_tuned_model"]}, {"prompt", "abc"}, {"max_tokens", 2}}.dump());
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  second.kill_now();  // before its folder goes
  fs::remove_all(dir);
}

TEST(NodeFineTuning, AMixtureBuildOfANodeKilledMidTrainingEndsAfterTheRestart) {
  Node first({"--publish-every", "5"});
  first.keep();
  const std::string dir = first.dir();
  {
    std::ofstream f(dir + "/corpus.jsonl");
    for (const auto& l : moe::synthetic_corpus(10, 3)) f << json{{"text", l.text}}.dump() << "\n";
  }
  const std::string file_id = body_of(upload(first, dir + "/corpus.jsonl"))["id"];
  std::string r = first.post("/v1/mixtures", json{{"name", "desk"}, {"training_file", file_id}, {"k", 2},
                                                  {"hyperparameters", {{"steps", 200}, {"batch_tokens", 64}, {"rank", 4}}}}
                                                 .dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string id = body_of(r)["id"];
  json seen;
  for (int i = 0; i < 600; ++i) {
    seen = get(first, "/v1/mixture_builds/" + id);
    if (seen["progress"]["step"].get<int64_t>() >= 10) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(seen["status"], "training") << seen;
  first.kill_now();
  Node second({"--publish-every", "5"}, dir);
  const json done = wait_build(second, id);
  ASSERT_EQ(done["status"], "succeeded") << done.dump(1) << slurp(dir + "/node.err");
  EXPECT_EQ(done["progress"]["step"], 400);
  r = second.post("/v1/completions", R"({"model": "desk", "prompt": "KYC CHECK | client_id=1", "max_tokens": 2})");
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("\"experts\""), std::string::npos) << r;
  second.kill_now();
  fs::remove_all(dir);
}

#ifdef MYRIAD_TRAINING_LOOP
// A JsonResult's answer, or {"error": code name, "message"}.
json json_of(myriad::schema::api::JsonResult::Reader r) {
  if (r.isError()) return {{"error", int(r.getError().getCode())}, {"message", r.getError().getMessage().cStr()}};
  return json::parse(r.getJson().cStr());
}

TEST(NodeFineTuning, ATrainingRunDrivenOverRpcLearnsPublishesAndSamplesItsNewestVersion) {
  namespace api = myriad::schema::api;
  // A tiny model wide enough to learn a rule (tests/training_task.h says why).
  const std::string dir = (fs::temp_directory_path() / ("myriad-training-run-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 11 --dtype f32 --init-std 0.08 --out " + dir + "/tiny").code, 0);
  Node node({}, dir);
  // The docs' example client: its own loop of forwardBackward + optimStep,
  // then publish and sample held-out words it never trained on.
  const auto out = run_process(std::string(MYRIAD_TRAINING_LOOP) + " --server " + node.rpc() + " --name letters 2>&1");
  ASSERT_EQ(out.code, 0) << out.out << slurp(dir + "/node.err");
  const json summary = json::parse(out.out.substr(out.out.rfind('{')));
  std::printf("[ example  ] %s\n", summary.dump().c_str());
  EXPECT_EQ(summary["adapter"], "default/letters@2") << summary;
  EXPECT_LE(summary["held_out_correct_before"].get<int>(), 3) << summary;  // chance: 1 in 26
  EXPECT_GE(summary["held_out_correct"].get<int>(), 13) << summary;       // at least 80% of 16
  EXPECT_LT(summary["loss_last"].get<double>(), 0.5 * summary["loss_first"].get<double>()) << summary;

  capnp::EzRpcClient client(node.rpc());
  auto& ws = client.getWaitScope();
  auto ft = client.getMain<api::Myriad>().fineTuningRequest().send().wait(ws).getFineTuning();
  auto open = [&](const json& request) {
    auto req = ft.trainingRunRequest();
    req.setRequestJson(request.dump());
    return req.send().wait(ws);
  };
  auto fb = [&](api::TrainingRun::Client& run, const std::vector<std::string>& examples) {
    auto req = run.forwardBackwardRequest();
    auto list = req.initExamples(unsigned(examples.size()));
    for (size_t i = 0; i < examples.size(); ++i) list.set(unsigned(i), examples[i]);
    return json_of(req.send().wait(ws).getResult());
  };
  auto step = [&](api::TrainingRun::Client& run, double lr) {
    auto req = run.optimStepRequest();
    req.setLearningRate(lr);
    return json_of(req.send().wait(ws).getResult());
  };
  auto sample = [&](api::TrainingRun::Client& run, const std::string& prompt) {
    auto req = run.sampleRequest();
    req.setPrompt(prompt);
    req.setMaxTokens(4);
    return json_of(req.send().wait(ws).getResult());
  };
  const std::vector<std::string> batch = {json{{"prompt", "abc ->"}, {"completion", " C"}}.dump(),
                                          json{{"text", "the quick brown fox"}}.dump()};

  // Bad requests are errors naming what is wrong, and change nothing.
  EXPECT_NE(json_of(open({{"rank", 4}}).getResult()).value("message", "").find("name: required"), std::string::npos);
  EXPECT_NE(json_of(open({{"name", "x"}, {"rank", 0}}).getResult()).value("message", "").find("rank"),
            std::string::npos);
  auto opened = open({{"name", "probe"}, {"rank", 4}, {"seed", 3}});
  ASSERT_FALSE(opened.getResult().isError());
  EXPECT_EQ(json_of(opened.getResult())["adapter"], "default/probe");
  auto run = opened.getRun();
  EXPECT_NE(step(run, 0.01).value("message", "").find("no forward_backward"), std::string::npos);
  EXPECT_NE(sample(run, "abc ->").value("message", "").find("nothing published yet"), std::string::npos);
  EXPECT_NE(fb(run, {batch[0], "{\"prompt\": 1}"}).value("message", "").find("example 1: "), std::string::npos);
  EXPECT_NE(fb(run, {}).value("message", "").find("no examples"), std::string::npos);

  // The same seed and batches give the same losses: nothing of one run leaks into another.
  auto twin = open({{"name", "probe-twin"}, {"rank", 4}, {"seed", 3}}).getRun();
  std::vector<double> losses, twin_losses;
  for (int i = 0; i < 3; ++i) {
    const json a = fb(run, batch), b = fb(twin, batch);
    ASSERT_TRUE(a.contains("loss")) << a;
    EXPECT_EQ(a["target_tokens"], b["target_tokens"]);
    losses.push_back(a["loss"]);
    twin_losses.push_back(b["loss"]);
    EXPECT_EQ(step(run, 0.02)["step"], i + 1);
    EXPECT_EQ(step(twin, 0.02)["accumulated"], 1);
  }
  EXPECT_EQ(losses, twin_losses);
  EXPECT_LT(losses.back(), losses.front());
  // saveState: a run opened from the checkpoint has the same adapter (the same loss of a batch).
  const json saved = json_of(run.saveStateRequest().send().wait(ws).getResult());
  ASSERT_EQ(saved["step"], 3) << saved;
  auto resumed = open({{"name", "probe-resumed"}, {"from_checkpoint", saved["id"]}});
  ASSERT_FALSE(resumed.getResult().isError()) << json_of(resumed.getResult());
  auto resumed_run = resumed.getRun();
  EXPECT_EQ(fb(resumed_run, batch)["loss"], fb(twin, batch)["loss"]);
  // Saved states are listed and deleted over RPC as over HTTP.
  const json saves = json_of(ft.listRunCheckpointsRequest().send().wait(ws).getResult());
  ASSERT_EQ(saves["data"].size(), 1u) << saves;
  EXPECT_EQ(saves["data"][0]["id"], saved["id"]);
  auto del = ft.deleteRunCheckpointRequest();
  del.setId(saved["id"].get<std::string>());
  EXPECT_EQ(json_of(del.send().wait(ws).getResult())["deleted"], true);
  EXPECT_TRUE(json_of(ft.listRunCheckpointsRequest().send().wait(ws).getResult())["data"].empty());

  // publish: the next version, which sample and the HTTP API both answer with.
  const json pub = json_of(run.publishRequest().send().wait(ws).getResult());
  ASSERT_EQ(pub["adapter"], "default/probe@1") << pub;
  EXPECT_EQ(pub["step"], 3);
  const json sampled = sample(run, "abc ->");
  ASSERT_TRUE(sampled.contains("text")) << sampled;
  EXPECT_EQ(sampled["adapter"], "default/probe@1");
  EXPECT_EQ(sampled["completion_tokens"], 4);
  const std::string r = node.post("/v1/completions", json{{"model", "default/probe@1"}, {"prompt", "abc ->"},
                                                          {"max_tokens", 4}, {"temperature", 0}}.dump());
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["choices"][0]["text"], sampled["text"]);
  // Training goes on; the next publish is version 2, and describe names it.
  (void)fb(run, batch);
  (void)step(run, 0.02);
  EXPECT_EQ(json_of(run.publishRequest().send().wait(ws).getResult())["adapter"], "default/probe@2");
  EXPECT_EQ(json_of(run.describeRequest().send().wait(ws).getResult())["published"], "default/probe@2");
  EXPECT_EQ(sample(run, "abc ->")["adapter"], "default/probe@2");
  node.kill_now();
  fs::remove_all(dir);
}
#endif

// The same loop over HTTP (/v1/training_runs, curl): a run opened by id,
// errors that name what is wrong and change nothing, two runs of one seed
// giving the same losses, a rule learnt (held-out words answered through
// /v1/completions with the published version), list, describe, close, and
// another tenant's key seeing none of it.
TEST(NodeFineTuning, ATrainingRunDrivenOverHttpLearnsAndPublishesVersionsTheCompletionsApiServes) {
  const std::string dir = (fs::temp_directory_path() / ("myriad-http-run-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 11 --dtype f32 --init-std 0.08 --out " + dir + "/tiny").code, 0);
  std::ofstream(dir + "/keys.json") << R"({"ka": "acme", "kb": "blue"})";
  Node node({"--api-keys", dir + "/keys.json"}, dir);
  const std::string ka = "-H 'Authorization: Bearer ka'", kb = "-H 'Authorization: Bearer kb'";
  auto call = [&](const std::string& path, const json& body, const std::string& key) {
    return node.post(path, body.dump(), key);
  };
  auto get_as = [&](const std::string& path, const std::string& key) {
    return sh("curl -s -w ' HTTP%{http_code}' " + key + " '" + node.url() + path + "'");
  };
  uint32_t x = 7;
  auto word = [&] {
    std::string w;
    x = x * 1664525u + 1013904223u;
    const unsigned len = 3 + (x >> 24) % 4;
    for (unsigned i = 0; i < len; ++i) {
      x = x * 1664525u + 1013904223u;
      w += char('a' + (x >> 24) % 26);
    }
    return w;
  };
  auto answer_of = [](const std::string& w) { return std::string(1, char(w.back() - 'a' + 'A')); };
  auto batch_of = [&](int n) {
    json examples = json::array();
    for (int i = 0; i < n; ++i) {
      const std::string w = word();
      examples.push_back({{"prompt", w}, {"completion", answer_of(w)}});
    }
    return json{{"examples", examples}};
  };

  // Bad requests are errors naming what is wrong.
  std::string r = call("/v1/training_runs", {{"rank", 4}}, ka);
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("name: required"), std::string::npos) << r;
  r = call("/v1/training_runs", {{"name", "letters"}, {"rank", 8}, {"alpha", 16}, {"seed", 3}}, ka);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const json opened = body_of(r);
  const std::string id = opened["id"];
  EXPECT_EQ(opened["adapter"], "acme/letters");
  EXPECT_EQ(opened["object"], "training_run");
  const std::string run = "/v1/training_runs/" + id;
  r = call(run + "/optim_step", {{"learning_rate", 0.01}}, ka);
  EXPECT_NE(r.find("no forward_backward"), std::string::npos) << r;
  r = call(run + "/forward_backward", {{"examples", {{{"prompt", "abc"}, {"completion", "C"}}, {{"prompt", 1}}}}}, ka);
  EXPECT_NE(r.find("HTTP400"), std::string::npos) << r;
  EXPECT_NE(r.find("example 1: "), std::string::npos) << r;
  r = call(run + "/forward_backward", json::object(), ka);
  EXPECT_NE(r.find("examples: required"), std::string::npos) << r;
  r = call(run + "/optim_step", json::object(), ka);
  EXPECT_NE(r.find("learning_rate: required"), std::string::npos) << r;
  // Another tenant sees nothing of it.
  EXPECT_NE(get_as(run, kb).find("HTTP404"), std::string::npos);
  EXPECT_NE(call(run + "/forward_backward", batch_of(2), kb).find("HTTP404"), std::string::npos);
  EXPECT_EQ(body_of(get_as("/v1/training_runs", kb))["data"].size(), 0u);

  // Two runs of one seed fed the same batches: the same losses.
  r = call("/v1/training_runs", {{"name", "letters-twin"}, {"rank", 8}, {"alpha", 16}, {"seed", 3}}, ka);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  const std::string twin = "/v1/training_runs/" + body_of(r)["id"].get<std::string>();
  for (int i = 0; i < 2; ++i) {
    const json b = batch_of(8);
    const json a = body_of(call(run + "/forward_backward", b, ka)), t = body_of(call(twin + "/forward_backward", b, ka));
    ASSERT_TRUE(a.contains("loss")) << a;
    EXPECT_EQ(a["loss"], t["loss"]);
    EXPECT_EQ(body_of(call(run + "/optim_step", {{"learning_rate", 0.01}}, ka))["step"], i + 1);
    EXPECT_EQ(body_of(call(twin + "/optim_step", {{"learning_rate", 0.01}}, ka))["accumulated"], 1);
  }
  EXPECT_EQ(body_of(get_as("/v1/training_runs", ka))["data"].size(), 2u);
  r = sh("curl -s -w ' HTTP%{http_code}' -X DELETE " + ka + " " + node.url() + twin);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["deleted"], true);
  EXPECT_NE(get_as(twin, ka).find("HTTP404"), std::string::npos);

  // The loop: a fresh batch of the rule each step, then publish and ask the
  // completions API about words it never trained on.
  std::vector<std::string> held_out;
  for (int i = 0; i < 16; ++i) held_out.push_back(word());
  auto held_out_correct = [&](const std::string& model) {
    int correct = 0;
    for (const std::string& w : held_out) {
      const std::string c = node.post(
          "/v1/completions", json{{"model", model}, {"prompt", w}, {"max_tokens", 1}, {"temperature", 0}}.dump(), ka);
      correct += body_of(c)["choices"][0]["text"] == answer_of(w);
    }
    return correct;
  };
  const int correct_before = held_out_correct("tiny");  // the base
  double first = 0, last = 0;
  for (int step = 3; step <= 300; ++step) {
    const json fb = body_of(call(run + "/forward_backward", batch_of(32), ka));
    ASSERT_TRUE(fb.contains("loss")) << fb;
    if (step == 3) first = fb["loss"];
    last = fb["loss"];
    ASSERT_EQ(body_of(call(run + "/optim_step", {{"learning_rate", 0.01}, {"max_grad_norm", 1.0}}, ka))["step"], step);
  }
  r = call(run + "/publish", json::object(), ka);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["model"], "acme/letters@1");
  EXPECT_EQ(body_of(r)["step"], 300);
  const int correct = held_out_correct("acme/letters@1");
  std::printf("[ http run ] loss %.3f -> %.3f in 300 steps; held-out %d/16 right (the base: %d)\n", first, last,
              correct, correct_before);
  EXPECT_LE(correct_before, 3);
  EXPECT_LT(last, 0.5 * first);
  EXPECT_GE(correct, 13);  // 80% of 16; chance is 1 in 26
  EXPECT_EQ(body_of(get_as(run, ka))["published"], "acme/letters@1");
  node.kill_now();
  fs::remove_all(dir);
}

// A run's saved state outlives the node: save_state, SIGKILL, restart, a run
// opened from the checkpoint gives the next batch the very loss the first
// run gave it and counts its steps on; the checkpoint is its tenant's only.
TEST(NodeFineTuning, ARunsSavedStateOutlivesTheNodeAndGoesOnExactly) {
  const std::string dir = (fs::temp_directory_path() / ("myriad-run-state-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 11 --dtype f32 --init-std 0.08 --out " + dir + "/tiny").code, 0);
  std::ofstream(dir + "/keys.json") << R"({"ka": "acme", "kb": "blue"})";
  const std::string ka = "-H 'Authorization: Bearer ka'", kb = "-H 'Authorization: Bearer kb'";
  std::vector<json> batches;
  for (int b = 0; b < 4; ++b) {
    json examples = json::array();
    for (int i = 0; i < 8; ++i) {
      std::string w;
      for (int k = 0; k < 4; ++k) w += char('a' + (b * 7 + i * 5 + k * 3) % 26);
      examples.push_back({{"prompt", w}, {"completion", std::string(1, char(w.back() - 'a' + 'A'))}});
    }
    batches.push_back({{"examples", examples}});
  }
  std::string ckpt;
  json next_loss, loss_after_step;
  {
    Node node({"--api-keys", dir + "/keys.json"}, dir);
    std::string r = node.post("/v1/training_runs", json{{"name", "carry"}, {"rank", 4}, {"seed", 5}}.dump(), ka);
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    const std::string run = "/v1/training_runs/" + body_of(r)["id"].get<std::string>();
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(body_of(node.post(run + "/forward_backward", batches[size_t(i)].dump(), ka)).contains("loss"));
      ASSERT_EQ(body_of(node.post(run + "/optim_step", json{{"learning_rate", 0.02}}.dump(), ka))["step"], i + 1);
    }
    r = node.post(run + "/save_state", "{}", ka);
    ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
    const json saved = body_of(r);
    EXPECT_EQ(saved["object"], "training_run.checkpoint");
    EXPECT_EQ(saved["step"], 3);
    ckpt = saved["id"];
    next_loss = body_of(node.post(run + "/forward_backward", batches[3].dump(), ka))["loss"];
    ASSERT_TRUE(next_loss.is_number());
    // One more AdamW step: its size depends on the moments and the step count.
    ASSERT_EQ(body_of(node.post(run + "/optim_step", json{{"learning_rate", 0.02}}.dump(), ka))["step"], 4);
    loss_after_step = body_of(node.post(run + "/forward_backward", batches[0].dump(), ka))["loss"];
    node.kill_now();
  }
  Node node({"--api-keys", dir + "/keys.json"}, dir);
  auto open = [&](const json& req, const std::string& key) { return node.post("/v1/training_runs", req.dump(), key); };
  // Another tenant's checkpoint is as missing as one that never was.
  EXPECT_NE(open({{"name", "stolen"}, {"from_checkpoint", ckpt}}, kb).find("HTTP404"), std::string::npos);
  EXPECT_NE(open({{"name", "x"}, {"from_checkpoint", "ckpt-00ff"}}, ka).find("HTTP404"), std::string::npos);
  std::string r = open({{"name", "x"}, {"from_checkpoint", "../../etc/passwd"}}, ka);
  EXPECT_NE(r.find("from_checkpoint: a checkpoint id"), std::string::npos) << r;
  r = open({{"name", "x"}, {"from_checkpoint", ckpt}, {"rank", 8}}, ka);
  EXPECT_NE(r.find("rank: comes from the checkpoint"), std::string::npos) << r;
  r = open({{"name", "carry2"}, {"from_checkpoint", ckpt}}, ka);
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_EQ(body_of(r)["adapter"], "acme/carry2");
  EXPECT_EQ(body_of(r)["rank"], 4);
  const std::string run = "/v1/training_runs/" + body_of(r)["id"].get<std::string>();
  EXPECT_EQ(body_of(node.post(run + "/forward_backward", batches[3].dump(), ka))["loss"], next_loss);
  EXPECT_EQ(body_of(node.post(run + "/optim_step", json{{"learning_rate", 0.02}}.dump(), ka))["step"], 4);
  EXPECT_EQ(body_of(node.post(run + "/forward_backward", batches[0].dump(), ka))["loss"], loss_after_step);

  // The tenant lists its saved states and deletes them; another sees none of them.
  const json listed = get(node, "/v1/training_run_checkpoints", "ka");
  ASSERT_EQ(listed["data"].size(), 1u) << listed;
  EXPECT_EQ(listed["data"][0]["id"], ckpt);
  EXPECT_EQ(listed["data"][0]["step"], 3);
  EXPECT_EQ(listed["data"][0]["adapter"], "acme/carry");
  EXPECT_GT(listed["data"][0]["created_at"].get<int64_t>(), 1700000000);
  EXPECT_TRUE(get(node, "/v1/training_run_checkpoints", "kb")["data"].empty());
  auto del = [&](const std::string& id, const std::string& key) {
    return sh("curl -s -w ' HTTP%{http_code}' -X DELETE " + key + " " + node.url() + "/v1/training_run_checkpoints/" + id);
  };
  EXPECT_NE(del(ckpt, kb).find("HTTP404"), std::string::npos);
  EXPECT_NE(del("../keys", ka).find("HTTP404"), std::string::npos);
  r = del(ckpt, ka);
  EXPECT_NE(r.find("HTTP200"), std::string::npos) << r;
  EXPECT_NE(r.find("\"deleted\":true"), std::string::npos) << r;
  EXPECT_TRUE(get(node, "/v1/training_run_checkpoints", "ka")["data"].empty());
  EXPECT_NE(open({{"name", "x"}, {"from_checkpoint", ckpt}}, ka).find("HTTP404"), std::string::npos);
  node.kill_now();
  fs::remove_all(dir);
}

TEST(NodeFineTuning, TheCliRunsJobsOverRpc) {
  Node probe({});
  probe.keep();
  const std::string dir = probe.dir();
  probe.kill_now();
  std::ofstream(dir + "/keys.json") << R"({"ka": "acme", "kb": "blue"})";
  Node node({"--api-keys", dir + "/keys.json", "--publish-every", "5"}, dir);
  const std::string server = " --server " + node.rpc();
  ASSERT_FALSE(node.rpc().empty());
  const std::string train = write_task(dir + "/train.jsonl", 6, 24);
  auto r = run_cli("jobs create" + server + " --api-key ka --model tiny --file " + train +
                   " --suffix caps --steps 12 --lr 1e-2 --batch-tokens 64 --rank 4 --seed 2 --follow",
              true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("succeeded: acme/caps"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 12/12"), std::string::npos) << r.out;  // the progress, drawn as lines off a terminal
  r = run_cli("jobs ls" + server + " --api-key ka --json");
  ASSERT_EQ(r.code, 0);
  const json jobs = json::parse(r.out);
  ASSERT_EQ(jobs.size(), 1u) << r.out;
  EXPECT_EQ(jobs[0]["myriad"]["versions"].size(), 3u);
  const std::string id = jobs[0]["id"];
  r = run_cli("jobs events" + server + " --api-key ka " + id + " --limit 2");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("The job has successfully completed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("acme/caps@3"), std::string::npos) << r.out;
  r = run_cli("jobs get" + server + " --api-key ka " + id + " --json");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out)["status"], "succeeded");
  // Another tenant sees none of it; without a key nothing answers; bad input names the field.
  r = run_cli("jobs get" + server + " --api-key kb " + id, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("notFound"), std::string::npos) << r.out;
  r = run_cli("jobs ls" + server, true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("unauthenticated"), std::string::npos) << r.out;
  r = run_cli("jobs create" + server + " --api-key kb --model tiny --file " + train + " --targets qq_proj", true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("qq_proj"), std::string::npos) << r.out;
  r = run_cli("jobs create" + server + " --api-key kb --model tiny --file " + dir + "/missing.jsonl", true);
  EXPECT_EQ(r.code, 2);
  // A long job, cancelled from the CLI.
  r = run_cli("jobs create" + server + " --api-key kb --model tiny --file " + train + " --steps 100000 --json");
  ASSERT_EQ(r.code, 0) << r.out;
  const std::string long_id = json::parse(r.out)["id"];
  r = run_cli("jobs cancel" + server + " --api-key kb " + long_id);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find(long_id + " cancelled at step"), std::string::npos) << r.out;
  // Stopped first: its publisher may still be removing a version's temporary folder.
  node.kill_now();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace myriad::testing_cli
