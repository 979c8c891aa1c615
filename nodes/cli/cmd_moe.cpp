// `myriad moe create`: embeds a corpus lexically (TF-IDF over hashed token
// n-grams), clusters it with k-means, trains one expert adapter per cluster
// concurrently (one JobTrainer, each cluster a job), and writes the mixture
// folder: mixture.json, assignments.json and expert-I/ PEFT folders, built in
// a temporary sibling folder and renamed into place.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "output_folder.h"
#include "gpu/cpu/lora_trainer.h"
#include "runtime/checkpoint.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/peft_adapter.h"
#include "runtime/tokenizer.h"
#include "runtime/training/training_job.h"

namespace myriad::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int fail(const Error& e, int code) {
  std::fprintf(stderr, "moe create: %s\n", e.to_string().c_str());
  return code;
}

Error bad(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, what); }

// The "text" of every non-blank line; errors name the line.
Result<std::vector<std::string>> read_corpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, path + ": cannot open the corpus");
  std::vector<std::string> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string() || j["text"].get<std::string>().empty())
      return make_error(ErrorCode::kBadFile, path + ":" + std::to_string(n) + ": needs a non-empty \"text\" string");
    out.push_back(j["text"].get<std::string>());
  }
  if (out.empty()) return make_error(ErrorCode::kBadFile, path + ": no lines");
  return out;
}

}  // namespace

int cmd_moe_create(const MoeCreateArgs& a) {
  if (a.k < 1 || a.k > 256) return fail(bad("--k must be in [1, 256]"), 2);
  if (a.steps < 1) return fail(bad("--steps must be >= 1"), 2);
  if (a.seed < 0) return fail(bad("--seed must be >= 0"), 2);
  if (a.embedding_dim < 16 || a.embedding_dim > (1 << 20)) return fail(bad("--embedding-dim must be in [16, 1048576]"), 2);
  auto ckpt = Checkpoint::load(a.model);
  if (!ckpt.ok()) return fail(ckpt.error(), 1);
  auto tok = Tokenizer::load(a.model);
  if (!tok.ok()) return fail(tok.error(), 1);
  auto texts = read_corpus(a.corpus);
  if (!texts.ok()) return fail(texts.error(), 1);
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& cfg = ckpt.value()->config();

  // Embed and cluster.
  std::vector<std::vector<int32_t>> docs;
  for (const auto& t : texts.value()) docs.push_back(tok.value()->encode(t, /*add_special_tokens=*/false));
  const int64_t n = int64_t(docs.size());
  if (a.k > n) return fail(bad("--k " + std::to_string(a.k) + " exceeds the corpus's " + std::to_string(n) + " lines"), 2);
  const std::vector<float> emb = moe::tfidf_embed(docs, a.embedding_dim);
  moe::KMeansOptions ko;
  ko.k = int32_t(a.k);
  ko.seed = uint64_t(a.seed);
  auto clusters = moe::kmeans(emb, n, a.embedding_dim, ko);
  if (!clusters.ok()) return fail(clusters.error(), 1);
  const double silhouette = moe::mean_silhouette(emb, n, a.embedding_dim, clusters->assignment, true);
  std::fprintf(stderr, "moe create: %lld lines in %lld clusters (silhouette %.3f)\n", (long long)n, (long long)a.k,
               silhouette);

  // One job per cluster: language modelling on its lines (every token after the first, then EOS).
  const int32_t eos = !tok.value()->eos_ids().empty() ? tok.value()->eos_ids()[0]
                      : !cfg.eos_token_ids.empty() ? int32_t(cfg.eos_token_ids[0])
                                                   : -1;
  std::vector<std::unique_ptr<TrainingJob>> jobs;
  gpu::cpu::CpuLoraTrainingBackend backend(ckpt.value(), int(a.threads));
  JobTrainer trainer(backend);
  for (int64_t c = 0; c < a.k; ++c) {
    std::vector<TrainingExample> data;
    for (int64_t i = 0; i < n; ++i) {
      if (clusters->assignment[size_t(i)] != c) continue;
      TrainingExample ex;
      ex.tokens = tok.value()->encode(texts.value()[size_t(i)], /*add_special_tokens=*/true);
      if (eos >= 0) ex.tokens.push_back(eos);
      if (int64_t(ex.tokens.size()) > cfg.max_position_embeddings) ex.tokens.resize(size_t(cfg.max_position_embeddings));
      ex.targets.assign(ex.tokens.size(), 1);
      ex.targets[0] = 0;
      ex.line = i + 1;
      if (ex.tokens.size() >= 2) data.push_back(std::move(ex));
    }
    TrainingJobConfig jc;
    jc.targets.rank = int32_t(a.rank);
    jc.targets.alpha = float(2 * a.rank);
    jc.adamw.lr = a.lr;
    jc.steps = a.steps;
    jc.batch_tokens = a.batch_tokens;
    jc.seed = uint64_t(a.seed) + uint64_t(c);
    auto job = TrainingJob::create("expert-" + std::to_string(c), cfg, jc, std::move(data));
    if (!job.ok()) return fail(job.error(), 2);
    trainer.add(job.value().get());
    jobs.push_back(std::move(job.value()));
  }
  int64_t tokens = 0;
  while (!trainer.idle()) {
    auto recs = trainer.round();
    if (!recs.ok()) return fail(recs.error(), 1);
    for (const auto& [job, rec] : recs.value()) {
      tokens += rec.tokens;
      if (rec.step % std::max<int64_t>(1, a.steps / 10) == 0 || rec.step == a.steps)
        std::fprintf(stderr, "%s step %lld/%lld loss %.4f\n", job->name().c_str(), (long long)rec.step,
                     (long long)a.steps, rec.loss);
    }
  }

  // The mixture folder, built beside --out and renamed into place.
  const fs::path dest = fs::absolute(a.out);
  const fs::path tmp = temp_sibling(dest);
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) return fail(make_error(ErrorCode::kIo, tmp.string() + ": " + ec.message()), 1);
  json experts = json::array(), centroids = json::array();
  for (int64_t c = 0; c < a.k; ++c) {
    const std::string name = "expert-" + std::to_string(c);
    if (Status st = save_peft_adapter((tmp / name).string(), to_lora_weights(jobs[size_t(c)]->params(), name), a.model);
        !st.ok())
      return fail(st.error(), 1);
    experts.push_back({{"name", name},
                       {"lines", clusters->sizes[size_t(c)]},
                       {"train_loss_first", mean_loss_first(jobs[size_t(c)]->history())},
                       {"train_loss_last", mean_loss_last(jobs[size_t(c)]->history())}});
    centroids.push_back(std::vector<float>(clusters->centroids.begin() + c * a.embedding_dim,
                                           clusters->centroids.begin() + (c + 1) * a.embedding_dim));
  }
  const json mixture = {{"format", "myriad-mixture-1"},
                        {"base_model", a.model},
                        {"k", a.k},
                        {"embedding", {{"kind", "tfidf-token-ngrams"}, {"dim", a.embedding_dim}, {"ngrams", 3}}},
                        {"distance", "cosine"},
                        {"routing", {{"top_k", 1}}},
                        {"silhouette", silhouette},
                        {"experts", experts},
                        {"centroids", centroids}};
  for (const auto& [name, text] : {std::pair<std::string, std::string>{"mixture.json", mixture.dump(1) + "\n"},
                                   {"assignments.json", json(clusters->assignment).dump() + "\n"}})
    if (Status st = write_synced((tmp / name).string(), text); !st.ok()) return fail(st.error(), 1);
  if (Status st = move_into_place(tmp, dest); !st.ok()) return fail(st.error(), 1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json summary = {{"out", a.out}, {"lines", n}, {"k", a.k}, {"silhouette", silhouette}, {"sizes", clusters->sizes},
                  {"steps", a.steps}, {"tokens", tokens}, {"seconds", secs}};
  std::printf("%s\n", summary.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace myriad::cli
