// What cuda_emu's scheduler, runtime API and cuBLAS share (not for kernels
// or tests: they see cuda_emu.h and the include/ headers).
#pragma once

#include <functional>

#include "cuda_emu.h"
#include "include/cuda_runtime.h"

namespace cuda_emu {

// Records e as the last error (cudaGetLastError) unless it is cudaSuccess; returns e.
cudaError_t report(cudaError_t e);
// Stream order: queues op on the stream (it runs when the host or another
// stream needs the stream's work: cuda_emu_runtime.cpp), runs it now on the
// legacy stream (nullptr), or appends it to the graph the stream is capturing.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> op);
// Runs the stream's queued work (and what it waits for) / every stream's.
void synchronize_stream(cudaStream_t stream);
void synchronize_device();
// A call a device refuses while this thread captures a graph (allocation,
// synchronous copies, synchronization): cudaErrorStreamCaptureUnsupported, and
// the capture is invalidated, as on a device; otherwise cudaSuccess.
cudaError_t refuse_during_capture();
// Every thread of every block of cfg, now (the scheduler).
void run_grid(const char* kernel, const LaunchConfig& cfg, const std::function<void()>& body);
void set_dynamic_shared_optin(const void* kernel, int bytes);
// Whether [p, p + bytes) lies inside one cudaMalloc allocation.
bool is_device_range(const void* p, size_t bytes);

}  // namespace cuda_emu
