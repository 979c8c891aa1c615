// bench/tokenize: encode/decode throughput of the fixture tokenizers on a
// ~1 MB text made of the golden texts (repeated, with a counter so that the
// words are not all cache hits). Prints a table; --json prints JSON.
//   ./build/bench/tokenize [--json] [--fixtures DIR] [--mb N]
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nodes/cli_app.h"
#include "runtime/tokenizer.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of this thread: on a shared, oversubscribed machine wall time
// mostly measures the other processes.
double cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

std::string corpus(const std::string& fixtures, size_t bytes) {
  std::vector<std::string> texts;
  for (const char* name : {"mistral", "llama3", "qwen3"}) {
    std::ifstream f(fixtures + "/tokenizers/" + name + "/golden.json");
    std::stringstream ss;
    ss << f.rdbuf();
    const auto g = nlohmann::json::parse(ss.str(), nullptr, false);
    if (g.is_discarded()) continue;
    for (const auto& c : g["cases"]) texts.push_back(c["text"].get<std::string>());
  }
  std::string out;
  for (size_t i = 0; out.size() < bytes && !texts.empty(); ++i) {
    out += texts[i % texts.size()];
    out += " (" + std::to_string(i) + ")\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  bool json_out = false;
  std::string fixtures = std::getenv("MYRIAD_FIXTURES") ? std::getenv("MYRIAD_FIXTURES") : "";
  double mb = 1.0;
  myriad::LogLevel log_level = myriad::LogLevel::kWarn;
  CLI::App app("Encode/decode throughput of the fixture tokenizers on a text made of their golden texts.", "tokenize");
  myriad::cli::set_conventions(app);
  app.add_flag("--json", json_out, "print JSON instead of the table");
  app.add_option("--fixtures", fixtures, "fixtures folder (default: $MYRIAD_FIXTURES, else tests/fixtures)")
      ->option_text("DIR");
  app.add_option("--mb", mb, "megabytes of text (default 1)")->option_text("N");
  myriad::cli::add_log_level(app, log_level);
  if (const auto exit_code = myriad::cli::parse(app, argc, argv, log_level)) return *exit_code;
  if (fixtures.empty()) fixtures = "tests/fixtures";  // run from the repository root
  const std::string text = corpus(fixtures, size_t(mb * 1e6));
  if (text.empty()) {
    std::fprintf(stderr, "tokenize: no golden texts under %s/tokenizers\n", fixtures.c_str());
    return 1;
  }
  nlohmann::json results = nlohmann::json::array();
  if (!json_out)
    std::printf("%-8s %8s %9s %9s %12s %14s %12s %12s\n", "name", "load_s", "text_MB", "tokens", "encode_MB/s",
                "encode_MB/cpu_s", "warm_MB/s", "decode_MB/s");
  for (const char* name : {"mistral", "llama3", "qwen3"}) {
    double t0 = now_s();
    auto tok = myriad::Tokenizer::load(fixtures + "/tokenizers/" + name);
    const double load_s = now_s() - t0;
    if (!tok.ok()) {
      std::fprintf(stderr, "tokenize: %s\n", tok.error().to_string().c_str());
      return 1;
    }
    t0 = now_s();
    const double c0 = cpu_s();
    const auto ids = tok.value()->encode(text, false);
    const double cold_cpu_s = cpu_s() - c0;
    const double cold_s = now_s() - t0;  // empty word cache
    t0 = now_s();
    const auto ids2 = tok.value()->encode(text, false);
    const double warm_s = now_s() - t0;  // cache filled by the first pass
    t0 = now_s();
    const std::string back = tok.value()->decode(ids);
    const double dec_s = now_s() - t0;
    if (ids != ids2) {
      std::fprintf(stderr, "tokenize: %s: second encode differs\n", name);
      return 1;
    }
    const double mbytes = double(text.size()) / 1e6;
    results.push_back({{"tokenizer", name},
                       {"load_s", load_s},
                       {"text_bytes", text.size()},
                       {"tokens", ids.size()},
                       {"encode_s", cold_s},
                       {"encode_mb_per_s", mbytes / cold_s},
                       {"encode_cpu_s", cold_cpu_s},
                       {"encode_mb_per_cpu_s", mbytes / cold_cpu_s},
                       {"encode_warm_mb_per_s", mbytes / warm_s},
                       {"decode_mb_per_s", double(back.size()) / 1e6 / dec_s}});
    if (!json_out)
      std::printf("%-8s %8.2f %9.2f %9zu %12.1f %14.1f %12.1f %12.1f\n", name, load_s, mbytes, ids.size(),
                  mbytes / cold_s, mbytes / cold_cpu_s, mbytes / warm_s, double(back.size()) / 1e6 / dec_s);
  }
  if (json_out) std::printf("%s\n", nlohmann::json{{"bench", "tokenize"}, {"results", results}}.dump(2).c_str());
  return 0;
}
