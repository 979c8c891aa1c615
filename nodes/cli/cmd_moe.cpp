// `myriad moe create`: embeds a corpus lexically (TF-IDF over hashed token
// n-grams; or with --embedding hidden, the base's mean hidden state after a
// layer), clusters it with k-means, trains one expert adapter per cluster
// concurrently (one JobTrainer, each cluster a job), and writes the mixture
// folder: mixture.json, assignments.json and expert-I/ PEFT folders, built in
// a temporary sibling folder and renamed into place. `myriad moe inspect`
// prints a mixture's clusters.
#include <algorithm>
#include <chrono>
#include <optional>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "output_folder.h"
#include "gpu/cpu/lora_trainer.h"
#include "runtime/atomic_file.h"
#include "runtime/checkpoint.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/moe/corpus_clusters.h"
#include "runtime/moe/hidden_embedding.h"
#include "runtime/moe/mixture.h"
#include "runtime/peft_adapter.h"
#include "runtime/step_plan.h"
#include "runtime/tokenizer.h"
#include "runtime/training/training_job.h"

namespace myriad::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int fail(const Error& e, int code) {
  std::fprintf(stderr, "myriad moe: %s\n", e.to_string().c_str());
  return code;
}

Error bad(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, what); }

// The corpus file's lines ({"text": ...} each); errors name the line.
Result<std::vector<std::string>> read_corpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, path + ": cannot open the corpus");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return moe::parse_corpus_jsonl(bytes.str(), path);
}

// The known domain of every corpus line (--labels: a JSON array of n integers).
Result<std::vector<int32_t>> read_labels(const std::string& path, int64_t n) {
  std::ifstream lf(path, std::ios::binary);
  const json labels = lf ? json::parse(lf, nullptr, /*allow_exceptions=*/false) : json();
  if (!labels.is_array() || int64_t(labels.size()) != n)
    return make_error(ErrorCode::kBadFile,
                      path + ": expected a JSON array of " + std::to_string(n) + " integers (one per corpus line)");
  std::vector<int32_t> known;
  for (const auto& v : labels) {
    if (!v.is_number_integer()) return make_error(ErrorCode::kBadFile, path + ": a label is not an integer");
    known.push_back(v.get<int32_t>());
  }
  return known;
}

// --embedding, --embedding-dim and --embedding-layer of `moe create` and `moe sweep`.
Status check_embedding_flags(const std::string& kind, int64_t dim, const std::optional<int64_t>& layer) {
  if (kind != "tfidf" && kind != "hidden") return bad("--embedding must be tfidf or hidden");
  if (layer && kind != "hidden") return bad("--embedding-layer needs --embedding hidden");
  if (dim < 16 || dim > (1 << 20)) return bad("--embedding-dim must be in [16, 1048576]");
  return ok_status();
}

// A corpus embedded as `moe create` and `moe sweep` do: TF-IDF over hashed
// token n-grams (fitted here, kept in `mixture`), or the base's mean hidden
// state after a layer. Errors name the flag or the line.
struct EmbeddedCorpus {
  std::vector<std::vector<int32_t>> docs;  // token ids without special tokens
  std::vector<float> points;               // [n, dim]
  int64_t dim = 0;
};

Result<EmbeddedCorpus> embed_corpus(const std::vector<std::string>& texts, const Tokenizer& tok, const ModelConfig& cfg,
                                    LoraTrainingBackend& backend, const std::string& kind, int64_t tfidf_dim,
                                    std::optional<int64_t> layer_flag, const std::string& corpus_path,
                                    moe::Mixture& mixture) {
  EmbeddedCorpus out;
  for (const auto& t : texts) out.docs.push_back(tok.encode(t, /*add_special_tokens=*/false));
  if (kind == "tfidf") {
    mixture.embedding_kind = moe::EmbeddingKind::kTfidf;
    mixture.embedding = moe::TfidfModel::fit(out.docs, tfidf_dim);
    out.points.reserve(out.docs.size() * size_t(tfidf_dim));
    for (const auto& d : out.docs) {
      const std::vector<float> row = mixture.embedding.embed(d);
      out.points.insert(out.points.end(), row.begin(), row.end());
    }
    out.dim = tfidf_dim;
    return out;
  }
  const int64_t layer = layer_flag.value_or(cfg.num_layers / 2);
  if (layer < 0 || layer > cfg.num_layers)
    return bad("--embedding-layer must be in [0, " + std::to_string(cfg.num_layers) + "]");
  for (size_t i = 0; i < out.docs.size(); ++i)
    if (out.docs[i].empty())
      return make_error(ErrorCode::kBadFile, corpus_path + ":" + std::to_string(i + 1) + ": no tokens to embed");
  // Each line behind the special tokens the tokenizer puts before a prompt
  // (a BOS), as a request's own prefill sees it, averaged without them.
  const std::vector<int32_t> prefix = tok.encode("", /*add_special_tokens=*/true);
  std::vector<std::vector<int32_t>> in_context;
  in_context.reserve(out.docs.size());
  for (const auto& d : out.docs) {
    in_context.push_back(prefix);
    in_context.back().insert(in_context.back().end(), d.begin(), d.end());
  }
  auto h = moe::hidden_embed(backend, cfg, in_context, int32_t(layer), 4096, int32_t(prefix.size()));
  if (!h.ok()) return h.error();
  mixture.hidden_context = int32_t(prefix.size());
  out.points = std::move(h.value());
  out.dim = cfg.hidden_size;
  mixture.embedding_kind = moe::EmbeddingKind::kHiddenMean;
  mixture.hidden_layer = int32_t(layer);
  mixture.hidden_dim = out.dim;
  return out;
}

}  // namespace

int cmd_moe_create(const MoeCreateArgs& a) {
  if (a.k < 1 || a.k > 256) return fail(bad("--k must be in [1, 256]"), 2);
  if (a.steps < 1) return fail(bad("--steps must be >= 1"), 2);
  if (a.seed < 0) return fail(bad("--seed must be >= 0"), 2);
  if (a.top_k < 1 || a.top_k > std::min<int64_t>(a.k, kMaxAdaptersPerRow))
    return fail(bad("--top-k must be in [1, min(--k, " + std::to_string(kMaxAdaptersPerRow) + ")]"), 2);
  if (!(a.temperature > 0)) return fail(bad("--temperature must be > 0"), 2);
  if (Status st = check_embedding_flags(a.embedding, a.embedding_dim, a.embedding_layer); !st.ok())
    return fail(st.error(), 2);
  auto ckpt = Checkpoint::load(a.model);
  if (!ckpt.ok()) return fail(ckpt.error(), 1);
  auto tok = Tokenizer::load(a.model);
  if (!tok.ok()) return fail(tok.error(), 1);
  auto texts = read_corpus(a.corpus);
  if (!texts.ok()) return fail(texts.error(), 1);
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& cfg = ckpt.value()->config();

  // Embed and cluster.
  const int64_t n = int64_t(texts.value().size());
  if (a.k > n) return fail(bad("--k " + std::to_string(a.k) + " exceeds the corpus's " + std::to_string(n) + " lines"), 2);
  gpu::cpu::CpuLoraTrainingBackend backend(ckpt.value(), int(a.threads));
  moe::Mixture mixture;
  mixture.base_model = a.model;
  auto embedded = embed_corpus(texts.value(), *tok.value(), cfg, backend, a.embedding, a.embedding_dim,
                               a.embedding_layer, a.corpus, mixture);
  if (!embedded.ok()) return fail(embedded.error(), embedded.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  // Experts above the routing layer leave the layers below it to the base,
  // so a request's own prefill can route it (no second pass).
  const std::string expert_layers = a.expert_layers.value_or(a.embedding == "hidden" ? "above" : "all");
  int32_t expert_first_layer = 0;
  if (expert_layers == "above") {
    if (a.embedding != "hidden") return fail(bad("--expert-layers above needs --embedding hidden"), 2);
    expert_first_layer = mixture.hidden_layer;
    if (expert_first_layer >= cfg.num_layers)
      return fail(bad("--expert-layers above leaves no layer after --embedding-layer " +
                      std::to_string(expert_first_layer) + " (give a lower layer or --expert-layers all)"),
                  2);
  } else if (expert_layers != "all") {
    return fail(bad("--expert-layers must be all or above"), 2);
  }
  const std::vector<float>& emb = embedded->points;
  const int64_t dim = embedded->dim;
  moe::KMeansOptions ko;
  ko.k = int32_t(a.k);
  ko.seed = uint64_t(a.seed);
  auto clusters = moe::kmeans(emb, n, dim, ko);
  if (!clusters.ok()) return fail(clusters.error(), 1);
  const double silhouette = moe::mean_silhouette(emb, n, dim, clusters->assignment, true);
  std::optional<double> ari;
  if (a.labels) {
    auto known = read_labels(*a.labels, n);
    if (!known.ok()) return fail(known.error(), 1);
    ari = moe::adjusted_rand_index(known.value(), clusters->assignment);
    std::fprintf(stderr, "moe create: adjusted Rand index against %s: %.3f\n", a.labels->c_str(), *ari);
  }
  std::fprintf(stderr, "moe create: %lld lines in %lld clusters (silhouette %.3f)\n", (long long)n, (long long)a.k,
               silhouette);

  // One job per cluster: language modelling on its lines (every token after the first, then EOS).
  const int32_t eos = !tok.value()->eos_ids().empty() ? tok.value()->eos_ids()[0]
                      : !cfg.eos_token_ids.empty() ? int32_t(cfg.eos_token_ids[0])
                                                   : -1;
  std::vector<std::unique_ptr<TrainingJob>> jobs;
  JobTrainer trainer(backend);
  for (int64_t c = 0; c < a.k; ++c) {
    std::vector<TrainingExample> data;
    for (int64_t i = 0; i < n; ++i)
      if (clusters->assignment[size_t(i)] == c)
        if (auto ex = text_example(texts.value()[size_t(i)], *tok.value(), eos, cfg.max_position_embeddings, i + 1))
          data.push_back(std::move(*ex));
    TrainingJobConfig jc;
    jc.targets.first_layer = expert_first_layer;
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
  mixture.cosine = true;
  mixture.centroids = clusters->centroids;
  mixture.silhouette = silhouette;
  mixture.routing.top_k = int32_t(a.top_k);
  mixture.routing.temperature = a.temperature;
  moe::describe_clusters(mixture, texts.value(), clusters->assignment, a.k);
  for (int64_t c = 0; c < a.k; ++c) {
    moe::MixtureExpert& e = mixture.experts[size_t(c)];
    if (Status st = save_peft_adapter((tmp / e.name).string(), to_lora_weights(jobs[size_t(c)]->params(), e.name), a.model);
        !st.ok())
      return fail(st.error(), 1);
    e.train_loss_first = mean_loss_first(jobs[size_t(c)]->history());
    e.train_loss_last = mean_loss_last(jobs[size_t(c)]->history());
  }
  for (const auto& [name, text] : {std::pair<std::string, std::string>{"mixture.json", mixture.to_json().dump(1, ' ', false, json::error_handler_t::replace) + "\n"},
                                   {"assignments.json", json(clusters->assignment).dump() + "\n"}})
    if (Status st = write_synced((tmp / name).string(), text); !st.ok()) return fail(st.error(), 1);
  if (Status st = move_into_place(tmp, dest); !st.ok()) return fail(st.error(), 1);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json summary = {{"out", a.out}, {"lines", n}, {"k", a.k}, {"embedding", a.embedding}, {"silhouette", silhouette},
                  {"sizes", clusters->sizes}, {"expert_layers", expert_layers},
                  {"steps", a.steps}, {"tokens", tokens}, {"seconds", secs}};
  if (ari) summary["ari"] = *ari;
  std::printf("%s\n", summary.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  return 0;
}

int cmd_moe_sweep(const MoeSweepArgs& a) {
  if (a.from < 1 || a.to < a.from || a.to > 256) return fail(bad("--from and --to must satisfy 1 <= from <= to <= 256"), 2);
  if (a.seed < 0) return fail(bad("--seed must be >= 0"), 2);
  if (Status st = check_embedding_flags(a.embedding, a.embedding_dim, a.embedding_layer); !st.ok())
    return fail(st.error(), 2);
  auto ckpt = Checkpoint::load(a.model);
  if (!ckpt.ok()) return fail(ckpt.error(), 1);
  auto tok = Tokenizer::load(a.model);
  if (!tok.ok()) return fail(tok.error(), 1);
  auto texts = read_corpus(a.corpus);
  if (!texts.ok()) return fail(texts.error(), 1);
  const int64_t n = int64_t(texts.value().size());
  if (a.to > n) return fail(bad("--to " + std::to_string(a.to) + " exceeds the corpus's " + std::to_string(n) + " lines"), 2);
  std::optional<std::vector<int32_t>> known;
  if (a.labels) {
    auto l = read_labels(*a.labels, n);
    if (!l.ok()) return fail(l.error(), 1);
    known = std::move(l.value());
  }
  gpu::cpu::CpuLoraTrainingBackend backend(ckpt.value(), int(a.threads));
  moe::Mixture unused;
  auto embedded = embed_corpus(texts.value(), *tok.value(), ckpt.value()->config(), backend, a.embedding,
                               a.embedding_dim, a.embedding_layer, a.corpus, unused);
  if (!embedded.ok()) return fail(embedded.error(), embedded.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  json rows = json::array();
  int64_t best_k = a.from;
  double best_silhouette = -2;
  if (!a.json) std::printf("| k | inertia | silhouette | sizes%s |\n|---|---|---|---%s|\n", known ? " | ARI vs --labels" : "",
                           known ? "|---" : "");
  for (int64_t k = a.from; k <= a.to; ++k) {
    moe::KMeansOptions ko;
    ko.k = int32_t(k);
    ko.seed = uint64_t(a.seed);
    auto r = moe::kmeans(embedded->points, n, embedded->dim, ko);
    if (!r.ok()) return fail(r.error(), 1);
    const double sil = moe::mean_silhouette(embedded->points, n, embedded->dim, r->assignment, true);
    json row = {{"k", k}, {"inertia", r->inertia}, {"silhouette", sil}, {"sizes", r->sizes}};
    if (known) row["ari"] = moe::adjusted_rand_index(*known, r->assignment);
    if (sil > best_silhouette) {
      best_silhouette = sil;
      best_k = k;
    }
    if (!a.json) {
      std::printf("| %lld | %.3f | %.3f | %s |", (long long)k, r->inertia, sil, json(r->sizes).dump().c_str());
      if (known) std::printf(" %.3f |", row["ari"].get<double>());
      std::printf("\n");
    }
    rows.push_back(std::move(row));
  }
  if (a.json) {
    std::printf("%s\n", json{{"lines", n}, {"embedding", a.embedding}, {"best_k", best_k}, {"rows", rows}}.dump().c_str());
  } else {
    std::printf("\nthe silhouette peaks at k = %lld\n", (long long)best_k);
  }
  return 0;
}

int cmd_moe_corpus(const MoeCorpusArgs& a) {
  if (a.per_domain < 1 || a.per_domain > 1000000) return fail(bad("--per-domain must be in [1, 1000000]"), 2);
  if (a.seed < 0) return fail(bad("--seed must be >= 0"), 2);
  const auto corpus = moe::synthetic_corpus(int32_t(a.per_domain), uint64_t(a.seed));
  std::string lines;
  std::vector<int32_t> labels;
  for (const auto& l : corpus) {
    lines += json{{"text", l.text}}.dump() + "\n";
    labels.push_back(l.domain);
  }
  if (Status st = write_file_atomically(a.out, lines); !st.ok()) return fail(st.error(), 1);
  if (a.labels)
    if (Status st = write_file_atomically(*a.labels, json(labels).dump() + "\n"); !st.ok()) return fail(st.error(), 1);
  json domains = json::array();
  for (int32_t d = 0; d < moe::kSyntheticDomains; ++d) domains.push_back(moe::synthetic_domain_name(d));
  std::printf("%s\n", json{{"out", a.out}, {"lines", corpus.size()}, {"domains", domains}}.dump().c_str());
  return 0;
}

int cmd_moe_inspect(const MoeInspectArgs& a) {
  auto m = moe::Mixture::load(a.dir);
  if (!m.ok()) {
    std::fprintf(stderr, "moe inspect: %s\n", m.error().to_string().c_str());
    return 1;
  }
  if (a.json) {
    json clusters = json::array();
    for (const auto& e : m->experts)
      clusters.push_back({{"name", e.name}, {"lines", e.lines}, {"terms", e.terms}, {"samples", e.samples},
                          {"train_loss_first", e.train_loss_first}, {"train_loss_last", e.train_loss_last}});
    const json out = {{"k", m->k()}, {"silhouette", m->silhouette}, {"embedding_dim", m->dim()},
                      {"routing", {{"top_k", m->routing.top_k}, {"temperature", m->routing.temperature}}},
                      {"clusters", clusters}};
    std::printf("%s\n", out.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("%lld experts, silhouette %.3f, TF-IDF dim %lld, routing top-%d (temperature %g)\n\n", (long long)m->k(),
              m->silhouette, (long long)m->dim(), m->routing.top_k, m->routing.temperature);
  std::printf("%-12s %6s %10s  %s\n", "expert", "lines", "loss", "frequent terms / a sample");
  for (const auto& e : m->experts) {
    std::string terms;
    for (const auto& t : e.terms) {
      if (!terms.empty()) terms += ", ";
      terms += t;
    }
    char loss[32];
    std::snprintf(loss, sizeof loss, "%.2f>%.2f", e.train_loss_first, e.train_loss_last);
    std::printf("%-12s %6lld %10s  %s\n", e.name.c_str(), (long long)e.lines, loss, terms.c_str());
    if (!e.samples.empty()) std::printf("%-12s %6s %10s  \"%s\"\n", "", "", "", e.samples[0].substr(0, 100).c_str());
  }
  return 0;
}

}  // namespace myriad::cli
