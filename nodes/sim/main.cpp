// myriad-sim: the scheduler simulator (sim/) from the command line. One run:
// a fleet of simulated workers under synthetic traffic; prints a table, or
// with --json one JSON object as the last stdout line.
//
//   myriad-sim [CONFIG] --adapters N --workers W --rate REQ_PER_S --duration-s S --zipf A
//              --policy timeslice|fcfs|one-at-a-time [--slots N] [--quantum-ms Q]
//              [--placement affinity|least-loaded|random] [--cost-model FILE] [--trace FILE] --seed S --json
//   myriad-sim --convert-trace IN.jsonl OUT.fb
//
// CONFIG is a JSON file of the same settings by the flags' names without
// dashes ("adapters", "duration-s", ...); flags override it. docs/simulator.md
// lists every setting and its default.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "nodes/cli_app.h"
#include "sim/fleet.h"

namespace {

using namespace myriad;

struct Settings {
  sim::WorkloadOptions workload;
  sim::FleetOptions fleet;
  std::string policy = "timeslice", placement = "affinity", cost_model;
  std::string admission = "engine";
  std::string failures;  // "T:W,T:W": worker W dies at T seconds
  std::string write_trace;
  std::string csv;  // append one row (a header first when the file is new)
  std::vector<std::string> convert;  // IN.jsonl OUT.fb
  std::vector<std::string> groups;   // COUNT:SLOTS[:COST_MODEL]
  bool json = false;
};

// The config file's keys, each applied as its flag would be.
Status apply_config(const std::string& path, CLI::App& app) {
  std::ifstream in(path);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot open config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (!j.is_object()) return make_error(ErrorCode::kInvalidArgument, path + ": not a JSON object");
  std::vector<std::string> args = {"myriad-sim"};
  for (const auto& [key, value] : j.items()) {
    if (!app.get_option_no_throw("--" + key))
      return make_error(ErrorCode::kInvalidArgument, path + ": unknown setting \"" + key + "\"");
    if (value.is_boolean()) {
      if (value.get<bool>()) args.push_back("--" + key);
      continue;
    }
    args.push_back("--" + key);
    args.push_back(value.is_string() ? value.get<std::string>() : value.dump());
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  try {
    app.parse(int(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return make_error(ErrorCode::kInvalidArgument, path + ": " + e.what());
  }
  return ok_status();
}

void add_flags(CLI::App& app, Settings& s) {
  auto& w = s.workload;
  auto& f = s.fleet;
  app.add_option("--adapters", w.adapters, "distinct adapters (default 64)")->option_text("N")->check(cli::at_least(0));
  app.add_option("--workers", f.workers, "workers in the fleet (default 1)")->option_text("W")->check(cli::at_least(1));
  app.add_option("--rate", w.rate, "mean arrival rate, requests/s (default 10)")->option_text("REQ_PER_S");
  app.add_option("--duration-s", w.duration_s, "simulated time of arrivals, s (default 60)")->option_text("S");
  app.add_option("--zipf", w.zipf, "adapter popularity exponent, 0 = uniform (default 1)")->option_text("A");
  app.add_option("--policy", s.policy, "scheduler policy: timeslice, fcfs or one-at-a-time (default timeslice)")
      ->option_text("P")
      ->check(CLI::IsMember({"timeslice", "fcfs", "one-at-a-time"}));
  app.add_option("--admission", s.admission,
                 "in front of each engine: engine (nothing; the engine time-slices all it is given), timeslice "
                 "(the node's scheduler actor: its active set) or fifo (the node's --admission fifo) (default engine)")
      ->option_text("A")
      ->check(CLI::IsMember({"engine", "timeslice", "fifo"}));
  app.add_option("--max-waiting", f.max_waiting,
                 "with --admission timeslice|fifo: requests queued ahead of a worker's engine; more fail (default 1024)")
      ->option_text("N")
      ->check(cli::at_least(1));
  app.add_option("--slots", f.engine.num_slots, "adapter slots per worker (default 16)")->option_text("N");
  app.add_option("--quantum-ms", f.engine.quantum_ms, "time slice, ms (default 50, the node's)")->option_text("Q");
  app.add_option("--placement", s.placement, "affinity, least-loaded or random (default affinity)")
      ->option_text("P")
      ->check(CLI::IsMember({"affinity", "least-loaded", "random"}));
  app.add_option("--cost-model", s.cost_model, "cost model JSON (default: the built-in CPU model)")->option_text("FILE");
  app.add_option("--seed", w.seed, "the workload's and placement's seed (default 1)")->option_text("S");
  app.add_flag("--json", s.json, "print one JSON object as the last stdout line");
  app.add_option("--arrival", w.arrival, "poisson or gamma (default poisson)")->option_text("KIND");
  app.add_option("--burstiness", w.burstiness, "gamma: coefficient of variation of gaps (default 1)")
      ->option_text("CV");
  app.add_option("--base-share", w.base_share, "share of requests to the base model (default 0)")->option_text("F");
  app.add_option("--tenant-shares", w.tenant_shares,
                 "tenants' shares of the requests, e.g. 0.6,0.3,0.1 (adapter k belongs to tenant k mod T; "
                 "default one tenant)")
      ->option_text("LIST")
      ->delimiter(',');
  app.add_option("--prompt-mean", w.prompt_mean, "mean prompt tokens (default 256)")->option_text("T");
  app.add_option("--output-mean", w.output_mean, "mean output tokens (default 128)")->option_text("T");
  app.add_option("--prompt-max", w.prompt_max, "most prompt tokens (default 2048)")->option_text("T");
  app.add_option("--output-max", w.output_max, "most output tokens (default 1024)")->option_text("T");
  app.add_option("--max-running", f.engine.max_running_seqs, "sequences in a worker's batch (default 32)")
      ->option_text("N");
  app.add_option("--max-tokens-per-step", f.engine.max_tokens_per_step, "tokens in one step (default 512)")
      ->option_text("N");
  app.add_option("--kv-blocks", f.engine.num_kv_blocks, "KV blocks of 16 tokens per worker (default 4096)")
      ->option_text("N");
  app.add_option("--host-cache-adapters", f.host_cache_adapters, "adapters in a worker's host memory (default 256)")
      ->option_text("N");
  app.add_option("--rank", f.adapter_rank, "every adapter's rank (default 16)")->option_text("R");
  app.add_option("--slo-ttft-ms", f.slo_ttft_ms, "TTFT objective for SLO attainment, ms (default 2000)")
      ->option_text("MS");
  app.add_option("--report-interval-ms", f.report_interval_ms, "how often placement hears from workers (default 100)")
      ->option_text("MS");
  app.add_option("--trace", w.trace,
                 "replay a JSONL trace (bench/serve --trace's format) instead of drawing requests")
      ->option_text("FILE");
  app.add_option("--write-trace", s.write_trace,
                 "also write the requests as a trace: FlatBuffers when FILE ends in .fb, else JSONL")
      ->option_text("FILE");
  app.add_option("--convert-trace", s.convert, "convert a JSONL trace to a FlatBuffers one (.fb), then exit")
      ->option_text("IN OUT")
      ->expected(2);
  app.add_option("--csv", s.csv, "append the settings and results as a CSV row (a header first in a new file)")
      ->option_text("FILE");
  cli::repeatable(app.add_option("--worker-group", s.groups,
                                 "COUNT:SLOTS[:COST_MODEL_FILE]: that many of the workers with their own slots and "
                                 "device (repeatable; the first workers, in order; the rest use --slots and "
                                 "--cost-model)")
                      ->option_text("GROUP"));
  app.add_option("--fail", s.failures, "worker failures: T:W[,T:W...] (worker W dies at T s)")->option_text("LIST");
}

Status parse_failures(const std::string& text, std::vector<sim::WorkerFailure>& out) {
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument(item);
      out.push_back({std::stod(item.substr(0, colon)), std::stoi(item.substr(colon + 1))});
    } catch (const std::exception&) {
      return make_error(ErrorCode::kInvalidArgument, "--fail: '" + item + "' is not SECONDS:WORKER");
    }
  }
  return ok_status();
}

// The settings that vary in sweeps, then every result field.
Status append_csv(const Settings& s, const sim::SimResult& r) {
  const bool fresh = !std::ifstream(s.csv).good();
  std::ofstream out(s.csv, std::ios::app);
  if (!out) return make_error(ErrorCode::kIo, "cannot append to " + s.csv);
  const auto fields = sim::result_fields(r);
  const std::vector<std::pair<std::string, std::string>> settings = {
      {"adapters", std::to_string(s.workload.adapters)},
      {"workers", std::to_string(s.fleet.workers)},
      {"rate", std::to_string(s.workload.rate)},
      {"duration_s", std::to_string(s.workload.duration_s)},
      {"zipf", std::to_string(s.workload.zipf)},
      {"policy", s.policy},
      {"admission", s.admission},
      {"slots", std::to_string(s.fleet.engine.num_slots)},
      {"quantum_ms", std::to_string(s.fleet.engine.quantum_ms)},
      {"placement", s.placement},
      {"cost_model", s.fleet.cost.name},
      {"seed", std::to_string(s.workload.seed)}};
  std::string header, row;
  for (const auto& list : {settings, fields})
    for (const auto& [k, v] : list) {
      header += (header.empty() ? "" : ",") + k;
      // Quote text that holds a comma or a quote (a cost model's name).
      std::string cell = v;
      if (cell.find_first_of(",\"") != std::string::npos) {
        std::string q = "\"";
        for (char c : cell) q += c == '"' ? std::string("\"\"") : std::string(1, c);
        cell = q + "\"";
      }
      row += (row.empty() ? "" : ",") + cell;
    }
  if (fresh) out << header << "\n";
  out << row << "\n";
  return out ? ok_status() : make_error(ErrorCode::kIo, "cannot append to " + s.csv);
}

// COUNT:SLOTS[:COST_MODEL_FILE]; without a file, the fleet's cost model.
Result<sim::WorkerGroup> parse_group(const std::string& text, const sim::CostModel& fleet_cost) {
  auto bad = [&] {
    return make_error(ErrorCode::kInvalidArgument, "--worker-group: '" + text + "' is not COUNT:SLOTS[:COST_MODEL_FILE]");
  };
  const auto a = text.find(':');
  if (a == std::string::npos) return bad();
  const auto b = text.find(':', a + 1);
  sim::WorkerGroup g;
  try {
    size_t used = 0;
    g.count = std::stoi(text.substr(0, a), &used);
    if (used != a) return bad();
    const std::string slots = text.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
    g.slots = std::stoi(slots, &used);
    if (used != slots.size()) return bad();
  } catch (const std::exception&) {
    return bad();
  }
  g.cost = fleet_cost;
  if (b != std::string::npos) {
    auto m = sim::load_cost_model(text.substr(b + 1));
    if (!m) return m.error();
    g.cost = m.value();
  }
  return g;
}

void print_table(const sim::SimResult& r) {
  std::printf("%-22s %s\n", "requests", std::to_string(r.requests).c_str());
  std::printf("%-22s %llu (failed %llu, unfinished %llu, placed again %llu)\n", "completed",
              (unsigned long long)r.completed, (unsigned long long)r.failed, (unsigned long long)r.unfinished,
              (unsigned long long)r.replaced);
  std::printf("%-22s %.1f tokens/s over %.1f simulated s\n", "throughput", r.throughput_tok_s, r.simulated_s);
  std::printf("%-22s p50 %.1f  p90 %.1f  p99 %.1f ms\n", "TTFT", r.ttft_ms.quantile_ms(0.5),
              r.ttft_ms.quantile_ms(0.9), r.ttft_ms.quantile_ms(0.99));
  std::printf("%-22s p50 %.2f  p90 %.2f  p99 %.2f ms\n", "ITL", r.itl_ms.quantile_ms(0.5), r.itl_ms.quantile_ms(0.9),
              r.itl_ms.quantile_ms(0.99));
  std::printf("%-22s %.3f\n", "SLO attainment", r.slo_attainment);
  std::printf("%-22s %.3f\n", "Jain fairness", r.jain_fairness);
  std::printf("%-22s %llu swaps, %llu slot loads, %llu fetches, occupancy %.2f\n", "adapters",
              (unsigned long long)r.swaps, (unsigned long long)r.slot_loads, (unsigned long long)r.fetches,
              r.slot_occupancy);
  std::printf("%-22s %.3f\n", "affinity hit rate", r.affinity_hit_rate);
  std::printf("%-22s %.2f s (%llu events)\n", "wall time", r.wall_s, (unsigned long long)r.events);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The scheduler simulator: the real engine loop, scheduler and placement on a virtual clock.",
               "myriad-sim"};
  cli::set_conventions(app);
  Settings s;
  s.fleet.engine.num_slots = 16;
  s.fleet.engine.max_running_seqs = 32;
  s.fleet.engine.num_kv_blocks = 4096;
  LogLevel level = LogLevel::kWarn;
  cli::add_log_level(app, level);
  add_flags(app, s);
  std::string config;
  app.add_option("config", config, "a JSON file of settings (flags override it)")->option_text("CONFIG");
  if (auto code = cli::parse(app, argc, argv, level)) return *code;
  if (!config.empty()) {
    // The file first, then the command line again over it.
    if (Status st = apply_config(config, app); !st.ok()) {
      std::fprintf(stderr, "myriad-sim: %s\n", st.error().message.c_str());
      return 2;
    }
    app.parse(argc, argv);
  }
  auto fail = [](const Error& e, int code) {
    std::fprintf(stderr, "myriad-sim: %s\n", e.message.c_str());
    return code;
  };
  if (!s.convert.empty()) {
    auto n = sim::convert_trace(s.convert[0], s.convert[1]);
    if (!n) return fail(n.error(), 1);
    std::printf("%zu requests -> %s\n", n.value(), s.convert[1].c_str());
    return 0;
  }
  s.fleet.engine.policy = parse_scheduler_policy(s.policy).value();
  s.fleet.admission = sim::parse_sim_admission(s.admission).value();
  s.fleet.placement.policy = parse_placement_policy(s.placement).value();
  s.fleet.placement_seed = s.workload.seed;
  if (!s.cost_model.empty()) {
    auto m = sim::load_cost_model(s.cost_model);
    if (!m) return fail(m.error(), 2);
    s.fleet.cost = m.value();
  }
  if (Status st = parse_failures(s.failures, s.fleet.failures); !st.ok()) return fail(st.error(), 2);
  for (const std::string& g : s.groups) {
    auto group = parse_group(g, s.fleet.cost);
    if (!group) return fail(group.error(), 2);
    s.fleet.groups.push_back(group.value());
  }
  if (!s.write_trace.empty())
    if (Status st = sim::write_trace(s.workload, s.write_trace); !st.ok()) return fail(st.error(), 1);
  const bool bar = isatty(STDERR_FILENO);
  auto progress = [bar](double share) {
    if (!bar) return;
    const int filled = int(share * 40);
    std::fprintf(stderr, "\r[%-40s] %3d%%", std::string(size_t(std::min(filled, 40)), '#').c_str(),
                 int(share * 100));
  };
  auto r = sim::simulate(s.fleet, s.workload, progress);
  if (bar) std::fprintf(stderr, "\r%60s\r", "");
  if (!r) return fail(r.error(), 2);
  if (!s.csv.empty())
    if (Status st = append_csv(s, r.value()); !st.ok()) return fail(st.error(), 1);
  if (s.json) {
    std::printf("%s\n", sim::to_json(r.value()).c_str());
  } else {
    print_table(r.value());
  }
  return 0;
}
