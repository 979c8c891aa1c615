// Golden tests: every case of tokenizers/{mistral,llama3,qwen3}/golden.json
// (made by transformers.js, cross-checked with HF tokenizers): ids,
// ids_no_special, tokens, decoded, chat ids, and the incremental decoder.
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "runtime/incremental_decoder.h"
#include "runtime/tokenizer.h"
#include "test_seed.h"
#include "tokenizer_test_util.h"

namespace myriad {
namespace {

using nlohmann::json;
using testing::read_json;
using testing::seed_note;
using testing::shared_tokenizer;
using testing::test_seed;
using testing::tokenizer_dir;

std::vector<int32_t> ids_of(const json& j) { return j.get<std::vector<int32_t>>(); }

class TokenizerGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    tok_ = shared_tokenizer(GetParam());
    ASSERT_TRUE(tok_);
    golden_ = read_json(tokenizer_dir(GetParam()) + "/golden.json");
    ASSERT_FALSE(golden_.is_discarded());
    ASSERT_EQ(golden_["cases"].size(), 64u);
  }
  // One check per golden field; all run in one test per tokenizer so that
  // each ctest process loads the (10 MB) tokenizer once.
  void EncodeWithSpecialTokens();
  void EncodeWithoutSpecialTokens();
  void TokenStrings();
  void Decode();
  void IncrementalDecoderMatchesDecode();
  void IncrementalDecoderStreamsDecodedText();
  void IncrementalDecoderRandomIds();
  void ChatRenderedIds();
  void VocabularyAndSpecialTokens();
  std::shared_ptr<const Tokenizer> tok_;
  json golden_;
};

void TokenizerGolden::EncodeWithSpecialTokens() {
  for (const auto& c : golden_["cases"]) {
    EXPECT_EQ(tok_->encode(c["text"].get<std::string>()), ids_of(c["ids"])) << "case " << c["id"];
  }
}

void TokenizerGolden::EncodeWithoutSpecialTokens() {
  for (const auto& c : golden_["cases"]) {
    EXPECT_EQ(tok_->encode(c["text"].get<std::string>(), false), ids_of(c["ids_no_special"])) << "case " << c["id"];
  }
}

void TokenizerGolden::TokenStrings() {
  for (const auto& c : golden_["cases"]) {
    std::vector<std::string> got;
    for (int32_t id : ids_of(c["ids_no_special"])) got.push_back(tok_->id_to_token(id).value_or("<none>"));
    EXPECT_EQ(got, c["tokens"].get<std::vector<std::string>>()) << "case " << c["id"];
    for (size_t i = 0; i < got.size(); ++i)
      EXPECT_EQ(tok_->token_to_id(got[i]), c["ids_no_special"][i].get<int32_t>()) << "case " << c["id"];
  }
}

void TokenizerGolden::Decode() {
  ASSERT_TRUE(golden_["decode_options"]["skip_special_tokens"].get<bool>());
  EXPECT_EQ(tok_->config().clean_up_tokenization_spaces,
            golden_["decode_options"]["clean_up_tokenization_spaces"].get<bool>());
  for (const auto& c : golden_["cases"]) {
    EXPECT_EQ(tok_->decode(ids_of(c["ids"]), true), c["decoded"].get<std::string>()) << "case " << c["id"];
  }
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{}), "");
}

// Deltas concatenate to decode(all), and each delta is valid UTF-8 that does
// not end inside a character.
void check_incremental(const std::shared_ptr<const Tokenizer>& tok, const std::vector<int32_t>& ids, bool skip,
                       const std::string& what) {
  IncrementalDecoder dec(tok, skip);
  std::string all;
  for (int32_t id : ids) {
    const std::string delta = dec.push(id);
    EXPECT_EQ(repair_utf8(delta), delta) << what << ": delta is not valid UTF-8";
    all += delta;
  }
  all += dec.flush();
  EXPECT_EQ(all, tok->decode(ids, skip)) << what;
}

void TokenizerGolden::IncrementalDecoderMatchesDecode() {
  for (const auto& c : golden_["cases"]) {
    const std::string id = c["id"];
    check_incremental(tok_, ids_of(c["ids"]), true, id + " (skip special)");
    check_incremental(tok_, ids_of(c["ids"]), false, id + " (keep special)");
  }
  for (const auto& c : golden_["chat"]["cases"]) {
    check_incremental(tok_, ids_of(c["ids"]), true, c["name"].get<std::string>() + " (chat)");
    check_incremental(tok_, ids_of(c["ids"]), false, c["name"].get<std::string>() + " (chat, keep special)");
  }
}

// Random id sequences (a fresh seed each run, printed; MYRIAD_TEST_SEED reruns one), biased to
// byte tokens (broken UTF-8) and added tokens, through the streaming decoder.
void TokenizerGolden::IncrementalDecoderRandomIds() {
  const uint64_t seed = test_seed();
  SCOPED_TRACE(seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const auto vocab = int32_t(tok_->vocab_size());
  const std::vector<int32_t> cleanup = tok_->encode(" , . ! ? ' n't 's 're x", false);
  auto pick = [&]() -> int32_t {
    const int kind = int(rng() % 10);
    if (kind < 4) return int32_t(rng() % 300);                    // byte-ish tokens
    if (kind < 5) return vocab - 1 - int32_t(rng() % 300);        // added / special tokens
    if (kind < 6) return cleanup[rng() % cleanup.size()];          // clean-up material
    return int32_t(rng() % uint32_t(vocab));
  };
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids(rng() % 24);
    for (auto& id : ids) id = pick();
    check_incremental(tok_, ids, round % 2 == 0, "random round " + std::to_string(round));
  }
}

void TokenizerGolden::IncrementalDecoderStreamsDecodedText() {
  // Without a final flush the streamed text is the golden decode minus a
  // held-back tail that only the space clean-up can cause (it starts with a
  // space); the golden texts are complete UTF-8.
  for (const auto& c : golden_["cases"]) {
    IncrementalDecoder dec(tok_, true);
    std::string streamed;
    for (int32_t id : ids_of(c["ids"])) streamed += dec.push(id);
    const std::string decoded = c["decoded"];
    EXPECT_EQ(decoded.compare(0, streamed.size(), streamed), 0) << "case " << c["id"];
    const std::string tail = decoded.substr(std::min(streamed.size(), decoded.size()));
    if (!tok_->cleans_up_spaces()) EXPECT_EQ(tail, "") << "case " << c["id"];
    else EXPECT_TRUE(tail.empty() || tail[0] == ' ') << "case " << c["id"] << " holds back '" << tail << "'";
  }
}

void TokenizerGolden::ChatRenderedIds() {
  for (const auto& c : golden_["chat"]["cases"]) {
    EXPECT_EQ(tok_->encode(c["rendered"].get<std::string>(), false), ids_of(c["ids"])) << "chat " << c["name"];
  }
}

void TokenizerGolden::VocabularyAndSpecialTokens() {
  const std::string name = GetParam();
  const json tj = read_json(tokenizer_dir(name) + "/tokenizer.json");
  size_t max_id = 0;
  for (const auto& [k, v] : tj["model"]["vocab"].items()) max_id = std::max(max_id, v.get<size_t>());
  for (const auto& a : tj["added_tokens"]) {
    max_id = std::max(max_id, a["id"].get<size_t>());
    EXPECT_EQ(tok_->is_special(a["id"]), a["special"].get<bool>()) << a["content"];
    EXPECT_EQ(tok_->token_to_id(a["content"].get<std::string>()), a["id"].get<int32_t>());
  }
  EXPECT_EQ(tok_->vocab_size(), max_id + 1);
  if (name == "mistral") {
    EXPECT_EQ(tok_->vocab_size(), 32000u);
    EXPECT_EQ(tok_->bos_id(), 1);
    EXPECT_EQ(tok_->eos_ids(), std::vector<int32_t>{2});
    EXPECT_EQ(tok_->token_to_id("\xE2\x96\x81Hello"), 22557);
  } else if (name == "llama3") {
    EXPECT_EQ(tok_->vocab_size(), 128256u);
    EXPECT_EQ(tok_->bos_id(), 128000);
    EXPECT_EQ(tok_->eos_ids(), std::vector<int32_t>{128001});
    ASSERT_TRUE(tok_->config().chat_template.has_value());
  } else {
    EXPECT_EQ(tok_->bos_id(), std::nullopt);  // bos_token is null in Qwen's config
    EXPECT_EQ(tok_->eos_ids(), std::vector<int32_t>{151645});
    EXPECT_FALSE(tok_->is_special(*tok_->token_to_id("<think>")));
  }
  EXPECT_FALSE(tok_->id_to_token(-1).has_value());
  EXPECT_FALSE(tok_->id_to_token(int32_t(tok_->vocab_size())).has_value());
}

TEST_P(TokenizerGolden, MatchesEveryGolden) {
  {
    SCOPED_TRACE("EncodeWithSpecialTokens");
    EncodeWithSpecialTokens();
  }
  {
    SCOPED_TRACE("EncodeWithoutSpecialTokens");
    EncodeWithoutSpecialTokens();
  }
  {
    SCOPED_TRACE("TokenStrings");
    TokenStrings();
  }
  {
    SCOPED_TRACE("Decode");
    Decode();
  }
  {
    SCOPED_TRACE("IncrementalDecoderMatchesDecode");
    IncrementalDecoderMatchesDecode();
  }
  {
    SCOPED_TRACE("IncrementalDecoderRandomIds");
    IncrementalDecoderRandomIds();
  }
  {
    SCOPED_TRACE("IncrementalDecoderStreamsDecodedText");
    IncrementalDecoderStreamsDecodedText();
  }
  {
    SCOPED_TRACE("ChatRenderedIds");
    ChatRenderedIds();
  }
  {
    SCOPED_TRACE("VocabularyAndSpecialTokens");
    VocabularyAndSpecialTokens();
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerGolden, ::testing::Values("mistral", "llama3", "qwen3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace myriad
