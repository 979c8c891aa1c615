// cuda_emu's runtime API: device memory as registered host allocations,
// streams (every operation completes at its call, or is recorded while the
// stream captures a graph), events, graphs and the last-error state.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda_emu_internal.h"

struct CUstream_st {
  unsigned flags = 0;
  bool capturing = false, capture_invalid = false;
  std::vector<std::function<void()>> captured;
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point at;
};
struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::vector<std::function<void()>> nodes;
};

namespace cuda_emu {
namespace {
cudaError_t g_last_error = cudaSuccess;
std::mutex g_error_mutex;
// The streams this thread is capturing (thread-local and global capture modes
// both restrict the capturing thread only here).
thread_local std::vector<cudaStream_t> t_capturing;
}  // namespace

cudaError_t report(cudaError_t e) {
  if (e != cudaSuccess) {
    std::lock_guard lock(g_error_mutex);
    g_last_error = e;
  }
  return e;
}

cudaError_t enqueue(cudaStream_t stream, std::function<void()> op) {
  if (stream && stream->capturing) {
    stream->captured.push_back(std::move(op));
    return cudaSuccess;
  }
  op();
  return cudaSuccess;
}

cudaError_t refuse_during_capture() {
  if (t_capturing.empty()) return cudaSuccess;
  for (cudaStream_t s : t_capturing) s->capture_invalid = true;
  return report(cudaErrorStreamCaptureUnsupported);
}

}  // namespace cuda_emu

namespace cuda_emu {
namespace {

std::mutex g_memory_mutex;
std::map<uintptr_t, size_t> g_device_allocations;  // start -> bytes
std::map<uintptr_t, size_t> g_pinned_allocations;

// Whether [p, p + bytes) lies inside one device allocation.
bool device_range(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lock(g_memory_mutex);
  auto it = g_device_allocations.upper_bound(a);
  if (it == g_device_allocations.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}

cudaError_t allocate(std::map<uintptr_t, size_t>& registry, void** ptr, size_t bytes) {
  if (!ptr) return report(cudaErrorInvalidValue);
  void* p = nullptr;
  // Exactly `bytes` (not rounded up), so AddressSanitizer flags the first
  // byte past the allocation; 256-byte aligned as cudaMalloc's.
  if (posix_memalign(&p, 256, std::max<size_t>(bytes, 1)) != 0) return report(cudaErrorMemoryAllocation);
  std::memset(p, 0xff, bytes);  // uninitialised on a device: NaN here
  std::lock_guard lock(g_memory_mutex);
  registry[reinterpret_cast<uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t release_allocation(std::map<uintptr_t, size_t>& registry, void* ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard lock(g_memory_mutex);
    auto it = registry.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == registry.end()) return report(cudaErrorInvalidValue);
    registry.erase(it);
  }
  std::free(ptr);
  return cudaSuccess;
}

bool device_side_dst(cudaMemcpyKind k) { return k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice; }
bool device_side_src(cudaMemcpyKind k) { return k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice; }

}  // namespace

bool is_device_range(const void* p, size_t bytes) { return device_range(p, bytes); }
}  // namespace cuda_emu

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorIllegalState: return "the operation is not permitted in the current state";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
  }
  return "unknown error";
}
cudaError_t cudaGetLastError() {
  std::lock_guard lock(cuda_emu::g_error_mutex);
  return std::exchange(cuda_emu::g_last_error, cudaSuccess);
}
cudaError_t cudaPeekAtLastError() {
  std::lock_guard lock(cuda_emu::g_error_mutex);
  return cuda_emu::g_last_error;
}

namespace {
int emulated_sm_count() {
  const char* env = std::getenv("CUDA_EMU_SMS");  // how many SMs split/fill heuristics see
  const int n = env ? std::atoi(env) : 0;
  return n > 0 ? n : 132;  // an H100 SXM's
}
}  // namespace

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return cuda_emu::report(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return cuda_emu::report(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cuda_emu::report(cudaErrorInvalidValue); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (!p || device != 0) return cuda_emu::report(cudaErrorInvalidValue);
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof p->name, "cuda_emu (CPU)");
  p->totalGlobalMem = size_t(80) << 30;
  p->sharedMemPerBlock = 48 << 10;
  p->sharedMemPerBlockOptin = 227 << 10;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->multiProcessorCount = emulated_sm_count();
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value || device != 0) return cuda_emu::report(cudaErrorInvalidValue);
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = emulated_sm_count(); return cudaSuccess;
  }
  return cuda_emu::report(cudaErrorInvalidValue);
}
cudaError_t cudaDeviceSynchronize() { return cuda_emu::refuse_during_capture(); }
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  if (!free_bytes || !total_bytes) return cuda_emu::report(cudaErrorInvalidValue);
  *total_bytes = size_t(80) << 30;
  *free_bytes = *total_bytes;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (!func || attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > (227 << 10))
    return cuda_emu::report(cudaErrorInvalidValue);
  cuda_emu::set_dynamic_shared_optin(func, value);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cuda_emu::allocate(cuda_emu::g_device_allocations, ptr, bytes);
}
cudaError_t cudaFree(void* ptr) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cuda_emu::release_allocation(cuda_emu::g_device_allocations, ptr);
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cuda_emu::allocate(cuda_emu::g_pinned_allocations, ptr, bytes);
}
cudaError_t cudaFreeHost(void* ptr) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cuda_emu::release_allocation(cuda_emu::g_pinned_allocations, ptr);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
// The ranges are checked at the call, the bytes move in stream order.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src || (cuda_emu::device_side_dst(kind) && !cuda_emu::device_range(dst, bytes)) ||
      (cuda_emu::device_side_src(kind) && !cuda_emu::device_range(src, bytes)))
    return cuda_emu::report(cudaErrorInvalidValue);
  return cuda_emu::enqueue(stream, [dst, src, bytes] { std::memmove(dst, src, bytes); });
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cudaMemsetAsync(dst, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (!cuda_emu::device_range(dst, bytes)) return cuda_emu::report(cudaErrorInvalidValue);
  return cuda_emu::enqueue(stream, [dst, value, bytes] { std::memset(dst, value, bytes); });
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  if (!stream) return cuda_emu::report(cudaErrorInvalidValue);
  *stream = new CUstream_st;
  (*stream)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cuda_emu::refuse_during_capture(); }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t event, unsigned) {
  return event ? cudaSuccess : cuda_emu::report(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (!event) return cuda_emu::report(cudaErrorInvalidValue);
  *event = new CUevent_st{flags, false, {}};
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  return cuda_emu::enqueue(stream, [event] {
    event->recorded = true;
    event->at = std::chrono::steady_clock::now();
  });
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  return event ? cudaSuccess : cuda_emu::report(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cudaEventQuery(event);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end || !start->recorded || !end->recorded || (start->flags & cudaEventDisableTiming) ||
      (end->flags & cudaEventDisableTiming))
    return cuda_emu::report(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!fn) return cuda_emu::report(cudaErrorInvalidValue);
  return cuda_emu::enqueue(stream, [fn, user_data] { fn(user_data); });
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream) return cuda_emu::report(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  if (stream->capturing) return cuda_emu::report(cudaErrorIllegalState);
  stream->capturing = true;
  stream->capture_invalid = false;
  stream->captured.clear();
  if (mode != cudaStreamCaptureModeRelaxed) cuda_emu::t_capturing.push_back(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!stream || !graph) return cuda_emu::report(cudaErrorInvalidValue);
  if (!stream->capturing) return cuda_emu::report(cudaErrorIllegalState);
  auto& mine = cuda_emu::t_capturing;
  mine.erase(std::remove(mine.begin(), mine.end(), stream), mine.end());
  stream->capturing = false;
  std::vector<std::function<void()>> nodes = std::move(stream->captured);
  stream->captured.clear();
  if (stream->capture_invalid) {
    *graph = nullptr;
    return cuda_emu::report(cudaErrorStreamCaptureInvalidated);
  }
  *graph = new CUgraph_st{std::move(nodes)};
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return cuda_emu::report(cudaErrorInvalidValue);
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  return cuda_emu::enqueue(stream, [exec] {
    for (const auto& node : exec->nodes) node();
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
