// cuda_emu's own tests: what the kernels' tests rely on it for (indices,
// shared memory and barriers, shuffles as the CUDA programming guide defines
// them, launch and copy errors as on a device, streams that run as late as
// their waits allow, captures forked over streams) and the misuse it stops on.
#include <cuda_runtime.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <vector>

namespace {

template <class T>
struct DeviceArray {
  explicit DeviceArray(size_t n, const std::vector<T>& init = {}) : count(n) {
    EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(T)), cudaSuccess);
    if (!init.empty()) {
      EXPECT_EQ(cudaMemcpy(ptr, init.data(), n * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
    }
  }
  ~DeviceArray() { EXPECT_EQ(cudaFree(ptr), cudaSuccess); }
  std::vector<T> get() const {
    std::vector<T> v(count);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  T* ptr = nullptr;
  size_t count;
};

constexpr unsigned kFull = 0xffffffffu;

__global__ void write_indices(int* out) {
  const int t = int(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
  const int b = int(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
  const int threads = int(blockDim.x * blockDim.y * blockDim.z);
  out[b * threads + t] = b * 1000 + t;
}

TEST(CudaEmu, EveryThreadOfEveryBlockRunsOnceWithItsIndices) {
  const dim3 grid(3, 2, 2), block(4, 8, 2);
  const int n = 12 * 64;
  DeviceArray<int> out(size_t(n), std::vector<int>(size_t(n), -1));
  write_indices<<<grid, block>>>(out.ptr);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const auto got = out.get();
  for (int i = 0; i < n; ++i) ASSERT_EQ(got[size_t(i)], (i / 64) * 1000 + i % 64) << "element " << i;
}

__global__ void reverse_blocks(int* data) {
  __shared__ int s[256];
  const int i = int(blockIdx.x * 256 + threadIdx.x);
  s[threadIdx.x] = data[i];
  __syncthreads();  // without it thread 0 would read s[255] before thread 255 wrote it
  data[i] = s[255 - threadIdx.x];
}

TEST(CudaEmu, SharedMemoryIsVisibleToTheBlockAfterSyncthreads) {
  std::vector<int> v(512);
  std::iota(v.begin(), v.end(), 0);
  DeviceArray<int> d(512, v);
  reverse_blocks<<<2, 256>>>(d.ptr);
  const auto got = d.get();
  for (int i = 0; i < 512; ++i) ASSERT_EQ(got[size_t(i)], (i / 256) * 256 + 255 - i % 256) << "element " << i;
}

__global__ void shuffles(int* out) {
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int v = 100 * warp + lane;
  int* o = out + warp * 6 * 32;
  o[0 * 32 + lane] = __shfl_sync(kFull, v, (lane * 7) % 32);
  o[1 * 32 + lane] = __shfl_xor_sync(kFull, v, 5);
  o[2 * 32 + lane] = __shfl_up_sync(kFull, v, 3);
  o[3 * 32 + lane] = __shfl_down_sync(kFull, v, 3);
  o[4 * 32 + lane] = __shfl_down_sync(kFull, v, 2, 8);  // within 8-lane segments
  o[5 * 32 + lane] = __shfl_sync(kFull, v, 1, 16);       // lane 1 of each 16-lane half
}

TEST(CudaEmu, ShufflesReadTheLanesTheGuideDefines) {
  DeviceArray<int> out(2 * 6 * 32);
  shuffles<<<1, 64>>>(out.ptr);
  const auto got = out.get();
  for (int warp = 0; warp < 2; ++warp) {
    const int* o = got.data() + warp * 6 * 32;
    auto v = [&](int lane) { return 100 * warp + lane; };
    for (int lane = 0; lane < 32; ++lane) {
      SCOPED_TRACE("warp " + std::to_string(warp) + " lane " + std::to_string(lane));
      EXPECT_EQ(o[0 * 32 + lane], v(lane * 7 % 32));
      EXPECT_EQ(o[1 * 32 + lane], v(lane ^ 5));
      EXPECT_EQ(o[2 * 32 + lane], v(lane >= 3 ? lane - 3 : lane));
      EXPECT_EQ(o[3 * 32 + lane], v(lane + 3 < 32 ? lane + 3 : lane));
      EXPECT_EQ(o[4 * 32 + lane], v(lane % 8 + 2 < 8 ? lane + 2 : lane));
      EXPECT_EQ(o[5 * 32 + lane], v(lane / 16 * 16 + 1));
    }
  }
}

// Many reductions back to back, with blocks of lanes reaching each at
// different times: the exchange slots must not be overwritten early.
__global__ void repeated_warp_sums(float* out, int rounds) {
  float v = float(threadIdx.x & 31);
  for (int r = 0; r < rounds; ++r) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    v = v / 32.0f + float(r);
  }
  out[threadIdx.x] = v;
}

TEST(CudaEmu, BackToBackShufflesKeepTheirValues) {
  const int rounds = 9;
  DeviceArray<float> out(128);
  repeated_warp_sums<<<1, 128>>>(out.ptr, rounds);
  // every lane holds the same value after the first sum: mean, then + r
  float expect = 15.5f;
  for (int r = 1; r < rounds; ++r) expect = expect + float(r);
  for (float g : out.get()) EXPECT_FLOAT_EQ(g, expect);
}

__global__ void dynamic_shared_sum(const float* in, float* out, int n) {
  extern __shared__ float buf[];
  for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) buf[i] = in[i];
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (int i = 0; i < n; ++i) s += buf[i];
    out[0] = s;
  }
}

TEST(CudaEmu, DynamicSharedMemoryHasTheLaunchSizeAndNeedsTheOptInAbove48KiB) {
  const int small = 1000, large = 16000;  // 4 KB; 64 KB
  std::vector<float> ones(size_t(large), 1.0f);
  DeviceArray<float> in(size_t(large), ones), out(1, {-1.0f});
  dynamic_shared_sum<<<1, 128, small * sizeof(float)>>>(in.ptr, out.ptr, small);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out.get()[0], float(small));

  dynamic_shared_sum<<<1, 128, large * sizeof(float)>>>(in.ptr, out.ptr, large);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(out.get()[0], float(small)) << "a refused launch ran";
  ASSERT_EQ(cudaFuncSetAttribute(dynamic_shared_sum, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 int(large * sizeof(float))),
            cudaSuccess);
  dynamic_shared_sum<<<1, 128, large * sizeof(float)>>>(in.ptr, out.ptr, large);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(out.get()[0], float(large));
}

TEST(CudaEmu, BadLaunchConfigurationsRunNothingAndAreReported) {
  DeviceArray<int> out(4096, std::vector<int>(4096, -1));
  write_indices<<<0, 32>>>(out.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  write_indices<<<1, 1025>>>(out.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  write_indices<<<dim3(1, 65536), 1>>>(out.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess) << "the error is cleared once read";
  for (int v : out.get()) ASSERT_EQ(v, -1);
}

TEST(CudaEmu, CopiesAndMemsetsOutsideAnAllocationAreRefused) {
  DeviceArray<int> d(16);
  std::vector<int> host(32, 7);
  EXPECT_EQ(cudaMemcpy(d.ptr, host.data(), 17 * sizeof(int), cudaMemcpyHostToDevice), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(host.data(), d.ptr + 1, 16 * sizeof(int), cudaMemcpyDeviceToHost), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemset(d.ptr + 8, 0, 9 * sizeof(int)), cudaErrorInvalidValue);
  EXPECT_EQ(cudaMemcpy(d.ptr, host.data(), sizeof(int), cudaMemcpyDeviceToDevice), cudaErrorInvalidValue)
      << "a host pointer as a copy's device source";
  EXPECT_EQ(cudaMemset(d.ptr + 8, 0, 8 * sizeof(int)), cudaSuccess);
  (void)cudaGetLastError();
}

__global__ void add_to(int* data, int n, int v) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) data[i] += v;
}
__global__ void copy_ints(int* dst, const int* src, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) dst[i] = src[i];
}

// Two non-blocking streams and two events, destroyed at the end.
struct TwoStreams {
  TwoStreams() {
    EXPECT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
    EXPECT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
    EXPECT_EQ(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming), cudaSuccess);
    EXPECT_EQ(cudaEventCreateWithFlags(&join, cudaEventDisableTiming), cudaSuccess);
  }
  ~TwoStreams() {
    EXPECT_EQ(cudaEventDestroy(fork), cudaSuccess);
    EXPECT_EQ(cudaEventDestroy(join), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
    EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
  }
  cudaStream_t a = nullptr, b = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
};

// A stream's work runs as late as the program's waits allow, so a consumer
// on another stream that does not wait reads what was there before (a
// device may run it first); with the wait it reads the producer's result.
TEST(CudaEmu, AStreamThatDoesNotWaitDoesNotSeeAnotherStreamsWork) {
  TwoStreams st;
  DeviceArray<int> x(4, std::vector<int>(4, 0)), y(4, std::vector<int>(4, -1));
  add_to<<<1, 4, 0, st.a>>>(x.ptr, 4, 5);
  copy_ints<<<1, 4, 0, st.b>>>(y.ptr, x.ptr, 4);  // no wait on a
  ASSERT_EQ(cudaStreamSynchronize(st.b), cudaSuccess);
  EXPECT_EQ(y.get(), std::vector<int>(4, 0));
  add_to<<<1, 4, 0, st.a>>>(x.ptr, 4, 5);
  ASSERT_EQ(cudaEventRecord(st.fork, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(st.b, st.fork, 0), cudaSuccess);
  copy_ints<<<1, 4, 0, st.b>>>(y.ptr, x.ptr, 4);
  ASSERT_EQ(cudaStreamSynchronize(st.b), cudaSuccess);
  EXPECT_EQ(y.get(), std::vector<int>(4, 10));
}

// A capture forked onto a second stream and joined back replays the branch
// where its join needs it, as many times as it is launched.
TEST(CudaEmu, ACaptureForksAndJoinsStreams) {
  TwoStreams st;
  DeviceArray<int> x(4, std::vector<int>(4, 0)), y(4, std::vector<int>(4, -1));
  ASSERT_EQ(cudaStreamBeginCapture(st.a, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  add_to<<<1, 4, 0, st.a>>>(x.ptr, 4, 1);
  ASSERT_EQ(cudaEventRecord(st.fork, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(st.b, st.fork, 0), cudaSuccess);  // b joins the capture
  add_to<<<1, 4, 0, st.b>>>(x.ptr, 4, 10);
  ASSERT_EQ(cudaEventRecord(st.join, st.b), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(st.a, st.join, 0), cudaSuccess);
  copy_ints<<<1, 4, 0, st.a>>>(y.ptr, x.ptr, 4);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(st.a, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  EXPECT_EQ(x.get(), std::vector<int>(4, 0)) << "captured work ran at capture";
  ASSERT_EQ(cudaGraphLaunch(exec, st.a), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(st.a), cudaSuccess);
  EXPECT_EQ(y.get(), std::vector<int>(4, 22));
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

// In a replay the branch runs no earlier than its join: a read on the
// origin before the join sees x without the branch's add.
TEST(CudaEmu, AReplayRunsABranchNoEarlierThanItsJoin) {
  TwoStreams st;
  DeviceArray<int> x(4, std::vector<int>(4, 0)), y(4, std::vector<int>(4, -1));
  ASSERT_EQ(cudaStreamBeginCapture(st.a, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  add_to<<<1, 4, 0, st.a>>>(x.ptr, 4, 1);
  ASSERT_EQ(cudaEventRecord(st.fork, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(st.b, st.fork, 0), cudaSuccess);
  add_to<<<1, 4, 0, st.b>>>(x.ptr, 4, 10);
  ASSERT_EQ(cudaEventRecord(st.join, st.b), cudaSuccess);
  copy_ints<<<1, 4, 0, st.a>>>(y.ptr, x.ptr, 4);  // reads x before waiting for the branch
  ASSERT_EQ(cudaStreamWaitEvent(st.a, st.join, 0), cudaSuccess);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(st.a, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(st.a), cudaSuccess);
  EXPECT_EQ(y.get(), std::vector<int>(4, 1));
  EXPECT_EQ(x.get(), std::vector<int>(4, 11));
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
}

TEST(CudaEmu, ACaptureWithABranchNotJoinedBackIsRefused) {
  TwoStreams st;
  DeviceArray<int> x(4, std::vector<int>(4, 0));
  ASSERT_EQ(cudaStreamBeginCapture(st.a, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(st.fork, st.a), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(st.b, st.fork, 0), cudaSuccess);
  add_to<<<1, 4, 0, st.b>>>(x.ptr, 4, 10);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(st.a, &graph), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(graph, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureUnjoined);
  add_to<<<1, 4, 0, st.b>>>(x.ptr, 4, 1);  // b has left the capture: its work runs again
  ASSERT_EQ(cudaStreamSynchronize(st.b), cudaSuccess);
  EXPECT_EQ(x.get(), std::vector<int>(4, 1));
}

// As on a device: a copy from pageable memory takes the bytes at the call;
// pinned memory is read when the stream gets there.
TEST(CudaEmu, CopiesFromPageableMemoryTakeTheBytesAtTheCall) {
  TwoStreams st;
  DeviceArray<int> x(4), y(4);
  std::vector<int> pageable(4, 7);
  int* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(reinterpret_cast<void**>(&pinned), 4 * sizeof(int)), cudaSuccess);
  std::fill(pinned, pinned + 4, 7);
  ASSERT_EQ(cudaMemcpyAsync(x.ptr, pageable.data(), 4 * sizeof(int), cudaMemcpyHostToDevice, st.a), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(y.ptr, pinned, 4 * sizeof(int), cudaMemcpyHostToDevice, st.a), cudaSuccess);
  pageable.assign(4, 9);
  std::fill(pinned, pinned + 4, 9);
  ASSERT_EQ(cudaStreamSynchronize(st.a), cudaSuccess);
  EXPECT_EQ(x.get(), std::vector<int>(4, 7));
  EXPECT_EQ(y.get(), std::vector<int>(4, 9));
  EXPECT_EQ(cudaFreeHost(pinned), cudaSuccess);
}

__global__ void divergent_barrier(float* out) {
  float v = float(threadIdx.x);
  if (threadIdx.x % 2)
    __syncthreads();
  else
    v = __shfl_xor_sync(kFull, v, 1);  // waits for the odd lanes, which wait for it
  out[threadIdx.x] = v;
}

__global__ void shuffle_after_a_lane_returned(float* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(kFull, float(threadIdx.x), 1);
}

// Substring matchers, not regular expressions: a binary linking Oniguruma
// (the tokenizers' regex engine, which exports POSIX regcomp/regexec) can
// pair GoogleTest's regcomp with the wrong regexec under AddressSanitizer.
using ::testing::HasSubstr;

TEST(CudaEmuDeathTest, ABarrierNotEveryThreadReachesIsADeadlock) {
  DeviceArray<float> out(64);
  EXPECT_DEATH(divergent_barrier<<<1, 64>>>(out.ptr), HasSubstr("kernel divergent_barrier block (0,0,0): deadlock"));
}

TEST(CudaEmuDeathTest, AShuffleAfterALaneReturnedStops) {
  DeviceArray<float> out(32);
  EXPECT_DEATH(shuffle_after_a_lane_returned<<<1, 32>>>(out.ptr), HasSubstr("warp shuffle after a lane returned"));
}

}  // namespace
