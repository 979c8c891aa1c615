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
  for (size_t i = 0; i < choices.size(); ++i) {
    nlohmann::json e = {{"name", names[i]}, {"weight", choices[i].weight}};
    if (!in_prefill) e["similarity"] = choices[i].similarity;
    out.push_back(std::move(e));
  }
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
    const std::string route = flags.route.value_or("auto");
    if (route != "auto" && route != "prefill" && route != "pass")
      return make_error(ErrorCode::kInvalidArgument, "--moe-route must be auto, prefill or pass");
    const std::string why_not = m->why_not_routed_in_prefill(out.experts_);
    if (route == "prefill" && !why_not.empty())
      return make_error(ErrorCode::kInvalidArgument, "--moe-route prefill: " + *flags.dir + " cannot: " + why_not);
    if (route != "pass" && why_not.empty()) {
      out.prefill_router_ = m->prefill_router(out.options_);
    } else {
      out.hidden_pass_ = std::make_shared<gpu::cpu::CpuLoraTrainingBackend>(checkpoint, threads);
    }
  } else if (flags.route && *flags.route != "auto") {
    return make_error(ErrorCode::kInvalidArgument, "--moe-route " + *flags.route + ": " + *flags.dir +
                                                       " routes by TF-IDF (no model pass to choose)");
  }
  out.mixture_ = std::move(m.value());
  out.bos_ids_ = base.bos_token_ids;
  // The context the lines were embedded behind: the base's BOS, as many as
  // the mixture says (0 in mixtures made before it said).
  if (out.mixture_.hidden_context > 0 && !base.bos_token_ids.empty())
    out.context_.assign(size_t(out.mixture_.hidden_context), int32_t(base.bos_token_ids[0]));
  out.base_ = base;
  return out;
}

Result<RoutedExperts> CliMixture::route_into(std::span<const int32_t> route_ids, std::span<const int32_t> prompt,
                                             CliRequest& r) const {
  if (prefill_router_) {
    r.adapter = nullptr;
    r.experts.clear();
    for (const auto& w : experts_) r.experts.push_back({w, 0.0f});
    r.request.prefill_router = moe::router_for_prompt(prefill_router_, prompt, bos_ids_);
    RoutedExperts out;
    out.in_prefill = true;
    return out;
  }
  std::span<const int32_t> prompt_ids = route_ids;
  if (moe::starts_with_bos(prompt_ids, bos_ids_)) prompt_ids = prompt_ids.subspan(1);
  return route_ids_into(prompt_ids, r);
}

void CliMixture::resolve(RoutedExperts& routed, std::span<const float> weights) const {
  routed.choices = moe::choices_of_weights(weights.first(std::min(weights.size(), mixture_.experts.size())));
  routed.names.clear();
  for (const auto& c : routed.choices) routed.names.push_back(mixture_.experts[size_t(c.expert)].name);
}

Result<RoutedExperts> CliMixture::route_ids_into(std::span<const int32_t> prompt, CliRequest& r) const {
  Result<std::vector<moe::ExpertChoice>> choices = make_error(ErrorCode::kInvalidArgument, "the prompt is empty");
  if (mixture_.embedding_kind == moe::EmbeddingKind::kTfidf) {
    choices = mixture_.route(prompt, options_);
  } else if (!prompt.empty()) {
    // The base-only pass up to the routing layer, behind the context the
    // corpus lines were embedded behind.
    std::vector<int32_t> doc(context_.begin(), context_.end());
    doc.insert(doc.end(), prompt.begin(), prompt.end());
    auto e = moe::hidden_embed(*hidden_pass_, base_, {doc}, mixture_.hidden_layer, 4096, int32_t(context_.size()));
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
