// The service under load: C concurrent streaming HTTP clients over A adapters
// of T tenants against a real myriad-node core (NodeService + HttpServer on
// 127.0.0.1 in this process), and the same workload submitted to the same
// NodeService directly (no HTTP, no protocol layer), interleaved round by
// round, and the same workload again on a bare EngineWorker (the engine on
// its own thread over its own CPU executor, no actors, no HTTP). Every
// request must end with its tokens or a clear error, exactly once; none may
// hang. Prints throughput, TTFT and ITL p50/p99 of the three and the ratios
// to the bare engine: what the service layers (actors; actors + HTTP) cost.
// TTFT is to the first token event (HTTP asks for logprobs 0, so a token
// whose text is held back still streams), and beside it the engine's own
// TTFT of the same requests, so what the layers add is read apart from the
// queue's order, which moves a saturated run's p50 by hundreds of ms.
// clang-format off
#include <utility>  // before Boost 1.74's asio/awaitable.hpp, which uses std::exchange without it
// clang-format on
#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "gpu/cpu/cpu_executor.h"
#include "http_server.h"
#include "node_service.h"
#include "nodes/cli_app.h"
#include "runtime/adapter_cache.h"
#include "runtime/adapter_source.h"
#include "runtime/checkpoint.h"
#include "runtime/engine_worker.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"

using namespace myriad;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace fs = std::filesystem;
using WallClock = std::chrono::steady_clock;

namespace {

struct Args {
  std::string model;  // "" = a tiny random model in a temp folder
  int adapters = 32;
  int tenants = 2;
  int clients = 200;
  int requests_per_client = 2;
  int prompt_len = 32;
  int output_len = 16;
  int slots = 8;
  int rounds = 2;
  int threads = 0;
  double think_ms = 0;
  uint64_t seed = 1;
  std::string admission = "timeslice";  // the node's --admission
  bool json = false;
};

struct Job {
  int adapter = 0;  // index; its tenant is adapter % tenants
  std::vector<int32_t> prompt;
  double think_ms = 0;  // the client waits this long before sending it (the same in every arm)
};

void think(const Job& job) {
  if (job.think_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(job.think_ms));
}

struct Outcome {
  double ttft_ms = -1;
  double submit_ms =
      -1;  // the submitting call itself (resolve + generate; EngineWorker::submit), not over HTTP
  std::vector<double> itl_ms;
  double egress_ms = -1;  // the first token: engine event -> client (not over HTTP: its events carry no engine time)
  int tokens = 0;
  int finals = 0;  // final answers seen: must be 1
  std::string error;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(q * double(v.size())))];
}

struct Figures {
  double tok_s = 0, ttft_p50 = 0, ttft_p99 = 0, itl_p50 = 0, itl_p99 = 0, submit_p50 = 0, seconds = 0;
  double ttft_mean = 0;         // as the clients saw it
  double engine_ttft_mean = 0;  // the engine's own (Engine::submit -> first token event), same requests
  double step_host_ms = 0;      // mean host time of a step around the executor (plan + apply)
  double step_device_ms = 0;    // mean device time of a step
  // What the layers between the client and Engine::submit add to TTFT, per
  // request on average (mean(client) - mean(engine's own)): the figure the
  // queue's order cannot move, where the p50 of a saturated run can.
  double service_ttft = 0;
  double egress_mean = 0;  // of that, the first token's way back (engine event -> client)
  int ok = 0, failed = 0, double_answered = 0;
};

// Sums and counts of the engine's histograms (mean x count is exact where
// its quantiles are bucketed), so a round's figures are the difference of
// two snapshots.
struct EngineTotals {
  double ttft_sum = 0, plan_sum = 0, complete_sum = 0, device_sum = 0;
  double ttft_count = 0, steps = 0, device_count = 0;

  static EngineTotals read(const std::string& metrics_json) {
    EngineTotals t;
    const auto j = nlohmann::json::parse(metrics_json, nullptr, false);
    if (!j.is_object()) return t;
    const nlohmann::json& m = j;  // the engine's metrics (the node's add "live" beside them)
    auto sum = [&](const nlohmann::json& h, double& total, double& count) {
      if (!h.is_object()) return;
      count = h.value("count", 0.0);
      total = h.value("mean", 0.0) * count;
    };
    double unused = 0;
    if (m.contains("overall")) sum(m["overall"]["ttft_ms"], t.ttft_sum, t.ttft_count);
    if (m.contains("step_plan_ms")) sum(m["step_plan_ms"], t.plan_sum, t.steps);
    if (m.contains("step_complete_ms")) sum(m["step_complete_ms"], t.complete_sum, unused);
    if (m.contains("step_device_ms")) sum(m["step_device_ms"], t.device_sum, t.device_count);
    return t;
  }
};

void add_engine_figures(Figures& f, const EngineTotals& before, const EngineTotals& after) {
  auto mean = [](double sum, double count) { return count > 0 ? sum / count : 0.0; };
  f.engine_ttft_mean = mean(after.ttft_sum - before.ttft_sum, after.ttft_count - before.ttft_count);
  const double steps = after.steps - before.steps;
  f.step_host_ms = mean(after.plan_sum - before.plan_sum + after.complete_sum - before.complete_sum, steps);
  f.step_device_ms = mean(after.device_sum - before.device_sum, after.device_count - before.device_count);
  f.service_ttft = f.ttft_mean - f.engine_ttft_mean;
}

Figures summarize(const std::vector<Outcome>& out, double seconds) {
  Figures f;
  std::vector<double> ttft, itl, submit, egress;
  long tokens = 0;
  for (const Outcome& o : out) {
    if (o.finals != 1) ++f.double_answered;
    if (!o.error.empty() || o.finals == 0) {
      ++f.failed;
      continue;
    }
    ++f.ok;
    tokens += o.tokens;
    if (o.ttft_ms >= 0) ttft.push_back(o.ttft_ms);
    if (o.submit_ms >= 0) submit.push_back(o.submit_ms);
    if (o.egress_ms >= 0) egress.push_back(o.egress_ms);
    itl.insert(itl.end(), o.itl_ms.begin(), o.itl_ms.end());
  }
  f.seconds = seconds;
  f.tok_s = seconds > 0 ? double(tokens) / seconds : 0;
  f.ttft_p50 = quantile(ttft, 0.5);
  double ttft_sum = 0;
  for (double v : ttft) ttft_sum += v;
  f.ttft_mean = ttft.empty() ? 0 : ttft_sum / double(ttft.size());
  double egress_sum = 0;
  for (double v : egress) egress_sum += v;
  f.egress_mean = egress.empty() ? 0 : egress_sum / double(egress.size());
  f.ttft_p99 = quantile(ttft, 0.99);
  f.itl_p50 = quantile(itl, 0.5);
  f.itl_p99 = quantile(itl, 0.99);
  f.submit_p50 = quantile(submit, 0.5);
  return f;
}

std::string adapter_model(const Args& a, int k) {
  return "t" + std::to_string(k % a.tenants) + "/a" + std::to_string(k);
}

// One client's requests over one keep-alive connection, reading each stream
// chunk by chunk as it arrives.
void http_client(uint16_t port, const Args& a, const std::vector<Job>& jobs, std::vector<Outcome>& out) {
  net::io_context io;
  beast::tcp_stream stream(io);
  beast::error_code ec;
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
  if (!ec) stream.socket().set_option(net::ip::tcp::no_delay(true), ec);  // as curl and the OpenAI SDK do
  for (size_t j = 0; j < jobs.size(); ++j) {
    think(jobs[j]);
    Outcome& o = out[j];
    if (ec) {
      o.error = "connect: " + ec.message();
      continue;
    }
    const Job& job = jobs[j];
    nlohmann::json body = {{"model", adapter_model(a, job.adapter)},
                           {"prompt", job.prompt},
                           {"max_tokens", a.output_len},
                           {"temperature", 0},
                           {"stream", true},
                           {"logprobs", 0},  // so a token whose text is held back (part of a character) still streams
                           {"stream_options", {{"include_usage", true}}}};
    http::request<http::string_body> req{http::verb::post, "/v1/completions", 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer key-" + std::to_string(job.adapter % a.tenants));
    req.set(http::field::content_type, "application/json");
    req.body() = body.dump();
    req.prepare_payload();
    const auto t0 = WallClock::now();
    auto last = t0;
    http::write(stream, req, ec);
    if (ec) {
      o.error = "write: " + ec.message();
      continue;
    }
    beast::flat_buffer buf;
    http::response_parser<http::empty_body> head;
    http::read_header(stream, buf, head, ec);
    if (ec || head.get().result() != http::status::ok) {
      o.error = ec ? "read: " + ec.message() : "HTTP " + std::to_string(head.get().result_int());
      o.finals = 1;
      continue;
    }
    http::response_parser<http::string_body> p{std::move(head)};
    std::string pending;
    auto on_chunk = [&](std::uint64_t, beast::string_view data, beast::error_code&) -> std::size_t {
      pending.append(data.data(), data.size());
      for (size_t nl; (nl = pending.find("\n\n")) != std::string::npos;) {
        const std::string event = pending.substr(0, nl);
        pending.erase(0, nl + 2);
        if (event.rfind("data: ", 0) != 0) continue;
        const std::string_view payload = std::string_view(event).substr(6);
        if (payload == "[DONE]") {
          ++o.finals;
          continue;
        }
        const auto j = nlohmann::json::parse(payload, nullptr, false);
        if (j.is_discarded()) continue;
        if (j.contains("error")) o.error = j["error"].value("message", "error");
        if (j.contains("usage") && j["usage"].is_object())
          o.tokens = j["usage"].value("completion_tokens", 0);
        if (j.contains("choices") && !j["choices"].empty() && j["choices"][0]["logprobs"].is_object() &&
            !j["choices"][0]["logprobs"]["tokens"].empty()) {
          const auto now = WallClock::now();
          if (o.ttft_ms < 0) {
            o.ttft_ms = std::chrono::duration<double, std::milli>(now - t0).count();
          } else {
            o.itl_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
          }
          last = now;
        }
      }
      return data.size();
    };
    p.on_chunk_body(on_chunk);
    while (!p.is_done() && !ec) http::read_some(stream, buf, p, ec);
    if (ec) o.error = "read: " + ec.message();
  }
}

// The same requests through NodeService::generate directly.
void direct_client(node::NodeService& s, const Args& a, const std::vector<Job>& jobs,
                   std::vector<Outcome>& out) {
  for (size_t j = 0; j < jobs.size(); ++j) {
    think(jobs[j]);
    Outcome& o = out[j];
    const Job& job = jobs[j];
    const auto s0 = WallClock::now();
    auto ref = s.resolve(adapter_model(a, job.adapter),
                         node::Caller{"t" + std::to_string(job.adapter % a.tenants), false});
    if (!ref.ok()) {
      o.error = ref.error().message;
      continue;
    }
    node::GenerateCall call;
    call.model = ref.value();
    call.prompt = job.prompt;
    call.max_tokens = uint32_t(a.output_len);
    call.sampling.temperature = 0;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    const auto t0 = WallClock::now();
    auto last = t0;
    auto id = s.generate(std::move(call), [&](const RequestEvent& e) {
      std::lock_guard lock(mu);
      const auto now = WallClock::now();
      if (e.kind == EventKind::kToken) {
        if (o.ttft_ms < 0) {
          o.ttft_ms = std::chrono::duration<double, std::milli>(now - t0).count();
          // The engine's clock is steady_clock's milliseconds, as WallClock is.
          o.egress_ms = std::chrono::duration<double, std::milli>(now.time_since_epoch()).count() - e.time_ms;
        } else {
          o.itl_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
        }
        last = now;
      }
      if (e.is_final()) {
        ++o.finals;
        o.tokens = int(e.num_output_tokens);
        if (e.kind == EventKind::kFailed) o.error = e.error.message;
        done = true;
        cv.notify_all();
      }
    });
    o.submit_ms = std::chrono::duration<double, std::milli>(WallClock::now() - s0).count();
    if (!id.ok()) {
      o.error = id.error().message;
      o.finals = 1;
      continue;
    }
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
}

// The bare engine: an EngineWorker whose events go to per-request callbacks.
class EngineArm final : public EventSink {
 public:
  using Callback = std::function<void(const RequestEvent&)>;
  void add(RequestId id, Callback cb) {
    std::lock_guard lock(mu_);
    callbacks_[id] = std::move(cb);
  }
  void on_event(const RequestEvent& e) override {
    Callback cb;
    {
      std::lock_guard lock(mu_);
      auto it = callbacks_.find(e.id);
      if (it == callbacks_.end()) return;
      cb = it->second;
      if (e.is_final()) callbacks_.erase(it);
    }
    cb(e);
  }
  std::unique_ptr<Executor> executor;
  // The node's fetch path (a host cache with its own fetch thread), loading
  // from memory instead of the store: the arms differ by the service layers only.
  std::unique_ptr<AdapterCache> cache;
  std::unique_ptr<CachedAdapterSource> adapters;
  std::unique_ptr<EngineWorker> worker;
  std::vector<int32_t> eos;
  std::atomic<RequestId> next_id{1};

 private:
  std::mutex mu_;
  std::unordered_map<RequestId, Callback> callbacks_;
};

void engine_client(EngineArm& e, const Args& a, const std::vector<Job>& jobs, std::vector<Outcome>& out) {
  for (size_t j = 0; j < jobs.size(); ++j) {
    think(jobs[j]);
    Outcome& o = out[j];
    const Job& job = jobs[j];
    Request r;
    r.id = e.next_id.fetch_add(1);
    r.adapters = {AdapterUse{
        AdapterId{"t" + std::to_string(job.adapter % a.tenants), "a" + std::to_string(job.adapter), 1},
        1.0f}};
    r.prompt = job.prompt;
    r.max_tokens = uint32_t(a.output_len);
    r.sampling.temperature = 0;
    r.stop_token_ids = e.eos;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    const auto t0 = WallClock::now();
    auto last = t0;
    e.add(r.id, [&](const RequestEvent& ev) {
      std::lock_guard lock(mu);
      const auto now = WallClock::now();
      if (ev.kind == EventKind::kToken) {
        if (o.ttft_ms < 0) {
          o.ttft_ms = std::chrono::duration<double, std::milli>(now - t0).count();
          // The engine's clock is steady_clock's milliseconds, as WallClock is.
          o.egress_ms = std::chrono::duration<double, std::milli>(now.time_since_epoch()).count() - ev.time_ms;
        } else {
          o.itl_ms.push_back(std::chrono::duration<double, std::milli>(now - last).count());
        }
        last = now;
      }
      if (ev.is_final()) {
        ++o.finals;
        o.tokens = int(ev.num_output_tokens);
        if (ev.kind == EventKind::kFailed) o.error = ev.error.message;
        done = true;
        cv.notify_all();
      }
    });
    const auto s0 = WallClock::now();
    const Status st = e.worker->submit(std::move(r));
    o.submit_ms = std::chrono::duration<double, std::milli>(WallClock::now() - s0).count();
    if (!st.ok()) {
      o.error = st.error().message;
      o.finals = 1;
      continue;
    }
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
}

template <class Fn>
Figures run_round(const Args& a, const std::vector<std::vector<Job>>& jobs,
                  const std::function<std::string()>& engine_metrics, Fn client) {
  const EngineTotals before = EngineTotals::read(engine_metrics());
  std::vector<std::vector<Outcome>> out(jobs.size());
  for (size_t c = 0; c < jobs.size(); ++c) out[c].resize(jobs[c].size());
  const auto t0 = WallClock::now();
  std::vector<std::thread> threads;
  for (size_t c = 0; c < jobs.size(); ++c) threads.emplace_back([&, c] { client(jobs[c], out[c]); });
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(WallClock::now() - t0).count();
  std::vector<Outcome> all;
  for (auto& v : out) all.insert(all.end(), v.begin(), v.end());
  (void)a;
  Figures f = summarize(all, seconds);
  add_engine_figures(f, before, EngineTotals::read(engine_metrics()));
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("The service under load: concurrent streaming HTTP clients vs the same requests in-process.",
               "service_load");
  cli::set_conventions(app);
  app.add_option("--model", a.model, "model folder (default: a tiny random model in a temp folder)")
      ->option_text("DIR");
  app.add_option("--adapters", a.adapters, "random adapters, spread over the tenants (default 32)")
      ->check(cli::at_least(1));
  app.add_option("--tenants", a.tenants, "tenants (default 2)")->check(cli::at_least(1));
  app.add_option("--clients", a.clients, "concurrent clients (default 200)")->check(cli::at_least(1));
  app.add_option("--requests-per-client", a.requests_per_client,
                 "requests each client sends in turn (default 2)")
      ->check(cli::at_least(1));
  app.add_option("--prompt-len", a.prompt_len, "prompt tokens (default 32)")->check(cli::at_least(1));
  app.add_option("--output-len", a.output_len, "max tokens per request (default 16)")
      ->check(cli::at_least(1));
  app.add_option("--slots", a.slots, "adapter slots (default 8)")->check(cli::at_least(1));
  app.add_option("--rounds", a.rounds, "rounds of each mode, interleaved (default 2)")
      ->check(cli::at_least(1));
  app.add_option("--threads", a.threads, "CPU threads of the executor (default: every core)");
  app.add_option("--think-ms", a.think_ms,
                 "mean of a random (exponential) pause of each client before each request (default 0: none); "
                 "arrivals then fall anywhere in an engine step rather than just after one ended")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", a.seed, "workload seed (default 1)");
  app.add_option("--admission", a.admission,
                 "the node's admission: timeslice (the scheduler actor's active set) or fifo (default timeslice)")
      ->check(CLI::IsMember({"timeslice", "fifo"}));
  app.add_flag("--json", a.json, "print JSON instead of the table");
  cli::add_log_level(app, log_level);
  if (const auto code = cli::parse(app, argc, argv, log_level)) return *code;

  const fs::path work = fs::temp_directory_path() / ("myriad-service-load-" + std::to_string(::getpid()));
  fs::remove_all(work);
  fs::create_directories(work);
  auto fail = [&](const Error& e) {
    std::fprintf(stderr, "service_load: %s\n", e.to_string().c_str());
    fs::remove_all(work);
    return 1;
  };
  std::string model = a.model;
  if (model.empty()) {
    model = (work / "tiny").string();
    MakeModelOptions mo;
    mo.shape = "tiny";
    mo.seed = 1;
    mo.dtype = DType::kF32;
    mo.out_dir = model;
    if (Status st = make_model(mo); !st.ok()) return fail(st.error());
  }
  auto cfg = load_model_config(model);
  if (!cfg.ok()) return fail(cfg.error());
  node::NodeOptions no;
  no.model_dir = model;
  no.model_name = "base";
  no.data_dir = (work / "data").string();
  no.slots = a.slots;
  no.threads = a.threads;
  no.max_running = 64;
  no.quantum_ms = 20;
  no.admission = a.admission;
  auto service = node::NodeService::start(no);
  if (!service.ok()) return fail(service.error());
  nlohmann::json keys = nlohmann::json::object();
  for (int t = 0; t < a.tenants; ++t) keys["key-" + std::to_string(t)] = "t" + std::to_string(t);
  auto tenants = node::Tenants::parse(keys.dump(), "generated keys");
  if (!tenants.ok()) return fail(tenants.error());
  for (int k = 0; k < a.adapters; ++k) {
    const std::string dir = (work / ("adapter-" + std::to_string(k))).string();
    auto w = random_lora(cfg.value(), 8, 16.0f, a.seed * 1000 + uint64_t(k), "a" + std::to_string(k), 0.1f);
    if (Status st = save_peft_adapter(dir, *w, model); !st.ok()) return fail(st.error());
    auto rec = (*service)->add_adapter_from_path(node::Caller{"t" + std::to_string(k % a.tenants), false},
                                                 "a" + std::to_string(k), dir);
    if (!rec.ok()) return fail(rec.error());
  }
  // The bare engine arm: the same model, adapters, executor options and
  // scheduler configuration (worker_scheduler_config) as the node's worker.
  EngineArm engine;
  {
    auto ck = Checkpoint::load(model);
    if (!ck.ok()) return fail(ck.error());
    auto tok = Tokenizer::load(model);
    if (!tok.ok()) return fail(tok.error());
    for (int64_t id : ck.value()->generation_config().eos_token_ids) engine.eos.push_back(int32_t(id));
    for (int64_t id : cfg.value().eos_token_ids) engine.eos.push_back(int32_t(id));
    const SchedulerConfig sc = node::worker_scheduler_config(no, cfg.value());
    gpu::cpu::CpuExecutorOptions eo;
    eo.kv_block_size = sc.kv_block_size;
    eo.kv_num_blocks = sc.num_kv_blocks;
    eo.threads = a.threads;
    eo.num_adapter_slots = a.slots;
    eo.max_adapter_rank = no.max_adapter_rank;
    auto ex = gpu::cpu::CpuExecutor::create(ck.value(), eo);
    if (!ex.ok()) return fail(ex.error());
    engine.executor = std::move(ex.value());
    engine.cache = std::make_unique<AdapterCache>(no.host_cache_bytes);
    engine.adapters = std::make_unique<CachedAdapterSource>(*engine.cache);
    for (int k = 0; k < a.adapters; ++k) {
      std::shared_ptr<const LoraWeights> w =
          random_lora(cfg.value(), 8, 16.0f, a.seed * 1000 + uint64_t(k), "a" + std::to_string(k), 0.1f);
      (void)engine.cache->add(AdapterId{"t" + std::to_string(k % a.tenants), "a" + std::to_string(k), 1},
                              [w] { return Result<std::shared_ptr<const LoraWeights>>(w); });
    }
    auto w = EngineWorker::start(sc, *engine.executor, *engine.adapters, engine, tok.value());
    if (!w.ok()) return fail(w.error());
    engine.worker = std::move(w.value());
  }

  node::HttpOptions ho;
  ho.port = 0;
  ho.limits = node::TenantLimits::create({a.clients, 0});
  auto server = node::HttpServer::start(**service, tenants.value(), ho);
  if (!server.ok()) return fail(server.error());
  const uint16_t port = (*server)->port();

  std::mt19937_64 rng(a.seed);
  std::vector<std::vector<Job>> jobs(size_t(a.clients));
  for (auto& js : jobs)
    for (int r = 0; r < a.requests_per_client; ++r) {
      Job j;
      j.adapter = int(rng() % uint64_t(a.adapters));
      for (int i = 0; i < a.prompt_len; ++i) j.prompt.push_back(int32_t(rng() % 256));  // byte tokens
      if (a.think_ms > 0) j.think_ms = std::exponential_distribution<double>(1.0 / a.think_ms)(rng);
      js.push_back(std::move(j));
    }

  std::vector<Figures> bare, direct, over_http;
  // A warm-up round (not counted): the adapters' first fetches from the store
  // and the first slot loads would otherwise land on whichever mode runs first.
  const std::function<std::string()> node_metrics = [&] { return (*service)->metrics_json(); };
  const std::function<std::string()> engine_metrics = [&] { return engine.worker->metrics_json(); };
  (void)run_round(a, jobs, node_metrics, [&](const std::vector<Job>& js, std::vector<Outcome>& out) {
    direct_client(**service, a, js, out);
  });
  (void)run_round(a, jobs, engine_metrics, [&](const std::vector<Job>& js, std::vector<Outcome>& out) {
    engine_client(engine, a, js, out);
  });
  for (int round = 0; round < a.rounds; ++round) {
    bare.push_back(run_round(a, jobs, engine_metrics, [&](const std::vector<Job>& js, std::vector<Outcome>& out) {
      engine_client(engine, a, js, out);
    }));
    direct.push_back(run_round(a, jobs, node_metrics, [&](const std::vector<Job>& js, std::vector<Outcome>& out) {
      direct_client(**service, a, js, out);
    }));
    over_http.push_back(run_round(a, jobs, node_metrics, [&](const std::vector<Job>& js, std::vector<Outcome>& out) {
      http_client(port, a, js, out);
    }));
  }
  (*server)->stop();
  (*service)->drain();
  engine.worker->stop(EngineWorker::StopMode::kDrain);
  fs::remove_all(work);

  auto median = [](std::vector<Figures> v, double Figures::*f) {
    std::sort(v.begin(), v.end(), [&](const Figures& x, const Figures& y) { return x.*f < y.*f; });
    return v[v.size() / 2].*f;
  };
  int bad = 0;
  for (const auto* set : {&bare, &direct, &over_http})
    for (const Figures& f : *set) bad += f.failed + f.double_answered;
  const int total = a.clients * a.requests_per_client;
  if (a.json) {
    nlohmann::json j;
    j["clients"] = a.clients;
    j["requests"] = total;
    j["adapters"] = a.adapters;
    j["admission"] = a.admission;
    j["tenants"] = a.tenants;
    auto fig = [&](const std::vector<Figures>& v) {
      return nlohmann::json{{"tok_s", median(v, &Figures::tok_s)},
                            {"ttft_ms_p50", median(v, &Figures::ttft_p50)},
                            {"ttft_ms_p99", median(v, &Figures::ttft_p99)},
                            {"itl_ms_p50", median(v, &Figures::itl_p50)},
                            {"itl_ms_p99", median(v, &Figures::itl_p99)},
                            {"submit_ms_p50", median(v, &Figures::submit_p50)},
                            {"ttft_ms_mean", median(v, &Figures::ttft_mean)},
                            {"engine_ttft_ms_mean", median(v, &Figures::engine_ttft_mean)},
                            {"service_ttft_ms_mean", median(v, &Figures::service_ttft)},
                            {"first_token_egress_ms_mean", median(v, &Figures::egress_mean)},
                            {"step_host_ms_mean", median(v, &Figures::step_host_ms)},
                            {"step_device_ms_mean", median(v, &Figures::step_device_ms)},
                            {"ok", v.back().ok},
                            {"failed", v.back().failed},
                            {"double_answered", v.back().double_answered}};
    };
    j["engine"] = fig(bare);
    j["direct"] = fig(direct);
    j["http"] = fig(over_http);
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf(
        "service_load: %d clients x %d requests (%d), %d adapters of %d tenants, prompt %d, output %d, "
        "%d slots, admission %s, think %.0f ms, %d rounds each after a warm-up, interleaved (medians)\n",
        a.clients, a.requests_per_client, total, a.adapters, a.tenants, a.prompt_len, a.output_len, a.slots,
        a.admission.c_str(), a.think_ms, a.rounds);
    std::printf("  %-24s %11s %11s %11s %11s %11s\n", "", "engine", "actors", "actors+HTTP", "actors/eng",
                "HTTP/eng");
    auto row = [&](const char* name, double Figures::*f) {
      const double e = median(bare, f), d = median(direct, f), h = median(over_http, f);
      if (e > 0.01)
        std::printf("  %-24s %11.2f %11.2f %11.2f %11.3f %11.3f\n", name, e, d, h, d / e, h / e);
      else
        std::printf("  %-24s %11.2f %11.2f %11.2f %11s %11s\n", name, e, d, h, "-", "-");
    };
    row("throughput (tok/s)", &Figures::tok_s);
    row("TTFT ms p50", &Figures::ttft_p50);
    row("TTFT ms p99", &Figures::ttft_p99);
    row("ITL ms p50", &Figures::itl_p50);
    row("ITL ms p99", &Figures::itl_p99);
    row("submit call ms p50", &Figures::submit_p50);  // HTTP: not timed apart (0)
    row("TTFT ms mean", &Figures::ttft_mean);
    row("  engine's own, mean", &Figures::engine_ttft_mean);
    row("  the rest (client-eng)", &Figures::service_ttft);
    row("    of it, way back", &Figures::egress_mean);  // HTTP: not measured (0)
    row("step host ms mean", &Figures::step_host_ms);
    row("step device ms mean", &Figures::step_device_ms);
    std::printf("  %-24s %11d %11d %11d\n", "answered ok (last round)", bare.back().ok, direct.back().ok,
                over_http.back().ok);
    std::printf("  %-24s %11d %11d %11d\n", "failed / not once",
                bare.back().failed + bare.back().double_answered,
                direct.back().failed + direct.back().double_answered,
                over_http.back().failed + over_http.back().double_answered);
  }
  return bad == 0 ? 0 : 1;
}
