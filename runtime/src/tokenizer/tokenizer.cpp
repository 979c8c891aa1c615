// Tokenizer: wires tokenizer.json's stages together (see tokenizer.h).
#include "runtime/tokenizer.h"

#include <filesystem>

#include "added_vocab.h"
#include "bpe_model.h"
#include "pipeline.h"
#include "tokenizer_file.h"
#include "text_util.h"

namespace myriad {

using nlohmann::json;

struct Tokenizer::Impl {
  TokenizerConfig config;
  std::vector<tok::AddedToken> added;
  std::unique_ptr<tok::AddedTokenMatcher> raw_matcher;         // normalized=false tokens
  std::unique_ptr<tok::AddedTokenMatcher> normalized_matcher;  // normalized=true tokens
  std::unique_ptr<tok::Normalizer> normalizer;
  tok::PreTokenizerChain pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;
  tok::PostProcessor post_processor;
  std::unique_ptr<tok::Decoder> decoder;

  // Over model vocabulary and added tokens (added tokens win).
  std::vector<std::string> id_to_token;
  std::vector<uint8_t> has_token;
  std::vector<uint8_t> special;
  tok::StringMap<int32_t> added_by_content;

  void encode_words(std::string_view text, bool at_text_start, std::vector<int32_t>& ids) const {
    std::vector<tok::Piece> pieces{tok::Piece{std::string(text), at_text_start}};
    for (const auto& step : pre_tokenizer.steps) step->apply(pieces);
    for (const auto& p : pieces) model->tokenize(p.text, ids);
  }

  void encode_segment(std::string_view raw, bool at_text_start, std::vector<int32_t>& ids) const {
    const std::string norm = normalizer ? normalizer->apply(std::string(raw)) : std::string(raw);
    if (normalized_matcher->empty()) {
      encode_words(norm, at_text_start, ids);
      return;
    }
    std::vector<tok::Segment> segs;
    normalized_matcher->split(norm, segs);
    for (const auto& s : segs) {
      if (s.id >= 0) ids.push_back(s.id);
      else encode_words(std::string_view(norm).substr(s.begin, s.end - s.begin), at_text_start && s.begin == 0, ids);
    }
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

Result<std::shared_ptr<const Tokenizer>> Tokenizer::load(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return make_error(ErrorCode::kNotFound, "tokenizer folder " + dir + " does not exist");
  const std::string tj_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string cfg_path = (fs::path(dir) / "tokenizer_config.json").string();
  if (!fs::exists(tj_path, ec)) return make_error(ErrorCode::kNotFound, tj_path + " does not exist");
  auto tj = tok::load_tokenizer_file(tj_path);
  if (!tj.ok()) return tj.error();
  TokenizerConfig config;
  if (fs::exists(cfg_path, ec)) {  // optional: defaults without it
    auto c = load_tokenizer_config(cfg_path);
    if (!c.ok()) return c.error();
    config = std::move(c.value());
  }
  return build(tj.value(), std::move(config), tj_path);
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::from_json(const json& j, TokenizerConfig config,
                                                              const std::string& source) {
  return build(tok::tokenizer_file_from_json(j), std::move(config), source);
}

Result<std::shared_ptr<const Tokenizer>> Tokenizer::build(const tok::TokenizerFile& file, TokenizerConfig config,
                                                          const std::string& source) {
  const json& j = file.json;
  if (!j.is_object()) return make_error(ErrorCode::kBadFile, source + ": top level must be a JSON object");
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  auto field = [&](const char* key) -> json {
    const json* f = tok::json_field(j, key);
    return f ? *f : json();
  };

  auto norm = tok::make_normalizer(field("normalizer"), source);
  if (!norm.ok()) return norm.error();
  impl->normalizer = std::move(norm.value());
  auto pre = tok::make_pre_tokenizer(field("pre_tokenizer"), source);
  if (!pre.ok()) return pre.error();
  impl->pre_tokenizer = std::move(pre.value());
  const json* model_json = tok::json_field(j, "model");
  if (!model_json) return make_error(ErrorCode::kBadFile, source + ": no 'model'");
  auto model = tok::BpeModel::load(*model_json, file.vocab ? &*file.vocab : nullptr,
                                   file.merges ? &*file.merges : nullptr, impl->pre_tokenizer.byte_level, source);
  if (!model.ok()) return model.error();
  impl->model = std::move(model.value());
  auto post = tok::make_post_processor(field("post_processor"), source);
  if (!post.ok()) return post.error();
  impl->post_processor = std::move(post.value());
  auto dec = tok::make_decoder(field("decoder"), source);
  if (!dec.ok()) return dec.error();
  impl->decoder = std::move(dec.value());

  const json added = field("added_tokens");
  if (!added.is_null() && !added.is_array()) return make_error(ErrorCode::kBadFile, source + ": 'added_tokens' must be a list");
  if (added.is_array()) {
    for (const auto& a : added) {
      const json* id = tok::json_field(a, "id");
      const auto content = tok::json_string(a, "content");
      if (!id || !tok::is_index(*id) || id->get<uint64_t>() > uint64_t(INT32_MAX) || !content)
        return make_error(ErrorCode::kBadFile, source + ": added token " + a.dump() + " needs an integer 'id' and a 'content'");
      tok::AddedToken t;
      t.id = id->get<int32_t>();
      t.content = *content;
      t.special = tok::json_bool(a, "special", false);
      t.lstrip = tok::json_bool(a, "lstrip", false);
      t.rstrip = tok::json_bool(a, "rstrip", false);
      t.single_word = tok::json_bool(a, "single_word", false);
      t.normalized = tok::json_bool(a, "normalized", !t.special);
      impl->added.push_back(std::move(t));
    }
  }

  // Id tables over model vocabulary + added tokens.
  const auto& vocab = impl->model->vocab_by_id();
  size_t size = vocab.size();
  for (const auto& t : impl->added) size = std::max(size, size_t(t.id) + 1);
  impl->id_to_token.assign(size, std::string());
  impl->has_token.assign(size, 0);
  impl->special.assign(size, 0);
  for (size_t i = 0; i < vocab.size(); ++i) {
    impl->id_to_token[i] = vocab[i];
    impl->has_token[i] = impl->model->has_id(i);
  }
  std::vector<const tok::AddedToken*> raw, normalized;
  for (const auto& t : impl->added) {
    impl->id_to_token[size_t(t.id)] = t.content;
    impl->has_token[size_t(t.id)] = 1;
    impl->special[size_t(t.id)] = t.special;
    impl->added_by_content[t.content] = t.id;
    (t.normalized ? normalized : raw).push_back(&t);
  }
  impl->raw_matcher = std::make_unique<tok::AddedTokenMatcher>(raw);
  impl->normalized_matcher = std::make_unique<tok::AddedTokenMatcher>(normalized);
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::string repaired;
  if (!tok::is_valid_utf8(text)) {
    repaired = repair_utf8(text);
    text = repaired;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  std::vector<tok::Segment> segs;
  impl_->raw_matcher->split(text, segs);
  for (const auto& s : segs) {
    if (s.id >= 0) ids.push_back(s.id);
    else impl_->encode_segment(text.substr(s.begin, s.end - s.begin), s.begin == 0, ids);
  }
  if (add_special_tokens) impl_->post_processor.apply(ids);
  return ids;
}

std::string Tokenizer::decode_bytes(std::span<const int32_t> ids, bool skip_special_tokens, bool at_start) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= impl_->has_token.size() || !impl_->has_token[size_t(id)]) continue;
    if (skip_special_tokens && impl_->special[size_t(id)]) continue;
    tokens.push_back(impl_->id_to_token[size_t(id)]);
  }
  std::string out;
  if (impl_->decoder) {
    tok::DecodeState st;
    st.at_start = at_start;
    impl_->decoder->apply(tokens, st);
    for (const auto& t : tokens) out += t;
  } else {  // no decoder: tokens joined by spaces
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0 || !at_start) out += ' ';
      out += tokens[i];
    }
  }
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::string text = repair_utf8(decode_bytes(ids, skip_special_tokens, true));
  if (impl_->config.clean_up_tokenization_spaces) text = clean_up_tokenization_spaces(text);
  return text;
}

bool Tokenizer::cleans_up_spaces() const { return impl_->config.clean_up_tokenization_spaces; }

size_t Tokenizer::vocab_size() const { return impl_->id_to_token.size(); }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) return it->second;
  return impl_->model->token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->has_token.size() || !impl_->has_token[size_t(id)]) return std::nullopt;
  return impl_->id_to_token[size_t(id)];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[size_t(id)];
}

std::optional<int32_t> Tokenizer::bos_id() const {
  if (!impl_->config.bos_token) return std::nullopt;
  return token_to_id(*impl_->config.bos_token);
}

std::vector<int32_t> Tokenizer::eos_ids() const {
  std::vector<int32_t> ids;
  if (impl_->config.eos_token)
    if (auto id = token_to_id(*impl_->config.eos_token)) ids.push_back(*id);
  return ids;
}

const TokenizerConfig& Tokenizer::config() const { return impl_->config; }

}  // namespace myriad
