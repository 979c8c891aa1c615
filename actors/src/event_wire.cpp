#include "actors/event_wire.h"

#include "actors/common_wire.h"

namespace myriad::actors {

void write_event(const RequestEvent& event, uint32_t attempt, schema::RequestEvent::Builder out) {
  out.setRequestId(event.id);
  out.setAttempt(attempt);
  out.setTimeMs(event.time_ms);
  if (event.num_expert_weights > 0) {
    auto w = out.initExpertWeights(event.num_expert_weights);
    for (unsigned i = 0; i < w.size(); ++i) w.set(i, event.expert_weights[i]);
  }
  const capnp::Text::Reader text(event.text.data(), event.text.size());
  switch (event.kind) {
    case EventKind::kToken: {
      auto t = out.initToken();
      t.setIndex(event.index);
      t.setToken(event.token);
      t.setLogprob(event.logprob);
      t.setText(text);
      if (!event.top.empty()) {
        auto top = t.initTop(static_cast<unsigned>(event.top.size()));
        for (unsigned i = 0; i < top.size(); ++i) {
          top[i].setToken(event.top[i].token);
          top[i].setLogprob(event.top[i].logprob);
        }
      }
      break;
    }
    case EventKind::kLogits: {
      auto l = out.initLogits();
      l.setStart(event.logits_start);
      l.setCount(event.logits_count);
      auto values = l.initValues(static_cast<unsigned>(event.logits.size()));
      for (unsigned i = 0; i < values.size(); ++i) values.set(i, event.logits[i]);
      break;
    }
    case EventKind::kFinished: {
      auto f = out.initFinished();
      f.setReason(to_schema(event.reason));
      f.setText(text);
      f.setNumOutputTokens(event.num_output_tokens);
      f.setQueueMs(event.queue_ms);
      break;
    }
    case EventKind::kFailed: {
      auto f = out.initFailed();
      write_error(event.error, f.initError());
      f.setNumOutputTokens(event.num_output_tokens);
      f.setQueueMs(event.queue_ms);
      break;
    }
  }
}

EventWire encode_event(const RequestEvent& event, uint32_t attempt) {
  return EventWire::from([&](schema::RequestEvent::Builder out) { write_event(event, attempt, out); });
}

Result<OwnedEvent> read_event(schema::RequestEvent::Reader in) {
  OwnedEvent o;
  RequestEvent& e = o.event_;
  e.id = in.getRequestId();
  e.time_ms = in.getTimeMs();
  o.attempt_ = in.getAttempt();
  auto weights = in.getExpertWeights();
  if (weights.size() > e.expert_weights.size())
    return make_error(ErrorCode::kInvalidArgument, "RequestEvent.expertWeights: " + std::to_string(weights.size()) +
                                                       " weights; at most " + std::to_string(e.expert_weights.size()));
  e.num_expert_weights = uint8_t(weights.size());
  for (unsigned i = 0; i < weights.size(); ++i) e.expert_weights[i] = weights[i];
  switch (in.which()) {
    case schema::RequestEvent::TOKEN: {
      auto t = in.getToken();
      e.kind = EventKind::kToken;
      e.index = t.getIndex();
      e.token = t.getToken();
      e.logprob = t.getLogprob();
      auto top = t.getTop();
      if (top.size() > o.top_.entries.size())
        return make_error(ErrorCode::kInvalidArgument, "SampledToken.top: " + std::to_string(top.size()) +
                                                           " tokens; at most " + std::to_string(o.top_.entries.size()));
      o.top_.count = uint8_t(top.size());
      for (unsigned i = 0; i < top.size(); ++i) o.top_.entries[i] = {top[i].getToken(), top[i].getLogprob()};
      o.text_ = as_string(t.getText());
      return o;
    }
    case schema::RequestEvent::LOGITS: {
      auto l = in.getLogits();
      e.kind = EventKind::kLogits;
      e.logits_start = l.getStart();
      e.logits_count = l.getCount();
      auto values = l.getValues();
      if (e.logits_count == 0 ? values.size() != 0 : values.size() % e.logits_count != 0)
        return make_error(ErrorCode::kInvalidArgument,
                          "RequestEvent.logits: " + std::to_string(values.size()) +
                              " values are not a whole number of rows for " + std::to_string(e.logits_count) +
                              " positions");
      o.logits_ = to_vector<float>(values);
      return o;
    }
    case schema::RequestEvent::FINISHED: {
      auto f = in.getFinished();
      e.kind = EventKind::kFinished;
      auto reason = from_schema(f.getReason());
      if (!reason) return reason.error();
      e.reason = *reason;
      o.text_ = as_string(f.getText());
      e.num_output_tokens = f.getNumOutputTokens();
      e.queue_ms = f.getQueueMs();
      return o;
    }
    case schema::RequestEvent::FAILED: {
      auto f = in.getFailed();
      e.kind = EventKind::kFailed;
      e.error = read_error(f.getError());
      e.num_output_tokens = f.getNumOutputTokens();
      e.queue_ms = f.getQueueMs();
      return o;
    }
  }
  return make_error(ErrorCode::kInvalidArgument,
                    "RequestEvent: unknown kind " + std::to_string(unsigned(in.which())));
}

}  // namespace myriad::actors
