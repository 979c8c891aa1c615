// Training kernels (train_kernels.h). Plain loops the compiler vectorises;
// the expensive part of a training step is the GEMMs (matmul.h and
// matmul_input_grad below), not these.
#include "gpu/cpu/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

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
        const Real* kj = k + j * ks + kv_head * d;
        Real dot = 0;
        for (int64_t c = 0; c < d; ++c) dot += qi[c] * kj[c];
        p[size_t(j)] = dot * scale;
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
// ds_ij = p_ij (dp_ij - D_i); dq_i += ds_ij k_j / sqrt(d); dk_j += ds_ij q_i / sqrt(d); dv_j += p_ij do_i.
template <class Real>
void attention_backward(const AttentionShape& s, int64_t kv_head, const Real* q, const Real* k, const Real* v,
                        const Real* out, const Real* lse, const Real* d_out, Real* dq, Real* dk, Real* dv) {
  const int64_t d = s.head_dim, group = s.num_heads / s.num_kv_heads;
  const int64_t qs = s.num_heads * d, ks = s.num_kv_heads * d;
  const Real scale = Real(1) / std::sqrt(Real(d));
  for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h) {
    for (int64_t i = 0; i < s.T; ++i) {
      const Real* qi = q + i * qs + h * d;
      const Real* doi = d_out + i * qs + h * d;
      const Real* oi = out + i * qs + h * d;
      Real* dqi = dq + i * qs + h * d;
      Real D = 0;
      for (int64_t c = 0; c < d; ++c) D += doi[c] * oi[c];
      const Real l = lse[i * s.num_heads + h];
      const int64_t j0 = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0;
      for (int64_t j = j0; j <= i; ++j) {
        const Real* kj = k + j * ks + kv_head * d;
        const Real* vj = v + j * ks + kv_head * d;
        Real dot = 0, dp = 0;
        for (int64_t c = 0; c < d; ++c) {
          dot += qi[c] * kj[c];
          dp += doi[c] * vj[c];
        }
        const Real p = std::exp(dot * scale - l);
        const Real ds = p * (dp - D) * scale;
        Real* dkj = dk + j * ks + kv_head * d;
        Real* dvj = dv + j * ks + kv_head * d;
        for (int64_t c = 0; c < d; ++c) {
          dqi[c] += ds * kj[c];
          dkj[c] += ds * qi[c];
          dvj[c] += p * doi[c];
        }
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

void matmul_input_grad(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, float* dx, bool accumulate) {
  const int64_t out = w.rows, in = w.cols;
  const int64_t blocks = (in + kColBlock - 1) / kColBlock;
  // Tasks: (column block, token tile of 64 tokens) so a small T still fills the pool.
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
          for (int64_t t = 0; t < nt; ++t) {
            const float g = dy[(t0 + t) * out + o];
            if (g == 0.0f) continue;
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
  template double cross_entropy_row<Real>(const Real*, int64_t, int32_t, double, Real*);

MYRIAD_TRAIN_KERNELS(float)
MYRIAD_TRAIN_KERNELS(double)

}  // namespace myriad::gpu::cpu::train
