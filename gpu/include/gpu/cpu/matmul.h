// The CPU backend's hot loop: y[T, out] = x[T, in] · W[out, in]^T with W in
// f32, bf16 or f16, converted on the fly (never expanded in memory).
//
// For T = 1 (decode) this is a GEMV bound by memory bandwidth; for T > 1 a
// pass over a few rows of W serves every token (tiles of up to 4 tokens in
// registers, token blocks of 64 in cache; with AMX, 32 rows x up to 16
// tokens in tiles), so a batched decode step reads each weight once from
// DRAM. Several matrices sharing one input (q/k/v, gate/up) run in one
// parallel region.
//
// Stateless apart from a per-thread scratch buffer; thread-safe.
#pragma once

#include <cstdint>
#include <span>

#include "gpu/cpu/thread_pool.h"
#include "runtime/dtype.h"

namespace myriad::gpu::cpu {

// A weight matrix [rows = out, cols = in], row-major, little-endian.
struct WeightView {
  DType dtype = DType::kF32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t bytes() const { return size_t(rows * cols) * dtype_size(dtype); }
};

struct MatmulTarget {
  WeightView w;     // [out, in]
  float* y;         // [T, out]
};

// y = x · W^T for one weight. x: [T, in] (in == w.cols).
void matmul(ThreadPool& pool, const float* x, int64_t T, const WeightView& w, float* y);
// Several weights with the same `in`, one parallel region.
void matmul_many(ThreadPool& pool, const float* x, int64_t T, std::span<const MatmulTarget> targets);

// Naive reference (double accumulation, one thread) for tests.
void matmul_reference(const float* x, int64_t T, const WeightView& w, float* y);

// Instruction sets of the inner loops. The best one the CPU has is used
// (AMX-BF16 for bf16 weights from 5 tokens where present, else AVX-512F for
// matmul; AVX2 for attention); tests lower the limit to exercise the others.
// Process-wide, not meant to change during a step.
enum class MatmulIsa : uint8_t { kPortable, kAvx2, kAvx512, kAmx };
MatmulIsa matmul_isa();                  // in use now
void matmul_limit_isa(MatmulIsa max);    // kAmx = no limit
const char* matmul_kernel_name();        // "avx512+amx", "avx512", "avx2+fma" or "portable"
inline void matmul_force_portable(bool on) { matmul_limit_isa(on ? MatmulIsa::kPortable : MatmulIsa::kAmx); }

// Element i of a weight as float.
float weight_at(const WeightView& w, int64_t i);

}  // namespace myriad::gpu::cpu
