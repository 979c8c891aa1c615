// engine_events: how fast the engine loop turns executor results into
// per-request token events, over a FakeExecutor that computes nothing
// (validation off), and whether a steady decode step allocates.
//
//   engine_events [--requests N] [--max-tokens M] [--running R] [--adapters A] [--slots S] [--json]
//
// Counts heap allocations with a replaced global operator new: the
// "steady" window runs decode steps with no submissions and must allocate
// nothing; "overall" includes submissions (a few allocations per request).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "nodes/cli_app.h"
#include "runtime/engine.h"
#include "runtime/fake_executor.h"

namespace {
std::atomic<uint64_t> g_allocs{0};
}  // namespace

void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
// GCC 12 inlines these into library code that got its memory from the
// operator new above and, not seeing that both are ours, calls the pair
// mismatched (-Wmismatched-new-delete): a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace {

using namespace myriad;

class CountingSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    if (e.kind == EventKind::kToken) {
      ++tokens;
      checksum += uint64_t(e.token);
    } else {
      ++finals;
    }
  }
  uint64_t tokens = 0, finals = 0, checksum = 0;
};

struct Args {
  int requests = 4096;
  int max_tokens = 256;
  int running = 256;
  int adapters = 4;
  int slots = 4;
  bool json = false;
};

// Declares every flag on `app`, bound to `a` (whose fields hold the
// defaults); each count must be at least 1.
void add_flags(CLI::App& app, Args& a) {
  const CLI::Validator positive = cli::at_least(1);
  app.add_option("--requests", a.requests, "requests submitted (default 4096)")->option_text("N")->check(positive);
  app.add_option("--max-tokens", a.max_tokens, "tokens each generates (default 256)")->option_text("M")->check(positive);
  app.add_option("--running", a.running, "requests running at a time (default 256)")->option_text("R")->check(positive);
  app.add_option("--adapters", a.adapters, "distinct adapters (default 4)")->option_text("A")->check(positive);
  app.add_option("--slots", a.slots, "adapter slots (default 4)")->option_text("S")->check(positive);
  app.add_flag("--json", a.json, "print JSON instead of the lines");
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("Token events/s of the scheduler and engine over a fake executor; allocations in steady decode.",
               "engine_events");
  cli::set_conventions(app);
  add_flags(app, args);
  cli::add_log_level(app, log_level);
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  SchedulerConfig c;
  c.num_slots = args.slots;
  c.max_running_seqs = args.running;
  c.max_tokens_per_step = std::max(args.running, 512);
  c.kv_block_size = 16;
  const int per_seq = KvBlockAllocator::blocks_for(8 + args.max_tokens, 16);
  c.num_kv_blocks = per_seq * args.running;
  c.quantum_ms = 1e9;  // this measures the event path, not swapping

  FakeExecutor exec(FakeExecutorOptions{.vocab_size = 32000,
                                        .kv_block_size = 16,
                                        .kv_num_blocks = c.num_kv_blocks,
                                        .num_adapter_slots = args.slots,
                                        .validate = false});
  StaticAdapterSource source;
  for (int i = 0; i < args.adapters; ++i) {
    auto w = std::make_shared<LoraWeights>();
    w->name = "ad" + std::to_string(i);
    source.put(AdapterId{"bench", w->name, 1}, w);
  }
  SteadyClock clock;
  CountingSink sink;
  auto er = Engine::create(c, exec, source, clock, sink);
  if (!er.ok()) {
    std::fprintf(stderr, "engine: %s\n", er.error().to_string().c_str());
    return 1;
  }
  Engine& engine = *er.value();

  const uint64_t allocs_start = g_allocs.load();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < args.requests; ++i) {
    Request r;
    r.id = RequestId(i + 1);
    if (args.adapters > 0 && i % (args.adapters + 1) != 0) r.adapters = {AdapterUse{AdapterId{"bench", "ad" + std::to_string(i % (args.adapters + 1) - 1), 1}}};
    r.prompt.assign(8, 1 + i % 100);
    r.max_tokens = uint32_t(args.max_tokens);
    r.sampling.temperature = 0.0f;
    auto id = engine.submit(std::move(r));
    if (!id.ok()) {
      std::fprintf(stderr, "submit: %s\n", id.error().to_string().c_str());
      return 1;
    }
  }
  const auto t1 = std::chrono::steady_clock::now();
  // Warm up: loads, prefills, buffers reach their steady capacity.
  for (int i = 0; i < 20 && engine.has_work(); ++i) (void)engine.step();
  // Steady window: decode steps only, no submissions.
  const int steady_steps = std::max(1, args.max_tokens / 2);
  const uint64_t tok_a = sink.tokens;
  const uint64_t alloc_a = g_allocs.load();
  const auto s0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steady_steps && engine.has_work(); ++i) (void)engine.step();
  const auto s1 = std::chrono::steady_clock::now();
  const uint64_t steady_allocs = g_allocs.load() - alloc_a;
  const uint64_t steady_tokens = sink.tokens - tok_a;
  Status st = engine.run_until_idle(100000000);
  const auto t2 = std::chrono::steady_clock::now();
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.error().to_string().c_str());
    return 1;
  }
  const uint64_t total_allocs = g_allocs.load() - allocs_start;
  const double steady_s = std::chrono::duration<double>(s1 - s0).count();
  const double loop_s = std::chrono::duration<double>(t2 - t1).count();
  const double submit_s = std::chrono::duration<double>(t1 - t0).count();
  const double steady_rate = double(steady_tokens) / steady_s;
  const double overall_rate = double(sink.tokens) / loop_s;
  const bool ok = sink.finals == uint64_t(args.requests) && sink.tokens == uint64_t(args.requests) * args.max_tokens;

  if (args.json) {
    std::printf(
        "{\"requests\":%d,\"max_tokens\":%d,\"running\":%d,\"adapters\":%d,\"token_events\":%llu,"
        "\"steady_token_events_per_s\":%.0f,\"overall_token_events_per_s\":%.0f,\"steady_allocs\":%llu,"
        "\"steady_tokens\":%llu,\"allocs_per_token_overall\":%.4f,\"submit_us_per_request\":%.3f,\"all_answered\":%s}\n",
        args.requests, args.max_tokens, args.running, args.adapters, (unsigned long long)sink.tokens, steady_rate,
        overall_rate, (unsigned long long)steady_allocs, (unsigned long long)steady_tokens,
        double(total_allocs) / double(sink.tokens), submit_s * 1e6 / args.requests, ok ? "true" : "false");
  } else {
    std::printf("engine_events: %d requests x %d tokens, %d running, %d adapters in %d slots (fake executor)\n",
                args.requests, args.max_tokens, args.running, args.adapters, args.slots);
    std::printf("  %-34s %14.0f\n", "steady token events/s", steady_rate);
    std::printf("  %-34s %14.0f\n", "overall token events/s", overall_rate);
    std::printf("  %-34s %14llu (over %llu tokens)\n", "steady-window allocations", (unsigned long long)steady_allocs,
                (unsigned long long)steady_tokens);
    std::printf("  %-34s %14.4f\n", "allocations per token (overall)", double(total_allocs) / double(sink.tokens));
    std::printf("  %-34s %14.3f\n", "submit us/request", submit_s * 1e6 / args.requests);
    std::printf("  %-34s %14s\n", "every request answered once", ok ? "yes" : "NO");
  }
  return ok && steady_allocs == 0 ? 0 : 1;
}
