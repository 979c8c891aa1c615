// sim_calibrate: fits the simulator's cost model (sim/cost_model.h) to the
// real executor on this machine (--device cpu, or cuda: an H100/H200), and
// writes it as JSON for myriad-sim --cost-model (sim/cost_models/ keeps the
// profiles; the built-in default is the CPU one). It needs only sim's cost
// model (no FlatBuffers), so the GPU-only build makes it too
// (scripts/gpu-check --sim-calibrate SHAPE runs it there).
//
// Over a grid of synthetic steps (decode batches of 1..32 rows at contexts
// 64..1024, prefill chunks of 16..256 tokens, mixes of both, with 0, 1 or 4
// distinct adapters in the step; on CUDA also 64-row decodes and prefills of
// 512 and 1024 tokens) it times Executor::step (median of --reps
// after a warm-up) and fits
//   step_ms = base + prefill_token·P + decode_row·D + context_ktoken·C/1000 + prefill_pair_mtoken·Q/10^6
//             + adapter·A + lora_token·L·rank/16   (Q: query-key pairs of prefill rows)
// by least squares with every coefficient kept >= 0; and the same model over
// steps taken inside the real engine loop (requests kept in flight at
// concurrency 1..16), which is what the simulator replays: both fits are
// printed with their errors on both sets, and --fit picks the one written
// (default: the grid's; on this machine it predicts the engine loop's steps
// as well as their own fit does). Slot loads (host ->
// slot) are timed for ranks 4..64 and fitted as base + per_rank·rank; fetches
// (a PEFT folder read from disk into host memory) likewise. It prints each
// grid point beside the fit (and the fit's worst relative error), then the
// model as JSON (also to --out).
//
// usage: sim_calibrate --model DIR [--device cpu|cuda] [--rank R] [--threads T] [--reps N] [--engine-steps N]
//                      [--fit engine|grid] [--out FILE] [--name NAME]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "gpu/executor_factory.h"
#include "nodes/cli_app.h"
#include "runtime/checkpoint.h"
#include "runtime/engine.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"
#include "sim/cost_model.h"

using namespace myriad;

namespace {

struct Shape {
  int prefill = 0;      // tokens of one prefill row at position 0 (0: none)
  int decode_rows = 0;  // rows of one new token each
  int ctx = 0;          // the decode rows' position
  int adapters = 0;     // distinct adapter slots, rows round-robin over them (0: base only)
};

// Rows use consecutive KV blocks (timing only: the cache holds whatever it holds).
void build(const Shape& s, int32_t block_size, StepPlan& plan) {
  plan.clear();
  int32_t next_block = 0;
  auto add_row = [&](SeqId seq, int start, int n, int slot) {
    SeqRow r;
    r.seq = seq;
    r.token_offset = uint32_t(plan.tokens.size());
    r.num_tokens = uint32_t(n);
    r.start_pos = start;
    for (int i = 0; i < n; ++i) plan.tokens.push_back(1 + (start + i) % 200);
    const int32_t blocks = (start + n + block_size - 1) / block_size;
    r.block_offset = uint32_t(plan.block_ids.size());
    r.num_blocks = uint32_t(blocks);
    for (int32_t b = 0; b < blocks; ++b) plan.block_ids.push_back(next_block++);
    r.adapters = AdapterMix::single(slot);
    r.sample = true;
    r.sampling.temperature = 0.0f;
    r.output_index = start > 0 ? 1 : 0;
    plan.rows.push_back(r);
  };
  for (int i = 0; i < s.decode_rows; ++i) add_row(SeqId(i + 1), s.ctx, 1, s.adapters > 0 ? i % s.adapters : -1);
  if (s.prefill > 0) add_row(SeqId(1000), 0, s.prefill, s.adapters > 0 ? s.decode_rows % s.adapters : -1);
}

// The model's features of a plan (sim::step_features), every adapter at `rank`.
std::vector<double> features(const StepPlan& plan, int rank) {
  const auto f = sim::step_features(plan, [rank](int32_t) { return rank; });
  return {f.begin(), f.end()};
}

// Least squares with every coefficient >= 0: solve, pin the most negative
// coefficient to 0, solve again over the rest (small problems only).
std::vector<double> nonnegative_fit(const std::vector<std::vector<double>>& x, const std::vector<double>& y) {
  const size_t k = x.front().size();
  std::vector<bool> free(k, true);
  std::vector<double> beta(k, 0.0);
  for (size_t round = 0; round < k; ++round) {
    std::vector<size_t> idx;
    for (size_t j = 0; j < k; ++j)
      if (free[j]) idx.push_back(j);
    const size_t m = idx.size();
    // Normal equations (X'X) b = X'y, with a touch of ridge for conditioning.
    std::vector<std::vector<double>> a(m, std::vector<double>(m + 1, 0.0));
    for (size_t i = 0; i < x.size(); ++i)
      for (size_t p = 0; p < m; ++p) {
        for (size_t q = 0; q < m; ++q) a[p][q] += x[i][idx[p]] * x[i][idx[q]];
        a[p][m] += x[i][idx[p]] * y[i];
      }
    for (size_t p = 0; p < m; ++p) a[p][p] += 1e-9;
    for (size_t p = 0; p < m; ++p) {  // Gauss-Jordan with partial pivoting
      size_t piv = p;
      for (size_t r = p + 1; r < m; ++r)
        if (std::fabs(a[r][p]) > std::fabs(a[piv][p])) piv = r;
      std::swap(a[p], a[piv]);
      for (size_t r = 0; r < m; ++r) {
        if (r == p || a[p][p] == 0) continue;
        const double f = a[r][p] / a[p][p];
        for (size_t c = p; c <= m; ++c) a[r][c] -= f * a[p][c];
      }
    }
    std::fill(beta.begin(), beta.end(), 0.0);
    size_t worst = k;
    for (size_t p = 0; p < m; ++p) {
      beta[idx[p]] = a[p][p] != 0 ? a[p][m] / a[p][p] : 0.0;
      if (beta[idx[p]] < 0 && (worst == k || beta[idx[p]] < beta[worst])) worst = idx[p];
    }
    if (worst == k) return beta;
    free[worst] = false;
  }
  for (double& b : beta) b = std::max(b, 0.0);
  return beta;
}

constexpr int32_t kBlockSize = 16;

// The executor every measurement uses: 4,096 KV blocks, adapters up to rank
// 64; on CUDA with the graphs a node uses.
Result<std::unique_ptr<Executor>> make_executor(const std::string& device, std::shared_ptr<const Checkpoint> ck,
                                                int threads, int32_t slots) {
  gpu::ExecutorSpec spec;
  spec.device = device;
  spec.kv_num_blocks = 4096;
  spec.kv_block_size = kBlockSize;
  spec.threads = threads;
  spec.num_adapter_slots = slots;
  spec.max_adapter_rank = 64;
  spec.max_tokens_per_step = 2048;
  spec.max_rows = 128;
  return gpu::make_executor(spec, std::move(ck));
}

// Steps taken inside the real engine loop: `concurrency` requests kept in
// flight (prompts 16..256 tokens, outputs 8..64, over 4 adapters of `rank`,
// one in five on the base model), each step's plan features and the time
// the executor took. Runs until `steps` steps have run rows.
void engine_loop_samples(const std::string& device, std::shared_ptr<const Checkpoint> ck, int threads, int rank,
                         int concurrency, int steps, std::vector<std::vector<double>>& xs, std::vector<double>& ys) {
  auto ex = make_executor(device, ck, threads, 4);
  if (!ex) return;
  StaticAdapterSource source;
  for (int a = 0; a < 4; ++a)
    source.put(AdapterId{"calib", "a" + std::to_string(a), 1},
               random_lora(ck->config(), rank, 2.0f * float(rank), uint64_t(200 + a), "a" + std::to_string(a)));
  struct Counter final : EventSink {
    void on_event(const RequestEvent& e) override { finished += e.is_final(); }
    int finished = 0;
  } sink;
  SteadyClock clock;
  SchedulerConfig sc;
  sc.num_slots = 4;
  sc.max_running_seqs = 16;
  sc.max_tokens_per_step = 256;
  sc.num_kv_blocks = 4096;
  auto en = Engine::create(sc, *ex.value(), source, clock, sink);
  if (!en) return;
  Engine& engine = *en.value();
  std::mt19937_64 rng(uint64_t(concurrency) * 7919);
  RequestId next = 1;
  int in_flight = 0, taken = 0;
  StepResult result;
  while (taken < steps) {
    for (; in_flight < concurrency; ++in_flight) {
      Request r;
      r.id = next++;
      const int a = int(rng() % 5);
      if (a < 4) r.adapters = {AdapterUse{AdapterId{"calib", "a" + std::to_string(a), 1}, 1.0f}};
      r.prompt.assign(16 + rng() % 241, 5);
      r.max_tokens = uint32_t(8 + rng() % 57);
      if (!engine.submit(std::move(r)).ok()) return;
    }
    const int finished_before = sink.finished;
    const StepPlan& plan = engine.plan_step(clock.now_ms());
    const auto t0 = std::chrono::steady_clock::now();
    const Status st = ex.value()->step(plan, result);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!plan.rows.empty()) {
      xs.push_back(features(plan, rank));
      ys.push_back(ms);
      ++taken;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // a slot load copies in the background
    }
    (void)engine.complete_step(st, result, clock.now_ms());
    in_flight -= sink.finished - finished_before;
  }
}

template <typename F>
double median_ms(int reps, F&& run) {
  run();  // warm-up
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// base + per_rank·rank over (rank, ms) pairs (ordinary least squares, clamped >= 0).
std::pair<double, double> line_fit(const std::vector<std::pair<double, double>>& pts) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto [x, y] : pts) {
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  const double n = double(pts.size());
  const double slope = std::max(0.0, (n * sxy - sx * sy) / std::max(n * sxx - sx * sx, 1e-12));
  return {std::max(0.0, (sy - slope * sx) / n), slope};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fits the simulator's cost model to the executor of this machine's CPU or CUDA device.",
               "sim_calibrate"};
  cli::set_conventions(app);
  std::string model, out, name, device = "cpu";
  int rank = 16, threads = 0, reps = 5;
  LogLevel level = LogLevel::kWarn;
  cli::add_log_level(app, level);
  app.add_option("--model", model, "Hugging Face model folder")->required()->option_text("DIR");
  app.add_option("--device", device, "cpu (default) or cuda")->option_text("D")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--rank", rank, "the adapters' rank in the step grid (default 16)")->option_text("R");
  app.add_option("--threads", threads, "executor threads (default: all cores)")->option_text("T");
  app.add_option("--reps", reps, "timed runs per point, the median kept (default 5)")->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--out", out, "write the model's JSON here too")->option_text("FILE");
  app.add_option("--name", name, "the profile's name (default <device>-<model folder>)")->option_text("NAME");
  std::string fit_kind = "grid";
  int engine_steps = 200;
  app.add_option("--fit", fit_kind, "which fit to write: grid (default) or engine (steps inside the engine loop)")
      ->option_text("F")
      ->check(CLI::IsMember({"engine", "grid"}));
  app.add_option("--engine-steps", engine_steps, "engine-loop steps per concurrency 1, 2, 4, 8, 16 (default 200)")
      ->option_text("N");
  if (auto code = cli::parse(app, argc, argv, level)) return *code;
  auto fail = [](const Error& e) {
    std::fprintf(stderr, "sim_calibrate: %s\n", e.to_string().c_str());
    return 1;
  };
  auto ck = Checkpoint::load(model);
  if (!ck) return fail(ck.error());
  const ModelConfig& mc = ck.value()->config();
  auto ex = make_executor(device, ck.value(), threads, 8);
  if (!ex) return fail(ex.error());
  Executor& exec = *ex.value();

  // Slot loads: ranks 4..64, each into slot 7, waited for.
  std::vector<std::pair<double, double>> load_pts, fetch_pts;
  const std::string tmp = (std::filesystem::temp_directory_path() / ("sim_calibrate." + std::to_string(getpid()))).string();
  for (int r : {4, 8, 16, 32, 64}) {
    auto w = random_lora(mc, r, 2.0f * float(r), uint64_t(r), "calib-" + std::to_string(r));
    const double ms = median_ms(reps, [&] {
      std::promise<void> done;
      if (exec.begin_load_adapter(7, w, [&](Status) { done.set_value(); }).ok()) done.get_future().wait();
      exec.unload_adapter(7);
    });
    load_pts.push_back({double(r), ms});
    const std::string dir = tmp + "/r" + std::to_string(r);
    std::filesystem::create_directories(dir);
    if (Status st = save_peft_adapter(dir, *w, model); !st.ok()) return fail(st.error());
    fetch_pts.push_back({double(r), median_ms(reps, [&] { (void)load_peft_adapter(dir, mc); })});
  }
  std::filesystem::remove_all(tmp);
  // The step grid, with `rank` adapters resident in slots 0..3.
  for (int s = 0; s < 4; ++s) {
    auto w = random_lora(mc, rank, 2.0f * float(rank), uint64_t(100 + s), "grid-" + std::to_string(s));
    std::promise<void> done;
    if (Status st = exec.begin_load_adapter(s, w, [&](Status) { done.set_value(); }); !st.ok()) return fail(st.error());
    done.get_future().wait();
  }
  std::vector<Shape> grid;
  for (int a : {0, 1, 4}) {
    for (int b : {1, 4, 8, 16, 32})
      for (int ctx : {64, 256, 1024}) grid.push_back({0, b, ctx, a});
    for (int p : {16, 64, 128, 256}) grid.push_back({p, 0, 0, a});
    for (int b : {4, 16}) grid.push_back({128, b, 256, a});
    if (device == "cuda") {  // a GPU's steps stay flat far past a CPU's: where they bend
      for (int ctx : {256, 1024}) grid.push_back({0, 64, ctx, a});
      for (int p : {512, 1024}) grid.push_back({p, 0, 0, a});
      grid.push_back({512, 32, 512, a});
    }
  }
  StepPlan plan;
  StepResult result;
  std::vector<std::vector<double>> xs;
  std::vector<double> ys;
  for (const Shape& s : grid) {
    build(s, kBlockSize, plan);
    ys.push_back(median_ms(reps, [&] { (void)exec.step(plan, result); }));
    xs.push_back(features(plan, rank));
  }
  // The same fit over steps inside the engine loop: what the simulator
  // replays. Both are printed; --fit chooses which one is written.
  std::vector<std::vector<double>> lx;
  std::vector<double> ly;
  for (int c : {1, 2, 4, 8, 16}) engine_loop_samples(device, ck.value(), threads, rank, c, engine_steps, lx, ly);
  if (ly.empty()) return fail(make_error(ErrorCode::kInternal, "the engine loop ran no step"));
  const std::vector<double> grid_beta = nonnegative_fit(xs, ys);
  const std::vector<double> loop_beta = nonnegative_fit(lx, ly);
  auto mean_abs_error = [](const std::vector<double>& b, const std::vector<std::vector<double>>& x,
                           const std::vector<double>& y) {
    double sum = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      double f = 0;
      for (size_t j = 0; j < b.size(); ++j) f += b[j] * x[i][j];
      sum += std::fabs(f - y[i]) / y[i];
    }
    return 100 * sum / double(y.size());
  };
  std::printf("engine loop: %zu steps; mean |error| on them: loop fit %.1f%%, grid fit %.1f%%; on the grid: loop fit "
              "%.1f%%, grid fit %.1f%%\n",
              ly.size(), mean_abs_error(loop_beta, lx, ly), mean_abs_error(grid_beta, lx, ly),
              mean_abs_error(loop_beta, xs, ys), mean_abs_error(grid_beta, xs, ys));
  const std::vector<double>& beta = fit_kind == "grid" ? grid_beta : loop_beta;
  sim::CostModel m;
  m.name = name.empty() ? device + "-" + std::filesystem::path(model).filename().string() : name;
  m.base_ms = beta[0];
  m.prefill_token_ms = beta[1];
  m.decode_row_ms = beta[2];
  m.context_ktoken_ms = beta[3];
  m.prefill_pair_mtoken_ms = beta[4];
  m.adapter_ms = beta[5];
  m.lora_token_ms = beta[6];
  std::tie(m.slot_load_base_ms, m.slot_load_per_rank_ms) = line_fit(load_pts);
  std::tie(m.fetch_base_ms, m.fetch_per_rank_ms) = line_fit(fetch_pts);

  std::printf("%-8s %-6s %-6s %-8s %10s %10s %8s\n", "prefill", "decode", "ctx", "adapters", "step ms", "model ms",
              "error");
  double worst = 0, sum_sq = 0, sum_y = 0, sum_yy = 0;
  for (size_t i = 0; i < grid.size(); ++i) {
    double fit = 0;
    for (size_t j = 0; j < grid_beta.size(); ++j) fit += grid_beta[j] * xs[i][j];
    const double err = (fit - ys[i]) / ys[i];
    worst = std::max(worst, std::fabs(err));
    sum_sq += (fit - ys[i]) * (fit - ys[i]);
    sum_y += ys[i];
    sum_yy += ys[i] * ys[i];
    std::printf("%-8d %-6d %-6d %-8d %10.3f %10.3f %+7.1f%%\n", grid[i].prefill, grid[i].decode_rows, grid[i].ctx,
                grid[i].adapters, ys[i], fit, 100 * err);
  }
  const double n = double(grid.size());
  std::printf("grid fit over %zu steps: R^2 %.4f, worst relative error %.1f%%\n", grid.size(),
              1.0 - sum_sq / (sum_yy - sum_y * sum_y / n), 100 * worst);
  for (auto [r, ms] : load_pts) std::printf("slot load rank %-3.0f %8.3f ms\n", r, ms);
  for (auto [r, ms] : fetch_pts) std::printf("fetch     rank %-3.0f %8.3f ms\n", r, ms);
  const std::string json = sim::to_json(m);
  std::printf("%s", json.c_str());
  if (!out.empty()) {
    std::ofstream f(out);
    f << json;
    if (!f) return fail(make_error(ErrorCode::kIo, "cannot write " + out));
  }
  return 0;
}
