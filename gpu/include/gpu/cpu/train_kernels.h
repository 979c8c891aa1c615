// The CPU backend's training kernels: the forward pieces a backward needs
// saved (inverse RMS, attention log-sum-exp) and the backward of each op of
// the Llama graph (gpu/llama_graph.h), for float (training) and double (the
// finite-difference gradient checks). One sequence or one token at a time;
// the trainer (lora_trainer.h) parallelises over them. Stateless and
// thread-safe. Backward functions add into their outputs (+=) unless named
// otherwise, so residual branches sum without extra buffers.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "gpu/cpu/matmul.h"

namespace myriad::gpu::cpu::train {

// A dot product in 16 independent lanes (vectorised without -ffast-math).
template <class Real>
inline Real dot(const Real* a, const Real* b, int64_t n) {
  Real acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  Real s = 0;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out[k * ld_out + i] += scale * sum over the tokens t of `spans` (in order)
// of u[t * ld_u + k] * v[t * ld_v + i], for k < nk and i in [i0, i1): the
// outer-product sums of LoRA's dA (u = dz, v = x) and dBᵀ (u = z, v = dy).
// Each element's sum runs over the tokens in order, whatever [i0, i1) is.
template <class Real>
void accumulate_outer(const std::vector<std::pair<int64_t, int64_t>>& spans, const Real* u, int64_t ld_u, int64_t nk,
                      const Real* v, int64_t ld_v, int64_t i0, int64_t i1, Real scale, Real* out, int64_t ld_out);

// y = x * r * w with r = 1 / sqrt(mean(x^2) + eps), one row of n; returns r.
template <class Real>
Real rmsnorm_row(const Real* x, const float* w, int64_t n, double eps, Real* y);
// dx += d(y)/d(x)^T dy for that row, given its r.
template <class Real>
void rmsnorm_row_backward(const Real* x, const float* w, Real r, const Real* dy, int64_t n, Real* dx);

// Rotate-half RoPE of one token's n_heads heads in place (cos/sin: [head_dim/2]);
// the backward applies the inverse rotation to the gradient in place.
template <class Real>
void rope_row(Real* x, int64_t n_heads, int64_t head_dim, const Real* cos, const Real* sin);
template <class Real>
void rope_row_backward(Real* dx, int64_t n_heads, int64_t head_dim, const Real* cos, const Real* sin);

// a = silu(g) * u; backward: dg += da * u * silu'(g), du += da * silu(g).
template <class Real>
void silu_mul_row(const Real* g, const Real* u, int64_t n, Real* a);
template <class Real>
void silu_mul_row_backward(const Real* g, const Real* u, const Real* da, int64_t n, Real* dg, Real* du);

// Causal self-attention of one sequence of T tokens for the query heads of
// kv head `kv_head` (heads h with h / (num_heads / num_kv_heads) == kv_head).
// q: [T, num_heads * d], k, v: [T, num_kv_heads * d]; out: [T, num_heads * d]
// (written), lse: [T, num_heads] log-sum-exp of the scaled scores (written).
// window > 0: token i sees tokens j > i - window only.
struct AttentionShape {
  int64_t T = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0, window = 0;
};
template <class Real>
void attention_forward(const AttentionShape& s, int64_t kv_head, const Real* q, const Real* k, const Real* v, Real* out,
                       Real* lse);
// dq, dk, dv += the gradients from d_out, recomputing the probabilities from lse.
// Different kv heads touch disjoint parts of dq/dk/dv, so they may run in parallel.
template <class Real>
void attention_backward(const AttentionShape& s, int64_t kv_head, const Real* q, const Real* k, const Real* v,
                        const Real* out, const Real* lse, const Real* d_out, Real* dq, Real* dk, Real* dv);

// Cross-entropy of one position: returns -log softmax(logits)[target] and
// writes dlogits = weight * (softmax(logits) - onehot(target)).
template <class Real>
double cross_entropy_row(const Real* logits, int64_t vocab, int32_t target, double weight, Real* dlogits);

// dx[T, in] (+= when accumulate, else =) dy[T, out] · W[out, in]: the input
// gradient of y = x · W^T. W is read in its stored dtype, never expanded.
void matmul_input_grad(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, float* dx, bool accumulate);
// The same with Wᵀ already made (transpose_weight): no pass over W per call.
void matmul_input_grad(ThreadPool& pool, const float* dy, int64_t T, const WeightView& w, const WeightView& wt,
                       float* dx, bool accumulate);
// W [out, in] as Wᵀ [in, out] in the same 2- or 4-byte dtype; `storage` holds
// the elements (the view points into it). Other dtypes: an empty view.
WeightView transpose_weight(ThreadPool& pool, const WeightView& w, std::vector<uint32_t>& storage);
// Naive reference (double accumulation) for tests.
void matmul_input_grad_reference(const float* dy, int64_t T, const WeightView& w, float* dx);

// The float kernels on AVX-512 / AVX2+FMA (train_kernels_avx512.cpp,
// train_kernels_avx2.cpp; the templates call them for float where
// lora_isa() has them): the same contracts, FMAs.
namespace detail {
// Queries per block of attention_backward (its P and dS rows: [block, T]).
inline constexpr int64_t kAttentionBackwardBlock = 64;
void accumulate_outer_avx2(const std::pair<int64_t, int64_t>* spans, int64_t num_spans, const float* u, int64_t ld_u,
                           int64_t nk, const float* v, int64_t ld_v, int64_t i0, int64_t i1, float scale, float* out,
                           int64_t ld_out);
// head_dim a multiple of 8. p: [T] scratch.
void attention_forward_avx2(const AttentionShape& s, int64_t kv_head, const float* q, const float* k, const float* v,
                            float* out, float* lse, float* p);
// head_dim a multiple of 8. P, dS: [kAttentionBackwardBlock, T], column:
// [2 * kAttentionBackwardBlock] scratch.
void attention_backward_avx2(const AttentionShape& s, int64_t kv_head, const float* q, const float* k, const float* v,
                             const float* out, const float* lse, const float* d_out, float* dq, float* dk, float* dv,
                             float* P, float* dS, float* column);
void accumulate_outer_avx512(const std::pair<int64_t, int64_t>* spans, int64_t num_spans, const float* u, int64_t ld_u,
                             int64_t nk, const float* v, int64_t ld_v, int64_t i0, int64_t i1, float scale, float* out,
                             int64_t ld_out);
}  // namespace detail

}  // namespace myriad::gpu::cpu::train
