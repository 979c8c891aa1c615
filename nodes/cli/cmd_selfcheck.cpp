// `myriad selfcheck`: what compute backends this machine offers, and a
// numerical check of each: the CPU's fast RMSNorm against its naive
// reference, and, where a CUDA device exists, the CUDA twin against the CPU.
// Exit code 0 when every present backend agrees, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "args.h"
#include "commands.h"
#include "gpu/cpu/ops.h"
#include "gpu/devices.h"
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

int cmd_selfcheck(int argc, char** argv) {
  auto args = Args::parse(argc, argv, {}, {});
  if (!args) {
    std::fprintf(stderr, "selfcheck: %s\n", args.error().message.c_str());
    return 2;
  }
  bool ok = true;
  std::mt19937 rng(std::random_device{}());
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(size_t(kRows * kHidden));
  std::vector<float> w(static_cast<size_t>(kHidden));
  std::vector<float> ref(x.size()), cpu(x.size());
  for (auto& v : x) v = dist(rng);
  for (auto& v : w) v = 1.0f + 0.1f * dist(rng);
  gpu::cpu::rmsnorm_reference(x.data(), w.data(), kRows, kHidden, kEps, ref.data());

  const auto info = gpu::cpu_info();
  gpu::cpu::rmsnorm(x.data(), w.data(), kRows, kHidden, kEps, cpu.data());
  const double cpu_ratio = worst_ratio(cpu, ref);
  ok &= cpu_ratio <= 1.0;
  std::printf("cpu:  %d threads, SIMD %s; rmsnorm vs reference: %s (worst error %.3f of tolerance)\n", info.threads,
              info.simd().c_str(), cpu_ratio <= 1.0 ? "ok" : "MISMATCH", cpu_ratio);

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
