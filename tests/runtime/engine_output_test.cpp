// The engine's output processing: with a tokenizer, every request's events
// carry text deltas that add up to the decode of its tokens (stop tokens
// add none), and a stop string ends the request (reason stop) at the token
// that completes it, with the text cut before it. FakeExecutor tokens are a
// hash of (request id, output index, adapter), so two engines fed the same
// requests sample the same tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "scheduler_trace.h"
#include "tokenizer_test_util.h"
#include "test_adapters.h"

namespace myriad::testing {
namespace {

struct Output {
  std::vector<int32_t> ids;
  std::vector<uint32_t> indices;  // each token's output index
  std::string text;
  FinishReason reason = FinishReason::kLength;
  int finals = 0;
};

// Collects outputs as the events come: an event's text views the engine's
// buffer and is valid during on_event only.
class OutputSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    Output& o = out[e.id];
    o.text += e.text;
    if (e.kind == EventKind::kToken) {
      o.ids.push_back(e.token);
      o.indices.push_back(e.index);
    }
    if (e.is_final()) {
      ++o.finals;
      o.reason = e.reason;
    }
  }
  std::map<RequestId, Output> out;
};

// Runs `requests` to completion on a fresh engine; outputs by request id.
std::map<RequestId, Output> run_all(const std::vector<Request>& requests, std::shared_ptr<const Tokenizer> tok) {
  SchedulerConfig c;
  c.num_slots = 2;
  c.num_kv_blocks = 256;
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.vocab_size = int32_t(tok->vocab_size()), .kv_num_blocks = 256,
                                        .num_adapter_slots = 2, .clock = &clock, .step_ms = 1.0});
  StaticAdapterSource source;
  source.put(testing::test_adapter("a"), named_weights("a"));
  OutputSink sink;
  auto engine = Engine::create(c, exec, source, clock, sink, tok);
  EXPECT_TRUE(engine.ok()) << engine.error().to_string();
  RequestId next_id = 1;
  for (Request r : requests) {
    r.id = next_id++;
    EXPECT_TRUE((*engine)->submit(r).ok());
  }
  EXPECT_TRUE((*engine)->run_until_idle(10000).ok());
  EXPECT_TRUE(exec.violations().empty());
  return sink.out;
}

Request make_request(std::string adapter, uint32_t max_tokens) {
  Request r;
  r.adapters = testing::adapter_use(std::move(adapter));
  r.prompt = {1, 2, 3, 4, 5};
  r.max_tokens = max_tokens;
  return r;
}

TEST(EngineOutput, TextDeltasAddUpToTheDecodedTokens) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  std::vector<Request> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(make_request(i % 2 ? "a" : "", 24));
  // A stop token: the request ends at it, and its text is not shown.
  const auto first = run_all({reqs[0]}, tok);
  reqs[0].stop_token_ids = {first.at(1).ids.at(5)};
  const auto out = run_all(reqs, tok);
  ASSERT_EQ(out.size(), reqs.size());
  for (const auto& [id, o] : out) {
    SCOPED_TRACE("request " + std::to_string(id));
    EXPECT_EQ(o.finals, 1);
    std::vector<int32_t> shown = o.ids;
    if (id == 1) {
      EXPECT_EQ(o.reason, FinishReason::kStop);
      EXPECT_EQ(o.ids.size(), 6u);
      shown.pop_back();
    } else {
      EXPECT_EQ(o.reason, FinishReason::kLength);
      EXPECT_EQ(o.ids.size(), 24u);
    }
    EXPECT_EQ(o.text, tok->decode(shown, /*skip_special_tokens=*/true));
  }
}

TEST(EngineOutput, StopStringEndsTheRequestAtTheTokenThatCompletesIt) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  const auto free_run = run_all({make_request("a", 32), make_request("", 32)}, tok);
  const Output& full = free_run.at(1);
  // A stop string from the middle of request 1's text (ASCII, so the cut
  // is a byte position): the text ends right before its first occurrence.
  std::string stop;
  size_t at = std::string::npos;
  for (size_t i = full.text.size() / 3; i + 3 <= full.text.size() && at == std::string::npos; ++i) {
    const std::string cand = full.text.substr(i, 3);
    if (std::all_of(cand.begin(), cand.end(), [](char ch) { return ch > ' ' && ch < 127; })) {
      stop = cand;
      at = full.text.find(stop);
    }
  }
  ASSERT_NE(at, std::string::npos) << "no ASCII triple in " << full.text;
  Request with_stop = make_request("a", 32);
  with_stop.stop = {stop};
  const auto out = run_all({with_stop, make_request("", 32)}, tok);
  const Output& o = out.at(1);
  EXPECT_EQ(o.finals, 1);
  EXPECT_EQ(o.reason, FinishReason::kStop);
  EXPECT_EQ(o.text, full.text.substr(0, at));
  // Its tokens are a prefix of the free run's, ending at the first token
  // whose text reaches past the stop string's start.
  ASSERT_LE(o.ids.size(), full.ids.size());
  EXPECT_TRUE(std::equal(o.ids.begin(), o.ids.end(), full.ids.begin()));
  const std::vector<int32_t> all_but_last(o.ids.begin(), o.ids.end() - 1);
  EXPECT_EQ(tok->decode(all_but_last, true).find(stop), std::string::npos);
  EXPECT_NE(tok->decode(o.ids, true).find(stop), std::string::npos);
  // The other request is untouched.
  EXPECT_EQ(out.at(2).text, free_run.at(2).text);
  EXPECT_EQ(out.at(2).reason, FinishReason::kLength);
}

// The text a client had after tokens [0, k) of a request: what an output
// processor released for them, without its finish().
std::string text_released(const std::shared_ptr<const Tokenizer>& tok, const std::vector<int32_t>& ids, size_t k,
                          std::vector<std::string> stop = {}) {
  OutputProcessor p(tok, OutputOptions{std::move(stop)});
  std::string text;
  for (size_t i = 0; i < k; ++i) text += p.push(ids[i]);
  return text;
}

// A request resumed on another engine with the tokens its client has (the
// first k of an undisturbed run) sends the rest: the same tokens at the same
// output indices, and text that continues the client's text exactly, also
// text held back for a stop string. Tokens that had already ended the
// request are cut back to the one that ended it, which comes again.
TEST(EngineOutput, AResumedRequestContinuesWhereItsClientIs) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  const Output full = run_all({make_request("a", 32)}, tok).at(1);
  ASSERT_EQ(full.ids.size(), 32u);
  for (size_t k : {size_t(1), size_t(10), size_t(31), size_t(32)}) {
    SCOPED_TRACE("resumed after " + std::to_string(k) + " tokens");
    Request r = make_request("a", 32);
    r.resume_output.assign(full.ids.begin(), full.ids.begin() + ptrdiff_t(k));
    const Output o = run_all({r}, tok).at(1);
    const size_t from = std::min<size_t>(k, 31);  // all 32 sent: the last comes again and ends it
    EXPECT_EQ(o.finals, 1);
    EXPECT_EQ(o.reason, FinishReason::kLength);
    EXPECT_EQ(o.ids, std::vector<int32_t>(full.ids.begin() + ptrdiff_t(from), full.ids.end()));
    ASSERT_FALSE(o.indices.empty());
    EXPECT_EQ(o.indices.front(), from);
    EXPECT_EQ(text_released(tok, full.ids, from) + o.text, full.text);
  }
  // A stop string: resumed before the token that completes it, and after it
  // (that token comes again, then the stop).
  std::string stop;
  for (size_t i = full.text.size() / 2; i + 2 <= full.text.size() && stop.empty(); ++i) {
    const std::string cand = full.text.substr(i, 2);
    if (std::all_of(cand.begin(), cand.end(), [](char ch) { return ch > ' ' && ch < 127; })) stop = cand;
  }
  ASSERT_FALSE(stop.empty()) << "no ASCII pair in " << full.text;
  Request with_stop = make_request("a", 32);
  with_stop.stop = {stop};
  const Output stopped = run_all({with_stop}, tok).at(1);
  ASSERT_EQ(stopped.reason, FinishReason::kStop);
  const size_t last = stopped.ids.size() - 1;  // the token that completed the stop string
  for (size_t k : {last / 2, last, last + 1}) {
    SCOPED_TRACE("with a stop string, resumed after " + std::to_string(k) + " tokens");
    Request r = with_stop;
    r.resume_output.assign(stopped.ids.begin(), stopped.ids.begin() + ptrdiff_t(k));
    const Output o = run_all({r}, tok).at(1);
    const size_t from = std::min(k, last);
    EXPECT_EQ(o.finals, 1);
    EXPECT_EQ(o.reason, FinishReason::kStop);
    EXPECT_EQ(o.ids, std::vector<int32_t>(stopped.ids.begin() + ptrdiff_t(from), stopped.ids.end()));
    EXPECT_EQ(text_released(tok, stopped.ids, from, {stop}) + o.text, stopped.text);
  }
  // A stop token among the sent ones: cut back to it.
  const uint32_t at = uint32_t(std::find(full.ids.begin(), full.ids.end(), full.ids[20]) - full.ids.begin());
  Request with_stop_id = make_request("a", 32);
  with_stop_id.stop_token_ids = {full.ids[at]};
  with_stop_id.resume_output = full.ids;
  const Output o = run_all({with_stop_id}, tok).at(1);
  EXPECT_EQ(o.reason, FinishReason::kStop);
  EXPECT_EQ(o.ids, std::vector<int32_t>{full.ids[at]});
  EXPECT_EQ(o.indices, std::vector<uint32_t>{at});
}

TEST(EngineOutput, StopStringsWithoutATokenizerAreRefused) {
  SchedulerConfig c;
  c.num_slots = 0;
  c.num_kv_blocks = 64;
  ManualClock clock;
  FakeExecutor exec(FakeExecutorOptions{.kv_num_blocks = 64, .num_adapter_slots = 0});
  StaticAdapterSource source;
  RecordingSink sink;
  auto engine = Engine::create(c, exec, source, clock, sink);
  ASSERT_TRUE(engine.ok());
  Request r = make_request("", 4);
  r.id = 1;
  r.stop = {"x"};
  auto id = (*engine)->submit(r);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(id.error().message.find("stop strings need a tokenizer"), std::string::npos);
  EXPECT_TRUE(sink.all.empty());
  r.stop.clear();
  ASSERT_TRUE((*engine)->submit(r).ok());  // no text without a tokenizer, tokens as before
  ASSERT_TRUE((*engine)->run_until_idle(100).ok());
  for (const RequestEvent& e : sink.all) EXPECT_TRUE(e.text.empty());
}

}  // namespace
}  // namespace myriad::testing
