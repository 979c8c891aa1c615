// The cpu column(s): each case through the CPU backend's public kernels
// (gpu/include/gpu/cpu/). The ISA ceiling (matmul_limit_isa) is set by the
// harness around each call; CPU activations are float32 only, so bf16 cases
// of per-token ops are unsupported here (weights, tables, caches and LoRA
// slots do come in bf16 / f16).
#include <cmath>
#include <cstring>
#include <functional>

#include "cases.h"
#include "gpu/cpu/kv_cache.h"
#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/ops.h"
#include "gpu/cpu/paged_attention.h"
#include "gpu/cpu/sampler.h"

namespace myriad::backend_ops {

namespace cpu = gpu::cpu;

namespace {

Outcome f32_activations_only(DType d) {
  return Outcome::unsupported("CPU activations are f32 only (asked " + lower_name(d) + ")");
}

}  // namespace

Outcome EmbeddingCase::run_cpu(const CpuBackend&) const {
  const auto bytes = to_bytes(table, dtype);
  std::vector<float> out(size_t(T * hidden), NAN);
  cpu::embedding(cpu::WeightView{dtype, bytes.data(), vocab, hidden}, ids.data(), T, out.data());
  return Outcome::ran({{out, DType::kF32}});
}

Outcome RmsnormCase::run_cpu(const CpuBackend&) const {
  if (residual) return Outcome::unsupported("no fused residual add (CpuExecutor adds the residual itself, then calls rmsnorm)");
  if (dtype != DType::kF32) return f32_activations_only(dtype);
  std::vector<float> out(x.size(), NAN);
  cpu::rmsnorm(x.data(), w.data(), T, n, eps, out.data());
  return Outcome::ran({{out, DType::kF32}});
}

Outcome RopeCase::run_cpu(const CpuBackend&) const {
  if (dtype != DType::kF32) return f32_activations_only(dtype);
  const auto inv = cpu::rope_inv_freq(config());
  const int64_t half = head_dim / 2;
  std::vector<float> rq = q, rk = k, cs(static_cast<size_t>(half)), sn(static_cast<size_t>(half));
  for (int64_t t = 0; t < T; ++t) {  // as CpuExecutor: cos/sin once per token, then q and k
    cpu::rope_cos_sin(pos[size_t(t)], inv.data(), half, cs.data(), sn.data());
    cpu::rope_apply(rq.data() + t * heads * head_dim, heads, head_dim, cs.data(), sn.data());
    cpu::rope_apply(rk.data() + t * kv_heads * head_dim, kv_heads, head_dim, cs.data(), sn.data());
  }
  return Outcome::ran({{rq, DType::kF32}, {rk, DType::kF32}});
}

Outcome SiluMulCase::run_cpu(const CpuBackend&) const {
  if (dtype != DType::kF32) return f32_activations_only(dtype);
  std::vector<float> out(size_t(T * inter), NAN);
  for (int64_t t = 0; t < T; ++t)
    cpu::silu_mul(gate_up.data() + t * 2 * inter, gate_up.data() + t * 2 * inter + inter, inter, out.data() + t * inter);
  return Outcome::ran({{out, DType::kF32}});
}

Outcome AddBiasCase::run_cpu(const CpuBackend&) const {
  if (dtype != DType::kF32) return f32_activations_only(dtype);
  std::vector<float> r = y;
  cpu::add_bias(r.data(), bias.data(), T, n);
  return Outcome::ran({{r, DType::kF32}});
}

Outcome GemmCase::run_cpu(const CpuBackend& be) const {
  const auto wb = to_bytes(w, dtype);
  std::vector<float> y(size_t(T * out), NAN);
  cpu::matmul(*be.pool, x.data(), T, cpu::WeightView{dtype, wb.data(), out, in}, y.data());
  return Outcome::ran({{y, DType::kF32}});
}

Outcome AttentionCase::run_cpu(const CpuBackend& be) const {
  const int64_t layer = 1;  // not the first, so a layer offset error shows
  cpu::KvCache cache(2, pool_blocks, block_size, kv_dim(), dtype);
  // Every slot NaN (0xFF.. is NaN in f32, bf16 and f16) until written.
  const size_t block_bytes = size_t(block_size * kv_dim()) * dtype_size(dtype);
  for (int32_t b = 0; b < pool_blocks; ++b) {
    std::memset(cache.k_block(layer, b), 0xFF, block_bytes);
    std::memset(cache.v_block(layer, b), 0xFF, block_bytes);
  }
  std::vector<cpu::AttentionRow> rows;
  int64_t t = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    for (int64_t p = 0; p < seqs[i].start + seqs[i].n; ++p)
      cache.write(layer, tables[i].data(), p, k[i].data() + p * kv_dim(), v[i].data() + p * kv_dim());
    rows.push_back({t, int32_t(seqs[i].n), seqs[i].start, tables[i].data()});
    t += seqs[i].n;
  }
  std::vector<float> out(size_t(t * heads * head_dim), NAN);
  cpu::paged_attention(*be.pool, cache, layer, cpu::AttentionShape{heads, kv_heads, head_dim, window}, rows, q.data(),
                       out.data());
  std::vector<float> kc, vc;  // every position read back through the block table
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int64_t p = 0; p < seqs[i].start + seqs[i].n; ++p) {
      const size_t off = size_t((p % block_size) * kv_dim()) * dtype_size(dtype);
      const int32_t blk = tables[i][size_t(p / block_size)];
      const auto kr = from_bytes(reinterpret_cast<const uint8_t*>(cache.k_block(layer, blk)) + off, size_t(kv_dim()), dtype);
      const auto vr = from_bytes(reinterpret_cast<const uint8_t*>(cache.v_block(layer, blk)) + off, size_t(kv_dim()), dtype);
      kc.insert(kc.end(), kr.begin(), kr.end());
      vc.insert(vc.end(), vr.begin(), vr.end());
    }
  return Outcome::ran({{out, DType::kF32}, {kc, dtype}, {vc, dtype}});
}

Outcome LoraCase::run_cpu(const CpuBackend& be) const {
  // The CPU slot layout: A [rank, in], B transposed [rank, out], in the slot dtype.
  std::vector<std::vector<uint8_t>> a(slots.size()), bt(slots.size());
  std::vector<cpu::LoraModuleView> views;
  for (size_t s = 0; s < slots.size(); ++s) {
    const int32_t r = slots[s].rank;
    std::vector<float> t(size_t(int64_t(r) * out));
    for (int64_t o = 0; o < out; ++o)
      for (int32_t j = 0; j < r; ++j) t[size_t(j * out + o)] = slots[s].b[size_t(o * r + j)];
    a[s] = to_bytes(slots[s].a, dtype);
    bt[s] = to_bytes(t, dtype);
    views.push_back({a[s].data(), bt[s].data(), r, slots[s].scale, dtype});
  }
  cpu::LoraBatchPlan plan;
  plan.build(mixes);
  cpu::LoraScratch scratch;
  cpu::ThreadPool& pool = *be.pool;
  const cpu::LoraParallelFor parallel = [&pool](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    pool.parallel_for(n, 1, [&body](int64_t b, int64_t e, int) { body(b, e); });
  };
  std::vector<float> r = y;
  // lora_sgmv picks AVX2 by CPUID, not by matmul_limit_isa: the portable
  // column calls its portable entry point instead.
  (be.force_portable ? cpu::lora_sgmv_portable : cpu::lora_sgmv)(plan, views, x.data(), in, r.data(), out, scratch,
                                                                  parallel);
  std::vector<float> same;
  for (size_t t : untouched_rows()) same.insert(same.end(), r.begin() + long(t * out), r.begin() + long((t + 1) * out));
  return Outcome::ran({{r, DType::kF32}, {same, DType::kF32}});
}

Outcome GreedyCase::run_cpu(const CpuBackend&) const {
  std::vector<float> tok, lp;
  cpu::Sampler sampler;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* z = logits.data() + r * vocab;
    if (argmax_only) {
      tok.push_back(float(cpu::argmax(z, vocab)));
    } else {
      const cpu::Sampled s = sampler.sample(z, vocab, greedy, 0, {}, 0);
      tok.push_back(float(s.token));
      lp.push_back(s.logprob);
    }
  }
  std::vector<Got> out{{tok, DType::kF32}};
  if (!argmax_only) out.push_back({lp, DType::kF32});
  return Outcome::ran(std::move(out));
}

}  // namespace myriad::backend_ops
