// Training kernels (train_kernels.h). Plain loops the compiler vectorises
// (for float, attention on AVX2 and LoRA's dA/dB sums on AVX2 or AVX-512:
// train_kernels_avx2.cpp, train_kernels_avx512.cpp; LoRA's shrink and expand
// go through lora_sgmv); the expensive part of a training step is
// the GEMMs (matmul.h and matmul_input_grad below).
#include "gpu/cpu/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "gpu/cpu/lora_sgmv.h"

namespace myriad::gpu::cpu::train {

template <class Real>
Real rmsnorm_row(const Real* x, const float* w, int64_t n, double eps, Real* y) {
  Real ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const Real r = Real(1) / std::sqrt(ss / Real(n) + Real(eps));
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r * Real(w[i]);
  return r;
}

// y_i = x_i r w_i, r = (mean(x^2) + eps)^(-1/2), dr/dx_j = -r^3 x_j / n:
// dx_j = r w_j dy_j - x_j r^3 / n * sum_i(dy_i w_i x_i).
template <class Real>
void rmsnorm_row_backward(const Real* x, const float* w, Real r, const Real* dy, int64_t n, Real* dx) {
  Real dot = 0;
  for (int64_t i = 0; i < n; ++i) dot += dy[i] * Real(w[i]) * x[i];
  const Real c = r * r * r * dot / Real(n);
  for (int64_t i = 0; i < n; ++i) dx[i] += r * Real(w[i]) * dy[i] - x[i] * c;
}

template <class Real>
void rope_row(Real* x, int64_t n_heads, int64_t head_dim, const Real* cos, const Real* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    Real* p = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const Real a = p[i], b = p[i + half];
      p[i] = a * cos[i] - b * sin[i];
      p[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

// The rotation's transpose: the same with -sin.
template <class Real>
void rope_row_backward(Real* dx, int64_t n_heads, int64_t head_dim, const Real* cos, const Real* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    Real* p = dx + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const Real a = p[i], b = p[i + half];
      p[i] = a * cos[i] + b * sin[i];
      p[i + half] = b * cos[i] - a * sin[i];
    }
  }
}

template <class Real>
void silu_mul_row(const Real* g, const Real* u, int64_t n, Real* a) {
  for (int64_t i = 0; i < n; ++i) a[i] = g[i] / (Real(1) + std::exp(-g[i])) * u[i];
}

template <class Real>
void silu_mul_row_backward(const Real* g, const Real* u, const Real* da, int64_t n, Real* dg, Real* du) {
  for (int64_t i = 0; i < n; ++i) {
    const Real s = Real(1) / (Real(1) + std::exp(-g[i]));
    const Real silu = g[i] * s;
    du[i] += da[i] * silu;
    dg[i] += da[i] * u[i] * s * (Real(1) + g[i] * (Real(1) - s));
  }
}

template <class Real>
void attention_forward(const AttentionShape& s, int64_t kv_head, const Real* q, const Real* k, const Real* v, Real* out,
                       Real* lse) {
  if constexpr (std::is_same_v<Real, float>) {
    if (lora_isa() >= LoraIsa::kAvx2 && s.head_dim % 8 == 0) {
      thread_local std::vector<float> scratch;
      scratch.resize(size_t(s.T));
      detail::attention_forward_avx2(s, kv_head, q, k, v, out, lse, scratch.data());
      return;
    }
  }
  const int64_t d = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const int64_t qs = s.num_heads * d, ks = s.num_kv_heads * d;
  const Real scale = Real(1) / std::sqrt(Real(d));
  std::vector<Real> p(size_t(s.T));
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i = 0; i < s.T; ++i) {
      const Real* qi = q + i * qs + h * d;
      const int64_t j0 = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0;
      Real m = -std::numeric_limits<Real>::infinity();
      for (int64_t j = j0; j <= i; ++j) {
        p[size_t(j)] = dot(qi, k + j * ks + kv_head * d, d) * scale;
        m = std::max(m, p[size_t(j)]);
      }
      Real sum = 0;
      for (int64_t j = j0; j <= i; ++j) sum += (p[size_t(j)] = std::exp(p[size_t(j)] - m));
      Real* oi = out + i * qs + h * d;
      std::fill(oi, oi + d, Real(0));
      for (int64_t j = j0; j <= i; ++j) {
        const Real w = p[size_t(j)] / sum;
        const Real* vj = v + j * ks + kv_head * d;
        for (int64_t c = 0; c < d; ++c) oi[c] += w * vj[c];
      }
      lse[i * s.num_heads + h] = m + std::log(sum);
    }
  }
}

// p_ij = exp(s_ij - lse_i); dp_ij = do_i . v_j; D_i = do_i . o_i;
// ds_ij = p_ij (dp_ij - D_i) / sqrt(d); then dq_i = sum_j ds_ij k_j,
// dk_j = sum_i ds_ij q_i, dv_j = sum_i p_ij do_i, each summed in a local
// vector (so the loops vectorise). Queries go in blocks of 64 whose P and dS
// rows are kept ([64, T]: memory linear in T, whatever the context).
template <class Real>
void attention_backward(const AttentionShape& s, int64_t kv_head, const Real* q, const Real* k, const Real* v,
                        const Real* out, const Real* lse, const Real* d_out, Real* dq, Real* dk, Real* dv) {
  constexpr int64_t kBlock = detail::kAttentionBackwardBlock;
  const int64_t d = s.head_dim, group = s.num_heads / s.num_kv_heads, T = s.T;
  const int64_t qs = s.num_heads * d, ks = s.num_kv_heads * d;
  const Real scale = Real(1) / std::sqrt(Real(d));
  thread_local std::vector<Real> P, dS, acc_k, acc_v;
  P.resize(size_t(kBlock * T));
  dS.resize(size_t(kBlock * T));
  if constexpr (std::is_same_v<Real, float>) {
    if (lora_isa() >= LoraIsa::kAvx2 && d % 8 == 0) {
      acc_k.resize(size_t(2 * kBlock));
      detail::attention_backward_avx2(s, kv_head, q, k, v, out, lse, d_out, dq, dk, dv, P.data(), dS.data(),
                                      acc_k.data());
      return;
    }
  }
  acc_k.resize(size_t(d));
  acc_v.resize(size_t(d));
  Real* ak = acc_k.data();
  Real* av = acc_v.data();
  auto first_key = [&](int64_t i) { return s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : int64_t(0); };
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
      const int64_t i1 = std::min(T, i0 + kBlock);
      for (int64_t i = i0; i < i1; ++i) {
        const Real* qi = q + i * qs + h * d;
        const Real* doi = d_out + i * qs + h * d;
        const Real D = dot(doi, out + i * qs + h * d, d);
        const Real l = lse[i * s.num_heads + h];
        Real* Pi = P.data() + (i - i0) * T;
        Real* dSi = dS.data() + (i - i0) * T;
        for (int64_t j = first_key(i); j <= i; ++j) {
          const Real p = std::exp(dot(qi, k + j * ks + kv_head * d, d) * scale - l);
          Pi[j] = p;
          dSi[j] = p * (dot(doi, v + j * ks + kv_head * d, d) - D) * scale;
        }
        std::fill(ak, ak + d, Real(0));
        for (int64_t j = first_key(i); j <= i; ++j) {
          const Real g = dSi[j];
          const Real* kj = k + j * ks + kv_head * d;
          for (int64_t c = 0; c < d; ++c) ak[c] += g * kj[c];
        }
        Real* dqi = dq + i * qs + h * d;
        for (int64_t c = 0; c < d; ++c) dqi[c] += ak[c];
      }
      // Keys this block of queries saw: j in [first_key(i0), i1).
      for (int64_t j = first_key(i0); j < i1; ++j) {
        std::fill(ak, ak + d, Real(0));
        std::fill(av, av + d, Real(0));
        const int64_t ib = std::max(i0, j);
        const int64_t ie = s.window > 0 ? std::min(i1, j + s.window) : i1;
        for (int64_t i = ib; i < ie; ++i) {
          const Real g = dS[size_t((i - i0) * T + j)], p = P[size_t((i - i0) * T + j)];
          const Real* qi = q + i * qs + h * d;
          const Real* doi = d_out + i * qs + h * d;
          for (int64_t c = 0; c < d; ++c) {
            ak[c] += g * qi[c];
            av[c] += p * doi[c];
          }
        }
        Real* dkj = dk + j * ks + kv_head * d;
        Real* dvj = dv + j * ks + kv_head * d;
        for (int64_t c = 0; c < d; ++c) {
          dkj[c] += ak[c];
          dvj[c] += av[c];
        }
      }
    }
  }
}

template <class Real>
void accumulate_outer(const std::vector<std::pair<int64_t, int64_t>>& spans, const Real* u, int64_t ld_u, int64_t nk,
                      const Real* v, int64_t ld_v, int64_t i0, int64_t i1, Real scale, Real* out, int64_t ld_out) {
  if constexpr (std::is_same_v<Real, float>) {
    if (lora_isa() == LoraIsa::kAvx512) {
      detail::accumulate_outer_avx512(spans.data(), int64_t(spans.size()), u, ld_u, nk, v, ld_v, i0, i1, scale, out,
                                      ld_out);
      return;
    }
    if (lora_isa() == LoraIsa::kAvx2) {
      detail::accumulate_outer_avx2(spans.data(), int64_t(spans.size()), u, ld_u, nk, v, ld_v, i0, i1, scale, out,
                                    ld_out);
      return;
    }
  }
  constexpr int64_t kW = 64, kK = 4;  // a 4 x 64 block of sums kept in registers
  for (int64_t c0 = i0; c0 < i1; c0 += kW) {
    const int64_t nc = std::min(kW, i1 - c0);
    for (int64_t k0 = 0; k0 < nk; k0 += kK) {
      const int64_t nkk = std::min(kK, nk - k0);
      Real acc[kK][kW] = {};
      for (const auto& [t0, t1] : spans)
        for (int64_t t = t0; t < t1; ++t) {
          const Real* vt = v + t * ld_v + c0;
          const Real* ut = u + t * ld_u + k0;
          Real d[kK];
          for (int64_t k = 0; k < kK; ++k) d[k] = k < nkk ? ut[k] : Real(0);
          if (nc == kW) {
            for (int64_t k = 0; k < kK; ++k)
              for (int64_t c = 0; c < kW; ++c) acc[k][c] += d[k] * vt[c];
          } else {
            for (int64_t k = 0; k < kK; ++k)
              for (int64_t c = 0; c < nc; ++c) acc[k][c] += d[k] * vt[c];
          }
        }
      for (int64_t k = 0; k < nkk; ++k) {
        Real* o = out + (k0 + k) * ld_out + c0;
        for (int64_t c = 0; c < nc; ++c) o[c] += scale * acc[k][c];
      }
    }
  }
}

template <class Real>
double cross_entropy_row(const Real* logits, int64_t vocab, int32_t target, double weight, Real* dlogits) {
  Real m = logits[0];
  for (int64_t i = 1; i < vocab; ++i) m = std::max(m, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    const Real e = std::exp(logits[i] - m);
    dlogits[i] = e;
    sum += double(e);
  }
  const Real inv = Real(1.0 / sum);
  for (int64_t i = 0; i < vocab; ++i) dlogits[i] = Real(weight) * dlogits[i] * inv;
  dlogits[target] -= Real(weight);
  return -(double(logits[target]) - double(m) - std::log(sum));
}

namespace {

constexpr int64_t kColBlock = 128;  // dx columns a task owns (in floats)
constexpr int64_t kTokTile = 8;     // tokens accumulated together

// Converts row `o`, columns [c0, c0 + n) of W to float.
void load_row(const WeightView& w, int64_t o, int64_t c0, int64_t n, float* out) {
  const int64_t base = o * w.cols + c0;
  switch (w.dtype) {
    case DType::kF32: {
      const float* p = static_cast<const float*>(w.data) + base;
      std::copy(p, p + n, out);
      break;
    }
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + base;
      for (int64_t i = 0; i < n; ++i) {
        const uint32_t bits = uint32_t(p[i]) << 16;
        float f;
        __builtin_memcpy(&f, &bits, 4);
        out[i] = f;
      }
      break;
    }
    default:
      for (int64_t i = 0; i < n; ++i) out[i] = weight_at(w, base + i);
  }
}

}  // namespace

namespace {

// dx (+)= dy · W read row by row: W is read once per 64 tokens, so this is
// for a few tokens only (decode-sized steps).
void input_grad_direct(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, float* dx, bool accumulate) {
  const int64_t out = w.rows, in = w.cols;
  const int64_t blocks = (in + kColBlock - 1) / kColBlock;
  constexpr int64_t kTokChunk = 64;
  const int64_t chunks = (T + kTokChunk - 1) / kTokChunk;
  pool.parallel_for(blocks * chunks, 1, [&](int64_t b, int64_t e, int) {
    alignas(64) float wrow[kColBlock];
    alignas(64) float acc[kTokTile][kColBlock];
    for (int64_t task = b; task < e; ++task) {
      const int64_t blk = task % blocks, chunk = task / blocks;
      const int64_t c0 = blk * kColBlock, n = std::min(kColBlock, in - c0);
      const int64_t t_end = std::min(T, (chunk + 1) * kTokChunk);
      for (int64_t t0 = chunk * kTokChunk; t0 < t_end; t0 += kTokTile) {
        const int64_t nt = std::min(kTokTile, t_end - t0);
        for (int64_t t = 0; t < nt; ++t) std::fill(acc[t], acc[t] + kColBlock, 0.0f);
        for (int64_t o = 0; o < out; ++o) {
          load_row(w, o, c0, n, wrow);
          std::fill(wrow + n, wrow + kColBlock, 0.0f);  // the last block's tail: computed, discarded
          for (int64_t t = 0; t < nt; ++t) {
            const float g = dy[(t0 + t) * out + o];
            float* a = acc[t];
            for (int64_t c = 0; c < kColBlock; ++c) a[c] += g * wrow[c];
          }
        }
        for (int64_t t = 0; t < nt; ++t) {
          float* d = dx + (t0 + t) * in + c0;
          if (accumulate) {
            for (int64_t c = 0; c < n; ++c) d[c] += acc[t][c];
          } else {
            std::copy(acc[t], acc[t] + n, d);
          }
        }
      }
    }
  });
}

// W [out, in] into Wt [in, out], same element type, in 32 x 32 tiles.
template <class E>
void transpose(ThreadPool& pool, const E* w, int64_t out, int64_t in, E* wt) {
  constexpr int64_t kTile = 32;
  const int64_t row_tiles = (out + kTile - 1) / kTile;
  pool.parallel_for(row_tiles, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t rt = b; rt < e; ++rt) {
      const int64_t o0 = rt * kTile, o1 = std::min(out, o0 + kTile);
      for (int64_t i0 = 0; i0 < in; i0 += kTile) {
        const int64_t i1 = std::min(in, i0 + kTile);
        for (int64_t o = o0; o < o1; ++o)
          for (int64_t i = i0; i < i1; ++i) wt[i * out + o] = w[o * in + i];
      }
    }
  });
}

}  // namespace

WeightView transpose_weight(ThreadPool& pool, const WeightView& w, std::vector<uint32_t>& storage) {
  const size_t elem = dtype_size(w.dtype);
  if (elem != 2 && elem != 4) return {};
  storage.resize((size_t(w.rows * w.cols) * elem + 3) / 4);
  if (elem == 2) {
    transpose(pool, static_cast<const uint16_t*>(w.data), w.rows, w.cols, reinterpret_cast<uint16_t*>(storage.data()));
  } else {
    transpose(pool, static_cast<const uint32_t*>(w.data), w.rows, w.cols, storage.data());
  }
  return WeightView{w.dtype, storage.data(), w.cols, w.rows};
}

// From 16 tokens the GEMM is worth the fast forward kernel over Wᵀ:
// dx = dy · (Wᵀ)ᵀ through matmul.
void matmul_input_grad(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, const WeightView& wt,
                       float* dx, bool accumulate) {
  if (T < 16 || wt.data == nullptr) {
    input_grad_direct(pool, dy, T, w, dx, accumulate);
    return;
  }
  if (!accumulate) {
    matmul(pool, dy, T, wt, dx);
    return;
  }
  thread_local std::vector<float> tmp;
  tmp.resize(size_t(T * w.cols));
  matmul(pool, dy, T, wt, tmp.data());
  const int64_t n = T * w.cols;
  const float* add = tmp.data();  // not `tmp` inside the lambda: that names each worker's own (thread_local)
  pool.parallel_for(n, 1 << 14, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) dx[i] += add[i];
  });
}

void matmul_input_grad(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, float* dx, bool accumulate) {
  if (T < 16) {
    input_grad_direct(pool, dy, T, w, dx, accumulate);
    return;
  }
  thread_local std::vector<uint32_t> storage;
  const WeightView wt = transpose_weight(pool, w, storage);
  matmul_input_grad(pool, dy, T, w, wt, dx, accumulate);
}

void matmul_input_grad_reference(const float* dy, int64_t T, const WeightView& w, float* dx) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < w.cols; ++i) {
      double s = 0;
      for (int64_t o = 0; o < w.rows; ++o) s += double(dy[t * w.rows + o]) * double(weight_at(w, o * w.cols + i));
      dx[t * w.cols + i] = float(s);
    }
}

#define MYRIAD_TRAIN_KERNELS(Real)                                                                                  \
  template Real rmsnorm_row<Real>(const Real*, const float*, int64_t, double, Real*);                               \
  template void rmsnorm_row_backward<Real>(const Real*, const float*, Real, const Real*, int64_t, Real*);           \
  template void rope_row<Real>(Real*, int64_t, int64_t, const Real*, const Real*);                                  \
  template void rope_row_backward<Real>(Real*, int64_t, int64_t, const Real*, const Real*);                         \
  template void silu_mul_row<Real>(const Real*, const Real*, int64_t, Real*);                                       \
  template void silu_mul_row_backward<Real>(const Real*, const Real*, const Real*, int64_t, Real*, Real*);          \
  template void attention_forward<Real>(const AttentionShape&, int64_t, const Real*, const Real*, const Real*,      \
                                        Real*, Real*);                                                              \
  template void attention_backward<Real>(const AttentionShape&, int64_t, const Real*, const Real*, const Real*,     \
                                         const Real*, const Real*, const Real*, Real*, Real*, Real*);               \
  template double cross_entropy_row<Real>(const Real*, int64_t, int32_t, double, Real*);                           \
  template void accumulate_outer<Real>(const std::vector<std::pair<int64_t, int64_t>>&, const Real*, int64_t,       \
                                       int64_t, const Real*, int64_t, int64_t, int64_t, Real, Real*, int64_t);

MYRIAD_TRAIN_KERNELS(float)
MYRIAD_TRAIN_KERNELS(double)

}  // namespace myriad::gpu::cpu::train
