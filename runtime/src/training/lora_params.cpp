#include "runtime/training/lora_params.h"

#include <cmath>
#include <cstring>
#include <span>

#include "runtime/counter_rng.h"

namespace myriad {

LoraParams<float> init_lora_params(const ModelConfig& base, const LoraTargets& targets, uint64_t seed) {
  LoraParams<float> p;
  p.num_layers = int32_t(base.num_layers);
  p.modules.resize(size_t(base.num_layers) * kNumLinearModules);
  uint64_t stream = splitmix64(seed ^ 0x4c6f5241496e6974ull);  // "LoRAInit"
  for (int64_t l = targets.first_layer; l < base.num_layers; ++l)
    for (int m = 0; m < kNumLinearModules; ++m) {
      if (!targets.modules[m]) continue;
      const auto [out, in] = linear_module_shape(base, LinearModule(m));
      auto& mp = p.at(int(l), LinearModule(m));
      mp.rank = targets.rank;
      mp.scale = targets.alpha / float(targets.rank);
      mp.a.resize(size_t(targets.rank) * size_t(in));
      mp.b.assign(size_t(out) * size_t(targets.rank), 0.0f);
      const double bound = 1.0 / std::sqrt(double(in));
      for (auto& v : mp.a) {
        stream = splitmix64(stream);
        const double u = double(stream >> 11) * (1.0 / 9007199254740992.0);
        v = float((2.0 * u - 1.0) * bound);
      }
    }
  return p;
}

Result<LoraTargets> lora_targets_named(const std::vector<std::string>& names, int32_t rank, float alpha) {
  LoraTargets t;
  t.rank = rank;
  t.alpha = alpha;
  for (bool& m : t.modules) m = false;
  bool any = false;
  for (const std::string& name : names) {
    bool found = false;
    for (int m = 0; m < kNumLinearModules; ++m)
      if (name == linear_module_name(LinearModule(m))) t.modules[m] = found = any = true;
    if (!found)
      return make_error(ErrorCode::kInvalidArgument,
                        "unknown module '" + name + "' (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
  }
  if (!any) return make_error(ErrorCode::kInvalidArgument, "no target module named");
  return t;
}

LoraWeights to_lora_weights(const LoraParams<float>& p, std::string name) {
  LoraWeights w;
  w.name = std::move(name);
  w.num_layers = p.num_layers;
  w.modules.resize(p.modules.size());
  for (size_t i = 0; i < p.modules.size(); ++i) {
    w.modules[i].rank = p.modules[i].rank;
    w.modules[i].scale = p.modules[i].scale;
    w.modules[i].a = p.modules[i].a;
    w.modules[i].b = p.modules[i].b;
  }
  return w;
}

LoraParams<float> weighted_sum(const std::vector<std::pair<const LoraParams<float>*, double>>& parts) {
  LoraParams<float> out;
  if (parts.empty()) return out;
  out.num_layers = parts[0].first->num_layers;
  out.modules.resize(parts[0].first->modules.size());
  for (size_t m = 0; m < out.modules.size(); ++m) {
    LoraModuleParams<float>& o = out.modules[m];
    size_t in = 0, out_dim = 0;
    for (const auto& [p, w] : parts) {
      const LoraModuleParams<float>& x = p->modules[m];
      if (x.rank == 0) continue;
      o.rank += x.rank;
      in = x.a.size() / size_t(x.rank);
      out_dim = x.b.size() / size_t(x.rank);
    }
    if (o.rank == 0) continue;
    o.scale = 1.0f;
    o.a.reserve(size_t(o.rank) * in);
    o.b.assign(out_dim * size_t(o.rank), 0.0f);
    int32_t col = 0;
    for (const auto& [p, w] : parts) {
      const LoraModuleParams<float>& x = p->modules[m];
      if (x.rank == 0) continue;
      o.a.insert(o.a.end(), x.a.begin(), x.a.end());
      const float f = float(w) * x.scale;
      for (size_t r = 0; r < out_dim; ++r)
        for (int32_t c = 0; c < x.rank; ++c)
          o.b[r * size_t(o.rank) + size_t(col + c)] = f * x.b[r * size_t(x.rank) + size_t(c)];
      col += x.rank;
    }
  }
  return out;
}

LoraParams<float> lora_params_from(const LoraWeights& w) {
  MYRIAD_CHECK(w.has_host_weights(), "lora_params_from: adapter " + w.name + " keeps no float32 A/B (staged)");
  LoraParams<float> p;
  p.num_layers = w.num_layers;
  p.modules.resize(w.modules.size());
  for (size_t i = 0; i < w.modules.size(); ++i) {
    p.modules[i].rank = w.modules[i].rank;
    p.modules[i].scale = w.modules[i].scale;
    p.modules[i].a = w.modules[i].a;
    p.modules[i].b = w.modules[i].b;
  }
  return p;
}


void add_lora_tensors(std::vector<TensorToWrite>& out, const LoraParams<float>& p, const std::string& prefix) {
  for (size_t i = 0; i < p.modules.size(); ++i) {
    const auto& m = p.modules[i];
    if (m.rank == 0) continue;
    out.push_back({prefix + std::to_string(i) + ".a", DType::kF32, {int64_t(m.a.size())}, std::as_bytes(std::span(m.a))});
    out.push_back({prefix + std::to_string(i) + ".b", DType::kF32, {int64_t(m.b.size())}, std::as_bytes(std::span(m.b))});
  }
}

Status read_lora_tensors(const SafetensorsFile& f, LoraParams<float>& p, const std::string& prefix) {
  for (size_t i = 0; i < p.modules.size(); ++i) {
    auto& m = p.modules[i];
    if (m.rank == 0) continue;
    for (auto [name, dst] : {std::pair{prefix + std::to_string(i) + ".a", &m.a}, {prefix + std::to_string(i) + ".b", &m.b}}) {
      const TensorView* t = f.find(name);
      if (!t || t->dtype != DType::kF32 || size_t(t->numel()) != dst->size())
        return make_error(ErrorCode::kBadFile, f.path() + ": tensor " + name + " is missing or misshaped");
      std::memcpy(dst->data(), t->data, dst->size() * sizeof(float));
    }
  }
  return ok_status();
}

}  // namespace myriad
