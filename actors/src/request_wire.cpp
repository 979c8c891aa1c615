#include "actors/request_wire.h"

#include <string>

#include "actors/common_wire.h"

namespace myriad::actors {
namespace {

schema::LogitsRequest to_schema(LogitsRequest logits) {
  switch (logits) {
    case LogitsRequest::kNone:
      return schema::LogitsRequest::NONE;
    case LogitsRequest::kLast:
      return schema::LogitsRequest::LAST;
    case LogitsRequest::kAll:
      return schema::LogitsRequest::ALL;
  }
  assertion_failed(__FILE__, __LINE__, "known enumerant",
                   "unknown LogitsRequest " + std::to_string(int(logits)));
}

Result<LogitsRequest> from_schema(schema::LogitsRequest logits) {
  switch (logits) {
    case schema::LogitsRequest::NONE:
      return LogitsRequest::kNone;
    case schema::LogitsRequest::LAST:
      return LogitsRequest::kLast;
    case schema::LogitsRequest::ALL:
      return LogitsRequest::kAll;
  }
  return make_error(ErrorCode::kInvalidArgument,
                    "SubmitRequest.promptLogits: unknown value " + std::to_string(unsigned(logits)));
}

}  // namespace

void write_submit(const Request& request, uint32_t attempt, schema::SubmitRequest::Builder out) {
  out.setRequestId(request.id);
  auto adapters = out.initAdapters(static_cast<unsigned>(request.adapters.size()));
  for (unsigned i = 0; i < adapters.size(); ++i) {
    write_adapter_id(request.adapters[i].id, adapters[i].initId());
    adapters[i].setWeight(request.adapters[i].weight);
  }
  auto prompt = out.initPrompt(static_cast<unsigned>(request.prompt.size()));
  for (unsigned i = 0; i < prompt.size(); ++i) prompt.set(i, request.prompt[i]);
  write_sampling(request.sampling, out.initSampling());
  out.setMaxTokens(request.max_tokens);
  out.setMinTokens(request.min_tokens);
  auto stop_ids = out.initStopTokenIds(static_cast<unsigned>(request.stop_token_ids.size()));
  for (unsigned i = 0; i < stop_ids.size(); ++i) stop_ids.set(i, request.stop_token_ids[i]);
  auto stop = out.initStop(static_cast<unsigned>(request.stop.size()));
  for (unsigned i = 0; i < stop.size(); ++i) stop.set(i, request.stop[i]);
  out.setTimeoutMs(request.timeout_ms);
  out.setPromptLogits(to_schema(request.prompt_logits));
  out.setAttempt(attempt);
  auto resume = out.initResumeOutput(static_cast<unsigned>(request.resume_output.size()));
  for (unsigned i = 0; i < resume.size(); ++i) resume.set(i, request.resume_output[i]);
  if (!request.logit_bias.empty()) {
    auto bias = out.initLogitBias(static_cast<unsigned>(request.logit_bias.size()));
    for (unsigned i = 0; i < bias.size(); ++i) {
      bias[i].setToken(request.logit_bias[i].token);
      bias[i].setBias(request.logit_bias[i].bias);
    }
  }
  if (const PrefillRouter* r = request.prefill_router.get()) {
    auto w = out.initPrefillRouter();
    w.setLayer(r->layer);
    w.setSkipTokens(r->skip_tokens);
    w.setMaxTokens(r->max_tokens);
    w.setDim(r->dim);
    auto c = w.initCentroids(static_cast<unsigned>(r->centroids.size()));
    for (unsigned i = 0; i < c.size(); ++i) c.set(i, r->centroids[i]);
    w.setCosine(r->cosine);
    w.setTopK(r->top_k);
    w.setTemperature(r->temperature);
  }
}

Result<Request> read_submit(schema::SubmitRequest::Reader in) {
  Request r;
  r.id = in.getRequestId();
  // Each list getter is called once: every call counts against the reader's traversal limit.
  auto adapters = in.getAdapters();
  r.adapters.reserve(adapters.size());
  for (auto a : adapters) r.adapters.push_back(AdapterUse{read_adapter_id(a.getId()), a.getWeight()});
  r.prompt = to_vector<int32_t>(in.getPrompt());
  r.sampling = read_sampling(in.getSampling());
  r.max_tokens = in.getMaxTokens();
  r.min_tokens = in.getMinTokens();
  auto stop_ids = in.getStopTokenIds();
  if (stop_ids.size() > kMaxStopTokenIds)
    return make_error(ErrorCode::kInvalidArgument, "SubmitRequest.stopTokenIds: " + std::to_string(stop_ids.size()) +
                                                       " ids; at most " + std::to_string(kMaxStopTokenIds));
  r.stop_token_ids = to_vector<int32_t>(stop_ids);
  auto stop = in.getStop();
  r.stop.reserve(stop.size());
  for (auto s : stop) r.stop.push_back(as_string(s));
  r.timeout_ms = in.getTimeoutMs();
  auto logits = from_schema(in.getPromptLogits());
  if (!logits) return logits.error();
  r.prompt_logits = *logits;
  r.resume_output = to_vector<int32_t>(in.getResumeOutput());
  // Its values, validate_request checks; its length here, before a copy.
  auto bias = in.getLogitBias();
  if (bias.size() > kMaxLogitBias)
    return make_error(ErrorCode::kInvalidArgument, "SubmitRequest.logitBias: " + std::to_string(bias.size()) +
                                                       " tokens; at most " + std::to_string(kMaxLogitBias));
  r.logit_bias.reserve(bias.size());
  for (auto b : bias) r.logit_bias.push_back({b.getToken(), b.getBias()});
  if (in.hasPrefillRouter()) {
    // Its shape against the request, validate_request checks.
    auto w = in.getPrefillRouter();
    auto router = std::make_shared<PrefillRouter>();
    router->layer = w.getLayer();
    router->skip_tokens = w.getSkipTokens();
    router->max_tokens = w.getMaxTokens();
    router->dim = w.getDim();
    router->centroids = to_vector<float>(w.getCentroids());
    router->cosine = w.getCosine();
    router->top_k = w.getTopK();
    router->temperature = w.getTemperature();
    r.prefill_router = std::move(router);
  }
  return r;
}

SubmitWire encode_submit(const Request& request, uint32_t attempt) {
  return SubmitWire::from([&](schema::SubmitRequest::Builder out) { write_submit(request, attempt, out); });
}

}  // namespace myriad::actors
