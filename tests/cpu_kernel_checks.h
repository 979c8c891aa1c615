// CPU kernels against their naive references, one random case at a time:
// shared by the kernel tests (tests/gpu/: fixed grids of shapes) and the
// soak (tests/slow/: many random shapes). Each check ASSERTs, naming the
// case; callers stop on HasFatalFailure(). Inputs come from the caller's rng
// (seeded through test_seed.h where fresh).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpu/cpu/kv_cache.h"
#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/ops.h"
#include "gpu/cpu/paged_attention.h"
#include "gpu/cpu/thread_pool.h"
#include "runtime/kv_block_allocator.h"

namespace myriad::gpu::cpu {

inline std::vector<float> randn(size_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ---------------------------------------------------------------- matmul

struct MatmulCase {
  DType dtype;
  int64_t T, in, out;
};

inline void check_matmul(ThreadPool& pool, const MatmulCase& c, std::mt19937& rng) {
  const auto wf = randn(size_t(c.out * c.in), rng, 0.1f);
  std::vector<uint16_t> w16(wf.size());
  const void* data = wf.data();
  if (c.dtype == DType::kBF16) {
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_bf16(wf[i]);
    data = w16.data();
  } else if (c.dtype == DType::kF16) {
    for (size_t i = 0; i < wf.size(); ++i) w16[i] = f32_to_f16(wf[i]);
    data = w16.data();
  }
  const WeightView w{c.dtype, data, c.out, c.in};
  const auto x = randn(size_t(c.T * c.in), rng);
  std::vector<float> y(size_t(c.T * c.out), NAN), ref(y.size());
  matmul(pool, x.data(), c.T, w, y.data());
  matmul_reference(x.data(), c.T, w, ref.data());
  for (int64_t t = 0; t < c.T; ++t) {
    for (int64_t r = 0; r < c.out; ++r) {
      // float32 accumulation of `in` products: error well below 1e-5 of sum |w x|.
      double mag = 0;
      for (int64_t k = 0; k < c.in; ++k)
        mag += std::fabs(double(weight_at(w, r * c.in + k)) * x[size_t(t * c.in + k)]);
      const size_t i = size_t(t * c.out + r);
      ASSERT_NEAR(y[i], ref[i], 1e-5 * mag + 1e-6) << dtype_name(c.dtype) << " T=" << c.T << " in=" << c.in
                                                   << " out=" << c.out << " t=" << t << " r=" << r;
    }
  }
}

// ---------------------------------------------------------------- attention

// Sequences of one attention batch: `n` new tokens from position `start`.
struct AttentionSeq {
  int64_t start, n;
};
// The default batch: a prefill from 0, a chunk continuing at 5, a decode at 13.
inline const std::vector<AttentionSeq> kMixedAttentionBatch = {{0, 6}, {5, 3}, {13, 1}};

// paged_attention over `batch` (blocks from a shuffled allocator) against the
// contiguous attention_reference, for every token of every sequence.
inline void check_attention(const AttentionShape& s, int32_t bs, DType kv_dtype, std::mt19937& rng,
                            const std::vector<AttentionSeq>& batch = kMixedAttentionBatch) {
  const int64_t kv_dim = s.kv_heads * s.head_dim, q_dim = s.heads * s.head_dim;
  int32_t num_blocks = 0;
  for (const AttentionSeq& b : batch) num_blocks += KvBlockAllocator::blocks_for(int32_t(b.start + b.n), bs);
  num_blocks = std::max(num_blocks + 8, 64);
  KvCache cache(2, num_blocks, bs, kv_dim, kv_dtype);
  KvBlockAllocator alloc(num_blocks, /*shuffle_seed=*/rng() | 1);
  struct Seq {
    int64_t start, n;
    std::vector<int32_t> table;
    std::vector<float> k, v;
  };
  std::vector<Seq> seqs;
  for (const AttentionSeq& b : batch) seqs.push_back({b.start, b.n, {}, {}, {}});
  const int64_t layer = 1;
  std::vector<AttentionRow> rows;
  int64_t T = 0;
  for (auto& sq : seqs) {
    const int64_t len = sq.start + sq.n;
    ASSERT_TRUE(alloc.allocate(KvBlockAllocator::blocks_for(int32_t(len), bs), sq.table));
    sq.k = randn(size_t(len * kv_dim), rng);
    sq.v = randn(size_t(len * kv_dim), rng);
    for (int64_t p = 0; p < len; ++p)
      cache.write(layer, sq.table.data(), p, sq.k.data() + p * kv_dim, sq.v.data() + p * kv_dim);
    // The reference reads what the cache holds: the kernels must be exact
    // on those values, so one float32 tolerance serves every cache dtype.
    for (float& x : sq.k) x = round_to_dtype(kv_dtype, x);
    for (float& x : sq.v) x = round_to_dtype(kv_dtype, x);
    rows.push_back({T, int32_t(sq.n), sq.start, sq.table.data()});
    T += sq.n;
  }
  const auto q = randn(size_t(T * q_dim), rng);
  std::vector<float> out(size_t(T * q_dim), NAN), ref(static_cast<size_t>(q_dim));
  ThreadPool pool(2);
  paged_attention(pool, cache, layer, s, rows, q.data(), out.data());
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t j = 0; j < seqs[i].n; ++j) {
      const int64_t t = rows[i].token_begin + j, pos = seqs[i].start + j;
      // The reference sees exactly the attended positions, contiguous.
      const int64_t lo = s.window > 0 && pos - s.window + 1 > 0 ? pos - s.window + 1 : 0;  // (pos - W, pos]
      attention_reference(s, q.data() + t * q_dim, seqs[i].k.data() + lo * kv_dim,
                          seqs[i].v.data() + lo * kv_dim, pos + 1 - lo, ref.data());
      for (int64_t d = 0; d < q_dim; ++d)
        ASSERT_NEAR(out[size_t(t * q_dim + d)], ref[size_t(d)], 2e-5)
            << "heads " << s.heads << "/" << s.kv_heads << " hd " << s.head_dim << " window " << s.window
            << " seq " << i << " token " << j << " kv " << dtype_name(kv_dtype);
    }
  }
}

// ---------------------------------------------------------------- LoRA (SGMV)

struct SlotData {
  std::vector<float> a, bt;
  std::vector<uint16_t> a16, bt16;  // bf16 copies
  LoraModuleView view;
};

inline std::vector<SlotData> make_slots(std::mt19937& rng, int n, int64_t in, int64_t out,
                                        const std::vector<int>& ranks, DType dtype = DType::kF32) {
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<SlotData> s(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int r = ranks[size_t(i) % ranks.size()];
    s[size_t(i)].a.resize(size_t(r * in));
    s[size_t(i)].bt.resize(size_t(r * out));
    for (auto& v : s[size_t(i)].a) v = nd(rng);
    for (auto& v : s[size_t(i)].bt) v = nd(rng);
  }
  for (int i = 0; i < n; ++i) {
    const int r = ranks[size_t(i) % ranks.size()];
    SlotData& d = s[size_t(i)];
    d.view = {d.a.data(), d.bt.data(), r, 16.0f / float(r)};
    if (dtype == DType::kBF16) {
      for (float v : d.a) d.a16.push_back(f32_to_bf16(v));
      for (float v : d.bt) d.bt16.push_back(f32_to_bf16(v));
      d.view = {d.a16.data(), d.bt16.data(), r, 16.0f / float(r), DType::kBF16};
    }
  }
  return s;
}

inline std::vector<LoraModuleView> views(const std::vector<SlotData>& s) {
  std::vector<LoraModuleView> v;
  for (const auto& d : s) v.push_back(d.view);
  return v;
}

// Mixtures: ~20% rows base only, ~20% a mixture of 2-3 slots, the rest one slot.
inline std::vector<AdapterMix> make_mixes(std::mt19937& rng, int64_t t, int slots) {
  std::vector<AdapterMix> m(static_cast<size_t>(t));
  std::uniform_int_distribution<int> pick(0, slots - 1), kind(0, 9);
  std::uniform_real_distribution<float> w(0.1f, 1.0f);
  for (auto& mix : m) {
    const int k = kind(rng);
    if (k < 2 || slots == 0) continue;
    const int n = k < 4 ? std::min(slots, 2 + k % 2) : 1;
    std::vector<int> used;
    while (int(used.size()) < n) {
      int s = pick(rng);
      if (std::find(used.begin(), used.end(), s) == used.end()) used.push_back(s);
    }
    for (int s : used) mix.refs[mix.count++] = {s, n == 1 ? 1.0f : w(rng)};
  }
  return m;
}

inline LoraParallelFor thread_parallel(int threads) {
  return [threads](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    std::vector<std::thread> ts;
    const int64_t per = (n + threads - 1) / threads;
    for (int64_t b = 0; b < n; b += per) ts.emplace_back(body, b, std::min(n, b + per));
    for (auto& t : ts) t.join();
  };
}

inline void expect_lora_close(const std::vector<float>& got, const std::vector<float>& ref,
                              const std::string& what) {
  ASSERT_EQ(got.size(), ref.size());
  for (size_t i = 0; i < got.size(); ++i) {
    // f32 dot products of a few hundred terms of size ~0.05: 1e-5 absolute
    // plus 1e-5 relative is ~100x the observed error and far below a delta.
    ASSERT_LE(std::abs(got[i] - ref[i]), 1e-5f + 1e-5f * std::abs(ref[i])) << what << " at " << i;
  }
}

// The random inputs of one LoRA case: `adapters` slots whose ranks cycle
// through `ranks`, `t` rows of mixtures (some with no adapter), x [t, in]
// and the y [t, out] the deltas are added to.
struct LoraCase {
  std::vector<SlotData> slots;
  std::vector<LoraModuleView> v;  // views of `slots`
  std::vector<AdapterMix> mixes;
  std::vector<float> x, y;
};

inline LoraCase make_lora_case(std::mt19937& rng, DType dtype, int64_t t, int adapters, const std::vector<int>& ranks,
                               int64_t in, int64_t out) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  LoraCase c;
  c.slots = make_slots(rng, adapters, in, out, ranks, dtype);
  c.v = views(c.slots);
  c.mixes = make_mixes(rng, t, adapters);
  c.x.resize(size_t(t * in));
  c.y.resize(size_t(t * out));
  for (auto& e : c.x) e = nd(rng);
  for (auto& e : c.y) e = nd(rng);
  return c;
}

using LoraKernel = void (*)(const LoraBatchPlan&, std::span<const LoraModuleView>, const float*, int64_t,
                            float*, int64_t, LoraScratch&, const LoraParallelFor&);

// One case of a LoRA kernel against lora_reference: `adapters` slots whose
// ranks cycle through `ranks`, `t` rows of random mixtures (some with no
// adapter), serial and split over 3 threads.
inline void check_lora(LoraKernel kernel, const char* name, DType dtype, int64_t t, int adapters,
                       const std::vector<int>& ranks, int64_t in, int64_t out, std::mt19937& rng) {
  const LoraCase c = make_lora_case(rng, dtype, t, adapters, ranks, in, out);
  const auto& [slots, v, mixes, x, y] = c;
  std::vector<float> ref = y;
  lora_reference(mixes, v, x.data(), in, ref.data(), out);
  LoraBatchPlan plan;
  plan.build(mixes);
  LoraScratch scratch;
  for (int threads : {1, 3}) {
    std::vector<float> got = y;
    kernel(plan, v, x.data(), in, got.data(), out, scratch,
           threads == 1 ? LoraParallelFor{} : thread_parallel(threads));
    std::string what = std::string(name) + " " + dtype_name(dtype) + " T=" + std::to_string(t) +
                       " in=" + std::to_string(in) + " out=" + std::to_string(out) +
                       " adapters=" + std::to_string(adapters) + " ranks=";
    for (int r : ranks) what += std::to_string(r) + ",";
    what += " threads=" + std::to_string(threads);
    expect_lora_close(got, ref, what);
    if (::testing::Test::HasFatalFailure()) return;
    // Rows with no adapter are untouched, bit for bit.
    for (int64_t r = 0; r < t; ++r) {
      if (mixes[size_t(r)].count) continue;
      for (int64_t o = 0; o < out; ++o) ASSERT_EQ(got[size_t(r * out + o)], y[size_t(r * out + o)]) << what;
    }
  }
}

// A row's delta never depends on the other rows: each row of a batch (split
// over 2 threads) equals the same row computed alone, bit for bit.
inline void check_lora_batch_invariance(LoraKernel kernel, const char* name, DType dtype, int64_t t,
                                        int adapters, const std::vector<int>& ranks, int64_t in, int64_t out,
                                        std::mt19937& rng) {
  const LoraCase c = make_lora_case(rng, dtype, t, adapters, ranks, in, out);
  const auto& [slots, v, mixes, x, y] = c;
  std::vector<float> batch = y;
  LoraBatchPlan plan;
  LoraScratch scratch;
  plan.build(mixes);
  kernel(plan, v, x.data(), in, batch.data(), out, scratch, thread_parallel(2));
  for (int64_t r = 0; r < t; ++r) {
    std::vector<float> alone(y.begin() + r * out, y.begin() + (r + 1) * out);
    std::vector<AdapterMix> one{mixes[size_t(r)]};
    plan.build(one);
    kernel(plan, v, x.data() + r * in, in, alone.data(), out, scratch, LoraParallelFor{});
    for (int64_t o = 0; o < out; ++o)
      ASSERT_EQ(alone[size_t(o)], batch[size_t(r * out + o)])
          << name << " " << dtype_name(dtype) << " T=" << t << " in=" << in << " out=" << out
          << " adapters=" << adapters << ": row " << r << " alone vs in the batch, output " << o;
  }
}

}  // namespace myriad::gpu::cpu
