// cuda_train: LoRA training throughput on one CUDA device against prefill on
// the same device (bench/train.cpp's measure, on the GPU).
//
// A random bf16 model of --shape is written to a temporary folder and loaded
// (the trainer reads a Checkpoint). In one run: (1) prefill tokens/s through
// the CudaExecutor (bf16, the serving path: sequences of --seq-len tokens,
// --batch-tokens per step, best of --reps); (2) training tokens/s of 1 job
// and (3) of --jobs concurrent jobs through CudaLoraTrainingBackend (float32,
// each job --batch-tokens per round), after one warm-up round; their ratio to
// prefill (issue goal: at least 0.30, as a backward costs about two forwards).
// tests/cuda/lora_trainer_test.cpp checks the passes against the CPU's.
//
//   cuda_train [--json] [--shape llama-110m] [--jobs 8] [--steps 5] [--batch-tokens 2048]
//              [--seq-len 128,512] [--rank 16] [--reps 3] [--recompute]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/lora_trainer.h"
#include "greedy_decode.h"
#include "nodes/cli_app.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/model_factory.h"
#include "runtime/training/training_job.h"

using namespace myriad;

namespace {

struct Options {
  bool json = false, recompute = false;
  std::string shape = "llama-110m", seq_lens = "128,512";
  int64_t jobs = 8, steps = 5, batch_tokens = 2048, rank = 16, reps = 3;
};

double prefill_tok_s(const Options& o, std::shared_ptr<const Checkpoint> ck, int64_t seq_len) {
  gpu::cuda::CudaExecutorOptions eo;
  eo.kv_block_size = 16;
  const int64_t seqs = std::max<int64_t>(1, o.batch_tokens / seq_len);
  eo.kv_num_blocks = int32_t(seqs * (seq_len / 16 + 2) + 8);
  eo.max_tokens_per_step = int32_t(std::max<int64_t>(o.batch_tokens, seq_len));
  eo.max_rows = int32_t(seqs);
  eo.max_logits_rows = int32_t(seqs);
  auto ex = must(gpu::cuda::CudaExecutor::create(ck, eo), "CudaExecutor");
  StepPlan plan;
  StepResult res;
  double best = 0;
  for (int64_t rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    KvBlockAllocator alloc(eo.kv_num_blocks, 1);
    std::vector<bench::DecodeSeq> s(static_cast<size_t>(seqs));
    for (int64_t i = 0; i < seqs; ++i)
      s[size_t(i)].ids = bench::prompt(int(seq_len), int(i), ck->config().vocab_size);
    const double t0 = bench::now_s();
    if (!bench::greedy_step(*ex, s, alloc, plan, res, "cuda_train")) die("prefill step failed");
    if (rep > 0) best = std::max(best, double(seqs * seq_len) / (bench::now_s() - t0));
  }
  return best;
}

struct Trained {
  double tok_s = 0, loss_first = 0, loss_last = 0, activation_mb = 0;
};

Trained train(const Options& o, gpu::cuda::CudaLoraTrainingBackend& backend, const ModelConfig& cfg,
              int64_t jobs, int64_t seq_len) {
  backend.set_recompute(o.recompute);
  JobTrainer trainer(backend);
  std::vector<std::unique_ptr<TrainingJob>> owned;
  for (int64_t j = 0; j < jobs; ++j) {
    // The first step is a warm-up.
    auto job = must(bench::synthetic_job(cfg, j, o.rank, o.steps + 1, o.batch_tokens, seq_len), "TrainingJob");
    trainer.add(job.get());
    owned.push_back(std::move(job));
  }
  if (!trainer.round().ok()) die("warm-up round failed");
  int64_t tokens = 0;
  const double t0 = bench::now_s();
  while (!trainer.idle()) {
    auto r = must(trainer.round(), "round");
    for (const auto& [_, rec] : r) tokens += rec.tokens;
  }
  Trained t;
  t.tok_s = double(tokens) / (bench::now_s() - t0);
  t.activation_mb = double(backend.activation_bytes()) / 1e6;
  t.loss_first = owned[0]->history().front().loss;
  t.loss_last = owned[0]->history().back().loss;
  return t;
}

std::vector<int64_t> split_ints(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("LoRA training throughput on a CUDA device (1 and K concurrent jobs) against its prefill.",
               "cuda_train");
  cli::set_conventions(app);
  app.add_flag("--json", o.json, "print one JSON object instead of the table");
  app.add_option("--shape", o.shape, "model shape (default llama-110m)")->option_text("NAME");
  app.add_option("--jobs", o.jobs, "concurrent jobs of the K-job run (default 8)")->option_text("K");
  app.add_option("--steps", o.steps, "timed optimizer steps per run (default 5)")->option_text("N");
  app.add_option("--batch-tokens", o.batch_tokens,
                 "tokens per job per round, and per prefill step (default 2048)")
      ->option_text("T");
  app.add_option("--seq-len", o.seq_lens, "example lengths, comma-separated (default 128,512)")
      ->option_text("L,M");
  app.add_option("--rank", o.rank, "LoRA rank on all seven modules (default 16)")->option_text("R");
  app.add_option("--reps", o.reps, "prefill repetitions, best kept (default 3)")->option_text("N");
  app.add_flag("--recompute", o.recompute, "recompute activations in the backward");
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  if (auto why = gpu::cuda::device_unavailable_reason()) {
    std::fprintf(stderr, "cuda_train: no CUDA device: %s\n", why->c_str());
    if (o.json) std::printf("{\"rows\":[{\"case\":\"skipped\",\"reason\":\"no CUDA device\"}]}\n");
    return 0;
  }
  namespace fs = std::filesystem;
  const fs::path dir =
      fs::temp_directory_path() / ("myriad_cuda_train_" + std::to_string(std::random_device{}()));
  MakeModelOptions mo;
  mo.shape = o.shape;
  mo.seed = 1;
  mo.dtype = DType::kBF16;
  mo.out_dir = dir.string();
  if (auto made = make_model(mo); !made.ok()) die("make_model: " + made.error().to_string());
  auto ck = must(Checkpoint::load(dir.string()), "Checkpoint::load");
  const auto props = must(gpu::cuda::device_props(), "device_props");
  auto backend = must(gpu::cuda::CudaLoraTrainingBackend::create(ck), "CudaLoraTrainingBackend");

  std::string rows;
  if (!o.json)
    std::printf(
        "device %s, %s (bf16 checkpoint; training in float32, base %.0f MB on the device)\n\n"
        "| seq len | prefill tok/s | train 1 job tok/s | vs prefill | train %lld jobs tok/s | vs prefill | "
        "activations MB | loss first -> last (job 0) |\n|---|---|---|---|---|---|---|---|\n",
        props.name.c_str(), o.shape.c_str(), double(backend->base_bytes()) / 1e6, (long long)o.jobs);
  for (int64_t len : split_ints(o.seq_lens)) {
    const double pre = prefill_tok_s(o, ck, len);
    const Trained one = train(o, *backend, ck->config(), 1, len);
    const Trained many = train(o, *backend, ck->config(), o.jobs, len);
    if (o.json) {
      char b[512];
      std::snprintf(
          b, sizeof b,
          "%s{\"case\":\"train seq_len "
          "%lld\",\"seq_len\":%lld,\"prefill_tok_s\":%.1f,\"train_1_tok_s\":%.1f,\"train_1_vs_prefill\":%.3f,"
          "\"train_k_tok_s\":%.1f,\"train_k_vs_prefill\":%.3f,\"jobs\":%lld,\"activation_mb\":%.1f}",
          rows.empty() ? "" : ",", (long long)len, (long long)len, pre, one.tok_s, one.tok_s / pre,
          many.tok_s, many.tok_s / pre, (long long)o.jobs, many.activation_mb);
      rows += b;
    } else {
      std::printf("| %lld | %.0f | %.0f | %.2f | %.0f | %.2f | %.0f | %.3f -> %.3f |\n", (long long)len, pre,
                  one.tok_s, one.tok_s / pre, many.tok_s, many.tok_s / pre, many.activation_mb,
                  many.loss_first, many.loss_last);
    }
  }
  if (o.json)
    std::printf("{\"device\":\"%s\",\"shape\":\"%s\",\"rank\":%lld,\"batch_tokens\":%lld,\"rows\":[%s]}\n",
                props.name.c_str(), o.shape.c_str(), (long long)o.rank, (long long)o.batch_tokens,
                rows.c_str());
  fs::remove_all(dir);
  return 0;
}
