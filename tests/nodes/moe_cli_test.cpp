// `myriad moe create` end to end on the synthetic four-domain corpus: the
// mixture folder's files, the clusters against the hidden domains, and
// experts that load as PEFT adapters.
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "runtime/checkpoint.h"
#include "runtime/moe/clustering.h"
#include "runtime/moe/corpus.h"
#include "runtime/peft_adapter.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing_cli::run_cli;

TEST(MoeCli, CreateClustersTheCorpusAndTrainsAnExpertPerCluster) {
  const fs::path dir = fs::temp_directory_path() / ("myriad_moe_cli_" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  const std::string model = (dir / "model").string();
  ASSERT_EQ(run_cli("make-model --shape tiny --seed 2 --dtype f32 --init-std 0.08 --out " + model).code, 0);
  const auto corpus = moe::synthetic_corpus(30, 7);
  std::vector<int32_t> hidden;
  {
    std::ofstream f(dir / "corpus.jsonl");
    for (const auto& l : corpus) {
      f << json{{"text", l.text}}.dump() << "\n";
      hidden.push_back(l.domain);
    }
  }
  const std::string out = (dir / "mix").string();
  const auto r = run_cli("moe create --model " + model + " --corpus " + (dir / "corpus.jsonl").string() +
                         " --k 4 --steps 30 --batch-tokens 512 --lr 5e-3 --seed 1 --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  const json summary = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(summary.is_object()) << r.out;
  EXPECT_EQ(summary["k"], 4);
  EXPECT_EQ(summary["lines"], 120);

  std::ifstream af(out + "/assignments.json");
  const auto assignment = json::parse(af).get<std::vector<int32_t>>();
  ASSERT_EQ(assignment.size(), corpus.size());
  const double ari = moe::adjusted_rand_index(hidden, assignment);
  std::printf("[ moe      ] adjusted Rand index of the clusters vs the hidden domains: %.3f\n", ari);
  EXPECT_GE(ari, 0.9);

  std::ifstream mf(out + "/mixture.json");
  const json mixture = json::parse(mf);
  ASSERT_EQ(mixture["experts"].size(), 4u);
  ASSERT_EQ(mixture["centroids"].size(), 4u);
  auto base = Checkpoint::load(model);
  ASSERT_TRUE(base.ok());
  for (const auto& e : mixture["experts"]) {
    auto w = load_peft_adapter(out + "/" + e["name"].get<std::string>(), base.value()->config());
    EXPECT_TRUE(w.ok()) << e;
    EXPECT_LT(e["train_loss_last"].get<double>(), e["train_loss_first"].get<double>()) << e;
  }
  // A bad corpus line is an error naming it, and nothing is written.
  {
    std::ofstream f(dir / "bad.jsonl");
    f << "{\"text\": \"ok\"}\n{\"txt\": 1}\n";
  }
  const auto b = run_cli("moe create --model " + model + " --corpus " + (dir / "bad.jsonl").string() + " --k 1 --out " +
                             (dir / "bad-mix").string(),
                         true);
  EXPECT_EQ(b.code, 1);
  EXPECT_NE(b.out.find("bad.jsonl:2: needs a non-empty \"text\" string"), std::string::npos) << b.out;
  EXPECT_FALSE(fs::exists(dir / "bad-mix"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace myriad
