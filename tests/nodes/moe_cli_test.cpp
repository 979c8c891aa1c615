// `myriad moe create / inspect` and routing through `--moe` end to end on
// the synthetic four-domain corpus: the mixture folder's files, the clusters
// against the hidden domains, experts that load as PEFT adapters, a batch of
// mixed-domain rows routed top-1 equal to each row sent to its expert, and
// a weighted top-k equal to the weighted sum of the experts' deltas (the
// merged mix_lora path).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "runtime/checkpoint.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/peft_adapter.h"
#include "runtime/tokenizer.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing_cli::run_cli;

class MoeCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("myriad_moe_cli_" + std::to_string(std::random_device{}()));
    fs::create_directories(dir_);
    model_ = (dir_ / "model").string();
    ASSERT_EQ(run_cli("make-model --shape tiny --seed 2 --dtype f32 --init-std 0.08 --out " + model_).code, 0);
    // The corpus as a user gets it: `moe corpus` (the same lines as synthetic_corpus).
    corpus_ = moe::synthetic_corpus(30, 7);
    corpus_run_ = run_cli("moe corpus --per-domain 30 --seed 7 --out " + (dir_ / "corpus.jsonl").string() +
                          " --labels " + (dir_ / "labels.json").string());
    mix_ = (dir_ / "mix").string();
    create_ = run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                      " --labels " + (dir_ / "labels.json").string() +
                      " --k 4 --steps 30 --batch-tokens 512 --lr 5e-3 --seed 1 --out " + mix_);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // Held-out lines (another seed), their ids without special tokens, cut to 48.
  static std::vector<std::pair<int32_t, std::vector<int32_t>>> held_out(int per_domain) {
    auto tok = Tokenizer::load(model_);
    EXPECT_TRUE(tok.ok());
    std::vector<std::pair<int32_t, std::vector<int32_t>>> out;
    for (const auto& l : moe::synthetic_corpus(per_domain, 99)) {
      auto ids = tok.value()->encode(l.text, false);
      ids.resize(std::min<size_t>(ids.size(), 48));
      out.push_back({l.domain, ids});
    }
    return out;
  }

  static json parse(const testing_cli::CliRun& r) {
    EXPECT_EQ(r.code, 0) << r.out.substr(0, 2000);
    const json j = json::parse(r.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << r.out.substr(0, 2000);
    return j;
  }

  static std::string ids_text(const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) {
      if (!s.empty()) s += ',';
      s += std::to_string(id);
    }
    return s;
  }

  static inline fs::path dir_;
  static inline std::string model_, mix_;
  static inline std::vector<moe::CorpusLine> corpus_;
  static inline testing_cli::CliRun create_, corpus_run_;
};

// |got - ref| <= atol + rtol |ref| over two logits rows; the largest error.
double max_excess(const json& got, const json& ref, double atol, double rtol) {
  EXPECT_EQ(got.size(), ref.size());
  double worst = -1e30;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
    const double g = got[i].get<double>(), r = ref[i].get<double>();
    worst = std::max(worst, std::abs(g - r) - (atol + rtol * std::abs(r)));
  }
  return worst;
}

double max_abs_diff(const json& a, const json& b) {
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i].get<double>() - b[i].get<double>()));
  return d;
}

TEST_F(MoeCli, CorpusWritesTheSyntheticLinesAndTheirHiddenDomains) {
  const json summary = parse(corpus_run_);
  EXPECT_EQ(summary["lines"], 120);
  EXPECT_EQ(summary["domains"].size(), 4u);
  std::ifstream cf(dir_ / "corpus.jsonl");
  std::string line;
  size_t i = 0;
  for (; std::getline(cf, line); ++i) {
    ASSERT_LT(i, corpus_.size());
    EXPECT_EQ(json::parse(line)["text"], corpus_[i].text) << "line " << i + 1;
  }
  EXPECT_EQ(i, corpus_.size());
  std::ifstream lf(dir_ / "labels.json");
  const auto labels = json::parse(lf).get<std::vector<int32_t>>();
  ASSERT_EQ(labels.size(), corpus_.size());
  for (size_t k = 0; k < labels.size(); ++k) EXPECT_EQ(labels[k], corpus_[k].domain);
}

TEST_F(MoeCli, SweepFindsTheNumberOfDomains) {
  const json sweep = parse(run_cli("moe sweep --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                                   " --labels " + (dir_ / "labels.json").string() + " --from 2 --to 6 --json"));
  EXPECT_EQ(sweep["best_k"], 4) << sweep;  // the silhouette peaks at the hidden domains' number
  ASSERT_EQ(sweep["rows"].size(), 5u);
  EXPECT_EQ(sweep["rows"][2]["k"], 4);
  EXPECT_GE(sweep["rows"][2]["ari"].get<double>(), 0.9) << sweep;
  EXPECT_LT(sweep["rows"][0]["ari"].get<double>(), 0.9) << sweep;  // k = 2 merges domains
  const auto table = run_cli("moe sweep --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                             " --from 3 --to 4");
  EXPECT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("the silhouette peaks at k = 4"), std::string::npos) << table.out;
  const auto bad = run_cli("moe sweep --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                               " --from 5 --to 3",
                           true);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--from and --to"), std::string::npos) << bad.out;
}

TEST_F(MoeCli, CreateClustersTheCorpusAndTrainsAnExpertPerCluster) {
  const json summary = parse(create_);
  EXPECT_EQ(summary["k"], 4);
  EXPECT_EQ(summary["lines"], 120);
  EXPECT_GE(summary["ari"].get<double>(), 0.9) << summary;  // --labels: the clusters against the hidden domains

  std::ifstream af(mix_ + "/assignments.json");
  const auto assignment = json::parse(af).get<std::vector<int32_t>>();
  ASSERT_EQ(assignment.size(), corpus_.size());
  std::vector<int32_t> hidden;
  for (const auto& l : corpus_) hidden.push_back(l.domain);
  const double ari = moe::adjusted_rand_index(hidden, assignment);
  std::printf("[ moe      ] adjusted Rand index of the clusters vs the hidden domains: %.3f\n", ari);
  EXPECT_GE(ari, 0.9);

  std::ifstream mf(mix_ + "/mixture.json");
  const json mixture = json::parse(mf);
  ASSERT_EQ(mixture["experts"].size(), 4u);
  ASSERT_EQ(mixture["centroids"].size(), 4u);
  EXPECT_EQ(mixture["embedding"]["idf"].size(), 1024u);
  auto base = Checkpoint::load(model_);
  ASSERT_TRUE(base.ok());
  for (const auto& e : mixture["experts"]) {
    auto w = load_peft_adapter(mix_ + "/" + e["name"].get<std::string>(), base.value()->config());
    EXPECT_TRUE(w.ok()) << e;
    EXPECT_LT(e["train_loss_last"].get<double>(), e["train_loss_first"].get<double>()) << e;
  }
}

TEST_F(MoeCli, InspectShowsEachClustersSizeTermsAndSamples) {
  ASSERT_EQ(create_.code, 0);
  const json j = parse(run_cli("moe inspect " + mix_ + " --json"));
  ASSERT_EQ(j["clusters"].size(), 4u);
  int64_t lines = 0;
  std::set<std::string> first_terms;
  for (const auto& c : j["clusters"]) {
    lines += c["lines"].get<int64_t>();
    ASSERT_FALSE(c["terms"].empty()) << c;
    EXPECT_FALSE(c["samples"].empty()) << c;
    first_terms.insert(c["terms"][0].get<std::string>());
  }
  EXPECT_EQ(lines, 120);
  EXPECT_EQ(first_terms.size(), 4u) << j;  // each cluster's own vocabulary leads
  const auto table = run_cli("moe inspect " + mix_);
  EXPECT_EQ(table.code, 0);
  EXPECT_NE(table.out.find("expert-3"), std::string::npos) << table.out;
  const auto missing = run_cli("moe inspect " + (dir_ / "nope").string(), true);
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.out.find("not a mixture folder"), std::string::npos) << missing.out;
}

TEST_F(MoeCli, ARoutedBatchGivesEachRowItsExpertsOutput) {
  ASSERT_EQ(create_.code, 0);
  const auto rows = held_out(2);  // 8 lines, two of each domain, shuffled
  json batch = {{"rows", json::array()}};
  for (const auto& [d, ids] : rows) batch["rows"].push_back({{"ids", ids}});
  const std::string routed_file = (dir_ / "routed.json").string();
  std::ofstream(routed_file) << batch.dump();
  const json routed = parse(run_cli("logits --model " + model_ + " --batch " + routed_file + " --moe " + mix_));
  ASSERT_EQ(routed["rows"].size(), rows.size());

  // The same rows, each sent straight to its chosen expert, in one batch too.
  json direct = {{"rows", json::array()}};
  std::set<std::string> used;
  std::map<int32_t, std::set<std::string>> expert_of_domain;
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& experts = routed["rows"][i]["experts"];
    ASSERT_EQ(experts.size(), 1u) << routed["rows"][i];
    EXPECT_EQ(experts[0]["weight"], 1.0);
    const std::string name = experts[0]["name"];
    used.insert(name);
    expert_of_domain[rows[i].first].insert(name);
    direct["rows"].push_back({{"ids", rows[i].second}, {"adapters", {{{"path", mix_ + "/" + name}}}}});
  }
  EXPECT_EQ(used.size(), 4u) << "each domain has its own expert";
  for (const auto& [d, names] : expert_of_domain) EXPECT_EQ(names.size(), 1u) << "domain " << d;
  const std::string direct_file = (dir_ / "direct.json").string();
  std::ofstream(direct_file) << direct.dump();
  const json want = parse(run_cli("logits --model " + model_ + " --batch " + direct_file));
  const json base = parse(run_cli("logits --model " + model_ + " --batch " + routed_file));
  for (size_t i = 0; i < rows.size(); ++i) {
    const json& got = routed["rows"][i]["logits"];  // a --batch row's logits: its last position
    ASSERT_EQ(got.size(), 260u);
    // f32 throughout; the same slot arithmetic, so equal up to reassociation.
    EXPECT_LE(max_excess(got, want["rows"][i]["logits"], 1e-5, 1e-5), 0.0) << "row " << i;
    EXPECT_GT(max_abs_diff(got, base["rows"][i]["logits"]), 1e-3) << "row " << i << ": the expert changes nothing";
  }
}

TEST_F(MoeCli, WeightedTopKIsTheWeightedSumOfTheExpertsDeltas) {
  ASSERT_EQ(create_.code, 0);
  const std::string ids = ids_text(held_out(1)[0].second);
  // A high temperature so both experts weigh in.
  const json top2 = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + mix_ +
                                  " --moe-top-k 2 --moe-temperature 5"));
  ASSERT_EQ(top2["experts"].size(), 2u) << top2["experts"];
  std::string flags;
  double total = 0;
  for (const auto& e : top2["experts"]) {
    const double w = e["weight"].get<double>();
    EXPECT_GT(w, 0.3) << top2["experts"];
    total += w;
    char buf[64];
    std::snprintf(buf, sizeof buf, ":%.9g", w);
    flags += " --adapter " + mix_ + "/" + e["name"].get<std::string>() + buf;
  }
  EXPECT_NEAR(total, 1.0, 1e-12);
  // Two slots mixed per row vs one adapter that concatenates both (mix_lora).
  const json merged = parse(run_cli("logits --model " + model_ + " --ids " + ids + flags));
  EXPECT_LE(max_excess(top2["logits"][0], merged["logits"][0], 1e-4, 1e-4), 0.0);
  const json top1 = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + mix_));
  ASSERT_EQ(top1["experts"].size(), 1u);
  EXPECT_EQ(top1["experts"][0]["name"], top2["experts"][0]["name"]);
  EXPECT_GT(max_abs_diff(top1["logits"][0], top2["logits"][0]), 1e-3) << "the second expert changes nothing";
}

TEST_F(MoeCli, GenerateReportsTheExpertsAndBadFlagsAreClearErrors) {
  ASSERT_EQ(create_.code, 0);
  const std::string prompt = "'KYC CHECK | client_id=123456 | document=passport'";
  const json g = parse(run_cli("generate --model " + model_ + " --prompt " + prompt + " --moe " + mix_ +
                               " --max-tokens 4 --temperature 0 --json"));
  ASSERT_EQ(g["experts"].size(), 1u);
  EXPECT_EQ(g["ids"].size(), 4u);
  // The same as naming that expert directly.
  const json d = parse(run_cli("generate --model " + model_ + " --prompt " + prompt + " --adapter " + mix_ + "/" +
                               g["experts"][0]["name"].get<std::string>() + " --max-tokens 4 --temperature 0 --json"));
  EXPECT_EQ(g["ids"], d["ids"]);

  const auto both = run_cli("logits --model " + model_ + " --ids 1,2 --moe " + mix_ + " --adapter " + mix_ + "/expert-0", true);
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.out.find("not both"), std::string::npos) << both.out;
  const auto topk = run_cli("logits --model " + model_ + " --ids 1,2 --moe " + mix_ + " --moe-top-k 5", true);
  EXPECT_EQ(topk.code, 2);
  EXPECT_NE(topk.out.find("--moe-top-k must be in [1, 4]"), std::string::npos) << topk.out;
  const auto lone = run_cli("logits --model " + model_ + " --ids 1,2 --moe-top-k 2", true);
  EXPECT_EQ(lone.code, 2);
  EXPECT_NE(lone.out.find("need --moe"), std::string::npos) << lone.out;
}

// A hidden-state mixture's experts adapt the routing layer and above
// (--expert-layers above, the default), so a request routes in its own
// prefill: the same experts and weights, and the same logits, as the base
// pass up to the layer (--moe-route pass) and as the expert named directly.
// With experts on every layer the CLI routes by the base pass and refuses
// --moe-route prefill naming why.
TEST_F(MoeCli, AHiddenStateMixtureRoutesInThePrefillOrWithABasePass) {
  const std::string hidden = (dir_ / "hidden-mix").string();
  const json summary = parse(run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                                     " --k 2 --steps 3 --batch-tokens 256 --embedding hidden --embedding-layer 1 --out " +
                                     hidden));
  EXPECT_EQ(summary["embedding"], "hidden");
  std::ifstream mf(hidden + "/mixture.json");
  const json mixture = json::parse(mf);
  EXPECT_EQ(mixture["embedding"]["kind"], "hidden-mean");
  EXPECT_EQ(mixture["embedding"]["layer"], 1);
  EXPECT_EQ(mixture["centroids"][0].size(), mixture["embedding"]["dim"].get<size_t>());
  EXPECT_EQ(summary["expert_layers"], "above");
  std::ifstream ef(hidden + "/expert-0/adapter_config.json");
  EXPECT_EQ(json::parse(ef)["layers_to_transform"], json::array({1}));  // tiny: layers 0 and 1
  for (const auto& [domain, line] : held_out(1)) {
    SCOPED_TRACE("domain " + std::to_string(domain));
    const std::string ids = ids_text(line);
    const json routed = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + hidden));
    const json passed = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + hidden +
                                      " --moe-route pass"));
    ASSERT_EQ(routed["experts"].size(), 1u);
    EXPECT_FALSE(routed["experts"][0].contains("similarity")) << "routed in the prefill: " << routed["experts"];
    EXPECT_TRUE(passed["experts"][0].contains("similarity")) << passed["experts"];
    EXPECT_EQ(routed["experts"][0]["name"], passed["experts"][0]["name"]);
    const json direct = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --adapter " + hidden + "/" +
                                      routed["experts"][0]["name"].get<std::string>()));
    EXPECT_LE(max_excess(routed["logits"][0], direct["logits"][0], 1e-5, 1e-5), 0.0);
    EXPECT_LE(max_excess(passed["logits"][0], direct["logits"][0], 1e-5, 1e-5), 0.0);
    // Soft top-2: the weights of both routes agree (the pooled states agree in f32).
    const std::string soft = " --moe-top-k 2 --moe-temperature 1";
    const json r2 = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + hidden + soft));
    const json p2 = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + hidden + soft +
                                  " --moe-route pass"));
    ASSERT_EQ(r2["experts"].size(), 2u);
    for (size_t e = 0; e < 2; ++e) {
      EXPECT_EQ(r2["experts"][e]["name"], p2["experts"][e]["name"]);
      EXPECT_NEAR(r2["experts"][e]["weight"].get<double>(), p2["experts"][e]["weight"].get<double>(), 1e-5);
    }
    EXPECT_LE(max_excess(r2["logits"][0], p2["logits"][0], 1e-5, 1e-5), 0.0);
  }
  const std::string everywhere = (dir_ / "hidden-all").string();
  parse(run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                " --k 2 --steps 2 --batch-tokens 256 --embedding hidden --embedding-layer 1 --expert-layers all --out " +
                everywhere));
  const std::string ids = ids_text(held_out(1)[0].second);
  const json by_pass = parse(run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + everywhere));
  EXPECT_TRUE(by_pass["experts"][0].contains("similarity")) << "auto routes these by the base pass";
  const auto refused = run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + everywhere +
                                   " --moe-route prefill",
                               true);
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.out.find("adapts layer 0, below the routing layer 1"), std::string::npos) << refused.out;
  const auto tfidf = run_cli("logits --model " + model_ + " --ids " + ids + " --moe " + mix_ + " --moe-route prefill",
                             true);
  EXPECT_EQ(tfidf.code, 2);
  EXPECT_NE(tfidf.out.find("routes by TF-IDF"), std::string::npos) << tfidf.out;
  const auto above_tfidf = run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                                       " --k 2 --expert-layers above --out " + (dir_ / "y").string(),
                                   true);
  EXPECT_EQ(above_tfidf.code, 2);
  EXPECT_NE(above_tfidf.out.find("--expert-layers above needs --embedding hidden"), std::string::npos)
      << above_tfidf.out;
  const auto bad = run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "corpus.jsonl").string() +
                               " --k 2 --embedding hidden --embedding-layer 99 --out " + (dir_ / "x").string(),
                           true);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.out.find("--embedding-layer must be in [0, "), std::string::npos) << bad.out;
}

TEST_F(MoeCli, ABadCorpusIsAnErrorNamingTheLineAndWritesNothing) {
  {
    std::ofstream f(dir_ / "bad.jsonl");
    f << "{\"text\": \"ok\"}\n{\"txt\": 1}\n";
  }
  const auto b = run_cli("moe create --model " + model_ + " --corpus " + (dir_ / "bad.jsonl").string() +
                             " --k 1 --out " + (dir_ / "bad-mix").string(),
                         true);
  EXPECT_EQ(b.code, 1);
  EXPECT_NE(b.out.find("bad.jsonl:2: needs a non-empty \"text\" string"), std::string::npos) << b.out;
  EXPECT_FALSE(fs::exists(dir_ / "bad-mix"));
}

}  // namespace
}  // namespace myriad
