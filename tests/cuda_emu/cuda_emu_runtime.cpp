// cuda_emu's runtime API: device memory as registered host allocations,
// streams (every operation completes at its call, or is recorded while the
// stream captures a graph), events, graphs and the last-error state.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda_emu_internal.h"

// A stream's work waits in its queue until the host needs it: a
// synchronization of the stream or of an event recorded on it, or another
// stream's wait on such an event (then the waited-for stream runs up to that
// record first). So work on one stream runs as late as the program's
// dependencies allow, and a consumer on another stream that forgot to wait
// reads what was there before, as a device may let it: a missing
// cudaStreamWaitEvent shows as a wrong result instead of passing by luck.
// The legacy stream (nullptr) runs its work at the call.
//
// Captures follow CUDA's fork/join rules: a stream that waits on an event
// recorded in a capture joins it (its work becomes a branch of the graph),
// and every branch must be joined back into the origin stream before
// cudaStreamEndCapture. A replay runs the origin branch in order and a side
// branch's nodes only when a wait needs them (or at the end), the same
// as-late-as-allowed order.
namespace cuda_emu {
struct GraphNode {
  int branch = 0;
  std::function<void()> run;  // empty for a record or a wait
  int waits_for = -1;         // a wait: the index of the record node it waits for
};
}  // namespace cuda_emu

struct CUstream_st {
  unsigned flags = 0;
  std::deque<std::function<void()>> pending;  // queued, not yet run
  uint64_t enqueued = 0, executed = 0;
  bool draining = false;
  cudaStream_t capture_origin = nullptr;  // the capture this stream's work goes to (itself for the origin)
  int branch = 0;                         // its branch of that capture
  // The origin's capture:
  bool capture_invalid = false;
  uint64_t capture_id = 0;
  std::vector<cuda_emu::GraphNode> captured;
  // per branch: its last node, and the last of its nodes the origin waited for
  std::vector<int> branch_last_node, branch_joined_node;
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;  // its last record has run
  std::chrono::steady_clock::time_point at;
  cudaStream_t stream = nullptr;  // last record outside a capture: done once stream->executed >= seq
  uint64_t seq = 0;
  cudaStream_t capture_origin = nullptr;  // last record inside a capture: its node
  uint64_t capture_id = 0;
  int capture_node = -1;
};
struct CUgraph_st {
  std::vector<cuda_emu::GraphNode> nodes;
};
struct CUgraphExec_st {
  std::vector<cuda_emu::GraphNode> nodes;
};

namespace cuda_emu {
namespace {
cudaError_t g_last_error = cudaSuccess;
std::mutex g_error_mutex;
// The streams this thread is capturing (thread-local and global capture modes
// both restrict the capturing thread only here).
thread_local std::vector<cudaStream_t> t_capturing;
// Every stream's queue and capture state; work runs under it, on whichever
// host thread needed it.
std::recursive_mutex g_device;
std::vector<cudaStream_t> g_streams;  // in creation order
// Destroyed streams stay allocated: events recorded on them still say
// whether their work ran (all of it did) without reading freed memory.
std::vector<std::unique_ptr<CUstream_st>> g_destroyed_streams;
uint64_t g_capture_ids = 0;

// Runs s's queued work until `upto` operations of it have run.
void drain(cudaStream_t s, uint64_t upto) {
  if (!s || s->executed >= upto) return;
  if (s->draining) {
    std::fprintf(stderr, "cuda_emu: streams wait on each other in a cycle\n");
    std::abort();
  }
  s->draining = true;
  while (s->executed < upto) {
    std::function<void()> op = std::move(s->pending.front());
    s->pending.pop_front();
    op();
    ++s->executed;
  }
  s->draining = false;
}

void drain_all() {
  for (cudaStream_t s : g_streams) drain(s, s->enqueued);
}

// A graph's nodes, the origin branch in order and the others as late as
// their joins allow.
void replay(const std::vector<GraphNode>& nodes) {
  int branches = 1;
  for (const GraphNode& n : nodes) branches = std::max(branches, n.branch + 1);
  std::vector<std::vector<int>> of(static_cast<size_t>(branches));
  for (size_t i = 0; i < nodes.size(); ++i) of[size_t(nodes[i].branch)].push_back(int(i));
  std::vector<size_t> next(of.size(), 0);
  std::function<void(int, int)> run_to = [&](int b, int last) {
    auto& mine = of[size_t(b)];
    while (next[size_t(b)] < mine.size() && mine[next[size_t(b)]] <= last) {
      const GraphNode& n = nodes[size_t(mine[next[size_t(b)]++])];
      if (n.waits_for >= 0) run_to(nodes[size_t(n.waits_for)].branch, n.waits_for);
      else if (n.run) n.run();
    }
  };
  for (int b = 0; b < branches; ++b) run_to(b, INT32_MAX);
}
}  // namespace

cudaError_t report(cudaError_t e) {
  if (e != cudaSuccess) {
    std::lock_guard lock(g_error_mutex);
    g_last_error = e;
  }
  return e;
}

cudaError_t enqueue(cudaStream_t stream, std::function<void()> op) {
  std::lock_guard lock(g_device);
  if (!stream) {
    op();
    return cudaSuccess;
  }
  if (cudaStream_t origin = stream->capture_origin) {
    origin->captured.push_back({stream->branch, std::move(op), -1});
    origin->branch_last_node[size_t(stream->branch)] = int(origin->captured.size()) - 1;
    return cudaSuccess;
  }
  stream->pending.push_back(std::move(op));
  ++stream->enqueued;
  return cudaSuccess;
}

void synchronize_stream(cudaStream_t stream) {
  std::lock_guard lock(g_device);
  if (stream) drain(stream, stream->enqueued);
}
void synchronize_device() {
  std::lock_guard lock(g_device);
  drain_all();
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

// Whether [p, p + bytes) lies inside one allocation of the registry.
bool in_registry(const std::map<uintptr_t, size_t>& registry, const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard lock(g_memory_mutex);
  auto it = registry.upper_bound(a);
  if (it == registry.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + it->second;
}
bool device_range(const void* p, size_t bytes) { return in_registry(g_device_allocations, p, bytes); }
bool pinned_range(const void* p, size_t bytes) { return in_registry(g_pinned_allocations, p, bytes); }

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
    case cudaErrorStreamCaptureUnjoined: return "cudaErrorStreamCaptureUnjoined";
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
    case cudaErrorStreamCaptureUnjoined: return "capture was not joined back into the origin stream";
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
cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  cuda_emu::synchronize_device();
  return cudaSuccess;
}
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
// Freeing waits for the device's queued work first, as cudaFree does.
cudaError_t cudaFree(void* ptr) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  cuda_emu::synchronize_device();
  return cuda_emu::release_allocation(cuda_emu::g_device_allocations, ptr);
}
cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cuda_emu::allocate(cuda_emu::g_pinned_allocations, ptr, bytes);
}
cudaError_t cudaFreeHost(void* ptr) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  cuda_emu::synchronize_device();
  return cuda_emu::release_allocation(cuda_emu::g_pinned_allocations, ptr);
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
}
// The ranges are checked at the call, the bytes move in stream order. As on
// a device, pageable host memory is used at the call: a copy from it takes
// its bytes now (the caller may reuse the buffer at once), a copy into it
// waits for the stream's work and lands before the call returns; pinned host
// memory is read and written in stream order.
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  if (!dst || !src || (cuda_emu::device_side_dst(kind) && !cuda_emu::device_range(dst, bytes)) ||
      (cuda_emu::device_side_src(kind) && !cuda_emu::device_range(src, bytes)))
    return cuda_emu::report(cudaErrorInvalidValue);
  if (kind == cudaMemcpyHostToDevice && !cuda_emu::pinned_range(src, bytes)) {
    auto bytes_now = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                         static_cast<const char*>(src) + bytes);
    return cuda_emu::enqueue(stream, [dst, bytes_now] { std::memcpy(dst, bytes_now->data(), bytes_now->size()); });
  }
  if (kind == cudaMemcpyDeviceToHost && !cuda_emu::pinned_range(dst, bytes) && cuda_emu::t_capturing.empty()) {
    cuda_emu::synchronize_stream(stream);
    std::memmove(dst, src, bytes);
    return cudaSuccess;
  }
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
  std::lock_guard lock(cuda_emu::g_device);
  *stream = new CUstream_st;
  (*stream)->flags = flags;
  cuda_emu::g_streams.push_back(*stream);
  return cudaSuccess;
}
// Its queued work still runs, as on a device.
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(cuda_emu::g_device);
  cuda_emu::drain_all();
  auto& all = cuda_emu::g_streams;
  all.erase(std::remove(all.begin(), all.end(), stream), all.end());
  cuda_emu::g_destroyed_streams.emplace_back(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  cuda_emu::synchronize_stream(stream);
  return cudaSuccess;
}
// Outside a capture: `stream` runs nothing queued after this until the work
// before the event's last record has run. In a capture: a wait node, the
// stream joining the capture if it was not in it (a fork).
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(cuda_emu::g_device);
  cudaStream_t origin = event->capture_origin;
  const bool in_capture = origin && origin->capture_origin == origin && event->capture_id == origin->capture_id;
  if (in_capture && stream) {
    if (stream->capture_origin && stream->capture_origin != origin) return cuda_emu::report(cudaErrorIllegalState);
    if (!stream->capture_origin) {
      stream->capture_origin = origin;
      stream->branch = int(origin->branch_last_node.size());
      origin->branch_last_node.push_back(-1);
      origin->branch_joined_node.push_back(-1);
    }
    origin->captured.push_back({stream->branch, {}, event->capture_node});
    origin->branch_last_node[size_t(stream->branch)] = int(origin->captured.size()) - 1;
    if (stream == origin) {
      const int b = origin->captured[size_t(event->capture_node)].branch;
      origin->branch_joined_node[size_t(b)] = std::max(origin->branch_joined_node[size_t(b)], event->capture_node);
    }
    return cudaSuccess;
  }
  if (!stream || stream->capture_origin || !event->stream) return cudaSuccess;  // nothing to order
  cudaStream_t waited = event->stream;
  const uint64_t seq = event->seq;
  return cuda_emu::enqueue(stream, [waited, seq] { cuda_emu::drain(waited, seq); });
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  if (!event) return cuda_emu::report(cudaErrorInvalidValue);
  *event = new CUevent_st{};
  (*event)->flags = flags;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(cuda_emu::g_device);
  cuda_emu::drain_all();  // queued records of it may still run
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(cuda_emu::g_device);
  if (stream && stream->capture_origin) {
    cudaStream_t origin = stream->capture_origin;
    origin->captured.push_back({stream->branch, {}, -1});
    const int node = int(origin->captured.size()) - 1;
    origin->branch_last_node[size_t(stream->branch)] = node;
    event->capture_origin = origin;
    event->capture_id = origin->capture_id;
    event->capture_node = node;
    event->stream = nullptr;
    return cudaSuccess;
  }
  event->capture_origin = nullptr;
  const cudaError_t e = cuda_emu::enqueue(stream, [event] {
    event->recorded = true;
    event->at = std::chrono::steady_clock::now();
  });
  event->stream = stream;
  event->seq = stream ? stream->enqueued : 0;
  return e;
}
// Done once its record has run: the emulator runs the work it waits for.
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!event) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  std::lock_guard lock(cuda_emu::g_device);
  cuda_emu::drain(event->stream, event->seq);
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (cudaError_t e = cuda_emu::refuse_during_capture()) return e;
  return cudaEventQuery(event);
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end) return cuda_emu::report(cudaErrorInvalidResourceHandle);
  cudaEventQuery(start);
  cudaEventQuery(end);
  if (!start->recorded || !end->recorded || (start->flags & cudaEventDisableTiming) ||
      (end->flags & cudaEventDisableTiming))
    return cuda_emu::report(cudaErrorInvalidResourceHandle);
  *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
  return cudaSuccess;
}
// Host functions run when their stream reaches them, at the latest before
// this call returns (callers have relied on it running at the call, as the
// emulator's eager streams did); a device runs them on a thread of its own.
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!fn) return cuda_emu::report(cudaErrorInvalidValue);
  const cudaError_t e = cuda_emu::enqueue(stream, [fn, user_data] { fn(user_data); });
  if (stream && !stream->capture_origin) cuda_emu::synchronize_stream(stream);
  return e;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream) return cuda_emu::report(cudaErrorStreamCaptureUnsupported);  // the legacy stream cannot capture
  std::lock_guard lock(cuda_emu::g_device);
  if (stream->capture_origin) return cuda_emu::report(cudaErrorIllegalState);
  stream->capture_origin = stream;
  stream->branch = 0;
  stream->capture_invalid = false;
  stream->capture_id = ++cuda_emu::g_capture_ids;
  stream->captured.clear();
  stream->branch_last_node.assign(1, -1);
  stream->branch_joined_node.assign(1, -1);
  if (mode != cudaStreamCaptureModeRelaxed) cuda_emu::t_capturing.push_back(stream);
  return cudaSuccess;
}
// Every side branch must have been joined back into the origin (its last
// node waited for there), else cudaErrorStreamCaptureUnjoined, as on a device.
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!stream || !graph) return cuda_emu::report(cudaErrorInvalidValue);
  std::lock_guard lock(cuda_emu::g_device);
  if (stream->capture_origin != stream) return cuda_emu::report(cudaErrorIllegalState);
  auto& mine = cuda_emu::t_capturing;
  mine.erase(std::remove(mine.begin(), mine.end(), stream), mine.end());
  for (cudaStream_t s : cuda_emu::g_streams)
    if (s->capture_origin == stream) s->capture_origin = nullptr;
  std::vector<cuda_emu::GraphNode> nodes = std::move(stream->captured);
  stream->captured.clear();
  stream->capture_id = ++cuda_emu::g_capture_ids;  // its events' nodes are gone
  bool unjoined = false;
  for (size_t b = 1; b < stream->branch_last_node.size(); ++b)
    unjoined = unjoined || stream->branch_last_node[b] > stream->branch_joined_node[b];
  *graph = nullptr;
  if (stream->capture_invalid) return cuda_emu::report(cudaErrorStreamCaptureInvalidated);
  if (unjoined) return cuda_emu::report(cudaErrorStreamCaptureUnjoined);
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
  return cuda_emu::enqueue(stream, [exec] { cuda_emu::replay(exec->nodes); });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  std::lock_guard lock(cuda_emu::g_device);
  cuda_emu::drain_all();  // queued launches of it may still run
  delete exec;
  return cudaSuccess;
}
