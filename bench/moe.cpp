// moe: does a routed mixture of experts beat one adapter trained on the
// whole corpus with the same total steps? (issue 22, c-BTM)
//
// In one run, on a random-weight base (default: llama-110m in bf16; the
// built-in byte tokenizer) and the synthetic four-domain corpus
// (runtime/moe/corpus.h; --per-domain lines of each domain to train on,
// --held-out more of each to test on, labels hidden from the clustering):
//  1. embed the training lines (TF-IDF over hashed token n-grams), cluster
//     them with k-means (--k), print the adjusted Rand index against the
//     hidden domains;
//  2. train, concurrently in one JobTrainer, one expert per cluster for
//     --steps steps each and one adapter on every training line for
//     k * --steps steps (the same total steps, tokens per step and rank);
//  3. per domain, the held-out loss (mean per target token) of the base, the
//     one adapter, and the mixture routed top-1 (each held-out line embedded
//     from its own tokens and scored under its chosen expert) and top-k
//     (--top-k, at each of --temperature T1,T2,...: scored under the weighted
//     sum of its chosen experts' deltas, what serving computes per row), and the share
//     of held-out lines routed to the cluster that holds most of their
//     domain's training lines;
//  4. what routing costs per request (embed + nearest centroids), next to a
//     prefill of the same lines through the CpuExecutor;
//  5. the other embedding: the base's mean hidden state after 0, L/2 and L
//     layers (moe/hidden_embedding.h), its clusters' adjusted Rand index and
//     what its base pass up to the layer costs a request;
//  6. what routing by the hidden state after L/2 layers costs inside the
//     request's own prefill (PrefillRouter), against that base pass.
//
// usage: moe [--model DIR] [--per-domain N] [--held-out N] [--k K] [--steps N] [--batch-tokens T]
//            [--rank R] [--lr LR] [--top-k K] [--temperature T,...] [--seed S] [--threads N] [--json]
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpu/cpu/cpu_executor.h"
#include "gpu/cpu/lora_trainer.h"
#include "greedy_decode.h"
#include "nodes/cli_app.h"
#include "runtime/checkpoint.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/model_factory.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/moe/hidden_embedding.h"
#include "runtime/moe/mixture.h"
#include "runtime/step_plan.h"
#include "runtime/tokenizer.h"
#include "runtime/training/lora_params.h"
#include "runtime/training/training_job.h"

using namespace myriad;

namespace {

struct Options {
  std::string model;
  int64_t per_domain = 48, held_out = 16, k = 4, steps = 30, batch_tokens = 512, rank = 8, seed = 1, threads = 0;
  int64_t top_k = 2;
  double lr = 2e-3;
  std::vector<double> temperatures = {0.05};
  bool json = false;
};

int fail(const std::string& what) {
  std::fprintf(stderr, "moe: %s\n", what.c_str());
  return 1;
}

struct Line {
  std::string text;
  int32_t domain = 0;
  std::vector<int32_t> ids;  // without special tokens: what routing embeds
  TrainingExample example;   // language modelling on the line
};

// Token-weighted mean loss of `lines` under `params`.
struct LossSum {
  double sum = 0;
  int64_t tokens = 0;
  double mean() const { return tokens ? sum / double(tokens) : 0.0; }
};

Result<LossSum> loss_of(JobTrainer& trainer, const LoraParams<float>& params, const std::vector<const Line*>& lines,
                        int64_t batch_tokens) {
  LossSum out;
  if (lines.empty()) return out;
  std::vector<TrainingExample> ex;
  for (const Line* l : lines) {
    ex.push_back(l->example);
    out.tokens += l->example.target_count();
  }
  auto mean = trainer.loss(params, ex, batch_tokens);
  if (!mean.ok()) return mean.error();
  out.sum = mean.value() * double(out.tokens);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("A routed mixture of experts against one adapter trained with the same total steps.", "moe");
  cli::set_conventions(app);
  app.add_option("--model", o.model, "base model folder (default: a random llama-110m in bf16)")->option_text("DIR");
  app.add_option("--per-domain", o.per_domain, "training lines per domain (default 48)")->option_text("N");
  app.add_option("--held-out", o.held_out, "held-out lines per domain (default 16)")->option_text("N");
  app.add_option("--k", o.k, "clusters = experts (default 4)")->option_text("K");
  app.add_option("--steps", o.steps, "optimizer steps per expert; the one adapter gets k times (default 30)")
      ->option_text("N");
  app.add_option("--batch-tokens", o.batch_tokens, "tokens per job per step (default 512)")->option_text("T");
  app.add_option("--rank", o.rank, "LoRA rank of every adapter (default 8)")->option_text("R");
  app.add_option("--lr", o.lr, "peak learning rate of every job (default 2e-3)")->option_text("LR");
  app.add_option("--top-k", o.top_k, "experts of the weighted mixture scored beside top-1 (default 2)")
      ->option_text("K");
  app.add_option("--temperature", o.temperatures,
                 "of the routing softmax over the top-k; several, comma-separated, each scored (default 0.05)")
      ->delimiter(',')
      ->option_text("T,...");
  app.add_option("--seed", o.seed, "corpus, clustering and training seed (default 1)")->option_text("S");
  app.add_option("--threads", o.threads, "compute threads (default: all)")->option_text("N");
  app.add_flag("--json", o.json, "print JSON instead of the table");
  CLI11_PARSE(app, argc, argv);
  if (o.k < 1 || o.per_domain < 2 || o.held_out < 1 || o.steps < 1) return fail("bad flags");
  if (o.top_k < 1 || o.top_k > std::min<int64_t>(o.k, kMaxAdaptersPerRow) || o.temperatures.empty() ||
      std::any_of(o.temperatures.begin(), o.temperatures.end(), [](double t) { return !(t > 0); }))
    return fail("--top-k must be in [1, min(k, 4)] and every --temperature > 0");
  const size_t nt = o.temperatures.size();

  std::string model = o.model;
  std::filesystem::path tmp;
  if (model.empty()) {
    tmp = std::filesystem::temp_directory_path() / ("myriad_bench_moe_" + std::to_string(getpid()));
    MakeModelOptions mo;
    mo.shape = "llama-110m";
    mo.seed = 1;
    mo.dtype = DType::kBF16;
    mo.out_dir = tmp.string();
    if (Status st = make_model(mo); !st.ok()) return fail(st.error().to_string());
    model = tmp.string();
  }
  auto ck = Checkpoint::load(model);
  if (!ck.ok()) return fail(ck.error().to_string());
  auto tok = Tokenizer::load(model);
  if (!tok.ok()) return fail(tok.error().to_string());
  const ModelConfig& cfg = ck.value()->config();
  const int32_t eos = !tok.value()->eos_ids().empty() ? tok.value()->eos_ids()[0] : -1;
  const auto t_start = std::chrono::steady_clock::now();

  // Corpus: the first per_domain lines of each domain train, the rest test.
  std::vector<Line> train, test;
  std::map<int32_t, int64_t> seen;
  for (const auto& l : moe::synthetic_corpus(int32_t(o.per_domain + o.held_out), uint64_t(o.seed))) {
    Line line{l.text, l.domain, tok.value()->encode(l.text, false), {}};
    auto ex = text_example(l.text, *tok.value(), eos, cfg.max_position_embeddings, 0);
    if (!ex) continue;
    line.example = std::move(*ex);
    (seen[l.domain]++ < o.per_domain ? train : test).push_back(std::move(line));
  }

  // 1. Embed and cluster the training lines.
  std::vector<std::vector<int32_t>> docs;
  std::vector<int32_t> hidden;
  for (const Line& l : train) {
    docs.push_back(l.ids);
    hidden.push_back(l.domain);
  }
  const int64_t dim = 1024;
  moe::Mixture mixture;
  mixture.embedding = moe::TfidfModel::fit(docs, dim);
  std::vector<float> emb;
  for (const auto& d : docs) {
    const auto row = mixture.embedding.embed(d);
    emb.insert(emb.end(), row.begin(), row.end());
  }
  moe::KMeansOptions ko;
  ko.k = int32_t(o.k);
  ko.seed = uint64_t(o.seed);
  auto km = moe::kmeans(emb, int64_t(docs.size()), dim, ko);
  if (!km.ok()) return fail(km.error().to_string());
  mixture.centroids = km->centroids;
  for (int64_t c = 0; c < o.k; ++c) mixture.experts.emplace_back().name = "expert-" + std::to_string(c);
  const double ari = moe::adjusted_rand_index(hidden, km->assignment);
  std::map<int32_t, std::map<int32_t, int64_t>> votes;
  for (size_t i = 0; i < train.size(); ++i) ++votes[train[i].domain][km->assignment[i]];
  std::map<int32_t, int32_t> cluster_of;
  for (const auto& [d, v] : votes)
    cluster_of[d] = std::max_element(v.begin(), v.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;

  // 2. k experts (steps each) and one adapter on everything (k * steps), trained together.
  gpu::cpu::CpuLoraTrainingBackend backend(ck.value(), int(o.threads));
  JobTrainer trainer(backend);
  const auto job_config = [&](int64_t steps, uint64_t seed) {
    TrainingJobConfig jc;
    jc.targets.rank = int32_t(o.rank);
    jc.targets.alpha = float(2 * o.rank);
    jc.adamw.lr = o.lr;
    jc.steps = steps;
    jc.batch_tokens = o.batch_tokens;
    jc.seed = seed;
    return jc;
  };
  std::vector<std::unique_ptr<TrainingJob>> experts;
  for (int64_t c = 0; c < o.k; ++c) {
    std::vector<TrainingExample> data;
    for (size_t i = 0; i < train.size(); ++i)
      if (km->assignment[i] == c) data.push_back(train[i].example);
    auto job = TrainingJob::create("expert-" + std::to_string(c), cfg, job_config(o.steps, uint64_t(o.seed + c)),
                                   std::move(data));
    if (!job.ok()) return fail(job.error().to_string());
    trainer.add(job.value().get());
    experts.push_back(std::move(job.value()));
  }
  std::vector<TrainingExample> all;
  for (const Line& l : train) all.push_back(l.example);
  auto whole = TrainingJob::create("whole", cfg, job_config(o.k * o.steps, uint64_t(o.seed + 100)), std::move(all));
  if (!whole.ok()) return fail(whole.error().to_string());
  trainer.add(whole.value().get());
  int64_t rounds = 0;
  while (!trainer.idle()) {
    auto recs = trainer.round();
    if (!recs.ok()) return fail(recs.error().to_string());
    if (++rounds % 10 == 0) std::fprintf(stderr, "moe: round %lld\n", (long long)rounds);
  }
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();

  // 3. Held-out loss per domain.
  const LoraParams<float> base_params = init_lora_params(cfg, experts[0]->config().targets, 0);
  std::vector<int32_t> routed(test.size());
  // [temperature][line]: each line's top-k at each temperature.
  std::vector<std::vector<std::vector<moe::ExpertChoice>>> routed_k(nt, std::vector<std::vector<moe::ExpertChoice>>(test.size()));
  double route_s = 0;
  for (size_t i = 0; i < test.size(); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = mixture.route(test[i].ids, moe::RoutingOptions{});
    route_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok()) return fail(r.error().to_string());
    routed[i] = (*r)[0].expert;
    for (size_t t = 0; t < nt; ++t) {
      auto rk = mixture.route(test[i].ids, moe::RoutingOptions{int32_t(o.top_k), o.temperatures[t]});
      if (!rk.ok()) return fail(rk.error().to_string());
      routed_k[t][i] = std::move(rk.value());
    }
  }
  std::vector<double> second_weight(nt, 0.0);  // the mean weight of the experts past the first
  for (size_t t = 0; t < nt; ++t)
    for (const auto& choices : routed_k[t])
      for (size_t c = 1; c < choices.size(); ++c) second_weight[t] += choices[c].weight / double(test.size());
  struct Row {
    std::string domain;
    int64_t lines = 0, routed_right = 0;
    double base = 0, whole = 0, mixture = 0;
    std::vector<double> mixture_k;  // per temperature
  };
  std::vector<Row> rows;
  for (int32_t d = 0; d < moe::kSyntheticDomains; ++d) {
    Row row;
    row.domain = moe::synthetic_domain_name(d);
    std::vector<const Line*> lines;
    std::vector<std::vector<const Line*>> by_expert(static_cast<size_t>(o.k));
    for (size_t i = 0; i < test.size(); ++i) {
      if (test[i].domain != d) continue;
      lines.push_back(&test[i]);
      by_expert[size_t(routed[i])].push_back(&test[i]);
      row.routed_right += routed[i] == cluster_of[d];
    }
    row.lines = int64_t(lines.size());
    auto b = loss_of(trainer, base_params, lines, o.batch_tokens);
    auto w = loss_of(trainer, whole.value()->params(), lines, o.batch_tokens);
    if (!b.ok() || !w.ok()) return fail("evaluation failed");
    LossSum mix;
    for (int64_t c = 0; c < o.k; ++c) {
      auto m = loss_of(trainer, experts[size_t(c)]->params(), by_expert[size_t(c)], o.batch_tokens);
      if (!m.ok()) return fail(m.error().to_string());
      mix.sum += m->sum;
      mix.tokens += m->tokens;
    }
    // Top-k: each line under the weighted sum of its chosen experts.
    for (size_t t = 0; t < nt; ++t) {
      LossSum mix_k;
      for (size_t i = 0; i < test.size(); ++i) {
        if (test[i].domain != d) continue;
        std::vector<std::pair<const LoraParams<float>*, double>> parts;
        for (const moe::ExpertChoice& c : routed_k[t][i])
          parts.emplace_back(&experts[size_t(c.expert)]->params(), c.weight);
        auto m = loss_of(trainer, weighted_sum(parts), {&test[i]}, o.batch_tokens);
        if (!m.ok()) return fail(m.error().to_string());
        mix_k.sum += m->sum;
        mix_k.tokens += m->tokens;
      }
      row.mixture_k.push_back(mix_k.mean());
    }
    row.base = b->mean();
    row.whole = w->mean();
    row.mixture = mix.mean();
    rows.push_back(row);
  }

  // 4. A prefill of the held-out lines, for scale.
  double prefill_s = 0;
  {
    gpu::cpu::CpuExecutorOptions eo;
    eo.threads = int(o.threads);
    eo.kv_block_size = 16;
    int32_t blocks = 8;
    for (const Line& l : test) blocks += int32_t(l.example.tokens.size() / 16 + 2);
    eo.kv_num_blocks = blocks;
    auto ex = gpu::cpu::CpuExecutor::create(ck.value(), eo);
    if (!ex.ok()) return fail(ex.error().to_string());
    KvBlockAllocator alloc(eo.kv_num_blocks, 1);
    std::vector<bench::DecodeSeq> seqs(test.size());
    for (size_t i = 0; i < test.size(); ++i) seqs[i].ids = test[i].example.tokens;
    StepPlan plan;
    StepResult res;
    const double t0 = bench::now_s();
    if (!bench::greedy_step(*ex.value(), seqs, alloc, plan, res, "moe")) return fail("prefill failed");
    prefill_s = bench::now_s() - t0;
  }

  // 5. Hidden-state embeddings: clusters and the per-request pass.
  struct HiddenRow {
    int32_t layer = 0;
    double ari = 0, silhouette = 0, route_ms = 0;
  };
  std::vector<HiddenRow> hidden_rows;
  const int32_t mid_layer = int32_t(cfg.num_layers / 2);
  std::vector<float> mid_centroids;
  for (int32_t layer : {0, mid_layer, int32_t(cfg.num_layers)}) {
    HiddenRow h{layer};
    auto he = moe::hidden_embed(backend, cfg, docs, layer);
    if (!he.ok()) return fail(he.error().to_string());
    auto hk = moe::kmeans(he.value(), int64_t(docs.size()), cfg.hidden_size, ko);
    if (!hk.ok()) return fail(hk.error().to_string());
    if (layer == mid_layer) mid_centroids = hk->centroids;
    h.ari = moe::adjusted_rand_index(hidden, hk->assignment);
    h.silhouette = moe::mean_silhouette(he.value(), int64_t(docs.size()), cfg.hidden_size, hk->assignment, true);
    const auto t0 = std::chrono::steady_clock::now();
    for (const Line& l : test)
      if (!moe::hidden_embed(backend, cfg, {l.ids}, layer).ok()) return fail("hidden embedding failed");
    h.route_ms = 1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(test.size());
    hidden_rows.push_back(h);
  }
  const double tfidf_silhouette = moe::mean_silhouette(emb, int64_t(docs.size()), dim, km->assignment, true);

  // 6. Routing by hidden state in the request's own prefill (no second
  // pass; PrefillRouter): each held-out line's prefill with its route at the
  // middle layer against the same prefill run straight on one expert (what
  // follows a base-pass route), interleaved, best of 3. Timing only: these
  // experts adapt every layer, so the routed rows are not those of a
  // mixture trained with --expert-layers above.
  double prefill_routed_ms = -1, prefill_direct_ms = -1;
  if (o.k <= kMaxAdaptersPerRow) {
    gpu::cpu::CpuExecutorOptions eo;
    eo.threads = int(o.threads);
    eo.kv_block_size = 16;
    eo.kv_num_blocks = 8;
    for (const Line& l : test) eo.kv_num_blocks = std::max(eo.kv_num_blocks, int32_t(l.ids.size() / 16 + 2));
    eo.num_adapter_slots = int32_t(o.k);
    eo.max_adapter_rank = int32_t(o.rank);
    auto ex = gpu::cpu::CpuExecutor::create(ck.value(), eo);
    if (!ex.ok()) return fail(ex.error().to_string());
    for (int64_t c = 0; c < o.k; ++c) {
      auto w = std::make_shared<const LoraWeights>(to_lora_weights(experts[size_t(c)]->params(), "expert"));
      std::atomic<bool> done{false};
      if (Status st = ex.value()->begin_load_adapter(int32_t(c), w, [&](Status) { done = true; }); !st.ok())
        return fail(st.error().to_string());
      while (!done) std::this_thread::yield();
    }
    PrefillRouter router;
    router.layer = mid_layer;
    router.dim = int32_t(cfg.hidden_size);
    router.centroids = mid_centroids;
    KvBlockAllocator alloc(eo.kv_num_blocks, 1);
    StepPlan plan;
    StepResult res;
    double best_routed = 1e300, best_direct = 1e300;
    for (int rep = 0; rep < 3; ++rep) {
      double routed_s = 0, direct_s = 0;
      for (size_t i = 0; i < test.size(); ++i)
        for (bool in_prefill : {true, false}) {
          std::vector<bench::DecodeSeq> one(1);
          one[0].ids = test[i].ids;
          one[0].mix = AdapterMix::single(routed[i]);
          if (Status st = plan_greedy_step(one, alloc, eo.kv_block_size, plan); !st.ok()) return fail(st.error().to_string());
          if (in_prefill) {
            RowRoute route;
            route.router = &router;
            route.num_tokens = uint32_t(test[i].ids.size());
            for (int64_t c = 0; c < o.k; ++c) route.expert_slots[size_t(c)] = int32_t(c);
            plan.routes.push_back(route);
            plan.rows[0].adapters = AdapterMix::none();
            plan.rows[0].route = 0;
          }
          const double t0 = bench::now_s();
          if (Status st = ex.value()->step(plan, res); !st.ok()) return fail(st.error().to_string());
          (in_prefill ? routed_s : direct_s) += bench::now_s() - t0;
          alloc.release(one[0].blocks);
        }
      best_routed = std::min(best_routed, routed_s);
      best_direct = std::min(best_direct, direct_s);
    }
    prefill_routed_ms = 1e3 * best_routed / double(test.size());
    prefill_direct_ms = 1e3 * best_direct / double(test.size());
  }

  const double route_us = 1e6 * route_s / double(test.size());
  const double prefill_ms = 1e3 * prefill_s / double(test.size());
  int64_t right = 0, total = 0, wins = 0;
  for (const Row& r : rows) {
    right += r.routed_right;
    total += r.lines;
    wins += r.mixture < r.whole;
  }
  if (o.json) {
    nlohmann::json j = {{"model", o.model.empty() ? "llama-110m bf16 (random)" : o.model},
                        {"k", o.k}, {"steps_per_expert", o.steps}, {"steps_one_adapter", o.k * o.steps},
                        {"batch_tokens", o.batch_tokens}, {"rank", o.rank}, {"ari", ari},
                        {"routed_right", right}, {"held_out", total}, {"route_us", route_us},
                        {"prefill_ms_per_line", prefill_ms}, {"train_seconds", train_s}, {"domains_won", wins},
                        {"tfidf_silhouette", tfidf_silhouette}, {"top_k", o.top_k}, {"temperatures", o.temperatures},
                        {"top_k_mean_weight_past_first", second_weight},
                        {"prefill_routed_ms_per_line", prefill_routed_ms},
                        {"prefill_direct_ms_per_line", prefill_direct_ms}};
    for (const HiddenRow& h : hidden_rows)
      j["hidden_embedding"].push_back(
          {{"layer", h.layer}, {"ari", h.ari}, {"silhouette", h.silhouette}, {"route_ms", h.route_ms}});
    for (const Row& r : rows)
      j["domains"].push_back({{"domain", r.domain}, {"lines", r.lines}, {"routed_right", r.routed_right},
                              {"base", r.base}, {"one_adapter", r.whole}, {"mixture_top1", r.mixture},
                              {"mixture_top_k", r.mixture_k}});
    std::printf("%s\n", j.dump(1).c_str());
  } else {
    std::printf("moe: %s, %lld train + %lld held-out lines, k %lld, rank %lld, %lld tokens/step\n",
                o.model.empty() ? "llama-110m bf16 (random)" : o.model.c_str(), (long long)train.size(),
                (long long)test.size(), (long long)o.k, (long long)o.rank, (long long)o.batch_tokens);
    std::printf("clusters vs hidden domains: adjusted Rand index %.3f\n", ari);
    std::printf("experts %lld steps each; one adapter %lld steps; trained together in %.0f s\n\n", (long long)o.steps,
                (long long)(o.k * o.steps), train_s);
    std::printf("| domain | held-out lines | routed to its cluster | base loss | one adapter | mixture (top-1) |");
    for (double t : o.temperatures) std::printf(" top-%lld, T %g |", (long long)o.top_k, t);
    std::printf("\n|---|---|---|---|---|---|");
    for (size_t t = 0; t < nt; ++t) std::printf("---|");
    std::printf("\n");
    for (const Row& r : rows) {
      std::printf("| %s | %lld | %lld | %.4f | %.4f | %.4f |", r.domain.c_str(), (long long)r.lines,
                  (long long)r.routed_right, r.base, r.whole, r.mixture);
      for (double m : r.mixture_k) std::printf(" %.4f |", m);
      std::printf("\n");
    }
    for (size_t t = 0; t < nt; ++t)
      std::printf("top-%lld at T %g: the experts past the first carry %.4f of a line's weight on average\n",
                  (long long)o.top_k, o.temperatures[t], second_weight[t]);
    std::printf("\nmixture beats the one adapter on %lld of %zu domains\n", (long long)wins, rows.size());
    std::printf("routing (TF-IDF embed + nearest centroid): %.1f us a request; a prefill of the same lines: %.1f ms a "
                "line (%.4f%% of it)\n",
                route_us, prefill_ms, 100.0 * route_us / (1e3 * prefill_ms));
    std::printf("\n| embedding | ARI vs hidden domains | silhouette | routing cost a request |\n|---|---|---|---|\n");
    std::printf("| TF-IDF token 1-3-grams (default) | %.3f | %.3f | %.1f us |\n", ari, tfidf_silhouette, route_us);
    for (const HiddenRow& h : hidden_rows)
      std::printf("| base hidden state, mean after layer %d | %.3f | %.3f | %.2f ms (a base pass to the layer) |\n",
                  h.layer, h.ari, h.silhouette, h.route_ms);
    if (prefill_routed_ms >= 0) {
      const HiddenRow& mid = hidden_rows[1];
      std::printf("\nhidden state after layer %d, routed in the request's own prefill: a prefill %.2f ms a line against "
                  "%.2f ms straight on one expert (+%.2f ms, %.1f%%); by a base pass first: +%.2f ms (%.0f%%)\n",
                  mid_layer, prefill_routed_ms, prefill_direct_ms, prefill_routed_ms - prefill_direct_ms,
                  100.0 * (prefill_routed_ms - prefill_direct_ms) / prefill_direct_ms, mid.route_ms,
                  100.0 * mid.route_ms / prefill_direct_ms);
    }
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return 0;
}
