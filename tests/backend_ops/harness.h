// The backend-ops table (in the style of llama.cpp's test-backend-ops): every
// op case runs on every backend against one plain double-precision reference
// (reference.h), and the binary prints op x backend -> pass / FAIL /
// unsupported / skipped with the worst error ratio.
//
// An OpCase is one op at one point of its grid (shape, dtype): it draws its
// inputs from a seeded rng, computes the expected outputs with the reference,
// and knows how to run itself on each backend through the kernels' public
// entry points (cpu_backend.cpp, cuda_backend.cpp). Adding an op = one
// OpCase subclass (cases.h), its reference, its glue per backend and its grid
// (cases.cpp). A backend that lacks the op answers unsupported(reason), never
// a silent skip.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpu/cpu/matmul.h"
#include "gpu/cpu/thread_pool.h"
#include "runtime/dtype.h"

namespace myriad::backend_ops {

// |got - ref| <= atol + rtol * |ref|, element-wise.
struct Tol {
  double atol = 0, rtol = 0;
};

// The default tolerance for a value stored in `stored`:
// - F32: results differ from the double reference only by float32 rounding
//   and summation order, ~1e-6 for these reductions (<= a few hundred O(1)
//   terms). 1e-4 leaves room for the device's approximate exp / rsqrt and is
//   still far below what a real bug does (a wrong index or a dropped term
//   moves an O(1) output by O(0.1)).
// - BF16: 8 significant bits, so storing a result rounds it by up to 2^-9
//   (2e-3) relative; ops that also round an intermediate to bf16 (the fused
//   residual, each LoRA mixture level, attention's P.V inputs) add a few such
//   roundings: 1e-2 relative (~2.5 bf16 ulps), and 1e-2 absolute for outputs
//   near zero out of O(1) terms.
// - F16 (CPU caches and weights only; results are f32): inputs are rounded
//   before the reference sees them, so F32's tolerance applies to results.
Tol default_tol(DType stored);

// One output of a case, as the reference gives it.
struct Expected {
  std::string name;
  std::vector<float> v;
  bool exact = false;  // token ids, gathers, cache contents, untouched rows: bit-equal
};

// One output as a backend produced it, converted to float; `stored` is the
// dtype the backend wrote it in (it picks the tolerance).
struct Got {
  std::vector<float> v;
  DType stored = DType::kF32;
};

struct Outcome {
  enum class Kind { kRan, kUnsupported, kSkipped, kError };
  Kind kind = Kind::kRan;
  std::string why;          // unsupported / skipped / error
  std::vector<Got> out;     // kRan: one per Expected, same order

  static Outcome ran(std::vector<Got> out) { return {Kind::kRan, {}, std::move(out)}; }
  static Outcome unsupported(std::string why) { return {Kind::kUnsupported, std::move(why), {}}; }
  static Outcome skipped(std::string why) { return {Kind::kSkipped, std::move(why), {}}; }
  static Outcome error(std::string why) { return {Kind::kError, std::move(why), {}}; }
};

// What a CPU cell runs on: the matmul_limit_isa() ceiling in force (the
// harness sets it around the call) and whether every kernel that exposes a
// portable entry point must use it (lora_sgmv_portable).
struct CpuBackend {
  gpu::cpu::ThreadPool* pool = nullptr;
  bool force_portable = false;
};

// The CUDA context (cuda_backend.cpp): a cuBLAS handle on the default
// stream; null where no device is usable.
struct CudaBackend;

class OpCase {
 public:
  virtual ~OpCase() = default;
  // Table row: op name and dtype, e.g. "rmsnorm f32". Cases of one row
  // differ only in shape.
  virtual std::string row() const = 0;
  // The grid point, printed on failure: "T=3 n=64".
  virtual std::string shape() const = 0;
  // Fresh inputs; every backend then sees exactly the same values (already
  // rounded to the dtype each will store them in).
  virtual void make_inputs(std::mt19937_64& rng) = 0;
  virtual std::vector<Expected> reference() const = 0;
  virtual Outcome run_cpu(const CpuBackend& be) const = 0;
  virtual Outcome run_cuda(CudaBackend& be) const = 0;
  // Why CUDA cannot run this case ("" = it can). Decided without a device,
  // so a machine without one still shows what CUDA lacks as unsupported.
  virtual std::string cuda_unsupported() const = 0;
  // Tolerance for a non-exact output `i` stored as `stored`.
  virtual Tol tol(size_t /*i*/, DType stored) const { return default_tol(stored); }
};

using Cases = std::vector<std::unique_ptr<OpCase>>;
Cases all_cases();  // cases.cpp: the grid

// CUDA: created once; returns null with `why` set when CUDA is not compiled
// in or no device can run kernels.
std::unique_ptr<CudaBackend, void (*)(CudaBackend*)> make_cuda_backend(std::string& why);

// ---- helpers shared by the case files

// Normal(0, sd) values rounded to `t`.
std::vector<float> randn(std::mt19937_64& rng, size_t n, DType t, float sd = 1.0f);
// Uniform [-a, a) values rounded to `t`.
std::vector<float> uniform(std::mt19937_64& rng, size_t n, DType t, float a);
std::vector<float> rounded(std::vector<float> v, DType t);
// Little-endian element bytes of dtype t (f32, bf16, f16) and back.
std::vector<uint8_t> to_bytes(const std::vector<float>& v, DType t);
std::vector<float> from_bytes(const uint8_t* b, size_t n, DType t);
// "f32", "bf16", "f16".
std::string lower_name(DType t);

}  // namespace myriad::backend_ops
