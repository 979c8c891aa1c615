// cuda_emu: runs Myriad's CUDA kernels on the CPU, so their tests run and can
// fail where there is no GPU (CI, most machines). Not a product backend: it is
// slow (one fiber per CUDA thread) and checks semantics, not speed.
//
// What it emulates, and how strictly:
//  - every thread of a block is a fiber (own stack, own locals); blocks run one
//    after another, so `__shared__` (a static here) is one copy per block;
//  - __syncthreads() is a barrier over the block's live threads; warp
//    shuffles are barriers over the warp's 32 lanes. A shuffle in a warp where
//    a lane has exited, or a block where no thread can go on (a barrier in
//    divergent code), aborts with the kernel, block and thread states named;
//  - device memory is host memory, each allocation its own (AddressSanitizer
//    sees every out-of-bounds access), registered so copies and memsets that
//    leave their allocation fail with cudaErrorInvalidValue as on a device;
//  - launches, copies and the other stream operations complete at their call
//    in stream order, or are recorded while the stream captures a graph
//    (kernel arguments by value) and replayed by cudaGraphLaunch; a bad
//    configuration (no blocks, over 1,024 threads, grid.y/z over 65,535,
//    dynamic shared memory over 48 KiB without the opt-in) is
//    cudaErrorInvalidConfiguration from cudaGetLastError and runs nothing;
//  - cublasGemmEx is a float32 reference GEMM (include/cublas_v2.h).
// Not emulated: data races between threads (fibers switch only at barriers,
// in thread order), the memory model, timing. tests/cuda_emu/cu_to_cpp.py
// turns a .cu file into C++ against this header (`<<<...>>>` and
// `extern __shared__`).
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
constexpr int warpSize = 32;

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

namespace cuda_emu {

// The running fiber's indices (set by the scheduler at every switch).
extern const uint3* g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim, g_grid_dim;

void syncthreads();
// Publishes `bits` (this lane's value) and returns lane `src`'s, after every
// lane of the warp has published; `src` out of the warp's range returns `bits`.
uint64_t warp_exchange(uint64_t bits, int src);
void* dynamic_shared_memory();

struct LaunchConfig {
  dim3 grid, block;
  size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
};
inline LaunchConfig launch_config(dim3 grid, dim3 block, size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  return LaunchConfig{grid, block, shared_bytes, stream};
}
// Queues body() on cfg.stream as every thread of every block of cfg (run at
// once, or recorded while the stream captures a graph), or records the
// configuration error (cudaGetLastError reports it) and queues nothing.
void launch(const char* kernel, const void* kernel_address, const LaunchConfig& cfg, std::function<void()> body);

// `kernel<<<cfg>>>(args...)` becomes `bind(kernel, "kernel", launch_config(cfg))(args...)`. The
// arguments convert to the parameter types and are kept by value at the launch
// (what a captured graph replays); each thread calls the kernel with its own copy.
template <class... Params>
auto bind(void (*kernel)(Params...), const char* name, LaunchConfig cfg) {
  return [kernel, name, cfg](auto&&... args) {
    static_assert(sizeof...(args) == sizeof...(Params), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<Params>...> params(args...);
    launch(name, reinterpret_cast<const void*>(kernel), cfg, [kernel, params] { std::apply(kernel, params); });
  };
}

template <class T>
T* dynamic_shared() {
  return static_cast<T*>(dynamic_shared_memory());
}

template <class T>
T shuffle_from(T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = warp_exchange(bits, src);
  T r;
  std::memcpy(&r, &bits, sizeof(T));
  return r;
}
void check_full_mask(unsigned mask);

}  // namespace cuda_emu

#define threadIdx (*::cuda_emu::g_thread_idx)
#define blockIdx (::cuda_emu::g_block_idx)
#define blockDim (::cuda_emu::g_block_dim)
#define gridDim (::cuda_emu::g_grid_dim)

inline void __syncthreads() { ::cuda_emu::syncthreads(); }

// Lanes of a `width` segment exchange within it, as on a device.
template <class T>
T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  ::cuda_emu::check_full_mask(mask);
  const int lane = int(threadIdx.x) & 31, base = lane & ~(width - 1);
  return ::cuda_emu::shuffle_from(v, base + (src_lane & (width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  ::cuda_emu::check_full_mask(mask);
  const int lane = int(threadIdx.x) & 31, base = lane & ~(width - 1);
  const int src = lane ^ lane_mask;
  return ::cuda_emu::shuffle_from(v, src < base + width ? src : lane);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  ::cuda_emu::check_full_mask(mask);
  const int lane = int(threadIdx.x) & 31, base = lane & ~(width - 1);
  const int src = lane - int(delta);
  return ::cuda_emu::shuffle_from(v, src >= base ? src : lane);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  ::cuda_emu::check_full_mask(mask);
  const int lane = int(threadIdx.x) & 31, base = lane & ~(width - 1);
  const int src = lane + int(delta);
  return ::cuda_emu::shuffle_from(v, src < base + width ? src : lane);
}

inline float __uint_as_float(unsigned u) { return std::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return std::bit_cast<unsigned>(f); }
// The _rn intrinsics are IEEE operations that nvcc never contracts into an FMA;
// the emulated sources build with -ffp-contract=off, so plain operators match.
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __expf(float v) { return std::exp(v); }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }

// CUDA's global min/max overloads for device code.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// Atomics: a block's fibers share one OS thread and switch only at barriers,
// so a plain read-modify-write is indivisible. They return the old value.
template <class T>
T atomicAdd(T* p, T v) {
  const T old = *p;
  *p = old + v;
  return old;
}
template <class T>
T atomicMax(T* p, T v) {
  const T old = *p;
  *p = old > v ? old : v;
  return old;
}
template <class T>
T atomicMin(T* p, T v) {
  const T old = *p;
  *p = old < v ? old : v;
  return old;
}
template <class T>
T atomicExch(T* p, T v) {
  const T old = *p;
  *p = v;
  return old;
}
template <class T>
T atomicCAS(T* p, T compare, T v) {
  const T old = *p;
  if (old == compare) *p = v;
  return old;
}
