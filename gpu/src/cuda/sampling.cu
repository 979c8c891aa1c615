// One 1024-thread block per row. Top-k and top-p thresholds are found by
// bitwise binary search over order-preserving uint32 keys of the scaled
// logits (32 fixed-order block reductions each), so nothing is sorted and the
// result is deterministic. The draw uses a block scan over contiguous id
// chunks so the walk is in ascending id order.
#include "cuda_check.cuh"
#include "gpu/cuda/sampling.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t b = __float_as_uint(f);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ unsigned long long warp_max_u64(unsigned long long v) {
  for (int o = 16; o > 0; o >>= 1) {
    const unsigned long long w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

__device__ unsigned long long block_max_u64(unsigned long long v, unsigned long long* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_max_u64(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    unsigned long long t = lane < int(blockDim.x >> 5) ? scratch[lane] : 0ull;
    t = warp_max_u64(t);
    if (lane == 0) scratch[32] = t;
  }
  __syncthreads();
  return scratch[32];
}

// Exclusive scan of one float per thread in thread order; *total gets the sum.
__device__ float block_exclusive_scan(float v, float* scratch, float* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  float incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const float n = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += n;
  }
  __syncthreads();
  if (lane == 31) scratch[warp] = incl;
  __syncthreads();
  if (warp == 0) {
    float w = lane < nwarps ? scratch[lane] : 0.0f;
    float wi = w;
    for (int o = 1; o < 32; o <<= 1) {
      const float n = __shfl_up_sync(0xffffffffu, wi, o);
      if (lane >= o) wi += n;
    }
    if (lane < nwarps) scratch[lane] = wi - w;  // exclusive warp offsets
    if (lane == 31) scratch[32] = wi;
  }
  __syncthreads();
  *total = scratch[32];
  return scratch[warp] + incl - v;
}

__global__ void sample_kernel(float* logits_all, int64_t ldl, float* work_all, const SampleRow* params,
                              const int32_t* history, const LogitBias* bias, int vocab, int32_t* tokens,
                              float* logprobs, TopLogprobs::Entry* top) {
  __shared__ float scratch[33];
  __shared__ unsigned long long scratch64[33];
  __shared__ int chosen;
  const int row = blockIdx.x;
  const SampleRow p = params[row];
  float* logits = logits_all + int64_t(row) * ldl;
  float* e = work_all + int64_t(row) * vocab;

  // 0. Logit bias, by one thread in order: an id may appear twice (a
  // request's bias and min_tokens' ban), so parallel adds would race.
  if (p.bias_count > 0) {
    if (threadIdx.x == 0)
      for (uint32_t i = 0; i < p.bias_count; ++i) {
        const LogitBias b = bias[p.bias_offset + i];
        if (b.token >= 0 && b.token < vocab) logits[b.token] += b.bias;
      }
    __syncthreads();
  }

  // 1. Penalties: each distinct history id is updated by the thread holding
  // its first occurrence.
  if (p.repetition_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f) {
    const int32_t* h = history + p.history_offset;
    for (uint32_t i = threadIdx.x; i < p.history_len; i += blockDim.x) {
      const int32_t tok = h[i];
      if (tok < 0 || tok >= vocab) continue;
      bool first = true;
      for (uint32_t j = 0; j < i && first; ++j) first = h[j] != tok;
      if (!first) continue;
      int count = 0;
      for (uint32_t j = p.prompt_len; j < p.history_len; ++j) count += h[j] == tok;
      float l = logits[tok];
      if (p.repetition_penalty != 1.0f) l = l > 0.0f ? l / p.repetition_penalty : l * p.repetition_penalty;
      l -= p.presence_penalty * (count > 0 ? 1.0f : 0.0f) + p.frequency_penalty * float(count);
      logits[tok] = l;
    }
    __syncthreads();
  }

  // 2. Argmax (ties to the lowest id) and the untruncated log-normaliser.
  unsigned long long best = 0;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const unsigned long long k = (static_cast<unsigned long long>(order_key(logits[i])) << 32) | uint32_t(~uint32_t(i));
    best = k > best ? k : best;
  }
  best = block_max_u64(best, scratch64);
  const int argmax = int(~uint32_t(best & 0xffffffffu));
  const float lmax = logits[argmax];
  const bool greedy = !(p.temperature > 0.0f) || p.top_k == 1 || !(p.top_p > 0.0f);
  const float inv_t = p.temperature > 0.0f ? 1.0f / p.temperature : 1.0f;
  const float m = lmax * inv_t;  // max of the scaled logits (inv_t > 0)
  float z = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    const float ei = expf(logits[i] * inv_t - m);
    e[i] = ei;
    z += ei;
  }
  z = block_sum(z, scratch);
  // The most likely tokens, one block-wide max a round: each round takes
  // the largest (value, lower id) key below the previous round's.
  if (p.top_logprobs > 0) {
    const float lz = logf(z);
    unsigned long long prev = ~0ull;
    const uint32_t n = min(p.top_logprobs, uint32_t(vocab));
    for (uint32_t j = 0; j < n; ++j) {
      unsigned long long round_best = 0;
      for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float x = logits[i] * inv_t;
        if (x != x) continue;  // NaN: skipped, as the CPU does
        const unsigned long long k = (static_cast<unsigned long long>(order_key(x)) << 32) | uint32_t(~uint32_t(i));
        if (k < prev && k > round_best) round_best = k;
      }
      round_best = block_max_u64(round_best, scratch64);
      prev = round_best;
      if (threadIdx.x == 0) {
        const int id = int(~uint32_t(round_best & 0xffffffffu));
        TopLogprobs::Entry& out = top[int64_t(row) * kMaxTopLogprobs + j];
        out.token = round_best == 0 ? -1 : id;  // 0: no key left (all NaN)
        out.logprob = round_best == 0 ? -INFINITY : logits[id] * inv_t - m - lz;
      }
    }
  }
  if (greedy) {
    if (threadIdx.x == 0) {
      tokens[row] = argmax;
      logprobs[row] = logits[argmax] * inv_t - m - logf(z);
    }
    return;
  }

  // 3. Top-k threshold: the largest key u with count(key >= u) >= k.
  uint32_t kth = 0;  // keeps everything
  if (p.top_k > 0 && p.top_k < vocab) {
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = kth | (1u << bit);
      float c = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += blockDim.x) c += order_key(logits[i] * inv_t) >= cand ? 1.0f : 0.0f;
      if (block_sum(c, scratch) >= float(p.top_k)) kth = cand;
    }
  }
  // Top-p threshold: the smallest key u0 with (mass of kept keys > u0) < P.
  uint32_t u0 = kth;
  if (p.top_p < 1.0f) {
    float zk = 0.0f;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) zk += order_key(logits[i] * inv_t) >= kth ? e[i] : 0.0f;
    const float target = p.top_p * block_sum(zk, scratch);
    // Largest u with S_gt(u) >= target; u0 is one above it.
    uint32_t lo = 0;
    bool any = false;
    for (int bit = 31; bit >= 0; --bit) {
      const uint32_t cand = lo | (1u << bit);
      float s = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const uint32_t k = order_key(logits[i] * inv_t);
        s += (k >= kth && k > cand) ? e[i] : 0.0f;
      }
      if (block_sum(s, scratch) >= target) {
        lo = cand;
        any = true;
      }
    }
    if (!any) {  // S_gt(0) may still be >= target (lo = 0 stays a valid answer)
      float s = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const uint32_t k = order_key(logits[i] * inv_t);
        s += (k >= kth && k > 0u) ? e[i] : 0.0f;
      }
      any = block_sum(s, scratch) >= target;
    }
    if (any && lo + 1 > u0) u0 = lo + 1;
  }

  // 4. The draw, over contiguous id chunks in thread order.
  const int chunk = (vocab + int(blockDim.x) - 1) / int(blockDim.x);
  const int begin = min(vocab, int(threadIdx.x) * chunk), end = min(vocab, begin + chunk);
  float local = 0.0f;
  int last_kept = -1;
  for (int i = begin; i < end; ++i)
    if (order_key(logits[i] * inv_t) >= u0) {
      local += e[i];
      last_kept = i;
    }
  float total;
  const float excl = block_exclusive_scan(local, scratch, &total);
  const float target = float(sampling_uniform(p.seed, p.output_index) * double(total));
  if (threadIdx.x == 0) chosen = -1;
  __syncthreads();
  if (local > 0.0f && excl <= target && target < excl + local) {
    float acc = excl;
    int pick = last_kept;
    for (int i = begin; i < end; ++i)
      if (order_key(logits[i] * inv_t) >= u0) {
        acc += e[i];
        if (acc > target) {
          pick = i;
          break;
        }
      }
    atomicMax(&chosen, pick);  // exactly one thread gets here unless ranges are degenerate
  }
  __syncthreads();
  // target >= total by rounding: the highest kept id.
  const unsigned long long lk = block_max_u64(static_cast<unsigned long long>(last_kept + 1), scratch64);
  if (threadIdx.x == 0) {
    const int tok = chosen >= 0 ? chosen : int(lk) - 1;
    tokens[row] = tok;
    logprobs[row] = logits[tok] * inv_t - m - logf(z);
  }
}

}  // namespace

Status sample(float* logits, int64_t ldl, float* work, const SampleRow* params, const int32_t* history,
              int64_t rows, int64_t vocab, int32_t* tokens, float* logprobs, StreamHandle stream,
              const LogitBias* bias, TopLogprobs::Entry* top) {
  if (rows < 0 || rows > INT32_MAX || vocab <= 0 || vocab >= (1 << 24) || ldl < vocab)
    return make_error(ErrorCode::kInvalidArgument,
                      "sample: bad shape rows=" + std::to_string(rows) + " vocab=" + std::to_string(vocab));
  if (rows == 0) return ok_status();
  sample_kernel<<<unsigned(rows), kThreads, 0, stream>>>(logits, ldl, work, params, history, bias, int(vocab),
                                                         tokens, logprobs, top);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

}  // namespace myriad::gpu::cuda
