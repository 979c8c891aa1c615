// config.json parsing and validation for llama, mistral and qwen2. Every
// error names the file, the field and the offending value.
#include "runtime/model_config.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "json_depth.h"

namespace myriad {

namespace {

using json = nlohmann::json;

// Sane upper limits: far above any real Llama-family model, low enough that
// products of them cannot overflow int64 and hostile files cannot make us
// allocate absurd buffers.
constexpr int64_t kMaxHidden = 1 << 17;
constexpr int64_t kMaxLayers = 1 << 10;
constexpr int64_t kMaxHeads = 1 << 10;
constexpr int64_t kMaxHeadDim = 1 << 12;
constexpr int64_t kMaxIntermediate = 1 << 20;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxPositions = 1 << 24;

std::string excerpt(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 80) + "...";
  return s;
}

class Reader {
 public:
  // `prefix` qualifies field names in errors ("rope_scaling.").
  Reader(const json& j, const std::string& source, std::string prefix = "")
      : j_(j), source_(source), prefix_(std::move(prefix)) {}

  Error error(ErrorCode code, const std::string& field, const std::string& what) const {
    return make_error(code, source_ + ": field '" + prefix_ + field + "' " + what);
  }
  Error bad(const std::string& field, const std::string& what) const { return error(ErrorCode::kBadFile, field, what); }

  const json* get(const std::string& field) const {
    auto it = j_.find(field);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  // Required integer in [lo, hi].
  Result<int64_t> int_field(const std::string& field, int64_t lo, int64_t hi) const {
    const json* v = get(field);
    if (!v) return bad(field, "is missing");
    return int_value(field, *v, lo, hi);
  }
  Result<int64_t> int_value(const std::string& field, const json& v, int64_t lo, int64_t hi) const {
    int64_t x = 0;
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > uint64_t(std::numeric_limits<int64_t>::max())) return bad(field, "= " + excerpt(v) + " is out of range");
      x = int64_t(u);
    } else if (v.is_number_integer()) {
      x = v.get<int64_t>();
    } else {
      return bad(field, "= " + excerpt(v) + " is not an integer");
    }
    if (x < lo || x > hi)
      return bad(field, "= " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return x;
  }
  Result<double> number_field(const std::string& field, double fallback) const {
    const json* v = get(field);
    if (!v) return fallback;
    if (!v->is_number()) return bad(field, "= " + excerpt(*v) + " is not a number");
    return v->get<double>();
  }
  Result<bool> bool_field(const std::string& field, bool fallback) const {
    const json* v = get(field);
    if (!v) return fallback;
    if (!v->is_boolean()) return bad(field, "= " + excerpt(*v) + " is not a boolean");
    return v->get<bool>();
  }
  Result<std::string> string_field(const std::string& field, const std::string& fallback) const {
    const json* v = get(field);
    if (!v) return fallback;
    if (!v->is_string()) return bad(field, "= " + excerpt(*v) + " is not a string");
    return v->get<std::string>();
  }
  // An id or a list of ids (bos_token_id / eos_token_id); absent -> empty.
  Result<std::vector<int64_t>> ids_field(const std::string& field, int64_t vocab) const {
    std::vector<int64_t> ids;
    const json* v = get(field);
    if (!v) return ids;
    if (v->is_array()) {
      if (v->size() > 1024) return bad(field, "has " + std::to_string(v->size()) + " ids (at most 1024)");
      for (const json& e : *v) {
        auto id = int_value(field, e, 0, vocab - 1);
        if (!id.ok()) return id.error();
        ids.push_back(*id);
      }
      return ids;
    }
    auto id = int_value(field, *v, 0, vocab - 1);
    if (!id.ok()) return id.error();
    ids.push_back(*id);
    return ids;
  }

 private:
  const json& j_;
  const std::string& source_;
  std::string prefix_;
};

#define MYRIAD_ASSIGN(lhs, expr)          \
  do {                                    \
    auto _r = (expr);                     \
    if (!_r.ok()) return _r.error();      \
    lhs = std::move(_r).value();          \
  } while (0)

Result<std::optional<RopeScaling>> parse_rope_scaling(const json& j, const std::string& source) {
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return std::optional<RopeScaling>{};
  if (!it->is_object())
    return make_error(ErrorCode::kBadFile, source + ": field 'rope_scaling' = " + excerpt(*it) + " is not an object");
  Reader r(*it, source, "rope_scaling.");
  std::string type;
  MYRIAD_ASSIGN(type, r.string_field("rope_type", ""));
  if (type.empty()) MYRIAD_ASSIGN(type, r.string_field("type", ""));
  if (type.empty())
    return make_error(ErrorCode::kBadFile, source + ": field 'rope_scaling' has no 'rope_type' (or 'type')");
  if (type == "default") return std::optional<RopeScaling>{};  // plain RoPE
  if (type != "llama3")
    return r.error(ErrorCode::kUnsupported, "rope_type", "= '" + type + "' is not supported (only 'llama3' and 'default')");
  RopeScaling s;
  s.type = type;
  double factor = 0, low = 0, high = 0;
  MYRIAD_ASSIGN(factor, r.number_field("factor", NAN));
  MYRIAD_ASSIGN(low, r.number_field("low_freq_factor", NAN));
  MYRIAD_ASSIGN(high, r.number_field("high_freq_factor", NAN));
  for (auto [name, val] : {std::pair{"factor", factor}, {"low_freq_factor", low}, {"high_freq_factor", high}}) {
    if (std::isnan(val)) return r.bad(name, "is missing");
    if (!(val >= 1e-6) || val > 1e6) return r.bad(name, "= " + std::to_string(val) + " must be in [1e-6, 1e6]");
  }
  if (!(high > low))
    return r.bad("high_freq_factor", "= " + std::to_string(high) + " must exceed low_freq_factor = " + std::to_string(low));
  s.factor = float(factor);
  s.low_freq_factor = float(low);
  s.high_freq_factor = float(high);
  MYRIAD_ASSIGN(s.original_max_position_embeddings, r.int_field("original_max_position_embeddings", 1, kMaxPositions));
  return std::optional<RopeScaling>{s};
}

// The shortest decimal that reads back to `f` (1e-5f prints as 1e-05, not
// 9.999999747378752e-06).
double shortest(float f) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, f);
  return std::strtod(std::string(buf, r.ptr).c_str(), nullptr);
}

}  // namespace

Result<ModelConfig> parse_model_config(std::string_view json_text, const std::string& source) {
  if (json_too_deep(json_text))
    return make_error(ErrorCode::kBadFile, source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kBadFile, source + ": not valid JSON");
  if (!j.is_object()) return make_error(ErrorCode::kBadFile, source + ": not a JSON object");
  Reader r(j, source);
  ModelConfig c;
  MYRIAD_ASSIGN(c.model_type, r.string_field("model_type", ""));
  if (c.model_type.empty()) return r.bad("model_type", "is missing");
  if (c.model_type == "llama") {
    c.arch = ModelArch::kLlama;
  } else if (c.model_type == "mistral") {
    c.arch = ModelArch::kMistral;
  } else if (c.model_type == "qwen2") {
    c.arch = ModelArch::kQwen2;
  } else {
    return r.error(ErrorCode::kUnsupported, "model_type",
                   "= '" + c.model_type + "' is not supported (llama, mistral, qwen2)");
  }

  MYRIAD_ASSIGN(c.hidden_size, r.int_field("hidden_size", 1, kMaxHidden));
  MYRIAD_ASSIGN(c.num_layers, r.int_field("num_hidden_layers", 1, kMaxLayers));
  MYRIAD_ASSIGN(c.num_heads, r.int_field("num_attention_heads", 1, kMaxHeads));
  if (r.get("num_key_value_heads")) {
    MYRIAD_ASSIGN(c.num_kv_heads, r.int_field("num_key_value_heads", 1, kMaxHeads));
  } else {
    c.num_kv_heads = c.num_heads;
  }
  if (c.num_heads % c.num_kv_heads != 0)
    return r.bad("num_key_value_heads", "= " + std::to_string(c.num_kv_heads) +
                                            " does not divide num_attention_heads = " + std::to_string(c.num_heads));
  if (r.get("head_dim")) {
    MYRIAD_ASSIGN(c.head_dim, r.int_field("head_dim", 2, kMaxHeadDim));
  } else {
    if (c.hidden_size % c.num_heads != 0)
      return r.bad("hidden_size", "= " + std::to_string(c.hidden_size) + " is not a multiple of num_attention_heads = " +
                                      std::to_string(c.num_heads) + " (and no head_dim is given)");
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) return r.bad("head_dim", "= " + std::to_string(c.head_dim) + " must be even for RoPE");
  if (c.head_dim > kMaxHeadDim) return r.bad("head_dim", "= " + std::to_string(c.head_dim) + " is too large");
  MYRIAD_ASSIGN(c.intermediate_size, r.int_field("intermediate_size", 1, kMaxIntermediate));
  MYRIAD_ASSIGN(c.vocab_size, r.int_field("vocab_size", 1, kMaxVocab));
  if (r.get("max_position_embeddings")) {
    MYRIAD_ASSIGN(c.max_position_embeddings, r.int_field("max_position_embeddings", 1, kMaxPositions));
  } else {
    c.max_position_embeddings = 2048;  // transformers' default for llama/mistral
  }

  double theta = 0, eps = 0;
  MYRIAD_ASSIGN(theta, r.number_field("rope_theta", 10000.0));
  if (!(theta > 1.0) || !std::isfinite(theta) || theta > 1e12)
    return r.bad("rope_theta", "= " + std::to_string(theta) + " must be in (1, 1e12]");
  c.rope_theta = float(theta);
  MYRIAD_ASSIGN(eps, r.number_field("rms_norm_eps", 1e-6));
  // Checked as stored (float): 1e-50 would round to 0 (found by fuzzing).
  if (!(eps >= 1e-30) || !(eps < 1)) return r.bad("rms_norm_eps", "= " + std::to_string(eps) + " must be in [1e-30, 1)");
  c.rms_norm_eps = float(eps);
  MYRIAD_ASSIGN(c.rope_scaling, parse_rope_scaling(j, source));
  if (const json* prf = r.get("partial_rotary_factor"); prf && !(prf->is_number() && prf->get<double>() == 1.0))
    return r.error(ErrorCode::kUnsupported, "partial_rotary_factor", "= " + excerpt(*prf) + " is not supported (only 1)");

  std::string act;
  MYRIAD_ASSIGN(act, r.string_field("hidden_act", "silu"));
  if (act != "silu") return r.error(ErrorCode::kUnsupported, "hidden_act", "= '" + act + "' is not supported (only silu)");
  bool mlp_bias = false;
  MYRIAD_ASSIGN(mlp_bias, r.bool_field("mlp_bias", false));
  if (mlp_bias) return r.error(ErrorCode::kUnsupported, "mlp_bias", "= true is not supported");

  MYRIAD_ASSIGN(c.tie_word_embeddings, r.bool_field("tie_word_embeddings", false));
  switch (c.arch) {
    case ModelArch::kQwen2:
      // Qwen2 always has q/k/v biases (and none on o_proj); the field is absent.
      c.attention_bias = true;
      c.o_proj_bias = false;
      break;
    case ModelArch::kLlama:
      // Llama's attention_bias puts a bias on q, k, v and o.
      MYRIAD_ASSIGN(c.attention_bias, r.bool_field("attention_bias", false));
      c.o_proj_bias = c.attention_bias;
      break;
    case ModelArch::kMistral:
      c.attention_bias = false;
      c.o_proj_bias = false;
      break;
  }
  if (r.get("sliding_window")) {
    int64_t w = 0;
    MYRIAD_ASSIGN(w, r.int_field("sliding_window", 1, kMaxPositions));
    c.sliding_window = w;
  }
  if (c.arch == ModelArch::kQwen2) {
    MYRIAD_ASSIGN(c.use_sliding_window, r.bool_field("use_sliding_window", false));
    if (c.use_sliding_window && !c.sliding_window) return r.bad("sliding_window", "is missing but use_sliding_window is true");
  } else if (c.arch == ModelArch::kMistral) {
    c.use_sliding_window = c.sliding_window.has_value();  // Mistral applies it whenever set
  }

  MYRIAD_ASSIGN(c.torch_dtype, r.string_field("torch_dtype", ""));
  if (c.torch_dtype.empty()) MYRIAD_ASSIGN(c.torch_dtype, r.string_field("dtype", ""));
  MYRIAD_ASSIGN(c.bos_token_ids, r.ids_field("bos_token_id", c.vocab_size));
  MYRIAD_ASSIGN(c.eos_token_ids, r.ids_field("eos_token_id", c.vocab_size));
  return c;
}

std::string model_config_to_json(const ModelConfig& c) {
  json j = json::object();
  switch (c.arch) {
    case ModelArch::kLlama: j["architectures"] = {"LlamaForCausalLM"}; break;
    case ModelArch::kMistral: j["architectures"] = {"MistralForCausalLM"}; break;
    case ModelArch::kQwen2: j["architectures"] = {"Qwen2ForCausalLM"}; break;
  }
  j["model_type"] = c.model_type;
  j["hidden_act"] = "silu";
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  if (c.head_dim * c.num_heads != c.hidden_size) j["head_dim"] = c.head_dim;
  j["intermediate_size"] = c.intermediate_size;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rope_theta"] = shortest(c.rope_theta);
  if (c.rope_scaling) {
    j["rope_scaling"] = {{"rope_type", c.rope_scaling->type},
                         {"factor", shortest(c.rope_scaling->factor)},
                         {"low_freq_factor", shortest(c.rope_scaling->low_freq_factor)},
                         {"high_freq_factor", shortest(c.rope_scaling->high_freq_factor)},
                         {"original_max_position_embeddings", c.rope_scaling->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rms_norm_eps"] = shortest(c.rms_norm_eps);
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.arch == ModelArch::kLlama) {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
  }
  if (c.arch != ModelArch::kLlama) j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
  if (c.arch == ModelArch::kQwen2) j["use_sliding_window"] = c.use_sliding_window;
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  auto ids = [](const std::vector<int64_t>& v) -> json {
    if (v.empty()) return nullptr;
    if (v.size() == 1) return v[0];
    return v;
  };
  j["bos_token_id"] = ids(c.bos_token_ids);
  j["eos_token_id"] = ids(c.eos_token_ids);
  return j.dump(2) + "\n";
}

Result<ModelConfig> load_model_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::kIo, path + ": read failed");
  const std::string text = ss.str();
  if (text.size() > (64u << 20)) return make_error(ErrorCode::kBadFile, path + ": larger than 64 MiB");
  return parse_model_config(text, path);
}

}  // namespace myriad
