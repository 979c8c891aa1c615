// Segmented multi-LoRA kernels for the CPU (see gpu/cpu/lora_sgmv.h).
#include "gpu/cpu/lora_sgmv.h"

#include <algorithm>
#include <atomic>
#include <numeric>

#include "gpu/devices.h"
#include "runtime/result.h"

namespace myriad::gpu::cpu {

float LoraModuleView::a_at(int64_t i) const {
  return dtype == DType::kBF16 ? bf16_to_f32(static_cast<const uint16_t*>(a)[i]) : static_cast<const float*>(a)[i];
}
float LoraModuleView::bt_at(int64_t i) const {
  return dtype == DType::kBF16 ? bf16_to_f32(static_cast<const uint16_t*>(bt)[i]) : static_cast<const float*>(bt)[i];
}

namespace detail {
void LoraPrefetch::add(const void* p, int64_t bytes) {
  if (p == nullptr || bytes <= 0 || count == kMaxSpans) return;
  at[count] = static_cast<const char*>(p);
  end[count] = at[count] + bytes;
  ++count;
}
}  // namespace detail

void LoraBatchPlan::build(std::span<const AdapterMix> per_token) {
  rows.clear();
  weights.clear();
  segments.clear();
  segment_of.clear();
  blocks.clear();
  has_mixture = false;
  num_rows = uint32_t(per_token.size());
  // Counting sort by slot: entries of slot s are contiguous, rows ascending.
  int32_t max_slot = -1;
  for (const AdapterMix& m : per_token) {
    for (uint8_t i = 0; i < m.count; ++i) max_slot = std::max(max_slot, m.refs[i].slot);
  }
  if (max_slot < 0) return;
  std::vector<uint32_t> count(size_t(max_slot) + 2, 0);  // small (slots), allocated per step only
  for (const AdapterMix& m : per_token) {
    for (uint8_t i = 0; i < m.count; ++i) {
      const AdapterRef& r = m.refs[i];
      if (r.slot >= 0 && r.weight != 0.0f) ++count[size_t(r.slot) + 1];
    }
  }
  std::partial_sum(count.begin(), count.end(), count.begin());
  const uint32_t total = count.back();
  rows.resize(total);
  weights.resize(total);
  std::vector<uint32_t> fill(count.begin(), count.end() - 1);
  for (uint32_t t = 0; t < per_token.size(); ++t) {
    const AdapterMix& m = per_token[t];
    for (uint8_t i = 0; i < m.count; ++i) {
      const AdapterRef& r = m.refs[i];
      if (r.slot < 0 || r.weight == 0.0f) continue;
      has_mixture |= i > 0;
      const uint32_t at = fill[size_t(r.slot)]++;
      rows[at] = t;
      weights[at] = r.weight;
    }
  }
  for (int32_t s = 0; s <= max_slot; ++s) {
    if (count[size_t(s) + 1] > count[size_t(s)]) segments.push_back({s, count[size_t(s)], count[size_t(s) + 1]});
  }
  segment_of.resize(total);
  for (size_t g = 0; g < segments.size(); ++g) {
    for (uint32_t e = segments[g].begin; e < segments[g].end; ++e) segment_of[e] = uint32_t(g);
    for (uint32_t e = segments[g].begin; e < segments[g].end; e += kLoraBlockRows)
      blocks.push_back({uint32_t(g), e, std::min<uint32_t>(kLoraBlockRows, segments[g].end - e)});
  }
}

namespace {

void run_parallel(const LoraParallelFor& parallel, int64_t n, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  if (parallel && n > 1) {
    parallel(n, body);
  } else {
    body(0, n);
  }
}

inline float w_at(const float* p, int64_t i) { return p[i]; }
inline float w_at(const uint16_t* p, int64_t i) { return bf16_to_f32(p[i]); }

template <class W>
void shrink_t(const W* a, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h) {
  for (int r = 0; r < nrows; ++r) {
    for (int32_t k = 0; k < rank; ++k) {
      const W* ak = a + int64_t(k) * in;
      float acc = 0.0f;
      for (int64_t i = 0; i < in; ++i) acc += w_at(ak, i) * xs[r][i];
      h[r * rank + k] = acc;
    }
  }
}

template <class W>
void expand_t(const W* bt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end, int64_t out) {
  for (int32_t k = 0; k < rank; ++k) {
    const float hk = h[k];
    const W* b = bt + int64_t(k) * out;
    for (int64_t o = o_begin; o < o_end; ++o) y[o] += hk * w_at(b, o);
  }
}

// The portable and AVX-512 loops take no prefetch (detail::LoraPrefetch).
void shrink_portable(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h,
                     detail::LoraPrefetch*) {
  if (dt == DType::kBF16) {
    shrink_t(static_cast<const uint16_t*>(a), rank, xs, nrows, in, h);
  } else {
    shrink_t(static_cast<const float*>(a), rank, xs, nrows, in, h);
  }
}

void expand_portable(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end,
                     int64_t out, detail::LoraPrefetch*) {
  if (dt == DType::kBF16) {
    expand_t(static_cast<const uint16_t*>(bt), rank, h, y, o_begin, o_end, out);
  } else {
    expand_t(static_cast<const float*>(bt), rank, h, y, o_begin, o_end, out);
  }
}

using detail::LoraPrefetch;
using ShrinkFn = void (*)(const void*, DType, int32_t, const float* const*, int, int64_t, float*, LoraPrefetch*);
using ExpandFn = void (*)(const void*, DType, int32_t, const float*, float*, int64_t, int64_t, int64_t,
                          LoraPrefetch*);
using ExpandRowsFn = void (*)(const void*, DType, int32_t, const float* const*, float* const*, int, int64_t,
                              int64_t, int64_t, LoraPrefetch*);

// A rows-expand made of one-row expands (the kernel sets without their own).
template <ExpandFn expand>
void expand_each_row(const void* bt, DType dt, int32_t rank, const float* const* hs, float* const* ys,
                     int nrows, int64_t o_begin, int64_t o_end, int64_t out, LoraPrefetch* pf) {
  for (int r = 0; r < nrows; ++r) expand(bt, dt, rank, hs[r], ys[r], o_begin, o_end, out, pf);
}

void shrink_avx512(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in, float* h,
                   LoraPrefetch*) {
  detail::lora_shrink_avx512(a, dt, rank, xs, nrows, in, h);
}
void expand_avx512(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin, int64_t o_end,
                   int64_t out, LoraPrefetch*) {
  detail::lora_expand_avx512(bt, dt, rank, h, y, o_begin, o_end, out);
}

std::atomic<bool> g_prefetch_next_block{true};

// The loops of one kernel set.
struct Kernels {
  ShrinkFn shrink;
  ExpandFn expand;
  ExpandRowsFn expand_rows;  // no-mixture pass: a block of rows of one slot at once
};

// Runs block(g, e, n, next) for each of the plan's blocks of rows (segment
// g, entries [e, e + n)) in parallel, skipping slots whose rank_of is 0;
// `next` is the segment of the block after it (-1: none), the one the same
// thread most likely takes next (the executor's pool hands each thread a
// contiguous share). Work items are whole blocks, so the rows of one slot
// share each load of its weights also when the pass is split over threads.
template <class RankOf, class Block>
void for_each_block(const LoraParallelFor& parallel, const LoraBatchPlan& plan, const RankOf& rank_of,
                    const Block& block) {
  const int64_t n = int64_t(plan.blocks.size());
  run_parallel(parallel, n, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const LoraBlock& blk = plan.blocks[size_t(b)];
      const int64_t next = b + 1 < n ? int64_t(plan.blocks[size_t(b + 1)].segment) : -1;
      if (rank_of(plan.segments[blk.segment].slot) != 0)
        block(blk.segment, int64_t(blk.begin), int(blk.count), next);
    }
  });
}

// Output columns per expand work item: a multiple of 128 (the AVX-512
// expand's block; 32 AVX2 vectors), so a chunk boundary never changes a column's loop.
constexpr int64_t kExpandChunk = 256;

template <class ViewOf>
void rows_pass(const Kernels& kern, const LoraBatchPlan& plan, size_t num_slots, const ViewOf& view_of,
               const float* x, int64_t in, std::span<float* const> ys, std::span<const int64_t> outs,
               LoraScratch& scratch, const LoraParallelFor& parallel);

void sgmv(const Kernels& kern, const LoraBatchPlan& plan, std::span<const LoraModuleView> slots,
          const float* x, int64_t in, float* y, int64_t out, LoraScratch& scratch,
          const LoraParallelFor& parallel) {
  if (plan.empty()) return;
  if (!plan.has_mixture) {
    float* const ys[] = {y};
    const int64_t outs[] = {out};
    rows_pass(
        kern, plan, slots.size(),
        [&](int32_t slot) {
          const LoraModuleView& v = slots[size_t(slot)];
          return LoraGroupView{v.a, v.rank, v.dtype, 1, {v}};
        },
        x, in, ys, outs, scratch, parallel);
    return;
  }
  // With mixtures, phase 1 shrinks every entry into its block of h (at the
  // slot's true rank), scaled by scale x weight; phase 2 expands.
  scratch.h_offset.resize(plan.segments.size() + 1);
  uint32_t total = 0;
  for (size_t s = 0; s < plan.segments.size(); ++s) {
    const LoraSegment& seg = plan.segments[s];
    MYRIAD_CHECK(seg.slot >= 0 && size_t(seg.slot) < slots.size(),
                 "LoRA plan uses slot " + std::to_string(seg.slot) + " of " + std::to_string(slots.size()));
    scratch.h_offset[s] = total;
    total += (seg.end - seg.begin) * uint32_t(slots[size_t(seg.slot)].rank);
  }
  scratch.h_offset.back() = total;
  if (total == 0) return;  // no slot targets this module
  if (scratch.h.size() < total) scratch.h.resize(total);
  float* h = scratch.h.data();
  for_each_block(
      parallel, plan, [&](int32_t slot) { return slots[size_t(slot)].rank; },
      [&](uint32_t g, int64_t e, int n, int64_t) {
        const LoraSegment& seg = plan.segments[g];
        const LoraModuleView& v = slots[size_t(seg.slot)];
        const float* xs[detail::kShrinkRows];
        for (int r = 0; r < n; ++r) xs[r] = x + int64_t(plan.rows[size_t(e + r)]) * in;
        float* hs = h + scratch.h_offset[g] + size_t(e - seg.begin) * size_t(v.rank);
        kern.shrink(v.a, v.dtype, v.rank, xs, n, in, hs, nullptr);
        for (int r = 0; r < n; ++r) {
          const float f = v.scale * plan.weights[size_t(e + r)];
          for (int32_t k = 0; k < v.rank; ++k) hs[r * v.rank + k] *= f;
        }
      });

  // Phase 2: two entries may share a row, so work items are wide column
  // chunks with all segments in slot order inside: those rows never race and
  // always sum in one order. Per element the arithmetic is the same as
  // without mixtures (FMAs over k in order), so results do not depend on the
  // partition.
  const int64_t num_chunks = (out + kExpandChunk - 1) / kExpandChunk;
  run_parallel(parallel, num_chunks, [&](int64_t c0, int64_t c1) {
    const int64_t o_begin = c0 * kExpandChunk;
    const int64_t o_end = std::min(out, c1 * kExpandChunk);
    for (size_t s = 0; s < plan.segments.size(); ++s) {
      const LoraSegment& seg = plan.segments[s];
      const LoraModuleView& v = slots[size_t(seg.slot)];
      if (v.rank == 0) continue;
      const float* hs = h + scratch.h_offset[s];
      for (uint32_t e = seg.begin; e < seg.end; ++e, hs += v.rank) {
        kern.expand(v.bt, v.dtype, v.rank, hs, y + int64_t(plan.rows[e]) * out, o_begin, o_end, out, nullptr);
      }
    }
  });
}

// Without mixtures every entry owns its row of each y: one parallel pass
// over the plan's blocks (rows of all slots, so one slot with many rows still
// spreads over threads). Each block of rows of one slot is shrunk together
// through the slot's (stacked) A, sharing each load; h is scaled per module,
// then each module is expanded at once while h is in L1 (Bᵀ streams through
// in order). One thread handoff per call. view_of(slot) gives the slot's
// LoraGroupView (one module for lora_sgmv).
template <class ViewOf>
void rows_pass(const Kernels& kern, const LoraBatchPlan& plan, size_t num_slots, const ViewOf& view_of,
               const float* x, int64_t in, std::span<float* const> ys, std::span<const int64_t> outs,
               LoraScratch& scratch, const LoraParallelFor& parallel) {
  const size_t num_modules = ys.size();
  MYRIAD_CHECK(outs.size() == num_modules && num_modules <= size_t(kMaxGroupModules),
               "LoRA group of " + std::to_string(num_modules) + " outputs and " +
                   std::to_string(outs.size()) + " widths");
  scratch.h_offset.resize(plan.segments.size() + 1);
  uint32_t total = 0;
  for (size_t s = 0; s < plan.segments.size(); ++s) {
    const LoraSegment& seg = plan.segments[s];
    MYRIAD_CHECK(seg.slot >= 0 && size_t(seg.slot) < num_slots,
                 "LoRA plan uses slot " + std::to_string(seg.slot) + " of " + std::to_string(num_slots));
    const auto& v = view_of(seg.slot);
    MYRIAD_CHECK(v.rank_total == 0 || size_t(v.num_modules) == num_modules,
                 "LoRA group view of " + std::to_string(v.num_modules) + " modules for " +
                     std::to_string(num_modules) + " outputs");
    scratch.h_offset[s] = total;
    total += (seg.end - seg.begin) * uint32_t(v.rank_total);
  }
  scratch.h_offset.back() = total;
  if (total == 0) return;  // no slot targets these modules
  if (scratch.h.size() < total) scratch.h.resize(total);
  float* h = scratch.h.data();
  for_each_block(
      parallel, plan, [&](int32_t slot) { return view_of(slot).rank_total; },
      [&](uint32_t g, int64_t e, int n, int64_t next) {
        const LoraSegment& seg = plan.segments[g];
        const auto& v = view_of(seg.slot);
        const int32_t R = v.rank_total;
        // The next block's weights, when they are another slot's, in bf16:
        // f32 slots' twice longer runs already stream at 85-89% of the read
        // bandwidth, and on the AVX2 EPYC the prefetch made them 20% slower
        // (bf16: 3-13% faster), both measured in-run by bench/multilora.
        LoraPrefetch prefetch;
        if (next >= 0 && uint32_t(next) != g && g_prefetch_next_block.load(std::memory_order_relaxed)) {
          const auto& nv = view_of(plan.segments[size_t(next)].slot);
          if (nv.dtype == DType::kBF16) {
            prefetch.add(nv.a, int64_t(nv.rank_total) * in * 2);
            for (size_t m = 0; m < num_modules && nv.rank_total > 0; ++m)
              prefetch.add(nv.modules[m].bt, int64_t(nv.modules[m].rank) * outs[m] * 2);
          }
        }
        const float* xs[detail::kShrinkRows];
        for (int r = 0; r < n; ++r) xs[r] = x + int64_t(plan.rows[size_t(e + r)]) * in;
        float* hs = h + scratch.h_offset[g] + size_t(e - seg.begin) * size_t(R);
        LoraPrefetch* pf = prefetch.count > 0 ? &prefetch : nullptr;
        kern.shrink(v.a, v.dtype, R, xs, n, in, hs, pf);
        for (int r = 0; r < n; ++r) {
          const float w = plan.weights[size_t(e + r)];
          float* hr = hs + r * R;
          for (size_t m = 0; m < num_modules; ++m) {
            const float f = v.modules[m].scale * w;
            for (int32_t k = 0; k < v.modules[m].rank; ++k) hr[k] *= f;
            hr += v.modules[m].rank;
          }
        }
        int32_t offset = 0;  // of module m's h in a row's R
        for (size_t m = 0; m < num_modules; ++m) {
          const LoraModuleView& mv = v.modules[m];
          if (mv.rank == 0) continue;
          const float* hr[detail::kShrinkRows];
          float* yr[detail::kShrinkRows];
          for (int r = 0; r < n; ++r) {
            hr[r] = hs + r * R + offset;
            yr[r] = ys[m] + int64_t(plan.rows[size_t(e + r)]) * outs[m];
          }
          kern.expand_rows(mv.bt, mv.dtype, mv.rank, hr, yr, n, 0, outs[m], outs[m], pf);
          offset += mv.rank;
        }
      });
}

// lora_sgmv over a group of modules sharing x (see LoraGroupView).
void sgmv_group(const Kernels& kern, const LoraBatchPlan& plan, std::span<const LoraGroupView> slots,
                const float* x, int64_t in, std::span<float* const> ys, std::span<const int64_t> outs,
                LoraScratch& scratch, const LoraParallelFor& parallel) {
  if (plan.empty()) return;
  if (plan.has_mixture) {
    // Rows summing several slots expand in column chunks (sgmv's phase 2);
    // the stacked shrink would save little there: one module at a time.
    for (size_t m = 0; m < ys.size(); ++m) {
      scratch.module_views.assign(slots.size(), LoraModuleView{});
      for (size_t s = 0; s < slots.size(); ++s)
        if (slots[s].rank_total > 0) scratch.module_views[s] = slots[s].modules[m];
      sgmv(kern, plan, scratch.module_views, x, in, ys[m], outs[m], scratch, parallel);
    }
    return;
  }
  rows_pass(
      kern, plan, slots.size(), [&](int32_t slot) -> const LoraGroupView& { return slots[size_t(slot)]; }, x,
      in, ys, outs, scratch, parallel);
}

const Kernels kPortableKernels{shrink_portable, expand_portable, expand_each_row<expand_portable>};
const Kernels kAvx2Kernels{detail::lora_shrink_avx2, detail::lora_expand_avx2, detail::lora_expand_rows_avx2};
const Kernels kAvx512Kernels{shrink_avx512, expand_avx512, expand_each_row<expand_avx512>};

}  // namespace

void lora_sgmv_portable(const LoraBatchPlan& plan, std::span<const LoraModuleView> slots, const float* x,
                        int64_t in, float* y, int64_t out, LoraScratch& scratch,
                        const LoraParallelFor& parallel) {
  sgmv(kPortableKernels, plan, slots, x, in, y, out, scratch, parallel);
}

LoraIsa lora_best_isa() {
  static const LoraIsa best = [] {
    if (!cpu_info().avx2_fma) return LoraIsa::kPortable;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return LoraIsa::kAvx512;
#endif
    return LoraIsa::kAvx2;
  }();
  return best;
}

namespace {
std::atomic<LoraIsa> g_lora_isa_limit{LoraIsa::kAvx512};
}  // namespace

LoraIsa lora_isa() { return std::min(lora_best_isa(), g_lora_isa_limit.load(std::memory_order_relaxed)); }
void lora_limit_isa(LoraIsa max) { g_lora_isa_limit.store(max); }
void lora_prefetch_next_block(bool on) { g_prefetch_next_block.store(on); }

const char* lora_isa_name(LoraIsa isa) {
  switch (isa) {
    case LoraIsa::kAvx512: return "avx512";
    case LoraIsa::kAvx2: return "avx2";
    case LoraIsa::kPortable: break;
  }
  return "portable";
}

namespace {
const Kernels& kernels_for(LoraIsa isa) {
  MYRIAD_CHECK(isa <= lora_best_isa(),
               std::string("LoRA kernels for ") + lora_isa_name(isa) + " on a CPU without them");
  switch (isa) {
    case LoraIsa::kAvx512:
      return kAvx512Kernels;
    case LoraIsa::kAvx2:
      return kAvx2Kernels;
    case LoraIsa::kPortable:
      break;
  }
  return kPortableKernels;
}

}  // namespace

void lora_sgmv_isa(LoraIsa isa, const LoraBatchPlan& plan, std::span<const LoraModuleView> slots,
                   const float* x, int64_t in, float* y, int64_t out, LoraScratch& scratch,
                   const LoraParallelFor& parallel) {
  sgmv(kernels_for(isa), plan, slots, x, in, y, out, scratch, parallel);
}

void lora_sgmv_group_isa(LoraIsa isa, const LoraBatchPlan& plan, std::span<const LoraGroupView> slots,
                         const float* x, int64_t in, std::span<float* const> ys,
                         std::span<const int64_t> outs, LoraScratch& scratch,
                         const LoraParallelFor& parallel) {
  sgmv_group(kernels_for(isa), plan, slots, x, in, ys, outs, scratch, parallel);
}

void lora_sgmv_group(const LoraBatchPlan& plan, std::span<const LoraGroupView> slots, const float* x,
                     int64_t in, std::span<float* const> ys, std::span<const int64_t> outs,
                     LoraScratch& scratch, const LoraParallelFor& parallel) {
  lora_sgmv_group_isa(lora_isa(), plan, slots, x, in, ys, outs, scratch, parallel);
}

void lora_sgmv(const LoraBatchPlan& plan, std::span<const LoraModuleView> slots, const float* x, int64_t in,
               float* y, int64_t out, LoraScratch& scratch, const LoraParallelFor& parallel) {
  lora_sgmv_isa(lora_isa(), plan, slots, x, in, y, out, scratch, parallel);
}

void lora_reference(std::span<const AdapterMix> per_token, std::span<const LoraModuleView> slots, const float* x,
                    int64_t in, float* y, int64_t out) {
  std::vector<double> h;
  for (size_t t = 0; t < per_token.size(); ++t) {
    const AdapterMix& m = per_token[t];
    const float* xt = x + int64_t(t) * in;
    float* yt = y + int64_t(t) * out;
    std::vector<double> delta(size_t(out), 0.0);
    for (uint8_t i = 0; i < m.count; ++i) {
      const AdapterRef& r = m.refs[i];
      if (r.slot < 0) continue;
      const LoraModuleView& v = slots[size_t(r.slot)];
      h.assign(size_t(v.rank), 0.0);
      for (int32_t k = 0; k < v.rank; ++k) {
        for (int64_t j = 0; j < in; ++j) h[size_t(k)] += double(v.a_at(int64_t(k) * in + j)) * double(xt[j]);
      }
      for (int64_t o = 0; o < out; ++o) {
        double acc = 0.0;
        for (int32_t k = 0; k < v.rank; ++k) acc += double(v.bt_at(int64_t(k) * out + o)) * h[size_t(k)];
        delta[size_t(o)] += double(r.weight) * double(v.scale) * acc;
      }
    }
    for (int64_t o = 0; o < out; ++o) yt[o] = float(double(yt[o]) + delta[size_t(o)]);
  }
}

}  // namespace myriad::gpu::cpu
