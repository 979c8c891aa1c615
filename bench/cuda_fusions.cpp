// The A/B of each fused decode kernel against the launches it replaces, on
// tinyllama-1.1b and llama3-8b shapes, bf16, M = 1, 4 and 8 rows. Each form's
// launches are captured kReps times into one CUDA graph (decode steps replay
// from graphs, so launch cost is a graph's, not the host's); the forms run in
// interleaved rounds and each keeps its best round. The weights rotate over
// copies (at least 256 MB together) so every launch streams them from DRAM,
// as in a step where the other layers evicted them.
//
//   cuda_fusions [--json] [--models tinyllama-1.1b,llama3-8b]
//
// Rows (us per launch group; GBps = the weights' bytes over the fused form's time):
//   "<model> norm+qkv m<M>": rmsnorm then small_gemm (unfused_us) against
//     small_gemm_rmsnorm (fused_us)
//   "<model> norm+gate_up+silu m<M>": rmsnorm, small_gemm, silu_mul
//     (unfused_us); small_gemm_rmsnorm then silu_mul (norm_fused_us, the
//     step before small_gemm_silu_mul); small_gemm_silu_mul with the norm
//     (fused_us)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/rmsnorm.h"
#include "gpu/cuda/small_gemm.h"
#include "nodes/cli_app.h"
#include "runtime/model_factory.h"

using namespace myriad;
using namespace myriad::gpu::cuda;

namespace {
constexpr int kReps = 20, kRounds = 5;
constexpr size_t kRotationBytes = 256ull << 20;

void must_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(std::string(what) + ": " + cudaGetErrorString(e));
}

// One form: `enqueue(rep)` puts rep's launches on the stream; captured kReps
// times into a graph.
class Form {
 public:
  Form(cudaStream_t s, const std::function<void(int)>& enqueue) : s_(s) {
    cudaGraph_t g = nullptr;
    must_cuda(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin capture");
    for (int i = 0; i < kReps; ++i) enqueue(i);
    must_cuda(cudaStreamEndCapture(s, &g), "end capture");
    must_cuda(cudaGraphInstantiate(&exec_, g, 0), "instantiate");
    must_cuda(cudaGraphDestroy(g), "destroy graph");
  }
  ~Form() { (void)cudaGraphExecDestroy(exec_); }
  Form(const Form&) = delete;
  Form& operator=(const Form&) = delete;
  // Microseconds per rep of one replay.
  double time() {
    auto e0 = must(Event::create(true)), e1 = must(Event::create(true));
    must(e0.record(s_));
    must_cuda(cudaGraphLaunch(exec_, s_), "graph launch");
    must(e1.record(s_));
    must(e1.synchronize());
    return double(must(elapsed_ms(e0, e1))) * 1000.0 / kReps;
  }

 private:
  cudaStream_t s_;
  cudaGraphExec_t exec_ = nullptr;
};

// Best round of each form, the forms interleaved within a round (after one
// warm-up replay each).
std::vector<double> interleaved(std::vector<Form*> forms) {
  std::vector<double> best(forms.size(), 1e30);
  for (Form* f : forms) f->time();
  for (int r = 0; r < kRounds; ++r)
    for (size_t i = 0; i < forms.size(); ++i) best[i] = std::min(best[i], forms[i]->time());
  return best;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string p; std::getline(ss, p, ',');)
    if (!p.empty()) out.push_back(p);
  return out;
}

// `count` copies of an [n, k] bf16 weight, random (never zeros, which can
// time faster).
std::vector<DeviceBuffer> weight_copies(int64_t n, int64_t k, int count, uint64_t seed) {
  std::vector<DeviceBuffer> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(must(DeviceBuffer::alloc(size_t(n * k) * 2)));
    must(fill_random(DType::kBF16, out.back().data(), n * k, 0.02f, seed + uint64_t(i), nullptr));
  }
  return out;
}
int copies_for(size_t bytes) {
  return int(std::clamp<size_t>((kRotationBytes + bytes - 1) / bytes, 2, kReps));
}

__attribute__((format(printf, 1, 2))) std::string printf_string(const char* f, ...) {
  char buf[320];
  va_list args;
  va_start(args, f);
  std::vsnprintf(buf, sizeof buf, f, args);
  va_end(args);
  return buf;
}
}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  std::string models = "tinyllama-1.1b,llama3-8b";
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("Fused decode kernels against the launches they replace (A/B, CUDA graphs).", "cuda_fusions");
  cli::set_conventions(app);
  app.add_flag("--json", json, "print JSON rows instead of the table");
  app.add_option("--models", models, "comma-separated model shapes (runtime/model_factory)");
  cli::add_log_level(app, log_level);
  app.allow_extras();  // scripts/gpu-check passes cuda_decode's --bench-args to every cuda_* program
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  if (auto why = device_unavailable_reason()) {
    std::fprintf(stderr, "cuda_fusions: no CUDA device: %s\n", why->c_str());
    if (json) std::printf("{\"rows\":[{\"case\":\"skipped\",\"reason\":\"no CUDA device\"}]}\n");
    return 0;
  }
  auto stream = must(Stream::create());
  cudaStream_t s = stream.get();
  const DType bf = DType::kBF16;
  const float eps = 1e-5f;
  std::vector<std::string> rows;
  for (const std::string& name : split(models)) {
    const ModelConfig cfg = must(model_shape(name));
    const int64_t H = cfg.hidden_size, I = cfg.intermediate_size, QKV = cfg.q_dim() + 2 * cfg.kv_dim();
    const int64_t M_max = kSmallGemmMaxRows;
    auto x = must(DeviceBuffer::alloc(size_t(M_max * H) * 2));
    auto gamma = must(DeviceBuffer::alloc(size_t(H) * 2));
    auto normed = must(DeviceBuffer::alloc(size_t(M_max * H) * 2));
    auto y = must(DeviceBuffer::alloc(size_t(M_max * std::max(QKV, 2 * I)) * 2));
    auto act = must(DeviceBuffer::alloc(size_t(M_max * I) * 2));
    must(fill_random(bf, x.data(), M_max * H, 1.0f, 1, nullptr));
    must(fill_random(bf, gamma.data(), H, 1.0f, 2, nullptr));
    const auto qkv_w = weight_copies(QKV, H, copies_for(size_t(QKV * H) * 2), 100);
    const auto gu_w = weight_copies(2 * I, H, copies_for(size_t(2 * I * H) * 2), 200);
    must(device_synchronize());
    for (int64_t M : {1, 4, 8}) {
      auto norm = [&] { must(rmsnorm(bf, normed.data(), nullptr, x.data(), gamma.data(), M, H, eps, s)); };
      auto w_of = [](const std::vector<DeviceBuffer>& c, int rep) {
        return c[size_t(rep) % c.size()].data();
      };
      {
        Form unfused(s, [&](int rep) {
          norm();
          must(small_gemm(bf, bf, normed.data(), H, w_of(qkv_w, rep), y.data(), QKV, M, QKV, H, 1.0f, 0.0f,
                          s));
        });
        Form fused(s, [&](int rep) {
          must(small_gemm_rmsnorm(bf, bf, x.data(), H, gamma.data(), eps, nullptr, 0, w_of(qkv_w, rep),
                                  y.data(), QKV, M, QKV, H, 1.0f, 0.0f, s));
        });
        const auto us = interleaved({&unfused, &fused});
        rows.push_back(
            "{\"case\":\"" + name + " norm+qkv m" + std::to_string(M) + "\"," +
            printf_string("\"unfused_us\":%.2f,\"fused_us\":%.2f,\"fused_vs_unfused\":%.3f,\"GBps\":%.0f}",
                          us[0], us[1], us[1] / us[0], double(QKV * H * 2) / (us[1] * 1e3)));
      }
      {
        Form unfused(s, [&](int rep) {
          norm();
          must(small_gemm(bf, bf, normed.data(), H, w_of(gu_w, rep), y.data(), 2 * I, M, 2 * I, H, 1.0f, 0.0f,
                          s));
          must(silu_mul(bf, act.data(), y.data(), M, I, s));
        });
        Form norm_fused(s, [&](int rep) {
          must(small_gemm_rmsnorm(bf, bf, x.data(), H, gamma.data(), eps, nullptr, 0, w_of(gu_w, rep),
                                  y.data(), 2 * I, M, 2 * I, H, 1.0f, 0.0f, s));
          must(silu_mul(bf, act.data(), y.data(), M, I, s));
        });
        Form fused(s, [&](int rep) {
          must(small_gemm_silu_mul(bf, x.data(), H, gamma.data(), eps, w_of(gu_w, rep), act.data(), I, M, I,
                                   H, s));
        });
        const auto us = interleaved({&unfused, &norm_fused, &fused});
        rows.push_back(
            "{\"case\":\"" + name + " norm+gate_up+silu m" + std::to_string(M) + "\"," +
            printf_string(
                "\"unfused_us\":%.2f,\"norm_fused_us\":%.2f,\"fused_us\":%.2f,\"fused_vs_norm_fused\":"
                "%.3f,\"GBps\":%.0f}",
                us[0], us[1], us[2], us[2] / us[1], double(2 * I * H * 2) / (us[2] * 1e3)));
      }
    }
  }
  print_rows(rows, json);
  return 0;
}
