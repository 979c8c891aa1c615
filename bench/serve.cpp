// serve: replays a multi-adapter workload against the real engine and
// scheduler in-process, over the CPU or CUDA executor with N random rank-R
// LoRA adapters, in real time (SteadyClock), and reports throughput, TTFT
// (also split by cold and warm adapters) and inter-token latency
// percentiles, SLO attainment, Jain's fairness across adapters, swaps/s and
// slot-load time.
//
//   serve (--model DIR | --shape NAME) [--device cpu|cuda] [--adapters N] [--rank R]
//         [--modules q_proj,...] [--host-cache-mb MB] [--lazy-adapters]
//         [--policy timeslice|fcfs|one-at-a-time]
//         [--slots N] [--quantum-ms Q] [--rate REQ_PER_S] [--requests N] [--zipf A]
//         [--prompt-len MEAN] [--output-len MEAN] [--prompt-range LO:HI] [--output-range LO:HI]
//         [--trace FILE] [--seed S] [--json]
//         [--threads T] [--max-running R] [--max-tokens-per-step T] [--pause]
//         [--slo-ttft-ms X] [--slo-itl-ms Y]
//
// Workload: Poisson arrivals at --rate (0 = all at once), adapter k of N
// drawn with probability ∝ 1/(k+1)^zipf, prompt and output lengths uniform
// in [mean/2, 3·mean/2] or in --prompt-range / --output-range (S-LoRA's is
// 8:512), clamped to the model's context, random prompt ids.
//
// Adapters: rank R on --modules (default all seven), generated from (seed,
// k) as they enter the host cache (AdapterCache of --host-cache-mb, 0 = no
// bound, in front of the engine's fetches), so thousands need not be
// stored, and staged for the executor there (Executor::stage_adapter; CUDA:
// bf16 slot images in pinned memory) as a node's host cache stages them;
// by default every one is generated before the run (on all cores),
// so the run measures slot loads from host memory as S-LoRA does, and with
// --lazy-adapters on its first fetch. A request is cold when no slot held
// or was loading its adapter at its arrival.
// --trace replays JSONL lines {"arrival_ms","adapter","prompt_len","output_len"}
// instead ("adapter": an index into the N adapters, a name "adapter-K", or
// "" / -1 for the base model). Generation ignores eos (fixed lengths).
//
// SLO: a request meets it when TTFT <= --slo-ttft-ms and its mean ITL <=
// --slo-itl-ms (failed requests miss it). Fairness: Jain's index over
// adapters of each adapter's mean per-request token rate (output tokens /
// end-to-end seconds); 1 = equal service.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gpu/executor_factory.h"
#include "nodes/cli_app.h"
#include "runtime/adapter_cache.h"
#include "runtime/adapter_source.h"
#include "runtime/checkpoint.h"
#include "runtime/counter_rng.h"
#include "runtime/engine.h"
#include "runtime/model_factory.h"

namespace {

using namespace myriad;

struct Args {
  std::string model;
  std::string shape;
  std::string device = "cpu";
  int adapters = 8;
  int rank = 8;
  std::string modules;  // comma-separated module names; empty = all seven
  int64_t host_cache_mb = 0;
  bool lazy_adapters = false;
  std::string prompt_range, output_range;  // "LO:HI"; empty = around the means
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
  app.add_option("--model", a.model, "Hugging Face model folder")->option_text("DIR");
  app.add_option("--shape", a.shape, "instead of --model, random weights of a shape made on the device (cuda): "
                                     "tiny | llama-110m | tinyllama-1.1b | llama-7b | llama3-8b")
      ->option_text("NAME");
  app.add_option("--device", a.device, "executor: cpu | cuda (default cpu)")->option_text("D");
  app.add_option("--adapters", a.adapters, "random adapters N (default 8)")->option_text("N")->check(at_least(0));
  app.add_option("--rank", a.rank, "their rank (default 8)")->option_text("R")->check(at_least(1));
  app.add_option("--modules", a.modules, "the modules they adapt, comma-separated (default all seven: "
                                         "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)")
      ->option_text("LIST");
  app.add_option("--host-cache-mb", a.host_cache_mb,
                 "host cache of adapters in MiB; one evicted is generated again when fetched (default 0: no bound)")
      ->option_text("MB")
      ->check(non_negative);
  app.add_flag("--lazy-adapters", a.lazy_adapters,
               "generate each adapter when it is first fetched, not all before the run");
  app.add_option("--prompt-range", a.prompt_range, "prompt lengths uniform in [LO, HI] instead of --prompt-len")
      ->option_text("LO:HI");
  app.add_option("--output-range", a.output_range, "output lengths uniform in [LO, HI] instead of --output-len")
      ->option_text("LO:HI");
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

// Adapter k of the run: rank R on the modules of `mask` (bit m: module m),
// scale 2 (alpha = 2R), A and B uniform with std 0.02 from a splitmix64
// stream of (seed, k). Cheap enough (a few ns per value) to make thousands
// as they enter the host cache; the values do not change the timing.
std::shared_ptr<const LoraWeights> random_adapter(const ModelConfig& c, int rank, uint32_t mask, uint64_t seed, int k) {
  auto w = std::make_shared<LoraWeights>();
  w->name = "adapter-" + std::to_string(k);
  w->num_layers = int32_t(c.num_layers);
  w->modules.resize(size_t(c.num_layers) * kNumLinearModules);
  uint64_t state = seed * 1000003ull + uint64_t(k) + 1;
  const float half_width = 0.02f * std::sqrt(3.0f);
  auto next = [&state, half_width] {
    const uint64_t z = splitmix64(state);  // the splitmix64 stream: state steps by the golden gamma
    state += 0x9e3779b97f4a7c15ull;
    return (float(z >> 40) * (2.0f / 16777216.0f) - 1.0f) * half_width;
  };
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int m = 0; m < kNumLinearModules; ++m) {
      if (!(mask >> m & 1u)) continue;
      const auto [out, in] = linear_module_shape(c, LinearModule(m));
      LoraModuleWeights& mw = w->at(int(l), LinearModule(m));
      mw.rank = rank;
      mw.scale = 2.0f;
      mw.a.resize(size_t(rank) * size_t(in));
      mw.b.resize(size_t(out) * size_t(rank));
      for (float& x : mw.a) x = next();
      for (float& x : mw.b) x = next();
    }
  return w;
}

AdapterId adapter_id(int k) { return AdapterId{"bench", "adapter-" + std::to_string(k), 1}; }

// "q_proj,v_proj" -> a mask over the seven modules; empty -> all.
Result<uint32_t> module_mask(const std::string& list) {
  if (list.empty()) return (1u << kNumLinearModules) - 1;
  uint32_t mask = 0;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string name = list.substr(at, comma - at);
    int found = -1;
    for (int m = 0; m < kNumLinearModules; ++m)
      if (name == linear_module_name(LinearModule(m))) found = m;
    if (found < 0)
      return make_error(ErrorCode::kInvalidArgument,
                        "--modules: '" + name + "' is not one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                                "down_proj");
    mask |= 1u << found;
    at = comma + 1;
  }
  return mask;
}

struct Range {
  int lo = 0, hi = 0;  // hi == 0: not given
};

Result<Range> parse_range(const std::string& flag, const std::string& text) {
  if (text.empty()) return Range{};
  const size_t colon = text.find(':');
  char* end = nullptr;
  Range r;
  if (colon != std::string::npos) {
    r.lo = int(std::strtol(text.c_str(), &end, 10));
    if (end == text.c_str() + colon) r.hi = int(std::strtol(text.c_str() + colon + 1, &end, 10));
  }
  if (colon == std::string::npos || *end != '\0' || r.lo < 1 || r.hi < r.lo)
    return make_error(ErrorCode::kInvalidArgument, flag + " " + text + ": expected LO:HI with 1 <= LO <= HI");
  return r;
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

std::vector<Arrival> synth_workload(const Args& a, Range prompt_range, Range output_range, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<double> wts;
  for (int k = 0; k < a.adapters; ++k) wts.push_back(1.0 / std::pow(double(k + 1), a.zipf));
  std::discrete_distribution<int> pick(wts.begin(), wts.end());
  std::exponential_distribution<double> gap(a.rate > 0 ? a.rate / 1000.0 : 1.0);
  auto around = [&](int mean, Range range) {
    const int lo = range.hi > 0 ? range.lo : std::max(1, mean / 2);
    const int hi = range.hi > 0 ? range.hi : std::max(lo, mean + mean / 2);
    return std::uniform_int_distribution<int>(lo, hi)(rng);
  };
  std::vector<Arrival> out;
  double t = 0;
  for (int i = 0; i < a.requests; ++i) {
    Arrival r;
    if (a.rate > 0) t += gap(rng);
    r.arrival_ms = t;
    r.adapter = a.adapters > 0 ? pick(rng) : -1;
    r.prompt_len = around(a.prompt_len, prompt_range);
    r.output_len = around(a.output_len, output_range);
    out.push_back(r);
  }
  return out;
}

struct PerRequest {
  int adapter = -1;
  bool cold = false;  // no slot held or was loading its adapter at arrival
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

// The executor as a node makes it (gpu/executor_factory.h).
Result<std::unique_ptr<Executor>> make_executor(const Args& a, const SchedulerConfig& sc,
                                                std::shared_ptr<const Checkpoint> ck, const ModelConfig& mc) {
  gpu::ExecutorSpec spec = gpu::executor_spec_for(sc);
  spec.device = a.device;
  spec.threads = a.threads;
  spec.max_adapter_rank = a.rank;
  return ck ? gpu::make_executor(spec, std::move(ck)) : gpu::make_random_executor(spec, mc, a.seed + 1);
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("A multi-adapter workload through the real scheduler, engine and executor, in real time.",
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
  auto fail = [](const Error& e) {
    std::fprintf(stderr, "serve: %s\n", e.to_string().c_str());
    return 1;
  };
  if (args.model.empty() == args.shape.empty()) return fail(make_error(ErrorCode::kInvalidArgument,
                                                                      "give one of --model DIR and --shape NAME"));
  std::shared_ptr<const Checkpoint> ck;
  ModelConfig mc;
  if (!args.model.empty()) {
    auto loaded = Checkpoint::load(args.model);
    if (!loaded.ok()) return fail(loaded.error());
    ck = loaded.value();
    mc = ck->config();
  } else {
    auto shaped = model_shape(args.shape);
    if (!shaped.ok()) return fail(shaped.error());
    mc = shaped.value();
  }
  auto mask = module_mask(args.modules);
  if (!mask.ok()) return fail(mask.error());
  auto prompt_range = parse_range("--prompt-range", args.prompt_range);
  if (!prompt_range.ok()) return fail(prompt_range.error());
  auto output_range = parse_range("--output-range", args.output_range);
  if (!output_range.ok()) return fail(output_range.error());

  std::vector<Arrival> work;
  if (!args.trace.empty()) {
    auto t = read_trace(args.trace, args.adapters);
    if (!t.ok()) return fail(t.error());
    work = std::move(t.value());
  } else {
    work = synth_workload(args, prompt_range.value(), output_range.value(), args.seed);
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

  auto ex = make_executor(args, sc, ck, mc);
  if (!ex.ok()) return fail(ex.error());

  // The host tier: each adapter generated from its seed when it enters.
  AdapterCache cache(args.host_cache_mb > 0 ? size_t(args.host_cache_mb) << 20
                                            : std::numeric_limits<size_t>::max());
  for (int k = 0; k < args.adapters; ++k) {
    const uint32_t modules = mask.value();
    // Staged for the executor as it enters (CUDA: the bf16 slot image, pinned), as a node's cache does.
    AdapterLoader make = [&mc, rank = args.rank, modules, seed = args.seed, k] {
      return Result<std::shared_ptr<const LoraWeights>>(random_adapter(mc, rank, modules, seed, k));
    };
    Status added = cache.add(adapter_id(k), staging_loader(std::move(make), *ex.value()));
    if (!added.ok()) return fail(added.error());
  }
  if (!args.lazy_adapters) {
    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<int> next_k{0};
    std::vector<std::thread> makers(std::max(1u, std::thread::hardware_concurrency()));
    for (std::thread& t : makers)
      t = std::thread([&] {
        for (int k = next_k++; k < args.adapters; k = next_k++) (void)cache.get(adapter_id(k));
      });
    for (std::thread& t : makers) t.join();
    if (!args.json)
      std::printf("serve: %d adapters generated into the host cache in %.1f s\n", args.adapters,
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  CachedAdapterSource source(cache);
  SteadyClock clock;
  ServeSink sink;
  auto en = Engine::create(sc, *ex.value(), source, clock, sink);
  if (!en.ok()) return fail(en.error());
  Engine& engine = *en.value();
  // Whether a slot holds (or is loading) adapter k: its requests are warm.
  auto in_slot = [&engine, &sc](int k) {
    const std::string name = "adapter-" + std::to_string(k);
    for (int32_t s = 0; s < sc.num_slots; ++s)
      if (const AdapterId* id = engine.scheduler().slot_adapter(s); id && id->name == name) return true;
    return false;
  };

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
      if (a.adapter >= 0) r.adapters = {AdapterUse{adapter_id(a.adapter)}};
      r.prompt.resize(size_t(a.prompt_len));
      for (int32_t& t : r.prompt) t = tok(rng);
      r.max_tokens = uint32_t(a.output_len);
      r.sampling.temperature = 0.0f;
      PerRequest& pr = sink.reqs[next];
      pr.adapter = a.adapter;
      pr.cold = a.adapter >= 0 && !in_slot(a.adapter);
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
  std::vector<double> ttft_cold, ttft_warm;  // exact, per request
  std::map<int, std::pair<double, int>> rate_by_adapter;  // sum of token rates, count
  for (const PerRequest& r : sink.reqs) {
    tokens += r.tokens;
    if (r.failed || !r.done) {
      ++failed;
      continue;
    }
    ++completed;
    const double t = r.first_ms - r.submit_ms;
    if (r.first_ms >= 0) (r.cold ? ttft_cold : ttft_warm).push_back(t);
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
  auto quantile = [](std::vector<double> v, double q) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[size_t(std::max(1.0, std::ceil(q * double(v.size())))) - 1];  // nearest rank
  };
  const AdapterCache::Stats host = cache.stats();
  const double jain = rate_by_adapter.empty() ? 1.0 : js * js / (double(rate_by_adapter.size()) * js2);
  const double throughput = tokens / std::max(wall_s, 1e-9);
  const double slo = sink.reqs.empty() ? 0.0 : double(slo_ok) / double(sink.reqs.size());

  if (args.json) {
    nlohmann::json j;
    j["model"] = args.model.empty() ? args.shape : args.model;
    j["device"] = args.device;
    j["modules"] = args.modules.empty() ? "all" : args.modules;
    j["host_cache_mb"] = args.host_cache_mb;
    j["lazy_adapters"] = args.lazy_adapters;
    size_t adapter_bytes = 0;  // host bytes of one (all are alike)
    if (args.adapters > 0)
      if (auto w = cache.get(adapter_id(0)); w.ok()) adapter_bytes = w.value()->bytes();
    j["adapter_bytes"] = adapter_bytes;
    j["cold_requests"] = ttft_cold.size();
    j["warm_requests"] = ttft_warm.size();
    j["ttft_cold_ms_p50"] = quantile(ttft_cold, 0.5);
    j["ttft_cold_ms_p99"] = quantile(ttft_cold, 0.99);
    j["ttft_warm_ms_p50"] = quantile(ttft_warm, 0.5);
    j["ttft_warm_ms_p99"] = quantile(ttft_warm, 0.99);
    j["host_cache_misses"] = host.misses;
    j["host_cache_evictions"] = host.evictions;
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
    std::printf("serve: %s on %s, %zu requests, %d adapters rank %d, policy %s, %d slots, quantum %.0f ms, "
                "rate %.1f/s\n",
                args.model.empty() ? args.shape.c_str() : args.model.c_str(), args.device.c_str(), sink.reqs.size(), args.adapters, args.rank, args.policy.c_str(), sc.num_slots,
                sc.quantum_ms, args.rate);
    std::printf("  %-26s %12.1f\n", "throughput (tok/s)", throughput);
    std::printf("  %-26s %12.1f %12.1f\n", "TTFT ms p50 / p99", m.overall.ttft_ms.quantile_ms(0.5),
                m.overall.ttft_ms.quantile_ms(0.99));
    std::printf("  %-26s %12.2f %12.2f\n", "ITL ms p50 / p99", m.overall.itl_ms.quantile_ms(0.5),
                m.overall.itl_ms.quantile_ms(0.99));
    std::printf("  %-26s %12.1f %12.1f  (%zu requests)\n", "TTFT cold ms p50 / p99", quantile(ttft_cold, 0.5),
                quantile(ttft_cold, 0.99), ttft_cold.size());
    std::printf("  %-26s %12.1f %12.1f  (%zu requests)\n", "TTFT warm ms p50 / p99", quantile(ttft_warm, 0.5),
                quantile(ttft_warm, 0.99), ttft_warm.size());
    std::printf("  %-26s %12llu %12llu\n", "host cache misses / evict.", (unsigned long long)host.misses,
                (unsigned long long)host.evictions);
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
