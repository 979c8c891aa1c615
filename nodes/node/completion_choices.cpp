#include "completion_choices.h"

#include <limits>

#include "api_error_of.h"
#include "gpu/cpu/sampler.h"

namespace myriad::node {

std::vector<float> prompt_logprobs_of(std::span<const float> logits, uint32_t start, uint32_t count,
                                      std::span<const int32_t> prompt, uint32_t top_k, std::vector<TopLogprobs>* top) {
  std::vector<float> out;
  if (count == 0 || logits.size() % count != 0) return out;
  const size_t vocab = logits.size() / count;
  for (uint32_t i = 0; i < count && size_t(start) + i + 1 < prompt.size(); ++i) {
    const std::span<const float> row = logits.subspan(size_t(i) * vocab, vocab);
    const int32_t next = prompt[size_t(start) + i + 1];
    if (next < 0 || size_t(next) >= vocab) {
      out.push_back(std::numeric_limits<float>::quiet_NaN());  // sent as -9999, as any non-finite logprob
      if (top_k > 0 && top) top->emplace_back();
      continue;
    }
    const double lse = gpu::cpu::log_sum_exp(row.data(), int64_t(vocab));  // the sampler's: vectorized, double sum
    out.push_back(float(double(row[size_t(next)]) - lse));
    if (top_k > 0 && top) top_logprobs_of(row, lse, top_k, top->emplace_back());
  }
  return out;
}

CompletionChoices::CompletionChoices(openai::Endpoint endpoint, openai::ResponseMeta meta, uint32_t n,
                                     std::vector<uint32_t> prompt_tokens, std::vector<EchoedPrompt> echoed,
                                     TokenText token_text)
    : endpoint_(endpoint),
      meta_(std::move(meta)),
      prompt_tokens_(std::move(prompt_tokens)),
      echo_(std::move(echoed)),
      token_text_(std::move(token_text)) {
  choices_.resize(prompt_tokens_.size() * n);
  for (size_t i = 0; i < choices_.size(); ++i) {
    State& c = choices_[i];
    c.prompt = uint32_t(i / n);
    if (echo() && meta_.logprobs) {
      c.prompt_logprobs.assign(prompt_tokens_[c.prompt], 0.0f);
      c.prompt_seen.assign(prompt_tokens_[c.prompt], false);
      c.prompt_top.resize(prompt_tokens_[c.prompt]);
    }
  }
}

void CompletionChoices::take_logits(State& c, const ChoiceEvent& ev) {
  for (size_t i = 0; i < ev.prompt_logprobs.size(); ++i)
    if (size_t(ev.prompt_start) + i < c.prompt_logprobs.size()) {
      c.prompt_logprobs[ev.prompt_start + i] = ev.prompt_logprobs[i];
      c.prompt_seen[ev.prompt_start + i] = true;
    }
  for (size_t i = 0; i < ev.prompt_top.size(); ++i)
    if (size_t(ev.prompt_start) + i < c.prompt_top.size()) c.prompt_top[ev.prompt_start + i] = ev.prompt_top[i];
}

std::vector<openai::TopLogprob> CompletionChoices::named(std::span<const TopLogprobs::Entry> top) const {
  std::vector<openai::TopLogprob> out;
  for (const TopLogprobs::Entry& e : top)
    out.push_back({token_text_ ? token_text_(e.token) : std::to_string(e.token), e.logprob});
  return out;
}

openai::TokenLogprob CompletionChoices::output_logprob(const ChoiceEvent& ev) const {
  return {ev.text, ev.logprob, named(ev.top)};
}

Result<std::vector<openai::TokenLogprob>> CompletionChoices::echo_logprobs(const State& c) const {
  const EchoedPrompt& p = echo_[c.prompt];
  std::vector<openai::TokenLogprob> out(p.tokens.size());
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].token = p.tokens[i];
    if (i == 0) {
      out[i].logprob = std::nullopt;  // nothing precedes the first token
      continue;
    }
    if (i >= c.prompt_seen.size() || !c.prompt_seen[i])
      return make_error(ErrorCode::kUnavailable,
                        "the prompt's logprobs were lost when the request moved to another worker; send it again");
    out[i].logprob = c.prompt_logprobs[i];
    if (i < c.prompt_top.size()) out[i].top = named(c.prompt_top[i].view());
  }
  return out;
}

void CompletionChoices::finish(State& c, const ChoiceEvent& ev) {
  c.reason = ev.reason;
  c.output_tokens = ev.num_output_tokens;
  if (!c.finished) ++finished_;
  c.finished = true;
}

openai::Usage CompletionChoices::usage() const {
  openai::Usage u;
  for (uint32_t t : prompt_tokens_) u.prompt_tokens += t;
  for (const State& c : choices_) u.completion_tokens += c.output_tokens;
  return u;
}

bool CompletionChoices::add(const ChoiceEvent& ev) {
  if (failure_ || ev.choice >= choices_.size()) return failure_.has_value();
  State& c = choices_[ev.choice];
  switch (ev.kind) {
    case EventKind::kLogits:
      take_logits(c, ev);
      break;
    case EventKind::kToken:
      c.text += ev.text;
      if (meta_.logprobs) c.output.push_back(output_logprob(ev));
      break;
    case EventKind::kFinished:
      c.text += ev.text;
      finish(c, ev);
      if (echo() && meta_.logprobs)
        if (auto lp = echo_logprobs(c); !lp.ok()) {
          failure_ = lp.error();
          return true;
        }
      break;
    case EventKind::kFailed:
      failure_ = ev.error;
      return true;
  }
  return finished_ == choices_.size();
}

std::string CompletionChoices::body() const {
  std::vector<openai::Choice> out(choices_.size());
  for (size_t i = 0; i < choices_.size(); ++i) {
    const State& c = choices_[i];
    openai::Choice& o = out[i];
    o.index = uint32_t(i);
    o.finish_reason = c.reason;
    o.text = echo() ? echo_[c.prompt].text + c.text : c.text;
    if (echo() && meta_.logprobs) o.logprobs = echo_logprobs(c).value();  // complete: add() checked
    o.logprobs.insert(o.logprobs.end(), c.output.begin(), c.output.end());
  }
  return endpoint_ == openai::Endpoint::kChatCompletions ? openai::chat_completion_response(meta_, out, usage())
                                                         : openai::completion_response(meta_, out, usage());
}

std::string CompletionChoices::chunk(const openai::Delta& d) const {
  return openai::sse_event(endpoint_ == openai::Endpoint::kChatCompletions ? openai::chat_chunk(meta_, d)
                                                                           : openai::completion_chunk(meta_, d));
}

std::vector<std::string> CompletionChoices::opening_chunks() const {
  std::vector<std::string> out;
  if (endpoint_ == openai::Endpoint::kChatCompletions)
    for (size_t i = 0; i < choices_.size(); ++i)
      out.push_back(openai::sse_event(openai::chat_role_chunk(meta_, uint32_t(i))));
  return out;
}

std::vector<std::string> CompletionChoices::fail(const Error& e, bool& done) {
  failure_ = e;
  done = true;
  return {openai::sse_event(openai::to_json(api_error_of(e))), std::string(openai::sse_done())};
}

std::vector<std::string> CompletionChoices::chunks(const ChoiceEvent& ev, bool& done) {
  std::vector<std::string> out;
  if (failure_ || ev.choice >= choices_.size()) return out;
  State& c = choices_[ev.choice];
  if (ev.kind == EventKind::kLogits) {
    take_logits(c, ev);
    return out;
  }
  if (ev.kind == EventKind::kFailed) return fail(ev.error, done);
  // The echo goes first, once the prompt (and its logprobs) is computed:
  // by the choice's first token or its end.
  if (echo() && !c.echo_sent) {
    c.echo_sent = true;
    std::vector<openai::TokenLogprob> lp;
    if (meta_.logprobs) {
      auto r = echo_logprobs(c);
      if (!r.ok()) return fail(r.error(), done);
      lp = std::move(r.value());
    }
    openai::Delta d;
    d.text = echo_[c.prompt].text;
    d.logprobs = lp;
    d.index = ev.choice;
    out.push_back(chunk(d));
    // Output offsets continue from the echoed tokens' pieces, as in the
    // non-streamed body (they can differ from the prompt text: a BOS piece).
    c.offset = 0;
    if (meta_.logprobs)
      for (const openai::TokenLogprob& t : lp) c.offset += openai::code_points(t.token);
    else
      c.offset = openai::code_points(d.text);
  }
  if (ev.kind == EventKind::kToken && ev.text.empty() && !meta_.logprobs) return out;
  std::vector<openai::TokenLogprob> lp;
  if (meta_.logprobs && ev.kind == EventKind::kToken) lp.push_back(output_logprob(ev));
  openai::Delta d;
  d.text = ev.text;
  d.logprobs = lp;
  d.text_offset = c.offset;
  d.index = ev.choice;
  if (ev.kind == EventKind::kFinished) d.finish_reason = ev.reason;
  out.push_back(chunk(d));
  c.offset += openai::code_points(ev.text);
  if (ev.kind == EventKind::kFinished) {
    finish(c, ev);
    if (finished_ == choices_.size()) {
      if (meta_.include_usage) out.push_back(openai::sse_event(openai::usage_chunk(endpoint_, meta_, usage())));
      out.emplace_back(openai::sse_done());
      done = true;
    }
  }
  return out;
}

}  // namespace myriad::node
