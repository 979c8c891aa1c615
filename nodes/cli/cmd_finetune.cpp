// `myriad finetune`: trains one LoRA adapter in-process on the CPU or a CUDA
// device (--device; the same
// TrainingJob / JobTrainer a node runs), draws its progress on stderr and
// writes the adapter as a PEFT folder (into a temporary sibling folder, then
// renamed into place, so --out never holds half an adapter).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "clock_text.h"
#include "commands.h"
#include "gpu/cpu/lora_trainer.h"
#include "output_folder.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/lora_trainer.h"
#endif
#include "runtime/checkpoint.h"
#include "runtime/peft_adapter.h"
#include "runtime/tokenizer.h"
#include "runtime/training/loss_curve.h"
#include "runtime/training/training_job.h"

namespace myriad::cli {

namespace {

namespace fs = std::filesystem;

int fail(const Error& e, int code) {
  std::fprintf(stderr, "finetune: %s\n", e.to_string().c_str());
  return code;
}

Error bad(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, what); }

Result<LoraTargets> parse_targets(const std::string& list, int64_t rank, double alpha) {
  std::vector<std::string> names;
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ','))
    if (!name.empty()) names.push_back(name);
  auto t = lora_targets_named(names, int32_t(rank), float(alpha));
  if (!t.ok()) return bad("--targets: " + t.error().message);
  return t;
}

Result<std::unique_ptr<LoraTrainingBackend>> make_backend(const std::string& device,
                                                          std::shared_ptr<const Checkpoint> ckpt,
                                                          int threads) {
  if (device == "cuda") {
#ifdef MYRIAD_HAVE_CUDA
    auto b = gpu::cuda::CudaLoraTrainingBackend::create(std::move(ckpt));
    if (!b.ok()) return make_error(b.error().code, "--device cuda: " + b.error().message);
    return std::unique_ptr<LoraTrainingBackend>(std::move(b.value()));
#else
    return make_error(ErrorCode::kUnsupported,
                      "--device cuda: this build has no CUDA (no toolkit at build time)");
#endif
  }
  return std::unique_ptr<LoraTrainingBackend>(
      std::make_unique<gpu::cpu::CpuLoraTrainingBackend>(std::move(ckpt), threads));
}

}  // namespace

int cmd_finetune(const FinetuneArgs& a) {
  if (a.rank < 1 || a.rank > 256) return fail(bad("--rank must be in [1, 256]"), 2);
  if (!(a.alpha > 0)) return fail(bad("--alpha must be > 0"), 2);
  if (a.steps < 0) return fail(bad("--steps must be >= 0"), 2);
  if (a.steps == 0 && !(a.epochs > 0)) return fail(bad("--epochs must be > 0"), 2);
  if (!(a.lr > 0) || !std::isfinite(a.lr)) return fail(bad("--lr must be > 0"), 2);
  if (a.batch_tokens < 1) return fail(bad("--batch-tokens must be >= 1"), 2);
  if (a.grad_accum < 1) return fail(bad("--grad-accum must be >= 1"), 2);
  if (a.seed < 0) return fail(bad("--seed must be >= 0"), 2);
  if (a.overflow != "truncate" && a.overflow != "reject")
    return fail(bad("--overflow must be truncate or reject"), 2);
  if (a.device != "cpu" && a.device != "cuda")
    return fail(bad("--device " + a.device + ": expected cpu or cuda"), 2);
  auto targets = parse_targets(a.targets, a.rank, a.alpha);
  if (!targets.ok()) return fail(targets.error(), 2);

  auto ckpt = Checkpoint::load(a.model);
  if (!ckpt.ok()) return fail(ckpt.error(), 1);
  auto tok = Tokenizer::load(a.model);
  if (!tok.ok()) return fail(tok.error(), 1);
  const ModelConfig& cfg = ckpt.value()->config();
  DatasetOptions dopt;
  dopt.max_tokens =
      a.max_tokens > 0 ? std::min(a.max_tokens, cfg.max_position_embeddings) : cfg.max_position_embeddings;
  dopt.overflow = a.overflow == "reject" ? OverflowPolicy::kReject : OverflowPolicy::kTruncate;
  if (!cfg.eos_token_ids.empty() && tok.value()->eos_ids().empty()) dopt.eos = int32_t(cfg.eos_token_ids[0]);
  auto train = load_training_jsonl(a.data, *tok.value(), dopt);
  if (!train.ok()) return fail(train.error(), 1);
  std::vector<TrainingExample> eval;
  if (a.eval) {
    auto e = load_training_jsonl(*a.eval, *tok.value(), dopt);
    if (!e.ok()) return fail(e.error(), 1);
    eval = std::move(e.value());
  }
  const size_t n_train = train.value().size();

  TrainingJobConfig jc;
  jc.targets = targets.value();
  jc.adamw.lr = a.lr;
  jc.adamw.weight_decay = a.weight_decay;
  jc.steps = a.steps;
  jc.epochs = a.epochs;
  jc.batch_tokens = a.batch_tokens;
  jc.grad_accum = a.grad_accum;
  jc.warmup_steps = a.warmup_steps;
  jc.max_grad_norm = a.max_grad_norm;
  jc.seed = uint64_t(a.seed);
  auto job = TrainingJob::create(fs::path(a.out).filename().string(), cfg, jc, std::move(train.value()),
                                 std::move(eval));
  if (!job.ok()) return fail(job.error(), 2);
  TrainingJob& j = *job.value();

  std::string checkpoint;
  if (a.checkpoint_dir) {
    if (a.checkpoint_every < 1) return fail(bad("--checkpoint-every must be >= 1"), 2);
    std::error_code ec;
    fs::create_directories(*a.checkpoint_dir, ec);
    if (ec) return fail(make_error(ErrorCode::kIo, *a.checkpoint_dir + ": " + ec.message()), 1);
    checkpoint = *a.checkpoint_dir + "/checkpoint.safetensors";
    auto resumed = j.load_checkpoint(checkpoint);
    if (!resumed.ok()) return fail(resumed.error(), 1);
    if (resumed.value())
      std::fprintf(stderr, "finetune: resumed from %s at step %lld\n", checkpoint.c_str(),
                   (long long)j.steps_done());
  }

  auto made = make_backend(a.device, ckpt.value(), int(a.threads));
  if (!made.ok()) return fail(made.error(), 1);
  LoraTrainingBackend& backend = *made.value();
  backend.set_recompute(a.recompute);
  JobTrainer trainer(backend);
  trainer.add(&j);

  const bool tty = ::isatty(STDERR_FILENO) != 0;
  const int64_t total = j.total_steps();
  const int64_t every = std::max<int64_t>(1, total / 20);
  std::fprintf(stderr, "finetune: %zu examples, %lld steps, rank %lld, %lld trainable values\n", n_train,
               (long long)total, (long long)a.rank, (long long)j.params().size());
  if (j.done())
    std::fprintf(stderr, "finetune: the checkpoint is of the finished job; writing its adapter\n");
  const auto t0 = std::chrono::steady_clock::now();
  int64_t tokens = 0;
  const int64_t first_step = j.steps_done();  // > 0 when resumed
  while (!trainer.idle()) {
    auto recs = trainer.round();
    if (!recs.ok()) return fail(recs.error(), 1);
    for (const auto& [_, rec] : recs.value()) {
      tokens += rec.tokens;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double tps = secs > 0 ? double(tokens) / secs : 0.0;
      const double eta = double(total - rec.step) * secs / double(rec.step - first_step);
      if (tty) {
        const int width = 30, filled = int(width * rec.step / total);
        std::fprintf(stderr, "\r[%s%s] step %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  ETA %s ",
                     std::string(size_t(filled), '#').c_str(),
                     std::string(size_t(width - filled), '.').c_str(), (long long)rec.step, (long long)total,
                     rec.loss, rec.lr, tps, clock_text(eta).c_str());
        if (rec.step == total) std::fprintf(stderr, "\n");
      } else if (rec.step % every == 0 || rec.step == total || rec.step == 1) {
        std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.2e grad_norm %.3f tokens_per_s %.0f eta %s\n",
                     (long long)rec.step, (long long)total, rec.loss, rec.lr, rec.grad_norm, tps,
                     clock_text(eta).c_str());
      }
      std::fflush(stderr);
      if (!checkpoint.empty() && (rec.step % a.checkpoint_every == 0 || rec.step == total))
        if (Status st = j.save_checkpoint(checkpoint); !st.ok()) return fail(st.error(), 1);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  nlohmann::json out = {{"out", a.out},
                        {"examples", n_train},
                        {"steps", j.steps_done()},
                        {"train_loss_first", mean_loss_first(j.history())},
                        {"train_loss_last", mean_loss_last(j.history())},
                        {"tokens", tokens},
                        {"tokens_per_s", secs > 0 ? double(tokens) / secs : 0.0},
                        {"seconds", secs},
                        {"rank", a.rank},
                        {"trainable_params", j.params().size()},
                        {"activation_bytes", backend.activation_bytes()}};
  if (!j.eval_examples().empty()) {
    auto ev = trainer.evaluate(j);
    if (!ev.ok()) return fail(ev.error(), 1);
    out["eval_loss"] = ev.value();
  }

  // Written beside --out, checked by loading it back, then renamed into place.
  const fs::path dest = fs::absolute(a.out);
  const fs::path tmp = temp_sibling(dest);
  std::error_code ec;
  const LoraWeights w = to_lora_weights(j.params(), dest.filename().string());
  if (Status st = save_peft_adapter(tmp.string(), w, a.model); !st.ok()) return fail(st.error(), 1);
  // The loss curve beside the adapter (PEFT ignores other files).
  std::vector<std::pair<int64_t, double>> eval_points;
  if (out.contains("eval_loss")) eval_points.emplace_back(j.steps_done(), out["eval_loss"].get<double>());
  for (const auto& [name, text] :
       {std::pair<std::string, std::string>{"training_log.csv", loss_curve_csv(j.history())},
        {"loss.svg", loss_curve_svg(j.history(), "loss of " + dest.filename().string(), eval_points)}}) {
    if (Status st = write_synced((tmp / name).string(), text); !st.ok()) return fail(st.error(), 1);
  }
  PeftLoadOptions lo;
  lo.max_rank = 256;
  if (auto back = load_peft_adapter(tmp.string(), cfg, lo); !back.ok()) {
    fs::remove_all(tmp, ec);
    return fail(back.error(), 1);
  }
  if (Status st = move_into_place(tmp, dest); !st.ok()) return fail(st.error(), 1);
  std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  return 0;
}

}  // namespace myriad::cli
