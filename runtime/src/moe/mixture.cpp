#include "runtime/moe/mixture.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/step_plan.h"

namespace myriad::moe {

namespace {

using nlohmann::json;

Error bad(const std::string& where, const std::string& what) { return make_error(ErrorCode::kBadFile, where + ": " + what); }

bool plain_folder_name(const std::string& s) {
  if (s.empty() || s == "." || s == ".." || s.size() > 255) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

Result<std::vector<double>> numbers(const json& j, const std::string& where, const std::string& field) {
  if (!j.is_array() || j.empty()) return bad(where, field + " must be a non-empty list of numbers");
  std::vector<double> out;
  out.reserve(j.size());
  for (const auto& v : j) {
    if (!v.is_number() || !std::isfinite(v.get<double>())) return bad(where, field + " holds a value that is not a finite number");
    out.push_back(v.get<double>());
  }
  return out;
}

std::vector<std::string> strings_or_empty(const json& j, const char* field) {
  std::vector<std::string> out;
  if (j.contains(field) && j[field].is_array())
    for (const auto& v : j[field])
      if (v.is_string()) out.push_back(v.get<std::string>());
  return out;
}

}  // namespace

Result<std::vector<ExpertChoice>> Mixture::route(std::span<const int32_t> prompt, const RoutingOptions& options) const {
  if (embedding_kind != EmbeddingKind::kTfidf)
    return make_error(ErrorCode::kUnsupported, "this mixture embeds with the base model's hidden states");
  const std::vector<float> e = embedding.embed(prompt);
  return moe::route(e, centroids, k(), cosine, options);
}

Result<std::vector<ExpertChoice>> Mixture::route_embedding(std::span<const float> e, const RoutingOptions& options) const {
  if (int64_t(e.size()) != dim())
    return make_error(ErrorCode::kInvalidArgument, "an embedding of " + std::to_string(e.size()) +
                                                       " values for a mixture of dim " + std::to_string(dim()));
  return moe::route(e, centroids, k(), cosine, options);
}

std::string Mixture::why_not_routed_in_prefill(const std::vector<std::shared_ptr<const LoraWeights>>& weights) const {
  if (embedding_kind != EmbeddingKind::kHiddenMean) return "it routes by TF-IDF, not by hidden state";
  if (k() > kMaxAdaptersPerRow)
    return "its " + std::to_string(k()) + " experts exceed the " + std::to_string(kMaxAdaptersPerRow) +
           " adapters of one row";
  for (size_t e = 0; e < weights.size() && e < experts.size(); ++e)
    for (int l = 0; l < hidden_layer && l < weights[e]->num_layers; ++l)
      for (int m = 0; m < kNumLinearModules; ++m)
        if (weights[e]->at(l, LinearModule(m)).rank != 0)
          return experts[e].name + " adapts layer " + std::to_string(l) + ", below the routing layer " +
                 std::to_string(hidden_layer) + " (moe create --expert-layers above avoids it)";
  return "";
}

std::shared_ptr<PrefillRouter> Mixture::prefill_router(const RoutingOptions& options) const {
  auto router = std::make_shared<PrefillRouter>();
  router->layer = hidden_layer;
  router->dim = int32_t(hidden_dim);
  router->centroids = centroids;
  router->cosine = cosine;
  router->top_k = options.top_k;
  router->temperature = options.temperature;
  return router;
}

bool starts_with_bos(std::span<const int32_t> prompt, std::span<const int64_t> bos_ids) {
  return !prompt.empty() && std::find(bos_ids.begin(), bos_ids.end(), int64_t(prompt[0])) != bos_ids.end();
}

std::shared_ptr<const PrefillRouter> router_for_prompt(const std::shared_ptr<const PrefillRouter>& router,
                                                       std::span<const int32_t> prompt,
                                                       std::span<const int64_t> bos_ids,
                                                       std::optional<int32_t> top_k) {
  const bool after_bos = prompt.size() > 1 && starts_with_bos(prompt, bos_ids);
  if (!router || (!after_bos && !top_k)) return router;
  auto out = std::make_shared<PrefillRouter>(*router);
  out->skip_tokens = after_bos ? 1 : 0;
  if (top_k) out->top_k = *top_k;
  return out;
}

json Mixture::to_json() const {
  json experts_j = json::array(), centroids_j = json::array();
  for (int64_t c = 0; c < k(); ++c) {
    const MixtureExpert& e = experts[size_t(c)];
    experts_j.push_back({{"name", e.name},
                         {"lines", e.lines},
                         {"samples", e.samples},
                         {"terms", e.terms},
                         {"train_loss_first", e.train_loss_first},
                         {"train_loss_last", e.train_loss_last}});
    centroids_j.push_back(std::vector<float>(centroids.begin() + c * dim(), centroids.begin() + (c + 1) * dim()));
  }
  const json embedding_json =
      embedding_kind == EmbeddingKind::kTfidf
          ? json{{"kind", "tfidf-token-ngrams"},
                 {"dim", dim()},
                 {"ngrams", TfidfModel::kNgrams},
                 {"num_docs", embedding.num_docs()},
                 {"idf", embedding.idf()}}
          : json{{"kind", "hidden-mean"}, {"dim", dim()}, {"layer", hidden_layer}, {"context_tokens", hidden_context}};
  return {{"format", kMixtureFormat},
          {"base_model", base_model},
          {"k", k()},
          {"embedding", embedding_json},
          {"distance", cosine ? "cosine" : "euclidean"},
          {"routing", {{"top_k", routing.top_k}, {"temperature", routing.temperature}}},
          {"silhouette", silhouette},
          {"experts", experts_j},
          {"centroids", centroids_j}};
}

Result<Mixture> Mixture::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) return bad(where, "not a JSON object");
  if (!j.contains("format") || j["format"] != kMixtureFormat)
    return bad(where, std::string("\"format\" must be \"") + kMixtureFormat + "\"");
  Mixture m;
  if (j.contains("base_model") && j["base_model"].is_string()) m.base_model = j["base_model"].get<std::string>();
  if (!j.contains("embedding") || !j["embedding"].is_object()) return bad(where, "needs an \"embedding\" object");
  const json& emb = j["embedding"];
  const std::string kind = emb.contains("kind") && emb["kind"].is_string() ? emb["kind"].get<std::string>() : "";
  if (kind == "tfidf-token-ngrams") {
    if (emb.contains("ngrams") && emb["ngrams"] != TfidfModel::kNgrams)
      return bad(where, "embedding.ngrams must be " + std::to_string(TfidfModel::kNgrams));
    auto idf = numbers(emb.contains("idf") ? emb["idf"] : json(), where, "embedding.idf");
    if (!idf.ok()) return idf.error();
    const int64_t num_docs =
        emb.contains("num_docs") && emb["num_docs"].is_number_integer() ? emb["num_docs"].get<int64_t>() : 0;
    auto model = TfidfModel::from_idf(std::move(idf.value()), num_docs);
    if (!model.ok()) return bad(where, model.error().message);
    m.embedding = std::move(model.value());
    if (emb.contains("dim") && emb["dim"] != m.dim())
      return bad(where, "embedding.dim " + emb["dim"].dump() + " but " + std::to_string(m.dim()) + " idf values");
  } else if (kind == "hidden-mean") {
    m.embedding_kind = EmbeddingKind::kHiddenMean;
    if (!emb.contains("layer") || !emb["layer"].is_number_integer() || emb["layer"].get<int64_t>() < 0 ||
        emb["layer"].get<int64_t>() > 1024)
      return bad(where, "embedding.layer must be an integer in [0, 1024]");
    if (!emb.contains("dim") || !emb["dim"].is_number_integer() || emb["dim"].get<int64_t>() < 1 ||
        emb["dim"].get<int64_t>() > (int64_t(1) << 20))
      return bad(where, "embedding.dim must be a positive integer");
    m.hidden_layer = int32_t(emb["layer"].get<int64_t>());
    m.hidden_dim = emb["dim"].get<int64_t>();
    if (emb.contains("context_tokens")) {
      if (!emb["context_tokens"].is_number_integer() || emb["context_tokens"].get<int64_t>() < 0 ||
          emb["context_tokens"].get<int64_t>() > 16)
        return bad(where, "embedding.context_tokens must be an integer in [0, 16]");
      m.hidden_context = int32_t(emb["context_tokens"].get<int64_t>());
    }
  } else {
    return bad(where, "embedding.kind must be \"tfidf-token-ngrams\" or \"hidden-mean\"");
  }

  const std::string distance = j.contains("distance") && j["distance"].is_string() ? j["distance"].get<std::string>() : "cosine";
  if (distance != "cosine" && distance != "euclidean") return bad(where, "distance must be \"cosine\" or \"euclidean\"");
  m.cosine = distance == "cosine";

  if (!j.contains("experts") || !j["experts"].is_array() || j["experts"].empty())
    return bad(where, "needs a non-empty \"experts\" list");
  for (size_t i = 0; i < j["experts"].size(); ++i) {
    const json& e = j["experts"][i];
    const std::string at = "experts[" + std::to_string(i) + "]";
    if (!e.is_object() || !e.contains("name") || !e["name"].is_string() || !plain_folder_name(e["name"].get<std::string>()))
      return bad(where, at + ".name must be a plain folder name");
    MixtureExpert x;
    x.name = e["name"].get<std::string>();
    for (const auto& other : m.experts)
      if (other.name == x.name) return bad(where, at + ".name \"" + x.name + "\" repeats");
    if (e.contains("lines") && e["lines"].is_number_integer()) x.lines = e["lines"].get<int64_t>();
    x.samples = strings_or_empty(e, "samples");
    x.terms = strings_or_empty(e, "terms");
    if (e.contains("train_loss_first") && e["train_loss_first"].is_number()) x.train_loss_first = e["train_loss_first"];
    if (e.contains("train_loss_last") && e["train_loss_last"].is_number()) x.train_loss_last = e["train_loss_last"];
    m.experts.push_back(std::move(x));
  }
  if (j.contains("k") && j["k"] != m.k()) return bad(where, "k " + j["k"].dump() + " but " + std::to_string(m.k()) + " experts");

  if (!j.contains("centroids") || !j["centroids"].is_array() || int64_t(j["centroids"].size()) != m.k())
    return bad(where, "centroids must be a list of " + std::to_string(m.k()) + " rows");
  for (size_t c = 0; c < j["centroids"].size(); ++c) {
    auto row = numbers(j["centroids"][c], where, "centroids[" + std::to_string(c) + "]");
    if (!row.ok()) return row.error();
    if (int64_t(row->size()) != m.dim())
      return bad(where, "centroids[" + std::to_string(c) + "] has " + std::to_string(row->size()) + " values, not " +
                            std::to_string(m.dim()));
    m.centroids.insert(m.centroids.end(), row->begin(), row->end());
  }

  if (j.contains("routing")) {
    const json& r = j["routing"];
    if (!r.is_object()) return bad(where, "routing must be an object");
    if (r.contains("top_k")) {
      if (!r["top_k"].is_number_integer() || r["top_k"].get<int64_t>() < 1 ||
          r["top_k"].get<int64_t>() > std::min<int64_t>(m.k(), kMaxAdaptersPerRow))
        return bad(where, "routing.top_k must be an integer in [1, " +
                              std::to_string(std::min<int64_t>(m.k(), kMaxAdaptersPerRow)) + "]");
      m.routing.top_k = int32_t(r["top_k"].get<int64_t>());
    }
    if (r.contains("temperature")) {
      if (!r["temperature"].is_number() || !(r["temperature"].get<double>() > 0) ||
          !std::isfinite(r["temperature"].get<double>()))
        return bad(where, "routing.temperature must be a positive number");
      m.routing.temperature = r["temperature"].get<double>();
    }
  }
  if (j.contains("silhouette") && j["silhouette"].is_number()) m.silhouette = j["silhouette"].get<double>();
  return m;
}

Result<Mixture> Mixture::load(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(dir) / "mixture.json").string();
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorCode::kNotFound, path + ": cannot open (not a mixture folder?)");
  std::stringstream ss;
  ss << f.rdbuf();
  const json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(ErrorCode::kBadFile, path + ": not valid JSON");
  auto m = from_json(j, path);
  if (!m.ok()) return m.error();
  for (const auto& e : m->experts)
    if (!fs::is_directory(fs::path(dir) / e.name))
      return make_error(ErrorCode::kNotFound, path + ": expert folder " + e.name + " is missing");
  return m;
}

}  // namespace myriad::moe
