// The cuda column: each case through gpu/include/gpu/cuda/ on device 0, the
// default stream. Inputs are uploaded in the case's dtype (activations too:
// the CUDA executor computes in F32 or BF16), outputs start as NaN (0xFF
// bytes) so an element a kernel forgets to write fails. Without
// MYRIAD_HAVE_CUDA this file only says so: every cuda cell is skipped.
#include "cases.h"

#if MYRIAD_HAVE_CUDA
#include <algorithm>
#include <cmath>

#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/gemm.h"
#include "gpu/cuda/lora.h"
#include "gpu/cuda/paged_attention.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/rope.h"
#include "gpu/cuda/sampling.h"
#endif

namespace myriad::backend_ops {

#if MYRIAD_HAVE_CUDA

namespace cu = gpu::cuda;
using cu::DeviceBuffer;

struct CudaBackend {
  cu::Blas blas;
};

std::unique_ptr<CudaBackend, void (*)(CudaBackend*)> make_cuda_backend(std::string& why) {
  std::unique_ptr<CudaBackend, void (*)(CudaBackend*)> none(nullptr, [](CudaBackend* p) { delete p; });
  if (auto reason = cu::device_unavailable_reason()) {
    why = "no CUDA device: " + *reason;
    return none;
  }
  auto blas = cu::Blas::create(nullptr);
  if (!blas.ok()) {
    why = "cuBLAS: " + blas.error().to_string();
    return none;
  }
  return {new CudaBackend{std::move(blas.value())}, [](CudaBackend* p) { delete p; }};
}

namespace {

// A CUDA call that fails makes the cell an error naming the call and line.
#define CU_OK(expr)                                                                                      \
  do {                                                                                                   \
    auto&& cu_st_ = (expr);                                                                              \
    if (!cu_st_.ok())                                                                                    \
      return Outcome::error(std::string(#expr).substr(0, 60) + " (line " + std::to_string(__LINE__) + "): " + \
                            cu_st_.error().to_string());                                                 \
  } while (0)
#define CU_LET(var, expr)     \
  auto var##_r_ = (expr);     \
  CU_OK(var##_r_);            \
  auto var = std::move(var##_r_.value())

Result<DeviceBuffer> upload_bytes(const void* p, size_t bytes) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, bytes));
  if (!b.ok()) return b.error();
  MYRIAD_TRY(cu::copy_h2d(b->data(), p, bytes));
  return std::move(b.value());
}
Result<DeviceBuffer> upload(const std::vector<float>& v, DType t) {
  const auto bytes = to_bytes(v, t);
  return upload_bytes(bytes.data(), bytes.size());
}
template <class T>
Result<DeviceBuffer> upload_raw(const std::vector<T>& v) {
  return upload_bytes(v.data(), v.size() * sizeof(T));
}
Result<DeviceBuffer> poisoned(size_t bytes) {
  auto b = DeviceBuffer::alloc(std::max<size_t>(1, bytes));
  if (!b.ok()) return b.error();
  MYRIAD_TRY(cu::fill_bytes(b->data(), 0xFF, bytes));
  return std::move(b.value());
}
Result<std::vector<float>> download(const DeviceBuffer& b, size_t n, DType t) {
  std::vector<uint8_t> bytes(n * dtype_size(t));
  MYRIAD_TRY(cu::copy_d2h(bytes.data(), b.data(), bytes.size()));
  MYRIAD_TRY(cu::device_synchronize());
  return from_bytes(bytes.data(), n, t);
}

// The CUDA executor computes in F32 or BF16 (docs/cuda-backend.md), so its
// kernels take no F16.
std::string f32_bf16_only(DType d) {
  if (d == DType::kF32 || d == DType::kBF16) return {};
  return "CUDA kernels take F32 or BF16 (asked " + lower_name(d) + ")";
}

}  // namespace

std::string EmbeddingCase::cuda_unsupported() const { return f32_bf16_only(dtype); }
Outcome EmbeddingCase::run_cuda(CudaBackend&) const {
  CU_LET(dt, upload(table, dtype));
  CU_LET(di, upload_raw(ids));
  CU_LET(dout, poisoned(size_t(T * hidden) * dtype_size(dtype)));
  CU_OK(cu::embedding(dtype, dout.data(), dt.data(), di.as<int32_t>(), T, hidden, vocab, nullptr));
  CU_LET(out, download(dout, size_t(T * hidden), dtype));
  return Outcome::ran({{out, dtype}});
}

std::string RmsnormCase::cuda_unsupported() const { return {}; }
Outcome RmsnormCase::run_cuda(CudaBackend&) const {
  CU_LET(dx, upload(x, dtype));
  CU_LET(dw, upload(w, dtype));
  CU_LET(dr, upload(res, dtype));
  CU_LET(dout, poisoned(x.size() * dtype_size(dtype)));
  CU_OK(cu::rmsnorm(dtype, dout.data(), residual ? dr.data() : nullptr, dx.data(), dw.data(), T, n, eps, nullptr));
  CU_LET(out, download(dout, x.size(), dtype));
  std::vector<Got> got{{out, dtype}};
  if (residual) {
    CU_LET(r, download(dr, res.size(), dtype));
    got.push_back({r, dtype});
  }
  return Outcome::ran(std::move(got));
}

std::string RopeCase::cuda_unsupported() const { return {}; }
Outcome RopeCase::run_cuda(CudaBackend&) const {
  const auto inv = cu::rope_inv_freq(config());
  CU_LET(dq, upload(q, dtype));
  CU_LET(dk, upload(k, dtype));
  CU_LET(dp, upload_raw(pos));
  CU_LET(dinv, upload(inv, DType::kF32));
  CU_OK(cu::rope(dtype, dq.data(), heads * head_dim, dk.data(), kv_heads * head_dim, dp.as<int32_t>(),
                 dinv.as<float>(), T, heads, kv_heads, head_dim, nullptr));
  CU_LET(rq, download(dq, q.size(), dtype));
  CU_LET(rk, download(dk, k.size(), dtype));
  return Outcome::ran({{rq, dtype}, {rk, dtype}});
}

std::string SiluMulCase::cuda_unsupported() const { return {}; }
Outcome SiluMulCase::run_cuda(CudaBackend&) const {
  CU_LET(dg, upload(gate_up, dtype));
  CU_LET(dout, poisoned(size_t(T * inter) * dtype_size(dtype)));
  CU_OK(cu::silu_mul(dtype, dout.data(), dg.data(), T, inter, nullptr));
  CU_LET(out, download(dout, size_t(T * inter), dtype));
  return Outcome::ran({{out, dtype}});
}

std::string AddBiasCase::cuda_unsupported() const { return {}; }
Outcome AddBiasCase::run_cuda(CudaBackend&) const {
  CU_LET(dy, upload(y, dtype));
  CU_LET(db, upload(bias, dtype));
  CU_OK(cu::add_bias(dtype, dy.data(), n, db.data(), T, n, nullptr));
  CU_LET(out, download(dy, y.size(), dtype));
  return Outcome::ran({{out, dtype}});
}

std::string GemmCase::cuda_unsupported() const { return f32_bf16_only(dtype); }
Outcome GemmCase::run_cuda(CudaBackend& be) const {
  CU_LET(dx, upload(x, dtype));
  CU_LET(dw, upload(w, dtype));
  CU_LET(dy, poisoned(size_t(T * out) * dtype_size(dtype)));
  CU_OK(be.blas.gemm(dtype, dtype, dx.data(), in, dw.data(), dy.data(), out, T, out, in));
  CU_LET(y, download(dy, size_t(T * out), dtype));
  return Outcome::ran({{y, dtype}});
}

std::string AttentionCase::cuda_unsupported() const {
  if (window > 0) return "no sliding window (CudaExecutor rejects such models as kUnsupported)";
  if (head_dim > 256) return "head_dim > 256";
  return f32_bf16_only(dtype);
}
Outcome AttentionCase::run_cuda(CudaBackend&) const {
  // Every position of every sequence goes in through kv_cache_write.
  std::vector<float> k_all, v_all;
  std::vector<int32_t> slot, token_pos, token_row, row_off, block_ids;
  for (size_t i = 0; i < seqs.size(); ++i) {
    row_off.push_back(int32_t(block_ids.size()));
    block_ids.insert(block_ids.end(), tables[i].begin(), tables[i].end());
    k_all.insert(k_all.end(), k[i].begin(), k[i].end());
    v_all.insert(v_all.end(), v[i].begin(), v[i].end());
    for (int64_t p = 0; p < seqs[i].start + seqs[i].n; ++p)
      slot.push_back(tables[i][size_t(p / block_size)] * block_size + int32_t(p % block_size));
    for (int64_t j = 0; j < seqs[i].n; ++j) {
      token_pos.push_back(int32_t(seqs[i].start + j));
      token_row.push_back(int32_t(i));
    }
  }
  const size_t cache_elems = size_t(pool_blocks) * size_t(block_size) * size_t(kv_dim());
  const size_t esz = dtype_size(dtype);
  CU_LET(dkc, poisoned(cache_elems * esz));
  CU_LET(dvc, poisoned(cache_elems * esz));
  CU_LET(dk, upload(k_all, dtype));
  CU_LET(dv, upload(v_all, dtype));
  CU_LET(dslot, upload_raw(slot));
  CU_OK(cu::kv_cache_write(dtype, dkc.data(), dvc.data(), dk.data(), kv_dim(), dv.data(), kv_dim(),
                           dslot.as<int32_t>(), int64_t(slot.size()), kv_heads, head_dim, nullptr));
  CU_LET(dq, upload(q, dtype));
  CU_LET(dpos, upload_raw(token_pos));
  CU_LET(drow, upload_raw(token_row));
  CU_LET(doff, upload_raw(row_off));
  CU_LET(dblk, upload_raw(block_ids));
  const int64_t T = tokens(), q_dim = heads * head_dim;
  CU_LET(dout, poisoned(size_t(T * q_dim) * esz));
  const cu::AttentionBatch batch{dpos.as<int32_t>(), drow.as<int32_t>(), doff.as<int32_t>(), dblk.as<int32_t>()};
  CU_OK(cu::paged_attention(dtype, dout.data(), q_dim, dq.data(), q_dim, dkc.data(), dvc.data(), batch, T, heads,
                            kv_heads, head_dim, block_size, 1.0f / std::sqrt(float(head_dim)), nullptr));
  CU_LET(out, download(dout, size_t(T * q_dim), dtype));
  CU_LET(kc, download(dkc, cache_elems, dtype));
  CU_LET(vc, download(dvc, cache_elems, dtype));
  std::vector<float> kr, vr;  // every position read back through the block table
  for (int32_t s : slot) {
    kr.insert(kr.end(), kc.begin() + long(size_t(s) * size_t(kv_dim())), kc.begin() + long(size_t(s + 1) * size_t(kv_dim())));
    vr.insert(vr.end(), vc.begin() + long(size_t(s) * size_t(kv_dim())), vc.begin() + long(size_t(s + 1) * size_t(kv_dim())));
  }
  return Outcome::ran({{out, dtype}, {kr, dtype}, {vr, dtype}});
}

std::string LoraCase::cuda_unsupported() const {
  return max_rank() > cu::kMaxLoraRank ? "rank > kMaxLoraRank" : "";
}
Outcome LoraCase::run_cuda(CudaBackend&) const {
  const int32_t R = max_rank(), S = int32_t(slots.size());
  // The CUDA slot layout: A [slots, max_rank, in], B [slots, out, max_rank], zero-padded.
  std::vector<float> a(size_t(S) * size_t(R) * size_t(in), 0.0f), b(size_t(S) * size_t(out) * size_t(R), 0.0f), scales;
  for (int32_t s = 0; s < S; ++s) {
    const ref::LoraSlot& sl = slots[size_t(s)];
    std::copy(sl.a.begin(), sl.a.end(), a.begin() + long(size_t(s) * size_t(R) * size_t(in)));
    for (int64_t o = 0; o < out; ++o)
      for (int32_t j = 0; j < sl.rank; ++j) b[(size_t(s) * size_t(out) + size_t(o)) * size_t(R) + size_t(j)] = sl.b[size_t(o * sl.rank + j)];
    scales.push_back(sl.scale);
  }
  CU_LET(da, upload(a, dtype));
  CU_LET(db, upload(b, dtype));
  CU_LET(dranks, upload_raw(ranks));
  CU_LET(dscales, upload(scales, DType::kF32));
  CU_LET(dx, upload(x, dtype));
  CU_LET(dy, upload(y, dtype));
  const cu::LoraModuleSlots view{.a = da.data(), .b = db.data(), .ranks = dranks.as<int32_t>(),
                                 .scales = dscales.as<float>(), .meta_stride = 1, .num_slots = S, .max_rank = R,
                                 .in = in, .out = out};
  if (mixtures) {
    // As CudaExecutor: one SGMV shrink + expand per mixture level, so no row
    // appears twice in one expand.
    for (uint8_t level = 0; level < kMaxAdaptersPerRow; ++level) {
      struct Entry {
        int32_t slot, token;
        float weight;
      };
      std::vector<Entry> e;
      for (int64_t t = 0; t < T; ++t) {
        const AdapterMix& m = mixes[size_t(t)];
        if (level < m.count && m.refs[level].slot >= 0 && m.refs[level].weight != 0.0f)
          e.push_back({m.refs[level].slot, int32_t(t), m.refs[level].weight});
      }
      if (e.empty()) continue;
      std::stable_sort(e.begin(), e.end(), [](const Entry& l, const Entry& r) { return l.slot < r.slot; });
      std::vector<int32_t> seg_slot, seg_start, tok;
      std::vector<float> wt;
      for (size_t i = 0; i < e.size(); ++i) {
        if (i == 0 || e[i].slot != e[i - 1].slot) {
          seg_slot.push_back(e[i].slot);
          seg_start.push_back(int32_t(i));
        }
        tok.push_back(e[i].token);
        wt.push_back(e[i].weight);
      }
      seg_start.push_back(int32_t(e.size()));
      int32_t longest = 0;
      for (size_t g = 0; g + 1 < seg_start.size(); ++g) longest = std::max(longest, seg_start[g + 1] - seg_start[g]);
      CU_LET(dss, upload_raw(seg_slot));
      CU_LET(dst, upload_raw(seg_start));
      CU_LET(dtok, upload_raw(tok));
      CU_LET(dwt, upload(wt, DType::kF32));
      CU_LET(dv, poisoned(e.size() * size_t(R) * sizeof(float)));
      const cu::SgmvBatch batch{dss.as<int32_t>(), dst.as<int32_t>(), dtok.as<int32_t>(), dwt.as<float>(),
                                int32_t(seg_slot.size()), longest};
      CU_OK(cu::sgmv_shrink(dtype, dv.as<float>(), dx.data(), in, view, batch, nullptr));
      CU_OK(cu::sgmv_expand(dtype, dy.data(), out, dv.as<float>(), view, batch, nullptr));
      CU_OK(cu::device_synchronize());  // dv and the metadata are freed at the end of this level
    }
  } else {
    // One slot at weight 1 or none per row: BGMV, the decode path.
    std::vector<int32_t> token_slot;
    for (const AdapterMix& m : mixes) token_slot.push_back(m.count ? m.refs[0].slot : -1);
    CU_LET(dts, upload_raw(token_slot));
    CU_LET(dv, poisoned(size_t(T) * size_t(R) * sizeof(float)));
    CU_OK(cu::bgmv_shrink(dtype, dv.as<float>(), dx.data(), in, view, dts.as<int32_t>(), T, nullptr));
    CU_OK(cu::bgmv_expand(dtype, dy.data(), out, dv.as<float>(), view, dts.as<int32_t>(), T, nullptr));
  }
  CU_LET(r, download(dy, y.size(), dtype));
  std::vector<float> same;
  for (size_t t : untouched_rows()) same.insert(same.end(), r.begin() + long(t * out), r.begin() + long((t + 1) * out));
  return Outcome::ran({{r, dtype}, {same, dtype}});
}

std::string GreedyCase::cuda_unsupported() const {
  return argmax_only ? "no standalone argmax kernel (cuda::sample's greedy argmax: row 'sample greedy+logprob')" : "";
}
Outcome GreedyCase::run_cuda(CudaBackend&) const {
  std::vector<cu::SampleRow> params(static_cast<size_t>(rows));
  for (auto& p : params) p.temperature = 0.0f;
  CU_LET(dl, upload(logits, DType::kF32));
  CU_LET(dwork, poisoned(logits.size() * sizeof(float)));
  CU_LET(dp, upload_raw(params));
  CU_LET(dtok, poisoned(size_t(rows) * sizeof(int32_t)));
  CU_LET(dlp, poisoned(size_t(rows) * sizeof(float)));
  CU_OK(cu::sample(dl.as<float>(), vocab, dwork.as<float>(), dp.as<cu::SampleRow>(), nullptr, rows, vocab,
                   dtok.as<int32_t>(), dlp.as<float>(), nullptr));
  std::vector<int32_t> tok(static_cast<size_t>(rows));
  CU_OK(cu::copy_d2h(tok.data(), dtok.data(), tok.size() * sizeof(int32_t)));
  CU_LET(lp, download(dlp, size_t(rows), DType::kF32));
  return Outcome::ran({{std::vector<float>(tok.begin(), tok.end()), DType::kF32}, {lp, DType::kF32}});
}

#else  // no CUDA in this build: the harness never calls these (the column is skipped)

struct CudaBackend {};

std::unique_ptr<CudaBackend, void (*)(CudaBackend*)> make_cuda_backend(std::string& why) {
  why = "built without CUDA (MYRIAD_WITH_CUDA off)";
  return {nullptr, [](CudaBackend* p) { delete p; }};
}

#define MYRIAD_NO_CUDA(Case)                                                                    \
  Outcome Case::run_cuda(CudaBackend&) const { return Outcome::skipped("built without CUDA"); } \
  std::string Case::cuda_unsupported() const { return {}; }
MYRIAD_NO_CUDA(EmbeddingCase)
MYRIAD_NO_CUDA(RmsnormCase)
MYRIAD_NO_CUDA(RopeCase)
MYRIAD_NO_CUDA(SiluMulCase)
MYRIAD_NO_CUDA(AddBiasCase)
MYRIAD_NO_CUDA(GemmCase)
MYRIAD_NO_CUDA(AttentionCase)
MYRIAD_NO_CUDA(LoraCase)
MYRIAD_NO_CUDA(GreedyCase)
#undef MYRIAD_NO_CUDA

#endif

}  // namespace myriad::backend_ops
