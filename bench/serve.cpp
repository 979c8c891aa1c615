// serve: replays a multi-adapter workload against the real engine and
// scheduler in-process, over the CPU executor with N random rank-R LoRA
// adapters, in real time (SteadyClock), and reports throughput, TTFT and
// inter-token latency percentiles, SLO attainment, Jain's fairness across
// adapters, swaps/s and slot-load time.
//
//   serve --model DIR [--adapters N] [--rank R] [--policy timeslice|fcfs|one-at-a-time]
//         [--slots N] [--quantum-ms Q] [--rate REQ_PER_S] [--requests N] [--zipf A]
//         [--prompt-len MEAN] [--output-len MEAN] [--trace FILE] [--seed S] [--json]
//         [--threads T] [--max-running R] [--max-tokens-per-step T] [--pause]
//         [--slo-ttft-ms X] [--slo-itl-ms Y]
//
// Workload: Poisson arrivals at --rate (0 = all at once), adapter k of N
// drawn with probability ∝ 1/(k+1)^zipf, prompt and output lengths uniform
// in [mean/2, 3·mean/2] (clamped to the model's context), random prompt ids.
// --trace replays JSONL lines {"arrival_ms","adapter","prompt_len","output_len"}
// instead ("adapter": an index into the N adapters, a name "adapter-K", or
// "" / -1 for the base model). Generation ignores eos (fixed lengths).
//
// SLO: a request meets it when TTFT <= --slo-ttft-ms and its mean ITL <=
// --slo-itl-ms (failed requests miss it). Fairness: Jain's index over
// adapters of each adapter's mean per-request token rate (output tokens /
// end-to-end seconds); 1 = equal service.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "nodes/cli_app.h"
#include "runtime/checkpoint.h"
#include "runtime/engine.h"
#include "runtime/model_factory.h"

namespace {

using namespace myriad;

struct Args {
  std::string model;
  int adapters = 8;
  int rank = 8;
  std::string policy = "timeslice";
  int slots = 4;
  double quantum_ms = 50.0;
  double rate = 20.0;
  int requests = 200;
  double zipf = 1.0;
  int prompt_len = 64;
  int output_len = 32;
  std::string trace;
  uint64_t seed = 0;
  bool json = false;
  int threads = 0;
  int max_running = 16;
  int max_tokens_per_step = 256;
  bool pause = false;
  double slo_ttft_ms = 2000.0;
  double slo_itl_ms = 200.0;
};

// Declares every flag on `app`, bound to `a` (whose fields hold the defaults).
void add_flags(CLI::App& app, Args& a) {
  using cli::at_least;
  const CLI::Validator non_negative = at_least(0);
  app.add_option("--model", a.model, "Hugging Face model folder")->option_text("DIR")->required();
  app.add_option("--adapters", a.adapters, "random adapters N (default 8)")->option_text("N")->check(at_least(0));
  app.add_option("--rank", a.rank, "their rank, on all seven modules (default 8)")->option_text("R")->check(at_least(1));
  app.add_option("--policy", a.policy, "scheduler policy: timeslice | fcfs | one-at-a-time (default timeslice)")
      ->option_text("P");
  app.add_option("--slots", a.slots, "device adapter slots (default 4)")->option_text("N")->check(at_least(1));
  app.add_option("--quantum-ms", a.quantum_ms, "time slice of an adapter in its slot (default 50)")
      ->option_text("Q")
      ->check(non_negative);
  app.add_option("--rate", a.rate, "Poisson arrivals, requests per second; 0 = all at once (default 20)")
      ->option_text("REQ_PER_S")
      ->check(non_negative);
  app.add_option("--requests", a.requests, "requests (default 200)")->option_text("N")->check(at_least(1));
  app.add_option("--zipf", a.zipf, "adapter k drawn with probability ∝ 1/(k+1)^A (default 1.0)")
      ->option_text("A")
      ->check(non_negative);
  app.add_option("--prompt-len", a.prompt_len, "mean prompt length, uniform in [mean/2, 3·mean/2] (default 64)")
      ->option_text("MEAN")
      ->check(at_least(1));
  app.add_option("--output-len", a.output_len, "mean output length, likewise (default 32)")
      ->option_text("MEAN")
      ->check(at_least(1));
  app.add_option("--trace", a.trace, "replay JSONL {\"arrival_ms\",\"adapter\",\"prompt_len\",\"output_len\"} instead")
      ->option_text("FILE");
  app.add_option("--seed", a.seed, "workload, prompt and adapter-weight seed (default 0)")
      ->option_text("S")
      ->check(non_negative);
  app.add_flag("--json", a.json, "print one JSON object instead of the lines");
  app.add_option("--threads", a.threads, "executor threads (default: all cores)")->option_text("T")->check(at_least(0));
  app.add_option("--max-running", a.max_running, "sequences in the running batch at most (default 16)")
      ->option_text("R")
      ->check(at_least(1));
  app.add_option("--max-tokens-per-step", a.max_tokens_per_step, "tokens in one step at most (default 256)")
      ->option_text("T")
      ->check(at_least(1));
  app.add_flag("--pause", a.pause, "pause a swapped-out adapter's sequences (pause_on_swap_out)");
  app.add_option("--slo-ttft-ms", a.slo_ttft_ms, "SLO: time to first token at most (default 2000)")
      ->option_text("X")
      ->check(non_negative);
  app.add_option("--slo-itl-ms", a.slo_itl_ms, "SLO: mean inter-token latency at most (default 200)")
      ->option_text("Y")
      ->check(non_negative);
}

// A random rank-R adapter on every linear module of every layer:
// A, B ~ N(0, 0.02^2), scale 2 (alpha = 2R), deterministic in (seed, k).
// Adapter k of the run: random, every module at `rank`, scale 2 (as before
// runtime's random_lora existed; the values do not change the timing).
std::shared_ptr<const LoraWeights> random_adapter(const ModelConfig& c, int rank, uint64_t seed, int k) {
  return random_lora(c, rank, 2.0f * float(rank), seed * 1000003ull + uint64_t(k) + 1, "adapter-" + std::to_string(k));
}

struct Arrival {
  double arrival_ms = 0;
  int adapter = -1;  // -1 = base
  int prompt_len = 1;
  int output_len = 1;
};

Result<std::vector<Arrival>> read_trace(const std::string& path, int num_adapters) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kIo, "cannot open trace " + path);
  std::vector<Arrival> out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(lineno);
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return make_error(ErrorCode::kBadFile, where + ": not a JSON object");
    Arrival a;
    if (!j.contains("arrival_ms") || !j["arrival_ms"].is_number() || !j.contains("prompt_len") ||
        !j["prompt_len"].is_number_integer() || !j.contains("output_len") || !j["output_len"].is_number_integer())
      return make_error(ErrorCode::kBadFile, where + ": needs numeric arrival_ms, prompt_len, output_len");
    a.arrival_ms = j["arrival_ms"].get<double>();
    a.prompt_len = j["prompt_len"].get<int>();
    a.output_len = j["output_len"].get<int>();
    if (a.prompt_len < 1 || a.output_len < 1 || !(a.arrival_ms >= 0))
      return make_error(ErrorCode::kBadFile, where + ": arrival_ms >= 0, prompt_len >= 1, output_len >= 1");
    if (j.contains("adapter")) {
      const auto& ad = j["adapter"];
      if (ad.is_number_integer()) {
        a.adapter = ad.get<int>() < 0 || num_adapters == 0 ? -1 : ad.get<int>() % num_adapters;
      } else if (ad.is_string()) {
        const std::string s = ad.get<std::string>();
        if (s.empty()) {
          a.adapter = -1;
        } else if (s.rfind("adapter-", 0) == 0 && num_adapters > 0) {
          a.adapter = std::atoi(s.c_str() + 8) % num_adapters;
        } else {
          return make_error(ErrorCode::kBadFile, where + ": adapter '" + s + "' is not adapter-K");
        }
      } else {
        return make_error(ErrorCode::kBadFile, where + ": adapter must be an index or a name");
      }
    }
    out.push_back(a);
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const Arrival& x, const Arrival& y) { return x.arrival_ms < y.arrival_ms; });
  return out;
}

std::vector<Arrival> synth_workload(const Args& a, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> wts;
  for (int k = 0; k < a.adapters; ++k) wts.push_back(1.0 / std::pow(double(k + 1), a.zipf));
  std::discrete_distribution<int> pick(wts.begin(), wts.end());
  std::exponential_distribution<double> gap(a.rate > 0 ? a.rate / 1000.0 : 1.0);
  auto around = [&](int mean) {
    const int lo = std::max(1, mean / 2), hi = std::max(lo, mean + mean / 2);
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<Arrival> out;
  double t = 0;
  for (int i = 0; i < a.requests; ++i) {
    Arrival r;
    if (a.rate > 0) t += gap(rng);
    r.arrival_ms = t;
    r.adapter = a.adapters > 0 ? pick(rng) : -1;
    r.prompt_len = around(a.prompt_len);
    r.output_len = around(a.output_len);
    out.push_back(r);
  }
  return out;
}

struct PerRequest {
  int adapter = -1;
  double submit_ms = 0, first_ms = -1, last_ms = 0, end_ms = 0;
  uint32_t tokens = 0;
  bool failed = false, done = false;
};

class ServeSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    auto it = by_id.find(e.id);
    if (it == by_id.end()) return;
    PerRequest& r = reqs[it->second];
    if (e.kind == EventKind::kToken) {
      if (r.first_ms < 0) r.first_ms = e.time_ms;
      r.last_ms = e.time_ms;
      ++r.tokens;
    } else {
      r.done = true;
      r.end_ms = e.time_ms;
      r.failed = e.kind == EventKind::kFailed;
      if (r.failed && first_error.empty()) first_error = e.error.to_string();
    }
  }
  std::vector<PerRequest> reqs;
  std::map<RequestId, size_t> by_id;
  std::string first_error;
};

}  // namespace

int main(int argc, char** argv) {
  Args args;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("A multi-adapter workload through the real scheduler, engine and CPU executor, in real time.",
               "serve");
  cli::set_conventions(app);
  add_flags(app, args);
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  auto policy = parse_scheduler_policy(args.policy);
  if (!policy.ok()) {
    std::fprintf(stderr, "serve: --policy: %s\n", policy.error().message.c_str());
    return 2;
  }
  auto ck = Checkpoint::load(args.model);
  if (!ck.ok()) {
    std::fprintf(stderr, "serve: %s\n", ck.error().to_string().c_str());
    return 1;
  }
  const ModelConfig& mc = ck.value()->config();

  std::vector<Arrival> work;
  if (!args.trace.empty()) {
    auto t = read_trace(args.trace, args.adapters);
    if (!t.ok()) {
      std::fprintf(stderr, "serve: %s\n", t.error().to_string().c_str());
      return 1;
    }
    work = std::move(t.value());
  } else {
    work = synth_workload(args, args.seed);
  }
  // Fit every request in the model's context.
  const int ctx = int(std::max<int64_t>(2, mc.max_position_embeddings));
  int longest = 1;
  for (Arrival& a : work) {
    a.prompt_len = std::min(a.prompt_len, ctx - 1);
    a.output_len = std::min(a.output_len, ctx - a.prompt_len);
    longest = std::max(longest, a.prompt_len + a.output_len);
  }

  SchedulerConfig sc;
  sc.policy = policy.value();
  sc.num_slots = std::max(1, args.slots);
  sc.quantum_ms = args.quantum_ms;
  sc.max_running_seqs = args.max_running;
  sc.max_tokens_per_step = std::max(args.max_tokens_per_step, args.max_running);
  sc.kv_block_size = 16;
  sc.num_kv_blocks = args.max_running * KvBlockAllocator::blocks_for(longest, 16);
  sc.max_seq_len = ctx;
  sc.pause_on_swap_out = args.pause;

  gpu::cpu::CpuExecutorOptions eo;
  eo.kv_block_size = sc.kv_block_size;
  eo.kv_num_blocks = sc.num_kv_blocks;
  eo.threads = args.threads;
  eo.num_adapter_slots = sc.num_slots;
  eo.max_adapter_rank = args.rank;
  auto ex = gpu::cpu::CpuExecutor::create(ck.value(), eo);
  if (!ex.ok()) {
    std::fprintf(stderr, "serve: %s\n", ex.error().to_string().c_str());
    return 1;
  }
  StaticAdapterSource source;
  for (int k = 0; k < args.adapters; ++k) {
    auto w = random_adapter(mc, args.rank, args.seed, k);
    source.put(AdapterId{"bench", w->name, 1}, w);
  }
  SteadyClock clock;
  ServeSink sink;
  auto en = Engine::create(sc, *ex.value(), source, clock, sink);
  if (!en.ok()) {
    std::fprintf(stderr, "serve: %s\n", en.error().to_string().c_str());
    return 1;
  }
  Engine& engine = *en.value();

  std::mt19937_64 rng(args.seed ^ 0x5eed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(mc.vocab_size) - 1);
  sink.reqs.resize(work.size());
  size_t next = 0, rejected = 0;
  const double start = clock.now_ms();
  while (next < work.size() || engine.has_work()) {
    const double now = clock.now_ms() - start;
    while (next < work.size() && work[next].arrival_ms <= now) {
      const Arrival& a = work[next];
      Request r;
      r.id = RequestId(next + 1);
      if (a.adapter >= 0) r.adapters = {AdapterUse{AdapterId{"bench", "adapter-" + std::to_string(a.adapter), 1}}};
      r.prompt.resize(size_t(a.prompt_len));
      for (int32_t& t : r.prompt) t = tok(rng);
      r.max_tokens = uint32_t(a.output_len);
      r.sampling.temperature = 0.0f;
      PerRequest& pr = sink.reqs[next];
      pr.adapter = a.adapter;
      pr.submit_ms = clock.now_ms();
      auto id = engine.submit(std::move(r));
      if (id.ok()) {
        sink.by_id[id.value()] = next;
      } else {
        ++rejected;
        pr.failed = pr.done = true;
        if (sink.first_error.empty()) sink.first_error = id.error().to_string();
      }
      ++next;
    }
    if (engine.has_work()) {
      (void)engine.step();
      // Nothing ran (a load copying in the background): give it the CPU.
      if (engine.last_schedule().plan.rows.empty()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    } else if (next < work.size()) {
      const double wait = work[next].arrival_ms - (clock.now_ms() - start);
      if (wait > 0) std::this_thread::sleep_for(std::chrono::microseconds(int64_t(std::min(wait, 5.0) * 1000)));
    }
  }
  const double wall_s = (clock.now_ms() - start) / 1000.0;

  // Aggregates.
  const EngineMetrics& m = engine.metrics();
  uint64_t tokens = 0, completed = 0, failed = 0, slo_ok = 0;
  std::map<int, std::pair<double, int>> rate_by_adapter;  // sum of token rates, count
  for (const PerRequest& r : sink.reqs) {
    tokens += r.tokens;
    if (r.failed || !r.done) {
      ++failed;
      continue;
    }
    ++completed;
    const double t = r.first_ms - r.submit_ms;
    const double itl = r.tokens > 1 ? (r.last_ms - r.first_ms) / (r.tokens - 1) : 0.0;
    if (t <= args.slo_ttft_ms && itl <= args.slo_itl_ms) ++slo_ok;
    const double e2e_s = std::max(1e-9, (r.end_ms - r.submit_ms) / 1000.0);
    auto& [sum, n] = rate_by_adapter[r.adapter];
    sum += r.tokens / e2e_s;
    ++n;
  }
  double js = 0, js2 = 0;
  for (const auto& [k, v] : rate_by_adapter) {
    const double x = v.first / v.second;
    js += x;
    js2 += x * x;
  }
  const double jain = rate_by_adapter.empty() ? 1.0 : js * js / (double(rate_by_adapter.size()) * js2);
  const double throughput = tokens / std::max(wall_s, 1e-9);
  const double slo = sink.reqs.empty() ? 0.0 : double(slo_ok) / double(sink.reqs.size());

  if (args.json) {
    nlohmann::json j;
    j["model"] = args.model;
    j["policy"] = args.policy;
    j["adapters"] = args.adapters;
    j["rank"] = args.rank;
    j["slots"] = sc.num_slots;
    j["quantum_ms"] = sc.quantum_ms;
    j["rate_req_s"] = args.rate;
    j["requests"] = sink.reqs.size();
    j["zipf"] = args.zipf;
    j["seed"] = args.seed;
    j["trace"] = args.trace;
    j["wall_s"] = wall_s;
    j["output_tokens"] = tokens;
    j["throughput_tok_s"] = throughput;
    j["ttft_ms_p50"] = m.overall.ttft_ms.quantile_ms(0.5);
    j["ttft_ms_p99"] = m.overall.ttft_ms.quantile_ms(0.99);
    j["itl_ms_p50"] = m.overall.itl_ms.quantile_ms(0.5);
    j["itl_ms_p99"] = m.overall.itl_ms.quantile_ms(0.99);
    j["queue_ms_p50"] = m.overall.queue_ms.quantile_ms(0.5);
    j["queue_ms_p99"] = m.overall.queue_ms.quantile_ms(0.99);
    j["completed"] = completed;
    j["failed"] = failed;
    j["rejected"] = rejected;
    j["slo_ttft_ms"] = args.slo_ttft_ms;
    j["slo_itl_ms"] = args.slo_itl_ms;
    j["slo_attainment"] = slo;
    j["jain_fairness"] = jain;
    j["swaps"] = m.swaps;
    j["swaps_per_s"] = m.swaps / std::max(wall_s, 1e-9);
    j["slot_loads"] = m.slot_loads;
    j["slot_load_ms_p50"] = m.slot_load_ms.quantile_ms(0.5);
    j["slot_load_ms_p99"] = m.slot_load_ms.quantile_ms(0.99);
    j["preemptions"] = m.preemptions;
    j["batch_occupancy"] = m.batch_occupancy();
    j["steps"] = m.steps;
    if (!sink.first_error.empty()) j["first_error"] = sink.first_error;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("serve: %s, %zu requests, %d adapters rank %d, policy %s, %d slots, quantum %.0f ms, rate %.1f/s\n",
                args.model.c_str(), sink.reqs.size(), args.adapters, args.rank, args.policy.c_str(), sc.num_slots,
                sc.quantum_ms, args.rate);
    std::printf("  %-26s %12.1f\n", "throughput (tok/s)", throughput);
    std::printf("  %-26s %12.1f %12.1f\n", "TTFT ms p50 / p99", m.overall.ttft_ms.quantile_ms(0.5),
                m.overall.ttft_ms.quantile_ms(0.99));
    std::printf("  %-26s %12.2f %12.2f\n", "ITL ms p50 / p99", m.overall.itl_ms.quantile_ms(0.5),
                m.overall.itl_ms.quantile_ms(0.99));
    std::printf("  %-26s %12.1f %12.1f\n", "queue ms p50 / p99", m.overall.queue_ms.quantile_ms(0.5),
                m.overall.queue_ms.quantile_ms(0.99));
    std::printf("  %-26s %12llu %12llu\n", "completed / failed", (unsigned long long)completed,
                (unsigned long long)failed);
    std::printf("  %-26s %11.1f%%\n", "SLO attainment", 100.0 * slo);
    std::printf("  %-26s %12.3f\n", "Jain fairness (adapters)", jain);
    std::printf("  %-26s %12llu %12.2f\n", "swaps / per s", (unsigned long long)m.swaps,
                m.swaps / std::max(wall_s, 1e-9));
    std::printf("  %-26s %12llu %12.2f\n", "slot loads / p50 ms", (unsigned long long)m.slot_loads,
                m.slot_load_ms.quantile_ms(0.5));
    std::printf("  %-26s %12.2f\n", "batch occupancy", m.batch_occupancy());
    if (!sink.first_error.empty()) std::printf("  first error: %s\n", sink.first_error.c_str());
  }
  return failed == 0 ? 0 : 1;
}
