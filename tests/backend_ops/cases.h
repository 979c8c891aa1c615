// The op cases of the backend-ops table: parameters (one grid point), the
// inputs drawn for it, and its reference outputs (cases.cpp); run_cpu and
// run_cuda are the glue to each backend's kernels (cpu_backend.cpp,
// cuda_backend.cpp). Shapes are noted per member.
#pragma once

#include <string>
#include <vector>

#include "harness.h"
#include "reference.h"
#include "runtime/model_config.h"
#include "runtime/step_plan.h"

namespace myriad::backend_ops {

// Each case type declares the OpCase interface the same way.
#define MYRIAD_BACKEND_OPS_CASE_METHODS                             \
  std::string row() const override;                                \
  std::string shape() const override;                              \
  void make_inputs(std::mt19937_64& rng) override;                 \
  std::vector<Expected> reference() const override;                \
  Outcome run_cpu(const CpuBackend& be) const override;            \
  Outcome run_cuda(CudaBackend& be) const override;                \
  std::string cuda_unsupported() const override;

// Embedding gather; dtype = the table's (CPU: f32/bf16/f16 -> f32 rows; CUDA: rows in the table's dtype).
struct EmbeddingCase : OpCase {
  DType dtype;
  int64_t vocab, hidden, T;
  std::vector<float> table;  // [vocab, hidden]
  std::vector<int32_t> ids;  // [T]
  EmbeddingCase(DType d, int64_t v, int64_t h, int64_t t) : dtype(d), vocab(v), hidden(h), T(t) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// RMSNorm, optionally with the fused residual add (outputs: out, then residual).
struct RmsnormCase : OpCase {
  DType dtype;
  int64_t T, n;
  bool residual;
  float eps = 1e-5f;
  std::vector<float> x, w, res;  // [T, n], [n], [T, n]
  RmsnormCase(DType d, int64_t t, int64_t n_, bool r) : dtype(d), T(t), n(n_), residual(r) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// RoPE on q [T, heads * head_dim] and k [T, kv_heads * head_dim] at per-token
// positions in [0, max_pos]; llama3 = Llama 3.1's rope_scaling (theta 500000).
struct RopeCase : OpCase {
  DType dtype;
  int64_t T, heads, kv_heads, head_dim;
  bool llama3;
  int32_t max_pos;
  std::vector<float> q, k;
  std::vector<int32_t> pos;  // [T]
  RopeCase(DType d, int64_t t, int64_t h, int64_t kvh, int64_t hd, bool l3, int32_t mp)
      : dtype(d), T(t), heads(h), kv_heads(kvh), head_dim(hd), llama3(l3), max_pos(mp) {}
  ModelConfig config() const;
  Tol tol(size_t i, DType stored) const override;
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// SiLU-mul over the fused gate|up output [T, 2 * inter].
struct SiluMulCase : OpCase {
  DType dtype;
  int64_t T, inter;
  std::vector<float> gate_up;
  SiluMulCase(DType d, int64_t t, int64_t i) : dtype(d), T(t), inter(i) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// y[T, n] += bias[n].
struct AddBiasCase : OpCase {
  DType dtype;
  int64_t T, n;
  std::vector<float> y, bias;
  AddBiasCase(DType d, int64_t t, int64_t n_) : dtype(d), T(t), n(n_) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// y[T, out] = x[T, in] . W[out, in]^T; dtype = W's (CUDA: x and y too).
struct GemmCase : OpCase {
  DType dtype;
  int64_t T, in, out;
  std::vector<float> x, w;
  GemmCase(DType d, int64_t t, int64_t i, int64_t o) : dtype(d), T(t), in(i), out(o) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// Paged-KV write of every position of several sequences, then causal GQA
// attention for each sequence's new tokens (prefill from 0, chunks, decode).
// dtype = the cache's (CPU: q and out stay f32). Block tables are a
// shuffled permutation of the pool and every slot starts as NaN, so a wrong
// block or an unwritten slot fails. Outputs: out [T, heads * head_dim], then
// K and V of every position read back from the cache (exact).
struct AttentionCase : OpCase {
  struct Seq {
    int64_t start, n;  // n new tokens after `start` cached ones
  };
  DType dtype;
  int64_t heads, kv_heads, head_dim;
  int32_t block_size;
  int64_t window;  // 0 = full causal
  std::vector<Seq> seqs;
  // Inputs
  int32_t pool_blocks = 0;
  std::vector<std::vector<int32_t>> tables;  // per seq: block ids
  std::vector<std::vector<float>> k, v;      // per seq: [start + n, kv_dim]
  std::vector<float> q;                      // [T, heads * head_dim], sequences' new tokens in order
  AttentionCase(DType d, int64_t h, int64_t kvh, int64_t hd, int32_t bs, int64_t w, std::vector<Seq> s)
      : dtype(d), heads(h), kv_heads(kvh), head_dim(hd), block_size(bs), window(w), seqs(std::move(s)) {}
  int64_t kv_dim() const { return kv_heads * head_dim; }
  int64_t tokens() const;
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// Multi-LoRA on one module: y[T, out] += each row's mixture of slots. Slot
// ranks differ (one is 0: module not targeted); rows with no adapter must
// come out bit-equal. mixtures = rows may mix 2-3 weighted slots (CUDA: SGMV,
// one expand per mixture level); otherwise each row has one slot at weight 1
// or none (CUDA: BGMV, the decode path). dtype = the slots' weights (CUDA: x
// and y too). Outputs: y, then the rows no adapter touches (exact).
struct LoraCase : OpCase {
  DType dtype;
  int64_t T, in, out;
  std::vector<int32_t> ranks;  // per slot
  bool mixtures;
  std::vector<ref::LoraSlot> slots;
  std::vector<AdapterMix> mixes;  // [T]
  std::vector<float> x, y;        // [T, in], [T, out]
  LoraCase(DType d, int64_t t, int64_t i, int64_t o, std::vector<int32_t> r, bool m)
      : dtype(d), T(t), in(i), out(o), ranks(std::move(r)), mixtures(m) {}
  int32_t max_rank() const;
  std::vector<size_t> untouched_rows() const;
  Tol tol(size_t i, DType stored) const override;
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

// Greedy token selection and its logprob over rows of logits [rows, vocab];
// some rows tie at the maximum (the lowest id wins). argmax_only = ops.h's
// argmax (CPU) instead of the sampler (outputs: tokens, then logprobs).
struct GreedyCase : OpCase {
  int64_t rows, vocab;
  bool argmax_only;
  std::vector<float> logits;
  GreedyCase(int64_t r, int64_t v, bool a) : rows(r), vocab(v), argmax_only(a) {}
  MYRIAD_BACKEND_OPS_CASE_METHODS
};

#undef MYRIAD_BACKEND_OPS_CASE_METHODS

}  // namespace myriad::backend_ops
