// CLI adapter plumbing (see lora_cli.h).
#include "lora_cli.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine_run.h"
#include "moe_cli.h"
#include "runtime/peft_adapter.h"

namespace myriad::cli {

Result<AdapterSpec> parse_adapter_spec(const std::string& text) {
  AdapterSpec s;
  s.dir = text;
  if (const auto colon = text.rfind(':'); colon != std::string::npos && colon + 1 < text.size()) {
    const std::string w = text.substr(colon + 1);
    char* end = nullptr;
    const float v = std::strtof(w.c_str(), &end);
    if (end && *end == '\0') {
      if (!std::isfinite(v)) return make_error(ErrorCode::kInvalidArgument, "--adapter " + text + ": weight is not finite");
      s.dir = text.substr(0, colon);
      s.weight = v;
    }
  }
  if (s.dir.empty()) return make_error(ErrorCode::kInvalidArgument, "--adapter '" + text + "': no folder");
  return s;
}

Result<std::vector<AdapterSpec>> parse_adapter_specs(const std::vector<std::string>& texts) {
  std::vector<AdapterSpec> out;
  for (const auto& t : texts) {
    auto s = parse_adapter_spec(t);
    if (!s.ok()) return s.error();
    out.push_back(*s);
  }
  if (out.size() > size_t(kMaxAdaptersPerRow)) {
    return make_error(ErrorCode::kInvalidArgument, std::to_string(out.size()) + " adapters on one row; at most " +
                                                       std::to_string(kMaxAdaptersPerRow));
  }
  return out;
}

Result<CliAdapters> CliAdapters::read(const std::vector<AdapterSpec>& specs, const ModelConfig& base) {
  CliAdapters a;
  for (const auto& s : specs) {
    if (std::find(a.dirs_.begin(), a.dirs_.end(), s.dir) != a.dirs_.end()) continue;
    PeftLoadOptions o;
    o.max_rank = 4096;  // the executor is sized to what is read
    auto w = load_peft_adapter(s.dir, base, o);
    if (!w.ok()) return w.error();
    a.dirs_.push_back(s.dir);
    a.weights_.push_back(*w);
  }
  return a;
}

std::shared_ptr<const LoraWeights> CliAdapters::weights_of(const std::string& dir) const {
  const auto it = std::find(dirs_.begin(), dirs_.end(), dir);
  return it == dirs_.end() ? nullptr : weights_[size_t(it - dirs_.begin())];
}

std::shared_ptr<const LoraWeights> CliAdapters::mixture(const std::vector<AdapterSpec>& specs) const {
  if (specs.size() == 1 && specs[0].weight == 1.0f) return weights_of(specs[0].dir);
  std::vector<LoraMixPart> parts;
  std::string name;
  for (const AdapterSpec& sp : specs) {
    parts.push_back({weights_of(sp.dir), sp.weight});
    if (!name.empty()) name += "+";
    name += sp.dir + ":" + std::to_string(sp.weight);
  }
  return std::make_shared<const LoraWeights>(mix_lora(parts, std::move(name)));
}

Result<std::shared_ptr<const LoraWeights>> read_adapter_mixture(const std::vector<std::string>& flags,
                                                                const ModelConfig& base) {
  auto specs = parse_adapter_specs(flags);
  if (!specs.ok()) return specs.error();
  if (specs->empty()) return std::shared_ptr<const LoraWeights>();
  auto read = CliAdapters::read(*specs, base);
  if (!read.ok()) return read.error();
  return read->mixture(*specs);
}

namespace {

int fail(const Error& e) {
  std::fprintf(stderr, "myriad logits: %s\n", e.to_string().c_str());
  return e.code == ErrorCode::kInvalidArgument ? 2 : 1;
}

struct BatchRow {
  std::vector<int32_t> ids;
  std::vector<AdapterSpec> adapters;
};

Result<std::vector<BatchRow>> parse_batch(const std::string& path, int64_t vocab) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(ErrorCode::kNotFound, path + ": cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) return make_error(ErrorCode::kInvalidArgument, path + ": not valid JSON");
  if (!j.is_object() || !j.contains("rows") || !j["rows"].is_array() || j["rows"].empty()) {
    return make_error(ErrorCode::kInvalidArgument, path + ": expected {\"rows\": [{\"ids\": [...], \"adapters\": [...]}, ...]}");
  }
  std::vector<BatchRow> rows;
  for (size_t i = 0; i < j["rows"].size(); ++i) {
    const auto& r = j["rows"][i];
    const std::string where = path + ": rows[" + std::to_string(i) + "]";
    if (!r.is_object() || !r.contains("ids") || !r["ids"].is_array() || r["ids"].empty()) {
      return make_error(ErrorCode::kInvalidArgument, where + ": needs a non-empty \"ids\" list");
    }
    BatchRow row;
    for (const auto& id : r["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= vocab) {
        return make_error(ErrorCode::kInvalidArgument, where + ": token id " + id.dump() + " outside [0, " +
                                                           std::to_string(vocab) + ")");
      }
      row.ids.push_back(int32_t(id.get<int64_t>()));
    }
    if (r.contains("adapters")) {
      if (!r["adapters"].is_array()) return make_error(ErrorCode::kInvalidArgument, where + ": \"adapters\" must be a list");
      for (const auto& a : r["adapters"]) {
        if (!a.is_object() || !a.contains("path") || !a["path"].is_string()) {
          return make_error(ErrorCode::kInvalidArgument, where + ": each adapter needs a \"path\"");
        }
        AdapterSpec s;
        s.dir = a["path"].get<std::string>();
        if (a.contains("weight")) {
          if (!a["weight"].is_number() || !std::isfinite(a["weight"].get<double>())) {
            return make_error(ErrorCode::kInvalidArgument, where + ": adapter weight must be a finite number");
          }
          s.weight = a["weight"].get<float>();
        }
        row.adapters.push_back(s);
      }
      if (row.adapters.size() > size_t(kMaxAdaptersPerRow)) {
        return make_error(ErrorCode::kInvalidArgument, where + ": " + std::to_string(row.adapters.size()) +
                                                           " adapters; at most " + std::to_string(kMaxAdaptersPerRow));
      }
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

int run_logits_batch(const std::string& model_dir, const std::string& batch_file, int threads,
                     std::optional<DType> kv_dtype, const MoeFlags& moe) {
  auto ck = Checkpoint::load(model_dir);
  if (!ck.ok()) return fail(ck.error());
  const ModelConfig& c = (*ck)->config();
  auto rows = parse_batch(batch_file, c.vocab_size);
  if (!rows.ok()) return fail(rows.error());
  std::vector<AdapterSpec> all;
  for (const auto& r : *rows) all.insert(all.end(), r.adapters.begin(), r.adapters.end());
  auto adapters = CliAdapters::read(all, c);
  if (!adapters.ok()) return fail(adapters.error());
  std::optional<CliMixture> mixture;
  if (moe.given()) {
    auto m = CliMixture::read(moe, *ck, threads);
    if (!m.ok()) return fail(m.error());
    mixture = std::move(m.value());
  }
  std::vector<std::optional<RoutedExperts>> routed(rows->size());

  // Every row a scoring request; rows naming the same adapters share one
  // adapter (a mixture is merged, mix_lora). The engine batches them: rows
  // whose adapters are loaded run together.
  std::map<std::string, std::shared_ptr<const LoraWeights>> by_specs;
  std::vector<CliRequest> requests(rows->size());
  for (size_t i = 0; i < rows->size(); ++i) {
    const BatchRow& r = (*rows)[i];
    std::string key;
    for (const AdapterSpec& sp : r.adapters) key += sp.dir + "\n" + std::to_string(sp.weight) + "\n";
    auto [it, fresh] = by_specs.try_emplace(key);
    if (fresh && !r.adapters.empty()) it->second = adapters->mixture(r.adapters);
    requests[i].adapter = it->second;
    if (mixture && r.adapters.empty()) {
      auto chosen = mixture->route_into(r.ids, r.ids, requests[i]);
      if (!chosen.ok()) return fail(chosen.error());
      routed[i] = std::move(chosen.value());
    }
    requests[i].request.prompt = r.ids;
    requests[i].request.max_tokens = 0;
    requests[i].request.prompt_logits = LogitsRequest::kLast;
  }
  LogitsCollector sink;
  const Status st = run_on_engine(*ck, std::move(requests), {threads, kv_dtype, nullptr}, sink);
  if (!st.ok()) return fail(st.error());
  if (sink.error) return fail(*sink.error);
  std::string out = "{\"rows\": [";
  for (size_t i = 0; i < rows->size(); ++i) {
    out += i ? ", {\"logits\": " : "{\"logits\": ";
    out += logits_rows_json(sink.logits[RequestId(i + 1)], size_t(c.vocab_size));
    if (routed[i] && routed[i]->in_prefill) mixture->resolve(*routed[i], sink.expert_weights[RequestId(i + 1)]);
    if (routed[i]) out += ", \"experts\": " + routed[i]->json().dump();
    out += "}";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace myriad::cli
