// Training kernels (train_kernels.h). Correctness first: one block per token
// (norms, cross-entropy) or per (token, head) (attention), float32 throughout,
// fixed-order block reductions, so a pass is deterministic. Attention keeps
// one query's scores in shared memory and recomputes the probabilities in the
// backward from the saved log-sum-exp; the backward runs two kernels: one per
// query (dq, and delta = d_out . out) and one per key (dk, dv: sums over the
// queries that see it, in order), so no two blocks write one element.
#include <algorithm>
#include <string>

#include "cuda_check.cuh"
#include "gpu/cuda/train_kernels.h"
#include "kernel_common.cuh"

namespace myriad::gpu::cuda::train {
namespace {

constexpr int kElementThreads = 256;
constexpr int kAttentionThreads = 128;

int row_threads(int64_t n) { return n >= 1024 ? 1024 : int((n + 31) / 32 * 32); }

Status bad_shape(const char* kernel, const std::string& what) {
  return make_error(ErrorCode::kInvalidArgument, std::string(kernel) + ": " + what);
}

__global__ void rmsnorm_forward_kernel(const float* __restrict__ x, const float* __restrict__ w, int n,
                                       float eps, float* __restrict__ y, float* __restrict__ r,
                                       const int32_t* rows) {
  __shared__ float scratch[33];
  const int t = blockIdx.x;
  const float* xt = x + size_t(rows ? rows[t] : t) * n;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) ss += xt[i] * xt[i];
  ss = block_sum(ss, scratch);
  const float inv = 1.0f / sqrtf(ss / float(n) + eps);
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[size_t(t) * n + i] = xt[i] * inv * w[i];
  if (threadIdx.x == 0) r[t] = inv;
}

// dx_j += r w_j dy_j - x_j r^3 / n * sum_i(dy_i w_i x_i).
__global__ void rmsnorm_backward_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                        const float* __restrict__ r, const float* __restrict__ dy, int n,
                                        float* __restrict__ dx, const int32_t* rows) {
  __shared__ float scratch[33];
  const int t = blockIdx.x;
  const size_t src = size_t(rows ? rows[t] : t) * n;
  const float* dyt = dy + size_t(t) * n;
  float dot = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) dot += dyt[i] * w[i] * x[src + i];
  dot = block_sum(dot, scratch);
  const float rt = r[t], c = rt * rt * rt * dot / float(n);
  for (int i = threadIdx.x; i < n; i += blockDim.x) dx[src + i] += rt * w[i] * dyt[i] - x[src + i] * c;
}

// One thread per (token, head, i < half); sign = +1 rotates forward, -1 back.
__global__ void rope_kernel(float* __restrict__ x, int64_t T, int heads, int head_dim,
                            const float* __restrict__ cos, const float* __restrict__ sin, float sign) {
  const int half = head_dim / 2;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= T * heads * half) return;
  const int i = int(idx % half);
  const int64_t th = idx / half;  // token * heads + head
  const int64_t t = th / heads;
  float* p = x + th * head_dim;
  const float c = cos[t * half + i], s = sign * sin[t * half + i];
  const float a = p[i], b = p[i + half];
  p[i] = a * c - b * s;
  p[i + half] = b * c + a * s;
}

__global__ void silu_mul_forward_kernel(const float* __restrict__ g, const float* __restrict__ u, int64_t n,
                                        float* __restrict__ a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

__global__ void silu_mul_backward_kernel(const float* __restrict__ g, const float* __restrict__ u,
                                         const float* __restrict__ da, int64_t n, float* __restrict__ dg,
                                         float* __restrict__ du) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float s = 1.0f / (1.0f + expf(-g[i]));
  du[i] += da[i] * g[i] * s;
  dg[i] += da[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
}

__global__ void add_into_kernel(float* __restrict__ y, const float* __restrict__ x, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) y[i] += x[i];
}

__global__ void add_bias_rows_kernel(float* __restrict__ y, const float* __restrict__ bias, int64_t total,
                                     int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) y[i] += bias[i % n];
}

__global__ void embed_rows_kernel(const float* __restrict__ table, const int32_t* __restrict__ ids,
                                  int64_t total, int64_t H, float* __restrict__ out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < total) out[i] = table[int64_t(ids[i / H]) * H + i % H];
}

// Block (t, h): query t of head h. Shared: q [d], then the scores of the keys it sees.
__global__ void attention_forward_kernel(int num_heads, int num_kv_heads, int d, int window, float scale,
                                         const int32_t* __restrict__ row_start, const float* __restrict__ q,
                                         const float* __restrict__ k, const float* __restrict__ v,
                                         float* __restrict__ out, float* __restrict__ lse) {
  extern __shared__ float smem[];
  __shared__ float scratch[33];
  float* qs = smem;
  float* p = smem + d;
  const int t = blockIdx.x, h = blockIdx.y, g = h / (num_heads / num_kv_heads);
  const size_t q_stride = size_t(num_heads) * d, kv_stride = size_t(num_kv_heads) * d;
  const int start = row_start[t];
  const int j0 = window > 0 ? max(start, t - window + 1) : start;
  const int n = t - j0 + 1;
  for (int c = threadIdx.x; c < d; c += blockDim.x) qs[c] = q[t * q_stride + size_t(h) * d + c];
  __syncthreads();
  float m = -INFINITY;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float* kj = k + size_t(j0 + i) * kv_stride + size_t(g) * d;
    float s = 0.0f;
    for (int c = 0; c < d; ++c) s += qs[c] * kj[c];
    s *= scale;
    p[i] = s;
    m = fmaxf(m, s);
  }
  m = block_max(m, scratch);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = expf(p[i] - m);
    p[i] = e;
    sum += e;
  }
  sum = block_sum(sum, scratch);  // its barriers publish p
  const float inv = 1.0f / sum;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    const float* vc = v + size_t(j0) * kv_stride + size_t(g) * d + c;
    float o = 0.0f;
    for (int i = 0; i < n; ++i) o += p[i] * vc[size_t(i) * kv_stride];
    out[t * q_stride + size_t(h) * d + c] = o * inv;
  }
  if (threadIdx.x == 0) lse[size_t(t) * num_heads + h] = m + logf(sum);
}

// Block (t, h): delta = d_out . out; ds_j = p_j (d_out . v_j - delta) scale;
// dq += sum_j ds_j k_j. Shared: q [d], d_out [d], ds of the keys it sees.
__global__ void attention_backward_q_kernel(int num_heads, int num_kv_heads, int d, int window, float scale,
                                            const int32_t* __restrict__ row_start,
                                            const float* __restrict__ q, const float* __restrict__ k,
                                            const float* __restrict__ v, const float* __restrict__ out,
                                            const float* __restrict__ lse, const float* __restrict__ d_out,
                                            float* __restrict__ delta, float* __restrict__ dq) {
  extern __shared__ float smem[];
  __shared__ float scratch[33];
  float* qs = smem;
  float* dos = smem + d;
  float* ds = smem + 2 * d;
  const int t = blockIdx.x, h = blockIdx.y, g = h / (num_heads / num_kv_heads);
  const size_t q_stride = size_t(num_heads) * d, kv_stride = size_t(num_kv_heads) * d;
  const size_t qt = t * q_stride + size_t(h) * d;
  const int start = row_start[t];
  const int j0 = window > 0 ? max(start, t - window + 1) : start;
  const int n = t - j0 + 1;
  float D = 0.0f;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    qs[c] = q[qt + c];
    dos[c] = d_out[qt + c];
    D += d_out[qt + c] * out[qt + c];
  }
  D = block_sum(D, scratch);  // its barriers publish qs, dos
  if (threadIdx.x == 0) delta[size_t(t) * num_heads + h] = D;
  const float l = lse[size_t(t) * num_heads + h];
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float* kj = k + size_t(j0 + i) * kv_stride + size_t(g) * d;
    const float* vj = v + size_t(j0 + i) * kv_stride + size_t(g) * d;
    float s = 0.0f, dp = 0.0f;
    for (int c = 0; c < d; ++c) {
      s += qs[c] * kj[c];
      dp += dos[c] * vj[c];
    }
    ds[i] = expf(s * scale - l) * (dp - D) * scale;
  }
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    const float* kc = k + size_t(j0) * kv_stride + size_t(g) * d + c;
    float acc = 0.0f;
    for (int i = 0; i < n; ++i) acc += ds[i] * kc[size_t(i) * kv_stride];
    dq[qt + c] += acc;
  }
}

// Block (j, g): key j of kv head g, over the queries i in [j, end) that see
// it, of every query head of the group, a chunk of blockDim queries at a
// time: dv_j += sum p_ij d_out_i, dk_j += sum ds_ij q_i. Shared: k_j, v_j
// [d each], the chunk's p and ds.
__global__ void attention_backward_kv_kernel(int num_heads, int num_kv_heads, int d, int window, float scale,
                                             const int32_t* __restrict__ row_end, const float* __restrict__ q,
                                             const float* __restrict__ k, const float* __restrict__ v,
                                             const float* __restrict__ lse, const float* __restrict__ d_out,
                                             const float* __restrict__ delta, float* __restrict__ dk,
                                             float* __restrict__ dv) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = smem + d;
  float* pc = smem + 2 * d;
  float* dsc = pc + blockDim.x;
  const int j = blockIdx.x, g = blockIdx.y, group = num_heads / num_kv_heads;
  const size_t q_stride = size_t(num_heads) * d, kv_stride = size_t(num_kv_heads) * d;
  const size_t kj = j * kv_stride + size_t(g) * d;
  const int end = row_end[j];
  const int i1 = window > 0 ? min(end, j + window) : end;
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    ks[c] = k[kj + c];
    vs[c] = v[kj + c];
  }
  __syncthreads();
  constexpr int kPerThread = int(kMaxAttentionHeadDim / kAttentionThreads);
  float acc_k[kPerThread] = {}, acc_v[kPerThread] = {};
  for (int h = g * group; h < (g + 1) * group; ++h) {
    for (int i0 = j; i0 < i1; i0 += blockDim.x) {
      const int i = i0 + threadIdx.x;
      float p = 0.0f, ds = 0.0f;
      if (i < i1) {
        const float* qi = q + size_t(i) * q_stride + size_t(h) * d;
        const float* doi = d_out + size_t(i) * q_stride + size_t(h) * d;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < d; ++c) {
          s += qi[c] * ks[c];
          dp += doi[c] * vs[c];
        }
        p = expf(s * scale - lse[size_t(i) * num_heads + h]);
        ds = p * (dp - delta[size_t(i) * num_heads + h]) * scale;
      }
      pc[threadIdx.x] = p;
      dsc[threadIdx.x] = ds;
      __syncthreads();
      const int count = min(int(blockDim.x), i1 - i0);
#pragma unroll
      for (int e = 0; e < kPerThread; ++e) {
        const int c = threadIdx.x + e * blockDim.x;
        if (c >= d) break;
        const size_t col = size_t(i0) * q_stride + size_t(h) * d + c;
        for (int r = 0; r < count; ++r) {
          acc_v[e] += pc[r] * d_out[col + size_t(r) * q_stride];
          acc_k[e] += dsc[r] * q[col + size_t(r) * q_stride];
        }
      }
      __syncthreads();
    }
  }
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    const int c = threadIdx.x + e * blockDim.x;
    if (c >= d) break;
    dk[kj + c] += acc_k[e];
    dv[kj + c] += acc_v[e];
  }
}

// Block p: one position's softmax over V logits, in place into its gradient.
__global__ void cross_entropy_kernel(float* __restrict__ logits, int V, const int32_t* __restrict__ target,
                                     const float* __restrict__ weight, float* __restrict__ loss) {
  __shared__ float scratch[33];
  float* row = logits + size_t(blockIdx.x) * V;
  const int tg = target[blockIdx.x];
  const float lt = row[tg];  // read before any thread overwrites the row (the reductions' barriers order it)
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += blockDim.x) m = fmaxf(m, row[i]);
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int i = threadIdx.x; i < V; i += blockDim.x) s += expf(row[i] - m);
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) loss[blockIdx.x] = logf(s) + m - lt;
  const float w = weight[blockIdx.x], inv = 1.0f / s;
  for (int i = threadIdx.x; i < V; i += blockDim.x)
    row[i] = w == 0.0f ? 0.0f : w * (expf(row[i] - m) * inv - (i == tg ? 1.0f : 0.0f));
}

Status check_attention(const char* kernel, const AttentionShape& s) {
  if (s.T < 0 || s.num_heads <= 0 || s.num_kv_heads <= 0 || s.num_heads % s.num_kv_heads != 0 ||
      s.head_dim <= 0 || s.head_dim % 2 != 0 || s.window < 0 || s.T > INT32_MAX)
    return bad_shape(kernel, "bad shape T=" + std::to_string(s.T) + " heads=" + std::to_string(s.num_heads) +
                                 "/" + std::to_string(s.num_kv_heads) +
                                 " head_dim=" + std::to_string(s.head_dim));
  if (s.head_dim > kMaxAttentionHeadDim)
    return make_error(ErrorCode::kUnsupported, std::string(kernel) + ": head_dim " +
                                                   std::to_string(s.head_dim) + " over " +
                                                   std::to_string(kMaxAttentionHeadDim));
  if (s.T > 0 && s.max_len < 1)
    return bad_shape(kernel, "max_len must be the longest sequence's length (it sizes shared memory)");
  if (s.max_len > kMaxAttentionLength)
    return make_error(ErrorCode::kUnsupported,
                      std::string(kernel) + ": a sequence of " + std::to_string(s.max_len) +
                          " tokens, over the " + std::to_string(kMaxAttentionLength) + " these kernels take");
  return ok_status();
}

// A window at least as long as every sequence is no window (and never
// overflows j + window in the kernels).
int effective_window(const AttentionShape& s) { return s.window >= s.max_len ? 0 : int(s.window); }

}  // namespace

Status rmsnorm_forward(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y, float* r,
                       const int32_t* rows, StreamHandle stream) {
  if (T == 0) return ok_status();
  if (T < 0 || n <= 0 || T > INT32_MAX || n > INT32_MAX) return bad_shape("rmsnorm_forward", "bad shape");
  rmsnorm_forward_kernel<<<unsigned(T), row_threads(n), 0, stream>>>(x, w, int(n), eps, y, r, rows);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status rmsnorm_backward(const float* x, const float* w, const float* r, const float* dy, int64_t T, int64_t n,
                        float* dx, const int32_t* rows, StreamHandle stream) {
  if (T == 0) return ok_status();
  if (T < 0 || n <= 0 || T > INT32_MAX || n > INT32_MAX) return bad_shape("rmsnorm_backward", "bad shape");
  rmsnorm_backward_kernel<<<unsigned(T), row_threads(n), 0, stream>>>(x, w, r, dy, int(n), dx, rows);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

namespace {
Status rope(const char* kernel, float* x, int64_t T, int64_t heads, int64_t head_dim, const float* cos,
            const float* sin, float sign, StreamHandle stream) {
  if (T == 0) return ok_status();
  if (T < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0) return bad_shape(kernel, "bad shape");
  const int64_t n = T * heads * (head_dim / 2);
  rope_kernel<<<ceil_div(n, kElementThreads), kElementThreads, 0, stream>>>(x, T, int(heads), int(head_dim),
                                                                            cos, sin, sign);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}
}  // namespace

Status rope_forward(float* x, int64_t T, int64_t heads, int64_t head_dim, const float* cos, const float* sin,
                    StreamHandle stream) {
  return rope("rope_forward", x, T, heads, head_dim, cos, sin, 1.0f, stream);
}

Status rope_backward(float* dx, int64_t T, int64_t heads, int64_t head_dim, const float* cos,
                     const float* sin, StreamHandle stream) {
  return rope("rope_backward", dx, T, heads, head_dim, cos, sin, -1.0f, stream);
}

Status silu_mul_forward(const float* g, const float* u, int64_t n, float* a, StreamHandle stream) {
  if (n <= 0) return n == 0 ? ok_status() : bad_shape("silu_mul_forward", "negative size");
  silu_mul_forward_kernel<<<ceil_div(n, kElementThreads), kElementThreads, 0, stream>>>(g, u, n, a);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status silu_mul_backward(const float* g, const float* u, const float* da, int64_t n, float* dg, float* du,
                         StreamHandle stream) {
  if (n <= 0) return n == 0 ? ok_status() : bad_shape("silu_mul_backward", "negative size");
  silu_mul_backward_kernel<<<ceil_div(n, kElementThreads), kElementThreads, 0, stream>>>(g, u, da, n, dg, du);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status add_into(float* y, const float* x, int64_t n, StreamHandle stream) {
  if (n <= 0) return n == 0 ? ok_status() : bad_shape("add_into", "negative size");
  add_into_kernel<<<ceil_div(n, kElementThreads), kElementThreads, 0, stream>>>(y, x, n);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status add_bias_rows(float* y, const float* bias, int64_t T, int64_t n, StreamHandle stream) {
  if (T == 0) return ok_status();
  if (T < 0 || n <= 0) return bad_shape("add_bias_rows", "bad shape");
  add_bias_rows_kernel<<<ceil_div(T * n, kElementThreads), kElementThreads, 0, stream>>>(y, bias, T * n, n);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status embed_rows(const float* table, const int32_t* ids, int64_t T, int64_t H, float* out,
                  StreamHandle stream) {
  if (T == 0) return ok_status();
  if (T < 0 || H <= 0) return bad_shape("embed_rows", "bad shape");
  embed_rows_kernel<<<ceil_div(T * H, kElementThreads), kElementThreads, 0, stream>>>(table, ids, T * H, H,
                                                                                      out);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status attention_forward(const AttentionShape& s, const int32_t* row_start, const float* q, const float* k,
                         const float* v, float* out, float* lse, StreamHandle stream) {
  MYRIAD_TRY(check_attention("attention_forward", s));
  if (s.T == 0) return ok_status();
  const int window = effective_window(s);
  const size_t shared = size_t(s.head_dim + s.max_len) * sizeof(float);
  const float scale = 1.0f / sqrtf(float(s.head_dim));
  attention_forward_kernel<<<dim3(unsigned(s.T), unsigned(s.num_heads)), kAttentionThreads, shared, stream>>>(
      int(s.num_heads), int(s.num_kv_heads), int(s.head_dim), window, scale, row_start, q, k, v, out, lse);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status attention_backward(const AttentionShape& s, const int32_t* row_start, const int32_t* row_end,
                          const float* q, const float* k, const float* v, const float* out, const float* lse,
                          const float* d_out, float* delta, float* dq, float* dk, float* dv,
                          StreamHandle stream) {
  MYRIAD_TRY(check_attention("attention_backward", s));
  if (s.T == 0) return ok_status();
  const int window = effective_window(s);
  const float scale = 1.0f / sqrtf(float(s.head_dim));
  const size_t shared_q = size_t(2 * s.head_dim + s.max_len) * sizeof(float);
  attention_backward_q_kernel<<<dim3(unsigned(s.T), unsigned(s.num_heads)), kAttentionThreads, shared_q,
                                stream>>>(int(s.num_heads), int(s.num_kv_heads), int(s.head_dim), window,
                                          scale, row_start, q, k, v, out, lse, d_out, delta, dq);
  MYRIAD_CUDA_TRY_LAUNCH();
  const size_t shared_kv = size_t(2 * s.head_dim + 2 * kAttentionThreads) * sizeof(float);
  attention_backward_kv_kernel<<<dim3(unsigned(s.T), unsigned(s.num_kv_heads)), kAttentionThreads, shared_kv,
                                 stream>>>(int(s.num_heads), int(s.num_kv_heads), int(s.head_dim), window,
                                           scale, row_end, q, k, v, lse, d_out, delta, dk, dv);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

Status cross_entropy(float* logits, int64_t P, int64_t V, const int32_t* target, const float* weight,
                     float* loss, StreamHandle stream) {
  if (P == 0) return ok_status();
  if (P < 0 || V <= 0 || P > INT32_MAX || V > INT32_MAX) return bad_shape("cross_entropy", "bad shape");
  cross_entropy_kernel<<<unsigned(P), 1024, 0, stream>>>(logits, int(V), target, weight, loss);
  MYRIAD_CUDA_TRY_LAUNCH();
  return ok_status();
}

}  // namespace myriad::gpu::cuda::train
