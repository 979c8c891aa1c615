// `myriad selfcheck`: what compute backends this machine offers, and a
// numerical check of each: the CPU's fast RMSNorm and bf16 matmul (the
// kernel this CPU runs: AVX2, AVX-512 or AMX tiles; T = 1 and T = 8) against
// their naive references, and, where a CUDA device exists, the CUDA twin
// against the CPU.
// Exit code 0 when every present backend agrees, 1 otherwise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "commands.h"
#include "gpu/cpu/matmul.h"
#include "gpu/cpu/ops.h"
#include "gpu/cpu/thread_pool.h"
#include "gpu/devices.h"
#include "runtime/dtype.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/rmsnorm.h"
#endif

namespace myriad::cli {
namespace {

constexpr int64_t kRows = 8, kHidden = 4096;
constexpr float kEps = 1e-5f;

// Largest |got - ref| / (atol + rtol |ref|); <= 1 passes. float32 sums of
// 4096 squares reorder freely, so 1e-5 relative is ample.
double worst_ratio(const std::vector<float>& got, const std::vector<float>& ref) {
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol = 1e-6 + 1e-5 * std::fabs(ref[i]);
    const double r = std::isfinite(got[i]) ? std::fabs(double(got[i]) - ref[i]) / tol : INFINITY;
    if (r > worst) worst = r;
  }
  return worst;
}

// The fast bf16 matmul at T = 1 (the GEMV) and T = 8 (the batched tiles)
// against the double-precision reference: largest |got - ref| / (1e-6 +
// 1e-5 sum |w x|), the bound of a float32 sum of `in` products.
double matmul_worst_ratio(std::mt19937& rng) {
  constexpr int64_t kOut = 80, kIn = 1024, kT = 8;
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<uint16_t> w(size_t(kOut * kIn));
  for (auto& v : w) v = f32_to_bf16(0.05f * dist(rng));
  std::vector<float> x(size_t(kT * kIn));
  for (auto& v : x) v = dist(rng);
  const gpu::cpu::WeightView wv{DType::kBF16, w.data(), kOut, kIn};
  gpu::cpu::ThreadPool pool;
  double worst = 0;
  for (const int64_t T : {int64_t(1), kT}) {
    std::vector<float> got(size_t(T * kOut)), ref(got.size());
    gpu::cpu::matmul(pool, x.data(), T, wv, got.data());
    gpu::cpu::matmul_reference(x.data(), T, wv, ref.data());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t r = 0; r < kOut; ++r) {
        double mag = 0;
        for (int64_t k = 0; k < kIn; ++k) mag += std::fabs(double(bf16_to_f32(w[size_t(r * kIn + k)])) * x[size_t(t * kIn + k)]);
        const size_t i = size_t(t * kOut + r);
        const double err = std::isfinite(got[i]) ? std::fabs(double(got[i]) - ref[i]) : INFINITY;
        worst = std::max(worst, err / (1e-6 + 1e-5 * mag));
      }
    }
  }
  return worst;
}

#ifdef MYRIAD_HAVE_CUDA
Result<std::vector<float>> cuda_rmsnorm(const std::vector<float>& x, const std::vector<float>& w) {
  const size_t bytes = x.size() * sizeof(float);
  auto dx = gpu::cuda::DeviceBuffer::alloc(bytes);
  if (!dx) return dx.error();
  auto dw = gpu::cuda::DeviceBuffer::alloc(w.size() * sizeof(float));
  if (!dw) return dw.error();
  auto dy = gpu::cuda::DeviceBuffer::alloc(bytes);
  if (!dy) return dy.error();
  MYRIAD_TRY(gpu::cuda::copy_h2d(dx->data(), x.data(), bytes));
  MYRIAD_TRY(gpu::cuda::copy_h2d(dw->data(), w.data(), w.size() * sizeof(float)));
  MYRIAD_TRY(gpu::cuda::fill_bytes(dy->data(), 0xff, bytes));  // NaN poison: unwritten outputs fail
  MYRIAD_TRY(gpu::cuda::rmsnorm(DType::kF32, dy->data(), nullptr, dx->data(), dw->data(), kRows, kHidden, kEps, nullptr));
  std::vector<float> y(x.size());
  MYRIAD_TRY(gpu::cuda::copy_d2h(y.data(), dy->data(), bytes));
  MYRIAD_TRY(gpu::cuda::device_synchronize());
  return y;
}
#endif

}  // namespace

int cmd_selfcheck() {
  bool ok = true;
  const unsigned seed = std::random_device{}();  // fresh inputs each run; printed to reproduce one
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(kRows * kHidden));
  std::vector<float> w(static_cast<size_t>(kHidden));
  std::vector<float> ref(x.size()), cpu(x.size());
  for (auto& v : x) v = dist(rng);
  for (auto& v : w) v = 1.0f + 0.1f * dist(rng);
  gpu::cpu::rmsnorm_reference(x.data(), w.data(), kRows, kHidden, kEps, ref.data());

  const auto info = gpu::cpu_info();
  // The matmuls choose their ISA at run time (AMX, AVX-512, AVX2); the
  // element-wise kernels (SiLU, softmax, argmax, bf16 conversion) have AVX2
  // variants or run portable code.
  std::printf("cpu:  %d threads; matmul kernel %s; element-wise kernels %s; input seed %u\n", info.threads,
              gpu::cpu::matmul_kernel_name(), info.simd().c_str(), seed);
  gpu::cpu::rmsnorm(x.data(), w.data(), kRows, kHidden, kEps, cpu.data());
  const double cpu_ratio = worst_ratio(cpu, ref);
  ok &= cpu_ratio <= 1.0;
  std::printf("cpu:  rmsnorm vs reference: %s (worst error %.3f of tolerance)\n", cpu_ratio <= 1.0 ? "ok" : "MISMATCH",
              cpu_ratio);
  const double mm_ratio = matmul_worst_ratio(rng);
  ok &= mm_ratio <= 1.0;
  std::printf("cpu:  bf16 matmul (T = 1, 8) vs reference: %s (worst error %.3f of tolerance)\n",
              mm_ratio <= 1.0 ? "ok" : "MISMATCH", mm_ratio);

  const auto cuda = gpu::probe_cuda();
  std::printf("cuda: %s; %s\n", cuda.compiled ? "compiled in" : "not compiled", cuda.status.c_str());
  for (const auto& d : cuda.devices)
    std::printf("  [%d] %s sm_%d%d %.1f GiB\n", d.index, d.name.c_str(), d.sm_major, d.sm_minor, d.memory_gib);
#ifdef MYRIAD_HAVE_CUDA
  if (!cuda.devices.empty()) {
    auto y = cuda_rmsnorm(x, w);
    if (!y) {
      ok = false;
      std::printf("cuda: rmsnorm failed: %s\n", y.error().to_string().c_str());
    } else {
      const double r = worst_ratio(*y, cpu);
      ok &= r <= 1.0;
      std::printf("cuda: rmsnorm vs cpu: %s (worst error %.3f of tolerance)\n", r <= 1.0 ? "ok" : "MISMATCH", r);
    }
  }
#endif
  std::printf("selfcheck: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

}  // namespace myriad::cli
