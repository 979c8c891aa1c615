#include "runtime/plan_validation.h"

#include <cmath>
#include <string>

namespace myriad {

Status check_sampling_params(const SamplingParams& sp) {
  auto bad = [](std::string msg) { return make_error(ErrorCode::kInvalidArgument, std::move(msg)); };
  if (!(sp.temperature >= 0.0f) || !std::isfinite(sp.temperature))
    return bad("temperature = " + std::to_string(sp.temperature) + ": must be >= 0");
  if (!(sp.top_p > 0.0f && sp.top_p <= 1.0f)) return bad("top_p = " + std::to_string(sp.top_p) + ": must be in (0, 1]");
  if (sp.top_k < 0) return bad("top_k = " + std::to_string(sp.top_k) + ": must be >= 0");
  if (!(sp.repetition_penalty > 0.0f) || !std::isfinite(sp.repetition_penalty))
    return bad("repetition_penalty = " + std::to_string(sp.repetition_penalty) + ": must be > 0");
  if (!std::isfinite(sp.presence_penalty)) return bad("presence_penalty is not finite");
  if (!std::isfinite(sp.frequency_penalty)) return bad("frequency_penalty is not finite");
  if (sp.top_logprobs > kMaxTopLogprobs)
    return bad("top_logprobs = " + std::to_string(sp.top_logprobs) + ": must be at most " +
               std::to_string(kMaxTopLogprobs));
  return ok_status();
}

namespace {

template <class Bad>
Status check_route(const StepPlan& plan, const SeqRow& r, const ExecutorInfo& info,
                   const std::function<bool(int32_t)>& slot_ready, const Bad& bad) {
  if (!info.routes_in_prefill) return bad("routes in its prefill, which this executor does not");
  if (size_t(r.route) >= plan.routes.size())
    return bad("route " + std::to_string(r.route) + " past plan.routes (" + std::to_string(plan.routes.size()) + ")");
  if (r.adapters.count != 0) return bad("routes in its prefill but already names adapters");
  const RowRoute& route = plan.routes[size_t(r.route)];
  const PrefillRouter* router = route.router;
  if (router == nullptr) return bad("route without a router");
  const int32_t n = router->num_experts();
  if (n < 1 || n > kMaxAdaptersPerRow)
    return bad("router of " + std::to_string(n) + " experts (1 to " + std::to_string(kMaxAdaptersPerRow) + ")");
  if (router->dim != info.hidden_size)
    return bad("router of width " + std::to_string(router->dim) + " for hidden size " + std::to_string(info.hidden_size));
  if (router->layer < 0 || router->layer > info.num_layers)
    return bad("router layer " + std::to_string(router->layer) + " outside [0, " + std::to_string(info.num_layers) + "]");
  if (router->top_k < 1 || router->top_k > n) return bad("router top_k " + std::to_string(router->top_k));
  if (route.num_tokens == 0 || size_t(route.first_token) + route.num_tokens > r.num_tokens)
    return bad("routed tokens [" + std::to_string(route.first_token) + ", +" + std::to_string(route.num_tokens) +
               ") outside the row's " + std::to_string(r.num_tokens));
  for (int32_t e = 0; e < n; ++e) {
    const int32_t slot = route.expert_slots[size_t(e)];
    if (slot < 0 || slot >= info.num_adapter_slots || !slot_ready(slot))
      return bad("expert " + std::to_string(e) + "'s slot " + std::to_string(slot) + " is out of range or not ready");
  }
  return ok_status();
}

}  // namespace

Status validate_plan(const StepPlan& plan, const ExecutorInfo& info, const std::function<bool(int32_t)>& slot_ready) {
  const int64_t bs = info.kv_block_size;
  if (info.max_rows > 0 && plan.rows.size() > size_t(info.max_rows))
    return make_error(ErrorCode::kResourceExhausted, "step has " + std::to_string(plan.rows.size()) +
                                                         " rows; max_rows is " + std::to_string(info.max_rows));
  size_t tokens = 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    auto bad = [&](const std::string& what) {
      return make_error(ErrorCode::kInvalidArgument,
                        "plan row " + std::to_string(i) + " (seq " + std::to_string(r.seq) + "): " + what);
    };
    if (r.num_tokens == 0) return bad("num_tokens is 0");
    if (size_t(r.token_offset) + r.num_tokens > plan.tokens.size())
      return bad("tokens [" + std::to_string(r.token_offset) + ", +" + std::to_string(r.num_tokens) +
                 ") past plan.tokens (" + std::to_string(plan.tokens.size()) + ")");
    for (uint32_t j = 0; j < r.num_tokens; ++j) {
      const int32_t id = plan.tokens[r.token_offset + j];
      if (id < 0 || id >= info.vocab_size)
        return bad("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                   std::to_string(info.vocab_size) + ")");
    }
    if (r.start_pos < 0) return bad("start_pos " + std::to_string(r.start_pos) + " is negative");
    const int64_t end = int64_t(r.start_pos) + r.num_tokens;
    if (size_t(r.block_offset) + r.num_blocks > plan.block_ids.size()) return bad("block table past plan.block_ids");
    if (int64_t(r.num_blocks) * bs < end)
      return bad(std::to_string(r.num_blocks) + " blocks of " + std::to_string(bs) + " do not cover positions [0, " +
                 std::to_string(end) + ")");
    for (uint32_t j = 0; j < r.num_blocks; ++j) {
      const int32_t b = plan.block_ids[r.block_offset + j];
      if (b < 0 || b >= info.kv_num_blocks)
        return bad("block id " + std::to_string(b) + " outside the pool [0, " + std::to_string(info.kv_num_blocks) +
                   ")");
    }
    if (size_t(r.history_offset) + r.history_len > plan.history.size()) return bad("history slice past plan.history");
    if (r.prompt_len > r.history_len) return bad("prompt_len exceeds history_len");
    if (size_t(r.bias_offset) + r.bias_count > plan.logit_bias.size()) return bad("bias slice past plan.logit_bias");
    if (r.bias_count > 0 && !info.applies_logit_bias)
      return bad("has a logit bias, which this executor does not apply");
    for (uint32_t j = 0; j < r.bias_count; ++j) {
      const int32_t t = plan.logit_bias[r.bias_offset + j].token;
      if (t < 0 || t >= info.vocab_size)
        return bad("logit bias on token " + std::to_string(t) + " outside the vocabulary [0, " +
                   std::to_string(info.vocab_size) + ")");
    }
    if (r.sample) {
      if (Status st = check_sampling_params(r.sampling); !st.ok()) return bad("sampling: " + st.error().message);
    }
    if (r.adapters.count > kMaxAdaptersPerRow)
      return bad(std::to_string(r.adapters.count) + " adapters (at most " + std::to_string(kMaxAdaptersPerRow) + ")");
    for (uint8_t a = 0; a < r.adapters.count; ++a) {
      const AdapterRef& ref = r.adapters.refs[a];
      if (info.num_adapter_slots == 0)
        return bad("uses adapter slot " + std::to_string(ref.slot) + " but the executor has no adapter slots");
      if (ref.slot < 0 || ref.slot >= info.num_adapter_slots)
        return bad("adapter slot " + std::to_string(ref.slot) + " out of range [0, " +
                   std::to_string(info.num_adapter_slots) + ")");
      if (!std::isfinite(ref.weight)) return bad("adapter slot " + std::to_string(ref.slot) + ": weight is not finite");
      if (!slot_ready(ref.slot)) return bad("adapter slot " + std::to_string(ref.slot) + " is not ready (loading or empty)");
    }
    if (r.route >= 0) MYRIAD_TRY(check_route(plan, r, info, slot_ready, bad));
    tokens += r.num_tokens;
  }
  if (info.max_tokens_per_step > 0 && tokens > size_t(info.max_tokens_per_step))
    return make_error(ErrorCode::kResourceExhausted, "step has " + std::to_string(tokens) +
                                                         " tokens; max_tokens_per_step is " +
                                                         std::to_string(info.max_tokens_per_step));
  const size_t logits_rows = returned_logits_rows(plan);
  if (info.max_logits_rows > 0 && logits_rows > size_t(info.max_logits_rows))
    return make_error(ErrorCode::kResourceExhausted, "step asks for " + std::to_string(logits_rows) +
                                                         " logits rows; max_logits_rows is " +
                                                         std::to_string(info.max_logits_rows));
  return ok_status();
}

void logits_positions(const StepPlan& plan, std::vector<int64_t>& out) {
  out.clear();
  int64_t t = 0;
  for (const SeqRow& r : plan.rows) {
    if (r.logits == LogitsRequest::kAll) {
      for (uint32_t j = 0; j < r.num_tokens; ++j) out.push_back(t + j);
    } else if (r.logits == LogitsRequest::kLast || r.sample) {
      out.push_back(t + r.num_tokens - 1);
    }
    t += r.num_tokens;
  }
}

size_t returned_logits_rows(const StepPlan& plan) {
  size_t n = 0;
  for (const SeqRow& r : plan.rows) n += r.logits == LogitsRequest::kAll ? r.num_tokens : r.logits == LogitsRequest::kLast ? 1 : 0;
  return n;
}

}  // namespace myriad
