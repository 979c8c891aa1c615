// Attention: one block per (query token, query head), flattened as
// blockIdx.x = token * num_heads + head so that the heads of one GQA group run
// next to each other and share K/V reads through L2. The block's kWarps warps
// split the key range (warp w takes tiles of 32 keys w, w + kWarps, ...), each
// with its own online softmax (running max and sum); the partial results are
// combined through shared memory at the end. Inside a tile, one key per lane
// for the scores; the lane also computes its key's cache offset once and
// broadcasts it with the probability for the V pass, so the table lookup is
// off the serial chain and the unrolled V loop keeps several loads in flight.
//
// Split-K (flash-decoding): when a launch has fewer blocks than it takes to
// fill the device, grid.y splits each (token, head)'s keys [0, pos] into
// equal shares (rounded up to whole 32-key tiles); each block writes its
// unnormalized partial (max, sum, acc) to the workspace and
// attention_combine_kernel rescales the shares to their common max. The
// split count depends on the launch shape only, so graphs replay it.
// See docs/cuda-backend.md.
#include <algorithm>
#include <atomic>

#include "cuda_check.cuh"
#include "gpu/cuda/paged_attention.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {
namespace {

template <class T>
__global__ void kv_write_kernel(T* __restrict__ k_cache, T* __restrict__ v_cache, const T* __restrict__ k,
                                int64_t k_stride, const T* __restrict__ v, int64_t v_stride,
                                const int32_t* __restrict__ slots, int width) {
  const int t = blockIdx.x;
  const int32_t slot = slots[t];
  if (slot < 0) return;
  for (int i = threadIdx.x; i < width; i += blockDim.x) {
    k_cache[int64_t(slot) * width + i] = k[int64_t(t) * k_stride + i];
    v_cache[int64_t(slot) * width + i] = v[int64_t(t) * v_stride + i];
  }
}

constexpr int kWarps = 8;
constexpr int kMaxHeadDim = 256;

template <class T, int DPL>
__device__ __forceinline__ void accumulate_v(float (&acc)[DPL], const T* __restrict__ vbase, float p, int64_t off,
                                             int kk, int lane, int head_dim) {
  const float pk = __shfl_sync(0xffffffffu, p, kk);
  const int64_t o = __shfl_sync(0xffffffffu, off, kk);
  const T* vp = vbase + o;
#pragma unroll
  for (int j = 0; j < DPL; ++j) {
    const int d = lane + 32 * j;
    if (d < head_dim) acc[j] += pk * to_f32(vp[d]);
  }
}

// Combines a block's per-warp partial softmaxes for one head (running max m,
// sum l, unnormalized acc over this lane's dims) into out_row[0, head_dim),
// or, for a split share (split_out != null), into its partial
// [max, sum, acc[head_dim]] left unnormalized. Every warp publishes its
// partials in shared memory, then the block rescales them to the common max.
// A warp without keys has m = -inf, l = 0 and acc = 0, so it adds nothing;
// unsplit, warp 0 always has key 0; a share may have no key at all (max
// -inf), which the merge weighs 0. part_acc is [kWarps][stride]. The caller
// must barrier before reusing part_* for another head.
template <class T, int DPL>
__device__ __forceinline__ void combine_warp_partials(float m, float l, const float (&acc)[DPL], int warp, int lane,
                                                      int head_dim, float* part_m, float* part_l, float* part_acc,
                                                      int stride, T* out_row, float* split_out) {
  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int j = 0; j < DPL; ++j) {
    const int d = lane + 32 * j;
    if (d < head_dim) part_acc[warp * stride + d] = acc[j];
  }
  __syncthreads();
  float mt = part_m[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) mt = fmaxf(mt, part_m[w]);
  const bool no_keys = mt == -INFINITY;  // only a split share
  float f[kWarps], lt = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    f[w] = no_keys ? 0.0f : expf(part_m[w] - mt);
    lt += part_l[w] * f[w];
  }
  if (split_out) {
    if (threadIdx.x == 0) split_out[0] = mt, split_out[1] = lt;
    for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
      float a = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) a += part_acc[w * stride + d] * f[w];
      split_out[2 + d] = a;
    }
    return;
  }
  const float inv = 1.0f / lt;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) a += part_acc[w * stride + d] * f[w];
    out_row[d] = from_f32<T>(a * inv);
  }
}

// This block's keys [begin, end) of a query at position pos: all of them
// unsplit, else share blockIdx.y of gridDim.y (whole 32-key tiles; the last
// shares may be empty).
struct KeyRange {
  int begin, end;
};
__device__ __forceinline__ KeyRange key_range(int pos) {
  if (gridDim.y == 1) return {0, pos + 1};
  const int share = ((pos + int(gridDim.y)) / int(gridDim.y) + 31) / 32 * 32;  // ceil((pos+1)/splits) in tiles
  const int begin = int(blockIdx.y) * share;
  return {begin, min(pos + 1, begin + share)};
}

// Where a split share of (token t, head h) leaves its partial: the
// workspace is [tokens * heads, splits, head_dim + 2]. Null unsplit.
__device__ __forceinline__ float* split_slot(float* ws, int t, int h, int num_heads, int head_dim) {
  if (gridDim.y == 1) return nullptr;
  return ws + ((int64_t(t) * num_heads + h) * gridDim.y + blockIdx.y) * (head_dim + 2);
}

template <class T, int DPL>  // DPL: output dims per lane = ceil(head_dim / 32)
__global__ void __launch_bounds__(kWarps * 32)
    paged_attention_kernel(T* __restrict__ out, int64_t out_stride, const T* __restrict__ q, int64_t q_stride,
                           const T* __restrict__ k_cache, const T* __restrict__ v_cache, AttentionBatch b,
                           int num_heads, int num_kv_heads, int head_dim, int block_size, float scale,
                           bool vec,  // vec: head_dim % kVec<T> == 0 and 16-byte aligned caches
                           float* __restrict__ ws) {  // split partials (gridDim.y > 1)
  __shared__ float qs[kMaxHeadDim];
  __shared__ float part_m[kWarps], part_l[kWarps];
  __shared__ float part_acc[kWarps][kMaxHeadDim];
  const int t = int(blockIdx.x / unsigned(num_heads)), h = int(blockIdx.x % unsigned(num_heads));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int kvh = h / (num_heads / num_kv_heads);
  const int pos = b.token_pos[t];
  const int32_t* table = b.block_ids + b.row_block_offset[b.token_row[t]];
  const int64_t kv_row = int64_t(num_kv_heads) * head_dim;  // elements per cache position
  const T* kbase = k_cache + int64_t(kvh) * head_dim;
  const T* vbase = v_cache + int64_t(kvh) * head_dim;

  for (int d = threadIdx.x; d < head_dim; d += blockDim.x)
    qs[d] = to_f32(q[int64_t(t) * q_stride + int64_t(h) * head_dim + d]) * scale;
  __syncthreads();

  float m = -INFINITY, l = 0.0f;
  float acc[DPL];
#pragma unroll
  for (int j = 0; j < DPL; ++j) acc[j] = 0.0f;

  const KeyRange kr = key_range(pos);
  for (int t0 = kr.begin + warp * 32; t0 < kr.end; t0 += kWarps * 32) {
    const int key = t0 + lane;
    float s = -INFINITY;
    int64_t off = 0;
    if (key < kr.end) {
      off = (int64_t(table[key / block_size]) * block_size + key % block_size) * kv_row;
      const T* kp = kbase + off;
      float dot = 0.0f;
      if (vec) {  // 16-byte loads, several in flight
        constexpr int V = kVec<T>;
#pragma unroll 8
        for (int c = 0; c < head_dim; c += V) {
          float kf[V];
          load16(kp + c, kf);
#pragma unroll
          for (int i = 0; i < V; ++i) dot += qs[c + i] * kf[i];
        }
      } else {
#pragma unroll 8
        for (int d = 0; d < head_dim; ++d) dot += qs[d] * to_f32(kp[d]);
      }
      s = dot;
    }
    const float m_new = fmaxf(m, warp_max(s));  // finite: key t0 < end
    const float corr = expf(m - m_new);          // 0 on the warp's first tile (m = -inf)
    const float p = key < kr.end ? expf(s - m_new) : 0.0f;
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[j] *= corr;
    m = m_new;
    const int n = min(32, kr.end - t0);
    if (n == 32) {
#pragma unroll 16
      for (int kk = 0; kk < 32; ++kk) accumulate_v<T, DPL>(acc, vbase, p, off, kk, lane, head_dim);
    } else {
      for (int kk = 0; kk < n; ++kk) accumulate_v<T, DPL>(acc, vbase, p, off, kk, lane, head_dim);
    }
  }

  combine_warp_partials<T, DPL>(m, l, acc, warp, lane, head_dim, part_m, part_l, &part_acc[0][0], kMaxHeadDim,
                                out + int64_t(t) * out_stride + int64_t(h) * head_dim,
                                split_slot(ws, t, h, num_heads, head_dim));
}

// GQA form for batches with many (token, kv head) pairs: one block per
// (token, kv head) computes all G query heads of the group, so each K row and
// V row is loaded once per block instead of once per query head (and the
// cache offset shuffles are shared). Per-head softmax state lives in registers
// (G and DPL are compile-time); the warps' partials are combined head by head.
template <class T, int DPL, int G>
__global__ void __launch_bounds__(kWarps * 32)
    paged_attention_gqa_kernel(T* __restrict__ out, int64_t out_stride, const T* __restrict__ q, int64_t q_stride,
                               const T* __restrict__ k_cache, const T* __restrict__ v_cache, AttentionBatch b,
                               int num_kv_heads, int head_dim, int block_size, float scale, bool vec,
                               float* __restrict__ ws) {
  __shared__ float qs[G][DPL * 32];
  __shared__ float part_m[kWarps], part_l[kWarps];
  __shared__ float part_acc[kWarps][DPL * 32];
  const int t = int(blockIdx.x / unsigned(num_kv_heads)), kvh = int(blockIdx.x % unsigned(num_kv_heads));
  const int h0 = kvh * G;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int pos = b.token_pos[t];
  const int32_t* table = b.block_ids + b.row_block_offset[b.token_row[t]];
  const int64_t kv_row = int64_t(num_kv_heads) * head_dim;
  const T* kbase = k_cache + int64_t(kvh) * head_dim;
  const T* vbase = v_cache + int64_t(kvh) * head_dim;

  for (int i = threadIdx.x; i < G * head_dim; i += blockDim.x)
    qs[i / head_dim][i % head_dim] = to_f32(q[int64_t(t) * q_stride + int64_t(h0) * head_dim + i]) * scale;
  __syncthreads();

  float m[G], l[G], acc[G][DPL];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) acc[g][j] = 0.0f;
  }

  const KeyRange kr = key_range(pos);
  for (int t0 = kr.begin + warp * 32; t0 < kr.end; t0 += kWarps * 32) {
    const int key = t0 + lane;
    const bool valid = key < kr.end;
    int sp = 0;  // cache position (block * block_size + offset); the pool has < 2^31 positions
    float s[G];
#pragma unroll
    for (int g = 0; g < G; ++g) s[g] = 0.0f;
    if (valid) {
      sp = table[key / block_size] * block_size + key % block_size;
      const T* kp = kbase + int64_t(sp) * kv_row;
      if (vec) {
        constexpr int V = kVec<T>;
#pragma unroll 4
        for (int c = 0; c < head_dim; c += V) {
          float kf[V];
          load16(kp + c, kf);
#pragma unroll
          for (int g = 0; g < G; ++g)
#pragma unroll
            for (int i = 0; i < V; ++i) s[g] += qs[g][c + i] * kf[i];
        }
      } else {
        for (int d = 0; d < head_dim; ++d) {
          const float kd = to_f32(kp[d]);
#pragma unroll
          for (int g = 0; g < G; ++g) s[g] += qs[g][d] * kd;
        }
      }
    }
    float p[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float sg = valid ? s[g] : -INFINITY;
      const float m_new = fmaxf(m[g], warp_max(sg));  // finite: key t0 < end
      const float corr = expf(m[g] - m_new);           // 0 on the warp's first tile
      p[g] = valid ? expf(sg - m_new) : 0.0f;
      l[g] = l[g] * corr + warp_sum(p[g]);
#pragma unroll
      for (int j = 0; j < DPL; ++j) acc[g][j] *= corr;
      m[g] = m_new;
    }
    const int n = min(32, kr.end - t0);
#pragma unroll 8
    for (int kk = 0; kk < 32; ++kk) {
      if (kk >= n) break;  // uniform
      const int spk = __shfl_sync(0xffffffffu, sp, kk);
      const T* vp = vbase + int64_t(spk) * kv_row;
      float vv[DPL];
#pragma unroll
      for (int j = 0; j < DPL; ++j) {
        const int d = lane + 32 * j;
        vv[j] = d < head_dim ? to_f32(vp[d]) : 0.0f;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const float pk = __shfl_sync(0xffffffffu, p[g], kk);
#pragma unroll
        for (int j = 0; j < DPL; ++j) acc[g][j] += pk * vv[j];
      }
    }
  }

  // Combine the warps' partials, one head at a time.
#pragma unroll
  for (int g = 0; g < G; ++g) {
    combine_warp_partials<T, DPL>(m[g], l[g], acc[g], warp, lane, head_dim, part_m, part_l, &part_acc[0][0], DPL * 32,
                                  out + int64_t(t) * out_stride + int64_t(h0 + g) * head_dim,
                                  split_slot(ws, t, h0 + g, num_kv_heads * G, head_dim));
    __syncthreads();  // the next head reuses part_*
  }
}

// Below this many (token, kv head) blocks the GQA form leaves the GPU too
// empty (batch-1 decode), so per-head blocks are used.
constexpr int64_t kGqaMinBlocks = 128;

// Merges the split shares of one (token, head) (blockIdx.x = t * heads + h):
// out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s. A
// share without keys has m = -inf and weighs 0; share 0 always has key 0.
template <class T>
__global__ void attention_combine_kernel(T* __restrict__ out, int64_t out_stride, const float* __restrict__ ws,
                                         int num_heads, int head_dim, int splits) {
  __shared__ float weight[kMaxAttentionSplits];  // e^(m_s - M) / sum_s l_s e^(m_s - M)
  const int t = int(blockIdx.x / unsigned(num_heads)), h = int(blockIdx.x % unsigned(num_heads));
  const int64_t stride = head_dim + 2;
  const float* p = ws + int64_t(blockIdx.x) * splits * stride;
  if (threadIdx.x == 0) {
    float mt = -INFINITY;
    for (int s = 0; s < splits; ++s) mt = fmaxf(mt, p[s * stride]);
    float lt = 0.0f;
    for (int s = 0; s < splits; ++s) lt += p[s * stride + 1] * (weight[s] = expf(p[s * stride] - mt));
    const float inv = 1.0f / lt;
    for (int s = 0; s < splits; ++s) weight[s] *= inv;
  }
  __syncthreads();
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float a = 0.0f;
    for (int s = 0; s < splits; ++s) a += p[s * stride + 2 + d] * weight[s];
    out[int64_t(t) * out_stride + int64_t(h) * head_dim + d] = from_f32<T>(a);
  }
}

bool uses_gqa_form(int64_t tokens, int64_t heads, int64_t kv_heads) {
  const int64_t group = heads / kv_heads;
  return tokens * kv_heads >= kGqaMinBlocks && (group == 4 || group == 8);
}

// Two blocks of kWarps warps an SM of the current device: below that,
// shares of the keys fill it. Cached per device once known (errors are not).
Result<int64_t> fill_blocks() {
  constexpr int kDevices = 64;
  static std::atomic<int64_t> known[kDevices] = {};
  int dev = 0, sms = 0;
  MYRIAD_CUDA_TRY(cudaGetDevice(&dev));
  if (dev >= 0 && dev < kDevices)
    if (const int64_t n = known[dev].load(std::memory_order_relaxed); n > 0) return n;
  MYRIAD_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  const int64_t n = int64_t(2) * std::max(sms, 1);
  if (dev >= 0 && dev < kDevices) known[dev].store(n, std::memory_order_relaxed);
  return n;
}

// The split count of a launch: `forced` if nonzero, else enough shares for
// its blocks to fill the device.
Result<int> split_count(int64_t tokens, int64_t heads, int64_t kv_heads, int forced) {
  if (forced != 0) return forced;
  const int64_t blocks = tokens * (uses_gqa_form(tokens, heads, kv_heads) ? kv_heads : heads);
  const Result<int64_t> target = fill_blocks();
  if (!target.ok()) return target.error();
  if (blocks <= 0 || blocks >= target.value()) return 1;
  return int(std::min<int64_t>(kMaxAttentionSplits, (target.value() + blocks - 1) / blocks));
}

template <class T, int DPL>
void launch_attention(T* out, int64_t out_stride, const T* q, int64_t q_stride, const T* k, const T* v,
                      const AttentionBatch& b, int tokens, int heads, int kv_heads, int head_dim, int block_size,
                      float scale, int splits, float* ws, cudaStream_t s) {
  const bool vec = head_dim % kVec<T> == 0 && aligned16(k);
  const int group = heads / kv_heads;
  if (uses_gqa_form(tokens, heads, kv_heads)) {
    const dim3 grid(unsigned(int64_t(tokens) * kv_heads), unsigned(splits));
    if (group == 4)
      paged_attention_gqa_kernel<T, DPL, 4><<<grid, 32 * kWarps, 0, s>>>(
          out, out_stride, q, q_stride, k, v, b, kv_heads, head_dim, block_size, scale, vec, ws);
    else
      paged_attention_gqa_kernel<T, DPL, 8><<<grid, 32 * kWarps, 0, s>>>(
          out, out_stride, q, q_stride, k, v, b, kv_heads, head_dim, block_size, scale, vec, ws);
  } else {
    const dim3 grid(unsigned(int64_t(tokens) * heads), unsigned(splits));
    paged_attention_kernel<T, DPL><<<grid, 32 * kWarps, 0, s>>>(out, out_stride, q, q_stride, k, v, b, heads,
                                                                kv_heads, head_dim, block_size, scale, vec, ws);
  }
  if (splits > 1)
    attention_combine_kernel<T><<<unsigned(int64_t(tokens) * heads), 128, 0, s>>>(out, out_stride, ws, heads,
                                                                                   head_dim, splits);
}

}  // namespace

Status kv_cache_write(DType dtype, void* k_cache, void* v_cache, const void* k, int64_t k_stride, const void* v,
                      int64_t v_stride, const int32_t* slot_mapping, int64_t tokens, int64_t num_kv_heads,
                      int64_t head_dim, StreamHandle stream) {
  const int64_t width = num_kv_heads * head_dim;
  if (tokens < 0 || tokens > INT32_MAX || width <= 0 || width > INT32_MAX || k_stride < width || v_stride < width)
    return make_error(ErrorCode::kInvalidArgument, "kv_cache_write: bad shape tokens=" + std::to_string(tokens) +
                                                       " width=" + std::to_string(width));
  if (tokens == 0) return ok_status();
  return MYRIAD_DISPATCH_DTYPE(dtype, "kv_cache_write", {
    kv_write_kernel<T><<<unsigned(tokens), 128, 0, stream>>>(static_cast<T*>(k_cache), static_cast<T*>(v_cache),
                                                             static_cast<const T*>(k), k_stride,
                                                             static_cast<const T*>(v), v_stride, slot_mapping,
                                                             int(width));
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Status paged_attention(DType dtype, void* out, int64_t out_stride, const void* q, int64_t q_stride,
                       const void* k_cache, const void* v_cache, const AttentionBatch& batch, int64_t tokens,
                       int64_t num_heads, int64_t num_kv_heads, int64_t head_dim, int64_t block_size, float scale,
                       StreamHandle stream, const AttentionWorkspace& workspace) {
  if (tokens < 0 || tokens > INT32_MAX || num_kv_heads <= 0 || num_heads <= 0 || num_heads % num_kv_heads != 0 ||
      head_dim <= 0 || head_dim > kMaxHeadDim || block_size <= 0 || tokens * num_heads > INT32_MAX ||
      q_stride < num_heads * head_dim || out_stride < num_heads * head_dim)
    return make_error(ErrorCode::kInvalidArgument,
                      "paged_attention: bad shape tokens=" + std::to_string(tokens) + " heads=" +
                          std::to_string(num_heads) + " kv_heads=" + std::to_string(num_kv_heads) +
                          " head_dim=" + std::to_string(head_dim) + " block_size=" + std::to_string(block_size));
  if (tokens == 0) return ok_status();
  if (workspace.splits < 0 || workspace.splits > kMaxAttentionSplits)
    return make_error(ErrorCode::kInvalidArgument, "paged_attention: splits " + std::to_string(workspace.splits) +
                                                       " outside [0, " + std::to_string(kMaxAttentionSplits) + "]");
  int splits = 1;
  if (workspace.floats > 0 || workspace.splits > 1) {
    const Result<int> n = split_count(tokens, num_heads, num_kv_heads, workspace.splits);
    if (!n.ok()) return n.error();
    splits = n.value();
    const int64_t need = splits > 1 ? tokens * num_heads * splits * (head_dim + 2) : 0;
    if (need > workspace.floats || (need > 0 && !workspace.partials))
      return make_error(ErrorCode::kInvalidArgument,
                        "paged_attention: " + std::to_string(splits) + " splits need a workspace of " +
                            std::to_string(need) + " floats, got " + std::to_string(workspace.floats));
  }
  float* ws = workspace.partials;
  return MYRIAD_DISPATCH_DTYPE(dtype, "paged_attention", {
    auto* o = static_cast<T*>(out);
    auto* qq = static_cast<const T*>(q);
    auto* kc = static_cast<const T*>(k_cache);
    auto* vc = static_cast<const T*>(v_cache);
    const int args[] = {int(tokens), int(num_heads), int(num_kv_heads), int(head_dim), int(block_size)};
    if (head_dim <= 32)
      launch_attention<T, 1>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, splits, ws, stream);
    else if (head_dim <= 64)
      launch_attention<T, 2>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, splits, ws, stream);
    else if (head_dim <= 128)
      launch_attention<T, 4>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, splits, ws, stream);
    else
      launch_attention<T, 8>(o, out_stride, qq, q_stride, kc, vc, batch, args[0], args[1], args[2], args[3], args[4], scale, splits, ws, stream);
    MYRIAD_CUDA_TRY_LAUNCH();
    return ok_status();
  });
}

Result<int64_t> paged_attention_workspace_floats(int64_t tokens, int64_t num_heads, int64_t num_kv_heads,
                                                 int64_t head_dim, int splits) {
  if (tokens <= 0 || num_heads <= 0 || num_kv_heads <= 0 || head_dim <= 0 || splits < 0 ||
      splits > kMaxAttentionSplits)
    return make_error(ErrorCode::kInvalidArgument, "paged_attention_workspace_floats: bad shape");
  const Result<int> n = split_count(tokens, num_heads, num_kv_heads, splits);
  if (!n.ok()) return n.error();
  return n.value() > 1 ? tokens * num_heads * n.value() * (head_dim + 2) : int64_t(0);
}

}  // namespace myriad::gpu::cuda
