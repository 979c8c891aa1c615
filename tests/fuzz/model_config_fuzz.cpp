// libFuzzer target: parse_model_config (and parse_generation_config) on
// arbitrary text. An accepted config must satisfy the documented
// invariants and survive a write/read round trip.
#include <cstdlib>
#include <string_view>

#include "runtime/checkpoint.h"
#include "runtime/generation_config.h"
#include "runtime/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)myriad::parse_generation_config(text, "generation_config.json");
  auto c = myriad::parse_model_config(text, "config.json");
  if (!c.ok()) {
    if (c.error().message.find("config.json") == std::string::npos) std::abort();
    return 0;
  }
  if (c->hidden_size <= 0 || c->num_layers <= 0 || c->num_heads <= 0 || c->num_kv_heads <= 0 || c->head_dim <= 0 ||
      c->head_dim % 2 != 0 || c->intermediate_size <= 0 || c->vocab_size <= 0 || c->num_heads % c->num_kv_heads != 0 ||
      !(c->rms_norm_eps > 0) || !(c->rope_theta > 0))
    std::abort();
  for (int64_t id : c->eos_token_ids)
    if (id < 0 || id >= c->vocab_size) std::abort();
  auto back = myriad::parse_model_config(myriad::model_config_to_json(*c), "roundtrip/config.json");
  if (!back.ok() || back->hidden_size != c->hidden_size || back->head_dim != c->head_dim ||
      back->num_kv_heads != c->num_kv_heads || back->rope_scaling.has_value() != c->rope_scaling.has_value())
    std::abort();
  // Shapes of a model this size are computable without overflow.
  int64_t params = 0;
  for (const auto& e : myriad::expected_tensors(*c)) {
    int64_t n = 1;
    for (int64_t d : e.shape) {
      if (d <= 0) std::abort();
      if (__builtin_mul_overflow(n, d, &n)) std::abort();
    }
    if (__builtin_add_overflow(params, n, &params)) std::abort();
  }
  return 0;
}
