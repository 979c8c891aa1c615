// The OpenAI wire protocol layer (nodes/openai): request parsing and
// validation of /v1/completions and /v1/chat/completions, the error object,
// the model field, and the response bodies and stream chunks, byte for
// byte. No server, no sockets.
//
// The goldens are hand-written from OpenAI's API reference: the chat
// completion object and chunk examples ("chatcmpl-123", "chat.completion.chunk",
// first delta {"role":"assistant","content":""}, last delta {} with the
// finish_reason, then "data: [DONE]"), the completions object example
// ("text_completion", choice keys text/index/logprobs/finish_reason), and
// stream_options.include_usage ("an additional chunk ... before the
// data: [DONE] message ... the choices field will always be an empty array.
// All other chunks will also include a usage field, but with a null value").
// system_fingerprint is left out: OpenAI documents it as optional.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nodes/openai/api_error.h"
#include "nodes/openai/model_field.h"
#include "nodes/openai/requests.h"
#include "nodes/openai/responses.h"

namespace {

using nlohmann::json;
using namespace myriad::openai;
using myriad::FinishReason;
using myriad::LogitBias;

const ProtocolLimits kLimits{};

ApiError completion_error(const std::string& body, const ProtocolLimits& limits = kLimits) {
  auto r = parse_completion_request(body, limits);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? ApiError{} : r.error();
}

ApiError chat_error(const std::string& body, const ProtocolLimits& limits = kLimits) {
  auto r = parse_chat_request(body, limits);
  EXPECT_FALSE(r.ok()) << body;
  return r.ok() ? ApiError{} : r.error();
}

CompletionCall completion(const std::string& body, const ProtocolLimits& limits = kLimits) {
  auto r = parse_completion_request(body, limits);
  EXPECT_TRUE(r.ok()) << body << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : CompletionCall{};
}

ChatCall chat(const std::string& body, const ProtocolLimits& limits = kLimits) {
  auto r = parse_chat_request(body, limits);
  EXPECT_TRUE(r.ok()) << body << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : ChatCall{};
}

// A completions body with `extra` fields added ("" for none).
std::string cbody(const std::string& extra) {
  return R"({"model":"alpha/chat","prompt":"Hi")" + (extra.empty() ? "" : "," + extra) + "}";
}
std::string chbody(const std::string& extra) {
  return R"({"model":"alpha/chat","messages":[{"role":"user","content":"Hi"}])" +
         (extra.empty() ? "" : "," + extra) + "}";
}

void expect_400(const ApiError& e, const std::string& param, const std::string& code,
                const std::string& words) {
  EXPECT_EQ(e.status, 400) << e.message;
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_EQ(e.param, param) << e.message;
  EXPECT_EQ(e.code, code) << e.message;
  EXPECT_NE(e.message.find(words), std::string::npos) << "'" << e.message << "' lacks '" << words << "'";
  if (!param.empty()) {
    EXPECT_NE(e.message.find(param), std::string::npos) << e.message << " does not name " << param;
  }
}

// ---------------------------------------------------------------- requests

TEST(OpenAiRequest, CompletionDefaultsAreOpenAis) {
  const CompletionCall c = completion(cbody(""));
  EXPECT_EQ(c.model, "alpha/chat");
  ASSERT_EQ(c.prompts.size(), 1u);
  ASSERT_TRUE(std::holds_alternative<std::string>(c.prompts[0]));
  EXPECT_EQ(std::get<std::string>(c.prompts[0]), "Hi");
  EXPECT_FALSE(c.echo);
  const GenerationOptions& o = c.options;
  EXPECT_EQ(o.max_tokens, 16u);
  EXPECT_EQ(o.n, 1u);
  EXPECT_EQ(o.sampling.temperature, 1.0f);
  EXPECT_EQ(o.sampling.top_p, 1.0f);
  EXPECT_EQ(o.sampling.top_k, 0);
  EXPECT_EQ(o.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(o.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(o.sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(o.has_seed);
  EXPECT_TRUE(o.stop.empty());
  EXPECT_FALSE(o.logprobs);
  EXPECT_FALSE(o.stream);
  EXPECT_FALSE(o.include_usage);
}

TEST(OpenAiRequest, CompletionReadsEveryField) {
  ProtocolLimits limits;
  limits.max_top_logprobs = 5;
  const CompletionCall c =
      completion(cbody(R"("max_tokens":40,"temperature":0.5,"top_p":0.9,"top_k":20,"seed":7,)"
                       R"("stop":["\n\n","END"],"n":1,"best_of":1,"logprobs":3,)"
                       R"("presence_penalty":-1.5,"frequency_penalty":2,"repetition_penalty":1.1,)"
                       R"("stream":true,"stream_options":{"include_usage":true},"user":"u1",)"
                       R"("echo":false,"suffix":"","logit_bias":{})"),
                 limits);
  const GenerationOptions& o = c.options;
  EXPECT_EQ(o.max_tokens, 40u);
  EXPECT_FLOAT_EQ(o.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(o.sampling.top_p, 0.9f);
  EXPECT_EQ(o.sampling.top_k, 20);
  EXPECT_TRUE(o.has_seed);
  EXPECT_EQ(o.sampling.seed, 7u);
  EXPECT_EQ(o.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(o.logprobs);
  EXPECT_EQ(o.top_logprobs, 3u);
  EXPECT_FLOAT_EQ(o.sampling.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(o.sampling.frequency_penalty, 2.0f);
  EXPECT_FLOAT_EQ(o.sampling.repetition_penalty, 1.1f);
  EXPECT_TRUE(o.stream);
  EXPECT_TRUE(o.include_usage);
}

// The one prompt of a body that has one.
PromptInput one_prompt(const std::string& body) {
  const CompletionCall c = completion(body);
  EXPECT_EQ(c.prompts.size(), 1u) << body;
  return c.prompts.empty() ? PromptInput{} : c.prompts[0];
}

TEST(OpenAiRequest, CompletionPromptForms) {
  EXPECT_EQ(std::get<std::string>(one_prompt(R"({"model":"m","prompt":""})")), "");
  EXPECT_EQ(std::get<std::vector<int32_t>>(one_prompt(R"({"model":"m","prompt":[1,2,3]})")),
            (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(std::get<std::string>(one_prompt(R"({"model":"m","prompt":["only"]})")), "only");
  EXPECT_EQ(std::get<std::vector<int32_t>>(one_prompt(R"({"model":"m","prompt":[[4,5]]})")),
            (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(std::get<std::vector<int32_t>>(one_prompt(R"({"model":"m","prompt":[7.0]})")),
            (std::vector<int32_t>{7}));
}

TEST(OpenAiRequest, SeveralPromptsAreReadInOrder) {
  const CompletionCall texts = completion(R"({"model":"m","prompt":["a","b",""]})");
  ASSERT_EQ(texts.prompts.size(), 3u);
  EXPECT_EQ(std::get<std::string>(texts.prompts[0]), "a");
  EXPECT_EQ(std::get<std::string>(texts.prompts[1]), "b");
  EXPECT_EQ(std::get<std::string>(texts.prompts[2]), "");
  const CompletionCall ids = completion(R"({"model":"m","prompt":[[1],[2,3]]})");
  ASSERT_EQ(ids.prompts.size(), 2u);
  EXPECT_EQ(std::get<std::vector<int32_t>>(ids.prompts[1]), (std::vector<int32_t>{2, 3}));
  // Mixed forms, and a bad token anywhere, name the prompt.
  expect_400(completion_error(R"({"model":"m","prompt":["a",[1]]})"), "prompt[1]", "invalid_type",
             "a string, as prompt[0] is");
  expect_400(completion_error(R"({"model":"m","prompt":[[1],"a"]})"), "prompt[1]", "invalid_type",
             "an array of token ids");
  expect_400(completion_error(R"({"model":"m","prompt":[[1],[2,-3]]})"), "prompt[1][1]", "invalid_value", ">= 0");
  expect_400(completion_error(R"({"model":"m","prompt":[[1],[]]})"), "prompt[1]", "invalid_value", "empty");
}

TEST(OpenAiRequest, CompletionPromptErrorsNameThePrompt) {
  expect_400(completion_error(R"({"model":"m"})"), "prompt", "missing_required_parameter", "required");
  expect_400(completion_error(R"({"model":"m","prompt":null})"), "prompt", "missing_required_parameter",
             "required");
  expect_400(completion_error(R"({"model":"m","prompt":5})"), "prompt", "invalid_type", "got an integer");
  expect_400(completion_error(R"({"model":"m","prompt":{}})"), "prompt", "invalid_type", "got an object");
  expect_400(completion_error(R"({"model":"m","prompt":[]})"), "prompt", "invalid_value", "empty");
  expect_400(completion_error(R"({"model":"m","prompt":[1,"a"]})"), "prompt[1]", "invalid_type",
             "an integer");
  expect_400(completion_error(R"({"model":"m","prompt":[1,-1]})"), "prompt[1]", "invalid_value", ">= 0");
  expect_400(completion_error(R"({"model":"m","prompt":[1,2147483648]})"), "prompt[1]", "invalid_value",
             "out of range");
  expect_400(completion_error(R"({"model":"m","prompt":[1.5]})"), "prompt[0]", "invalid_type", "an integer");
  expect_400(completion_error(R"({"model":"m","prompt":[[]]})"), "prompt[0]", "invalid_value", "empty");
  expect_400(completion_error(R"({"model":"m","prompt":[true]})"), "prompt[0]", "invalid_type",
             "got a boolean");
}

TEST(OpenAiRequest, ModelIsRequiredAndAString) {
  expect_400(completion_error(R"({"prompt":"x"})"), "model", "missing_required_parameter",
             "model is required");
  expect_400(chat_error(R"({"messages":[{"role":"user","content":"x"}]})"), "model",
             "missing_required_parameter", "model is required");
  expect_400(completion_error(R"({"model":3,"prompt":"x"})"), "model", "invalid_type", "expected a string");
  expect_400(completion_error(R"({"model":"","prompt":"x"})"), "model", "invalid_value", "empty");
}

// Every common field: its wrong type and its out-of-range value, through
// both endpoints, each naming the field.
TEST(OpenAiRequest, EveryFieldOutOfRangeOrMistypedIsA400NamingIt) {
  struct Case {
    std::string field, code, words;
  };
  const std::vector<Case> cases = {
      {R"("temperature":"hot")", "invalid_type", "temperature: expected a number, got a string"},
      {R"("temperature":2.5)", "invalid_value", "temperature 2.5 is out of range: must be in [0, 2]"},
      {R"("temperature":-0.1)", "invalid_value", "temperature -0.1 is out of range"},
      {R"("top_p":0)", "invalid_value", "top_p 0 is out of range: must be in (0, 1]"},
      {R"("top_p":1.01)", "invalid_value", "top_p 1.01 is out of range"},
      {R"("top_p":true)", "invalid_type", "top_p: expected a number, got a boolean"},
      {R"("top_k":-2)", "invalid_value", "top_k -2 is out of range"},
      {R"("top_k":1.5)", "invalid_type", "top_k: expected an integer, got a number"},
      {R"("top_k":"5")", "invalid_type", "top_k: expected an integer, got a string"},
      {R"("presence_penalty":2.1)", "invalid_value",
       "presence_penalty 2.1 is out of range: must be in [-2, 2]"},
      {R"("frequency_penalty":-3)", "invalid_value", "frequency_penalty -3 is out of range"},
      {R"("frequency_penalty":[])", "invalid_type", "frequency_penalty: expected a number, got an array"},
      {R"("repetition_penalty":0)", "invalid_value", "repetition_penalty 0 is out of range: must be > 0"},
      {R"("seed":"1")", "invalid_type", "seed: expected an integer, got a string"},
      {R"("seed":1.5)", "invalid_type", "seed: expected an integer"},
      {R"("stop":5)", "invalid_type", "stop: expected a string or an array of strings, got an integer"},
      {R"("stop":"")", "invalid_value", "stop \"\" is empty"},
      {R"("stop":["a",1])", "invalid_type", "stop[1]: expected a string, got an integer"},
      {R"("stop":["a",""])", "invalid_value", "stop[1] \"\" is empty"},
      {R"("stop":["a","b","c","d","e"])", "invalid_value", "stop has 5 strings; at most 4"},
      {R"("n":0)", "invalid_value", "n 0 is out of range: must be in [1, 128]"},
      {R"("n":129)", "invalid_value", "n 129 is out of range: must be in [1, 128]"},
      {R"("n":"1")", "invalid_type", "n: expected an integer"},
      {R"("stream":"yes")", "invalid_type", "stream: expected a boolean, got a string"},
      {R"("stream":1)", "invalid_type", "stream: expected a boolean, got an integer"},
      {R"("stream":true,"stream_options":[])", "invalid_type", "stream_options: expected an object"},
      {R"("stream_options":{"include_usage":true})", "invalid_value",
       "stream_options is only allowed when stream is true"},
      {R"("stream":true,"stream_options":{"include_usage":"yes"})", "invalid_type",
       "stream_options.include_usage: expected a boolean"},
      {R"("user":5)", "invalid_type", "user: expected a string"},
      {R"("max_tokens":0)", "invalid_value", "max_tokens 0 is out of range: must be in [1, 4294967295]"},
      {R"("max_tokens":4294967296)", "invalid_value", "max_tokens 4294967296 is out of range"},
      {R"("max_tokens":-5)", "invalid_value", "max_tokens -5 is out of range"},
      {R"("max_tokens":16.5)", "invalid_type", "max_tokens: expected an integer, got a number"},
      {R"("max_tokens":"16")", "invalid_type", "max_tokens: expected an integer, got a string"},
  };
  for (const Case& c : cases) {
    // The param is the first key of the field (the one the case is about).
    std::string param = c.words.substr(0, c.words.find_first_of(" :"));
    SCOPED_TRACE(c.field);
    expect_400(completion_error(cbody(c.field)), param, c.code, c.words);
    expect_400(chat_error(chbody(c.field)), param, c.code, c.words);
  }
}

TEST(OpenAiRequest, NullMeansAbsentAndUnknownFieldsAreIgnored) {
  const CompletionCall c =
      completion(cbody(R"("max_tokens":null,"temperature":null,"stop":null,"seed":null,)"
                       R"("tools":null,"response_format":null,"stream_options":null,)"
                       R"("logprobs":null,"some_future_field":{"x":[1,2]},"metadata":{"k":"v"})"));
  EXPECT_EQ(c.options.max_tokens, 16u);
  EXPECT_EQ(c.options.sampling.temperature, 1.0f);
  EXPECT_FALSE(c.options.has_seed);
  EXPECT_FALSE(c.options.logprobs);
  const ChatCall ch = chat(chbody(R"("max_completion_tokens":null,"service_tier":"auto","store":false)"));
  EXPECT_FALSE(ch.options.max_tokens.has_value());
}

TEST(OpenAiRequest, IntegersMayBeWrittenAsWholeFloats) {
  const CompletionCall c = completion(cbody(R"("max_tokens":16.0,"top_k":-1,"n":1.0)"));
  EXPECT_EQ(c.options.max_tokens, 16u);
  EXPECT_EQ(c.options.sampling.top_k, 0);  // vLLM's -1 = off
}

TEST(OpenAiRequest, SeedTakesAny64BitInteger) {
  EXPECT_EQ(completion(cbody(R"("seed":-1)")).options.sampling.seed, ~uint64_t(0));
  EXPECT_EQ(completion(cbody(R"("seed":18446744073709551615)")).options.sampling.seed, ~uint64_t(0));
  EXPECT_EQ(completion(cbody(R"("seed":0)")).options.sampling.seed, 0u);
  EXPECT_TRUE(completion(cbody(R"("seed":0)")).options.has_seed);
}

TEST(OpenAiRequest, StopIsAStringOrUpToFourStrings) {
  EXPECT_EQ(completion(cbody(R"("stop":"###")")).options.stop, (std::vector<std::string>{"###"}));
  EXPECT_EQ(completion(cbody(R"("stop":["a","b","c","d"])")).options.stop.size(), 4u);
  EXPECT_TRUE(completion(cbody(R"("stop":[])")).options.stop.empty());
}

TEST(OpenAiRequest, ChoicesAreNTimesThePromptsUpToTheLimit) {
  EXPECT_EQ(completion(cbody(R"("n":1)")).options.n, 1u);
  EXPECT_EQ(completion(cbody(R"("n":128)")).options.n, 128u);
  EXPECT_EQ(chat(chbody(R"("n":3)")).options.n, 3u);
  EXPECT_EQ(completion(R"({"model":"m","prompt":["a","b"],"n":64})").options.n, 64u);
  expect_400(completion_error(R"({"model":"m","prompt":["a","b","c"],"n":50})"), "prompt", "invalid_value",
             "3 prompts times n 50 make 150 choices; at most 128");
  ProtocolLimits four;
  four.max_choices = 4;
  expect_400(chat_error(chbody(R"("n":5)"), four), "n", "invalid_value", "n 5 is out of range: must be in [1, 4]");
  expect_400(completion_error(cbody(R"("best_of":2)")), "best_of", "unsupported_value", "not supported yet");
}

TEST(OpenAiRequest, EchoIsABooleanAndLetsMaxTokensBeZero) {
  EXPECT_FALSE(completion(cbody(R"("echo":false)")).echo);
  const CompletionCall c = completion(cbody(R"("echo":true,"max_tokens":0)"));
  EXPECT_TRUE(c.echo);
  EXPECT_EQ(c.options.max_tokens, 0u);
  expect_400(completion_error(cbody(R"("echo":1)")), "echo", "invalid_type", "echo: expected a boolean");
  // Without echo there is nothing to return for 0 tokens.
  expect_400(completion_error(cbody(R"("max_tokens":0)")), "max_tokens", "invalid_value",
             "max_tokens 0 is out of range: must be in [1, ");
  expect_400(completion_error(cbody(R"("echo":true,"max_tokens":-1)")), "max_tokens", "invalid_value",
             "must be in [0, ");
}

TEST(OpenAiRequest, UnsupportedFieldsAre400NamingTheField) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"response_format", R"("response_format":{"type":"json_object"})"},
      {"response_format", R"("response_format":"json")"},
      {"tools", R"("tools":[{"type":"function","function":{"name":"f"}}])"},
      {"tool_choice", R"("tool_choice":"auto")"},
      {"tool_choice", R"("tool_choice":{"type":"function","function":{"name":"f"}})"},
      {"functions", R"("functions":[{"name":"f"}])"},
      {"function_call", R"("function_call":"auto")"},
  };
  for (const auto& [param, field] : refused) {
    SCOPED_TRACE(field);
    expect_400(chat_error(chbody(field)), param, "unsupported_parameter", param + " is not supported yet");
    expect_400(completion_error(cbody(field)), param, "unsupported_parameter",
               param + " is not supported yet");
  }
  expect_400(completion_error(cbody(R"("suffix":"tail")")), "suffix", "unsupported_parameter",
             "suffix is not supported yet");
  // Their neutral values mean what absence means, and some clients always send them.
  chat(chbody(R"("response_format":{"type":"text"},"tools":[],"tool_choice":"none","functions":[],)"
              R"("function_call":"none","logit_bias":{})"));
  completion(cbody(R"("suffix":"","logit_bias":{})"));
}

TEST(OpenAiRequest, LogitBiasIsTokenIdsToBiasesWithinBounds) {
  ProtocolLimits applies;
  applies.applies_logit_bias = true;
  const CompletionCall c = completion(cbody(R"("logit_bias":{"50256":-100,"7":2.5,"0":100})"), applies);
  ASSERT_EQ(c.options.logit_bias.size(), 3u);
  std::map<int32_t, float> got;
  for (const LogitBias& b : c.options.logit_bias) got[b.token] = b.bias;
  EXPECT_EQ(got, (std::map<int32_t, float>{{0, 100.0f}, {7, 2.5f}, {50256, -100.0f}}));
  EXPECT_EQ(chat(chbody(R"("logit_bias":{"3":-1})"), applies).options.logit_bias.size(), 1u);
  EXPECT_TRUE(completion(cbody(R"("logit_bias":{})")).options.logit_bias.empty());  // what absence means

  auto refused = [&](const std::string& field, const std::string& param, const std::string& code,
                     const std::string& words) {
    SCOPED_TRACE(field.substr(0, 60));
    expect_400(completion_error(cbody(field), applies), param, code, words);
  };
  refused(R"("logit_bias":[1,2])", "logit_bias", "invalid_type", "logit_bias: expected an object, got an array");
  refused(R"("logit_bias":{"abc":1})", "logit_bias", "invalid_value", "logit_bias key \"abc\" is not a token id");
  refused(R"("logit_bias":{"-3":1})", "logit_bias", "invalid_value", "logit_bias key \"-3\" is not a token id");
  refused(R"("logit_bias":{"12x":1})", "logit_bias", "invalid_value", "logit_bias key \"12x\" is not a token id");
  refused(R"("logit_bias":{"99999999999":1})", "logit_bias", "invalid_value", "is not a token id");
  refused(R"("logit_bias":{"5":100.5})", "logit_bias[\"5\"]", "invalid_value",
          "logit_bias[\"5\"] 100.5 is out of range: must be in [-100, 100]");
  refused(R"("logit_bias":{"5":"1"})", "logit_bias[\"5\"]", "invalid_type",
          "logit_bias[\"5\"]: expected a number, got a string");
  std::string many = R"("logit_bias":{)";
  for (int i = 0; i <= 300; ++i) many += (i ? "," : "") + ("\"" + std::to_string(i) + "\":1");
  refused(many + "}", "logit_bias", "invalid_value", "logit_bias has 301 tokens; at most 300");
  // An executor that does not apply one (CUDA so far) refuses it rather than ignore it.
  expect_400(completion_error(cbody(R"("logit_bias":{"5":1})")), "logit_bias", "unsupported_value",
             "logit_bias is not supported by this server's executor yet");
}

TEST(OpenAiRequest, StopTokenIdsAndMinTokensAreVllmsExtensions) {
  ProtocolLimits applies;
  applies.applies_logit_bias = true;
  const CompletionCall c = completion(cbody(R"("stop_token_ids":[2,128001],"min_tokens":3,"max_tokens":10)"), applies);
  EXPECT_EQ(c.options.stop_token_ids, (std::vector<int32_t>{2, 128001}));
  EXPECT_EQ(c.options.min_tokens, 3u);
  EXPECT_EQ(chat(chbody(R"("min_tokens":0)")).options.min_tokens, 0u);  // 0 needs nothing of the executor
  EXPECT_EQ(chat(chbody(R"("max_completion_tokens":5,"min_tokens":5)"), applies).options.min_tokens, 5u);
  expect_400(completion_error(cbody(R"("stop_token_ids":2)")), "stop_token_ids", "invalid_type",
             "stop_token_ids: expected an array of token ids");
  expect_400(completion_error(cbody(R"("stop_token_ids":[1,-2])")), "stop_token_ids[1]", "invalid_value",
             "stop_token_ids[1] -2 is out of range");
  std::string many = R"("stop_token_ids":[)";
  for (int i = 0; i <= 64; ++i) many += (i ? "," : "") + std::to_string(i);
  expect_400(completion_error(cbody(many + "]")), "stop_token_ids", "invalid_value",
             "stop_token_ids has 65 ids; at most 64");
  expect_400(completion_error(cbody(R"("min_tokens":20,"max_tokens":10)"), applies), "min_tokens", "invalid_value",
             "min_tokens 20 exceeds max_tokens 10");
  expect_400(completion_error(cbody(R"("min_tokens":17)"), applies), "min_tokens", "invalid_value",
             "min_tokens 17 exceeds max_tokens 16");  // completions' default max_tokens
  expect_400(chat_error(chbody(R"("min_tokens":-1)"), applies), "min_tokens", "invalid_value", "must be >= 0");
  expect_400(completion_error(cbody(R"("min_tokens":2)")), "min_tokens", "unsupported_value",
             "min_tokens is not supported by this server's executor yet");
}

TEST(OpenAiRequest, LogprobsAreBoundedByWhatTheServerReturns) {
  // The limit is the executor's (CPU 20, CUDA 0 so far); the default limits say 0.
  const CompletionCall c = completion(cbody(R"("logprobs":0)"));
  EXPECT_TRUE(c.options.logprobs);
  EXPECT_EQ(c.options.top_logprobs, 0u);
  expect_400(completion_error(cbody(R"("logprobs":2)")), "logprobs", "unsupported_value",
             "logprobs 2 is more alternatives per token than this server returns (0)");
  expect_400(completion_error(cbody(R"("logprobs":6)")), "logprobs", "invalid_value",
             "logprobs 6 is out of range: must be in [0, 5]");
  expect_400(completion_error(cbody(R"("logprobs":true)")), "logprobs", "invalid_type",
             "expected an integer, got a boolean");
  ProtocolLimits five;
  five.max_top_logprobs = 5;
  EXPECT_EQ(completion(cbody(R"("logprobs":5)"), five).options.top_logprobs, 5u);

  const ChatCall ch = chat(chbody(R"("logprobs":true,"top_logprobs":0)"));
  EXPECT_TRUE(ch.options.logprobs);
  ProtocolLimits twenty;
  twenty.max_top_logprobs = 20;
  EXPECT_EQ(chat(chbody(R"("logprobs":true,"top_logprobs":20)"), twenty).options.top_logprobs, 20u);
  expect_400(chat_error(chbody(R"("logprobs":true,"top_logprobs":21)"), twenty), "top_logprobs",
             "invalid_value", "top_logprobs 21 is out of range: must be in [0, 20]");
  expect_400(chat_error(chbody(R"("top_logprobs":2)"), twenty), "top_logprobs", "invalid_value",
             "top_logprobs needs logprobs: true");
  expect_400(chat_error(chbody(R"("logprobs":true,"top_logprobs":1)")), "top_logprobs", "unsupported_value",
             "more alternatives per token than this server returns");
  expect_400(chat_error(chbody(R"("logprobs":1)")), "logprobs", "invalid_type",
             "logprobs: expected a boolean");
}

TEST(OpenAiRequest, MaxTokensLimitIsNamed) {
  ProtocolLimits limits;
  limits.max_tokens = 2048;
  EXPECT_EQ(completion(cbody(R"("max_tokens":2048)"), limits).options.max_tokens, 2048u);
  expect_400(completion_error(cbody(R"("max_tokens":2049)"), limits), "max_tokens", "invalid_value",
             "max_tokens 2049 is out of range: must be in [1, 2048]");
}

TEST(OpenAiRequest, ChatReadsMessagesAndMaxCompletionTokensWins) {
  const ChatCall c =
      chat(R"({"model":"m","messages":[{"role":"developer","content":"Be brief."},)"
           R"({"role":"system","content":[{"type":"text","text":"A"},{"type":"text","text":"B"}]},)"
           R"({"role":"user","name":"ann","content":"héllo 😀"},{"role":"assistant","content":null},)"
           R"({"role":"assistant","content":"ok","tool_calls":[]},{"role":"user","content":[]}],)"
           R"("max_tokens":10,"max_completion_tokens":20})");
  ASSERT_EQ(c.messages.size(), 6u);
  EXPECT_EQ(c.messages[0].role, "system");
  EXPECT_EQ(c.messages[0].content, "Be brief.");
  EXPECT_EQ(c.messages[1].content, "A\nB");
  EXPECT_EQ(c.messages[2].name, "ann");
  EXPECT_EQ(c.messages[2].content, "héllo 😀");
  EXPECT_EQ(c.messages[3].role, "assistant");
  EXPECT_EQ(c.messages[3].content, "");
  EXPECT_EQ(c.messages[4].content, "ok");
  EXPECT_EQ(c.messages[5].content, "");
  EXPECT_EQ(c.options.max_tokens, 20u);
  EXPECT_EQ(chat(chbody(R"("max_tokens":10)")).options.max_tokens, 10u);
  EXPECT_FALSE(chat(chbody("")).options.max_tokens.has_value());  // until the context is full
  const json t = template_messages(c.messages);
  EXPECT_EQ(t[2], json({{"role", "user"}, {"content", "héllo 😀"}, {"name", "ann"}}));
  EXPECT_EQ(t[0], json({{"role", "system"}, {"content", "Be brief."}}));
  expect_400(chat_error(chbody(R"("max_completion_tokens":0)")), "max_completion_tokens", "invalid_value",
             "out of range");
}

TEST(OpenAiRequest, ChatMessageErrorsNameTheMessageAndPart) {
  auto msgs = [](const std::string& m) { return R"({"model":"m","messages":)" + m + "}"; };
  expect_400(chat_error(R"({"model":"m"})"), "messages", "missing_required_parameter",
             "messages is required");
  expect_400(chat_error(msgs("{}")), "messages", "invalid_type",
             "expected an array of messages, got an object");
  expect_400(chat_error(msgs("[]")), "messages", "invalid_value", "at least one message");
  expect_400(chat_error(msgs(R"(["hi"])")), "messages[0]", "invalid_type",
             "expected an object, got a string");
  expect_400(chat_error(msgs(R"([{"content":"x"}])")), "messages[0].role", "missing_required_parameter",
             "required");
  expect_400(chat_error(msgs(R"([{"role":1,"content":"x"}])")), "messages[0].role", "invalid_type",
             "expected a string");
  expect_400(chat_error(msgs(R"([{"role":"user","content":"x"},{"role":"robot","content":"x"}])")),
             "messages[1].role", "invalid_value", "\"robot\" is not one of");
  expect_400(chat_error(msgs(R"([{"role":"tool","content":"x","tool_call_id":"c1"}])")), "messages[0].role",
             "unsupported_value", "tool calling is not implemented");
  expect_400(chat_error(msgs(R"([{"role":"user"}])")), "messages[0].content", "missing_required_parameter",
             "required");
  expect_400(chat_error(msgs(R"([{"role":"user","content":5}])")), "messages[0].content", "invalid_type",
             "expected a string or an array of content parts");
  expect_400(chat_error(msgs(R"([{"role":"user","content":["x"]}])")), "messages[0].content[0]",
             "invalid_type", "expected an object");
  expect_400(chat_error(msgs(R"([{"role":"user","content":[{"text":"x"}]}])")), "messages[0].content[0].type",
             "missing_required_parameter", "required");
  expect_400(
      chat_error(msgs(
          R"([{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}}]}])")),
      "messages[0].content[1].type", "unsupported_value",
      "\"image_url\" is not supported: only \"text\" parts");
  expect_400(chat_error(msgs(R"([{"role":"user","content":[{"type":"text"}]}])")),
             "messages[0].content[0].text", "missing_required_parameter", "required");
  expect_400(chat_error(msgs(R"([{"role":"user","content":[{"type":"text","text":7}]}])")),
             "messages[0].content[0].text", "invalid_type", "expected a string, got an integer");
  expect_400(chat_error(msgs(R"([{"role":"user","content":"x","name":1}])")), "messages[0].name",
             "invalid_type", "expected a string");
  expect_400(chat_error(msgs(R"([{"role":"assistant","content":null,"tool_calls":[{"id":"c"}]}])")),
             "messages[0].tool_calls", "unsupported_parameter", "tool calling is not implemented");
}

TEST(OpenAiRequest, MalformedJsonNamesLineColumnAndByte) {
  ApiError e = completion_error("{\"model\": \"m\",\n \"prompt\": }");
  expect_400(e, "", "invalid_json",
             "malformed JSON at line 2, column 12 (byte 26): syntax error while parsing value");
  e = completion_error("");
  expect_400(e, "", "invalid_json", "malformed JSON at line 1, column 1 (byte 0)");
  e = completion_error(R"({"model":"m","prompt":"x"} trailing)");
  // nlohmann reads "tra" as the start of a literal before it gives up.
  expect_400(e, "", "invalid_json", "malformed JSON at line 1, column 30 (byte 29)");
  EXPECT_NE(e.message.find("expected end of input"), std::string::npos) << e.message;
  e = completion_error("{\"model\":\"m\",\"prompt\":\"\xff\"}");
  expect_400(e, "", "invalid_json", "invalid string: ill-formed UTF-8 byte");
  e = completion_error(R"({"model":"m","prompt":"x","max_tokens":1e999})");
  expect_400(e, "", "invalid_json", "number overflow");
  e = chat_error(R"({"model":"m","messages":[{"role":"user","content":"x"}],})");
  expect_400(e, "", "invalid_json", "malformed JSON at line 1, column 57");
  expect_400(completion_error(R"(["model"])"), "", "invalid_type",
             "request body: expected a JSON object, got array");
  expect_400(completion_error("null"), "", "invalid_type", "expected a JSON object, got null");
}

TEST(OpenAiRequest, DeepNestingAndHugeBodiesAreRefusedNotParsed) {
  const std::string deep =
      R"({"model":"m","prompt":"x","x":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  expect_400(completion_error(deep), "", "invalid_json", "nested deeper than 64 levels");
  ProtocolLimits small;
  small.max_body_bytes = 16;
  const ApiError e = completion_error(cbody(""), small);
  EXPECT_EQ(e.status, 413);
  EXPECT_EQ(e.type, "invalid_request_error");
  EXPECT_NE(e.message.find("exceeds the limit of 16 bytes"), std::string::npos) << e.message;
}

// ------------------------------------------------------------------ errors

TEST(OpenAiError, ToJsonIsOpenAisShape) {
  EXPECT_EQ(
      to_json(invalid_request("temperature 3 is out of range: must be in [0, 2]", "temperature",
                              "invalid_value")),
      R"({"error":{"message":"temperature 3 is out of range: must be in [0, 2]","type":"invalid_request_error",)"
      R"("param":"temperature","code":"invalid_value"}})");
  EXPECT_EQ(
      to_json(invalid_request("bad \"quote\"\n")),
      R"({"error":{"message":"bad \"quote\"\n","type":"invalid_request_error","param":null,"code":null}})");
  EXPECT_EQ(to_json(model_not_found("alpha/x")),
            R"({"error":{"message":"The model `alpha/x` does not exist or you do not have access to it.",)"
            R"("type":"invalid_request_error","param":"model","code":"model_not_found"}})");
}

TEST(OpenAiError, StatusesAndTypes) {
  EXPECT_EQ(model_not_found("m").status, 404);
  EXPECT_EQ(invalid_api_key().status, 401);
  EXPECT_EQ(invalid_api_key().type, "authentication_error");
  EXPECT_EQ(invalid_api_key().code, "invalid_api_key");
  EXPECT_EQ(rate_limited("slow down").status, 429);
  EXPECT_EQ(rate_limited("slow down").code, "rate_limit_exceeded");
  EXPECT_EQ(body_too_large(10, 5).status, 413);
  EXPECT_EQ(overloaded("draining").status, 503);
  EXPECT_EQ(overloaded("draining").code, "server_is_overloaded");
  EXPECT_EQ(internal_error("x").status, 500);
  EXPECT_EQ(internal_error("x").type, "server_error");
  EXPECT_EQ(not_found_route("GET", "/v1/nope").status, 404);
  EXPECT_EQ(not_found_route("GET", "/v1/nope").message, "Invalid URL (GET /v1/nope)");
  for (const ApiError& e : {invalid_api_key(), rate_limited("r"), body_too_large(2, 1), overloaded("o"),
                            internal_error("i"), not_found_route("GET", "/")}) {
    const json j = json::parse(to_json(e), nullptr, false);
    ASSERT_FALSE(j.is_discarded());
    EXPECT_EQ(j["error"]["message"], e.message);
    EXPECT_EQ(j["error"]["type"], e.type);
  }
}

// ------------------------------------------------------------- model field

TEST(OpenAiModelField, ResolutionTable) {
  struct Row {
    std::string model;
    bool base;
    std::string tenant, name;
    uint64_t version;
  };
  const std::vector<Row> rows = {
      {"tiny-llama", true, "", "", 0},
      {"org/base-8b", true, "", "", 0},  // a base name with a slash is still the base (exact match first)
      {"alpha/chat", false, "alpha", "chat", 0},
      {"alpha/chat@3", false, "alpha", "chat", 3},
      {"alpha/chat@latest", false, "alpha", "chat", 0},
      {"chat", false, "beta", "chat", 0},  // bare: the caller's tenant
      {"chat@2", false, "beta", "chat", 2},
      {"gamma/secret", false, "gamma", "secret",
       0},  // another tenant's: syntax only; the registry answers 404
      {"tiny-llama@1", false, "beta", "tiny-llama", 1},  // not the base's exact name
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.model);
    const std::string base = r.model == "org/base-8b" ? "org/base-8b" : "tiny-llama";
    auto m = resolve_model_field(r.model, base, "beta");
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->is_base(), r.base);
    if (!r.base) {
      EXPECT_EQ(m->adapter.tenant, r.tenant);
      EXPECT_EQ(m->adapter.name, r.name);
      EXPECT_EQ(m->adapter.version, r.version);
    }
  }
  for (const std::string bad : {"", "a b", "alpha/chat@0", "alpha/chat@x", "a/b/c", "-x", "alpha/"}) {
    SCOPED_TRACE(bad);
    auto m = resolve_model_field(bad, "tiny-llama", "beta");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error().status, 404);
    EXPECT_EQ(m.error().code, "model_not_found");
    EXPECT_EQ(m.error().param, "model");
    EXPECT_NE(m.error().message.find("does not exist or you do not have access to it"), std::string::npos);
  }
}

// --------------------------------------------------------------- responses

ResponseMeta meta(Endpoint e, bool logprobs = false, bool include_usage = false) {
  ResponseMeta m;
  m.id = response_id(e, 42);
  m.created = 1694268190;
  m.model = "alpha/chat@3";
  m.logprobs = logprobs;
  m.include_usage = include_usage;
  return m;
}

TEST(OpenAiResponse, IdsAndFinishReasons) {
  EXPECT_EQ(response_id(Endpoint::kCompletions, 42), "cmpl-000000000000002a");
  EXPECT_EQ(response_id(Endpoint::kChatCompletions, ~uint64_t(0)), "chatcmpl-ffffffffffffffff");
  EXPECT_STREQ(finish_reason_string(FinishReason::kStop), "stop");
  EXPECT_STREQ(finish_reason_string(FinishReason::kLength), "length");
  EXPECT_STREQ(finish_reason_string(FinishReason::kCancelled), "abort");
  EXPECT_STREQ(finish_reason_string(FinishReason::kDeadline), "abort");
}

TEST(OpenAiResponse, CompletionGolden) {
  Choice c;
  c.text = "\n\nThis is indeed a test";
  c.finish_reason = FinishReason::kLength;
  EXPECT_EQ(
      completion_response(meta(Endpoint::kCompletions), c, {5, 7}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":"\n\nThis is indeed a test","index":0,"logprobs":null,"finish_reason":"length"}],)"
      R"("usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}})");
}

TEST(OpenAiResponse, ChatCompletionGolden) {
  Choice c;
  c.text = "Hello there, how may I assist you today?";
  EXPECT_EQ(
      chat_completion_response(meta(Endpoint::kChatCompletions), c, {9, 12}),
      R"({"id":"chatcmpl-000000000000002a","object":"chat.completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how may I assist you today?"},)"
      R"("logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}})");
}

TEST(OpenAiResponse, ChatStreamGoldenWithUsage) {
  const ResponseMeta m = meta(Endpoint::kChatCompletions, false, true);
  std::string wire;
  wire += sse_event(chat_role_chunk(m));
  wire += sse_event(chat_chunk(m, {.text = "Hello"}));
  wire += sse_event(chat_chunk(m, {.text = "!"}));
  wire += sse_event(chat_chunk(m, {.finish_reason = FinishReason::kStop}));
  wire += sse_event(usage_chunk(Endpoint::kChatCompletions, m, {9, 2}));
  wire += sse_done();
  const std::string h =
      R"({"id":"chatcmpl-000000000000002a","object":"chat.completion.chunk","created":1694268190,)"
      R"("model":"alpha/chat@3",)";
  const std::string expected =
      "data: " + h +
      R"("choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null})"
      "\n\n"
      "data: " +
      h +
      R"("choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null})"
      "\n\n"
      "data: " +
      h +
      R"("choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}],"usage":null})"
      "\n\n"
      "data: " +
      h +
      R"("choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null})"
      "\n\n"
      "data: " +
      h +
      R"("choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}})"
      "\n\n"
      "data: [DONE]\n\n";
  EXPECT_EQ(wire, expected);
}

TEST(OpenAiResponse, StreamWithoutIncludeUsageHasNoUsageKey) {
  const ResponseMeta m = meta(Endpoint::kChatCompletions);
  EXPECT_EQ(
      chat_chunk(m, {.text = "Hi"}),
      R"({"id":"chatcmpl-000000000000002a","object":"chat.completion.chunk","created":1694268190,)"
      R"("model":"alpha/chat@3","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]})");
  EXPECT_EQ(
      chat_chunk(m, {.text = "", .finish_reason = FinishReason::kCancelled}),
      R"({"id":"chatcmpl-000000000000002a","object":"chat.completion.chunk","created":1694268190,)"
      R"("model":"alpha/chat@3","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"abort"}]})");
}

TEST(OpenAiResponse, CompletionStreamGolden) {
  const ResponseMeta m = meta(Endpoint::kCompletions, false, true);
  EXPECT_EQ(
      sse_event(completion_chunk(m, {.text = " world"})),
      "data: "
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":" world","index":0,"logprobs":null,"finish_reason":null}],"usage":null})"
      "\n\n");
  EXPECT_EQ(
      completion_chunk(m, {.text = "", .finish_reason = FinishReason::kLength}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"length"}],"usage":null})");
  EXPECT_EQ(
      usage_chunk(Endpoint::kCompletions, m, {3, 4}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}})");
}

TEST(OpenAiResponse, CompletionLogprobsShape) {
  Choice c;
  c.text = "Hé!";
  c.finish_reason = FinishReason::kStop;
  c.logprobs = {{"H", -0.1f, {{"H", -0.1f}, {"h", -2.5f}}},
                {"é", -0.25f, {}},
                {"!", -std::numeric_limits<float>::infinity(), {}}};
  EXPECT_EQ(
      completion_response(meta(Endpoint::kCompletions, true), c, {1, 3}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":"Hé!","index":0,"logprobs":{"tokens":["H","é","!"],"token_logprobs":[-0.1,-0.25,-9999.0],)"
      R"("top_logprobs":[{"H":-0.1,"h":-2.5},{},{}],"text_offset":[0,1,2]},"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":1,"completion_tokens":3,"total_tokens":4}})");
  // Streamed: the offsets continue from the text already sent.
  const std::vector<TokenLogprob> toks = {{"ab", -1.0f, {}}, {"c", -0.5f, {}}};
  const json j = json::parse(completion_chunk(meta(Endpoint::kCompletions, true),
                                              {.text = "abc", .logprobs = toks, .text_offset = 10}));
  EXPECT_EQ(j["choices"][0]["logprobs"]["text_offset"], json({10, 12}));
}

TEST(OpenAiResponse, ChatLogprobsShapeWithBytes) {
  Choice c;
  c.text = "é";
  c.logprobs = {{"é", -0.5f, {{"é", -0.5f}, {"e", -1.75f}}}};
  EXPECT_EQ(
      chat_completion_response(meta(Endpoint::kChatCompletions, true), c, {2, 1}),
      R"({"id":"chatcmpl-000000000000002a","object":"chat.completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"index":0,"message":{"role":"assistant","content":"é"},"logprobs":{"content":[)"
      R"({"token":"é","logprob":-0.5,"bytes":[195,169],"top_logprobs":[{"token":"é","logprob":-0.5,"bytes":[195,169]},)"
      R"({"token":"e","logprob":-1.75,"bytes":[101]}]}],"refusal":null},"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}})");
}

TEST(OpenAiResponse, TextIsEscapedAndUtf8Kept) {
  const ResponseMeta m = meta(Endpoint::kChatCompletions);
  const std::string text = "quote\" back\\ nl\n tab\t ctl\x01 é 中文 😀";
  const std::string out = chat_chunk(m, {.text = text});
  EXPECT_NE(out.find(R"("content":"quote\" back\\ nl\n tab\t ctl\u0001 é 中文 😀")"), std::string::npos)
      << out;
  const json j = json::parse(out, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["choices"][0]["delta"]["content"], text);
  // A token that is part of a character: U+FFFD in "token", the exact bytes in "bytes".
  Choice c;
  c.text = "😀";
  c.logprobs = {{"\xF0\x9F", -1.0f, {}}, {"\x98\x80", -2.0f, {}}};
  const json r = json::parse(chat_completion_response(meta(Endpoint::kChatCompletions, true), c, {1, 2}),
                             nullptr, false);
  ASSERT_FALSE(r.is_discarded());
  const json& lp = r["choices"][0]["logprobs"]["content"];
  EXPECT_EQ(lp[0]["token"], "\xEF\xBF\xBD");
  EXPECT_EQ(lp[0]["bytes"], json({0xF0, 0x9F}));
  EXPECT_EQ(lp[1]["bytes"], json({0x98, 0x80}));
}

TEST(OpenAiResponse, FloatsPrintShortAndReadBackExactly) {
  Choice c;
  for (float f : {-0.1f, -1e-7f, -3.4028235e38f, -0.0f, -123.456f, -1.0f / 3.0f})
    c.logprobs.push_back({"x", f, {}});
  c.logprobs.push_back({"x", std::nanf(""), {}});
  const std::string out = completion_response(meta(Endpoint::kCompletions, true), c, {});
  EXPECT_NE(out.find(R"("token_logprobs":[-0.1,-1e-07,-9999.0,-0.0,-123.456,-0.33333334,-9999.0])"),
            std::string::npos)
      << out;
  const json j = json::parse(out);
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"][5].get<float>(), -1.0f / 3.0f);
}

// Every builder's output is JSON that reads back to what went in.
TEST(OpenAiResponse, EveryBuilderRoundTripsThroughNlohmann) {
  const std::vector<TokenLogprob> toks = {{"a", -0.5f, {{"a", -0.5f}, {"b", -1.5f}}}};
  Choice c;
  c.text = "a";
  c.logprobs = toks;
  c.finish_reason = FinishReason::kLength;
  for (bool lp : {false, true}) {
    for (bool usage : {false, true}) {
      const ResponseMeta mc = meta(Endpoint::kCompletions, lp, usage);
      const ResponseMeta mh = meta(Endpoint::kChatCompletions, lp, usage);
      // (text, is a stream chunk other than the usage chunk)
      const std::vector<std::pair<std::string, bool>> outs = {
          {completion_response(mc, c, {4, 1}), false},
          {chat_completion_response(mh, c, {4, 1}), false},
          {chat_role_chunk(mh), true},
          {chat_chunk(mh, {.text = "a", .logprobs = toks}), true},
          {chat_chunk(mh, {.finish_reason = FinishReason::kStop}), true},
          {completion_chunk(mc, {.text = "a", .logprobs = toks, .finish_reason = FinishReason::kLength}),
           true},
          {usage_chunk(Endpoint::kCompletions, mc, {4, 1}), false},
          {usage_chunk(Endpoint::kChatCompletions, mh, {4, 1}), false},
      };
      for (const auto& [s, is_chunk] : outs) {
        SCOPED_TRACE(s);
        const json j = json::parse(s, nullptr, false);
        ASSERT_FALSE(j.is_discarded());
        EXPECT_EQ(j["created"], 1694268190);
        EXPECT_EQ(j["model"], "alpha/chat@3");
        EXPECT_TRUE(j["choices"].is_array());
        if (j["choices"].empty()) {
          EXPECT_EQ(j["usage"]["total_tokens"], 5);
          continue;
        }
        const json& ch = j["choices"][0];
        EXPECT_EQ(ch["index"], 0);
        if (ch.contains("text")) {
          EXPECT_EQ(ch["text"], "a");
        }
        if (ch.contains("message")) {
          EXPECT_EQ(ch["message"]["content"], "a");
        }
        if (!ch["logprobs"].is_null()) {
          EXPECT_TRUE(lp);
          const json& l = ch["logprobs"];
          if (l.contains("content")) {
            EXPECT_EQ(l["content"][0]["logprob"].get<double>(), -0.5);
            EXPECT_EQ(l["content"][0]["top_logprobs"][1]["token"], "b");
          } else {
            EXPECT_EQ(l["token_logprobs"][0].get<double>(), -0.5);
            EXPECT_EQ(l["top_logprobs"][0]["b"].get<double>(), -1.5);
          }
        }
        if (is_chunk) {
          EXPECT_EQ(j.contains("usage"), usage);
          if (usage) {
            EXPECT_TRUE(j["usage"].is_null());
          }
        } else {
          EXPECT_EQ(j["usage"]["total_tokens"], 5);
        }
      }
    }
  }
  EXPECT_EQ(sse_event("{}"), "data: {}\n\n");
  EXPECT_EQ(sse_done(), "data: [DONE]\n\n");
}

TEST(OpenAiResponse, SeveralChoicesKeepTheirIndices) {
  std::vector<Choice> cs(2);
  cs[0].text = "a";
  cs[1].index = 1;
  cs[1].text = "b";
  cs[1].finish_reason = FinishReason::kLength;
  EXPECT_EQ(
      completion_response(meta(Endpoint::kCompletions), cs, {2, 3}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":"a","index":0,"logprobs":null,"finish_reason":"stop"},)"
      R"({"text":"b","index":1,"logprobs":null,"finish_reason":"length"}],)"
      R"("usage":{"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}})");
  const json chat = json::parse(chat_completion_response(meta(Endpoint::kChatCompletions), cs, {2, 3}));
  ASSERT_EQ(chat["choices"].size(), 2u);
  EXPECT_EQ(chat["choices"][1]["index"], 1);
  EXPECT_EQ(chat["choices"][1]["message"]["content"], "b");
  const ResponseMeta m = meta(Endpoint::kChatCompletions);
  EXPECT_EQ(json::parse(chat_role_chunk(m, 3))["choices"][0]["index"], 3);
  EXPECT_EQ(json::parse(chat_chunk(m, {.text = "x", .index = 2}))["choices"][0]["index"], 2);
  const json chunk = json::parse(completion_chunk(meta(Endpoint::kCompletions), {.text = "x", .index = 5}));
  EXPECT_EQ(chunk["choices"][0]["index"], 5);
}

TEST(OpenAiResponse, AnEchoedPromptsFirstTokenHasNullLogprobs) {
  Choice c;
  c.text = "ab!";
  c.logprobs = {{"a", std::nullopt, {}}, {"b", -1.5f, {}}, {"!", -0.5f, {}}};
  EXPECT_EQ(
      completion_response(meta(Endpoint::kCompletions, true), c, {2, 1}),
      R"({"id":"cmpl-000000000000002a","object":"text_completion","created":1694268190,"model":"alpha/chat@3",)"
      R"("choices":[{"text":"ab!","index":0,"logprobs":{"tokens":["a","b","!"],"token_logprobs":[null,-1.5,-0.5],)"
      R"("top_logprobs":[null,{},{}],"text_offset":[0,1,2]},"finish_reason":"stop"}],)"
      R"("usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}})");
}

}  // namespace
