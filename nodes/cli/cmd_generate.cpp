// `myriad generate`: one request on the Engine over the CPU executor (the
// engine's output processor streams the text and applies stop strings).
//   myriad generate --model DIR (--prompt TEXT | --ids 1,2,3) [--max-tokens N]
//       [--temperature T] [--top-p P] [--top-k K] [--seed S]
//       [--repetition-penalty R] [--presence-penalty P] [--frequency-penalty F]
//       [--chat] [--ignore-eos] [--json] [--stop STR]... [--threads N]
//       [--kv-cache-dtype auto|f32|bf16|f16]   (auto: the model's dtype)
// Streams the generated text to stdout (without a tokenizer in the model
// folder: the generated ids, space separated). --json prints instead
//   {"ids": [generated ids only], "text": "..."}   (text "" without a tokenizer)
//
// --prompt is encoded with the tokenizer's special tokens (BOS); --chat wraps
// it as one user message through the chat template (add_generation_prompt)
// and encodes that without adding special tokens. Sampling defaults come
// from generation_config.json (temperature, else 1.0; top_p; top_k;
// repetition_penalty); temperature 0 is greedy. Generation stops at an eos id
// (generation_config.json's and config.json's; kept in "ids", not in the
// text) unless --ignore-eos, at a stop string (the text ends before it; the
// token that completed it is the last id), at --max-tokens (default 16), or
// at max_position_embeddings. Several --adapter DIR:W flags are one adapter,
// their weighted mixture (mix_lora). --moe MIXTURE_DIR routes the prompt
// (its text without special tokens, or --ids less a leading BOS) to the
// mixture's experts, served as a per-row mixture of slots; --json adds
// "experts": [{"name", "weight", "similarity"}], else they go to stderr.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "engine_run.h"
#include "lora_cli.h"
#include "moe_cli.h"
#include "runtime/chat_template.h"
#include "runtime/checkpoint.h"
#include "runtime/engine_events.h"
#include "runtime/tokenizer.h"

namespace myriad::cli {
namespace {

using nlohmann::json;

int fail(const Error& e, int code = 1) {
  std::fprintf(stderr, "myriad generate: %s\n", e.to_string().c_str());
  return code;
}

Error bad(const std::string& msg) { return make_error(ErrorCode::kInvalidArgument, msg); }


// Prints each text delta as it comes (unless --json) and keeps the ids.
// "experts: expert-2 (1.000), ..." on stderr.
void print_experts(const RoutedExperts& routed) {
  std::string line;
  for (size_t i = 0; i < routed.names.size(); ++i) {
    char weight[32];
    std::snprintf(weight, sizeof weight, " (%.3f)", routed.choices[i].weight);
    if (i) line += ", ";
    line += routed.names[i];
    line += weight;
  }
  std::fprintf(stderr, "experts: %s%s\n", line.c_str(), routed.in_prefill ? " (routed in the prefill)" : "");
}

class CliSink final : public EventSink {
 public:
  CliSink(bool stream_text, bool stream_ids) : stream_text_(stream_text), stream_ids_(stream_ids) {}
  void on_event(const RequestEvent& e) override {
    if (e.kind == EventKind::kToken) {
      ids.push_back(e.token);
      if (stream_ids_) {
        if (ids.size() > 1) print(" ");
        print(std::to_string(e.token));
      }
    }
    text += e.text;
    if (stream_text_) print(e.text);
    if (e.kind == EventKind::kFailed) error = e.error;
    if (e.num_expert_weights > 0)
      expert_weights.assign(e.expert_weights.begin(), e.expert_weights.begin() + e.num_expert_weights);
  }
  std::vector<int32_t> ids;
  std::vector<float> expert_weights;  // routed in the prefill: each expert's weight
  std::string text;
  std::optional<Error> error;

 private:
  static void print(std::string_view s) {
    if (s.empty()) return;
    std::fwrite(s.data(), 1, s.size(), stdout);
    std::fflush(stdout);
  }
  bool stream_text_, stream_ids_;
};

}  // namespace

int cmd_generate(const GenerateArgs& args) {
  const std::string& model = args.model;
  const bool has_prompt = args.prompt.has_value(), has_ids = args.ids.has_value();
  if (has_prompt == has_ids) return fail(bad("give exactly one of --prompt and --ids"), 2);
  if (args.chat && !has_prompt) return fail(bad("--chat needs --prompt"), 2);

  auto ckpt = Checkpoint::load(model);
  if (!ckpt.ok()) return fail(ckpt.error());
  const auto& cfg = (*ckpt)->config();
  const auto& gen = (*ckpt)->generation_config();

  std::shared_ptr<const Tokenizer> tok;
  if (std::filesystem::exists(model + "/tokenizer.json")) {
    auto t = Tokenizer::load(model);
    if (!t.ok()) return fail(t.error());
    tok = t.value();
  }
  const auto& stops = args.stop;
  if (!tok && (has_prompt || !stops.empty()))
    return fail(make_error(ErrorCode::kNotFound, model + " has no tokenizer.json (needed for --prompt/--stop)"), 2);

  // Prompt ids.
  std::vector<int32_t> prompt;
  if (has_ids) {
    auto ids = parse_id_list(*args.ids);
    if (!ids.ok()) return fail(ids.error(), 2);
    prompt = ids.value();
  } else if (args.chat) {
    auto tmpl = chat_template_from_config(tok->config().raw);
    if (!tmpl.ok()) return fail(tmpl.error());
    const json messages = json::array({json{{"role", "user"}, {"content", *args.prompt}}});
    auto text = render_chat_template(tmpl.value(), messages, /*add_generation_prompt=*/true, chat_template_context(tok->config()));
    if (!text.ok()) return fail(text.error());
    prompt = tok->encode(text.value(), /*add_special_tokens=*/false);
  } else {
    prompt = tok->encode(*args.prompt, /*add_special_tokens=*/true);
  }
  if (prompt.empty()) return fail(bad("the prompt is empty"), 2);

  // Sampling.
  SamplingParams sp;
  const double temperature = args.temperature.value_or(gen.temperature.value_or(1.0f));
  const double top_p = args.top_p.value_or(gen.top_p.value_or(1.0f));
  const int64_t top_k = args.top_k.value_or(gen.top_k.value_or(0));
  const double rep = args.repetition_penalty.value_or(gen.repetition_penalty.value_or(1.0f));
  const int64_t max_tokens = args.max_tokens;
  auto kv_dtype = kv_cache_dtype(args.kv_cache_dtype);
  if (!kv_dtype.ok()) return fail(kv_dtype.error(), 2);
  if (temperature < 0) return fail(bad("--temperature must be >= 0"), 2);
  if (!(top_p > 0 && top_p <= 1)) return fail(bad("--top-p must be in (0, 1]"), 2);
  if (top_k < 0) return fail(bad("--top-k must be >= 0"), 2);
  if (rep <= 0) return fail(bad("--repetition-penalty must be > 0"), 2);
  if (max_tokens < 0) return fail(bad("--max-tokens must be >= 0"), 2);
  sp.temperature = float(temperature);
  sp.top_p = float(top_p);
  sp.top_k = int32_t(top_k);
  sp.seed = uint64_t(args.seed);
  sp.repetition_penalty = float(rep);
  sp.presence_penalty = float(args.presence_penalty);
  sp.frequency_penalty = float(args.frequency_penalty);

  std::vector<int64_t> eos = gen.eos_token_ids;
  eos.insert(eos.end(), cfg.eos_token_ids.begin(), cfg.eos_token_ids.end());
  const bool ignore_eos = args.ignore_eos;

  if (cfg.max_position_embeddings > 0 && int64_t(prompt.size()) > cfg.max_position_embeddings)
    return fail(bad(std::to_string(prompt.size()) + " prompt tokens exceed max_position_embeddings " +
                    std::to_string(cfg.max_position_embeddings)), 2);
  // The last sampled token is never fed back, so it may sit one past the
  // context: at most max_position_embeddings - prompt + 1 new tokens.
  int64_t new_tokens = max_tokens;
  if (cfg.max_position_embeddings > 0)
    new_tokens = std::min(new_tokens, cfg.max_position_embeddings - int64_t(prompt.size()) + 1);
  auto adapter = read_adapter_mixture(args.adapter, cfg);  // --adapter DIR[:w], repeatable
  if (!adapter.ok()) return fail(adapter.error(), adapter.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  if (args.moe.given() && !args.adapter.empty()) return fail(bad("give --adapter or --moe, not both"), 2);
  std::optional<CliMixture> mixture;
  if (args.moe.given()) {
    auto m = CliMixture::read(args.moe, ckpt.value(), int(args.threads));
    if (!m.ok()) return fail(m.error(), m.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
    mixture = std::move(m.value());
  }

  const bool as_json = args.json;
  CliSink sink(/*stream_text=*/!as_json && tok != nullptr, /*stream_ids=*/!as_json && tok == nullptr);
  CliRequest r;
  r.adapter = *adapter;
  std::optional<RoutedExperts> routed;
  if (mixture) {
    // Routed from what the user wrote, as the corpus lines were embedded.
    const std::vector<int32_t> route_ids = has_prompt ? tok->encode(*args.prompt, /*add_special_tokens=*/false) : prompt;
    auto chosen = mixture->route_into(route_ids, prompt, r);
    if (!chosen.ok()) return fail(chosen.error());
    routed = std::move(chosen.value());
    if (routed->in_prefill && new_tokens == 0)
      return fail(bad("--max-tokens 0 runs no prefill to route in (give --moe-route pass)"), 2);
    if (!args.json && !routed->in_prefill) print_experts(*routed);
  }
  if (new_tokens > 0) {
    r.request.prompt = prompt;
    r.request.sampling = sp;
    r.request.max_tokens = uint32_t(new_tokens);
    if (!ignore_eos)
      for (int64_t id : eos) r.request.stop_token_ids.push_back(int32_t(id));
    r.request.stop = stops;
    std::vector<CliRequest> one;
    one.push_back(std::move(r));
    const Status st = run_on_engine(ckpt.value(), std::move(one), {int(args.threads), kv_dtype.value(), tok}, sink);
    if (!st.ok()) return fail(st.error(), st.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
    if (sink.error) return fail(*sink.error);
  }
  if (routed && routed->in_prefill) {
    mixture->resolve(*routed, sink.expert_weights);
    if (!args.json) print_experts(*routed);
  }

  if (as_json) {
    json j = {{"ids", sink.ids}, {"text", sink.text}};
    if (routed) j["experts"] = routed->json();
    std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  return 0;
}

}  // namespace myriad::cli
