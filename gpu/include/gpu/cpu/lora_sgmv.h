// Batched multi-LoRA on the CPU: the segmented gather matmul ("SGMV") that
// adds every row's low-rank delta after the one base GEMM of a linear module.
//
//   y[t, :] += sum over (slot s, weight w) in row t's AdapterMix of
//              w * scale_s * (x[t, :] · A_sᵀ) · B_sᵀ
//
// Rows are grouped by slot once per step (LoraBatchPlan); then, per module,
// one shrink pass (x·Aᵀ for all rows of all slots, each slot at its TRUE
// rank) and one expand pass (·Bᵀ, scaled, accumulated into y). Rows with no
// adapter are not touched. A row with several slots (a mixture) adds each
// weighted delta in slot order. Nothing is merged into the base weights.
//
// Invariant: a row's result depends only on that row's x, mixture and slot
// weights, never on the other rows of the batch (same arithmetic order).
// Thread-safety: the functions are pure; a LoraScratch belongs to one caller.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/step_plan.h"

namespace myriad::gpu::cpu {

// One slot's weights for one (layer, module) as the kernels read them.
// Weights are f32 (exact: the default) or bf16 (half the bytes to read, for
// serving next to a bf16 base model); compute is f32 either way.
struct LoraModuleView {
  const void* a = nullptr;    // [rank, in] of `dtype`
  const void* bt = nullptr;   // [rank, out] of `dtype`: B transposed, so expand reads along out
  int32_t rank = 0;           // 0 => this slot's adapter does not target the module
  float scale = 0.0f;         // alpha / r (or alpha / sqrt(r) with rslora)
  DType dtype = DType::kF32;  // kF32 or kBF16

  float a_at(int64_t i) const;   // element i of A as f32
  float bt_at(int64_t i) const;  // element i of Bᵀ as f32
};

// The rows of one step grouped by slot. Built once per step, shared by every
// layer and module.
struct LoraSegment {
  int32_t slot = -1;
  uint32_t begin = 0, end = 0;  // range in LoraBatchPlan::rows / weights
};

// Rows of one slot that the kernels take together: each load of A and Bᵀ
// serves all of them.
inline constexpr int kLoraBlockRows = 4;
struct LoraBlock {
  uint32_t segment = 0;
  uint32_t begin = 0;  // entry index
  uint32_t count = 0;  // 1..kLoraBlockRows
};

struct LoraBatchPlan {
  std::vector<uint32_t> rows;         // token row index, grouped by slot (ascending rows within a slot)
  std::vector<float> weights;         // mixture weight of that row for that slot
  std::vector<LoraSegment> segments;  // ascending slot
  std::vector<uint32_t> segment_of;   // per entry: index into segments
  // The entries cut into blocks of up to kLoraBlockRows of one segment: the
  // kernels' parallel work items (a slot's rows stay together on a thread).
  std::vector<LoraBlock> blocks;
  bool has_mixture = false;           // some row appears in several segments
  uint32_t num_rows = 0;              // T, rows of the step (with or without adapters)

  // Rebuilds from one AdapterMix per token row. Refs with slot < 0 or weight
  // 0 are skipped. Reuses capacity.
  void build(std::span<const AdapterMix> per_token);
  bool empty() const { return segments.empty(); }
  size_t num_distinct_slots() const { return segments.size(); }
};

// Runs body(begin, end) over a partition of [0, n); may run chunks on several
// threads and returns when all are done. Empty => serial.
using LoraParallelFor = std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& body)>;

struct LoraScratch {
  std::vector<float> h;                      // [sum over plan entries of their slot's rank]
  std::vector<uint32_t> h_offset;            // per segment: start of its block in h
  std::vector<LoraModuleView> module_views;  // lora_sgmv_group with mixtures: one module's views
};

// The fast kernel: AVX-512 where the CPU has AVX-512F/BW, else AVX2+FMA, else
// portable loops (lora_isa()).
// `slots[s]` is slot s's view of this (layer, module).
// x: [T, in] row-major, y: [T, out] row-major (accumulated into).
void lora_sgmv(const LoraBatchPlan& plan, std::span<const LoraModuleView> slots, const float* x, int64_t in,
               float* y, int64_t out, LoraScratch& scratch, const LoraParallelFor& parallel = {});

// Modules of one layer that read the same input (q, k and v; gate and up),
// stored so that one slot's A matrices are one block: [Σ rank, in], module
// after module at their true ranks, then their Bᵀ one after another. One
// shrink over the stacked A gives every module's h at once, so a row reads
// its adapter's bytes of the whole group in one run instead of a short run
// per module (with one adapter per row, the runs' length bounds the rate).
// Per (row, k) the arithmetic is that of lora_sgmv, so the results are
// bit-identical to one lora_sgmv call per module.
inline constexpr int kMaxGroupModules = 3;
struct LoraGroupView {
  const void* a = nullptr;  // [rank_total, in]: module 0's A rows, then module 1's, ...
  int32_t rank_total = 0;   // 0 => the slot's adapter targets none of the group
  DType dtype = DType::kF32;
  int32_t num_modules = 0;
  LoraModuleView modules[kMaxGroupModules];  // each module's own view (its a points into the stack)
};

// For each module m of the group: ys[m] ([T, outs[m]]) += that module's delta,
// as lora_sgmv(plan, <views of m>, x, in, ys[m], outs[m]) would add it.
// ys.size() == outs.size() == every slot's num_modules (or the slot is empty).
void lora_sgmv_group(const LoraBatchPlan& plan, std::span<const LoraGroupView> slots, const float* x,
                     int64_t in, std::span<float* const> ys, std::span<const int64_t> outs,
                     LoraScratch& scratch, const LoraParallelFor& parallel = {});

// The instruction sets the shrink/expand loops come in, chosen at run time.
enum class LoraIsa : uint8_t { kPortable = 0, kAvx2 = 1, kAvx512 = 2 };
LoraIsa lora_best_isa();
const char* lora_isa_name(LoraIsa isa);  // "portable", "avx2", "avx512"
// What lora_sgmv uses: lora_best_isa(), or less after lora_limit_isa (benches
// comparing kernels in one run; process-wide).
LoraIsa lora_isa();
void lora_limit_isa(LoraIsa max);
// Whether the no-mixture pass prefetches the next block's weights while it
// computes a block (detail::LoraPrefetch; on by default). Process-wide; for
// benches timing both in one run. Results are the same either way.
void lora_prefetch_next_block(bool on);
// lora_sgmv with one ISA's loops (tests and benches); `isa` must not be
// above lora_best_isa() (checked).
void lora_sgmv_isa(LoraIsa isa, const LoraBatchPlan& plan, std::span<const LoraModuleView> slots,
                   const float* x, int64_t in, float* y, int64_t out, LoraScratch& scratch,
                   const LoraParallelFor& parallel = {});

// lora_sgmv_group likewise.
void lora_sgmv_group_isa(LoraIsa isa, const LoraBatchPlan& plan, std::span<const LoraGroupView> slots,
                         const float* x, int64_t in, std::span<float* const> ys,
                         std::span<const int64_t> outs, LoraScratch& scratch,
                         const LoraParallelFor& parallel = {});

// Same contract, portable loops only (the fallback; also tested on AVX2 hosts).
void lora_sgmv_portable(const LoraBatchPlan& plan, std::span<const LoraModuleView> slots, const float* x,
                        int64_t in, float* y, int64_t out, LoraScratch& scratch,
                        const LoraParallelFor& parallel = {});

// The plain reference: per row, per ref, h = A x, y += w * scale * B h, in
// double, straight from the AdapterMix (no plan, no grouping); weights read
// through a_at / bt_at (so bf16 views are compared on the same rounded values).
void lora_reference(std::span<const AdapterMix> per_token, std::span<const LoraModuleView> slots, const float* x,
                    int64_t in, float* y, int64_t out);

namespace detail {
// AVX2 variants (lora_sgmv_avx2.cpp, compiled with -mavx2 -mfma).
// Up to kShrinkRows rows sharing one A: h[r, k] = A[k, :] · xs[r]. Each
// (row, k) is one FMA chain in a fixed order, so grouping never changes a
// row's result.
inline constexpr int kShrinkRows = kLoraBlockRows;

// The weights of the block a thread takes next (another slot's), pulled into
// the cache while this block's are read: a kernel given one prefetches about
// as many bytes of the spans as it reads (the next 128 bytes per tick of its
// loop, so a little ahead). With one adapter per row,
// the loads of a block alone leave the memory idle while they are computed
// on; this keeps the next block's bytes streaming meanwhile. Prefetching
// changes no result. Plain data: the kernels advance it (lora_sgmv_avx2.cpp).
struct LoraPrefetch {
  static constexpr int kMaxSpans = 1 + kMaxGroupModules;  // the stacked A, each Bᵀ
  const char* at[kMaxSpans] = {};
  const char* end[kMaxSpans] = {};
  int count = 0;    // spans added
  int current = 0;  // the span being prefetched

  void add(const void* p, int64_t bytes);  // ignored past kMaxSpans or when empty
};

void lora_shrink_avx2(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in,
                      float* h, LoraPrefetch* prefetch);
void lora_expand_avx2(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin,
                      int64_t o_end, int64_t out, LoraPrefetch* prefetch);
// lora_expand_avx2 for nrows (<= kShrinkRows) rows of one slot: ys[r] +=
// hs[r] · Bᵀ, each load of Bᵀ shared by the rows; per element the same
// arithmetic as one row alone.
void lora_expand_rows_avx2(const void* bt, DType dt, int32_t rank, const float* const* hs, float* const* ys,
                           int nrows, int64_t o_begin, int64_t o_end, int64_t out, LoraPrefetch* prefetch);
// AVX-512 variants (lora_sgmv_avx512.cpp, `#pragma GCC target`): the same
// contract at 16 floats a vector. They take no LoraPrefetch (not yet measured
// on an AVX-512 machine).
void lora_shrink_avx512(const void* a, DType dt, int32_t rank, const float* const* xs, int nrows, int64_t in,
                        float* h);
void lora_expand_avx512(const void* bt, DType dt, int32_t rank, const float* h, float* y, int64_t o_begin,
                        int64_t o_end, int64_t out);
}  // namespace detail

}  // namespace myriad::gpu::cpu
