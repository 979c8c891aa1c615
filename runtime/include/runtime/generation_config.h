// generation_config.json: the model's default sampling settings.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.h"

namespace myriad {

struct GenerationConfig {
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::optional<float> repetition_penalty;
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
};

// Parses generation_config.json text; `source` names the file in errors.
Result<GenerationConfig> parse_generation_config(std::string_view json_text, const std::string& source);
// A missing file gives an empty config (all defaults), not an error.
Result<GenerationConfig> load_generation_config(const std::string& model_dir);

}  // namespace myriad
