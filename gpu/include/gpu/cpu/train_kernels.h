// The CPU backend's training kernels: the forward pieces a backward needs
// saved (inverse RMS, attention log-sum-exp) and the backward of each op of
// the Llama graph (gpu/llama_graph.h), for float (training) and double (the
// finite-difference gradient checks). One sequence or one token at a time;
// the trainer (lora_trainer.h) parallelises over them. Stateless and
// thread-safe. Backward functions add into their outputs (+=) unless named
// otherwise, so residual branches sum without extra buffers.
#pragma once

#include <cstdint>

#include "gpu/cpu/matmul.h"

namespace myriad::gpu::cpu::train {

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
// Naive reference (double accumulation) for tests.
void matmul_input_grad_reference(const float* dy, int64_t T, const WeightView& w, float* dx);

}  // namespace myriad::gpu::cpu::train
