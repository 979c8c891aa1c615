// What compute backends this process can use: the CPU (threads, SIMD level)
// and CUDA devices. Used by `myriad selfcheck` and executors' info().
#pragma once

#include <string>
#include <vector>

namespace myriad::gpu {

struct CpuInfo {
  int threads = 1;       // hardware threads the pool will use
  bool avx2_fma = false; // AVX2 + FMA + F16C available at run time
  std::string simd() const { return avx2_fma ? "avx2+fma" : "portable"; }
};
CpuInfo cpu_info();

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  int sm_major = 0, sm_minor = 0;
  double memory_gib = 0;
};

struct CudaProbe {
  bool compiled = false;  // built with gpu/cuda
  std::string status;     // why there is no device, or "ok"
  std::vector<CudaDeviceInfo> devices;
};
CudaProbe probe_cuda();

}  // namespace myriad::gpu
