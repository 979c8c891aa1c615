// Lists CUDA devices. Without a driver cudaGetDeviceCount returns
// cudaErrorInsufficientDriver (35) and leaves the count unwritten, so the
// count starts at 0 and any error means "no GPU".
#include <cuda_runtime.h>

#include "gpu/devices.h"

namespace myriad::gpu {

CudaProbe probe_cuda() {
  CudaProbe p;
  p.compiled = true;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.status = std::string("no usable CUDA device: ") + cudaGetErrorString(err);
    (void)cudaGetLastError();
    return p;
  }
  if (count == 0) {
    p.status = "no CUDA device present";
    return p;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    p.devices.push_back({i, prop.name, prop.major, prop.minor, double(prop.totalGlobalMem) / double(1ull << 30)});
  }
  p.status = "ok";
  return p;
}

}  // namespace myriad::gpu
