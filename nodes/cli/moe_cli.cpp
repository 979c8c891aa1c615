#include "moe_cli.h"

#include <algorithm>
#include <filesystem>

#include "gpu/cpu/lora_trainer.h"
#include "runtime/moe/hidden_embedding.h"
#include "runtime/peft_adapter.h"
#include "runtime/step_plan.h"

namespace myriad::cli {

nlohmann::json RoutedExperts::json() const {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < choices.size(); ++i)
    out.push_back({{"name", names[i]}, {"weight", choices[i].weight}, {"similarity", choices[i].similarity}});
  return out;
}

Result<CliMixture> CliMixture::read(const MoeFlags& flags, std::shared_ptr<const Checkpoint> checkpoint, int threads) {
  const ModelConfig& base = checkpoint->config();
  if (!flags.dir) return make_error(ErrorCode::kInvalidArgument, "--moe-top-k and --moe-temperature need --moe");
  auto m = moe::Mixture::load(*flags.dir);
  if (!m.ok()) return m.error();
  CliMixture out;
  out.options_ = m->routing;
  if (flags.top_k) {
    const int64_t most = std::min<int64_t>(m->k(), kMaxAdaptersPerRow);
    if (*flags.top_k < 1 || *flags.top_k > most)
      return make_error(ErrorCode::kInvalidArgument,
                        "--moe-top-k must be in [1, " + std::to_string(most) + "] for this mixture");
    out.options_.top_k = int32_t(*flags.top_k);
  }
  if (flags.temperature) {
    if (!(*flags.temperature > 0)) return make_error(ErrorCode::kInvalidArgument, "--moe-temperature must be > 0");
    out.options_.temperature = *flags.temperature;
  }
  for (const auto& e : m->experts) {
    auto w = load_peft_adapter((std::filesystem::path(*flags.dir) / e.name).string(), base);
    if (!w.ok()) return w.error();
    out.experts_.push_back(std::move(w.value()));
  }
  if (m->embedding_kind == moe::EmbeddingKind::kHiddenMean) {
    if (m->hidden_dim != base.hidden_size || m->hidden_layer > base.num_layers)
      return make_error(ErrorCode::kInvalidArgument, *flags.dir + ": the mixture pools layer " +
                                                         std::to_string(m->hidden_layer) + " of width " +
                                                         std::to_string(m->hidden_dim) + "; the base has " +
                                                         std::to_string(base.num_layers) + " layers of width " +
                                                         std::to_string(base.hidden_size));
    out.hidden_pass_ = std::make_shared<gpu::cpu::CpuLoraTrainingBackend>(checkpoint, threads);
  }
  out.mixture_ = std::move(m.value());
  out.bos_ids_ = base.bos_token_ids;
  out.base_ = base;
  return out;
}

Result<RoutedExperts> CliMixture::route_into(std::span<const int32_t> prompt, CliRequest& r) const {
  if (!prompt.empty() && std::find(bos_ids_.begin(), bos_ids_.end(), int64_t(prompt[0])) != bos_ids_.end())
    prompt = prompt.subspan(1);
  Result<std::vector<moe::ExpertChoice>> choices = make_error(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (mixture_.embedding_kind == moe::EmbeddingKind::kTfidf) {
    choices = mixture_.route(prompt, options_);
  } else if (!prompt.empty()) {
    // The base-only pass up to the routing layer.
    auto e = moe::hidden_embed(*hidden_pass_, base_, {std::vector<int32_t>(prompt.begin(), prompt.end())},
                               mixture_.hidden_layer);
    if (!e.ok()) return e.error();
    choices = mixture_.route_embedding(e.value(), options_);
  }
  if (!choices.ok()) return choices.error();
  RoutedExperts out;
  out.choices = std::move(choices.value());
  r.adapter = nullptr;
  r.experts.clear();
  for (const auto& c : out.choices) {
    out.names.push_back(mixture_.experts[size_t(c.expert)].name);
    r.experts.push_back({experts_[size_t(c.expert)], float(c.weight)});
  }
  return out;
}

}  // namespace myriad::cli
