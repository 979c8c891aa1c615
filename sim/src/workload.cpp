#include "sim/workload.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim/trace_generated.h"
#include "runtime/atomic_file.h"

namespace myriad::sim {

namespace {

// One trace line as a request; an error names what is wrong with it.
Result<SimRequest> parse_trace_line(const std::string& line, int32_t adapters) {
  auto bad = [](const std::string& m) { return make_error(ErrorCode::kBadFile, m); };
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad("not a JSON object");
  for (const char* key : {"arrival_ms", "prompt_len", "output_len"})
    if (!j.contains(key) || !j[key].is_number()) return bad(std::string("needs a number \"") + key + "\"");
  SimRequest r;
  r.arrival_ms = j["arrival_ms"].get<double>();
  const double prompt = j["prompt_len"].get<double>(), output = j["output_len"].get<double>();
  if (!(r.arrival_ms >= 0) || !(prompt >= 1) || !(output >= 1))
    return bad("arrival_ms >= 0, prompt_len >= 1 and output_len >= 1");
  r.prompt_tokens = uint32_t(prompt);
  r.max_tokens = uint32_t(output);
  r.adapter = -1;
  if (j.contains("adapter")) {
    const auto& a = j["adapter"];
    int64_t k = -1;
    if (a.is_number_integer()) {
      k = a.get<int64_t>();
    } else if (a.is_string() && a.get<std::string>().rfind("adapter-", 0) == 0) {
      k = std::atoll(a.get<std::string>().c_str() + 8);
    } else if (!(a.is_string() && a.get<std::string>().empty())) {
      return bad("\"adapter\" must be an index or \"adapter-K\"");
    }
    if (adapters < 0) r.adapter = k < 0 ? -1 : int32_t(k);  // kept as written (a conversion)
    else if (k >= 0 && adapters > 0) r.adapter = int32_t(k % adapters);
  }
  return r;
}

// A FlatBuffers trace's leading bytes: the root offset, then "MYTR".
bool is_flatbuffers_trace(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[8] = {};
  return in.read(head, sizeof head) && fb::TraceBufferHasIdentifier(head);
}

Status write_flatbuffers_trace(const std::vector<fb::TraceRequest>& requests, const std::string& path) {
  flatbuffers::FlatBufferBuilder b(64 + requests.size() * sizeof(fb::TraceRequest));
  b.Finish(fb::CreateTrace(b, b.CreateVectorOfStructs(requests)), fb::TraceIdentifier());
  return write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(b.GetBufferPointer()), b.GetSize()));
}

SimRequest from_flatbuffers(const fb::TraceRequest& t, int32_t adapters) {
  SimRequest r;
  r.arrival_ms = t.arrival_ms();
  r.adapter = t.adapter() >= 0 && adapters > 0 ? t.adapter() % adapters : -1;
  r.prompt_tokens = std::max<uint32_t>(t.prompt_len(), 1);
  r.max_tokens = std::max<uint32_t>(t.output_len(), 1);
  return r;
}

}  // namespace

// A FlatBuffers trace mapped read-only, verified once.
class Workload::MappedTrace {
 public:
  static Result<std::shared_ptr<MappedTrace>> open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return make_error(ErrorCode::kNotFound, "cannot open trace " + path);
    struct stat st {};
    if (fstat(fd, &st) != 0 || st.st_size < 8) {
      ::close(fd);
      return make_error(ErrorCode::kBadFile, path + ": too short for a trace");
    }
    void* p = mmap(nullptr, size_t(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return make_error(ErrorCode::kIo, "cannot map trace " + path);
    auto t = std::shared_ptr<MappedTrace>(new MappedTrace(p, size_t(st.st_size)));
    flatbuffers::Verifier v(static_cast<const uint8_t*>(p), size_t(st.st_size));
    if (!fb::VerifyTraceBuffer(v) || fb::GetTrace(p)->requests() == nullptr)
      return make_error(ErrorCode::kBadFile, path + ": not a valid trace (schema sim/schema/trace.fbs)");
    t->trace_ = fb::GetTrace(p);
    return t;
  }
  ~MappedTrace() { munmap(data_, size_); }
  MappedTrace(const MappedTrace&) = delete;
  MappedTrace& operator=(const MappedTrace&) = delete;
  const flatbuffers::Vector<const fb::TraceRequest*>& requests() const { return *trace_->requests(); }

 private:
  MappedTrace(void* data, size_t size) : data_(data), size_(size) {}
  void* data_;
  size_t size_;
  const fb::Trace* trace_ = nullptr;
};

Status validate(const WorkloadOptions& o) {
  auto bad = [](const std::string& m) { return make_error(ErrorCode::kInvalidArgument, m); };
  if (!o.trace.empty() && is_flatbuffers_trace(o.trace)) {
    auto t = Workload::MappedTrace::open(o.trace);
    if (!t) return t.error();
    double last = 0;
    const auto& reqs = t.value()->requests();
    for (uint32_t i = 0; i < reqs.size(); ++i) {
      const fb::TraceRequest& r = *reqs.Get(i);
      if (!(r.arrival_ms() >= last) || r.prompt_len() < 1 || r.output_len() < 1)
        return make_error(ErrorCode::kBadFile, o.trace + ": request " + std::to_string(i) +
                                                   ": arrival_ms must not go back in time, lengths must be >= 1");
      last = r.arrival_ms();
    }
    if (o.adapters < 0) return bad("adapters must be >= 0");
    if (!(o.duration_s > 0)) return bad("duration must be > 0 s");
    return ok_status();
  } else if (!o.trace.empty()) {
    std::ifstream in(o.trace);
    if (!in) return make_error(ErrorCode::kNotFound, "cannot open trace " + o.trace);
    std::string line;
    double last = 0;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto r = parse_trace_line(line, o.adapters);
      if (!r) return make_error(ErrorCode::kBadFile, o.trace + ":" + std::to_string(n) + ": " + r.error().message);
      if (r->arrival_ms < last)
        return make_error(ErrorCode::kBadFile, o.trace + ":" + std::to_string(n) + ": arrival_ms goes back in time");
      last = r->arrival_ms;
    }
    if (o.adapters < 0) return bad("adapters must be >= 0");
    if (!(o.duration_s > 0)) return bad("duration must be > 0 s");
    return ok_status();
  }
  if (o.adapters < 0) return bad("adapters must be >= 0");
  if (!(o.rate > 0)) return bad("rate must be > 0 requests/s");
  if (!(o.duration_s > 0)) return bad("duration must be > 0 s");
  if (!(o.zipf >= 0)) return bad("zipf exponent must be >= 0");
  if (o.arrival != "poisson" && o.arrival != "gamma") return bad("arrival must be poisson or gamma, not " + o.arrival);
  if (!(o.burstiness > 0)) return bad("burstiness must be > 0");
  if (!(o.base_share >= 0 && o.base_share <= 1)) return bad("base share must be in [0, 1]");
  if (o.adapters == 0 && o.base_share < 1) return bad("no adapters: base share must be 1");
  if (!(o.prompt_mean >= 1) || !(o.output_mean >= 1)) return bad("prompt and output means must be >= 1 token");
  if (o.prompt_max < 1 || o.output_max < 1) return bad("prompt and output maxima must be >= 1");
  for (double f : o.diurnal)
    if (!(f >= 0)) return bad("diurnal factors must be >= 0");
  for (double f : o.tenant_shares)
    if (!(f > 0)) return bad("tenant shares must be > 0");
  if (!o.diurnal.empty() && std::all_of(o.diurnal.begin(), o.diurnal.end(), [](double f) { return f == 0; }))
    return bad("diurnal factors are all 0");
  return ok_status();
}

namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }

double Rng::exponential(double mean) { return -std::log(uniform()) * mean; }

double Rng::normal() {  // Box-Muller, one of the pair
  return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform());
}

double Rng::gamma(double shape, double scale) {
  if (shape < 1.0) return gamma(shape + 1.0, scale) * std::pow(uniform(), 1.0 / shape);
  // Marsaglia and Tsang.
  const double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
  for (;;) {
    double x, v;
    do {
      x = normal();
      v = 1.0 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const double u = uniform();
    if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v * scale;
  }
}

Workload::Workload(const WorkloadOptions& options) : o_(options), rng_(options.seed) {
  if (!o_.trace.empty()) {
    if (is_flatbuffers_trace(o_.trace)) {
      auto t = MappedTrace::open(o_.trace);  // validate() opened it already
      if (t) fb_trace_ = std::move(t).value();
    } else {
      trace_ = std::make_unique<std::ifstream>(o_.trace);
    }
  }
  zipf_cdf_.resize(size_t(o_.adapters));
  double sum = 0;
  for (int32_t k = 0; k < o_.adapters; ++k) zipf_cdf_[size_t(k)] = (sum += std::pow(double(k + 1), -o_.zipf));
  for (double& c : zipf_cdf_) c /= sum;
  if (o_.tenant_shares.size() > 1) {
    const int32_t t_count = tenants();
    double total = 0;
    for (double share : o_.tenant_shares) tenant_cdf_.push_back(total += share);
    for (double& c : tenant_cdf_) c /= total;
    tenant_zipf_.resize(size_t(t_count));
    for (int32_t t = 0; t < t_count; ++t) {
      const int32_t n = o_.adapters > t ? (o_.adapters - t + t_count - 1) / t_count : 0;
      double acc = 0;
      for (int32_t k = 0; k < n; ++k) tenant_zipf_[size_t(t)].push_back(acc += std::pow(double(k + 1), -o_.zipf));
      for (double& c : tenant_zipf_[size_t(t)]) c /= acc;
    }
  }
}

// The time to the next arrival at mean rate x the diurnal factor of the hour
// `at_ms` is in; a negative number when that hour is quiet (factor 0).
double Workload::gap_ms(double at_ms) {
  double factor = 1.0;
  if (!o_.diurnal.empty()) {
    double mean = 0;
    for (double f : o_.diurnal) mean += f;
    mean /= double(o_.diurnal.size());
    factor = o_.diurnal[size_t(at_ms / 3.6e6) % o_.diurnal.size()] / mean;
    if (factor <= 0) return -1.0;
  }
  const double mean_ms = 1000.0 / (o_.rate * factor);
  if (o_.arrival == "gamma") {
    const double shape = 1.0 / (o_.burstiness * o_.burstiness);
    return rng_.gamma(shape, mean_ms / shape);
  }
  return rng_.exponential(mean_ms);
}

int32_t Workload::draw_adapter() {
  if (o_.adapters == 0 || (o_.base_share > 0 && rng_.uniform() < o_.base_share)) return -1;
  if (tenants() > 1) {
    const auto t = int32_t(std::lower_bound(tenant_cdf_.begin(), tenant_cdf_.end(), rng_.uniform()) - tenant_cdf_.begin());
    const auto& cdf = tenant_zipf_[size_t(std::min(t, tenants() - 1))];
    if (cdf.empty()) return -1;  // a tenant with no adapter asks the base model
    const auto rank = std::lower_bound(cdf.begin(), cdf.end(), rng_.uniform()) - cdf.begin();
    return int32_t(std::min<ptrdiff_t>(rank, ptrdiff_t(cdf.size()) - 1)) * tenants() + std::min(t, tenants() - 1);
  }
  const double u = rng_.uniform();
  const auto it = std::lower_bound(zipf_cdf_.begin(), zipf_cdf_.end(), u);
  return int32_t(std::min<ptrdiff_t>(it - zipf_cdf_.begin(), o_.adapters - 1));
}

std::optional<SimRequest> Workload::next_from_trace() {
  if (fb_trace_) {
    const auto& reqs = fb_trace_->requests();
    if (fb_next_ >= reqs.size()) return std::nullopt;
    SimRequest r = from_flatbuffers(*reqs.Get(uint32_t(fb_next_++)), o_.adapters);
    r.tenant = tenant_of(r.adapter);
    if (r.arrival_ms >= o_.duration_s * 1000.0) return std::nullopt;
    return r;
  }
  std::string line;
  while (std::getline(*trace_, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto r = parse_trace_line(line, o_.adapters);  // validate() read it through already
    if (!r || r->arrival_ms >= o_.duration_s * 1000.0) return std::nullopt;
    r->tenant = tenant_of(r->adapter);
    return r.value();
  }
  return std::nullopt;
}

Status write_trace(const WorkloadOptions& o, const std::string& path) {
  MYRIAD_TRY(validate(o));
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".fb") == 0) {
    std::vector<fb::TraceRequest> requests;
    Workload w(o);
    while (auto r = w.next())
      requests.emplace_back(r->arrival_ms, r->adapter, r->prompt_tokens, r->max_tokens);
    return write_flatbuffers_trace(requests, path);
  }
  // Written whole or not at all (runtime/atomic_file.h): a reader never sees half a trace.
  return write_file_atomically_with(path, [&](int fd, const std::string& tmp) -> Status {
    std::string chunk;
    auto flush = [&]() -> bool {
      size_t done = 0;
      while (done < chunk.size()) {
        const ssize_t n = ::write(fd, chunk.data() + done, chunk.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return false;
        done += size_t(n);
      }
      chunk.clear();
      return true;
    };
    Workload w(o);
    char line[160];
    while (auto r = w.next()) {
      const int n = std::snprintf(line, sizeof line,
                                  "{\"arrival_ms\": %.3f, \"adapter\": %d, \"prompt_len\": %u, \"output_len\": %u}\n",
                                  r->arrival_ms, r->adapter, r->prompt_tokens, r->max_tokens);
      chunk.append(line, size_t(n));
      if (chunk.size() >= (1u << 20) && !flush()) return make_error(ErrorCode::kIo, "cannot write " + tmp);
    }
    if (!flush()) return make_error(ErrorCode::kIo, "cannot write " + tmp);
    return ok_status();
  });
}

std::optional<SimRequest> Workload::next() {
  if (trace_ || fb_trace_) return next_from_trace();
  for (;;) {
    const double gap = gap_ms(t_ms_);
    if (o_.diurnal.empty()) {
      t_ms_ += gap;
      break;
    }
    // The rate changes at the hour: a gap that crosses it (or a quiet hour)
    // starts again from the hour (exact for Poisson arrivals, memoryless).
    const double hour_end = (std::floor(t_ms_ / 3.6e6) + 1.0) * 3.6e6;
    if (gap >= 0 && t_ms_ + gap < hour_end) {
      t_ms_ += gap;
      break;
    }
    t_ms_ = hour_end;
    if (t_ms_ >= o_.duration_s * 1000.0) return std::nullopt;
  }
  if (t_ms_ >= o_.duration_s * 1000.0) return std::nullopt;
  SimRequest r;
  r.arrival_ms = t_ms_;
  r.adapter = draw_adapter();
  r.tenant = tenant_of(r.adapter);
  auto length = [&](double mean, uint32_t max) {
    return uint32_t(std::clamp(std::ceil(rng_.exponential(mean)), 1.0, double(max)));
  };
  r.prompt_tokens = length(o_.prompt_mean, o_.prompt_max);
  r.max_tokens = length(o_.output_mean, o_.output_max);
  return r;
}

}  // namespace myriad::sim

namespace myriad::sim {

Result<size_t> convert_trace(const std::string& jsonl_path, const std::string& fb_path) {
  std::ifstream in(jsonl_path);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot open trace " + jsonl_path);
  std::vector<fb::TraceRequest> requests;
  std::string line;
  double last = 0;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto r = parse_trace_line(line, /*adapters=*/-1);
    const std::string where = jsonl_path + ":" + std::to_string(n) + ": ";
    if (!r) return make_error(ErrorCode::kBadFile, where + r.error().message);
    if (r->arrival_ms < last) return make_error(ErrorCode::kBadFile, where + "arrival_ms goes back in time");
    last = r->arrival_ms;
    requests.emplace_back(r->arrival_ms, r->adapter, r->prompt_tokens, r->max_tokens);
  }
  MYRIAD_TRY(write_flatbuffers_trace(requests, fb_path));
  return requests.size();
}

}  // namespace myriad::sim
