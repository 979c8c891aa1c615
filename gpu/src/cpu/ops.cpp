#include "gpu/cpu/ops.h"

#include <cmath>

#include "matmul_kernels.h"
#include "ops_kernels.h"

namespace myriad::gpu::cpu {

void rmsnorm(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * n;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) acc[j] += xt[i + j] * xt[i + j];
    float ss = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; i < n; ++i) ss += xt[i] * xt[i];
    const float inv = 1.0f / std::sqrt(ss / float(n) + eps);
    float* yt = y + t * n;
    for (i = 0; i < n; ++i) yt[i] = xt[i] * inv * w[i];
  }
}

void rmsnorm_reference(const float* x, const float* w, int64_t T, int64_t n, float eps, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[t * n + i]) * x[t * n + i];
    const double inv = 1.0 / std::sqrt(ss / double(n) + eps);
    for (int64_t i = 0; i < n; ++i) y[t * n + i] = float(x[t * n + i] * inv * w[i]);
  }
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t d = c.head_dim, half = d / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i)
    inv[size_t(i)] = 1.0f / std::pow(c.rope_theta, float(2 * i) / float(d));
  if (c.rope_scaling && c.rope_scaling->type == "llama3") {
    // transformers' _compute_llama3_parameters, in float32.
    const auto& s = *c.rope_scaling;
    const float old_ctx = float(s.original_max_position_embeddings);
    const float low_wavelen = old_ctx / s.low_freq_factor;
    const float high_wavelen = old_ctx / s.high_freq_factor;
    const float pi = 3.14159265358979323846f;
    for (auto& f : inv) {
      const float wavelen = 2.0f * pi / f;
      if (wavelen > low_wavelen) {
        f = f / s.factor;
      } else if (wavelen >= high_wavelen) {  // medium band: interpolate
        const float smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0f - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

void rope_cos_sin(int64_t pos, const float* inv_freq, int64_t half, float* cos_out, float* sin_out) {
  for (int64_t i = 0; i < half; ++i) {
    const float a = float(pos) * inv_freq[i];
    cos_out[i] = std::cos(a);
    sin_out[i] = std::sin(a);
  }
}

void rope_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cos, const float* sin) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float a = xh[i], b = xh[i + half];
      xh[i] = a * cos[i] - b * sin[i];
      xh[i + half] = b * cos[i] + a * sin[i];
    }
  }
}

void rope_reference(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const ModelConfig& c) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(double(c.rope_theta), -double(2 * i) / double(head_dim));
    if (c.rope_scaling && c.rope_scaling->type == "llama3") {
      const auto& s = *c.rope_scaling;
      const double wavelen = 2 * M_PI / f;
      const double lo = double(s.original_max_position_embeddings) / s.low_freq_factor;
      const double hi = double(s.original_max_position_embeddings) / s.high_freq_factor;
      if (wavelen > lo) {
        f /= s.factor;
      } else if (wavelen >= hi) {
        const double sm = (double(s.original_max_position_embeddings) / wavelen - s.low_freq_factor) /
                          (double(s.high_freq_factor) - s.low_freq_factor);
        f = (1 - sm) * f / s.factor + sm * f;
      }
    }
    const double ang = double(pos) * f;
    for (int64_t h = 0; h < n_heads; ++h) {
      const double a = x[h * head_dim + i], b = x[h * head_dim + i + half];
      x[h * head_dim + i] = float(a * std::cos(ang) - b * std::sin(ang));
      x[h * head_dim + i + half] = float(b * std::cos(ang) + a * std::sin(ang));
    }
  }
}

void to_bf16(const float* x, int64_t n, uint16_t* out) {
  if (detail::use_avx2()) {
    detail::f32_to_bf16_avx2(x, n, out);
    return;
  }
  for (int64_t i = 0; i < n; ++i) out[i] = f32_to_bf16(x[i]);
}

void silu_mul(const float* gate, const float* up, int64_t n, float* out) {
  if (detail::use_avx2()) {
    detail::silu_mul_avx2(gate, up, n, out);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void silu_mul_reference(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = float(double(gate[i]) / (1.0 + std::exp(-double(gate[i]))) * up[i]);
}

void embedding(const WeightView& table, const int32_t* ids, int64_t T, float* out) {
  const int64_t h = table.cols;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t base = int64_t(ids[t]) * h;
    float* o = out + t * h;
    switch (table.dtype) {
      case DType::kF32: {
        const float* p = static_cast<const float*>(table.data) + base;
        for (int64_t i = 0; i < h; ++i) o[i] = p[i];
        break;
      }
      case DType::kBF16: {
        const uint16_t* p = static_cast<const uint16_t*>(table.data) + base;
        for (int64_t i = 0; i < h; ++i) o[i] = bf16_to_f32(p[i]);
        break;
      }
      case DType::kF16: {
        const uint16_t* p = static_cast<const uint16_t*>(table.data) + base;
        for (int64_t i = 0; i < h; ++i) o[i] = f16_to_f32(p[i]);
        break;
      }
    }
  }
}

void softmax(float* x, int64_t n) {
  if (detail::use_avx2()) {
    detail::softmax_avx2(x, n);
    return;
  }
  float m = x[0];
  for (int64_t i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
  float s = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - m);
    s += x[i];
  }
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void softmax_reference(const float* x, int64_t n, double* out) {
  double m = x[0];
  for (int64_t i = 1; i < n; ++i) m = std::max(m, double(x[i]));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::exp(double(x[i]) - m);
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp(double(x[i]) - m) / s;
}

int64_t argmax(const float* x, int64_t n) {
  if (detail::use_avx2()) {
    const int64_t i = detail::argmax_avx2(x, n);  // ties to the lowest index too
    if (i >= 0) return i;
    // -1: NaNs among the values; the scalar scan below decides.
  }
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

void add_bias(float* y, const float* b, int64_t T, int64_t n) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += b[i];
}

}  // namespace myriad::gpu::cpu
