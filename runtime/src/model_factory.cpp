// make_model: deterministic random-weight Hugging Face folders. Weights are
// generated in blocks by a thread pool, each block written at its offset
// with pwrite, so memory stays at a few MiB per thread even for 16 GB.
#include "runtime/model_factory.h"

#include "runtime/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "runtime/checkpoint.h"
#include "runtime/safetensors.h"
#include "json_depth.h"

namespace myriad {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tensor_key(uint64_t seed, std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (char c : name) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return mix64(seed * kGolden ^ h);
}

// One pair of N(0,1) values per counter: a 64-bit draw gives two 24-bit
// uniforms for Box-Muller (u1 in (0,1], so log(u1) is finite).
inline void normal_pair(uint64_t key, uint64_t pair, float* z0, float* z1) {
  const uint64_t x = mix64(key + (pair + 1) * kGolden);
  const float u1 = float((x >> 40) + 1) * (1.0f / 16777216.0f);
  const float u2 = float(x & 0xffffffu) * (1.0f / 16777216.0f);
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float t = 6.28318530717958647692f * u2;
  *z0 = r * std::cos(t);
  *z1 = r * std::sin(t);
}

// Fills out[0, n) with elements [first, first + n) of the tensor's stream.
void fill_normal(uint64_t key, uint64_t first, size_t n, float std, float* out) {
  size_t i = 0;
  uint64_t idx = first;
  float z0, z1;
  if (idx & 1) {  // odd start: second half of a pair
    normal_pair(key, idx / 2, &z0, &z1);
    out[i++] = z1 * std;
    ++idx;
  }
  for (; i + 1 < n; i += 2, idx += 2) {
    normal_pair(key, idx / 2, &z0, &z1);
    out[i] = z0 * std;
    out[i + 1] = z1 * std;
  }
  if (i < n) {
    normal_pair(key, idx / 2, &z0, &z1);
    out[i] = z0 * std;
  }
}

std::string read_text(const std::string& path, Status* st) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *st = make_error(ErrorCode::kNotFound, path + ": cannot open");
    return {};
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *st = ok_status();
  return ss.str();
}

// GPT-2's byte -> printable code point table.
std::vector<uint32_t> bytes_to_unicode() {
  std::vector<uint32_t> map(256, 0);
  std::vector<bool> direct(256, false);
  for (int b = '!'; b <= '~'; ++b) direct[size_t(b)] = true;
  for (int b = 0xA1; b <= 0xAC; ++b) direct[size_t(b)] = true;
  for (int b = 0xAE; b <= 0xFF; ++b) direct[size_t(b)] = true;
  uint32_t n = 0;
  for (int b = 0; b < 256; ++b) map[size_t(b)] = direct[size_t(b)] ? uint32_t(b) : 256 + n++;
  return map;
}

std::string utf8(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

const char* const kSpecials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"};

const char* const kChatMlTemplate =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Size of a tokenizer.json's id space and the ids of some token strings.
struct TokenizerInfo {
  int64_t vocab = 0;
  std::map<std::string, int64_t> ids;  // added tokens + model vocab (string -> id)
};

Result<TokenizerInfo> tokenizer_info(const std::string& path) {
  Status st;
  const std::string text = read_text(path, &st);
  if (!st.ok()) return st.error();
  if (json_too_deep(text)) return make_error(ErrorCode::kBadFile, path + ": JSON nested too deeply");
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::kBadFile, path + ": not a JSON object");
  TokenizerInfo info;
  auto note = [&](const std::string& s, const json& id) -> Status {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t(1) << 24))
      return make_error(ErrorCode::kBadFile, path + ": token '" + s.substr(0, 100) + "' has a bad id");
    info.vocab = std::max(info.vocab, id.get<int64_t>() + 1);
    info.ids.emplace(s, id.get<int64_t>());
    return ok_status();
  };
  auto model = j.find("model");
  if (model == j.end() || !model->is_object()) return make_error(ErrorCode::kBadFile, path + ": field 'model' is missing");
  auto vocab = model->find("vocab");
  if (vocab != model->end() && vocab->is_object()) {
    for (auto it = vocab->begin(); it != vocab->end(); ++it) MYRIAD_TRY(note(it.key(), it.value()));
  } else if (vocab != model->end() && vocab->is_array()) {  // Unigram: [[piece, score], ...]
    int64_t id = 0;
    for (const json& e : *vocab) {
      if (e.is_array() && !e.empty() && e[0].is_string()) info.ids.emplace(e[0].get<std::string>(), id);
      ++id;
    }
    info.vocab = std::max(info.vocab, id);
  } else {
    return make_error(ErrorCode::kBadFile, path + ": field 'model.vocab' is missing");
  }
  if (auto added = j.find("added_tokens"); added != j.end() && added->is_array()) {
    for (const json& t : *added) {
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id"))
        return make_error(ErrorCode::kBadFile, path + ": malformed added_tokens entry");
      MYRIAD_TRY(note(t["content"].get<std::string>(), t["id"]));
    }
  }
  if (info.vocab == 0) return make_error(ErrorCode::kBadFile, path + ": empty vocabulary");
  return info;
}

// bos_token / eos_token of a tokenizer_config.json: a string or {"content": s}.
std::optional<std::string> special_token(const json& cfg, const char* field) {
  auto it = cfg.find(field);
  if (it == cfg.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return std::nullopt;
}

struct Layout {
  std::vector<TensorSpec> specs;
  std::vector<bool> is_norm;
};

Layout layout_of(const ModelConfig& c, DType dtype) {
  Layout l;
  for (const ExpectedTensor& e : expected_tensors(c)) {
    l.specs.push_back({e.name, dtype, e.shape});
    const bool norm = e.name.find("norm.weight") != std::string::npos;  // *_layernorm.weight, model.norm.weight
    l.is_norm.push_back(norm);
  }
  return l;
}

// Writes one tensor's bytes at `offset` with `threads` workers over blocks.
Status write_tensor(int fd, uint64_t offset, const TensorSpec& t, bool norm, const MakeModelOptions& o, int threads,
                    const std::string& path) {
  constexpr size_t kBlock = size_t(1) << 20;  // elements per block
  const uint64_t numel = tensor_spec_nbytes(t) / dtype_size(t.dtype);
  const uint64_t blocks = (numel + kBlock - 1) / kBlock;
  const uint64_t key = tensor_key(o.seed, t.name);
  std::atomic<uint64_t> next{0};
  std::mutex mu;
  Status result;
  auto worker = [&] {
    std::vector<float> f(kBlock);
    std::vector<uint16_t> h(t.dtype == DType::kF32 ? 0 : kBlock);
    for (;;) {
      const uint64_t b = next.fetch_add(1);
      if (b >= blocks) return;
      const uint64_t first = b * kBlock;
      const size_t n = size_t(std::min<uint64_t>(kBlock, numel - first));
      if (norm) {
        std::fill(f.begin(), f.begin() + ptrdiff_t(n), 1.0f);
      } else {
        fill_normal(key, first, n, o.init_std, f.data());
      }
      const void* src = f.data();
      if (t.dtype == DType::kBF16) {
        for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(f[i]);
        src = h.data();
      } else if (t.dtype == DType::kF16) {
        for (size_t i = 0; i < n; ++i) h[i] = f32_to_f16(f[i]);
        src = h.data();
      }
      const size_t es = dtype_size(t.dtype);
      Status s = write_at(fd, src, n * es, offset + first * es, path);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (result.ok()) result = s;
        next.store(blocks);  // stop the others
        return;
      }
    }
  };
  const int n_threads = int(std::min<uint64_t>(uint64_t(threads), std::max<uint64_t>(blocks, 1)));
  std::vector<std::thread> pool;
  for (int i = 1; i < n_threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  return result;
}

}  // namespace

float random_weight(uint64_t seed, std::string_view tensor_name, uint64_t index, float std) {
  float z0, z1;
  normal_pair(tensor_key(seed, tensor_name), index / 2, &z0, &z1);
  return ((index & 1) ? z1 : z0) * std;
}

std::string builtin_tokenizer_json() {
  const auto b2u = bytes_to_unicode();
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[utf8(b2u[size_t(b)])] = b;
  json added = json::array();
  for (int i = 0; i < 4; ++i)
    added.push_back({{"id", 256 + i},
                     {"content", kSpecials[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
  json j = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer", byte_level},
            {"post_processor", nullptr},
            {"decoder", byte_level},
            {"model",
             {{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"ignore_merges", false},
              {"vocab", vocab},
              {"merges", json::array()}}}};
  return j.dump(2) + "\n";
}

std::string builtin_tokenizer_config_json() {
  json dec = json::object();
  for (int i = 0; i < 4; ++i)
    dec[std::to_string(256 + i)] = {{"content", kSpecials[i]}, {"lstrip", false}, {"normalized", false},
                                    {"rstrip", false},         {"single_word", false}, {"special", true}};
  json j = {{"added_tokens_decoder", dec},
            {"add_bos_token", false},
            {"add_eos_token", false},
            {"bos_token", "<|begin_of_text|>"},
            {"eos_token", "<|im_end|>"},
            {"pad_token", "<|end_of_text|>"},
            {"chat_template", kChatMlTemplate},
            {"clean_up_tokenization_spaces", false},
            {"model_max_length", 131072},
            {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return j.dump(2) + "\n";
}

Result<ModelConfig> model_shape(std::string_view name) {
  ModelConfig c;
  c.arch = ModelArch::kLlama;
  c.model_type = "llama";
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.max_position_embeddings = 2048;
  auto set = [&](int64_t hidden, int64_t layers, int64_t heads, int64_t kv, int64_t inter, int64_t vocab) {
    c.hidden_size = hidden;
    c.num_layers = layers;
    c.num_heads = heads;
    c.num_kv_heads = kv;
    c.head_dim = hidden / heads;
    c.intermediate_size = inter;
    c.vocab_size = vocab;
  };
  if (name == "tiny") {
    set(64, 2, 4, 2, 176, kBuiltinTokenizerVocab);
    c.max_position_embeddings = 512;
  } else if (name == "llama-110m") {
    set(768, 12, 12, 12, 2048, 32000);
    c.max_position_embeddings = 1024;
  } else if (name == "tinyllama-1.1b") {
    set(2048, 22, 32, 4, 5632, 32000);
  } else if (name == "llama-7b") {  // Llama-2-7B: multi-head attention, as S-LoRA measured
    set(4096, 32, 32, 32, 11008, 32000);
    c.max_position_embeddings = 4096;
  } else if (name == "llama3-8b") {
    set(4096, 32, 32, 8, 14336, 128256);
    c.rope_theta = 500000.0f;
    c.max_position_embeddings = 131072;
    c.rope_scaling = RopeScaling{"llama3", 8.0f, 1.0f, 4.0f, 8192};
  } else {
    return make_error(ErrorCode::kInvalidArgument,
                      "unknown model shape '" + std::string(name) + "' (tiny, llama-110m, tinyllama-1.1b, llama-7b, llama3-8b)");
  }
  return c;
}

Status make_model(const MakeModelOptions& o) {
  if (o.out_dir.empty()) return make_error(ErrorCode::kInvalidArgument, "make_model: no output folder given");
  if (!(o.init_std > 0.0f) || !std::isfinite(o.init_std))
    return make_error(ErrorCode::kInvalidArgument, "make_model: init_std must be positive");
  ModelConfig c;
  if (o.config) {
    c = *o.config;
  } else {
    auto s = model_shape(o.shape);
    if (!s.ok()) return s.error();
    c = *s;
  }
  c.torch_dtype = o.dtype == DType::kF32 ? "float32" : o.dtype == DType::kBF16 ? "bfloat16" : "float16";

  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return make_error(ErrorCode::kIo, o.out_dir + ": cannot create folder: " + ec.message());

  // Tokenizer files and the ids they imply.
  std::string tok_json, tok_cfg;
  if (o.tokenizer_dir.empty()) {
    tok_json = builtin_tokenizer_json();
    tok_cfg = builtin_tokenizer_config_json();
    if (!o.config) {
      c.bos_token_ids = {256};
      c.eos_token_ids = {257, 259};
    }
  } else {
    Status st;
    tok_json = read_text(o.tokenizer_dir + "/tokenizer.json", &st);
    if (!st.ok()) return st;
    tok_cfg = read_text(o.tokenizer_dir + "/tokenizer_config.json", &st);
    if (!st.ok()) return st;
    auto info = tokenizer_info(o.tokenizer_dir + "/tokenizer.json");
    if (!info.ok()) return info.error();
    c.vocab_size = info->vocab;
    json cfg = json_too_deep(tok_cfg) ? json(json::value_t::discarded) : json::parse(tok_cfg, nullptr, false);
    if (cfg.is_discarded() || !cfg.is_object())
      return make_error(ErrorCode::kBadFile, o.tokenizer_dir + "/tokenizer_config.json: not a JSON object");
    c.bos_token_ids.clear();
    c.eos_token_ids.clear();
    if (auto b = special_token(cfg, "bos_token"); b && info->ids.count(*b)) c.bos_token_ids = {info->ids[*b]};
    if (auto e = special_token(cfg, "eos_token"); e && info->ids.count(*e)) c.eos_token_ids = {info->ids[*e]};
  }
  // The config we write must be one we accept.
  const std::string config_text = model_config_to_json(c);
  auto check = parse_model_config(config_text, o.out_dir + "/config.json");
  if (!check.ok()) return check.error();

  // Remove weight files of an earlier model in this folder: a stale index
  // would otherwise take precedence over a new model.safetensors.
  for (const auto& entry : fs::directory_iterator(o.out_dir, ec)) {
    const std::string n = entry.path().filename().string();
    if (n == "model.safetensors" || n == "model.safetensors.index.json" ||
        (n.rfind("model-", 0) == 0 && n.size() > 12 && n.substr(n.size() - 12) == ".safetensors"))
      fs::remove(entry.path(), ec);
  }

  const int threads = o.threads > 0 ? o.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  const Layout layout = layout_of(c, o.dtype);
  // Greedy sharding in file order.
  std::vector<std::vector<size_t>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (size_t i = 0; i < layout.specs.size(); ++i) {
    const uint64_t n = tensor_spec_nbytes(layout.specs[i]);
    if (in_shard > 0 && in_shard + n > o.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += n;
    total += n;
  }
  const std::unordered_map<std::string, std::string> meta = {{"format", "pt"}};
  json weight_map = json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    std::string name = "model.safetensors";
    if (shards.size() > 1) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, shards.size());
      name = buf;
    }
    std::vector<TensorSpec> specs;
    for (size_t i : shards[s]) {
      specs.push_back(layout.specs[i]);
      weight_map[layout.specs[i].name] = name;
    }
    const std::string path = o.out_dir + "/" + name;
    MYRIAD_TRY(write_safetensors_streamed(path, specs, meta, [&](size_t k, int fd, uint64_t offset) {
      const size_t i = shards[s][k];
      return write_tensor(fd, offset, layout.specs[i], layout.is_norm[i], o, threads, path);
    }));
  }
  if (shards.size() > 1) {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    MYRIAD_TRY(write_file_atomically(o.out_dir + "/model.safetensors.index.json", index.dump(2) + "\n"));
  }
  json gen = json::object();
  gen["_from_model_config"] = true;
  if (!c.bos_token_ids.empty()) gen["bos_token_id"] = c.bos_token_ids[0];
  if (c.eos_token_ids.size() == 1) gen["eos_token_id"] = c.eos_token_ids[0];
  if (c.eos_token_ids.size() > 1) gen["eos_token_id"] = c.eos_token_ids;
  MYRIAD_TRY(write_file_atomically(o.out_dir + "/tokenizer.json", tok_json));
  MYRIAD_TRY(write_file_atomically(o.out_dir + "/tokenizer_config.json", tok_cfg));
  MYRIAD_TRY(write_file_atomically(o.out_dir + "/generation_config.json", gen.dump(2) + "\n"));
  // config.json last: a folder with a config.json is complete.
  return write_file_atomically(o.out_dir + "/config.json", config_text);
}

std::shared_ptr<LoraWeights> random_lora(const ModelConfig& base, int32_t rank, float alpha, uint64_t seed,
                                         std::string name, float std) {
  auto w = std::make_shared<LoraWeights>();
  w->name = std::move(name);
  w->num_layers = int32_t(base.num_layers);
  w->modules.resize(size_t(base.num_layers) * kNumLinearModules);
  for (int64_t l = 0; l < base.num_layers; ++l) {
    for (int m = 0; m < kNumLinearModules; ++m) {
      const auto [out, in] = linear_module_shape(base, LinearModule(m));
      LoraModuleWeights& mw = w->at(int(l), LinearModule(m));
      const std::string key = std::to_string(l) + "." + linear_module_name(LinearModule(m));
      mw.rank = rank;
      mw.scale = alpha / float(rank);
      mw.a.resize(size_t(rank) * size_t(in));
      mw.b.resize(size_t(out) * size_t(rank));
      // random_weight's values, a pair per draw and the name hashed once a tensor.
      fill_normal(tensor_key(seed, key + ".A"), 0, mw.a.size(), std, mw.a.data());
      fill_normal(tensor_key(seed, key + ".B"), 0, mw.b.size(), std, mw.b.data());
    }
  }
  return w;
}

}  // namespace myriad
