#include <thread>

#include "gpu/devices.h"

namespace myriad::gpu {

CpuInfo cpu_info() {
  CpuInfo info;
  const unsigned n = std::thread::hardware_concurrency();
  info.threads = n == 0 ? 1 : int(n);
#if defined(__x86_64__)
  __builtin_cpu_init();
  info.avx2_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                  __builtin_cpu_supports("f16c");
#endif
  return info;
}

#ifndef MYRIAD_HAVE_CUDA
CudaProbe probe_cuda() {
  CudaProbe p;
  p.status = "built without gpu/cuda (no CUDA toolkit at configure time, or MYRIAD_CUDA=OFF)";
  return p;
}
#endif

}  // namespace myriad::gpu
