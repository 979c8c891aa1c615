#include "runtime/lora_weights.h"

#include <algorithm>
#include <utility>

namespace myriad {

int32_t LoraWeights::max_rank() const {
  int32_t r = 0;
  for (const auto& m : modules) r = std::max(r, m.rank);
  return r;
}

LoraWeights mix_lora(const std::vector<LoraMixPart>& parts, std::string name) {
  for (const LoraMixPart& p : parts)  // staged parts keep no float32 A/B to mix (only the CLI mixes, unstaged)
    MYRIAD_CHECK(p.weights && p.weights->has_host_weights(), "mix_lora: a part without float32 weights");
  LoraWeights out;
  out.name = std::move(name);
  if (parts.empty()) return out;
  out.num_layers = parts.front().weights->num_layers;
  out.modules.resize(parts.front().weights->modules.size());
  for (size_t m = 0; m < out.modules.size(); ++m) {
    int32_t rank = 0;
    int64_t in = 0, out_features = 0;
    for (const LoraMixPart& p : parts) {
      MYRIAD_CHECK(p.weights->num_layers == out.num_layers && p.weights->modules.size() == out.modules.size(),
                   "mix_lora: adapters of different shapes");
      const LoraModuleWeights& pm = p.weights->modules[m];
      if (pm.rank == 0) continue;
      rank += pm.rank;
      in = int64_t(pm.a.size()) / pm.rank;
      out_features = int64_t(pm.b.size()) / pm.rank;
    }
    LoraModuleWeights& mm = out.modules[m];
    if (rank == 0) continue;
    mm.rank = rank;
    mm.scale = 1.0f;
    mm.a.reserve(size_t(rank * in));
    mm.b.assign(size_t(out_features * rank), 0.0f);
    int32_t col = 0;  // first column of this part in B'
    for (const LoraMixPart& p : parts) {
      const LoraModuleWeights& pm = p.weights->modules[m];
      if (pm.rank == 0) continue;
      mm.a.insert(mm.a.end(), pm.a.begin(), pm.a.end());
      const float k = p.weight * pm.scale;
      for (int64_t o = 0; o < out_features; ++o)
        for (int32_t j = 0; j < pm.rank; ++j) mm.b[size_t(o * rank + col + j)] = k * pm.b[size_t(o * pm.rank + j)];
      col += pm.rank;
    }
  }
  return out;
}

size_t LoraWeights::bytes() const {
  size_t n = staged ? staged->bytes() : 0;
  for (const auto& m : modules) n += (m.a.size() + m.b.size()) * sizeof(float);
  return n;
}

bool LoraWeights::has_host_weights() const {
  for (const auto& m : modules)
    if (m.rank > 0 && (m.a.empty() || m.b.empty())) return false;
  return true;
}

std::shared_ptr<const LoraWeights> staged_lora(const LoraWeights& w, std::shared_ptr<const StagedAdapter> staged) {
  auto out = std::make_shared<LoraWeights>();
  out->name = w.name;
  out->num_layers = w.num_layers;
  out->modules.resize(w.modules.size());
  for (size_t i = 0; i < w.modules.size(); ++i) {
    out->modules[i].rank = w.modules[i].rank;
    out->modules[i].scale = w.modules[i].scale;
  }
  out->staged = std::move(staged);
  return out;
}

}  // namespace myriad
