// PEFT LoRA adapter reader/writer (see runtime/peft_adapter.h).
#include "runtime/peft_adapter.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "runtime/checkpoint.h"
#include "runtime/log.h"
#include "runtime/safetensors.h"

namespace myriad {

namespace {

using ojson = nlohmann::ordered_json;  // keeps rank_pattern order (PEFT takes the first match)

constexpr LinearModule kAllModules[] = {LinearModule::kQ,    LinearModule::kK,  LinearModule::kV,   LinearModule::kO,
                                        LinearModule::kGate, LinearModule::kUp, LinearModule::kDown};
constexpr const char* kSupported = "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj";

Error bad(const std::string& src, const std::string& what) { return make_error(ErrorCode::kBadFile, src + ": " + what); }
Error unsupported(const std::string& src, const std::string& what) {
  return make_error(ErrorCode::kUnsupported, src + ": " + what);
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string excerpt(const ojson& v) {
  std::string s = v.dump(-1, ' ', false, ojson::error_handler_t::replace);
  return s.size() > 80 ? s.substr(0, 80) + "..." : s;
}

bool is_attn(LinearModule m) { return m == LinearModule::kQ || m == LinearModule::kK || m == LinearModule::kV || m == LinearModule::kO; }

// Every module path of a Llama-family model that is not one of the seven
// LoRA-targetable linears: a target matching one of these is refused.
std::vector<std::string> other_module_paths(int64_t num_layers) {
  std::vector<std::string> p = {"model", "model.embed_tokens", "model.layers", "model.norm", "model.rotary_emb", "lm_head"};
  for (int64_t l = 0; l < num_layers; ++l) {
    const std::string b = "model.layers." + std::to_string(l);
    for (const char* s : {"", ".self_attn", ".mlp", ".input_layernorm", ".post_attention_layernorm", ".mlp.act_fn",
                          ".self_attn.rotary_emb"}) {
      p.push_back(b + s);
    }
  }
  return p;
}

bool list_matches(const std::vector<std::string>& list, const std::string& key) {
  for (const auto& t : list) {
    if (key == t) return true;
    if (key.size() > t.size() && key.compare(key.size() - t.size(), t.size(), t) == 0 &&
        key[key.size() - t.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

Result<std::vector<std::string>> string_list(const ojson& v, const std::string& src, const char* field) {
  std::vector<std::string> out;
  if (!v.is_array()) return bad(src, std::string(field) + " must be a list of strings or a string, got " + excerpt(v));
  for (const auto& e : v) {
    if (!e.is_string()) return bad(src, std::string(field) + " has a non-string entry " + excerpt(e));
    out.push_back(e.get<std::string>());
  }
  return out;
}

Result<std::regex> compile_regex(const std::string& re, const std::string& src, const char* field) {
  // std::regex reports errors by exception; this is the one place we meet a
  // library that throws on bad input, so the catch stays local.
  try {
    return std::regex(re, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return bad(src, std::string(field) + " '" + re + "' is not a valid regular expression (" + e.what() + ")");
  }
}

}  // namespace

std::string peft_module_path(int64_t layer, LinearModule m) {
  return "model.layers." + std::to_string(layer) + (is_attn(m) ? ".self_attn." : ".mlp.") + linear_module_name(m);
}

std::string peft_tensor_name(int64_t layer, LinearModule m, bool lora_b) {
  return "base_model.model." + peft_module_path(layer, m) + (lora_b ? ".lora_B.weight" : ".lora_A.weight");
}

Result<PeftAdapterConfig> parse_peft_config(std::string_view text, const std::string& src) {
  ojson j = ojson::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad(src, "not valid JSON");
  if (!j.is_object()) return bad(src, "must be a JSON object");
  PeftAdapterConfig c;
  c.source = src;
  auto field = [&](const char* k) -> const ojson* {
    auto it = j.find(k);
    return it == j.end() || it->is_null() ? nullptr : &*it;
  };
  auto truthy = [&](const char* k) {
    const ojson* v = field(k);
    return v && ((v->is_boolean() && v->get<bool>()) || (v->is_string() && !v->get<std::string>().empty()) ||
                 (v->is_array() && !v->empty()) || (v->is_object() && !v->empty()));
  };

  if (const ojson* v = field("peft_type"); v && !(v->is_string() && v->get<std::string>() == "LORA")) {
    return unsupported(src, "peft_type " + excerpt(*v) + ": Myriad serves LoRA adapters only (peft_type \"LORA\")");
  }
  if (truthy("use_dora")) {
    return unsupported(src, "use_dora is true: this is a DoRA adapter; Myriad does not apply DoRA's magnitude "
                            "vectors. Merge it into the base model or retrain with use_dora false");
  }
  if (const ojson* v = field("bias"); v && !(v->is_string() && v->get<std::string>() == "none")) {
    return unsupported(src, "bias is " + excerpt(*v) + ": Myriad does not apply LoRA biases (only bias \"none\")");
  }
  if (truthy("lora_bias")) return unsupported(src, "lora_bias is true: Myriad does not apply LoRA biases");
  if (truthy("modules_to_save")) {
    return unsupported(src, "modules_to_save is " + excerpt(*field("modules_to_save")) +
                                ": Myriad does not apply fully fine-tuned modules (modules_to_save), only LoRA deltas");
  }
  if (truthy("layer_replication")) return unsupported(src, "layer_replication is not supported by Myriad");
  if (truthy("target_parameters")) return unsupported(src, "target_parameters is not supported by Myriad");
  if (truthy("use_qalora")) return unsupported(src, "use_qalora is not supported by Myriad");
  if (const ojson* v = field("layers_pattern")) {
    bool ok = (v->is_string() && (v->get<std::string>() == "layers" || v->get<std::string>().empty())) ||
              (v->is_array() && (v->empty() || (v->size() == 1 && (*v)[0] == "layers")));
    if (!ok) return unsupported(src, "layers_pattern " + excerpt(*v) + ": Llama-family models keep layers in \"layers\"");
  }

  if (const ojson* v = field("r")) {
    if (!v->is_number_integer() || v->get<int64_t>() <= 0 || v->get<int64_t>() > 65536) {
      return bad(src, "r must be a positive integer, got " + excerpt(*v));
    }
    c.r = int32_t(v->get<int64_t>());
  }
  if (const ojson* v = field("lora_alpha")) {
    if (!v->is_number() || !std::isfinite(v->get<double>())) return bad(src, "lora_alpha must be a number, got " + excerpt(*v));
    c.lora_alpha = v->get<float>();
  }
  if (const ojson* v = field("use_rslora")) {
    if (!v->is_boolean()) return bad(src, "use_rslora must be true or false, got " + excerpt(*v));
    c.use_rslora = v->get<bool>();
  }
  if (const ojson* v = field("fan_in_fan_out")) {
    if (!v->is_boolean()) return bad(src, "fan_in_fan_out must be true or false, got " + excerpt(*v));
    c.fan_in_fan_out = v->get<bool>();
  }
  if (const ojson* v = field("base_model_name_or_path"); v && v->is_string()) c.base_model_name_or_path = v->get<std::string>();
  if (const ojson* v = field("task_type"); v && v->is_string()) c.task_type = v->get<std::string>();

  if (const ojson* v = field("target_modules")) {
    if (v->is_string()) {
      if (v->get<std::string>() == "all-linear") {
        for (LinearModule m : kAllModules) c.target_modules.push_back(linear_module_name(m));
      } else {
        c.target_regex = v->get<std::string>();
        MYRIAD_TRY(compile_regex(*c.target_regex, src, "target_modules"));
      }
    } else {
      auto l = string_list(*v, src, "target_modules");
      if (!l.ok()) return l.error();
      if (l->empty()) return bad(src, "target_modules is empty");
      c.target_modules = std::move(l.value());
    }
  } else {
    c.target_modules = {"q_proj", "v_proj"};  // PEFT's default for Llama, Mistral and Qwen2
  }
  if (const ojson* v = field("exclude_modules")) {
    if (v->is_string()) {
      c.exclude_regex = v->get<std::string>();
      MYRIAD_TRY(compile_regex(*c.exclude_regex, src, "exclude_modules"));
    } else {
      auto l = string_list(*v, src, "exclude_modules");
      if (!l.ok()) return l.error();
      c.exclude_modules = std::move(l.value());
    }
  }
  for (const char* name : {"rank_pattern", "alpha_pattern"}) {
    const ojson* v = field(name);
    if (!v) continue;
    if (!v->is_object()) return bad(src, std::string(name) + " must be an object, got " + excerpt(*v));
    for (auto it = v->begin(); it != v->end(); ++it) {
      MYRIAD_TRY(compile_regex(it.key(), src, name));
      if (std::string(name) == "rank_pattern") {
        if (!it->is_number_integer() || it->get<int64_t>() <= 0 || it->get<int64_t>() > 65536) {
          return bad(src, "rank_pattern['" + it.key() + "'] must be a positive integer, got " + excerpt(*it));
        }
        c.rank_pattern.emplace_back(it.key(), int32_t(it->get<int64_t>()));
      } else {
        if (!it->is_number() || !std::isfinite(it->get<double>())) {
          return bad(src, "alpha_pattern['" + it.key() + "'] must be a number, got " + excerpt(*it));
        }
        c.alpha_pattern.emplace_back(it.key(), it->get<float>());
      }
    }
  }
  if (const ojson* v = field("layers_to_transform")) {
    std::vector<int64_t> layers;
    if (v->is_number_integer()) {
      layers.push_back(v->get<int64_t>());
    } else if (v->is_array()) {
      for (const auto& e : *v) {
        if (!e.is_number_integer()) return bad(src, "layers_to_transform has a non-integer entry " + excerpt(e));
        layers.push_back(e.get<int64_t>());
      }
    } else {
      return bad(src, "layers_to_transform must be an integer or a list of integers, got " + excerpt(*v));
    }
    if (!layers.empty()) c.layers_to_transform = std::move(layers);  // PEFT: an empty list means all layers
  }
  return c;
}

namespace {

// Which of the seven modules of which layers the config targets, with each
// module's rank and alpha. Refuses targets that name nothing, or name a
// module Myriad cannot adapt.
struct Target {
  bool on = false;
  int32_t rank = 0;
  float alpha = 0.0f;
};

template <class V>
const V* pattern_lookup(const std::vector<std::pair<std::string, V>>& pat, const std::string& key) {
  for (const auto& [k, v] : pat) {
    std::regex re("(.*\\.)?(" + k + ")$");  // validated at parse time
    if (std::regex_match(key, re)) return &v;
  }
  return nullptr;
}

Result<std::vector<Target>> resolve_targets(const PeftAdapterConfig& c, const ModelConfig& base) {
  const std::string& src = c.source;
  const int64_t L = base.num_layers;
  std::vector<Target> t(size_t(L) * kNumLinearModules);
  std::optional<std::regex> target_re, exclude_re;
  if (c.target_regex) target_re = std::regex(*c.target_regex);
  if (c.exclude_regex) exclude_re = std::regex(*c.exclude_regex);
  auto targeted = [&](const std::string& key) {
    return target_re ? std::regex_match(key, *target_re) : list_matches(c.target_modules, key);
  };
  auto excluded = [&](const std::string& key) {
    return exclude_re ? std::regex_match(key, *exclude_re) : list_matches(c.exclude_modules, key);
  };

  // Targets must not reach modules Myriad cannot adapt (lm_head, embeddings, norms).
  for (const std::string& key : other_module_paths(L)) {
    if (targeted(key) && !excluded(key)) {
      return unsupported(src, "target_modules selects '" + key + "', which Myriad does not adapt (LoRA applies only to " +
                                  std::string(kSupported) + ")");
    }
  }
  // Each list entry must name at least one module of this model.
  for (const auto& entry : c.target_modules) {
    bool any = false;
    for (int64_t l = 0; l < L && !any; ++l) {
      for (LinearModule m : kAllModules) any = any || list_matches({entry}, peft_module_path(l, m));
    }
    if (!any) {
      return bad(src, "target module '" + entry + "' matches no module of this " + base.model_type +
                          " model (Myriad adapts " + kSupported + ")");
    }
  }
  bool any = false;
  for (int64_t l = 0; l < L; ++l) {
    for (LinearModule m : kAllModules) {
      const std::string key = peft_module_path(l, m);
      if (!targeted(key) || excluded(key)) continue;
      // As in PEFT, layers_to_transform applies to list targets only.
      if (!target_re && c.layers_to_transform) {
        const auto& ls = *c.layers_to_transform;
        if (std::find(ls.begin(), ls.end(), l) == ls.end()) continue;
      }
      Target& x = t[size_t(l) * kNumLinearModules + size_t(m)];
      x.on = true;
      any = true;
      const int32_t* r = pattern_lookup(c.rank_pattern, key);
      const float* a = pattern_lookup(c.alpha_pattern, key);
      x.rank = r ? *r : c.r;
      x.alpha = a ? *a : c.lora_alpha;
    }
  }
  if (!any) {
    return bad(src, "target_modules " + (target_re ? "'" + *c.target_regex + "'" : std::string("list")) +
                        " selects no module of this model's " + std::to_string(L) + " layers");
  }
  if (c.layers_to_transform) {
    for (int64_t l : *c.layers_to_transform) {
      if (l < 0 || l >= L) {
        return bad(src, "layers_to_transform names layer " + std::to_string(l) + " but the base model has " +
                            std::to_string(L) + " layers");
      }
    }
  }
  return t;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

// Names a tensor Myriad will not apply, or nullopt for an ordinary unexpected one.
std::optional<std::string> refused_tensor_reason(const std::string& n) {
  auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
  if (has("lora_magnitude_vector")) return "a DoRA magnitude vector: Myriad does not apply DoRA";
  if (has("lora_embedding_")) return "an embedding LoRA: Myriad adapts only " + std::string(kSupported);
  if (has(".lora_A.bias") || has(".lora_B.bias") || (has("lora_") && has(".bias"))) {
    return "a LoRA bias: Myriad does not apply LoRA biases";
  }
  if (has("lm_head") || has("embed_tokens") || has("modules_to_save") || has("norm.weight")) {
    return "a fully fine-tuned module (modules_to_save): Myriad does not apply them, only LoRA deltas";
  }
  return std::nullopt;
}

}  // namespace

Result<std::shared_ptr<const LoraWeights>> load_peft_adapter(const std::string& dir, const ModelConfig& base,
                                                             const PeftLoadOptions& options) {
  const std::string cfg_path = dir + "/adapter_config.json";
  const std::string st_path = dir + "/adapter_model.safetensors";
  const std::string bin_path = dir + "/adapter_model.bin";
  if (!file_exists(cfg_path)) {
    return make_error(ErrorCode::kNotFound, cfg_path + ": not found (a PEFT adapter folder holds adapter_config.json "
                                                       "and adapter_model.safetensors)");
  }
  std::ifstream f(cfg_path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  if (!f) return make_error(ErrorCode::kIo, cfg_path + ": cannot read");
  auto cfg = parse_peft_config(ss.str(), cfg_path);
  if (!cfg.ok()) return cfg.error();

  if (!file_exists(st_path)) {
    if (file_exists(bin_path)) {
      return make_error(
          ErrorCode::kUnsupported,
          bin_path + ": a pickled PyTorch .bin adapter; Myriad reads only adapter_model.safetensors (pickles can run "
                     "code). Convert it once with: python -c \"import torch; from safetensors.torch import save_file; "
                     "save_file({k: v.contiguous() for k, v in torch.load('" +
              bin_path + "', map_location='cpu').items()}, '" + st_path + "', metadata={'format': 'pt'})\"");
    }
    return make_error(ErrorCode::kNotFound, st_path + ": not found");
  }
  auto targets = resolve_targets(*cfg, base);
  if (!targets.ok()) return targets.error();

  auto file = SafetensorsFile::open(st_path);
  if (!file.ok()) return file.error();  // names the file and what is wrong (truncation included)
  const SafetensorsFile& st = **file;

  // Every tensor must belong to a targeted module; refuse what we cannot apply.
  std::map<std::string, std::pair<size_t, bool>> expected;  // name -> (module index, is B)
  for (int64_t l = 0; l < base.num_layers; ++l) {
    for (LinearModule m : kAllModules) {
      const size_t i = size_t(l) * kNumLinearModules + size_t(m);
      if (!(*targets)[i].on) continue;
      expected[peft_tensor_name(l, m, false)] = {i, false};
      expected[peft_tensor_name(l, m, true)] = {i, true};
    }
  }
  for (const TensorView& tv : st.tensors()) {
    if (expected.count(tv.name)) continue;
    if (auto why = refused_tensor_reason(tv.name)) {
      return unsupported(st_path, "tensor '" + tv.name + "' is " + *why);
    }
    return bad(st_path, "unexpected tensor '" + tv.name + "': adapter_config.json does not target that module "
                        "(expected names like '" + peft_tensor_name(0, LinearModule::kQ, false) + "')");
  }

  auto w = std::make_shared<LoraWeights>();
  w->name = options.name.empty() ? dir : options.name;
  w->num_layers = int32_t(base.num_layers);
  w->modules.resize(size_t(base.num_layers) * kNumLinearModules);
  for (const auto& [name, where] : expected) {
    const TensorView* tv = st.find(name);
    if (!tv) {
      return bad(st_path, "missing tensor '" + name + "' (adapter_config.json targets " +
                              peft_module_path(int64_t(where.first / kNumLinearModules),
                                               LinearModule(where.first % kNumLinearModules)) + ")");
    }
  }
  for (const auto& [name, where] : expected) {
    const auto [idx, is_b] = where;
    const auto layer = int64_t(idx / kNumLinearModules);
    const auto m = LinearModule(idx % kNumLinearModules);
    const Target& t = (*targets)[idx];
    const TensorView* tv = st.find(name);
    const auto [out, in] = linear_module_shape(base, m);
    const std::vector<int64_t> want = is_b ? std::vector<int64_t>{out, t.rank} : std::vector<int64_t>{t.rank, in};
    if (t.rank > options.max_rank) {
      return unsupported(st_path, "module " + peft_module_path(layer, m) + " has rank " + std::to_string(t.rank) +
                                      ", above the maximum adapter rank " + std::to_string(options.max_rank) +
                                      " of this executor (raise the slot rank or retrain with a smaller r)");
    }
    if (tv->shape != want) {
      return bad(st_path, "tensor '" + name + "' has shape " + shape_str(tv->shape) + ", expected " + shape_str(want) +
                              " (rank " + std::to_string(t.rank) + " from adapter_config.json; base " +
                              base.model_type + " hidden_size " + std::to_string(base.hidden_size) +
                              "): was it trained on another base model (base_model_name_or_path '" +
                              cfg->base_model_name_or_path + "')?");
    }
    LoraModuleWeights& mw = w->modules[idx];
    mw.rank = t.rank;
    mw.scale = cfg->use_rslora ? t.alpha / std::sqrt(float(t.rank)) : t.alpha / float(t.rank);
    if (const int64_t i = first_non_finite(*tv); i >= 0) {
      return bad(st_path, "tensor '" + name + "' element " + std::to_string(i) + " is " +
                              (std::isnan(tv->at(size_t(i))) ? "NaN" : "infinite"));
    }
    std::vector<float>& dst = is_b ? mw.b : mw.a;
    dst.resize(size_t(tv->numel()));
    for (size_t i = 0; i < dst.size(); ++i) dst[i] = tv->at(i);
  }
  log_debug("adapter {}: {} modules, rank up to {}, {:.1f} MB (f32)", dir, expected.size() / 2, w->max_rank(),
            double(w->bytes()) / 1e6);
  return std::shared_ptr<const LoraWeights>(std::move(w));
}

Status save_peft_adapter(const std::string& dir, const LoraWeights& w, const std::string& base_model_name_or_path) {
  ::mkdir(dir.c_str(), 0755);  // may exist already
  std::vector<TensorToWrite> tensors;
  std::set<std::string> targets;
  std::map<int32_t, int> rank_count;
  for (int32_t l = 0; l < w.num_layers; ++l) {
    for (LinearModule m : kAllModules) {
      const LoraModuleWeights& mw = w.at(l, m);
      if (mw.rank == 0) continue;
      targets.insert(linear_module_name(m));
      ++rank_count[mw.rank];
    }
  }
  if (targets.empty()) return make_error(ErrorCode::kInvalidArgument, "adapter '" + w.name + "' targets no module");
  int32_t r = 0;
  int best = -1;
  for (auto [rank, n] : rank_count) {
    if (n > best) r = rank, best = n;
  }
  float alpha = 0;
  for (const auto& mw : w.modules) {
    if (mw.rank == r) {
      alpha = mw.scale * float(r);
      break;
    }
  }
  ojson rank_pattern = ojson::object(), alpha_pattern = ojson::object();
  // The layers with any module: all of them, or a subset that PEFT's
  // layers_to_transform names.
  std::vector<int64_t> layers;
  for (int32_t l = 0; l < w.num_layers; ++l)
    for (LinearModule m : kAllModules)
      if (w.at(l, m).rank != 0) {
        layers.push_back(l);
        break;
      }
  for (int32_t l = 0; l < w.num_layers; ++l) {
    const bool adapted_layer = std::find(layers.begin(), layers.end(), int64_t(l)) != layers.end();
    for (LinearModule m : kAllModules) {
      const LoraModuleWeights& mw = w.at(l, m);
      // Every adapted layer has every targeted module type (PEFT targets by name).
      if (mw.rank == 0) {
        if (adapted_layer && targets.count(linear_module_name(m))) {
          return make_error(ErrorCode::kInvalidArgument, "adapter '" + w.name + "': " + peft_module_path(l, m) +
                                                             " is not adapted while other layers' " +
                                                             linear_module_name(m) + " are");
        }
        continue;
      }
      // Keys without the leading "model." match in every PEFT version.
      const std::string key = peft_module_path(l, m).substr(6);
      if (mw.rank != r) rank_pattern[key] = mw.rank;
      const float a = mw.scale * float(mw.rank);
      if (a != alpha) alpha_pattern[key] = a;
      tensors.push_back({peft_tensor_name(l, m, false), DType::kF32, {mw.rank, int64_t(mw.a.size()) / mw.rank},
                         std::as_bytes(std::span(mw.a))});
      tensors.push_back({peft_tensor_name(l, m, true), DType::kF32, {int64_t(mw.b.size()) / mw.rank, mw.rank},
                         std::as_bytes(std::span(mw.b))});
    }
  }
  ojson cfg = {{"alpha_pattern", alpha_pattern},
               {"base_model_name_or_path", base_model_name_or_path},
               {"bias", "none"},
               {"fan_in_fan_out", false},
               {"inference_mode", true},
               {"init_lora_weights", true},
               {"layers_to_transform", layers.size() == size_t(w.num_layers) ? ojson(nullptr) : ojson(layers)},
               {"lora_alpha", alpha},
               {"lora_dropout", 0.0},
               {"modules_to_save", nullptr},
               {"peft_type", "LORA"},
               {"r", r},
               {"rank_pattern", rank_pattern},
               {"target_modules", std::vector<std::string>(targets.begin(), targets.end())},
               {"task_type", "CAUSAL_LM"},
               {"use_dora", false},
               {"use_rslora", false}};
  MYRIAD_TRY(write_safetensors(dir + "/adapter_model.safetensors", tensors));
  const std::string cfg_path = dir + "/adapter_config.json";
  std::ofstream f(cfg_path, std::ios::binary | std::ios::trunc);
  f << cfg.dump(2) << "\n";
  f.close();
  if (!f) return make_error(ErrorCode::kIo, cfg_path + ": write failed");
  return ok_status();
}

}  // namespace myriad
