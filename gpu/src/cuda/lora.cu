// SGMV's kernels read a "batch view" that maps a grid segment to (slot,
// first entry, entries) and an entry to (token, weight); BGMV (decode: each
// token its own segment) has kernels shaped for that (gathered_*).
//
// Both take a group of modules over one input (q|k|v, gate|up; one module is
// a group of one): grid.y spans every member's rank rows (shrink) or output
// columns (expand), so the group costs one launch each.
//
// shrink: block = (segment, member and rank row r, tile of kEntries entries). Threads
//   stride over `in` in 16-byte chunks (scalar when rows are not aligned), one
//   A_slot[r] chunk against kEntries x rows, then a fixed-order block
//   reduction per entry (deterministic).
// BGMV shrink (one token a segment, decode): block = (token, kShrinkWarps
//   rank rows of the group), a warp per row streaming A_slot[r] against the
//   token's x row with a warp reduction: eight rows of work a block and no
//   block barrier, where the segmented form spent a block and two barriers
//   on each (token, row) dot product.
// BGMV expand: block = (kExpandTokens consecutive tokens, 256 output
//   features), each token with its own slot: thread o loads the tile's y
//   values up front, then adds each token's B_slot[o, 0:r] . v (the B row
//   comes from L1 after the first token of a slot), the same sums in the same
//   order as one token a block did, in a quarter of the blocks.
// expand: block = (segment, 256 output features, tile of kEntries entries).
//   The tile's v rows sit in shared memory; thread o reads B_slot[o, 0:r]
//   once (16-byte chunks when max_rank allows) for all the tile's entries and
//   updates y[token, o] (each (token, o) has one writer per launch, so no
//   atomics).
#include <algorithm>
#include <type_traits>

#include "cuda_check.cuh"
#include "gpu/cuda/lora.h"
#include "kernel_common.cuh"
#include "lora_device.cuh"

namespace myriad::gpu::cuda {
namespace {

constexpr int kEntries = 8;
constexpr int kShrinkThreads = 256;
constexpr int kExpandThreads = 256;
constexpr int kShrinkWarps = 8;   // rank rows per block of the BGMV shrink
constexpr int kExpandTokens = 4;  // tokens per block of the BGMV expand

struct SegmentedView {
  SgmvBatch b;
  __device__ int slot(int seg) const { return b.seg_slot[seg]; }
  __device__ int start(int seg) const { return b.seg_start[seg]; }
  __device__ int len(int seg) const { return b.seg_start[seg + 1] - b.seg_start[seg]; }
  __device__ int token(int e) const { return b.entry_token[e]; }
  __device__ float weight(int e) const { return b.entry_weight[e]; }
};

// BGMV's tokens, each its own segment (the gathered_* kernels read it).
struct GatheredView {
  const int32_t* token_slot;
  const float* token_weight;  // nullptr: 1 for every token
  __device__ int slot(int token) const { return token_slot[token]; }
  __device__ float weight(int token) const { return token_weight ? token_weight[token] : 1.0f; }
};

// blockIdx.y = member * max_rank + rank row; v rows are count * max_rank wide.
template <class T, class View>
__global__ void shrink_kernel(float* __restrict__ v, const T* __restrict__ x, int64_t ldx, LoraGroupSlots g,
                              View view, bool vec) {  // vec: 16-byte loads of A and x rows are aligned
  __shared__ float scratch[33];
  const int seg = blockIdx.x;
  const int max_rank = g.member[0].max_rank;
  const int mi = int(blockIdx.y) / max_rank, r = int(blockIdx.y) % max_rank;
  const LoraModuleSlots& w = member(g, mi);
  const int slot = view.slot(seg);
  if (slot < 0 || slot >= w.num_slots || r >= w.ranks[int64_t(slot) * w.meta_stride]) return;  // uniform per block
  const int e0 = view.start(seg) + int(blockIdx.z) * kEntries;
  const int n = min(kEntries, view.start(seg) + view.len(seg) - e0);
  if (n <= 0) return;
  const T* a = static_cast<const T*>(w.a) + int64_t(slot) * a_slot_stride(w) + int64_t(r) * w.in;
  int tok[kEntries];
#pragma unroll
  for (int e = 0; e < kEntries; ++e) tok[e] = e < n ? view.token(e0 + e) : 0;
  float acc[kEntries];
#pragma unroll
  for (int e = 0; e < kEntries; ++e) acc[e] = 0.0f;
  if (vec) {  // one 16-byte chunk of A and of each x row per thread and step: all loads in flight
    constexpr int V = kVec<T>;
    for (int64_t k = int64_t(threadIdx.x) * V; k < w.in; k += int64_t(blockDim.x) * V) {
      float af[V];
      load16(a + k, af);
#pragma unroll
      for (int e = 0; e < kEntries; ++e)
        if (e < n) {
          float xf[V];
          load16(x + int64_t(tok[e]) * ldx + k, xf);
#pragma unroll
          for (int i = 0; i < V; ++i) acc[e] += af[i] * xf[i];
        }
    }
  } else {
    for (int64_t k = threadIdx.x; k < w.in; k += blockDim.x) {
      const float ak = to_f32(a[k]);
#pragma unroll
      for (int e = 0; e < kEntries; ++e)
        if (e < n) acc[e] += ak * to_f32(x[int64_t(tok[e]) * ldx + k]);
    }
  }
  const int64_t v_stride = int64_t(g.count) * max_rank;
#pragma unroll
  for (int e = 0; e < kEntries; ++e) {
    if (e >= n) break;  // n is uniform across the block
    const float s = block_sum(acc[e], scratch);
    if (threadIdx.x == 0) v[int64_t(e0 + e) * v_stride + blockIdx.y] = s;
  }
}

// blockIdx.x = token, row = blockIdx.y * kShrinkWarps + warp = member * max_rank + rank row.
template <class T>
__global__ void __launch_bounds__(kShrinkWarps * 32)
    gathered_shrink_kernel(float* __restrict__ v, const T* __restrict__ x, int64_t ldx, LoraGroupSlots g,
                           const int32_t* __restrict__ token_slot, bool vec) {  // vec: as shrink_kernel's
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int token = int(blockIdx.x), max_rank = g.member[0].max_rank;
  const int row = int(blockIdx.y) * kShrinkWarps + warp;
  if (row >= g.count * max_rank) return;  // the whole warp
  const int mi = row / max_rank, r = row % max_rank;
  const LoraModuleSlots& w = member(g, mi);
  const int slot = token_slot[token];
  if (slot < 0 || slot >= w.num_slots || r >= w.ranks[int64_t(slot) * w.meta_stride]) return;
  const T* a = static_cast<const T*>(w.a) + int64_t(slot) * a_slot_stride(w) + int64_t(r) * w.in;
  const T* xr = x + int64_t(token) * ldx;
  float acc = 0.0f;
  if (vec) {
    constexpr int V = kVec<T>;
#pragma unroll 4
    for (int64_t k = int64_t(lane) * V; k < w.in; k += 32 * V) {
      float af[V], xf[V];
      load16(a + k, af);
      load16(xr + k, xf);
#pragma unroll
      for (int i = 0; i < V; ++i) acc += af[i] * xf[i];
    }
  } else {
    for (int64_t k = lane; k < w.in; k += 32) acc += to_f32(a[k]) * to_f32(xr[k]);
  }
  acc = warp_sum(acc);
  if (lane == 0) v[int64_t(token) * g.count * max_rank + row] = acc;
}

// Output columns o of the whole group: member mi owns [col0, col0 + out_mi).
template <class T, class View>
__global__ void expand_kernel(T* y, int64_t ldy, const float* __restrict__ v, LoraGroupSlots g, View view,
                              bool vec) {  // vec: 16-byte loads of B rows are aligned
  extern __shared__ float vs[];  // [kEntries, count * max_rank]
  const int seg = blockIdx.x;
  const int slot = view.slot(seg);
  const int max_rank = g.member[0].max_rank;
  if (slot < 0 || slot >= g.member[0].num_slots) return;  // uniform per block
  const int e0 = view.start(seg) + int(blockIdx.z) * kEntries;
  const int n = min(kEntries, view.start(seg) + view.len(seg) - e0);
  if (n <= 0) return;
  const int vw = g.count * max_rank;
  for (int i = threadIdx.x; i < n * vw; i += blockDim.x) vs[i] = v[int64_t(e0) * vw + i];
  __syncthreads();
  int64_t o = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  int mi = 0;
  while (mi + 1 < g.count && o >= member(g, mi).out) o -= member(g, mi++).out;  // o: the member's own column
  const LoraModuleSlots& w = member(g, mi);
  if (o >= w.out) return;  // past the group's last column
  const int rank = w.ranks[int64_t(slot) * w.meta_stride];
  if (rank <= 0) return;
  int64_t col0 = 0;
  for (int j = 0; j < mi; ++j) col0 += member(g, j).out;
  const T* b = static_cast<const T*>(w.b) + int64_t(slot) * b_slot_stride(w) + o * max_rank;
  const float scale = w.scales[int64_t(slot) * w.meta_stride];
  const float* vm = vs + mi * max_rank;
  // B_slot[o, 0:rank] is read once (16-byte chunks when vec) and used for every
  // entry of the tile; d[e] sums over r in ascending order either way.
  float d[kEntries];
#pragma unroll
  for (int e = 0; e < kEntries; ++e) d[e] = 0.0f;
  if (vec) {
    constexpr int V = kVec<T>;
#pragma unroll 4
    for (int c = 0; c < rank; c += V) {
      float bf[V];
      load16(b + c, bf);
#pragma unroll
      for (int e = 0; e < kEntries; ++e)
        if (e < n) {
#pragma unroll
          for (int i = 0; i < V; ++i)
            if (c + i < rank) d[e] += bf[i] * vm[e * vw + c + i];
        }
    }
  } else {
    for (int r = 0; r < rank; ++r) {
      const float br = to_f32(b[r]);
#pragma unroll
      for (int e = 0; e < kEntries; ++e)
        if (e < n) d[e] += br * vm[e * vw + r];
    }
  }
#pragma unroll
  for (int e = 0; e < kEntries; ++e) {
    if (e >= n) break;
    T* yp = y + int64_t(view.token(e0 + e)) * ldy + col0 + o;
    *yp = from_f32<T>(lora_add(to_f32(*yp), view.weight(e0 + e), scale, d[e]));
  }
}

// blockIdx.x = tile of kExpandTokens tokens, blockIdx.y = 256 of the group's output columns.
template <class T>
__global__ void gathered_expand_kernel(T* y, int64_t ldy, const float* __restrict__ v, LoraGroupSlots g,
                                       GatheredView view, int tokens, bool vec) {  // vec: as expand_kernel's
  extern __shared__ float vs[];  // [kExpandTokens, count * max_rank]
  const int max_rank = g.member[0].max_rank, vw = g.count * max_rank;
  const int e0 = int(blockIdx.x) * kExpandTokens, n = min(kExpandTokens, tokens - e0);
  for (int i = threadIdx.x; i < n * vw; i += blockDim.x) vs[i] = v[int64_t(e0) * vw + i];
  __syncthreads();
  int64_t o = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  int mi = 0;
  while (mi + 1 < g.count && o >= member(g, mi).out) o -= member(g, mi++).out;
  const LoraModuleSlots& w = member(g, mi);
  if (o >= w.out) return;
  int64_t col0 = 0;
  for (int j = 0; j < mi; ++j) col0 += member(g, j).out;
  float yv[kExpandTokens];
#pragma unroll
  for (int e = 0; e < kExpandTokens; ++e)
    if (e < n) yv[e] = to_f32(y[int64_t(e0 + e) * ldy + col0 + o]);  // all in flight at once
#pragma unroll
  for (int e = 0; e < kExpandTokens; ++e) {
    if (e >= n) break;
    const int slot = view.slot(e0 + e);
    if (slot < 0 || slot >= w.num_slots) continue;
    const int rank = w.ranks[int64_t(slot) * w.meta_stride];
    if (rank <= 0) continue;
    const T* b = static_cast<const T*>(w.b) + int64_t(slot) * b_slot_stride(w) + o * max_rank;
    const float scale = w.scales[int64_t(slot) * w.meta_stride];
    const float d = b_row_dot(b, vs + e * vw + mi * max_rank, rank, vec);
    y[int64_t(e0 + e) * ldy + col0 + o] = from_f32<T>(lora_add(yv[e], view.weight(e0 + e), scale, d));
  }
}

Status check_group(const char* k, const LoraGroupSlots& g) {
  if (g.count < 1 || g.count > kMaxLoraGroup)
    return make_error(ErrorCode::kInvalidArgument, std::string(k) + ": group of " + std::to_string(g.count) +
                                                       " modules (1.." + std::to_string(kMaxLoraGroup) + ")");
  for (int i = 0; i < g.count; ++i) {
    const LoraModuleSlots& w = g.member[i];
    if (w.max_rank <= 0 || w.max_rank > kMaxLoraRank || w.in <= 0 || w.out <= 0 || w.num_slots <= 0 ||
        w.meta_stride <= 0 || w.slot_stride < 0 ||
        (w.slot_stride > 0 && w.slot_stride < std::max(int64_t(w.max_rank) * w.in, w.out * w.max_rank)))
      return make_error(ErrorCode::kInvalidArgument,
                        std::string(k) + ": bad slots max_rank=" + std::to_string(w.max_rank) + " in=" +
                            std::to_string(w.in) + " out=" + std::to_string(w.out) + " slots=" +
                            std::to_string(w.num_slots));
    if (w.max_rank != g.member[0].max_rank || w.in != g.member[0].in || w.num_slots != g.member[0].num_slots)
      return make_error(ErrorCode::kInvalidArgument,
                        std::string(k) + ": group member " + std::to_string(i) +
                            " differs from member 0 in max_rank, in or num_slots");
  }
  return ok_status();
}

// Whether every member's B rows take 16-byte loads (max_rank, base and slot
// stride aligned): the expands' and the epilogue's `vec`.
template <class T>
bool b_rows_vec(const LoraGroupSlots& g) {
  bool vec = g.member[0].max_rank % kVec<T> == 0;
  for (int i = 0; i < g.count; ++i) vec = vec && aligned16(g.member[i].b) && g.member[i].slot_stride % kVec<T> == 0;
  return vec;
}

int64_t group_out(const LoraGroupSlots& g) {
  int64_t n = 0;
  for (int i = 0; i < g.count; ++i) n += g.member[i].out;
  return n;
}

template <class View>
Status shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraGroupSlots& g, View view, int64_t segs,
              int64_t max_len, StreamHandle stream) {
  MYRIAD_TRY(check_group("lora shrink", g));
  if (ldx < g.member[0].in) return make_error(ErrorCode::kInvalidArgument, "lora shrink: ldx < in");
  if (segs == 0 || max_len == 0) return ok_status();
  if (segs < 0 || segs > INT32_MAX || max_len < 0)
    return make_error(ErrorCode::kInvalidArgument, "lora shrink: bad segment count " + std::to_string(segs));
  constexpr bool gathered = std::is_same_v<View, GatheredView>;
  const int rows = g.count * g.member[0].max_rank;
  const dim3 grid = gathered ? dim3(unsigned(segs), ceil_div(rows, kShrinkWarps))
                             : dim3(unsigned(segs), unsigned(rows), ceil_div(max_len, kEntries));
  return MYRIAD_DISPATCH_DTYPE(dtype, "lora shrink", {
    bool vec = g.member[0].in % kVec<T> == 0 && ldx % kVec<T> == 0 && aligned16(x);
    for (int i = 0; i < g.count; ++i) vec = vec && aligned16(g.member[i].a) && g.member[i].slot_stride % kVec<T> == 0;
    if constexpr (gathered)
      gathered_shrink_kernel<T><<<grid, kShrinkWarps * 32, 0, stream>>>(v, static_cast<const T*>(x), ldx, g,
                                                                        view.token_slot, vec);
    else
      shrink_kernel<T, View><<<grid, kShrinkThreads, 0, stream>>>(v, static_cast<const T*>(x), ldx, g, view, vec);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

template <class View>
Status expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraGroupSlots& g, View view, int64_t segs,
              int64_t max_len, StreamHandle stream) {
  MYRIAD_TRY(check_group("lora expand", g));
  if (ldy < group_out(g)) return make_error(ErrorCode::kInvalidArgument, "lora expand: ldy < the group's outputs");
  if (segs == 0 || max_len == 0) return ok_status();
  if (segs < 0 || segs > INT32_MAX || max_len < 0)
    return make_error(ErrorCode::kInvalidArgument, "lora expand: bad segment count " + std::to_string(segs));
  constexpr bool gathered = std::is_same_v<View, GatheredView>;
  const int64_t tile = gathered ? kExpandTokens : kEntries;
  const unsigned col_blocks = ceil_div(group_out(g), kExpandThreads);
  const dim3 grid = gathered ? dim3(ceil_div(segs, kExpandTokens), col_blocks)
                             : dim3(unsigned(segs), col_blocks, ceil_div(max_len, kEntries));
  const size_t smem = sizeof(float) * size_t(tile) * size_t(g.count) * size_t(g.member[0].max_rank);
  return MYRIAD_DISPATCH_DTYPE(dtype, "lora expand", {
    const bool vec = b_rows_vec<T>(g);
    if constexpr (gathered)
      gathered_expand_kernel<T><<<grid, kExpandThreads, smem, stream>>>(static_cast<T*>(y), ldy, v, g, view,
                                                                        int(segs), vec);
    else
      expand_kernel<T, View><<<grid, kExpandThreads, smem, stream>>>(static_cast<T*>(y), ldy, v, g, view, vec);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

}  // namespace

Status sgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraGroupSlots& g,
                   const SgmvBatch& batch, StreamHandle stream) {
  return shrink(dtype, v, x, ldx, g, SegmentedView{batch}, batch.num_segments, batch.max_segment_len, stream);
}
Status sgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraGroupSlots& g,
                   const SgmvBatch& batch, StreamHandle stream) {
  return expand(dtype, y, ldy, v, g, SegmentedView{batch}, batch.num_segments, batch.max_segment_len, stream);
}
Status bgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraGroupSlots& g,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream) {
  return shrink(dtype, v, x, ldx, g, GatheredView{token_slot, nullptr}, tokens, 1, stream);
}
Status bgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraGroupSlots& g,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream, const float* token_weight) {
  return expand(dtype, y, ldy, v, g, GatheredView{token_slot, token_weight}, tokens, 1, stream);
}

Result<LoraEpilogue> lora_epilogue(DType dtype, const LoraGroupSlots& g, const float* v, const int32_t* token_slot,
                                   const float* token_weight) {
  MYRIAD_TRY(check_group("lora epilogue", g));
  if (v == nullptr || token_slot == nullptr)
    return make_error(ErrorCode::kInvalidArgument, "lora epilogue: v and token_slot are required");
  LoraEpilogue ep;
  ep.g = g;
  ep.v = v;
  ep.token_slot = token_slot;
  ep.token_weight = token_weight;
  MYRIAD_TRY(MYRIAD_DISPATCH_DTYPE(dtype, "lora epilogue", {
    ep.vec = b_rows_vec<T>(g);
    return ok_status();
  }));
  return ep;
}

Status sgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraModuleSlots& w,
                   const SgmvBatch& batch, StreamHandle stream) {
  return sgmv_shrink(dtype, v, x, ldx, lora_group(w), batch, stream);
}
Status sgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraModuleSlots& w,
                   const SgmvBatch& batch, StreamHandle stream) {
  return sgmv_expand(dtype, y, ldy, v, lora_group(w), batch, stream);
}
Status bgmv_shrink(DType dtype, float* v, const void* x, int64_t ldx, const LoraModuleSlots& w,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream) {
  return bgmv_shrink(dtype, v, x, ldx, lora_group(w), token_slot, tokens, stream);
}
Status bgmv_expand(DType dtype, void* y, int64_t ldy, const float* v, const LoraModuleSlots& w,
                   const int32_t* token_slot, int64_t tokens, StreamHandle stream, const float* token_weight) {
  return bgmv_expand(dtype, y, ldy, v, lora_group(w), token_slot, tokens, stream, token_weight);
}

}  // namespace myriad::gpu::cuda
