// CLI adapter plumbing (see lora_cli.h).
#include "lora_cli.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

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

int32_t CliAdapters::max_rank() const {
  int32_t r = 0;
  for (const auto& w : weights_) r = std::max(r, w->max_rank());
  return r;
}

std::shared_ptr<const LoraWeights> CliAdapters::weights_of(const std::string& dir) const {
  const auto it = std::find(dirs_.begin(), dirs_.end(), dir);
  return it == dirs_.end() ? nullptr : weights_[size_t(it - dirs_.begin())];
}

Status CliAdapters::load_into(gpu::cpu::CpuExecutor& ex) const {
  for (size_t i = 0; i < weights_.size(); ++i) MYRIAD_TRY(ex.begin_load_adapter(int32_t(i), weights_[i]));
  for (size_t i = 0; i < weights_.size(); ++i) {
    while (!ex.adapter_ready(int32_t(i))) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return ok_status();
}

Result<AdapterMix> CliAdapters::mix(const std::vector<AdapterSpec>& specs) const {
  AdapterMix m;
  if (specs.size() > size_t(kMaxAdaptersPerRow)) {
    return make_error(ErrorCode::kInvalidArgument, std::to_string(specs.size()) + " adapters on one row; at most " +
                                                       std::to_string(kMaxAdaptersPerRow));
  }
  for (const auto& s : specs) {
    auto it = std::find(dirs_.begin(), dirs_.end(), s.dir);
    if (it == dirs_.end()) return make_error(ErrorCode::kInternal, "adapter " + s.dir + " was not read");
    m.refs[m.count++] = {int32_t(it - dirs_.begin()), s.weight};
  }
  return m;
}

Result<CliAdapterSet> read_adapter_flags(const std::vector<std::string>& flags, const ModelConfig& base,
                                         gpu::cpu::CpuExecutorOptions& opt) {
  CliAdapterSet set;
  auto specs = parse_adapter_specs(flags);
  if (!specs.ok()) return specs.error();
  auto read = CliAdapters::read(*specs, base);
  if (!read.ok()) return read.error();
  set.adapters = std::move(read.value());
  auto mix = set.adapters.mix(*specs);
  if (!mix.ok()) return mix.error();
  set.mix = *mix;
  opt.num_adapter_slots = set.adapters.num_slots();
  opt.max_adapter_rank = set.adapters.max_rank();
  return set;
}

Result<std::shared_ptr<const LoraWeights>> read_adapter_mixture(const std::vector<std::string>& flags,
                                                                const ModelConfig& base) {
  auto specs = parse_adapter_specs(flags);
  if (!specs.ok()) return specs.error();
  if (specs->empty()) return std::shared_ptr<const LoraWeights>();
  auto read = CliAdapters::read(*specs, base);
  if (!read.ok()) return read.error();
  std::vector<LoraMixPart> parts;
  std::string name;
  for (const AdapterSpec& sp : *specs) {
    parts.push_back({read->weights_of(sp.dir), sp.weight});
    name += (name.empty() ? "" : "+") + sp.dir + ":" + std::to_string(sp.weight);
  }
  if (parts.size() == 1 && parts[0].weight == 1.0f) return parts[0].weights;
  return std::shared_ptr<const LoraWeights>(std::make_shared<LoraWeights>(mix_lora(parts, name)));
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
                     std::optional<DType> kv_dtype) {
  auto ck = Checkpoint::load(model_dir);
  if (!ck.ok()) return fail(ck.error());
  const ModelConfig& c = (*ck)->config();
  auto rows = parse_batch(batch_file, c.vocab_size);
  if (!rows.ok()) return fail(rows.error());
  std::vector<AdapterSpec> all;
  for (const auto& r : *rows) all.insert(all.end(), r.adapters.begin(), r.adapters.end());
  auto adapters = CliAdapters::read(all, c);
  if (!adapters.ok()) return fail(adapters.error());

  gpu::cpu::CpuExecutorOptions o;
  o.kv_block_size = 16;
  o.threads = threads;
  o.kv_dtype = kv_dtype;
  int32_t blocks = 0;
  for (const auto& r : *rows) blocks += (int32_t(r.ids.size()) + 15) / 16;
  o.kv_num_blocks = blocks;
  o.num_adapter_slots = adapters->num_slots();
  o.max_adapter_rank = adapters->max_rank();
  auto ex = gpu::cpu::CpuExecutor::create(*ck, o);
  if (!ex.ok()) return fail(ex.error());
  if (Status st = adapters->load_into(**ex); !st.ok()) return fail(st.error());

  // Every row in ONE step: each its whole prompt, logits at its last position.
  StepPlan plan;
  int32_t next_block = 0;
  for (size_t i = 0; i < rows->size(); ++i) {
    const BatchRow& r = (*rows)[i];
    SeqRow row;
    row.seq = i;
    row.token_offset = uint32_t(plan.tokens.size());
    row.num_tokens = uint32_t(r.ids.size());
    plan.tokens.insert(plan.tokens.end(), r.ids.begin(), r.ids.end());
    row.block_offset = uint32_t(plan.block_ids.size());
    row.num_blocks = uint32_t((r.ids.size() + 15) / 16);
    for (uint32_t b = 0; b < row.num_blocks; ++b) plan.block_ids.push_back(next_block++);
    auto mix = adapters->mix(r.adapters);
    if (!mix.ok()) return fail(mix.error());
    row.adapters = *mix;
    row.logits = LogitsRequest::kLast;
    plan.rows.push_back(row);
  }
  StepResult res;
  if (Status st = (*ex)->step(plan, res); !st.ok()) return fail(st.error());
  const size_t V = size_t(c.vocab_size);
  std::string out = "{\"rows\": [";
  char buf[32];
  for (size_t i = 0; i < rows->size(); ++i) {
    out += i ? ", {\"logits\": [" : "{\"logits\": [";
    for (size_t v = 0; v < V; ++v) {
      std::snprintf(buf, sizeof buf, v ? ", %.9g" : "%.9g", double(res.logits[i * V + v]));
      out += buf;
    }
    out += "]}";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace myriad::cli
