// Component tests of the tokenizer pipeline on small hand-written
// tokenizer.json objects: split behaviours, Metaspace, byte fallback,
// added-token options, incremental decoding, unsupported components and
// hostile files.
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "runtime/incremental_decoder.h"
#include "runtime/tokenizer.h"
#include "tokenizer_test_util.h"

namespace myriad {
namespace {

using nlohmann::json;
using testing::shared_tokenizer;

// vocab: the 4 chars a b - ▁ plus "ab", "▁a", "▁ab", byte tokens for E4 BD A0;
// merges by rank: ▁+a, ▁a+b, a+b.
json tiny(json pre_tokenizer = nullptr, json normalizer = nullptr, json decoder = nullptr) {
  return json{
      {"version", "1.0"},
      {"added_tokens",
       json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
                    {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}})},
      {"normalizer", normalizer},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", nullptr},
      {"decoder", decoder},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"vocab",
         {{"<unk>", 0}, {"<s>", 1}, {"a", 2}, {"b", 3}, {"-", 4}, {"\xE2\x96\x81", 5}, {"ab", 6},
          {"\xE2\x96\x81" "a", 7}, {"\xE2\x96\x81" "ab", 8}, {"<0xE4>", 9}, {"<0xBD>", 10}, {"<0xA0>", 11}}},
        {"merges", json::array({"\xE2\x96\x81 a", "\xE2\x96\x81" "a b", "a b"})}}}};
}

std::shared_ptr<const Tokenizer> make(const json& j, TokenizerConfig cfg = {}) {
  auto r = Tokenizer::from_json(j, std::move(cfg), "test");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
  return r.ok() ? r.value() : nullptr;
}

json split(const std::string& pattern, const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"String", pattern}}}, {"behavior", behavior}, {"invert", invert}};
}

using Ids = std::vector<int32_t>;

TEST(TokenizerPipeline, SplitBehaviours) {
  EXPECT_EQ(make(tiny())->encode("ab-ab", false), (Ids{6, 4, 6}));
  EXPECT_EQ(make(tiny(split("-", "Removed")))->encode("ab-ab", false), (Ids{6, 6}));
  EXPECT_EQ(make(tiny(split("-", "Isolated")))->encode("ab-ab", false), (Ids{6, 4, 6}));
  // "b" splits "abab" into a|b|a|b pieces; merging b with its neighbour
  // decides whether "ab" can still merge.
  EXPECT_EQ(make(tiny(split("b", "Isolated")))->encode("abab", false), (Ids{2, 3, 2, 3}));
  EXPECT_EQ(make(tiny(split("b", "MergedWithPrevious")))->encode("abab", false), (Ids{6, 6}));
  EXPECT_EQ(make(tiny(split("a", "MergedWithNext")))->encode("abab", false), (Ids{6, 6}));
  EXPECT_EQ(make(tiny(split("b", "MergedWithNext")))->encode("abab", false), (Ids{2, 3, 2, 3}));
  EXPECT_EQ(make(tiny(split("a", "Contiguous")))->encode("aab", false), (Ids{2, 2, 3}));
  EXPECT_EQ(make(tiny(split("-", "Removed", true)))->encode("ab-ab", false), (Ids{4}));
  json regex_split = {{"type", "Split"}, {"pattern", {{"Regex", "\\p{L}+"}}}, {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_EQ(make(tiny(regex_split))->encode("ab--ab", false), (Ids{6, 4, 4, 6}));
}

TEST(TokenizerPipeline, MetaspaceEncodeAndDecode) {
  const json pre = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  const json dec = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}};
  auto t = make(tiny(pre, nullptr, dec));
  const Ids ids = t->encode("ab a", false);
  EXPECT_EQ(ids, (Ids{8, 7}));
  EXPECT_EQ(t->decode(ids), "ab a");
  // after an added token, "first" does not prepend
  const json first = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  auto t2 = make(tiny(first, nullptr, dec));
  EXPECT_EQ(t2->encode("ab<s>ab", false), (Ids{8, 1, 6}));
}

TEST(TokenizerPipeline, ByteFallbackAndUnknown) {
  const json norm = {{"type", "Sequence"},
                     {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                                                  {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}};
  const json dec = {{"type", "Sequence"},
                    {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                                              {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  auto t = make(tiny(nullptr, norm, dec));
  // 你 = E4 BD A0 -> three byte tokens; "xy" has no tokens and no bytes -> one fused <unk>
  EXPECT_EQ(t->encode("ab\xE4\xBD\xA0xy", false), (Ids{8, 9, 10, 11, 0}));
  EXPECT_EQ(t->decode(Ids{8, 9, 10, 11}), "ab\xE4\xBD\xA0");
  // half a character decodes to U+FFFD
  EXPECT_EQ(t->decode(Ids{8, 9, 10}), "ab\xEF\xBF\xBD");

  // Streaming holds back the incomplete bytes.
  IncrementalDecoder dec_stream(t);
  EXPECT_EQ(dec_stream.push(8), "ab");
  EXPECT_EQ(dec_stream.push(9), "");
  EXPECT_EQ(dec_stream.push(10), "");
  EXPECT_EQ(dec_stream.push(11), "\xE4\xBD\xA0");
  EXPECT_EQ(dec_stream.push(9), "");
  EXPECT_EQ(dec_stream.flush(), "\xEF\xBF\xBD");  // stream ended mid-character
  // an invalid continuation is final at once
  IncrementalDecoder bad(t);
  EXPECT_EQ(bad.push(9), "");
  EXPECT_EQ(bad.push(2), "\xEF\xBF\xBD" "a");
}

TEST(TokenizerPipeline, AddedTokenOptions) {
  json j = tiny(split("-", "Removed"));
  j["added_tokens"].push_back({{"id", 12}, {"content", "[X]"}, {"special", false}, {"lstrip", true}, {"rstrip", true}, {"normalized", false}});
  j["added_tokens"].push_back({{"id", 13}, {"content", "[X]]"}, {"special", true}, {"normalized", false}});
  j["added_tokens"].push_back({{"id", 14}, {"content", "bb"}, {"special", false}, {"single_word", true}, {"normalized", false}});
  auto t = make(j);
  EXPECT_EQ(t->encode("ab  [X]  ab", false), (Ids{6, 12, 6}));  // lstrip/rstrip eat the spaces
  EXPECT_EQ(t->encode("a[X]]b", false), (Ids{2, 13, 3}));       // longest match wins
  EXPECT_EQ(t->encode("bb-abb", false), (Ids{14, 6, 3}));       // single_word: only standalone
  EXPECT_EQ(t->vocab_size(), 15u);
  EXPECT_TRUE(t->is_special(13));
  EXPECT_FALSE(t->is_special(12));
  EXPECT_EQ(t->decode(Ids{6, 13, 6}, true), "ab ab");  // no decoder: tokens joined by spaces
}

TEST(TokenizerPipeline, InvalidUtf8InputIsReplaced) {
  auto t = shared_tokenizer("mistral");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->encode("a\xFF" "b\xE4\xBD", false), t->encode("a\xEF\xBF\xBD" "b\xEF\xBF\xBD", false));
  EXPECT_EQ(t->decode(Ids{-5, 1 << 30}), "");  // unknown ids are skipped
}

TEST(TokenizerPipeline, IncrementalCleanUpAcrossTokens) {
  auto t = shared_tokenizer("llama3");
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->cleans_up_spaces());
  for (const std::string text : {"Hello , world ! I do n't know , do you ? 'm 's 've 're ' x ' .",
                                 "a b c d e f g", "x  ' s", " . . . ,", "ends with space "}) {
    const Ids ids = t->encode(text, false);
    IncrementalDecoder dec(t);
    std::string all;
    for (int32_t id : ids) all += dec.push(id);
    all += dec.flush();
    EXPECT_EQ(all, t->decode(ids)) << text;
  }
  // single-letter words are not held back
  IncrementalDecoder dec(t);
  std::string streamed;
  for (int32_t id : t->encode("a b c d e f g", false)) streamed += dec.push(id);
  EXPECT_EQ(streamed, "a b c d e f g");
}

TEST(TokenizerPipeline, ConcurrentEncodeIsConsistent) {
  auto t = shared_tokenizer("mistral");
  ASSERT_TRUE(t);
  std::string text;
  for (int i = 0; i < 300; ++i) text += "word" + std::to_string(i * 7919) + " caf\xC3\xA9 ";
  const Ids expect = t->encode(text);
  std::vector<Ids> got(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) threads.emplace_back([&, k] { got[size_t(k)] = t->encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) EXPECT_EQ(g, expect);
}

TEST(TokenizerPipeline, UnsupportedComponentsAreNamed) {
  auto expect_unsupported = [](json j, const std::string& name) {
    auto r = Tokenizer::from_json(j, {}, "tok.json");
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().code, ErrorCode::kUnsupported) << r.error().to_string();
    EXPECT_NE(r.error().message.find(name), std::string::npos) << r.error().to_string();
  };
  json j = tiny();
  j["model"]["type"] = "WordPiece";
  expect_unsupported(j, "WordPiece");
  expect_unsupported(tiny(nullptr, {{"type", "BertNormalizer"}}), "BertNormalizer");
  expect_unsupported(tiny({{"type", "Punctuation"}}), "Punctuation");
  expect_unsupported(tiny(nullptr, nullptr, {{"type", "WordPiece"}}), "WordPiece");
  j = tiny();
  j["post_processor"] = {{"type", "MysteryProcessing"}};
  expect_unsupported(j, "MysteryProcessing");
  json after_bytelevel = {{"type", "Sequence"},
                          {"pretokenizers", json::array({{{"type", "ByteLevel"}}, {{"type", "Digits"}}})}};
  expect_unsupported(tiny(after_bytelevel), "Digits");
}

TEST(TokenizerPipeline, MalformedModelsAreBadFiles) {
  auto expect_bad = [](json j, const std::string& needle) {
    auto r = Tokenizer::from_json(j, {}, "tok.json");
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.error().code, ErrorCode::kBadFile) << r.error().to_string();
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().to_string();
  };
  json j = tiny();
  j["model"]["merges"].push_back("a zz");
  expect_bad(j, "merge #3");
  j = tiny();
  j["model"]["merges"].push_back("a b c");
  expect_bad(j, "merge #3");
  j = tiny();
  j["model"]["vocab"]["q"] = "seven";
  expect_bad(j, "'q'");
  j = tiny();
  j["model"].erase("vocab");
  expect_bad(j, "vocab");
  expect_bad(tiny({{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}}), "(unclosed");
  expect_bad(json::array(), "top level");
  j = tiny();
  j["added_tokens"].push_back({{"content", "<x>"}});
  expect_bad(j, "added token");
}

class TokenizerFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("myriad_tok_" + std::to_string(::getpid()) + "_" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir_ / name) << text; }
  std::filesystem::path dir_;
};

TEST_F(TokenizerFiles, MissingFolderAndFile) {
  auto r = Tokenizer::load((dir_ / "nope").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  r = Tokenizer::load(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kNotFound);
  EXPECT_NE(r.error().message.find("tokenizer.json"), std::string::npos);
}

TEST_F(TokenizerFiles, MalformedJson) {
  write("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0,}");
  auto r = Tokenizer::load(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kBadFile);
  EXPECT_NE(r.error().message.find("tokenizer.json"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("parse error"), std::string::npos) << r.error().message;
}

TEST_F(TokenizerFiles, UnknownModelType) {
  json j = tiny();
  j["model"]["type"] = "Unigram";
  write("tokenizer.json", j.dump());
  auto r = Tokenizer::load(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnsupported);
  EXPECT_NE(r.error().message.find("'Unigram'"), std::string::npos) << r.error().message;
}

TEST_F(TokenizerFiles, ConfigIsOptionalButMustBeValid) {
  write("tokenizer.json", tiny().dump());
  auto r = Tokenizer::load(dir_.string());
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_FALSE(r.value()->bos_id().has_value());
  write("tokenizer_config.json", "[1, 2");
  r = Tokenizer::load(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("tokenizer_config.json"), std::string::npos);
  write("tokenizer_config.json", R"({"bos_token": 5})");
  r = Tokenizer::load(dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("bos_token"), std::string::npos);
}

// load() streams model.vocab / model.merges out of the file (SAX); it must
// agree with from_json() on the same document and report the same errors.
TEST_F(TokenizerFiles, StreamedFileMatchesDom) {
  json j = tiny(split("-", "Isolated"));
  json pairs = json::array();
  for (const auto& m : j["model"]["merges"]) {
    const std::string s = m;
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;  // ["a", "b"] form
  j["extra"] = {{"model", {{"vocab", {{"zz", 1}}}}}};  // a nested "model.vocab" elsewhere is not the vocab
  write("tokenizer.json", j.dump());
  auto from_file = Tokenizer::load(dir_.string());
  ASSERT_TRUE(from_file.ok()) << from_file.error().to_string();
  auto from_dom = make(j);
  for (const std::string text : {"ab-ab", "\xE4\xBD\xA0" "ab", "<s>ba-"})
    EXPECT_EQ(from_file.value()->encode(text), from_dom->encode(text)) << text;
  EXPECT_EQ(from_file.value()->vocab_size(), from_dom->vocab_size());
  EXPECT_FALSE(from_file.value()->token_to_id("zz").has_value());

  auto expect_bad = [&](json bad, const std::string& needle) {
    write("tokenizer.json", bad.dump());
    auto r = Tokenizer::load(dir_.string());
    ASSERT_FALSE(r.ok()) << needle;
    EXPECT_EQ(r.error().code, ErrorCode::kBadFile) << r.error().to_string();
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().to_string();
  };
  json bad = tiny();
  bad["model"]["merges"].push_back(5);
  expect_bad(bad, "merge #3");
  bad = tiny();
  bad["model"]["merges"].push_back(json::array({"a"}));
  expect_bad(bad, "merge #3");
  bad = tiny();
  bad["model"]["merges"].push_back(json::array({"a", 2}));
  expect_bad(bad, "merge #3");
  bad = tiny();
  bad["model"]["vocab"]["q"] = "seven";
  expect_bad(bad, "'q'");
  bad = tiny();
  bad["model"]["vocab"]["q"] = {{"nested", 1}};
  expect_bad(bad, "model.vocab");
}

TEST(TokenizerConfigParse, FieldShapes) {
  const auto j = json::parse(R"({
    "bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null,
    "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
    "clean_up_tokenization_spaces": true, "add_bos_token": true,
    "model_max_length": 1000000000000000019884624838656})");
  auto c = parse_tokenizer_config(j, "cfg");
  ASSERT_TRUE(c.ok()) << c.error().to_string();
  EXPECT_EQ(c->bos_token, "<s>");
  EXPECT_EQ(c->eos_token, "</s>");
  EXPECT_FALSE(c->pad_token.has_value());
  EXPECT_FALSE(c->unk_token.has_value());
  EXPECT_EQ(c->chat_template, "D");
  EXPECT_TRUE(c->clean_up_tokenization_spaces);
  EXPECT_EQ(c->add_bos_token, true);
  EXPECT_FALSE(c->add_eos_token.has_value());
  EXPECT_TRUE(c->raw["model_max_length"].is_number_float());
  EXPECT_EQ(c->template_variables(), json({{"bos_token", "<s>"}, {"eos_token", "</s>"}}));
  EXPECT_FALSE(parse_tokenizer_config(json::parse(R"({"chat_template": 3})"), "cfg").ok());
  EXPECT_FALSE(parse_tokenizer_config(json::parse(R"({"clean_up_tokenization_spaces": "yes"})"), "cfg").ok());
}

TEST(TokenizerText, RepairAndCleanUp) {
  EXPECT_EQ(repair_utf8("ok"), "ok");
  EXPECT_EQ(repair_utf8("\xE4\xBD"), "\xEF\xBF\xBD");              // truncated: one U+FFFD
  EXPECT_EQ(repair_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: two
  EXPECT_EQ(repair_utf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(repair_utf8("\xF0\x9F\x98\x80"), "\xF0\x9F\x98\x80");
  EXPECT_EQ(clean_up_tokenization_spaces("a , b . I do n't , it 's"), "a, b. I don't, it's");
}

}  // namespace
}  // namespace myriad
