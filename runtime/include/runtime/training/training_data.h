// Training datasets in JSONL, one example a line:
//   {"prompt": P, "completion": C}  the tokenized prompt (with the special
//       tokens the tokenizer adds), then the completion's tokens as they fall
//       in the tokenized P + C, then EOS; no chat template. Loss on the
//       completion and EOS.
//   {"messages": [{"role", "content"}, ...]}  rendered with the model's chat
//       template (tokenized without added specials, as transformers'
//       apply_chat_template); loss on the assistant turns, each from the end
//       of the prompt the template renders for it (add_generation_prompt) to
//       the end of the turn (its end-of-turn tokens included).
//   {"text": T}  language modelling on T (a corpus line): its tokens with the
//       special tokens the tokenizer adds, then EOS; loss on every token
//       after the first (text_example). The corpus of a mixture of experts.
// Malformed lines are errors naming the file, the line and what is wrong;
// blank lines are skipped. Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/result.h"
#include "runtime/tokenizer.h"

namespace myriad {

struct TrainingExample {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> targets;  // targets[i] != 0: token i is predicted (its loss counts)
  int64_t line = 0;              // 1-based line in its file
  int64_t target_count() const;
};

enum class OverflowPolicy : uint8_t { kTruncate, kReject };

struct DatasetOptions {
  int64_t max_tokens = 2048;  // the context: longer examples are truncated or rejected
  OverflowPolicy overflow = OverflowPolicy::kTruncate;
  std::optional<int32_t> eos;  // appended to prompt/completion examples; default: the tokenizer's first EOS
};

// One example from its parsed line (`where` prefixes errors, e.g. "data.jsonl:3").
Result<TrainingExample> encode_training_example(const nlohmann::json& line, const Tokenizer& tok,
                                                const DatasetOptions& options, const std::string& where);
// Every line of `text`; `source` names it in errors.
Result<std::vector<TrainingExample>> parse_training_jsonl(std::string_view text, const Tokenizer& tok,
                                                          const DatasetOptions& options, const std::string& source);
Result<std::vector<TrainingExample>> load_training_jsonl(const std::string& path, const Tokenizer& tok,
                                                         const DatasetOptions& options);

// Language modelling on a plain text (a corpus line): the text with the
// tokenizer's special tokens (BOS), then `eos` (if >= 0), cut to max_tokens;
// every token after the first is a target. Fewer than 2 tokens: nullopt.
std::optional<TrainingExample> text_example(const std::string& text, const Tokenizer& tok, int32_t eos,
                                            int64_t max_tokens, int64_t line);

}  // namespace myriad
