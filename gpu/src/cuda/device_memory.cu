#include <utility>

#include "cuda_check.cuh"
#include "gpu/cuda/device_memory.h"

namespace myriad::gpu::cuda {

std::optional<std::string> device_unavailable_reason() {
  int count = 0;  // left unwritten on error (e.g. 35, no driver)
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string(cudaGetErrorString(err)) + " (" + cudaGetErrorName(err) + ")";
  }
  if (count == 0) return std::string("no CUDA device present");
  if (cudaFree(nullptr) != cudaSuccess) {  // forces context creation
    const cudaError_t e = cudaGetLastError();
    return std::string("cannot create a context on device 0: ") + cudaGetErrorString(e);
  }
  return std::nullopt;
}

Result<DeviceBuffer> DeviceBuffer::alloc(size_t bytes) {
  DeviceBuffer b;
  if (bytes == 0) return Result<DeviceBuffer>(std::move(b));
  MYRIAD_CUDA_TRY(cudaMalloc(&b.ptr_, bytes));
  b.bytes_ = bytes;
  return Result<DeviceBuffer>(std::move(b));
}
DeviceBuffer::~DeviceBuffer() {
  if (ptr_) MYRIAD_CUDA_CHECK(cudaFree(ptr_));
}
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) MYRIAD_CUDA_CHECK(cudaFree(ptr_));
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

Result<PinnedBuffer> PinnedBuffer::alloc(size_t bytes) {
  PinnedBuffer b;
  if (bytes == 0) return Result<PinnedBuffer>(std::move(b));
  MYRIAD_CUDA_TRY(cudaMallocHost(&b.ptr_, bytes));
  b.bytes_ = bytes;
  return Result<PinnedBuffer>(std::move(b));
}
PinnedBuffer::~PinnedBuffer() {
  if (ptr_) MYRIAD_CUDA_CHECK(cudaFreeHost(ptr_));
}
PinnedBuffer::PinnedBuffer(PinnedBuffer&& o) noexcept
    : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
PinnedBuffer& PinnedBuffer::operator=(PinnedBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) MYRIAD_CUDA_CHECK(cudaFreeHost(ptr_));
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

Result<Stream> Stream::create() {
  Stream s;
  MYRIAD_CUDA_TRY(cudaStreamCreateWithFlags(&s.s_, cudaStreamNonBlocking));
  return Result<Stream>(std::move(s));
}
Stream::~Stream() {
  if (s_) MYRIAD_CUDA_CHECK(cudaStreamDestroy(s_));
}
Stream::Stream(Stream&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
Stream& Stream::operator=(Stream&& o) noexcept {
  if (this != &o) {
    if (s_) MYRIAD_CUDA_CHECK(cudaStreamDestroy(s_));
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

Result<Event> Event::create(bool timing) {
  Event e;
  MYRIAD_CUDA_TRY(cudaEventCreateWithFlags(&e.e_, timing ? cudaEventDefault : cudaEventDisableTiming));
  return Result<Event>(std::move(e));
}
Event::~Event() {
  if (e_) MYRIAD_CUDA_CHECK(cudaEventDestroy(e_));
}
Event::Event(Event&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
Event& Event::operator=(Event&& o) noexcept {
  if (this != &o) {
    if (e_) MYRIAD_CUDA_CHECK(cudaEventDestroy(e_));
    e_ = std::exchange(o.e_, nullptr);
  }
  return *this;
}
Status Event::record(StreamHandle s) {
  MYRIAD_CUDA_TRY(cudaEventRecord(e_, s));
  return ok_status();
}
bool Event::done() const {
  const cudaError_t e = cudaEventQuery(e_);
  if (e == cudaErrorNotReady) return false;
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return true;
}
Status Event::wait_in(StreamHandle s) const {
  MYRIAD_CUDA_TRY(cudaStreamWaitEvent(s, e_, 0));
  return ok_status();
}
Status Event::synchronize() const {
  MYRIAD_CUDA_TRY(cudaEventSynchronize(e_));
  return ok_status();
}
Result<float> elapsed_ms(const Event& start, const Event& stop) {
  float ms = 0;
  MYRIAD_CUDA_TRY(cudaEventElapsedTime(&ms, start.get(), stop.get()));
  return ms;
}

Status copy_h2d(void* dst, const void* src, size_t bytes, StreamHandle s) {
  if (bytes == 0) return ok_status();
  MYRIAD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  return ok_status();
}
Status copy_d2h(void* dst, const void* src, size_t bytes, StreamHandle s) {
  if (bytes == 0) return ok_status();
  MYRIAD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  return ok_status();
}
Status copy_d2d(void* dst, const void* src, size_t bytes, StreamHandle s) {
  if (bytes == 0) return ok_status();
  MYRIAD_CUDA_TRY(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
  return ok_status();
}
Status fill_bytes(void* dst, int byte, size_t bytes, StreamHandle s) {
  if (bytes == 0) return ok_status();
  MYRIAD_CUDA_TRY(cudaMemsetAsync(dst, byte, bytes, s));
  return ok_status();
}
Status sync_stream(StreamHandle s) {
  MYRIAD_CUDA_TRY(cudaStreamSynchronize(s));
  return ok_status();
}
Status device_synchronize() {
  MYRIAD_CUDA_TRY(cudaDeviceSynchronize());
  return ok_status();
}

Result<DeviceProps> device_props() {
  int dev = 0;
  MYRIAD_CUDA_TRY(cudaGetDevice(&dev));
  cudaDeviceProp p{};
  MYRIAD_CUDA_TRY(cudaGetDeviceProperties(&p, dev));
  DeviceProps d;
  d.name = p.name;
  d.sm_major = p.major;
  d.sm_minor = p.minor;
  d.sm_count = p.multiProcessorCount;
  MYRIAD_CUDA_TRY(cudaMemGetInfo(&d.free_bytes, &d.total_bytes));
  return d;
}

}  // namespace myriad::gpu::cuda
