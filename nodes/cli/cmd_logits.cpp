// `myriad logits`: scores a prompt on the Engine over the CPU executor
// (a request with prompt_logits and no output tokens), printing logits.
//   myriad logits --model DIR --ids 1,2,3 [--all-positions] [--threads N] [--adapter DIR[:w]]...
//                 [--kv-cache-dtype auto|f32|bf16|f16]
//     -> {"logits": [[...vocab floats...], ...]}
//   myriad logits --model DIR --batch FILE.json  (rows with their own adapters, batched; lora_cli.h)
//   --moe MIXTURE_DIR [--moe-top-k K]: route the ids (less a leading BOS) to
//     the mixture's experts (moe_cli.h); the output adds "experts" (in
//     --batch: on each row that names no adapters)
// One row per position: only the last position by default, every position
// with --all-positions. Floats are printed with %.9g (round-trip exact).
#include <cstdio>
#include <optional>
#include <string>

#include "args.h"
#include "commands.h"
#include "engine_run.h"
#include "lora_cli.h"
#include "moe_cli.h"
#include "runtime/checkpoint.h"

namespace myriad::cli {
namespace {

int fail(const Error& e, int code = 1) {
  std::fprintf(stderr, "myriad logits: %s\n", e.to_string().c_str());
  return code;
}

}  // namespace

int cmd_logits(const LogitsArgs& args) {
  const std::string& model = args.model;
  auto kv_dtype = kv_cache_dtype(args.kv_cache_dtype);
  if (!kv_dtype.ok()) return fail(kv_dtype.error(), 2);
  if (args.batch) {
    if (args.ids || !args.adapter.empty() || args.all_positions)
      return fail(make_error(ErrorCode::kInvalidArgument, "--batch takes ids and adapters from the file"), 2);
    return run_logits_batch(model, *args.batch, int(args.threads), kv_dtype.value(), args.moe);
  }
  if (!args.ids) return fail(make_error(ErrorCode::kInvalidArgument, "--ids is required"), 2);
  auto ids = parse_id_list(*args.ids);
  if (!ids.ok()) return fail(ids.error(), 2);
  if (ids->empty()) return fail(make_error(ErrorCode::kInvalidArgument, "--ids is empty"), 2);

  auto ckpt = Checkpoint::load(model);
  if (!ckpt.ok()) return fail(ckpt.error());
  const auto& cfg = (*ckpt)->config();
  const int64_t n = int64_t(ids->size());
  if (cfg.max_position_embeddings > 0 && n > cfg.max_position_embeddings)
    return fail(make_error(ErrorCode::kInvalidArgument, std::to_string(n) + " ids exceed max_position_embeddings " +
                                                            std::to_string(cfg.max_position_embeddings)), 2);
  auto adapter = read_adapter_mixture(args.adapter, cfg);
  if (!adapter.ok()) return fail(adapter.error(), adapter.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  if (args.moe.given() && !args.adapter.empty())
    return fail(make_error(ErrorCode::kInvalidArgument, "give --adapter or --moe, not both"), 2);

  std::vector<CliRequest> one(1);
  one[0].adapter = *adapter;
  std::optional<RoutedExperts> routed;
  std::optional<CliMixture> mixture_kept;  // to resolve a route made in the prefill
  if (args.moe.given()) {
    auto mixture = CliMixture::read(args.moe, ckpt.value(), int(args.threads));
    if (!mixture.ok()) return fail(mixture.error(), mixture.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
    auto chosen = mixture->route_into(ids.value(), ids.value(), one[0]);
    if (!chosen.ok()) return fail(chosen.error());
    routed = std::move(chosen.value());
    if (routed->in_prefill) mixture_kept = std::move(mixture.value());
  }
  one[0].request.prompt = ids.value();
  one[0].request.max_tokens = 0;  // score the prompt only
  one[0].request.prompt_logits = args.all_positions ? LogitsRequest::kAll : LogitsRequest::kLast;
  LogitsCollector sink;
  const Status st = run_on_engine(ckpt.value(), std::move(one), {int(args.threads), kv_dtype.value(), nullptr}, sink);
  if (!st.ok()) return fail(st.error(), st.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  if (sink.error) return fail(*sink.error);
  if (routed && routed->in_prefill) mixture_kept->resolve(*routed, sink.expert_weights[1]);
  std::string out = "{\"logits\": [" + logits_rows_json(sink.logits[1], size_t(cfg.vocab_size)) + "]";
  if (routed) out += ", \"experts\": " + routed->json().dump();
  out += "}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace myriad::cli
