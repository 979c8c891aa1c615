// `myriad generate`: autoregressive generation on the CPU backend.
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
// at max_position_embeddings.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "gpu/cpu/cpu_executor.h"
#include "lora_cli.h"
#include "runtime/chat_template.h"
#include "runtime/checkpoint.h"
#include "runtime/incremental_decoder.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/tokenizer.h"

namespace myriad::cli {
namespace {

using nlohmann::json;

int fail(const Error& e, int code = 1) {
  std::fprintf(stderr, "myriad generate: %s\n", e.to_string().c_str());
  return code;
}

Error bad(const std::string& msg) { return make_error(ErrorCode::kInvalidArgument, msg); }

// tokenizer_config.json as a chat template sees it (special tokens as strings).
json template_context(const TokenizerConfig& config) {
  json ctx = config.raw.is_object() ? config.raw : json::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "pad_token"}) ctx.erase(key);
  ctx.update(config.template_variables());
  return ctx;
}

// Text released so far and the stop-string search over what is held back.
class StopScanner {
 public:
  explicit StopScanner(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const auto& s : stops_) hold_ = std::max(hold_, s.size() > 0 ? s.size() - 1 : 0);
  }
  // Appends decoded text; returns what may be released now. Sets stopped()
  // when a stop string appears (the text is cut before it).
  std::string push(const std::string& piece) {
    text_ += piece;
    size_t cut = std::string::npos;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      const size_t from = released_ > s.size() ? released_ - s.size() : 0;
      const size_t at = text_.find(s, from);
      if (at != std::string::npos && (cut == std::string::npos || at < cut)) cut = at;
    }
    if (cut != std::string::npos) {
      stopped_ = true;
      text_.resize(std::max(cut, released_));
      return release(text_.size());
    }
    return release(text_.size() > hold_ ? text_.size() - hold_ : 0);
  }
  std::string finish() { return release(text_.size()); }
  bool stopped() const { return stopped_; }
  const std::string& text() const { return text_; }

 private:
  std::string release(size_t upto) {
    if (upto <= released_) return {};
    std::string out = text_.substr(released_, upto - released_);
    released_ = upto;
    return out;
  }
  std::vector<std::string> stops_;
  size_t hold_ = 0;
  std::string text_;
  size_t released_ = 0;
  bool stopped_ = false;
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
    auto text = render_chat_template(tmpl.value(), messages, /*add_generation_prompt=*/true, template_context(tok->config()));
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

  int64_t total = int64_t(prompt.size()) + max_tokens;
  if (cfg.max_position_embeddings > 0) {
    if (int64_t(prompt.size()) > cfg.max_position_embeddings)
      return fail(bad(std::to_string(prompt.size()) + " prompt tokens exceed max_position_embeddings " +
                      std::to_string(cfg.max_position_embeddings)), 2);
    total = std::min(total, cfg.max_position_embeddings);
  }
  gpu::cpu::CpuExecutorOptions opt;
  opt.kv_block_size = 16;
  opt.kv_num_blocks = std::max(1, KvBlockAllocator::blocks_for(int32_t(total), opt.kv_block_size));
  opt.threads = int(args.threads);
  opt.kv_dtype = kv_dtype.value();
  auto adapters = read_adapter_flags(args.adapter, cfg, opt);  // --adapter DIR[:w], repeatable
  if (!adapters.ok()) return fail(adapters.error(), adapters.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  auto ex = gpu::cpu::CpuExecutor::create(ckpt.value(), opt);
  if (!ex.ok()) return fail(ex.error());
  if (Status st = adapters->adapters.load_into(**ex); !st.ok()) return fail(st.error());

  const bool as_json = args.json;
  std::unique_ptr<IncrementalDecoder> decoder;
  if (tok) decoder = std::make_unique<IncrementalDecoder>(tok, /*skip_special_tokens=*/true);
  StopScanner scanner(stops);
  auto emit = [&](const std::string& s) {
    if (!as_json && !s.empty()) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
    }
  };

  std::vector<int32_t> seq = prompt, out_ids;
  StepPlan plan;
  StepResult res;
  int32_t cached = 0;
  // Each step feeds seq[cached:] (the whole prompt first), which must fit in
  // the `total` positions of the cache.
  while (int64_t(out_ids.size()) < max_tokens && int64_t(seq.size()) <= total) {
    plan.clear();
    SeqRow r;
    r.start_pos = cached;
    r.num_tokens = uint32_t(int32_t(seq.size()) - cached);
    plan.tokens.assign(seq.begin() + cached, seq.end());
    r.num_blocks = uint32_t(KvBlockAllocator::blocks_for(int32_t(seq.size()), opt.kv_block_size));
    for (uint32_t b = 0; b < r.num_blocks; ++b) plan.block_ids.push_back(int32_t(b));
    r.sample = true;
    r.sampling = sp;
    r.adapters = adapters->mix;
    r.output_index = uint32_t(out_ids.size());
    if (sp.needs_history()) {
      plan.history = seq;
      r.history_len = uint32_t(seq.size());
      r.prompt_len = uint32_t(prompt.size());
    }
    plan.rows.push_back(r);
    const Status st = (*ex)->step(plan, res);
    if (!st.ok()) return fail(st.error());
    cached = int32_t(seq.size());
    const int32_t id = res.sampled.at(0).token;
    out_ids.push_back(id);
    seq.push_back(id);
    const bool is_eos = std::find(eos.begin(), eos.end(), int64_t(id)) != eos.end();
    if (is_eos && !ignore_eos) break;
    if (decoder) {
      emit(scanner.push(decoder->push(id)));
      if (scanner.stopped()) break;
    } else if (!as_json) {
      emit((out_ids.size() > 1 ? " " : "") + std::to_string(id));
    }
  }
  if (decoder && !scanner.stopped()) emit(scanner.push(decoder->flush()));
  if (decoder) emit(scanner.finish());

  if (as_json) {
    const json j = {{"ids", out_ids}, {"text", decoder ? scanner.text() : std::string()}};
    std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
  } else {
    std::printf("\n");
  }
  return 0;
}

}  // namespace myriad::cli
