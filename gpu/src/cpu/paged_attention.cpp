#include "gpu/cpu/paged_attention.h"

#include <cmath>
#include <vector>

#include "attention_kernels.h"
#include "gpu/cpu/ops.h"
#include "matmul_kernels.h"

namespace myriad::gpu::cpu {
namespace {

using detail::KvElem;

template <KvElem E>
struct Elems;
template <>
struct Elems<KvElem::kF32> {
  using T = float;
  static float at(const T* p, int64_t i) { return p[i]; }
};
template <>
struct Elems<KvElem::kBF16> {
  using T = uint16_t;
  static float at(const T* p, int64_t i) { return bf16_to_f32(p[i]); }
};
template <>
struct Elems<KvElem::kF16> {
  using T = uint16_t;
  static float at(const T* p, int64_t i) { return f16_to_f32(p[i]); }
};

template <KvElem E>
float dot(const float* a, const typename Elems<E>::T* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * Elems<E>::at(b, i + j);
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * Elems<E>::at(b, i);
  return s;
}

KvElem kv_elem(DType d) {
  switch (d) {
    case DType::kBF16: return KvElem::kBF16;
    case DType::kF16: return KvElem::kF16;
    case DType::kF32: break;
  }
  return KvElem::kF32;
}

}  // namespace

namespace detail {

template <KvElem E>
void block_scores_portable(const float* q, const void* kv, int64_t n, int64_t stride, int64_t hd, float scale,
                           float* scores) {
  const auto* k = static_cast<const typename Elems<E>::T*>(kv);
  for (int64_t j = 0; j < n; ++j) scores[j] = dot<E>(q, k + j * stride, hd) * scale;
}

template <KvElem E>
void block_accumulate_portable(const float* p, const void* vv, int64_t n, int64_t stride, int64_t hd, float* o) {
  const auto* v = static_cast<const typename Elems<E>::T*>(vv);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t d = 0; d < hd; ++d) o[d] += p[j] * Elems<E>::at(v, j * stride + d);
}

}  // namespace detail

namespace {

template <KvElem E>
void paged_attention_as(ThreadPool& pool, const KvCache& cache, int64_t layer, const AttentionShape& s,
                        std::span<const AttentionRow> rows, const float* q, float* out) {
  using Elem = typename Elems<E>::T;
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads, kv_dim = s.kv_heads * hd, q_dim = s.heads * hd;
  const int64_t bs = cache.block_size();
  const float scale = 1.0f / std::sqrt(float(hd));
  const bool avx2 = detail::use_avx2();
  auto* block_scores = avx2 ? detail::block_scores_avx2<E> : detail::block_scores_portable<E>;
  auto* block_accumulate = avx2 ? detail::block_accumulate_avx2<E> : detail::block_accumulate_portable<E>;
  auto k_block = [&](int32_t blk) { return reinterpret_cast<const Elem*>(cache.k_block(layer, blk)); };
  auto v_block = [&](int32_t blk) { return reinterpret_cast<const Elem*>(cache.v_block(layer, blk)); };
  // Work items: (token, kv head); each serves the kv head's `group` query heads,
  // so a K/V block is read once per group.
  std::vector<int64_t> row_of_token;  // small: one entry per token
  int64_t T = 0;
  for (const auto& r : rows) T += r.num_tokens;
  row_of_token.resize(size_t(T));
  for (size_t i = 0; i < rows.size(); ++i)
    for (int32_t j = 0; j < rows[i].num_tokens; ++j) row_of_token[size_t(rows[i].token_begin + j)] = int64_t(i);

  // K/V rows were written a step ago and the weights streamed since have
  // evicted them. A head's slice of a position is hd floats, kv_dim floats
  // from the next position's: a stride the hardware prefetcher does not
  // follow, so each item walks a prefetch cursor kAhead positions ahead of
  // its reads over the sequence (K rows of [lo, pos], then V rows). Without
  // it decode attention waited ~100 ns per block and took ~4% of a
  // llama-110m step. Two cursors: kAhead positions ahead into L2, kNear into
  // L1 (one cursor into L1 at 48: ~7% slower with the K/V evicted, ~12%
  // with them in L3: the L1 has fewer miss slots than the L2).
  constexpr int64_t kAhead = 48, kNear = 16;
  const int64_t lines_per_row = (hd * int64_t(sizeof(Elem)) + 63) / 64;
  // `next`: the next position of the sequence K[lo..pos], V[lo..pos] to
  // prefetch. One block-table lookup (and division) per run of positions in
  // one block, not per position: per position they were ~40% of the time of
  // a batch-8 decode's attention.
  auto prefetch_to = [&](bool into_l1, int64_t& next, const AttentionRow& r, int64_t kvh, int64_t lo, int64_t ctx,
                         int64_t upto) {
    upto = upto < 2 * ctx ? upto : 2 * ctx;
    while (next < upto) {
      const bool is_v = next >= ctx;
      const int64_t p = lo + (is_v ? next - ctx : next);
      const int64_t off = p % bs, phase_end = is_v ? 2 * ctx : ctx;
      int64_t run = bs - off;
      if (run > phase_end - next) run = phase_end - next;
      if (run > upto - next) run = upto - next;
      const int32_t blk = r.blocks[p / bs];
      const Elem* row = (is_v ? v_block(blk) : k_block(blk)) + off * kv_dim + kvh * hd;
      for (int64_t i = 0; i < run; ++i, row += kv_dim)
        for (int64_t l = 0; l < lines_per_row; ++l) {
          const Elem* line = row + l * (64 / int64_t(sizeof(Elem)));
          if (into_l1) {
            __builtin_prefetch(line, 0, 3);
          } else {
            __builtin_prefetch(line, 0, 2);
          }
        }
      next += run;
    }
  };

  // An item's token, kv head, row and attended positions [lo, pos].
  struct Item {
    int64_t t, kvh;
    const AttentionRow* r;
    int64_t pos, lo, ctx;
  };
  auto item_at = [&](int64_t item) {
    Item it;
    it.t = item / s.kv_heads;
    it.kvh = item % s.kv_heads;
    it.r = &rows[size_t(row_of_token[size_t(it.t)])];
    it.pos = it.r->start_pos + (it.t - it.r->token_begin);
    it.lo = s.window > 0 && it.pos - s.window + 1 > 0 ? it.pos - s.window + 1 : 0;
    it.ctx = it.pos + 1 - it.lo;
    return it;
  };

  // Items are claimed 4 at a time so that an item can prefetch the first K
  // rows of the next one (its own cursor would start cold): 8 decode tokens
  // at 52 positions, 12 layers, bf16 K/V evicted from the caches: 685 ->
  // 600-660 us.
  pool.parallel_for(T * s.kv_heads, 4, [&](int64_t b, int64_t e, int) {
    thread_local std::vector<float> scores;
    int64_t primed = 0;  // how far the previous item already ran this item's L2 cursor
    for (int64_t item = b; item < e; ++item) {
      const Item it = item_at(item);
      const int64_t t = it.t, kvh = it.kvh, pos = it.pos, lo = it.lo, ctx = it.ctx;
      const AttentionRow& r = *it.r;
      scores.resize(size_t(group * ctx));
      // Scores for each query head of the group, block by block.
      int64_t next = primed, near = 0;  // prefetch cursors: into L2 far ahead, into L1 near
      primed = 0;
      for (int64_t p = lo; p <= pos;) {
        const int64_t off = p % bs, n = bs - off < pos + 1 - p ? bs - off : pos + 1 - p;
        prefetch_to(false, next, r, kvh, lo, ctx, p - lo + n + kAhead);
        prefetch_to(true, near, r, kvh, lo, ctx, p - lo + n + kNear);
        const Elem* kb = k_block(r.blocks[p / bs]) + off * kv_dim + kvh * hd;
        for (int64_t g = 0; g < group; ++g) {
          const float* qh = q + t * q_dim + (kvh * group + g) * hd;
          block_scores(qh, kb, n, kv_dim, hd, scale, scores.data() + g * ctx + (p - lo));
        }
        p += n;
      }
      if (item + 1 < e) {  // the next item's first K rows, while this one's V rows arrive
        const Item nx = item_at(item + 1);
        prefetch_to(false, primed, *nx.r, nx.kvh, nx.lo, nx.ctx, kAhead);
      }
      for (int64_t g = 0; g < group; ++g) {
        softmax(scores.data() + g * ctx, ctx);
        float* o = out + t * q_dim + (kvh * group + g) * hd;
        for (int64_t d = 0; d < hd; ++d) o[d] = 0;
      }
      for (int64_t p = lo; p <= pos;) {
        const int64_t off = p % bs, n = bs - off < pos + 1 - p ? bs - off : pos + 1 - p;
        prefetch_to(false, next, r, kvh, lo, ctx, ctx + (p - lo) + n + kAhead);
        prefetch_to(true, near, r, kvh, lo, ctx, ctx + (p - lo) + n + kNear);
        const Elem* vb = v_block(r.blocks[p / bs]) + off * kv_dim + kvh * hd;
        for (int64_t g = 0; g < group; ++g) {
          float* o = out + t * q_dim + (kvh * group + g) * hd;
          block_accumulate(scores.data() + g * ctx + (p - lo), vb, n, kv_dim, hd, o);
        }
        p += n;
      }
    }
  });
}

}  // namespace

void paged_attention(ThreadPool& pool, const KvCache& cache, int64_t layer, const AttentionShape& s,
                     std::span<const AttentionRow> rows, const float* q, float* out) {
  switch (kv_elem(cache.dtype())) {
    case KvElem::kF32: paged_attention_as<KvElem::kF32>(pool, cache, layer, s, rows, q, out); return;
    case KvElem::kBF16: paged_attention_as<KvElem::kBF16>(pool, cache, layer, s, rows, q, out); return;
    case KvElem::kF16: paged_attention_as<KvElem::kF16>(pool, cache, layer, s, rows, q, out); return;
  }
}

void attention_reference(const AttentionShape& s, const float* q, const float* k, const float* v, int64_t ctx,
                         float* out) {
  const int64_t hd = s.head_dim, group = s.heads / s.kv_heads, kv_dim = s.kv_heads * hd;
  std::vector<double> p(static_cast<size_t>(ctx));
  for (int64_t h = 0; h < s.heads; ++h) {
    const int64_t kvh = h / group;
    double m = -1e300;
    for (int64_t j = 0; j < ctx; ++j) {
      double d = 0;
      for (int64_t i = 0; i < hd; ++i) d += double(q[h * hd + i]) * k[j * kv_dim + kvh * hd + i];
      p[size_t(j)] = d / std::sqrt(double(hd));
      m = std::max(m, p[size_t(j)]);
    }
    double sum = 0;
    for (auto& x : p) sum += (x = std::exp(x - m));
    for (int64_t i = 0; i < hd; ++i) {
      double o = 0;
      for (int64_t j = 0; j < ctx; ++j) o += p[size_t(j)] / sum * v[j * kv_dim + kvh * hd + i];
      out[h * hd + i] = float(o);
    }
  }
}

}  // namespace myriad::gpu::cpu
