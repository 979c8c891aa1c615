// Checkpoint: a Hugging Face folder mapped and validated against its config.
#include "runtime/checkpoint.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "json_depth.h"
#include "runtime/log.h"

namespace myriad {

namespace {

using json = nlohmann::json;

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

bool file_exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Shard names come from a possibly hostile index: plain file names only.
bool safe_shard_name(const std::string& f) {
  return !f.empty() && f.size() < 256 && f.find('/') == std::string::npos && f.find('\0') == std::string::npos &&
         f[0] != '.' && ends_with(f, ".safetensors");
}

}  // namespace

const char* linear_module_name(LinearModule m) {
  switch (m) {
    case LinearModule::kQ: return "q_proj";
    case LinearModule::kK: return "k_proj";
    case LinearModule::kV: return "v_proj";
    case LinearModule::kO: return "o_proj";
    case LinearModule::kGate: return "gate_proj";
    case LinearModule::kUp: return "up_proj";
    case LinearModule::kDown: return "down_proj";
  }
  return "?";
}

std::pair<int64_t, int64_t> linear_module_shape(const ModelConfig& c, LinearModule m) {
  switch (m) {
    case LinearModule::kQ: return {c.q_dim(), c.hidden_size};
    case LinearModule::kK:
    case LinearModule::kV: return {c.kv_dim(), c.hidden_size};
    case LinearModule::kO: return {c.hidden_size, c.q_dim()};
    case LinearModule::kGate:
    case LinearModule::kUp: return {c.intermediate_size, c.hidden_size};
    case LinearModule::kDown: return {c.hidden_size, c.intermediate_size};
  }
  return {0, 0};
}

const TensorView& LayerWeights::linear(LinearModule m) const {
  switch (m) {
    case LinearModule::kQ: return q;
    case LinearModule::kK: return k;
    case LinearModule::kV: return v;
    case LinearModule::kO: return o;
    case LinearModule::kGate: return gate;
    case LinearModule::kUp: return up;
    case LinearModule::kDown: return down;
  }
  MYRIAD_CHECK(false, "bad LinearModule");
}

namespace {

std::string layer_prefix(int64_t l) { return "model.layers." + std::to_string(l) + "."; }

std::string linear_tensor_name(int64_t l, LinearModule m) {
  const bool attn = m == LinearModule::kQ || m == LinearModule::kK || m == LinearModule::kV || m == LinearModule::kO;
  return layer_prefix(l) + (attn ? "self_attn." : "mlp.") + linear_module_name(m) + ".weight";
}

}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  out.push_back({"model.embed_tokens.weight", {c.vocab_size, c.hidden_size}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = layer_prefix(l);
    out.push_back({p + "input_layernorm.weight", {c.hidden_size}});
    for (LinearModule m : {LinearModule::kQ, LinearModule::kK, LinearModule::kV, LinearModule::kO}) {
      auto [o, i] = linear_module_shape(c, m);
      out.push_back({linear_tensor_name(l, m), {o, i}});
      const bool bias = m == LinearModule::kO ? c.o_proj_bias : c.attention_bias;
      if (bias) out.push_back({p + "self_attn." + linear_module_name(m) + ".bias", {o}});
    }
    out.push_back({p + "post_attention_layernorm.weight", {c.hidden_size}});
    for (LinearModule m : {LinearModule::kGate, LinearModule::kUp, LinearModule::kDown}) {
      auto [o, i] = linear_module_shape(c, m);
      out.push_back({linear_tensor_name(l, m), {o, i}});
    }
  }
  out.push_back({"model.norm.weight", {c.hidden_size}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, c.hidden_size}});
  return out;
}

const TensorView* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? nullptr : it->second;
}

class CheckpointLoader {
 public:
  explicit CheckpointLoader(std::string dir) : dir_(std::move(dir)) {}

  Result<std::shared_ptr<const Checkpoint>> run() {
    auto ck = std::make_shared<Checkpoint>();
    ck->dir_ = dir_;
    auto cfg = load_model_config(dir_);
    if (!cfg.ok()) return cfg.error();
    ck->config_ = std::move(cfg).value();
    auto gen = load_generation_config(dir_);
    if (!gen.ok()) return gen.error();
    ck->generation_ = std::move(gen).value();
    MYRIAD_TRY(open_shards(*ck));
    MYRIAD_TRY(validate(*ck));
    fill(*ck);
    return std::shared_ptr<const Checkpoint>(std::move(ck));
  }

 private:
  Status open_shards(Checkpoint& ck) {
    const std::string index_path = dir_ + "/model.safetensors.index.json";
    const std::string single = dir_ + "/model.safetensors";
    if (!file_exists(index_path)) {
      if (!file_exists(single))
        return make_error(ErrorCode::kNotFound, dir_ + ": no model.safetensors or model.safetensors.index.json");
      auto f = SafetensorsFile::open(single);
      if (!f.ok()) return f.error();
      ck.shards_.push_back(*f);
      for (const TensorView& t : (*f)->tensors()) {
        ck.by_name_[t.name] = &t;
        file_of_[t.name] = single;
      }
      return ok_status();
    }
    std::ifstream in(index_path, std::ios::binary);
    if (!in) return make_error(ErrorCode::kIo, index_path + ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    if (text.size() > (64u << 20)) return make_error(ErrorCode::kBadFile, index_path + ": larger than 64 MiB");
    if (json_too_deep(text)) return make_error(ErrorCode::kBadFile, index_path + ": JSON nested too deeply");
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::kBadFile, index_path + ": not a JSON object");
    auto wm = j.find("weight_map");
    if (wm == j.end() || !wm->is_object() || wm->empty())
      return make_error(ErrorCode::kBadFile, index_path + ": field 'weight_map' is missing or not a non-empty object");
    std::map<std::string, std::string> tensor_to_shard;
    std::set<std::string> shard_names;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it.value().is_string())
        return make_error(ErrorCode::kBadFile, index_path + ": weight_map entry of tensor '" + it.key() + "' is not a string");
      const std::string f = it.value().get<std::string>();
      if (!safe_shard_name(f))
        return make_error(ErrorCode::kBadFile, index_path + ": weight_map entry of tensor '" + it.key() + "' names shard '" +
                                                   f.substr(0, 200) +
                                                   "', not a plain *.safetensors file name in the model folder");
      tensor_to_shard[it.key()] = f;
      shard_names.insert(f);
    }
    for (const std::string& name : shard_names) {
      const std::string path = dir_ + "/" + name;
      auto f = SafetensorsFile::open(path);
      if (!f.ok()) return f.error();
      for (const TensorView& t : (*f)->tensors()) {
        auto it = tensor_to_shard.find(t.name);
        if (it == tensor_to_shard.end())
          return make_error(ErrorCode::kBadFile, path + ": tensor '" + t.name + "' is not listed in " + index_path);
        if (it->second != name)
          return make_error(ErrorCode::kBadFile, path + ": tensor '" + t.name + "' is listed in " + index_path +
                                                     " as being in shard '" + it->second + "'");
        ck.by_name_[t.name] = &t;
        file_of_[t.name] = path;
      }
      ck.shards_.push_back(*f);
    }
    for (const auto& [tensor, shard] : tensor_to_shard) {
      if (!ck.by_name_.count(tensor))
        return make_error(ErrorCode::kBadFile, dir_ + "/" + shard + ": does not hold tensor '" + tensor + "' that " +
                                                   index_path + " places there");
    }
    return ok_status();
  }

  Status validate(Checkpoint& ck) {
    const ModelConfig& c = ck.config_;
    const std::vector<ExpectedTensor> wanted = expected_tensors(c);
    std::set<std::string> expected;
    for (const ExpectedTensor& e : wanted) {
      expected.insert(e.name);
      const TensorView* t = ck.find(e.name);
      if (!t)
        return make_error(ErrorCode::kBadFile, dir_ + ": tensor '" + e.name + "' (shape " + shape_str(e.shape) +
                                                   ") is missing from the checkpoint");
      if (t->shape != e.shape)
        return make_error(ErrorCode::kBadFile, file_of_[e.name] + ": tensor '" + e.name + "' has shape " +
                                                   shape_str(t->shape) + ", config.json implies " + shape_str(e.shape));
    }
    for (const auto& [name, t] : ck.by_name_) {
      if (expected.count(name) || ends_with(name, "rotary_emb.inv_freq")) continue;
      if (name == "lm_head.weight" && c.tie_word_embeddings) {
        // Some exporters keep the tied copy; accept it only if it is one.
        const TensorView* e = ck.find("model.embed_tokens.weight");
        if (t->shape == e->shape && t->dtype == e->dtype && t->nbytes == e->nbytes &&
            std::memcmp(t->data, e->data, t->nbytes) == 0)
          continue;
        return make_error(ErrorCode::kBadFile, file_of_[name] + ": tensor 'lm_head.weight' differs from "
                                                                "model.embed_tokens.weight but tie_word_embeddings is true");
      }
      return make_error(ErrorCode::kBadFile, file_of_[name] + ": unexpected tensor '" + name + "' (shape " +
                                                 shape_str(t->shape) + ") for a " + c.model_type + " model");
    }
    // All linear weights share one dtype: the executor converts once.
    const std::string first = linear_tensor_name(0, LinearModule::kQ);
    ck.dtype_ = ck.find(first)->dtype;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      for (int m = 0; m < kNumLinearModules; ++m) {
        const std::string n = linear_tensor_name(l, LinearModule(m));
        const TensorView* t = ck.find(n);
        if (t->dtype != ck.dtype_)
          return make_error(ErrorCode::kBadFile, file_of_[n] + ": tensor '" + n + "' is " + dtype_name(t->dtype) +
                                                     " but '" + first + "' is " + dtype_name(ck.dtype_) +
                                                     " (linear weights must share one dtype)");
      }
    }
    // A NaN or infinity in any weight would be served silently as garbage.
    for (const ExpectedTensor& e : wanted) {
      const TensorView* t = ck.find(e.name);
      if (const int64_t i = first_non_finite(*t); i >= 0)
        return make_error(ErrorCode::kBadFile, file_of_[e.name] + ": tensor '" + e.name + "' element " +
                                                   std::to_string(i) + " is " +
                                                   (std::isnan(t->at(size_t(i))) ? "NaN" : "infinite"));
    }
    return ok_status();
  }

  void fill(Checkpoint& ck) {
    const ModelConfig& c = ck.config_;
    auto get = [&](const std::string& n) -> TensorView {
      const TensorView* t = ck.find(n);
      return t ? *t : TensorView{};
    };
    ck.embed_ = get("model.embed_tokens.weight");
    ck.final_norm_ = get("model.norm.weight");
    ck.lm_head_ = c.tie_word_embeddings ? ck.embed_ : get("lm_head.weight");
    ck.layers_.resize(size_t(c.num_layers));
    for (int64_t l = 0; l < c.num_layers; ++l) {
      LayerWeights& w = ck.layers_[size_t(l)];
      const std::string p = layer_prefix(l);
      w.input_norm = get(p + "input_layernorm.weight");
      w.post_attn_norm = get(p + "post_attention_layernorm.weight");
      w.q = get(linear_tensor_name(l, LinearModule::kQ));
      w.k = get(linear_tensor_name(l, LinearModule::kK));
      w.v = get(linear_tensor_name(l, LinearModule::kV));
      w.o = get(linear_tensor_name(l, LinearModule::kO));
      w.gate = get(linear_tensor_name(l, LinearModule::kGate));
      w.up = get(linear_tensor_name(l, LinearModule::kUp));
      w.down = get(linear_tensor_name(l, LinearModule::kDown));
      if (c.attention_bias) {
        w.q_bias = get(p + "self_attn.q_proj.bias");
        w.k_bias = get(p + "self_attn.k_proj.bias");
        w.v_bias = get(p + "self_attn.v_proj.bias");
      }
      if (c.o_proj_bias) w.o_bias = get(p + "self_attn.o_proj.bias");
    }
  }

  std::string dir_;
  std::unordered_map<std::string, std::string> file_of_;  // tensor -> file path
};

Result<std::shared_ptr<const Checkpoint>> Checkpoint::load(const std::string& model_dir) {
  std::string dir = model_dir;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  const auto t0 = std::chrono::steady_clock::now();
  auto ck = CheckpointLoader(dir).run();
  if (ck.ok()) {
    const ModelConfig& c = (*ck)->config();
    log_info("model {}: {} weights, {} layers, hidden {}, vocab {}, {} shard(s), loaded in {:.3f} s", dir,
             dtype_name((*ck)->dtype()), c.num_layers, c.hidden_size, c.vocab_size, (*ck)->shards().size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return ck;
}

}  // namespace myriad
