// Synthetic traffic for the simulator, drawn lazily (a million requests are
// never held at once) from one seeded generator, so a seed gives the same
// requests on every machine (the draws use no std:: distribution, whose
// algorithms differ between standard libraries):
//  - arrivals: Poisson at `rate` requests/s, or bursty (gamma inter-arrival
//    times with coefficient of variation `burstiness`; 1 = Poisson), the
//    rate scaled through the day by `diurnal` (24 hourly factors, repeating;
//    empty = flat);
//  - which adapter: Zipf with exponent `zipf` over `adapters` adapters
//    (0 = uniform; adapter 0 is the most popular), or the base model with
//    probability `base_share`;
//  - tenants (`tenant_shares`, empty = one): adapter k belongs to tenant
//    k mod T; a request picks its tenant by share, then one of the tenant's
//    adapters by Zipf among them (the base-model share comes first and
//    counts as tenant 0);
//  - lengths: prompt and output tokens exponential with the given means,
//    rounded up, within [1, max].
// Or a trace replayed (`trace`), in either of two formats told apart by
// their first bytes:
//  - FlatBuffers (schema/trace.fbs, identifier "MYTR"): mapped into memory
//    and read in place, so a million requests open without parsing;
//  - JSONL lines as bench/serve --trace reads them, {"arrival_ms", "adapter",
//    "prompt_len", "output_len"}, read as the simulation goes; "adapter" is
//    an index or "adapter-K" (absent: the base model).
// Either way in arrival order; adapter indices are taken modulo `adapters`
// (negative: the base model).
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/result.h"

namespace myriad::sim {

struct WorkloadOptions {
  uint64_t seed = 1;
  int32_t adapters = 64;
  double rate = 10.0;  // requests per second (the mean, before diurnal factors)
  double duration_s = 60.0;
  double zipf = 1.0;
  std::string arrival = "poisson";  // "poisson" | "gamma"
  double burstiness = 1.0;          // gamma: coefficient of variation of inter-arrival times
  std::vector<double> diurnal;      // rate factors per hour of the simulated day
  double base_share = 0.0;
  std::vector<double> tenant_shares;  // relative shares of the requests by tenant (empty: one tenant)
  double prompt_mean = 256, output_mean = 128;
  uint32_t prompt_max = 2048, output_max = 1024;
  std::string trace;  // a JSONL trace to replay instead of drawing (arrivals past duration_s are dropped)
};

// Also reads a trace through once, naming the first bad line.
Status validate(const WorkloadOptions& o);
// Writes `o`'s requests as a trace: FlatBuffers when `path` ends in ".fb",
// else JSONL (bench/serve --trace replays that).
Status write_trace(const WorkloadOptions& o, const std::string& path);
// A JSONL trace as a FlatBuffers one (every line kept as it is); how many requests.
Result<size_t> convert_trace(const std::string& jsonl_path, const std::string& fb_path);

struct SimRequest {
  double arrival_ms = 0;
  int32_t adapter = -1;  // -1: the base model
  int32_t tenant = 0;    // adapter mod tenants (the base model's requests count as tenant 0)
  uint32_t prompt_tokens = 1;
  uint32_t max_tokens = 1;
};

// A small, fast, portable generator (xoshiro256**, seeded by splitmix64).
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // (0, 1)
  double exponential(double mean);
  double normal();
  double gamma(double shape, double scale);

 private:
  uint64_t s_[4];
};

class Workload {
 public:
  explicit Workload(const WorkloadOptions& options);
  // The next request by arrival time; nullopt past duration_s.
  std::optional<SimRequest> next();
  const WorkloadOptions& options() const { return o_; }
  class MappedTrace;  // a FlatBuffers trace, mapped (workload.cpp)

 private:
  double gap_ms(double at_ms);
  int32_t draw_adapter();
  int32_t tenants() const { return std::max<int32_t>(1, int32_t(o_.tenant_shares.size())); }
  int32_t tenant_of(int32_t adapter) const { return adapter >= 0 ? adapter % tenants() : 0; }
  std::optional<SimRequest> next_from_trace();

  WorkloadOptions o_;
  std::unique_ptr<std::ifstream> trace_;     // a JSONL trace
  std::shared_ptr<MappedTrace> fb_trace_;    // a FlatBuffers trace
  size_t fb_next_ = 0;
  Rng rng_;
  std::vector<double> zipf_cdf_;
  std::vector<double> tenant_cdf_;                // by share
  std::vector<std::vector<double>> tenant_zipf_;  // per tenant: Zipf over its adapters
  double t_ms_ = 0;
};

}  // namespace myriad::sim
