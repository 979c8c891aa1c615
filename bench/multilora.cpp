// multilora: batched multi-LoRA decode throughput on the CPU backend.
//
// llama-110m (made with make_model into a temp folder unless --model is
// given; bf16 weights by default), adapters of rank 16 on all seven modules
// of every layer (random, f32). For batch 32 and 64 and D distinct adapters
// (0 = base only, 1, 8, 32, and one per row), rows are spread over the D
// slots round-robin; decode tokens/s is timed exactly as bench/decode does
// (16-token prompts, 3 warm-up decodes, then --steps timed decodes; windows
// of all D are interleaved and the best of --repeats is kept per D). The
// ratio is also predicted from its parts (base step time + the LoRA hook
// timed alone), which is steadier on a shared machine. Also
// the time to bring one adapter from disk (PEFT folder: read + validate +
// convert + copy into a slot) and from the host cache (copy into a slot).
//
// The headline: one adapter per row at batch 32 as a fraction of base only,
// and what bounds it (extra bytes of adapter weights read per step vs the
// base weights).
//
// usage: multilora [--model DIR] [--dtype bf16|f32] [--adapter-dtype f32|bf16] [--steps N] [--repeats R] [--threads N] [--batches 32,64] [--json]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "greedy_decode.h"
#include "read_bandwidth.h"
#include "nodes/cli_app.h"
#include "runtime/checkpoint.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"

using namespace myriad;
using gpu::cpu::CpuExecutor;
using gpu::cpu::CpuExecutorOptions;

namespace {

constexpr int kRank = 16;

std::shared_ptr<const LoraWeights> random_adapter(const ModelConfig& c, int seed) {
  auto w = std::make_shared<LoraWeights>();
  w->name = "bench-" + std::to_string(seed);
  w->num_layers = int32_t(c.num_layers);
  w->modules.resize(size_t(c.num_layers) * kNumLinearModules);
  std::mt19937 rng(uint32_t(seed) * 7919u + 1u);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  for (size_t i = 0; i < w->modules.size(); ++i) {
    const auto [out, in] = linear_module_shape(c, LinearModule(i % kNumLinearModules));
    auto& m = w->modules[i];
    m.rank = kRank;
    m.scale = 2.0f;
    m.a.resize(size_t(kRank * in));
    m.b.resize(size_t(out * kRank));
    for (auto& v : m.a) v = nd(rng);
    for (auto& v : m.b) v = nd(rng);
  }
  return w;
}

bool wait_ready(CpuExecutor& ex, int32_t slot) {
  for (int i = 0; i < 200000 && !ex.adapter_ready(slot); ++i) std::this_thread::sleep_for(std::chrono::microseconds(50));
  return ex.adapter_ready(slot);
}

struct Row {
  int batch = 0, distinct = 0;
  size_t distinct_in_step = 0;
  double tok_s = 0, lora_mb_per_step = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string model, dtype = "bf16", adapter_dtype = "auto", batch_list = "32,64";
  bool json = false;
  int steps = 16, threads = 0, repeats = 3;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("CPU decode throughput with D distinct LoRA adapters per step; adapter load times.", "multilora");
  cli::set_conventions(app);
  app.add_option("--model", model, "model folder (default: llama-110m, made in a temp folder)")->option_text("DIR");
  app.add_option("--dtype", dtype, "weights of the made model: bf16 | f32 (default bf16)")->option_text("D");
  app.add_option("--adapter-dtype", adapter_dtype,
                 "adapter weights in the slots: auto (the model's: bf16 for a bf16 model) | f32 | bf16 (default auto)")
      ->option_text("D");
  app.add_option("--steps", steps, "timed decode steps per window, at least 1 (default 16)")->option_text("N");
  app.add_option("--repeats", repeats, "windows per D, the best kept; at least 1 (default 3)")->option_text("R");
  app.add_option("--threads", threads, "CPU threads (default: all cores)")->option_text("N");
  app.add_option("--batches", batch_list, "batch sizes, comma-separated, each at least 1 (default 32,64)")
      ->option_text("32,64");
  app.add_flag("--json", json, "print JSON instead of the table");
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  steps = std::max(1, steps);
  repeats = std::max(1, repeats);
  std::vector<int> batches;
  {
    std::stringstream ss(batch_list);
    for (std::string b; std::getline(ss, b, ',');) batches.push_back(std::max(1, std::atoi(b.c_str())));
  }
  std::string tmp;
  {
    char tmpl[] = "/tmp/myriad-multilora-XXXXXX";
    if (!mkdtemp(tmpl)) {
      std::perror("multilora: mkdtemp");
      return 1;
    }
    tmp = tmpl;
  }
  if (model.empty()) {
    MakeModelOptions mo;
    mo.shape = "llama-110m";
    mo.seed = 1;
    mo.dtype = dtype == "f32" ? DType::kF32 : DType::kBF16;
    mo.out_dir = tmp + "/model";
    if (Status st = make_model(mo); !st.ok()) {
      std::fprintf(stderr, "multilora: make_model: %s\n", st.error().to_string().c_str());
      return 1;
    }
    model = mo.out_dir;
  }
  auto ck = Checkpoint::load(model);
  if (!ck.ok()) {
    std::fprintf(stderr, "multilora: %s\n", ck.error().to_string().c_str());
    return 1;
  }
  const ModelConfig& c = (*ck)->config();
  int max_batch = 0;
  for (int b : batches) max_batch = std::max(max_batch, b);
  CpuExecutorOptions o;
  o.kv_block_size = 16;
  o.kv_num_blocks = max_batch * ((16 + steps + 8) / 16 + 2) + 64;
  o.threads = threads;
  o.num_adapter_slots = max_batch + 1;  // +1: the load-timing slot
  o.max_adapter_rank = kRank;
  if (adapter_dtype != "auto") o.adapter_dtype = adapter_dtype == "bf16" ? DType::kBF16 : DType::kF32;
  auto exr = CpuExecutor::create(*ck, o);
  if (!exr.ok()) {
    std::fprintf(stderr, "multilora: %s\n", exr.error().to_string().c_str());
    return 1;
  }
  CpuExecutor& ex = **exr;

  // Adapters: one per slot, loaded through the executor (host cache -> slot).
  std::vector<std::shared_ptr<const LoraWeights>> adapters;
  for (int i = 0; i < max_batch; ++i) adapters.push_back(random_adapter(c, i));
  // Bytes one adapter occupies in a slot (what a step reads per distinct
  // adapter), in the dtype the slots really store, not the one requested.
  const DType slot_dtype = ex.lora_slots()->storage();
  const size_t adapter_bytes = adapters[0]->bytes() / sizeof(float) * dtype_size(slot_dtype);
  for (int i = 0; i < max_batch; ++i) {
    if (Status st = ex.begin_load_adapter(i, adapters[size_t(i)], nullptr); !st.ok()) {
      std::fprintf(stderr, "multilora: load: %s\n", st.error().to_string().c_str());
      return 1;
    }
  }
  for (int i = 0; i < max_batch; ++i) {
    if (!wait_ready(ex, i)) return 1;
  }

  // Load timings into the spare slot: host cache -> slot, and disk -> slot.
  const int32_t spare = max_batch;
  const std::string adir = tmp + "/adapter";
  if (Status st = save_peft_adapter(adir, *adapters[0], "llama-110m"); !st.ok()) {
    std::fprintf(stderr, "multilora: save: %s\n", st.error().to_string().c_str());
    return 1;
  }
  const int reps = 5;
  double host_ms = 0, disk_ms = 0, disk_read_ms = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = bench::now_s();
    if (!ex.begin_load_adapter(spare, adapters[size_t(r % max_batch)], nullptr).ok() || !wait_ready(ex, spare)) return 1;
    host_ms += (bench::now_s() - t0) * 1e3 / reps;
    ex.unload_adapter(spare);
    t0 = bench::now_s();
    PeftLoadOptions po;
    po.max_rank = kRank;
    auto w = load_peft_adapter(adir, c, po);
    if (!w.ok()) {
      std::fprintf(stderr, "multilora: %s\n", w.error().to_string().c_str());
      return 1;
    }
    disk_read_ms += (bench::now_s() - t0) * 1e3 / reps;
    if (!ex.begin_load_adapter(spare, *w, nullptr).ok() || !wait_ready(ex, spare)) return 1;
    disk_ms += (bench::now_s() - t0) * 1e3 / reps;
    ex.unload_adapter(spare);
  }

  double base_bytes = double((*ck)->lm_head().nbytes);
  for (const auto& l : (*ck)->layers())
    for (int m = 0; m < kNumLinearModules; ++m) base_bytes += double(l.linear(LinearModule(m)).nbytes);

  std::vector<Row> rows;
  StepPlan plan;
  StepResult res;
  // One window: fresh sequences, prefill and 3 warm-up decodes (untimed),
  // then `steps` timed decodes; returns seconds (< 0 on error).
  auto window = [&](int batch, int d, size_t* distinct) -> double {
    KvBlockAllocator alloc(o.kv_num_blocks, 2);
    std::vector<bench::DecodeSeq> s(static_cast<size_t>(batch));
    for (int r = 0; r < batch; ++r) {
      s[size_t(r)].ids = bench::prompt(16, r + 2, c.vocab_size);
      s[size_t(r)].mix = d == 0 ? AdapterMix::none() : AdapterMix::single(r % d);
    }
    for (int k = 0; k < 4; ++k)
      if (!bench::greedy_step(ex, s, alloc, plan, res, "multilora")) return -1;
    const double t0 = bench::now_s();
    for (int k = 0; k < steps; ++k)
      if (!bench::greedy_step(ex, s, alloc, plan, res, "multilora")) return -1;
    const double dt = bench::now_s() - t0;
    *distinct = d == 0 ? 0 : ex.lora_slots()->distinct_slots_in_step();
    return dt;
  };
  for (int batch : batches) {
    std::vector<int> ds;
    for (int d : {0, 1, 8, 32, batch})
      if (d <= batch && std::find(ds.begin(), ds.end(), d) == ds.end()) ds.push_back(d);
    // Windows of all D interleaved, best of `repeats` each: on a shared
    // machine every configuration sees the same mix of quiet and busy periods.
    std::vector<double> best(ds.size(), 1e30);
    std::vector<size_t> distinct(ds.size(), 0);
    for (int rep = 0; rep < repeats; ++rep) {
      for (size_t i = 0; i < ds.size(); ++i) {
        const double dt = window(batch, ds[i], &distinct[i]);
        if (dt < 0) return 1;
        best[i] = std::min(best[i], dt);
      }
    }
    for (size_t i = 0; i < ds.size(); ++i) {
      Row row;
      row.batch = batch;
      row.distinct = ds[i];
      row.distinct_in_step = distinct[i];
      row.tok_s = double(batch) * steps / best[i];
      row.lora_mb_per_step = double(row.distinct_in_step) * double(adapter_bytes) / 1e6;
      rows.push_back(row);
    }
  }
  std::filesystem::remove_all(tmp);

  // The LoRA part alone: the hook over every (layer, module) of one decode
  // step with one adapter per row, timed without the base model, and the
  // adapter bytes it reads per second.
  struct KernelRow {
    int batch = 0;
    double ms = 0, gb_s = 0;
    double predicted = 0;  // base step / (base step + LoRA alone)
    double shared_ms = 0;  // the same with one adapter shared by all rows
    double shared_predicted = 0;
  };
  std::vector<KernelRow> kernel_rows;
  // The machine's read bandwidth, as bench/decode measures it (before and
  // after the LoRA timings; the best kept).
  bench::Bandwidth bandwidth(ex.pool(), size_t(512) << 20);
  bandwidth.sample(3);
  // Each kernel set this CPU runs, the best first; lora_sgmv's is the first.
  // The best set also runs module by module (no stacked q|k|v and gate|up
  // pass), the way every step ran before the groups, and without prefetching
  // the next block's weights, interleaved likewise.
  struct Variant {
    gpu::cpu::LoraIsa isa;
    bool grouped = true;
    bool prefetch_next = true;
  };
  std::vector<Variant> variants{{gpu::cpu::lora_best_isa(), true, true},
                                {gpu::cpu::lora_best_isa(), false, true},
                                {gpu::cpu::lora_best_isa(), true, false}};
  for (int i = int(gpu::cpu::lora_best_isa()) - 1; i >= int(gpu::cpu::LoraIsa::kAvx2); --i)
    variants.push_back({gpu::cpu::LoraIsa(i), true});
  struct IsaRow {
    Variant variant;
    int batch = 0;
    double ms = 0;
  };
  std::vector<IsaRow> isa_rows;
  auto variant_name = [](const Variant& v) {
    return std::string(gpu::cpu::lora_isa_name(v.isa)) + (v.grouped ? "" : " module-by-module") +
           (v.prefetch_next ? "" : " no-next-block-prefetch");
  };
  constexpr LinearModule kQkv[] = {LinearModule::kQ, LinearModule::kK, LinearModule::kV};
  constexpr LinearModule kGateUp[] = {LinearModule::kGate, LinearModule::kUp};
  for (int batch : batches) {
    std::vector<AdapterMix> one_per_row(static_cast<size_t>(batch)), shared(static_cast<size_t>(batch));
    for (int r = 0; r < batch; ++r) {
      one_per_row[size_t(r)] = AdapterMix::single(r);
      shared[size_t(r)] = AdapterMix::single(0);
    }
    const int64_t widest = std::max(c.hidden_size, c.intermediate_size);
    std::vector<float> x(size_t(batch * widest), 0.01f);
    std::vector<std::vector<float>> y(3, std::vector<float>(size_t(batch * widest), 0.0f));
    float* const ys[] = {y[0].data(), y[1].data(), y[2].data()};
    gpu::cpu::CpuLoraSlots& slots = *ex.lora_slots();
    // One decode step's LoRA part, as the executor calls it.
    auto step = [&](bool grouped, const std::vector<AdapterMix>& mixes) {
      for (int l = 0; l < int(c.num_layers); ++l) {
        if (grouped) {
          slots.apply_group(l, kQkv, x.data(), ys, mixes);
          slots.apply(l, LinearModule::kO, x.data(), ys[0], mixes);
          slots.apply_group(l, kGateUp, x.data(), std::span<float* const>(ys, 2), mixes);
          slots.apply(l, LinearModule::kDown, x.data(), ys[0], mixes);
        } else {
          for (int m = 0; m < kNumLinearModules; ++m) slots.apply(l, LinearModule(m), x.data(), ys[0], mixes);
        }
      }
    };
    std::vector<double> best(variants.size(), 1e30);
    double best_shared = 1e30;
    for (int rep = 0; rep < 5 * repeats; ++rep) {  // the variants interleaved
      for (size_t i = 0; i < variants.size(); ++i) {
        gpu::cpu::lora_limit_isa(variants[i].isa);
        gpu::cpu::lora_prefetch_next_block(variants[i].prefetch_next);
        const double t0 = bench::now_s();
        step(variants[i].grouped, one_per_row);
        best[i] = std::min(best[i], bench::now_s() - t0);
      }
      gpu::cpu::lora_prefetch_next_block(true);
      gpu::cpu::lora_limit_isa(variants[0].isa);
      const double t0 = bench::now_s();
      step(true, shared);
      best_shared = std::min(best_shared, bench::now_s() - t0);
    }
    gpu::cpu::lora_limit_isa(gpu::cpu::LoraIsa::kAvx512);
    kernel_rows.push_back({batch, best[0] * 1e3, double(batch) * double(adapter_bytes) / best[0] / 1e9, 0.0,
                           best_shared * 1e3, 0.0});
    for (size_t i = 1; i < variants.size(); ++i) isa_rows.push_back({variants[i], batch, best[i] * 1e3});
  }
  bandwidth.sample(3);

  auto base_of = [&](int batch) {
    for (const auto& r : rows)
      if (r.batch == batch && r.distinct == 0) return r.tok_s;
    return 0.0;
  };
  for (auto& k : kernel_rows) {
    const double base_ms = 1e3 * double(k.batch) / base_of(k.batch);
    k.predicted = base_ms / (base_ms + k.ms);
    k.shared_predicted = base_ms / (base_ms + k.shared_ms);
  }
  double headline = 0;
  int headline_batch = 0;
  for (const auto& r : rows) {
    if (r.distinct == r.batch && (headline_batch == 0 || r.batch == 32)) {
      headline = r.tok_s / base_of(r.batch);
      headline_batch = r.batch;
    }
  }
  double lora_macs = 0, base_macs = 0;
  for (int m = 0; m < kNumLinearModules; ++m) {
    const auto [out, in] = linear_module_shape(c, LinearModule(m));
    lora_macs += double(kRank) * double(in + out);
    base_macs += double(in) * double(out);
  }
  lora_macs *= double(c.num_layers);
  base_macs = base_macs * double(c.num_layers) + double(c.hidden_size) * double(c.vocab_size);

  if (json) {
    std::printf("{\"model\": \"llama-110m\", \"dtype\": \"%s\", \"adapter_dtype\": \"%s\", \"threads\": %d, \"steps\": %d, \"rank\": %d, "
                "\"repeats\": %d, \"adapter_bytes\": %zu, \"base_weight_bytes\": %.0f, \"load_ms\": {\"disk_to_slot\": %.4g, "
                "\"disk_read_validate\": %.4g, \"host_cache_to_slot\": %.4g}, \"results\": [",
                dtype_name((*ck)->dtype()), dtype_name(slot_dtype), ex.pool().size(), steps, kRank, repeats, adapter_bytes, base_bytes, disk_ms,
                disk_read_ms, host_ms);
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      std::printf("%s{\"batch\": %d, \"distinct_adapters\": %d, \"distinct_in_step\": %zu, \"tok_s\": %.4g, "
                  "\"vs_base\": %.4g, \"lora_mb_read_per_step\": %.4g}",
                  i ? ", " : "", r.batch, r.distinct, r.distinct_in_step, r.tok_s, r.tok_s / base_of(r.batch),
                  r.lora_mb_per_step);
    }
    std::printf("], \"lora_only_one_per_row\": [");
    for (size_t i = 0; i < kernel_rows.size(); ++i)
      std::printf(
          "%s{\"batch\": %d, \"ms_per_step\": %.4g, \"adapter_gb_s\": %.4g, \"predicted_vs_base\": %.4g, "
          "\"shared_ms_per_step\": %.4g, \"shared_predicted_vs_base\": %.4g}",
          i ? ", " : "", kernel_rows[i].batch, kernel_rows[i].ms, kernel_rows[i].gb_s,
          kernel_rows[i].predicted, kernel_rows[i].shared_ms, kernel_rows[i].shared_predicted);
    std::printf("], \"lora_isa\": \"%s\", \"read_bandwidth_gb_s\": %.4g, \"lora_only_other_isas\": [",
                gpu::cpu::lora_isa_name(gpu::cpu::lora_isa()), bandwidth.best());
    for (size_t i = 0; i < isa_rows.size(); ++i)
      std::printf("%s{\"isa\": \"%s\", \"batch\": %d, \"ms_per_step\": %.4g, \"adapter_gb_s\": %.4g}",
                  i ? ", " : "", variant_name(isa_rows[i].variant).c_str(), isa_rows[i].batch, isa_rows[i].ms,
                  double(isa_rows[i].batch) * double(adapter_bytes) / isa_rows[i].ms / 1e6);
    std::printf("], \"one_adapter_per_row_vs_base\": {\"batch\": %d, \"ratio\": %.4g, \"target\": 0.8}}\n",
                headline_batch, headline);
    return 0;
  }
  std::printf("model: llama-110m (%s weights, %.0f MB read per step), %d threads, %d timed decode steps\n",
              dtype_name((*ck)->dtype()), base_bytes / 1e6, ex.pool().size(), steps);
  std::printf("adapters: rank %d on all 7 modules x %lld layers, %s in slots, %.2f MB each\n\n", kRank,
              static_cast<long long>(c.num_layers), dtype_name(slot_dtype), double(adapter_bytes) / 1e6);
  std::printf("| batch | distinct adapters | in step | decode tok/s | vs base only | adapter MB read/step |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    std::printf("| %d | %s | %zu | %.1f | %.3f | %.1f |\n", r.batch,
                r.distinct == 0 ? "0 (base)" : (r.distinct == r.batch ? (std::to_string(r.distinct) + " (one per row)").c_str() : std::to_string(r.distinct).c_str()),
                r.distinct_in_step, r.tok_s, r.tok_s / base_of(r.batch), r.lora_mb_per_step);
  }
  std::printf("\nadapter load: disk -> slot %.2f ms (read+validate+convert %.2f ms), host cache -> slot %.2f ms\n",
              disk_ms, disk_read_ms, host_ms);
  for (const auto& k : kernel_rows) {
    std::printf("LoRA part alone, one adapter per row, batch %d: %.2f ms per decode step (%.1f GB/s of adapter weights); "
                "base step %.1f ms => predicted %.1f%% of base\n",
                k.batch, k.ms, k.gb_s, 1e3 * double(k.batch) / base_of(k.batch), 100.0 * k.predicted);
  }
  for (const auto& k : kernel_rows) {
    std::printf(
        "LoRA part alone, one adapter shared by all rows, batch %d: %.2f ms per decode step => predicted "
        "%.1f%% "
        "of base\n",
        k.batch, k.shared_ms, 100.0 * k.shared_predicted);
  }
  std::printf(
      "read bandwidth: %.1f GB/s (as bench/decode measures it, in this run); the LoRA part streams %s of it "
      "(%s kernels)\n",
      bandwidth.best(),
      [&] {
        std::string v;
        for (const auto& k : kernel_rows) {
          if (!v.empty()) v += ", ";
          v += std::to_string(int(100.0 * k.gb_s / bandwidth.best() + 0.5));
          v += "% at batch ";
          v += std::to_string(k.batch);
        }
        return v;
      }()
          .c_str(),
      gpu::cpu::lora_isa_name(gpu::cpu::lora_isa()));
  for (const IsaRow& r : isa_rows)
    std::printf(
        "  the same with the %s kernels, batch %d: %.2f ms per decode step (%.1f GB/s of adapter weights)\n",
        variant_name(r.variant).c_str(), r.batch, r.ms, double(r.batch) * double(adapter_bytes) / r.ms / 1e6);
  std::printf("\none adapter per row at batch %d: %.1f%% of base-only throughput (target >= 80%%)\n",
              headline_batch, 100.0 * headline);
  std::printf(
      "bound: each distinct adapter adds %.2f MB of A/B read per step (vs %.0f MB of base weights read once "
      "for all rows) and %.2f%% extra MACs per row; with one adapter per row the adapter bytes grow with the "
      "batch while the base bytes do not.\n",
      double(adapter_bytes) / 1e6, base_bytes / 1e6, 100.0 * lora_macs / base_macs);
  return 0;
}
