// Decode step time on one CUDA device vs its memory-bandwidth floor, and
// multi-LoRA decode vs its own floor. Random bf16 weights made on the device
// (CudaExecutor::create_random with runtime/model_factory shapes), so 8B
// models need no disk round trip.
//
//   cuda_decode [--json] [--models llama-110m,tinyllama-1.1b,llama3-8b]
//               [--batches 1,16,64] [--ctx 512] [--steps 20] [--adapters 1000] [--no-lora]
//               [--prefill 512,2048] [--no-profile]
//
// floor = (weight bytes + KV bytes read) / bandwidth, where bandwidth is a
// device-to-device copy measured in the same run (read + write bytes / time).
// Rows per model: plain steps, graph steps, graph steps with split-K
// attention off ("graph nosplit", the A/B of flash-decoding) and with every
// GEMM on cuBLAS ("graph cublas", the A/B of the tuned small_gemm GEMV;
// small_gemm_choices says how many (shape, M) the tuning gave it); "ops": one
// profiled decode step per batch (CudaExecutor::profile_step, ms per
// operation summed over layers); "prefill N": one N-token prompt against the
// bf16 GEMM rate measured in the same run (row "gemm bf16"; FLOPs counted as
// 2 x linear weights x tokens + causal attention + the last token's lm_head).
// Multi-LoRA: tinyllama-1.1b, --adapters resident rank-16 adapters on all
// seven modules, batch 64, 1/8/32/64 distinct adapters per step and
// Zipf(1.0) over all of them; floor adds the distinct adapters' bytes; each
// row times steps with LoRA beside the GEMMs on the side stream (step_ms, best
// of 2) against LoRA in line (in_line_shrink_step_ms, the name kept from when
// only the shrinks moved), interleaved.
// Adapter upload: one adapter from its staged form (the host cache's pinned
// bf16 slot image) vs bytes / measured H2D rate; and from float32 weights
// converted at load time ("unstaged").
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench_common.h"
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/gemm.h"
#include "nodes/cli_app.h"
#include "runtime/bench_plans.h"
#include "runtime/model_factory.h"

using namespace myriad;
using namespace myriad::gpu::cuda;

namespace {

struct Row {
  std::string name;
  std::vector<std::pair<std::string, std::string>> kv;
  void add(const std::string& k, double v, int prec = 3) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", prec, v);
    kv.emplace_back(k, b);
  }
  void add(const std::string& k, const std::string& v) { kv.emplace_back(k, "\"" + v + "\""); }
};
std::vector<Row> g_rows;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// GB/s of a D2D copy (read + write) and of a pinned H2D copy.
std::pair<double, double> measure_bandwidth() {
  const size_t n = size_t(1) << 30;
  auto a = must(DeviceBuffer::alloc(n), "alloc"), b = must(DeviceBuffer::alloc(n), "alloc");
  auto e0 = must(Event::create(true), "event"), e1 = must(Event::create(true), "event");
  must(copy_d2d(b.data(), a.data(), n), "warm");
  must(e0.record(nullptr), "rec");
  for (int i = 0; i < 5; ++i) must(copy_d2d(b.data(), a.data(), n), "copy");
  must(e1.record(nullptr), "rec");
  must(e1.synchronize(), "sync");
  const double d2d = 2.0 * 5 * n / (must(elapsed_ms(e0, e1), "ms") * 1e6);
  const size_t hn = size_t(256) << 20;
  auto h = must(PinnedBuffer::alloc(hn), "pinned");
  std::memset(h.data(), 1, hn);
  must(copy_h2d(a.data(), h.data(), hn), "warm");
  must(e0.record(nullptr), "rec");
  for (int i = 0; i < 5; ++i) must(copy_h2d(a.data(), h.data(), hn), "h2d");
  must(e1.record(nullptr), "rec");
  must(e1.synchronize(), "sync");
  const double h2d = 5.0 * hn / (must(elapsed_ms(e0, e1), "ms") * 1e6);
  return {d2d, h2d};
}

// A decode batch: rows at position ctx + i after i steps (runtime/bench_plans.h).
struct DecodeBatch {
  StepPlan plan;
  int32_t bs = 16;
  void build(int batch, int ctx, int steps, const std::vector<int32_t>& slots) {
    plan_decode_batch(batch, ctx, steps, bs, slots, plan);
  }
  void advance() { advance_decode_batch(plan); }
};

double time_steps(CudaExecutor& ex, DecodeBatch& b, int steps) {
  StepResult res;
  for (int i = 0; i < 3; ++i) {  // warm up (graph capture happens here)
    must(ex.step(b.plan, res), "step");
    b.advance();
  }
  const double t0 = now_ms();
  for (int i = 0; i < steps; ++i) {
    must(ex.step(b.plan, res), "step");
    b.advance();
  }
  return (now_ms() - t0) / steps;
}

// TFLOP/s of an M = N = K = n bf16 GEMM (bf16 out, f32 accumulation), the
// compute roof prefill is held against.
double measure_gemm_tflops(int64_t n) {
  auto blas = must(Blas::create(nullptr), "blas");
  const size_t bytes = size_t(n) * n * 2;
  auto a = must(DeviceBuffer::alloc(bytes), "alloc"), w = must(DeviceBuffer::alloc(bytes), "alloc"),
       y = must(DeviceBuffer::alloc(bytes), "alloc");
  must(fill_bytes(a.data(), 0x3c, bytes), "fill");  // bf16 0x3c3c ~ 0.0115: finite products
  must(fill_bytes(w.data(), 0x3c, bytes), "fill");
  auto e0 = must(Event::create(true), "event"), e1 = must(Event::create(true), "event");
  for (int i = 0; i < 2; ++i) must(blas.gemm(DType::kBF16, DType::kBF16, a.data(), n, w.data(), y.data(), n, n, n, n), "warm");
  const int reps = 10;
  must(e0.record(nullptr), "rec");
  for (int i = 0; i < reps; ++i)
    must(blas.gemm(DType::kBF16, DType::kBF16, a.data(), n, w.data(), y.data(), n, n, n, n), "gemm");
  must(e1.record(nullptr), "rec");
  must(e1.synchronize(), "sync");
  return 2.0 * double(n) * n * n * reps / (double(must(elapsed_ms(e0, e1), "ms")) * 1e9);
}

// FLOPs of one prefill of `tokens` tokens from position 0.
double prefill_flops(const ModelConfig& c, int64_t tokens) {
  const double H = double(c.hidden_size), Q = double(c.num_heads) * c.head_dim,
               KV = double(c.num_kv_heads) * c.head_dim, I = double(c.intermediate_size);
  const double linear = H * (Q + 2 * KV) + Q * H + H * 2 * I + I * H;  // per layer
  const double t = double(tokens);
  const double attention = 2.0 * 2.0 * Q * t * (t + 1) / 2;  // QK^T and PV over the causal half, per layer
  return double(c.num_layers) * (2.0 * linear * t + attention) + 2.0 * H * double(c.vocab_size);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) v.push_back(x);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  bool json = false, no_lora = false, no_profile = false;
  std::string models = "llama-110m,tinyllama-1.1b,llama3-8b", batch_list = "1,16,64", prefill_list = "512,2048";
  int ctx = 512, steps = 20, num_adapters = 1000;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("CUDA decode step time against its memory-bandwidth floor; multi-LoRA decode; adapter upload.",
               "cuda_decode");
  cli::set_conventions(app);
  app.add_flag("--json", json, "print JSON rows instead of the table");
  app.add_option("--models", models, "model shapes, comma-separated (default llama-110m,tinyllama-1.1b,llama3-8b)")
      ->option_text("A,B");
  app.add_option("--batches", batch_list, "batch sizes, comma-separated, each in [1, 64] (default 1,16,64)")
      ->option_text("1,16,64");
  app.add_option("--ctx", ctx, "context length of every row (default 512)")->option_text("N");
  app.add_option("--steps", steps, "timed decode steps (default 20)")->option_text("N");
  app.add_option("--adapters", num_adapters, "resident adapters of the multi-LoRA cases (default 1000)")
      ->option_text("N");
  app.add_flag("--no-lora", no_lora, "skip the multi-LoRA cases");
  app.add_option("--prefill", prefill_list, "prompt lengths of the prefill rows, comma-separated; empty: none "
                                            "(default 512,2048)")
      ->option_text("512,2048");
  app.add_flag("--no-profile", no_profile, "skip the per-operation breakdown of a decode step");
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  const bool lora = !no_lora;
  if (auto why = device_unavailable_reason()) {
    std::fprintf(stderr, "cuda_decode: no CUDA device: %s\n", why->c_str());
    if (json) std::printf("{\"rows\":[{\"case\":\"skipped\",\"reason\":\"no CUDA device\"}]}\n");
    return 0;
  }
  const auto props = must(device_props(), "props");
  const auto [bw, h2d] = measure_bandwidth();
  {
    Row r;
    r.name = "bandwidth";
    r.add("device", props.name);
    r.add("d2d_GBps", bw, 0);
    r.add("h2d_pinned_GBps", h2d, 1);
    g_rows.push_back(r);
  }
  std::vector<int> batches, prefills;
  for (const auto& b : split(batch_list)) batches.push_back(std::stoi(b));
  for (int b : batches)
    if (b < 1 || b > 64) die("--batches: each batch must be in [1, 64]");
  for (const auto& p : split(prefill_list)) prefills.push_back(std::stoi(p));
  int max_prefill = 0;
  for (int p : prefills) {
    if (p < 1 || p > 8192) die("--prefill: each length must be in [1, 8192]");
    max_prefill = std::max(max_prefill, p);
  }
  double gemm_tflops = 0;
  if (!prefills.empty()) {
    gemm_tflops = measure_gemm_tflops(8192);
    Row r;
    r.name = "gemm bf16 8192";
    r.add("tflops", gemm_tflops, 1);
    g_rows.push_back(r);
  }
  struct Variant {
    const char* suffix;
    bool graphs;
    int32_t attention_splits, small_gemm;
  };
  const Variant variants[] = {
      {"", false, 0, 0}, {" graph", true, 0, 0}, {" graph nosplit", true, 1, 0}, {" graph cublas", true, 0, 1}};
  for (const auto& name : split(models)) {
    const ModelConfig cfg = must(model_shape(name), "model_shape");
    for (const Variant& v : variants) {
      CudaExecutorOptions o;
      o.compute = DType::kBF16;
      o.kv_block_size = 16;
      o.kv_num_blocks = std::max(64 * ((ctx + steps + 8 + 15) / 16), (max_prefill + 15) / 16) + 16;
      o.max_tokens_per_step = std::max(64, max_prefill);
      o.max_rows = 64;
      o.max_logits_rows = 0;
      o.max_history = 1;
      o.cuda_graphs = v.graphs;
      o.attention_splits = v.attention_splits;
      o.small_gemm = v.small_gemm;
      auto ex = must(CudaExecutor::create_random(cfg, o, 1), "create_random");
      for (int batch : batches) {
        DecodeBatch b;
        b.build(batch, ctx, steps + 8, {});
        const double ms = time_steps(*ex, b, steps);
        const double bytes = double(ex->weight_bytes()) + double(batch) * (ctx + steps / 2.0) * ex->kv_bytes_per_token();
        const double floor_ms = bytes / (bw * 1e6);
        Row r;
        r.name = name + " b" + std::to_string(batch) + v.suffix;
        r.add("step_ms", ms);
        r.add("floor_ms", floor_ms);
        r.add("floor_frac", floor_ms / ms);
        r.add("tok_per_s", batch * 1000.0 / ms, 0);
        if (v.small_gemm == 0) r.add("small_gemm_choices", double(ex->small_gemm_choices()), 0);
        g_rows.push_back(r);
      }
      if (v.graphs) continue;
      if (!no_profile)
        for (int batch : batches) {  // where a plain step's time goes
          DecodeBatch b;
          b.build(batch, ctx, steps + 8, {});
          StepResult res;
          std::vector<std::pair<std::string, double>> ops;
          for (int i = 0; i < 3; ++i) {  // the last of three: warm caches and events
            must(ex->profile_step(b.plan, res, ops), "profile_step");
            b.advance();
          }
          Row r;
          r.name = name + " b" + std::to_string(batch) + " ops";
          double total = 0;
          for (const auto& [op, ms] : ops) total += ms;
          r.add("total_ms", total);
          for (auto [op, ms] : ops) {
            std::replace(op.begin(), op.end(), ' ', '_');
            r.add(op + "_ms", ms, 4);
          }
          g_rows.push_back(r);
        }
      for (int n : prefills) {
        StepPlan plan;
        StepResult res;
        plan_prefill(n, o.kv_block_size, plan);
        must(ex->step(plan, res), "prefill warm-up");
        std::vector<double> times;
        for (int i = 0; i < 5; ++i) {
          const double t0 = now_ms();
          must(ex->step(plan, res), "prefill");
          times.push_back(now_ms() - t0);
        }
        std::sort(times.begin(), times.end());
        const double ms = times[times.size() / 2];
        const double tflops = prefill_flops(cfg, n) / (ms * 1e9);
        Row r;
        r.name = name + " prefill " + std::to_string(n);
        r.add("ms", ms);
        r.add("tok_per_s", n * 1000.0 / ms, 0);
        r.add("tflops", tflops, 1);
        r.add("gemm_frac", tflops / gemm_tflops);
        g_rows.push_back(r);
      }
    }
  }

  if (lora) {
    const ModelConfig cfg = must(model_shape("tinyllama-1.1b"), "model_shape");
    CudaExecutorOptions o;
    o.compute = DType::kBF16;
    o.kv_num_blocks = 64 * ((ctx + steps * 6 + 40 + 15) / 16) + 16;
    o.max_tokens_per_step = 64;
    o.max_rows = 64;
    o.max_logits_rows = 0;
    o.max_history = 1;
    o.num_adapter_slots = num_adapters;
    o.max_adapter_rank = 16;
    o.cuda_graphs = true;
    auto ex = must(CudaExecutor::create_random(cfg, o, 2), "create_random lora");
    auto w = std::make_shared<LoraWeights>();
    w->name = "random-r16";
    w->num_layers = int32_t(cfg.num_layers);
    w->modules.resize(size_t(cfg.num_layers) * kNumLinearModules);
    std::mt19937 g(3);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (int l = 0; l < w->num_layers; ++l)
      for (int m = 0; m < kNumLinearModules; ++m) {
        auto [out, in] = linear_module_shape(cfg, LinearModule(m));
        auto& mw = w->at(l, LinearModule(m));
        mw.rank = 16;
        mw.scale = 2.0f;
        mw.a.resize(size_t(16 * in));
        mw.b.resize(size_t(out * 16));
        for (auto& x : mw.a) x = nd(g);
        for (auto& x : mw.b) x = nd(g);
      }
    // Upload of one adapter vs the H2D floor: from the host cache's staged
    // form (a pinned bf16 slot image, made once as the adapter enters the
    // cache: stage_ms), then, for comparison, from float32 weights written
    // into the staging buffer at load time. Best of 3 each, slots 0 and 1.
    double stage_ms = 0, upload_ms = 1e30, unstaged_ms = 1e30, unstaged_issue_ms = 0;
    std::shared_ptr<const LoraWeights> staged;
    {
      const double t0 = now_ms();
      staged = must(ex->stage_adapter(w), "stage_adapter");
      stage_ms = now_ms() - t0;
    }
    for (int i = 0; i < 3; ++i) {
      if (i > 0) ex->unload_adapter(0), ex->unload_adapter(1);
      must(ex->wait_for_uploads(), "wait");
      must(device_synchronize(), "sync");
      double t0 = now_ms();
      must(ex->begin_load_adapter(0, staged, nullptr), "load staged");
      must(ex->wait_for_uploads(), "wait");
      upload_ms = std::min(upload_ms, now_ms() - t0);
      t0 = now_ms();
      must(ex->begin_load_adapter(1, w, nullptr), "load unstaged");
      const double issue = now_ms() - t0;
      must(ex->wait_for_uploads(), "wait");
      if (now_ms() - t0 < unstaged_ms) unstaged_ms = now_ms() - t0, unstaged_issue_ms = issue;
    }
    ex->unload_adapter(1);
    const double floor_ms = ex->adapter_bytes(0) / (h2d * 1e6);
    {
      Row r;
      r.name = "adapter upload r16 x7 tinyllama";
      r.add("MB", ex->adapter_bytes(0) / 1e6, 1);
      r.add("upload_ms", upload_ms);
      r.add("pcie_floor_ms", floor_ms);
      r.add("floor_frac", floor_ms / upload_ms);
      r.add("stage_ms", stage_ms);
      g_rows.push_back(r);
    }
    {
      Row r;
      r.name = "unstaged adapter upload r16 x7 tinyllama";
      r.add("upload_ms", unstaged_ms);
      r.add("host_convert_ms", unstaged_issue_ms);
      r.add("pcie_floor_ms", floor_ms);
      g_rows.push_back(r);
    }
    for (int s = 1; s < num_adapters; ++s) must(ex->clone_adapter_slot(0, s), "clone");
    must(ex->wait_for_uploads(), "wait");
    for (int s = 0; s < num_adapters; ++s)
      if (!ex->adapter_ready(s)) die("slot not ready");

    const int batch = 64;
    DecodeBatch base;
    base.build(batch, ctx, steps * 6 + 40, {});
    const double base_first_ms = time_steps(*ex, base, steps);
    const double base_ms = std::min(base_first_ms, time_steps(*ex, base, steps));  // best of 2, as the rows
    std::mt19937_64 rng(7);
    auto run_case = [&](const std::string& label, std::vector<int32_t> slots) {
      std::set<int32_t> distinct(slots.begin(), slots.end());
      DecodeBatch b;
      b.build(batch, ctx, steps * 6 + 40, slots);
      // A/B, interleaved: LoRA beside the GEMMs on the side stream (the
      // default) and in line on the compute stream; the best of 2 each.
      double ms = 1e30, in_line_ms = 1e30;
      for (int round = 0; round < 2; ++round) {
        ex->set_lora_side_stream(true);
        ms = std::min(ms, time_steps(*ex, b, steps));
        ex->set_lora_side_stream(false);
        in_line_ms = std::min(in_line_ms, time_steps(*ex, b, steps));
      }
      ex->set_lora_side_stream(true);
      double bytes = double(ex->weight_bytes()) + double(batch) * (ctx + steps / 2.0) * ex->kv_bytes_per_token();
      for (int32_t s : distinct) bytes += double(ex->adapter_bytes(s));
      const double floor_ms = bytes / (bw * 1e6);
      Row r;
      r.name = "multilora b64 " + label;
      r.add("distinct", double(distinct.size()), 0);
      r.add("step_ms", ms);
      r.add("floor_ms", floor_ms);
      r.add("floor_frac", floor_ms / ms);
      r.add("tok_per_s_vs_base", base_ms / ms);
      r.add("in_line_shrink_step_ms", in_line_ms);
      g_rows.push_back(r);
    };
    {
      Row r;
      r.name = "multilora b64 base-only";
      r.add("step_ms", base_ms);
      g_rows.push_back(r);
    }
    for (int d : {1, 8, 32, 64}) {
      std::vector<int32_t> pick;
      for (int i = 0; i < d; ++i) pick.push_back(int32_t(rng() % uint64_t(num_adapters)));
      std::vector<int32_t> slots(batch);
      for (int i = 0; i < batch; ++i) slots[size_t(i)] = pick[size_t(i % d)];
      run_case(std::to_string(d) + " distinct", slots);
    }
    {  // Zipf(1.0) over all adapters
      std::vector<double> cdf(static_cast<size_t>(num_adapters));
      double z = 0;
      for (int k = 0; k < num_adapters; ++k) cdf[size_t(k)] = (z += 1.0 / (k + 1));
      std::uniform_real_distribution<double> u(0, z);
      std::vector<int32_t> slots(batch);
      for (auto& s : slots) s = int32_t(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
      run_case("zipf1.0", slots);
    }
  }

  if (json) {
    std::printf("{\"rows\":[");
    for (size_t i = 0; i < g_rows.size(); ++i) {
      std::printf("%s{\"case\":\"%s\"", i ? "," : "", g_rows[i].name.c_str());
      for (auto& [k, v] : g_rows[i].kv) std::printf(",\"%s\":%s", k.c_str(), v.c_str());
      std::printf("}");
    }
    std::printf("]}\n");
  } else {
    for (auto& r : g_rows) {
      std::printf("%-34s", r.name.c_str());
      for (auto& [k, v] : r.kv) std::printf("  %s=%s", k.c_str(), v.c_str());
      std::printf("\n");
    }
  }
  return 0;
}
