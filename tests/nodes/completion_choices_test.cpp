// CompletionChoices: the events of a request's n x prompts engine requests
// become OpenAI's body and stream (indices, interleaving, usage, echo and the
// prompt's logprobs), and prompt_logprobs_of against a direct log-softmax.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "completion_choices.h"

namespace {

using nlohmann::json;
using myriad::Error;
using myriad::ErrorCode;
using myriad::EventKind;
using myriad::FinishReason;
using myriad::node::ChoiceEvent;
using myriad::node::CompletionChoices;
using myriad::node::EchoedPrompt;
using myriad::node::prompt_logprobs_of;
namespace openai = myriad::openai;

openai::ResponseMeta choice_meta(bool logprobs = false, bool include_usage = false) {
  openai::ResponseMeta m;
  m.id = "cmpl-1";
  m.created = 1;
  m.model = "m";
  m.logprobs = logprobs;
  m.include_usage = include_usage;
  return m;
}

ChoiceEvent token_event(uint32_t choice, std::string text, float logprob = -1.0f) {
  ChoiceEvent e;
  e.choice = choice;
  e.kind = EventKind::kToken;
  e.text = std::move(text);
  e.logprob = logprob;
  return e;
}

ChoiceEvent finished_event(uint32_t choice, uint32_t tokens, FinishReason reason = FinishReason::kLength) {
  ChoiceEvent e;
  e.choice = choice;
  e.kind = EventKind::kFinished;
  e.num_output_tokens = tokens;
  e.reason = reason;
  return e;
}

ChoiceEvent logits_event(uint32_t choice, uint32_t start, std::vector<float> lps) {
  ChoiceEvent e;
  e.choice = choice;
  e.kind = EventKind::kLogits;
  e.prompt_start = start;
  e.prompt_logprobs = std::move(lps);
  return e;
}

// The JSON objects of a list of SSE chunks ("data: {...}\n\n"), [DONE] as null.
std::vector<json> sse_objects(const std::vector<std::string>& chunks) {
  std::vector<json> out;
  for (const std::string& c : chunks) {
    EXPECT_EQ(c.rfind("data: ", 0), 0u) << c;
    const std::string body = c.substr(6, c.size() - 8);
    out.push_back(body == "[DONE]" ? json(nullptr) : json::parse(body));
  }
  return out;
}

TEST(PromptLogprobs, MatchADirectLogSoftmaxOnSeededRandomLogits) {
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 4.0f);
  const size_t vocab = 1000;
  const std::vector<int32_t> prompt = {3, 999, 0, 512, 7, 7};
  // Positions 2..5 of the prompt: 5 predicts nothing inside the prompt.
  const uint32_t start = 2, count = 4;
  std::vector<float> lg(count * vocab);
  for (float& v : lg) v = normal(rng);
  const std::vector<float> got = prompt_logprobs_of(lg, start, count, prompt);
  ASSERT_EQ(got.size(), 3u);  // tokens 3, 4, 5
  for (uint32_t i = 0; i < got.size(); ++i) {
    double sum = 0.0;
    for (size_t v = 0; v < vocab; ++v) sum += std::exp(double(lg[i * vocab + v]));
    const double ref = double(lg[i * vocab + size_t(prompt[start + i + 1])]) - std::log(sum);
    // float logits, double sums: the result is rounded to float once.
    EXPECT_LE(std::abs(got[i] - ref), 1e-5 + 1e-6 * std::abs(ref)) << "token " << start + i + 1;
  }
  EXPECT_TRUE(prompt_logprobs_of(lg, 0, 0, prompt).empty());
}

TEST(CompletionChoices, NChoicesOfEachPromptComeBackInIndexOrderWithSummedUsage) {
  // Two prompts (3 and 5 tokens), n = 2: choices 0, 1 of prompt 0 and 2, 3 of prompt 1.
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(), 2, {3, 5}, {});
  ASSERT_EQ(c.size(), 4u);
  EXPECT_FALSE(c.add(token_event(3, "d")));
  EXPECT_FALSE(c.add(token_event(0, "a")));
  EXPECT_FALSE(c.add(finished_event(3, 1)));
  EXPECT_FALSE(c.add(token_event(1, "b")));
  EXPECT_FALSE(c.add(token_event(2, "c")));
  EXPECT_FALSE(c.add(finished_event(0, 1, FinishReason::kStop)));
  EXPECT_FALSE(c.add(finished_event(2, 1)));
  EXPECT_TRUE(c.add(finished_event(1, 1)));
  EXPECT_FALSE(c.failure());
  const json j = json::parse(c.body());
  ASSERT_EQ(j["choices"].size(), 4u);
  const char* texts[] = {"a", "b", "c", "d"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    EXPECT_EQ(j["choices"][i]["text"], texts[i]);
  }
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["choices"][3]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 8);  // each prompt once, however many samples
  EXPECT_EQ(j["usage"]["completion_tokens"], 4);
}

TEST(CompletionChoices, EchoStartsEachChoiceWithItsPromptAndItsLogprobs) {
  std::vector<EchoedPrompt> echo(1);
  echo[0].text = "xyz";
  echo[0].tokens = {"x", "y", "z"};
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(true), 1, {3}, echo);
  EXPECT_FALSE(c.add(logits_event(0, 1, {-0.5f})));
  EXPECT_FALSE(c.add(logits_event(0, 2, {-0.25f})));
  EXPECT_FALSE(c.add(token_event(0, "!", -2.0f)));
  EXPECT_TRUE(c.add(finished_event(0, 1)));
  ASSERT_FALSE(c.failure());
  const json j = json::parse(c.body());
  const json& ch = j["choices"][0];
  EXPECT_EQ(ch["text"], "xyz!");
  EXPECT_EQ(ch["logprobs"]["tokens"], json({"x", "y", "z", "!"}));
  EXPECT_EQ(ch["logprobs"]["token_logprobs"], json({nullptr, -0.5, -0.25, -2.0}));
  EXPECT_EQ(ch["logprobs"]["text_offset"], json({0, 1, 2, 3}));
  EXPECT_EQ(j["usage"]["prompt_tokens"], 3);
  EXPECT_EQ(j["usage"]["completion_tokens"], 1);
}

TEST(CompletionChoices, AlternativesAreNamedByTheirTokensText) {
  std::vector<EchoedPrompt> echo(1);
  echo[0].text = "xy";
  echo[0].tokens = {"x", "y"};
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(true), 1, {2}, echo,
                      [](int32_t id) { return "t" + std::to_string(id); });
  ChoiceEvent prompt = logits_event(0, 1, {-0.5f});
  prompt.prompt_top.resize(1);
  prompt.prompt_top[0].count = 2;
  prompt.prompt_top[0].entries[0] = {7, -0.25f};
  prompt.prompt_top[0].entries[1] = {8, -0.5f};
  EXPECT_FALSE(c.add(prompt));
  ChoiceEvent tok = token_event(0, "!", -1.0f);
  tok.top = {{3, -1.0f}};
  EXPECT_FALSE(c.add(tok));
  EXPECT_TRUE(c.add(finished_event(0, 1)));
  const json lp = json::parse(c.body())["choices"][0]["logprobs"];
  EXPECT_TRUE(lp["top_logprobs"][0].is_null());
  EXPECT_EQ(lp["top_logprobs"][1], json({{"t7", -0.25}, {"t8", -0.5}}));
  EXPECT_EQ(lp["top_logprobs"][2], json({{"t3", -1.0}}));
  // Chat lists them in order, streamed too.
  CompletionChoices chat(openai::Endpoint::kChatCompletions, choice_meta(true), 1, {2}, {},
                         [](int32_t id) { return "t" + std::to_string(id); });
  bool done = false;
  const std::vector<json> got = sse_objects(chat.chunks(tok, done));
  ASSERT_EQ(got.size(), 1u);
  const json& entry = got[0]["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(entry["top_logprobs"][0]["token"], "t3");
  EXPECT_EQ(entry["top_logprobs"][0]["logprob"], -1.0);
}

TEST(CompletionChoices, EchoOffsetsAgreeStreamedAndNotWhenThePiecesAreNotTheText) {
  // A BOS piece the prompt text does not show: offsets run over the pieces in both forms.
  std::vector<EchoedPrompt> echo(1);
  echo[0].text = "xy";
  echo[0].tokens = {"<s>", "x", "y"};
  const auto events = [] {
    std::vector<ChoiceEvent> ev = {logits_event(0, 1, {-0.5f, std::numeric_limits<float>::quiet_NaN()}),
                                   token_event(0, "!", -1.0f), finished_event(0, 1)};
    return ev;
  }();
  CompletionChoices whole(openai::Endpoint::kCompletions, choice_meta(true), 1, {3}, echo);
  for (const ChoiceEvent& e : events) whole.add(e);
  ASSERT_FALSE(whole.failure()) << "a NaN logprob arrived: it is sent, not taken for a lost one";
  const json lp = json::parse(whole.body())["choices"][0]["logprobs"];
  EXPECT_EQ(lp["text_offset"], json({0, 3, 4, 5}));
  EXPECT_EQ(lp["token_logprobs"][2], -9999.0);
  CompletionChoices streamed(openai::Endpoint::kCompletions, choice_meta(true), 1, {3}, echo);
  bool done = false;
  std::vector<json> chunks;
  for (const ChoiceEvent& e : events)
    for (json& j : sse_objects(streamed.chunks(e, done))) chunks.push_back(std::move(j));
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0]["choices"][0]["logprobs"]["text_offset"], json({0, 3, 4}));
  EXPECT_EQ(chunks[1]["choices"][0]["logprobs"]["text_offset"], json({5}));
}

TEST(CompletionChoices, AnEchoWhoseLogprobsNeverCameIsAnErrorNotAGuess) {
  std::vector<EchoedPrompt> echo(1);
  echo[0].text = "xy";
  echo[0].tokens = {"x", "y"};
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(true), 1, {2}, echo);
  EXPECT_TRUE(c.add(finished_event(0, 0)));
  ASSERT_TRUE(c.failure());
  EXPECT_NE(c.failure()->message.find("prompt's logprobs were lost"), std::string::npos);
}

TEST(CompletionChoices, AStreamInterleavesChoicesAndEndsAfterTheLast) {
  CompletionChoices c(openai::Endpoint::kChatCompletions, choice_meta(false, true), 2, {4}, {});
  const std::vector<json> opening = sse_objects(c.opening_chunks());
  ASSERT_EQ(opening.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(opening[i]["choices"][0]["index"], i);
    EXPECT_EQ(opening[i]["choices"][0]["delta"]["role"], "assistant");
  }
  bool done = false;
  std::vector<json> got = sse_objects(c.chunks(token_event(1, "b"), done));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]["choices"][0]["index"], 1);
  EXPECT_EQ(got[0]["choices"][0]["delta"]["content"], "b");
  EXPECT_TRUE(c.chunks(token_event(0, ""), done).empty());  // held-back text, no logprobs: nothing to send
  got = sse_objects(c.chunks(finished_event(1, 1), done));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_FALSE(done);
  EXPECT_EQ(got[0]["choices"][0]["finish_reason"], "length");
  got = sse_objects(c.chunks(finished_event(0, 2), done));
  EXPECT_TRUE(done);
  ASSERT_EQ(got.size(), 3u);  // choice 0's end, usage, [DONE]
  EXPECT_EQ(got[0]["choices"][0]["index"], 0);
  EXPECT_EQ(got[1]["usage"]["prompt_tokens"], 4);
  EXPECT_EQ(got[1]["usage"]["completion_tokens"], 3);
  EXPECT_TRUE(got[2].is_null());
}

TEST(CompletionChoices, AStreamedEchoComesBeforeTheChoicesFirstToken) {
  std::vector<EchoedPrompt> echo(2);
  echo[0].text = "p0";
  echo[1].text = "p1";
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(), 1, {1, 1}, echo);
  EXPECT_TRUE(c.opening_chunks().empty());
  bool done = false;
  std::vector<json> got = sse_objects(c.chunks(token_event(1, " b"), done));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["choices"][0]["text"], "p1");
  EXPECT_EQ(got[0]["choices"][0]["index"], 1);
  EXPECT_EQ(got[1]["choices"][0]["text"], " b");
  // max_tokens 0: the echo and the end come together.
  got = sse_objects(c.chunks(finished_event(0, 0), done));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]["choices"][0]["text"], "p0");
  EXPECT_EQ(got[1]["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(done);
  got = sse_objects(c.chunks(finished_event(1, 1), done));
  EXPECT_TRUE(done);
  EXPECT_EQ(got.size(), 2u);  // the end and [DONE] (no usage asked)
}

TEST(CompletionChoices, OneFailedChoiceEndsTheStreamWithItsError) {
  CompletionChoices c(openai::Endpoint::kCompletions, choice_meta(), 3, {2}, {});
  bool done = false;
  EXPECT_EQ(c.chunks(token_event(0, "a"), done).size(), 1u);
  ChoiceEvent failed;
  failed.choice = 2;
  failed.kind = EventKind::kFailed;
  failed.error = Error{ErrorCode::kResourceExhausted, "the KV cache is full"};
  const std::vector<json> got = sse_objects(c.chunks(failed, done));
  EXPECT_TRUE(done);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_NE(got[0]["error"]["message"].get<std::string>().find("KV cache is full"), std::string::npos);
  EXPECT_TRUE(got[1].is_null());
  ASSERT_TRUE(c.failure());
  EXPECT_TRUE(c.chunks(token_event(1, "late"), done).empty());  // nothing after the end
}

}  // namespace
