#include "reference.h"

#include <cmath>
#include <limits>

namespace myriad::backend_ops::ref {

std::vector<float> embedding(const std::vector<float>& table, int64_t hidden, const std::vector<int32_t>& ids) {
  std::vector<float> out;
  out.reserve(ids.size() * size_t(hidden));
  for (int32_t id : ids)
    for (int64_t i = 0; i < hidden; ++i) out.push_back(table[size_t(id * hidden + i)]);
  return out;
}

void rmsnorm(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t n, float eps,
             std::vector<float>* residual, DType residual_dtype, std::vector<float>& out) {
  out.assign(size_t(T * n), 0.0f);
  std::vector<double> row(static_cast<size_t>(n));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = size_t(t * n + i);
      if (residual) {
        (*residual)[k] = round_to_dtype(residual_dtype, float(double((*residual)[k]) + double(x[k])));
        row[size_t(i)] = (*residual)[k];
      } else {
        row[size_t(i)] = x[k];
      }
    }
    double ss = 0;
    for (double v : row) ss += v * v;
    const double inv = 1.0 / std::sqrt(ss / double(n) + double(eps));
    for (int64_t i = 0; i < n; ++i) out[size_t(t * n + i)] = float(row[size_t(i)] * inv * double(w[size_t(i)]));
  }
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const int64_t d = c.head_dim, half = d / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double f = std::pow(double(c.rope_theta), -double(2 * i) / double(d));
    if (c.rope_scaling && c.rope_scaling->type == "llama3") {
      const RopeScaling& s = *c.rope_scaling;
      const double old_ctx = double(s.original_max_position_embeddings);
      const double wavelen = 2 * M_PI / f;
      if (wavelen > old_ctx / s.low_freq_factor) {
        f /= s.factor;  // long wavelengths: interpolated by the factor
      } else if (wavelen >= old_ctx / s.high_freq_factor) {  // the band between: smooth blend
        const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (double(s.high_freq_factor) - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv[size_t(i)] = float(f);
  }
  return inv;
}

void rope(float* x, int64_t heads, int64_t head_dim, int32_t pos, const std::vector<float>& inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const double ang = double(float(pos) * inv_freq[size_t(i)]);  // float32 product, as transformers
    const double c = std::cos(ang), s = std::sin(ang);
    for (int64_t h = 0; h < heads; ++h) {
      float* xh = x + h * head_dim;
      const double a = xh[i], b = xh[i + half];
      xh[i] = float(a * c - b * s);
      xh[i + half] = float(b * c + a * s);
    }
  }
}

std::vector<float> silu_mul(const std::vector<float>& gate_up, int64_t T, int64_t inter) {
  std::vector<float> out(size_t(T * inter));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      const double g = gate_up[size_t(t * 2 * inter + i)], u = gate_up[size_t(t * 2 * inter + inter + i)];
      out[size_t(t * inter + i)] = float(g / (1.0 + std::exp(-g)) * u);
    }
  return out;
}

std::vector<float> gemm(const std::vector<float>& x, const std::vector<float>& w, int64_t T, int64_t in, int64_t out) {
  std::vector<float> y(size_t(T * out));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double acc = 0;
      for (int64_t k = 0; k < in; ++k) acc += double(x[size_t(t * in + k)]) * double(w[size_t(o * in + k)]);
      y[size_t(t * out + o)] = float(acc);
    }
  return y;
}

void attention(const float* q, const float* k, const float* v, int64_t ctx, int64_t heads, int64_t kv_heads,
               int64_t head_dim, float* out) {
  const int64_t kv_dim = kv_heads * head_dim, group = heads / kv_heads;
  const double scale = 1.0 / std::sqrt(double(head_dim));
  std::vector<double> p(static_cast<size_t>(ctx));
  for (int64_t h = 0; h < heads; ++h) {
    const int64_t kvh = h / group;
    double mx = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < ctx; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < head_dim; ++d) dot += double(q[h * head_dim + d]) * k[j * kv_dim + kvh * head_dim + d];
      p[size_t(j)] = dot * scale;
      mx = std::max(mx, p[size_t(j)]);
    }
    double z = 0;
    for (double& s : p) z += (s = std::exp(s - mx));
    for (int64_t d = 0; d < head_dim; ++d) {
      double o = 0;
      for (int64_t j = 0; j < ctx; ++j) o += p[size_t(j)] * v[j * kv_dim + kvh * head_dim + d];
      out[h * head_dim + d] = float(o / z);
    }
  }
}

void lora(std::span<const AdapterMix> mixes, std::span<const LoraSlot> slots, const std::vector<float>& x,
          int64_t in, std::vector<float>& y, int64_t out) {
  for (size_t t = 0; t < mixes.size(); ++t) {
    std::vector<double> delta(static_cast<size_t>(out), 0.0);
    for (uint8_t m = 0; m < mixes[t].count; ++m) {
      const AdapterRef& r = mixes[t].refs[m];
      if (r.slot < 0) continue;
      const LoraSlot& s = slots[size_t(r.slot)];
      for (int32_t k = 0; k < s.rank; ++k) {
        double h = 0;
        for (int64_t i = 0; i < in; ++i) h += double(s.a[size_t(k * in + i)]) * x[t * size_t(in) + size_t(i)];
        for (int64_t o = 0; o < out; ++o)
          delta[size_t(o)] += double(r.weight) * double(s.scale) * double(s.b[size_t(o * s.rank + k)]) * h;
      }
    }
    for (int64_t o = 0; o < out; ++o) y[t * size_t(out) + size_t(o)] = float(y[t * size_t(out) + size_t(o)] + delta[size_t(o)]);
  }
}

Greedy greedy(const float* logits, int64_t vocab) {
  int32_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best]) best = int32_t(i);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - logits[best]);
  return {best, -std::log(z)};
}

}  // namespace myriad::backend_ops::ref
