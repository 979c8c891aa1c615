// BpeModel: the "model" of a BPE tokenizer.json. Two alphabets:
//  - byte-level (GPT-2 / Llama 3 / Qwen): a word is raw bytes, each byte one
//    initial symbol (its GPT-2 character's id); vocabulary lookups of whole
//    words use a table keyed by the tokens' decoded bytes;
//  - character-level (SentencePiece-style, Llama 2 / Mistral): a word is
//    UTF-8 text, each character one initial symbol, unknown characters become
//    <0xNN> byte tokens (byte_fallback) or unk (fused when fuse_unk).
// Merging follows Hugging Face's Word::merge_all exactly: repeatedly merge the
// lowest-rank adjacent pair (leftmost on ties) with a heap over a linked list.
// Immutable after load except the word cache, which is guarded by a mutex:
// tokenize() is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/result.h"
#include "tokenizer_file.h"

namespace myriad::tok {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

// Open-addressing map (id_a, id_b) -> (rank, merged id): the hot lookup of
// BPE, kept flat for cache locality.
class MergeTable {
 public:
  struct Entry {
    uint64_t key = kEmpty;
    int32_t rank = 0;
    int32_t new_id = 0;
  };
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  void reserve(size_t n);
  void insert_or_assign(int32_t a, int32_t b, int32_t rank, int32_t new_id);
  const Entry* find(int32_t a, int32_t b) const {
    const uint64_t key = (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const Entry& e = table_[i];
      if (e.key == key) return &e;
      if (e.key == kEmpty) return nullptr;
    }
  }

 private:
  size_t slot(uint64_t key) const { return size_t((key * 0x9E3779B97F4A7C15ull) >> shift_) & mask_; }
  std::vector<Entry> table_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
};

class BpeModel {
 public:
  // `j` is tokenizer.json's "model" (its vocab and merges given separately,
  // nullptr when absent); `byte_level`: the pre-tokenizer chain ends with ByteLevel.
  static Result<std::unique_ptr<BpeModel>> load(const nlohmann::json& j, const std::vector<VocabEntry>* vocab,
                                                const std::vector<MergeEntry>* merges, bool byte_level,
                                                const std::string& source);

  // Appends the ids of one pre-tokenized word.
  void tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  const std::vector<std::string>& vocab_by_id() const { return id_to_token_; }  // "" where no token
  bool has_id(size_t id) const { return id < has_id_.size() && has_id_[id]; }

 private:
  BpeModel() = default;
  void merge_word(std::string_view word, std::vector<int32_t>& out) const;
  void initial_symbols(std::string_view word, std::vector<int32_t>& syms) const;

  StringMap<int32_t> vocab_;
  StringMap<int32_t> byte_vocab_;  // byte-level only: decoded bytes -> id
  std::vector<std::string> id_to_token_;
  std::vector<uint8_t> has_id_;
  MergeTable merges_;
  std::array<int32_t, 256> byte_ids_{};      // byte-level: initial symbol of each byte, -1 if absent
  std::array<int32_t, 256> fallback_ids_{};  // id of "<0xNN>", -1 if absent
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::optional<int32_t> unk_;
  std::string prefix_;  // continuing_subword_prefix
  std::string suffix_;  // end_of_word_suffix

  static constexpr size_t kCacheMaxEntries = 65536;
  static constexpr size_t kCacheMaxWordBytes = 256;
  mutable std::mutex cache_mu_;
  mutable StringMap<std::vector<int32_t>> cache_;
};

}  // namespace myriad::tok
