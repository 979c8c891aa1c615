// `myriad finetune` end to end: the PEFT folder and JSON summary it writes,
// resuming after SIGKILL from its checkpoint to the very same adapter, and
// clear errors for bad input.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/device_memory.h"
#endif
#include "runtime/checkpoint.h"
#include "runtime/peft_adapter.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing_cli::run_cli;

struct Workdir {
  fs::path dir = fs::temp_directory_path() / ("myriad_finetune_cli_" + std::to_string(std::random_device{}()));
  Workdir() { fs::create_directories(dir); }
  ~Workdir() { fs::remove_all(dir); }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

// "kqzb" -> "B": upper-case the last letter.
void write_task(const std::string& path, uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) {
    std::string p;
    for (size_t k = 0, len = 3 + rng() % 4; k < len; ++k) p += char('a' + rng() % 26);
    f << json{{"prompt", p}, {"completion", std::string(1, char(p.back() - 'a' + 'A'))}}.dump() << "\n";
  }
}

const std::string& tiny_model(const Workdir& w) {
  static std::string dir;
  dir = w / "model";
  EXPECT_EQ(run_cli("make-model --shape tiny --seed 5 --dtype f32 --out " + dir).code, 0);
  return dir;
}

json last_json_line(const std::string& out) {
  const size_t nl = out.find_last_of('\n', out.size() >= 2 ? out.size() - 2 : 0);
  return json::parse(nl == std::string::npos ? out : out.substr(nl + 1), nullptr, false);
}

TEST(FinetuneCli, TrainsWritesAPeftFolderAndPrintsItsSummary) {
  Workdir w;
  const std::string model = tiny_model(w);
  write_task(w / "train.jsonl", 1, 120);
  write_task(w / "eval.jsonl", 2, 20);
  const auto r = run_cli("finetune --model " + model + " --data " + (w / "train.jsonl") + " --eval " +
                         (w / "eval.jsonl") + " --out " + (w / "adapter") +
                         " --targets q_proj,v_proj,down_proj --rank 4 --alpha 8 --steps 25 --lr 5e-3 --batch-tokens 128");
  ASSERT_EQ(r.code, 0) << r.out;
  const json j = last_json_line(r.out);
  ASSERT_TRUE(j.is_object()) << r.out;
  for (const char* k : {"train_loss_first", "train_loss_last", "eval_loss", "steps", "tokens_per_s"})
    ASSERT_TRUE(j.contains(k) && j[k].is_number()) << k << " in " << r.out;
  EXPECT_EQ(j["steps"], 25);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_LT(j["train_loss_last"].get<double>(), j["train_loss_first"].get<double>());
  // PEFT's config and names; Myriad loads it back.
  std::ifstream cf(w / "adapter/adapter_config.json");
  const json cfg = json::parse(cf);
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0);
  EXPECT_EQ(cfg["target_modules"], json({"down_proj", "q_proj", "v_proj"}));
  auto base = Checkpoint::load(model);
  ASSERT_TRUE(base.ok());
  auto back = load_peft_adapter(w / "adapter", base.value()->config());
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back.value()->at(0, LinearModule::kQ).rank, 4);
  EXPECT_EQ(back.value()->at(0, LinearModule::kK).rank, 0);
  for (const auto& e : fs::directory_iterator(w.dir))
    EXPECT_EQ(e.path().filename().string().find("adapter.tmp-"), std::string::npos) << "left behind: " << e.path();
  // The loss curve beside it: one CSV row per step, an SVG line of 25 points.
  std::ifstream csv(w / "adapter/training_log.csv");
  std::string line;
  int rows = 0;
  std::getline(csv, line);
  EXPECT_EQ(line, "step,loss,lr,grad_norm,tokens,target_tokens");
  while (std::getline(csv, line)) ++rows;
  EXPECT_EQ(rows, 25);
  std::ifstream svg_file(w / "adapter/loss.svg");
  const std::string svg((std::istreambuf_iterator<char>(svg_file)), std::istreambuf_iterator<char>());
  const size_t pts = svg.find("points=\"");
  ASSERT_NE(pts, std::string::npos);
  const std::string points = svg.substr(pts + 8, svg.find('"', pts + 8) - pts - 8);
  EXPECT_EQ(std::count(points.begin(), points.end(), ','), 25);
  EXPECT_NE(svg.find("<circle"), std::string::npos) << "the eval loss is drawn";
  const auto g = run_cli("generate --model " + model + " --adapter " + (w / "adapter") + " --prompt abc --max-tokens 2");
  EXPECT_EQ(g.code, 0) << g.out;
}

TEST(FinetuneCli, AKilledRunResumesFromItsCheckpointToTheSameAdapter) {
  Workdir w;
  const std::string model = tiny_model(w);
  write_task(w / "train.jsonl", 3, 200);
  const std::string common = "finetune --model " + model + " --data " + (w / "train.jsonl") +
                             " --steps 400 --lr 5e-3 --batch-tokens 128 --threads 2 --checkpoint-every 10";
  ASSERT_EQ(run_cli(common + " --out " + (w / "whole") + " --checkpoint-dir " + (w / "ck-whole")).code, 0);

  // The same run, SIGKILLed once it has written a checkpoint, then started again.
  const std::string ck = w / "ck-killed";
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string cmd = std::string(MYRIAD_CLI) + " " + common + " --out " + (w / "resumed") +
                            " --checkpoint-dir " + ck + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(ck + "/checkpoint.safetensors") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it was killed; make it longer";
  ASSERT_FALSE(fs::exists(w / "resumed")) << "killed before it finished";
  const auto r = run_cli(common + " --out " + (w / "resumed") + " --checkpoint-dir " + ck, /*with_stderr=*/true);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("resumed from"), std::string::npos) << r.out;
  const auto whole = run_cli(common + " --out " + (w / "whole2") + " --checkpoint-dir " + (w / "ck-whole"));
  EXPECT_EQ(last_json_line(r.out)["train_loss_last"], last_json_line(whole.out)["train_loss_last"]);
  EXPECT_EQ(testing_cli::sh("cmp " + (w / "whole/adapter_model.safetensors") + " " +
                            (w / "resumed/adapter_model.safetensors") + " && echo same"),
            "same\n");
}

bool has_cuda_device() {
#ifdef MYRIAD_HAVE_CUDA
  return !gpu::cuda::device_unavailable_reason();
#else
  return false;
#endif
}

TEST(FinetuneCli, BadInputIsAClearErrorThatWritesNothing) {
  Workdir w;
  const std::string model = tiny_model(w);
  {
    std::ofstream f(w / "bad.jsonl");
    f << json{{"prompt", "ab"}, {"completion", "B"}}.dump() << "\n{\"prompt\": \"x\"}\n";
  }
  auto r = run_cli("finetune --model " + model + " --data " + (w / "bad.jsonl") + " --out " + (w / "a"), true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("bad.jsonl:2: needs both \"prompt\" and \"completion\""), std::string::npos) << r.out;
  r = run_cli("finetune --model " + model + " --data " + (w / "bad.jsonl") + " --out " + (w / "a") +
                  " --targets q_proj,x_proj",
              true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("unknown module 'x_proj'"), std::string::npos) << r.out;
  write_task(w / "t1.jsonl", 1, 30);
  r = run_cli("finetune --model " + model + " --data " + (w / "t1.jsonl") + " --out " + (w / "a") + " --device tpu",
              true);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--device tpu: expected cpu or cuda"), std::string::npos) << r.out;
  if (!has_cuda_device()) {  // (on a GPU machine it trains)
    r = run_cli("finetune --model " + model + " --data " + (w / "t1.jsonl") + " --out " + (w / "a") +
                    " --steps 2 --device cuda",
                true);
    EXPECT_EQ(r.code, 1);
    EXPECT_NE(r.out.find("--device cuda"), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(w / "a"));
  // A checkpoint of another job is refused, not resumed.
  write_task(w / "t2.jsonl", 2, 30);
  ASSERT_EQ(run_cli("finetune --model " + model + " --data " + (w / "t1.jsonl") + " --out " + (w / "a") +
                    " --steps 3 --checkpoint-dir " + (w / "ck"))
                .code,
            0);
  r = run_cli("finetune --model " + model + " --data " + (w / "t2.jsonl") + " --out " + (w / "b") +
                  " --steps 3 --checkpoint-dir " + (w / "ck"),
              true);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("the checkpoint is of another job"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace myriad
