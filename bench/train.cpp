// train: LoRA training throughput on the CPU against prefill on the same
// machine, and what concurrent jobs cost in memory.
//
// In one run, each configuration in a child process of its own (so its peak
// RSS is its own): (1) prefill tokens/s of the step's tokens through the
// CpuExecutor (sequences of --seq-len tokens, --batch-tokens per step, best
// of --reps); (2) training tokens/s of 1 job; (3) of --jobs concurrent jobs
// (each its own adapter, optimizer and data, their rows packed into one
// forward/backward per round). Training examples are --seq-len tokens whose
// last quarter is the completion (the loss), as a fine-tuning set is.
// A training step costs a forward, the input-gradient GEMMs (about one more
// forward) and the LoRA and attention backward; the goal is at least 30% of
// the prefill rate. Memory: peak RSS of the K-job process against K times
// the 1-job process (the base weights and the activations are shared).
//
// Co-serving (--serve-seconds S > 0): one EngineWorker over the CpuExecutor
// serves --streams greedy decode streams of the base (closed loop: a stream
// that ends is replaced) for S seconds, first alone, then while
// --serve-jobs jobs train beside it (TrainingWork on the executor's threads,
// --serve-share of the busy time, --serve-batch-tokens per job per round);
// the inter-token latency p50/p99 of both runs and the training tokens/s
// (measured after the first training round, which also fills the cache of
// transposed base weights).
//
// Also timed in the parent: attention forward + backward of one example of
// --seq-len and of 512 tokens with each kernel set the CPU runs (portable
// loops, AVX2, AVX-512), interleaved.
//
// usage: train [--model DIR] [--jobs K] [--steps N] [--batch-tokens T] [--seq-len L] [--rank R]
//              [--threads N] [--reps N] [--recompute] [--serve-seconds S] [--streams N]
//              [--serve-jobs K] [--serve-share X] [--serve-batch-tokens T] [--json]
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <map>
#include <mutex>
#include <thread>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/lora_trainer.h"
#include "gpu/cpu/train_kernels.h"
#include "greedy_decode.h"
#include "nodes/cli_app.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/model_factory.h"
#include "runtime/adapter_source.h"
#include "runtime/engine_worker.h"
#include "runtime/training/training_job.h"
#include "runtime/training/training_work.h"

using namespace myriad;

namespace {

struct Options {
  std::string model;
  int64_t jobs = 8, steps = 4, batch_tokens = 512, seq_len = 128, rank = 16, threads = 0, reps = 3;
  bool recompute = false, json = false, serve_only = false;
  double serve_seconds = 20, serve_share = 0.25, serve_unit_ms = 2.0;
  int64_t streams = 4, serve_jobs = 4, serve_batch_tokens = 128;
  int64_t serve_eval = 0, serve_publish_every = 5;
  bool serve_eval_whole = false;
};

struct Figures {
  double tok_s = 0;
  double peak_rss_mb = 0;
  double activation_mb = 0;
  double loss_first = 0, loss_last = 0;
  double itl_p50_ms = 0, itl_p99_ms = 0, itl_max_ms = 0, decode_tok_s = 0, ttft_p50_ms = 0, ttft_p99_ms = 0;
  double unit_p50_ms = 0, unit_p99_ms = 0, unit_max_ms = 0;  // training's units beside serving
  double train_time_share = 0;  // of the wall time, in them
  int64_t evals = 0;             // eval passes done beside serving
};

double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

// Runs `fn` in a child process; returns what it wrote (a Figures) or nullopt.
std::optional<Figures> in_child(const std::function<bool(Figures&)>& fn) {
  int fds[2];
  if (pipe(fds) != 0) return std::nullopt;
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    Figures f;
    const bool ok = fn(f);
    f.peak_rss_mb = peak_rss_mb();
    if (ok && write(fds[1], &f, sizeof f) != ssize_t(sizeof f)) _exit(1);
    _exit(ok ? 0 : 1);
  }
  close(fds[1]);
  Figures f;
  const bool got = read(fds[0], &f, sizeof f) == ssize_t(sizeof f);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return f;
}

bool prefill(const Options& o, std::shared_ptr<const Checkpoint> ck, Figures& f) {
  gpu::cpu::CpuExecutorOptions eo;
  eo.threads = int(o.threads);
  eo.kv_block_size = 16;
  const int64_t seqs = std::max<int64_t>(1, o.batch_tokens / o.seq_len);
  eo.kv_num_blocks = int32_t(seqs * (o.seq_len / 16 + 2) + 8);
  auto ex = gpu::cpu::CpuExecutor::create(ck, eo);
  if (!ex.ok()) return false;
  StepPlan plan;
  StepResult res;
  for (int64_t rep = 0; rep <= o.reps; ++rep) {  // rep 0 warms up
    KvBlockAllocator alloc(eo.kv_num_blocks, 1);
    std::vector<bench::DecodeSeq> s(static_cast<size_t>(seqs));
    for (int64_t i = 0; i < seqs; ++i) s[size_t(i)].ids = bench::prompt(int(o.seq_len), int(i), ck->config().vocab_size);
    const double t0 = bench::now_s();
    if (!bench::greedy_step(*ex.value(), s, alloc, plan, res, "train")) return false;
    if (rep > 0) f.tok_s = std::max(f.tok_s, double(seqs * o.seq_len) / (bench::now_s() - t0));
  }
  return true;
}

bool train(const Options& o, std::shared_ptr<const Checkpoint> ck, int64_t jobs, Figures& f) {
  gpu::cpu::CpuLoraTrainingBackend backend(ck, int(o.threads));
  backend.set_recompute(o.recompute);
  JobTrainer trainer(backend);
  std::vector<std::unique_ptr<TrainingJob>> owned;
  for (int64_t j = 0; j < jobs; ++j) {
    // The first step is a warm-up.
    auto job = bench::synthetic_job(ck->config(), j, o.rank, o.steps + 1, o.batch_tokens, o.seq_len);
    if (!job.ok()) {
      std::fprintf(stderr, "train: %s\n", job.error().to_string().c_str());
      return false;
    }
    trainer.add(job.value().get());
    owned.push_back(std::move(job.value()));
  }
  if (!trainer.round().ok()) return false;  // warm-up: first touch of the weights, the transposes
  int64_t tokens = 0;
  const double t0 = bench::now_s();
  while (!trainer.idle()) {
    auto r = trainer.round();
    if (!r.ok()) {
      std::fprintf(stderr, "train: %s\n", r.error().to_string().c_str());
      return false;
    }
    for (const auto& [_, rec] : r.value()) tokens += rec.tokens;
  }
  f.tok_s = double(tokens) / (bench::now_s() - t0);
  f.activation_mb = double(backend.activation_bytes()) / 1e6;
  f.loss_first = owned[0]->history().front().loss;
  f.loss_last = owned[0]->history().back().loss;
  return true;
}

// Token times of every request, for inter-token latencies.
class TimingSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    std::lock_guard lock(mu);
    const double t = bench::now_s();
    if (e.kind == EventKind::kToken) {
      auto it = last.find(e.id);
      if (it != last.end()) {
        gaps_ms.push_back((t - it->second) * 1e3);
      } else if (auto s = submitted.find(e.id); s != submitted.end()) {
        ttft_ms.push_back((t - s->second) * 1e3);
      }
      last[e.id] = t;
      ++tokens;
    }
    if (e.is_final()) {
      last.erase(e.id);
      ++finished;
    }
  }
  std::mutex mu;
  std::map<RequestId, double> last, submitted;
  std::vector<double> gaps_ms, ttft_ms;
  int64_t tokens = 0, finished = 0;
};

// The training work as the worker sees it, timing each unit (run_once):
// what a waiting decode step waits for.
class TimedWork final : public BackgroundWork {
 public:
  explicit TimedWork(BackgroundWork& inner) : inner_(inner) {
    inner_.set_wakeup([this] { wake_worker(); });
  }
  bool has_work() override { return inner_.has_work(); }
  void run_once() override {
    const double t0 = bench::now_s();
    inner_.run_once();
    const double ms = (bench::now_s() - t0) * 1e3;
    std::lock_guard lock(mu_);
    if (recording_) unit_ms_.push_back(ms);
  }
  void record() {
    std::lock_guard lock(mu_);
    recording_ = true;
    unit_ms_.clear();
  }
  std::vector<double> unit_ms() {
    std::lock_guard lock(mu_);
    return unit_ms_;
  }

 private:
  BackgroundWork& inner_;
  std::mutex mu_;
  bool recording_ = false;
  std::vector<double> unit_ms_;
};

// Attention forward + backward of one example of `len` tokens (all heads of
// the model, one thread), per kernel set this CPU runs, the sets interleaved
// and the best of 5 kept: what the vector kernels save of a training step.
struct AttentionTiming {
  gpu::cpu::LoraIsa isa;
  int64_t len;
  double ms;
};

std::vector<AttentionTiming> attention_timings(const ModelConfig& c, std::vector<int64_t> lens) {
  namespace train = gpu::cpu::train;
  std::vector<AttentionTiming> out;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (int64_t len : lens) {
    train::AttentionShape sh;
    sh.T = len, sh.num_heads = c.num_heads, sh.num_kv_heads = c.num_kv_heads, sh.head_dim = c.head_dim;
    const size_t nq = size_t(len * c.q_dim()), nkv = size_t(len * c.kv_dim());
    std::vector<float> q(nq), k(nkv), v(nkv), d_out(nq), o(nq), lse(size_t(len * c.num_heads)), dq(nq), dk(nkv),
        dv(nkv);
    for (auto* t : {&q, &k, &v, &d_out})
      for (float& x : *t) x = nd(rng);
    std::vector<double> best(size_t(gpu::cpu::lora_best_isa()) + 1, 1e30);
    for (int rep = 0; rep < 5; ++rep)
      for (size_t i = 0; i < best.size(); ++i) {
        gpu::cpu::lora_limit_isa(gpu::cpu::LoraIsa(i));
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t kv = 0; kv < c.num_kv_heads; ++kv)
          train::attention_forward(sh, kv, q.data(), k.data(), v.data(), o.data(), lse.data());
        for (int64_t kv = 0; kv < c.num_kv_heads; ++kv)
          train::attention_backward(sh, kv, q.data(), k.data(), v.data(), o.data(), lse.data(), d_out.data(),
                                    dq.data(), dk.data(), dv.data());
        best[i] = std::min(best[i], std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    gpu::cpu::lora_limit_isa(gpu::cpu::LoraIsa::kAvx512);
    for (size_t i = 0; i < best.size(); ++i) out.push_back({gpu::cpu::LoraIsa(i), len, best[i]});
  }
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[size_t(std::min<double>(double(v.size() - 1), p * double(v.size())))];
}

bool serve(const Options& o, std::shared_ptr<const Checkpoint> ck, bool with_training, Figures& f) {
  gpu::cpu::CpuExecutorOptions eo;
  eo.threads = int(o.threads);
  eo.kv_num_blocks = 512;
  auto ex = gpu::cpu::CpuExecutor::create(ck, eo);
  if (!ex.ok()) return false;
  StaticAdapterSource source;
  TimingSink sink;
  SchedulerConfig cfg;
  cfg.num_slots = 0;
  cfg.num_kv_blocks = 512;
  auto worker = EngineWorker::start(cfg, *ex.value(), source, sink);
  if (!worker.ok()) return false;
  gpu::cpu::CpuLoraTrainingBackend backend(ck, ex.value()->pool());
  std::atomic<int64_t> trained_tokens{0}, evals{0};
  // With --serve-eval: each job's eval examples, and its TrainingJob (for
  // --serve-eval-whole, which evaluates in the publish callback, whole, as
  // a node did before the pass ran in units).
  std::map<std::string, std::pair<std::shared_ptr<TrainingJob>, std::vector<TrainingExample>>> eval_of;
  TrainingWork work(
      backend, o.serve_eval > 0 ? o.serve_publish_every : 1 << 30,
      [&](const std::string& name, uint64_t, std::shared_ptr<const LoraWeights>, double eval_loss) {
        if (o.serve_eval_whole) {
          auto& [job, examples] = eval_of.at(name);
          eval_loss = JobTrainer(backend).loss(job->params(), examples, job->config().batch_tokens).value();
        }
        if (!std::isnan(eval_loss)) ++evals;
      },
      [&](const TrainingJob&, const TrainingStepRecord& rec) { trained_tokens += rec.tokens; });
  work.set_unit_budget_ms(o.serve_unit_ms);
  TimedWork timed(work);
  if (with_training) {
    const int64_t per_job = std::max<int64_t>(1, o.serve_batch_tokens / o.seq_len);
    for (int64_t j = 0; j < o.serve_jobs; ++j) {
      TrainingJobConfig c;
      c.targets.rank = int32_t(o.rank);
      c.adamw.lr = 1e-3;
      c.steps = 1 << 20;
      c.batch_tokens = o.serve_batch_tokens;
      c.seed = uint64_t(j);
      const std::string name = "job" + std::to_string(j);
      std::vector<TrainingExample> eval =
          bench::synthetic_examples(o.serve_eval, o.seq_len, ck->config().vocab_size, int(1000 + j));
      auto job = TrainingJob::create(name, ck->config(), c,
                                     bench::synthetic_examples(per_job * 4, o.seq_len, ck->config().vocab_size, int(j)),
                                     o.serve_eval_whole ? std::vector<TrainingExample>{} : eval);
      if (!job.ok()) return false;
      std::shared_ptr<TrainingJob> held(std::move(job.value()));
      eval_of[name] = {held, std::move(eval)};
      work.add(std::move(held));
    }
    worker.value()->set_background(&timed, o.serve_share);
    // Measure in steady state: the first round also transposes every base
    // weight once (the input-gradient cache), a one-time cost.
    const double w0 = bench::now_s();
    while (trained_tokens.load() == 0 && bench::now_s() - w0 < 120)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    trained_tokens = 0;
    timed.record();
  }
  RequestId next = 1;
  auto submit = [&] {
    Request r;
    r.id = next;
    r.prompt = bench::prompt(32, int(next), ck->config().vocab_size);
    r.max_tokens = 64;
    r.sampling.temperature = 0.0f;
    {
      std::lock_guard lock(sink.mu);
      sink.submitted[next] = bench::now_s();
    }
    ++next;
    return worker.value()->submit(std::move(r)).ok();
  };
  for (int64_t i = 0; i < o.streams; ++i)
    if (!submit()) return false;
  const double t0 = bench::now_s();
  int64_t seen_finished = 0;
  while (bench::now_s() - t0 < o.serve_seconds) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    int64_t fin;
    {
      std::lock_guard lock(sink.mu);
      fin = sink.finished;
    }
    for (; seen_finished < fin; ++seen_finished)
      if (!submit()) return false;
  }
  const double secs = bench::now_s() - t0;
  worker.value()->stop(EngineWorker::StopMode::kCancel);
  std::lock_guard lock(sink.mu);
  f.itl_p50_ms = percentile(sink.gaps_ms, 0.5);
  f.itl_p99_ms = percentile(sink.gaps_ms, 0.99);
  f.itl_max_ms = percentile(sink.gaps_ms, 1.0);
  f.ttft_p50_ms = percentile(sink.ttft_ms, 0.5);
  f.ttft_p99_ms = percentile(sink.ttft_ms, 0.99);
  f.decode_tok_s = double(sink.tokens) / secs;
  f.tok_s = double(trained_tokens.load()) / secs;
  const std::vector<double> units = timed.unit_ms();
  f.unit_p50_ms = percentile(units, 0.5);
  f.unit_p99_ms = percentile(units, 0.99);
  f.unit_max_ms = percentile(units, 1.0);
  double unit_total_ms = 0;
  for (double u : units) unit_total_ms += u;
  f.train_time_share = unit_total_ms / (secs * 1e3);
  f.evals = evals.load();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("LoRA training throughput (1 and K concurrent jobs) against prefill, and the memory of K jobs.",
               "train");
  cli::set_conventions(app);
  app.add_option("--model", o.model, "base model folder (default: a random llama-110m in bf16)")->option_text("DIR");
  app.add_option("--jobs", o.jobs, "concurrent jobs of the second run (default 8)")->option_text("K");
  app.add_option("--steps", o.steps, "timed optimizer steps per run (default 4)")->option_text("N");
  app.add_option("--batch-tokens", o.batch_tokens, "tokens per job per step (default 512)")->option_text("T");
  app.add_option("--seq-len", o.seq_len, "tokens per example (default 128)")->option_text("L");
  app.add_option("--rank", o.rank, "LoRA rank on all seven modules (default 16)")->option_text("R");
  app.add_option("--threads", o.threads, "compute threads (default: all)")->option_text("N");
  app.add_option("--reps", o.reps, "prefill repetitions, best kept (default 3)")->option_text("N");
  app.add_flag("--recompute", o.recompute, "recompute activations in the backward");
  app.add_option("--serve-seconds", o.serve_seconds, "co-serving runs' length; 0: skip them (default 20)")
      ->option_text("S");
  app.add_option("--streams", o.streams, "concurrent decode streams while serving (default 4)")->option_text("N");
  app.add_option("--serve-jobs", o.serve_jobs, "jobs training beside serving (default 4)")->option_text("K");
  app.add_option("--serve-share", o.serve_share, "training's share of the worker's busy time (default 0.25)")
      ->option_text("X");
  app.add_option("--serve-batch-tokens", o.serve_batch_tokens, "tokens per job per round beside serving (default 128)")
      ->option_text("T");
  app.add_flag("--json", o.json, "print JSON instead of the table");
  app.add_option("--serve-unit-ms", o.serve_unit_ms,
                 "training's time per turn beside serving (TrainingWork's unit budget; default 2)")
      ->option_text("MS");
  app.add_flag("--serve-only", o.serve_only, "only the co-serving runs (no throughput or memory runs)");
  app.add_option("--serve-eval", o.serve_eval,
                 "eval examples per co-serving job (of --seq-len tokens); each published version is evaluated on "
                 "them (default 0: none, and no versions)")
      ->option_text("N");
  app.add_option("--serve-publish-every", o.serve_publish_every, "with --serve-eval: steps between versions (default 5)")
      ->option_text("N");
  app.add_flag("--serve-eval-whole", o.serve_eval_whole,
               "with --serve-eval: evaluate each version whole in the publish callback, as a node did before the "
               "pass ran in units (the baseline to compare with)");
  CLI11_PARSE(app, argc, argv);

  std::string model = o.model;
  std::filesystem::path tmp;
  if (model.empty()) {
    tmp = std::filesystem::temp_directory_path() / ("myriad_bench_train_" + std::to_string(getpid()));
    MakeModelOptions mo;
    mo.shape = "llama-110m";
    mo.seed = 1;
    mo.dtype = DType::kBF16;
    mo.out_dir = tmp.string();
    if (Status st = make_model(mo); !st.ok()) {
      std::fprintf(stderr, "train: %s\n", st.error().to_string().c_str());
      return 1;
    }
    model = tmp.string();
  }
  auto ck = Checkpoint::load(model);
  if (!ck.ok()) {
    std::fprintf(stderr, "train: %s\n", ck.error().to_string().c_str());
    return 1;
  }
  std::optional<Figures> pre, one, many;
  std::vector<AttentionTiming> attention;
  if (!o.serve_only) {
    attention = attention_timings(ck.value()->config(),
                                  o.seq_len == 512 ? std::vector<int64_t>{512} : std::vector<int64_t>{o.seq_len, 512});
    pre = in_child([&](Figures& f) { return prefill(o, ck.value(), f); });
    one = in_child([&](Figures& f) { return train(o, ck.value(), 1, f); });
    many = in_child([&](Figures& f) { return train(o, ck.value(), o.jobs, f); });
  }
  std::optional<Figures> alone, beside;
  if (o.serve_seconds > 0) {
    alone = in_child([&](Figures& f) { return serve(o, ck.value(), false, f); });
    beside = in_child([&](Figures& f) { return serve(o, ck.value(), true, f); });
    if (!alone || !beside) {
      std::fprintf(stderr, "train: a co-serving run failed\n");
      return 1;
    }
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  if (!o.serve_only && (!pre || !one || !many)) {
    std::fprintf(stderr, "train: a run failed\n");
    return 1;
  }
  if (o.serve_only && !alone) {
    std::fprintf(stderr, "train: --serve-only needs --serve-seconds > 0\n");
    return 2;
  }
  const char* model_name = o.model.empty() ? "llama-110m bf16 (random)" : o.model.c_str();
  if (o.json) {
    std::printf("{\"model\": \"%s\", \"kernel\": \"%s\", \"seq_len\": %lld, \"rank\": %lld", model_name,
                gpu::cpu::matmul_kernel_name(), (long long)o.seq_len, (long long)o.rank);
    if (pre) {
      const double ratio1 = one->tok_s / pre->tok_s, ratio_k = many->tok_s / pre->tok_s;
      const double mem_ratio = many->peak_rss_mb / (double(o.jobs) * one->peak_rss_mb);
      std::printf(
          ", \"batch_tokens_per_job\": %lld, \"recompute\": %s, \"prefill_tok_s\": %.1f, \"train_1_tok_s\": %.1f, "
          "\"train_%lld_tok_s\": %.1f, \"train_1_vs_prefill\": %.3f, \"train_%lld_vs_prefill\": %.3f, "
          "\"rss_1_mb\": %.0f, \"rss_%lld_mb\": %.0f, \"rss_%lld_vs_%lldx1\": %.3f, \"activation_mb_1\": %.1f, "
          "\"activation_mb_%lld\": %.1f",
          (long long)o.batch_tokens, o.recompute ? "true" : "false", pre->tok_s, one->tok_s, (long long)o.jobs,
          many->tok_s, ratio1, (long long)o.jobs, ratio_k, one->peak_rss_mb, (long long)o.jobs, many->peak_rss_mb,
          (long long)o.jobs, (long long)o.jobs, mem_ratio, one->activation_mb, (long long)o.jobs, many->activation_mb);
    }
    if (!attention.empty()) {
      std::printf(", \"attention_fwd_bwd_ms\": [");
      for (size_t i = 0; i < attention.size(); ++i)
        std::printf("%s{\"kernels\": \"%s\", \"tokens\": %lld, \"ms\": %.3f}", i ? ", " : "",
                    gpu::cpu::lora_isa_name(attention[i].isa), (long long)attention[i].len, attention[i].ms);
      std::printf("]");
    }
    if (alone)
      std::printf(", \"serve\": {\"streams\": %lld, \"jobs\": %lld, \"share\": %.2f, \"batch_tokens_per_job\": %lld, "
                  "\"itl_p50_ms\": %.2f, \"itl_p99_ms\": %.2f, \"itl_max_ms\": %.2f, \"decode_tok_s\": %.1f, "
                  "\"with_training\": {\"itl_p50_ms\": %.2f, \"itl_p99_ms\": %.2f, \"itl_max_ms\": %.2f, "
                  "\"decode_tok_s\": %.1f, \"train_tok_s\": %.1f, \"ttft_p50_ms\": %.1f, \"ttft_p99_ms\": %.1f, "
                  "\"unit_p50_ms\": %.2f, \"unit_p99_ms\": %.2f, \"unit_max_ms\": %.2f, \"time_share\": %.3f, "
                  "\"evals\": %lld}, "
                  "\"ttft_p50_ms\": %.1f, "
                  "\"ttft_p99_ms\": %.1f, \"p99_ratio\": %.3f}",
                  (long long)o.streams, (long long)o.serve_jobs, o.serve_share, (long long)o.serve_batch_tokens,
                  alone->itl_p50_ms, alone->itl_p99_ms, alone->itl_max_ms, alone->decode_tok_s, beside->itl_p50_ms,
                  beside->itl_p99_ms, beside->itl_max_ms, beside->decode_tok_s, beside->tok_s, beside->ttft_p50_ms,
                  beside->ttft_p99_ms, beside->unit_p50_ms, beside->unit_p99_ms, beside->unit_max_ms,
                  beside->train_time_share, (long long)beside->evals, alone->ttft_p50_ms, alone->ttft_p99_ms, beside->itl_p99_ms / alone->itl_p99_ms);
    std::printf("}\n");
    return 0;
  }
  std::printf("model %s, %s kernels, examples of %lld tokens, rank %lld on 7 modules%s\n", model_name,
              gpu::cpu::matmul_kernel_name(), (long long)o.seq_len, (long long)o.rank,
              o.recompute ? ", recompute" : "");
  if (pre) {
    const double ratio1 = one->tok_s / pre->tok_s, ratio_k = many->tok_s / pre->tok_s;
    const double mem_ratio = many->peak_rss_mb / (double(o.jobs) * one->peak_rss_mb);
    std::printf("\n%lld tokens per job per step\n\n", (long long)o.batch_tokens);
    std::printf("| run | tokens/s | vs prefill | peak RSS MB | activations MB |\n|---|---|---|---|---|\n");
    std::printf("| prefill (%lld tokens a step) | %.0f | 1.00 | %.0f | |\n", (long long)o.batch_tokens, pre->tok_s,
                pre->peak_rss_mb);
    std::printf("| train, 1 job | %.0f | %.2f | %.0f | %.0f |\n", one->tok_s, ratio1, one->peak_rss_mb,
                one->activation_mb);
    std::printf("| train, %lld jobs packed | %.0f | %.2f | %.0f | %.0f |\n", (long long)o.jobs, many->tok_s, ratio_k,
                many->peak_rss_mb, many->activation_mb);
    std::printf(
        "\n%lld jobs in one process: %.0f MB peak RSS against %lld x %.0f = %.0f MB as separate processes (%.2fx)\n",
        (long long)o.jobs, many->peak_rss_mb, (long long)o.jobs, one->peak_rss_mb, double(o.jobs) * one->peak_rss_mb,
        mem_ratio);
  }
  if (!attention.empty()) {
    std::printf("\nattention forward + backward of one example, all heads, one thread (kernel sets interleaved, best of 5):\n");
    auto fastest_ms = [&](int64_t len) {
      for (const AttentionTiming& a : attention)
        if (a.len == len && a.isa == gpu::cpu::lora_best_isa()) return a.ms;
      return 0.0;
    };
    for (const AttentionTiming& a : attention)
      std::printf("  %lld tokens, %s: %.2f ms (%.2fx the %s kernels' time)\n", (long long)a.len,
                  gpu::cpu::lora_isa_name(a.isa), a.ms, a.ms / fastest_ms(a.len),
                  gpu::cpu::lora_isa_name(gpu::cpu::lora_best_isa()));
  }
  if (alone) {
    std::printf("\nco-serving: %lld greedy streams of the base, %lld jobs training beside them (share %.2f, %lld tokens "
                "per job per round)\n\n",
                (long long)o.streams, (long long)o.serve_jobs, o.serve_share, (long long)o.serve_batch_tokens);
    std::printf("| run | ITL p50 ms | ITL p99 ms | ITL max ms | TTFT p50 ms | TTFT p99 ms | decode tok/s | train tok/s |\n"
                "|---|---|---|---|---|---|---|---|\n");
    std::printf("| serving alone | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | |\n", alone->itl_p50_ms, alone->itl_p99_ms,
                alone->itl_max_ms, alone->ttft_p50_ms, alone->ttft_p99_ms, alone->decode_tok_s);
    std::printf("| serving + training | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", beside->itl_p50_ms,
                beside->itl_p99_ms, beside->itl_max_ms, beside->ttft_p50_ms, beside->ttft_p99_ms, beside->decode_tok_s,
                beside->tok_s);
    std::printf("\ntraining's units (what a waiting step waits for): p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
                "%.0f%% of the time in them\n",
                beside->unit_p50_ms, beside->unit_p99_ms, beside->unit_max_ms, 100 * beside->train_time_share);
    std::printf("p99 with training / alone: %.2fx (goal 1.5x)\n", beside->itl_p99_ms / alone->itl_p99_ms);
    if (o.serve_eval > 0)
      std::printf("eval passes beside serving: %lld (%lld examples each, a version every %lld steps, %s)\n",
                  (long long)beside->evals, (long long)o.serve_eval, (long long)o.serve_publish_every,
                  o.serve_eval_whole ? "whole, in the publish callback" : "in units");
  }
  return 0;
}
