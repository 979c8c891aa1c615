// Device and pinned host memory, streams and events behind a plain C++ API
// (no CUDA headers), so .cpp code (tests, benches, executors) can use them.
//
// Invariant: a DeviceBuffer/PinnedBuffer owns exactly its allocation and frees
// it once (move-only). Copies are asynchronous on the given stream (nullptr =
// the legacy default stream). Owner: whoever holds the buffer. Objects are not
// thread-safe; distinct objects may be used from distinct threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "runtime/result.h"

struct CUstream_st;  // cudaStream_t is CUstream_st*
struct CUevent_st;   // cudaEvent_t is CUevent_st*

namespace myriad::gpu::cuda {

using StreamHandle = CUstream_st*;

// nullopt when device 0 can run kernels; otherwise why not (e.g. "CUDA driver
// version is insufficient for CUDA runtime version" without a driver).
std::optional<std::string> device_unavailable_reason();

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Result<DeviceBuffer> alloc(size_t bytes);  // uninitialised
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& o) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Page-locked host memory: H2D copies from it are truly asynchronous and run
// at PCIe speed.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  static Result<PinnedBuffer> alloc(size_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& o) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  void* data() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class Stream {
 public:
  Stream() = default;
  static Result<Stream> create();  // non-blocking w.r.t. the legacy stream
  ~Stream();
  Stream(Stream&& o) noexcept;
  Stream& operator=(Stream&& o) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  StreamHandle get() const { return s_; }

 private:
  StreamHandle s_ = nullptr;
};

class Event {
 public:
  Event() = default;
  static Result<Event> create(bool timing = false);
  ~Event();
  Event(Event&& o) noexcept;
  Event& operator=(Event&& o) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  Status record(StreamHandle s);
  bool done() const;                   // cudaEventQuery == success
  Status wait_in(StreamHandle s) const;  // stream s waits for this event
  Status synchronize() const;
  CUevent_st* get() const { return e_; }

 private:
  CUevent_st* e_ = nullptr;
};
// Milliseconds between two recorded timing events.
Result<float> elapsed_ms(const Event& start, const Event& stop);

Status copy_h2d(void* dst, const void* src, size_t bytes, StreamHandle s = nullptr);
Status copy_d2h(void* dst, const void* src, size_t bytes, StreamHandle s = nullptr);
Status copy_d2d(void* dst, const void* src, size_t bytes, StreamHandle s = nullptr);
Status fill_bytes(void* dst, int byte, size_t bytes, StreamHandle s = nullptr);
Status sync_stream(StreamHandle s);
Status device_synchronize();

struct DeviceProps {
  std::string name;
  int sm_major = 0, sm_minor = 0;
  int sm_count = 0;
  size_t total_bytes = 0, free_bytes = 0;
};
Result<DeviceProps> device_props();

}  // namespace myriad::gpu::cuda
