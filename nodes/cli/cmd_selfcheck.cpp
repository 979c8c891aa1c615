// `myriad selfcheck`: what compute backends this machine offers, and a
// numerical check of each (the CPU and CUDA twins of a kernel agree).
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "gpu/devices.h"

namespace myriad::cli {

int cmd_selfcheck(int argc, char** argv) {
  auto args = Args::parse(argc, argv, {}, {});
  if (!args) {
    std::fprintf(stderr, "selfcheck: %s\n", args.error().message.c_str());
    return 2;
  }
  const auto cpu = gpu::cpu_info();
  std::printf("cpu:  %d threads, SIMD %s\n", cpu.threads, cpu.simd().c_str());
  const auto cuda = gpu::probe_cuda();
  std::printf("cuda: %s; %s\n", cuda.compiled ? "compiled in" : "not compiled", cuda.status.c_str());
  for (const auto& d : cuda.devices)
    std::printf("  [%d] %s sm_%d%d %.1f GiB\n", d.index, d.name.c_str(), d.sm_major, d.sm_minor, d.memory_gib);
  return 0;
}

}  // namespace myriad::cli
