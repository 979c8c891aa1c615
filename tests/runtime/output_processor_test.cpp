// OutputProcessor: text deltas equal the tokenizer's decode of the same ids,
// stop strings cut the text before the earliest match at the id that
// completes it, and nothing that could still become a stop string is shown
// early. Real tokenizers from the fixtures (byte-level llama3, metaspace
// mistral), so multi-byte characters split across ids are covered.
#include "runtime/output_processor.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "tokenizer_test_util.h"

namespace myriad {
namespace {

using testing::shared_tokenizer;

struct Streamed {
  std::vector<std::string> deltas;
  std::string text;
  size_t pushed = 0;  // ids pushed before stopped() (all of them if it never stopped)
  bool stopped = false;
};

Streamed stream(const std::shared_ptr<const Tokenizer>& tok, const std::vector<int32_t>& ids, std::vector<std::string> stop,
                uint32_t min_tokens = 0) {
  OutputProcessor p(tok, OutputOptions{std::move(stop), /*skip_special_tokens=*/true, min_tokens});
  Streamed r;
  for (int32_t id : ids) {
    if (p.stopped()) break;
    r.deltas.push_back(p.push(id));
    ++r.pushed;
  }
  r.deltas.push_back(p.finish());
  for (const auto& d : r.deltas) r.text += d;
  r.stopped = p.stopped();
  EXPECT_EQ(r.text, p.text());
  return r;
}

TEST(OutputProcessor, DeltasConcatenateToTheDecodedText) {
  for (const char* name : {"llama3", "mistral"}) {
    const auto tok = shared_tokenizer(name);
    ASSERT_NE(tok, nullptr);
    const std::string text = "Grüße aus Köln — 東京 🙂 and plain ASCII, twice: Grüße 🙂.";
    const auto ids = tok->encode(text, /*add_special_tokens=*/true);
    const Streamed r = stream(tok, ids, {});
    EXPECT_FALSE(r.stopped);
    EXPECT_EQ(r.pushed, ids.size());
    EXPECT_EQ(r.text, tok->decode(ids, /*skip_special_tokens=*/true)) << name;
  }
}

TEST(OutputProcessor, RandomIdsConcatenateToTheDecodedText) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int32_t> any(0, int32_t(tok->vocab_size()) - 1);
    std::vector<int32_t> ids(40);
    for (auto& id : ids) id = any(rng);
    const Streamed r = stream(tok, ids, {});
    EXPECT_EQ(r.text, tok->decode(ids, true));
    for (const auto& d : r.deltas) {  // each delta is whole UTF-8 characters
      if (!d.empty()) {
        EXPECT_NE(uint8_t(d.front()) & 0xC0, 0x80) << "delta starts inside a character";
      }
    }
  }
}

TEST(OutputProcessor, StopStringEndsTheTextBeforeItAtTheIdThatCompletesIt) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  const std::string text = "The answer is 42. END of the story, and more text after END.";
  const auto ids = tok->encode(text, false);
  const Streamed r = stream(tok, ids, {"END"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "The answer is 42. ");
  // The last id pushed is the one whose text completed the first "END".
  const std::string upto_last = tok->decode(std::vector<int32_t>(ids.begin(), ids.begin() + long(r.pushed)), true);
  const std::string upto_before = tok->decode(std::vector<int32_t>(ids.begin(), ids.begin() + long(r.pushed) - 1), true);
  EXPECT_NE(upto_last.find("END"), std::string::npos) << upto_last;
  EXPECT_EQ(upto_before.find("END"), std::string::npos) << upto_before;
}

TEST(OutputProcessor, EarliestOfSeveralStopStringsWinsAndNothingOfItIsShownEarly) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  const std::string text = "alpha beta gamma delta epsilon";
  const auto ids = tok->encode(text, false);
  const Streamed r = stream(tok, ids, {"epsilon", "a del", ""});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "alpha beta gamm");
  // A stop string that never completes: held-back text comes out at finish().
  const Streamed s = stream(tok, ids, {"gamma!"});
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.text, text);
  std::string before_finish;
  for (size_t i = 0; i + 1 < s.deltas.size(); ++i) before_finish += s.deltas[i];
  EXPECT_LE(before_finish.size(), text.size() - (std::string("gamma!").size() - 1));
}

TEST(OutputProcessor, StopStringAtTheVeryEndIsCut) {
  // The stop string is the output's last word: nothing after it to hold.
  const auto tok = shared_tokenizer("mistral");
  ASSERT_NE(tok, nullptr);
  const auto ids = tok->encode("one two three", false);
  const Streamed r = stream(tok, ids, {"three"});
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "one two ");
}

// vLLM's min_tokens: a stop string that ends in the text of one of the first
// min_tokens ids does not stop the output; the first one ending later does.
TEST(OutputProcessor, MinTokensLetsOnlyAStopStringEndingAfterItsTokensMatch) {
  const auto tok = shared_tokenizer("llama3");
  ASSERT_NE(tok, nullptr);
  const std::string text = "The answer is 42. END of the story, and more text after END.";
  const auto ids = tok->encode(text, false);
  const Streamed first = stream(tok, ids, {"END"});
  ASSERT_TRUE(first.stopped);
  // The first END completes in id number first.pushed: min_tokens one less
  // still lets it match.
  const Streamed before = stream(tok, ids, {"END"}, uint32_t(first.pushed) - 1);
  EXPECT_TRUE(before.stopped);
  EXPECT_EQ(before.text, "The answer is 42. ");
  // min_tokens at that id: the first END is skipped, the text runs to the second.
  const Streamed at = stream(tok, ids, {"END"}, uint32_t(first.pushed));
  EXPECT_TRUE(at.stopped);
  EXPECT_EQ(at.text, "The answer is 42. END of the story, and more text after ");
  // Past every END: nothing stops it, and the text is whole.
  const Streamed past = stream(tok, ids, {"END"}, uint32_t(ids.size()) + 5);
  EXPECT_FALSE(past.stopped);
  EXPECT_EQ(past.text, text);
  // min_tokens 0 is no constraint at all.
  EXPECT_EQ(stream(tok, ids, {"END"}, 0).text, first.text);
}

}  // namespace
}  // namespace myriad
