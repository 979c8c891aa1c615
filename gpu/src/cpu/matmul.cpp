#include "gpu/cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <vector>

#include "gpu/devices.h"
#include "matmul_kernels.h"
#include "runtime/result.h"

namespace myriad::gpu::cpu {
namespace {

std::atomic<MatmulIsa> g_isa_limit{MatmulIsa::kAmx};

MatmulIsa best_isa() {
  static const MatmulIsa best = [] {
    if (!cpu_info().avx2_fma) return MatmulIsa::kPortable;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
      return detail::amx_usable() ? MatmulIsa::kAmx : MatmulIsa::kAvx512;
#endif
    return MatmulIsa::kAvx2;
  }();
  return best;
}

}  // namespace

MatmulIsa matmul_isa() { return std::min(best_isa(), g_isa_limit.load(std::memory_order_relaxed)); }
void matmul_limit_isa(MatmulIsa max) { g_isa_limit.store(max); }

namespace detail {

bool use_avx2() { return matmul_isa() >= MatmulIsa::kAvx2; }

bool gemv_prefetch_into_l2() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_is("intel");
#else
  return false;
#endif
}

namespace {

// One weight row as float into `buf` (portable loop only).
void row_to_f32(const WeightView& w, int64_t r, float* buf) {
  const int64_t in = w.cols;
  switch (w.dtype) {
    case DType::kF32: {
      const float* p = static_cast<const float*>(w.data) + r * in;
      for (int64_t k = 0; k < in; ++k) buf[k] = p[k];
      break;
    }
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * in;
      for (int64_t k = 0; k < in; ++k) buf[k] = bf16_to_f32(p[k]);
      break;
    }
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * in;
      for (int64_t k = 0; k < in; ++k) buf[k] = f16_to_f32(p[k]);
      break;
    }
  }
}

}  // namespace

void matmul_rows_portable(const float* x, int64_t T, const WeightView& w, int64_t r0, int64_t r1, float* y,
                          int64_t ldy) {
  const int64_t in = w.cols;
  thread_local std::vector<float> row;
  row.resize(size_t(in));
  for (int64_t r = r0; r < r1; ++r) {
    row_to_f32(w, r, row.data());
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * in;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 partial sums: vectorizable without reassociation
      int64_t k = 0;
      for (; k + 8 <= in; k += 8)
        for (int i = 0; i < 8; ++i) acc[i] += row[size_t(k + i)] * xt[k + i];
      float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
      for (; k < in; ++k) s += row[size_t(k)] * xt[k];
      y[t * ldy + r] = s;
    }
  }
}

}  // namespace detail

namespace {

constexpr int64_t kTokenBlock = 64;  // tokens whose x stays in cache while a row chunk streams
constexpr int64_t kRowMultiple = 16;  // a multiple of the AVX2 loop's 4-row tiles
constexpr int kOwnPieces = 16;        // a claim from a thread's own share: 16 x 16 rows
// From this many tokens a bf16 matmul runs in AMX tiles. Below it the
// AVX-512 tiles stream the rows closer to the memory's rate (the AMX loop's
// strided tile loads keep fewer misses in flight) and are not yet bound by
// their FMAs. Interleaved A/B over the llama-110m matmuls (219 MB of bf16
// weights, 2 threads, best of 5), ms a pass, AVX-512 vs AMX: T=2 7.1 vs 8.1,
// T=4 7.8 vs 8.5, T=5 8.8 vs 8.4, T=8 10.6 vs 9.2, T=16 20.4 vs 11.0,
// T=64 73.6 vs 29.1.
constexpr int64_t kAmxMinTokens = 5;

}  // namespace

const char* matmul_kernel_name() {
  switch (matmul_isa()) {
    case MatmulIsa::kAmx: return "avx512+amx";
    case MatmulIsa::kAvx512: return "avx512";
    case MatmulIsa::kAvx2: return "avx2+fma";
    case MatmulIsa::kPortable: break;
  }
  return "portable";
}

float weight_at(const WeightView& w, int64_t i) {
  switch (w.dtype) {
    case DType::kF32: return static_cast<const float*>(w.data)[i];
    case DType::kBF16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    case DType::kF16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
  }
  return 0.0f;
}

void matmul_many(ThreadPool& pool, const float* x, int64_t T, std::span<const MatmulTarget> targets) {
  if (targets.empty() || T <= 0) return;
  const int64_t in = targets[0].w.cols;
  int64_t total_rows = 0;
  bool any_bf16 = false;
  for (const auto& t : targets) {
    MYRIAD_CHECK(t.w.cols == in, "matmul_many: targets differ in input width");
    total_rows += t.w.rows;
    any_bf16 |= t.w.dtype == DType::kBF16;
  }
  MatmulIsa isa = matmul_isa();
  // AMX takes the bf16 targets of a batch from kAmxMinTokens tokens on;
  // everything else runs as on an AVX-512 CPU.
  const bool amx = isa == MatmulIsa::kAmx && any_bf16 && T >= kAmxMinTokens && in % 32 == 0;
  if (isa == MatmulIsa::kAmx) isa = MatmulIsa::kAvx512;
  const float* x_bf16 = x;
  thread_local std::vector<float> permuted;
  thread_local std::vector<uint16_t> packed;
  const uint16_t* x_amx = nullptr;  // a plain pointer: the workers see their own (empty) thread_locals
  if (amx) {
    packed.resize(size_t(detail::amx_packed_x_elems(T, in)));
    detail::pack_x_for_amx(x, T, in, packed.data());
    x_amx = packed.data();
  } else if (isa != MatmulIsa::kPortable && any_bf16) {
    permuted.resize(size_t(T * in));
    if (isa == MatmulIsa::kAvx512) {
      detail::permute_x_for_bf16_avx512(x, T, in, permuted.data());
    } else {
      detail::permute_x_for_bf16_avx2(x, T, in, permuted.data());
    }
    x_bf16 = permuted.data();
  }
  auto body = [&](int64_t b, int64_t e, int) {
    // Map the chunk of the concatenated row space onto each target it covers.
    int64_t base = 0;
    for (const auto& tg : targets) {
      const int64_t lo = b > base ? b - base : 0;
      const int64_t hi = e - base < tg.w.rows ? e - base : tg.w.rows;
      if (lo < hi && amx && tg.w.dtype == DType::kBF16) {
        detail::matmul_rows_amx(x, x_amx, T, tg.w, lo, hi, tg.y, tg.w.rows);
      } else if (lo < hi) {
        const float* xs = tg.w.dtype == DType::kBF16 ? x_bf16 : x;
        for (int64_t t0 = 0; t0 < T; t0 += kTokenBlock) {
          const int64_t tn = T - t0 < kTokenBlock ? T - t0 : kTokenBlock;
          float* yb = tg.y + t0 * tg.w.rows;
          switch (isa) {
            case MatmulIsa::kAmx:  // remapped above
            case MatmulIsa::kAvx512: detail::matmul_rows_avx512(xs + t0 * in, tn, tg.w, lo, hi, yb, tg.w.rows); break;
            case MatmulIsa::kAvx2: detail::matmul_rows_avx2(xs + t0 * in, tn, tg.w, lo, hi, yb, tg.w.rows); break;
            case MatmulIsa::kPortable: detail::matmul_rows_portable(xs + t0 * in, tn, tg.w, lo, hi, yb, tg.w.rows); break;
          }
        }
      }
      base += tg.w.rows;
      if (base >= e) break;
    }
  };
  // Each thread streams its own contiguous share of the rows (claimed 256
  // rows at a time), then helps with the back of the others' 16 rows at a
  // time: one long prefetch-friendly stream a thread, and a region that
  // still ends balanced within a piece.
  // - T = 1 (memory-bound GEMV): in an interleaved A/B of the llama-110m
  //   decode matmuls this streamed 61-62 GB/s (median 57-58, as a plain read
  //   of the same bytes in one region) against 57 (median 53-54) for 8
  //   dynamic chunks.
  // - T = 8 (batch-8 decode): whole steps 2-3% faster than with 4 dynamic
  //   chunks a thread (best and median of 12 interleaved passes), whose last
  //   chunk (up to ~17 us of a q|k|v region) left one thread waiting.
  pool.parallel_for_shares(total_rows, kRowMultiple, kOwnPieces, body);
}

void matmul(ThreadPool& pool, const float* x, int64_t T, const WeightView& w, float* y) {
  const MatmulTarget t{w, y};
  matmul_many(pool, x, T, std::span<const MatmulTarget>(&t, 1));
}

void matmul_reference(const float* x, int64_t T, const WeightView& w, float* y) {
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double s = 0;
      for (int64_t k = 0; k < w.cols; ++k) s += double(weight_at(w, r * w.cols + k)) * double(x[t * w.cols + k]);
      y[t * w.rows + r] = float(s);
    }
  }
}

}  // namespace myriad::gpu::cpu
