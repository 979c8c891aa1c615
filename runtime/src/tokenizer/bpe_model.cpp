#include "bpe_model.h"

#include <algorithm>
#include <bit>
#include <cstdio>

#include "text_util.h"

namespace myriad::tok {

using nlohmann::json;

void MergeTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  table_.assign(cap, Entry{});
  mask_ = cap - 1;
  shift_ = 64 - std::countr_zero(cap);
  size_ = 0;
}

void MergeTable::insert_or_assign(int32_t a, int32_t b, int32_t rank, int32_t new_id) {
  const uint64_t key = (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
  if (2 * (size_ + 1) > table_.size()) {  // grow (only if reserve() was too small)
    std::vector<Entry> old = std::move(table_);
    reserve(std::max<size_t>(size_ + 1, old.size()));
    for (const auto& e : old)
      if (e.key != kEmpty) insert_or_assign(int32_t(e.key >> 32), int32_t(e.key & 0xffffffffu), e.rank, e.new_id);
  }
  for (size_t i = slot(key);; i = (i + 1) & mask_) {
    Entry& e = table_[i];
    if (e.key == key || e.key == kEmpty) {
      if (e.key == kEmpty) ++size_;
      e = Entry{key, rank, new_id};
      return;
    }
  }
}

namespace {

}  // namespace

Result<std::unique_ptr<BpeModel>> BpeModel::load(const json& j, const std::vector<VocabEntry>* vocab,
                                                  const std::vector<MergeEntry>* merges, bool byte_level,
                                                  const std::string& source) {
  const std::string what = source + ": model";
  if (!j.is_object()) return make_error(ErrorCode::kBadFile, what + " must be an object");
  const auto type = json_string(j, "type");
  if (type && *type != "BPE")
    return make_error(ErrorCode::kUnsupported, source + ": unsupported model type '" + *type + "' (supported: BPE)");
  if (!type && !merges)
    return make_error(ErrorCode::kUnsupported, source + ": model has no 'type' and no 'merges' (only BPE is supported)");
  if (const json* d = json_field(j, "dropout"); d && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
    return make_error(ErrorCode::kUnsupported, what + ": BPE dropout is not supported");

  std::unique_ptr<BpeModel> m(new BpeModel());
  m->byte_level_ = byte_level;
  m->byte_fallback_ = json_bool(j, "byte_fallback", false);
  m->fuse_unk_ = json_bool(j, "fuse_unk", false);
  m->ignore_merges_ = json_bool(j, "ignore_merges", false);
  m->prefix_ = json_string(j, "continuing_subword_prefix").value_or("");
  m->suffix_ = json_string(j, "end_of_word_suffix").value_or("");

  if (!vocab) return make_error(ErrorCode::kBadFile, what + ": 'vocab' must be an object");
  m->vocab_.reserve(vocab->size());
  int64_t max_id = -1;
  for (const auto& e : *vocab) {
    if (e.id < 0) return make_error(ErrorCode::kBadFile, what + ": vocab entry '" + e.token + "' has no valid id");
    max_id = std::max(max_id, e.id);
  }
  m->id_to_token_.resize(size_t(max_id + 1));
  m->has_id_.resize(size_t(max_id + 1), 0);
  for (const auto& e : *vocab) {
    const auto id = int32_t(e.id);
    m->vocab_[e.token] = id;
    m->id_to_token_[size_t(id)] = e.token;
    m->has_id_[size_t(id)] = 1;
  }
  if (const auto unk = json_string(j, "unk_token")) {
    auto it = m->vocab_.find(*unk);
    if (it == m->vocab_.end()) return make_error(ErrorCode::kBadFile, what + ": unk_token '" + *unk + "' is not in the vocab");
    m->unk_ = it->second;
  }

  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    auto it = m->vocab_.find(std::string_view(hex));
    m->fallback_ids_[size_t(b)] = it == m->vocab_.end() ? -1 : it->second;
    std::string ch;
    utf8_append(ch, byte_to_char(uint8_t(b)));
    auto jt = m->vocab_.find(ch);
    m->byte_ids_[size_t(b)] = jt == m->vocab_.end() ? -1 : jt->second;
  }
  if (byte_level && m->ignore_merges_) {  // only whole-word lookups need it
    m->byte_vocab_.reserve(m->vocab_.size());
    for (const auto& [tok, id] : m->vocab_) {
      std::string bytes;
      bool ok = true;
      for (size_t i = 0; i < tok.size() && ok;) {
        const size_t n = utf8_seq_len(tok, i);
        const int b = n ? char_to_byte(utf8_decode_at(tok, i, n)) : -1;
        ok = b >= 0;
        bytes += char(b);
        i += n ? n : 1;
      }
      if (ok) m->byte_vocab_.emplace(std::move(bytes), id);
    }
  }

  if (!merges) return make_error(ErrorCode::kBadFile, what + ": 'merges' must be a list");
  m->merges_.reserve(merges->size());
  std::string merged;
  for (size_t i = 0; i < merges->size(); ++i) {
    const MergeEntry& me = (*merges)[i];
    if (!me.ok)
      return make_error(ErrorCode::kBadFile, what + ": merge #" + std::to_string(i) + " (" + me.raw +
                                                 ") is neither \"a b\" (two tokens, one space) nor [\"a\", \"b\"]");
    const std::string& a = me.a;
    const std::string& b = me.b;
    std::string_view b_rest = b;
    if (!m->prefix_.empty() && b_rest.substr(0, m->prefix_.size()) == m->prefix_) b_rest.remove_prefix(m->prefix_.size());
    merged = a;
    merged.append(b_rest);
    auto ia = m->vocab_.find(a), ib = m->vocab_.find(b), im = m->vocab_.find(merged);
    if (ia == m->vocab_.end() || ib == m->vocab_.end() || im == m->vocab_.end())
      return make_error(ErrorCode::kBadFile, what + ": merge #" + std::to_string(i) + " ('" + a + "', '" + b +
                                                 "') uses a token that is not in the vocab");
    m->merges_.insert_or_assign(ia->second, ib->second, int32_t(i), im->second);
  }
  return m;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const auto& table = byte_level_ ? byte_vocab_ : vocab_;
    if (auto it = table.find(word); it != table.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  merge_word(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kCacheMaxEntries) cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + long(start), out.end()));
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& syms) const {
  if (byte_level_ && prefix_.empty() && suffix_.empty()) {
    for (char c : word) {
      const int32_t id = byte_ids_[uint8_t(c)];
      if (id >= 0) syms.push_back(id);
      else if (unk_ && !(fuse_unk_ && !syms.empty() && syms.back() == *unk_)) syms.push_back(*unk_);
    }
    return;
  }
  bool last_unk = false;
  std::string unit;
  for (size_t i = 0; i < word.size();) {
    size_t n = byte_level_ ? 1 : utf8_seq_len(word, i);
    if (n == 0) n = 1;  // cannot happen: input is repaired to valid UTF-8
    const std::string_view raw = word.substr(i, n);
    unit.clear();
    if (i > 0) unit += prefix_;
    if (byte_level_) utf8_append(unit, byte_to_char(uint8_t(raw[0])));
    else unit.append(raw);
    if (i + n == word.size()) unit += suffix_;
    i += n;
    if (auto it = vocab_.find(unit); it != vocab_.end()) {
      syms.push_back(it->second);
      last_unk = false;
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : raw) all = all && fallback_ids_[uint8_t(c)] >= 0;
      if (all) {
        for (char c : raw) syms.push_back(fallback_ids_[uint8_t(c)]);
        last_unk = false;
        continue;
      }
    }
    if (!unk_) continue;  // no unk token: the character is dropped
    if (fuse_unk_ && last_unk) continue;
    syms.push_back(*unk_);
    last_unk = true;
  }
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank, pos, new_id;
  };
  // std heap is a max-heap: "greater" = lower rank, then lower position.
  auto worse = [](const Cand& x, const Cand& y) { return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos; };

  thread_local std::vector<int32_t> ids;
  thread_local std::vector<Sym> syms;
  thread_local std::vector<Cand> heap;
  ids.clear();
  initial_symbols(word, ids);
  syms.clear();
  heap.clear();
  const auto n = int32_t(ids.size());
  for (int32_t i = 0; i < n; ++i) syms.push_back(Sym{ids[size_t(i)], i - 1, i + 1 < n ? i + 1 : -1, true});
  for (int32_t i = 0; i + 1 < n; ++i)
    if (const auto* e = merges_.find(syms[size_t(i)].id, syms[size_t(i) + 1].id)) heap.push_back(Cand{e->rank, i, e->new_id});
  std::make_heap(heap.begin(), heap.end(), worse);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const Cand top = heap.back();
    heap.pop_back();
    Sym& cur = syms[size_t(top.pos)];
    if (!cur.alive || cur.next < 0) continue;
    Sym& right = syms[size_t(cur.next)];
    const auto* e = merges_.find(cur.id, right.id);
    if (!e || e->new_id != top.new_id) continue;  // stale entry
    cur.id = top.new_id;
    right.alive = false;
    cur.next = right.next;
    if (cur.next >= 0) syms[size_t(cur.next)].prev = top.pos;
    if (cur.prev >= 0) {
      if (const auto* pe = merges_.find(syms[size_t(cur.prev)].id, cur.id)) {
        heap.push_back(Cand{pe->rank, cur.prev, pe->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
    if (cur.next >= 0) {
      if (const auto* ne = merges_.find(cur.id, syms[size_t(cur.next)].id)) {
        heap.push_back(Cand{ne->rank, top.pos, ne->new_id});
        std::push_heap(heap.begin(), heap.end(), worse);
      }
    }
  }
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[size_t(i)].next) out.push_back(syms[size_t(i)].id);
}

}  // namespace myriad::tok
