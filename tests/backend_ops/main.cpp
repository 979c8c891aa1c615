// backend_ops: every op case (cases.cpp) on every backend against the
// reference, then one table op x backend. Exit status 1 if any cell failed.
//
//   backend_ops [-o OP] [-b BACKEND] [-v] [--json FILE]
//     -o      only rows containing OP (e.g. "rmsnorm", "gemm bf16")
//     -b      only backends containing BACKEND (e.g. "cuda", "cpu:portable")
//     -v      one line per case and backend
//     --json  also write the table as JSON (scripts/gpu-check's summary reads it)
// Inputs come from a fixed seed (MYRIAD_TEST_SEED overrides it); each case
// derives its own from the seed and its name, so a failure reruns alone with
// the same inputs (-o and the printed seed).
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "harness.h"
#include "test_seed.h"

namespace myriad::backend_ops {
namespace {

constexpr uint64_t kDefaultSeed = 20261205;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t fnv1a(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

struct Backend {
  std::string name;
  bool cuda = false;
  gpu::cpu::MatmulIsa isa = gpu::cpu::MatmulIsa::kAmx;  // cpu: the ceiling (kAmx = the dispatcher's pick)
  std::string skip;                                     // non-empty: every cell skipped, why
};

struct Cell {
  int pass = 0, fail = 0, unsupported = 0, skipped = 0;
  double worst = 0;  // largest |got - ref| / (atol + rtol |ref|) over the cases that ran
  std::string why;   // first unsupported / skipped reason
};

// Worst error ratio of one output; fills `detail` on the first violation.
double compare(const Expected& e, const Got& g, Tol tol, std::string& detail) {
  if (g.v.size() != e.v.size()) {
    detail = e.name + ": " + std::to_string(g.v.size()) + " values, expected " + std::to_string(e.v.size());
    return INFINITY;
  }
  if (e.exact) tol = {};
  double worst = 0;
  size_t bad = 0, at = 0;
  for (size_t i = 0; i < e.v.size(); ++i) {
    const double err = std::fabs(double(g.v[i]) - double(e.v[i]));
    const double lim = tol.atol + tol.rtol * std::fabs(double(e.v[i]));
    const double r = !std::isfinite(g.v[i]) ? INFINITY : err == 0 ? 0 : lim == 0 ? INFINITY : err / lim;
    if (r > 1 && bad++ == 0) at = i;
    worst = std::max(worst, r);
  }
  if (bad) {
    char buf[320];
    std::snprintf(buf, sizeof buf, "%s: %zu of %zu out of tolerance (atol %.3g, rtol %.3g%s); first at %zu: got %.9g, ref %.9g",
                  e.name.c_str(), bad, e.v.size(), tol.atol, tol.rtol, e.exact ? ", exact" : "", at,
                  double(g.v[at]), double(e.v[at]));
    detail = buf;
  }
  return worst;
}

std::string cell_text(const Cell& c) {
  char buf[64];
  if (c.fail) {
    std::snprintf(buf, sizeof buf, "FAIL %d/%d %.2g", c.fail, c.fail + c.pass, c.worst);
  } else if (c.pass) {
    std::snprintf(buf, sizeof buf, "pass %.2g%s", c.worst, c.unsupported ? " +unsup" : "");
  } else if (c.skipped) {
    std::snprintf(buf, sizeof buf, "skipped");
  } else {
    std::snprintf(buf, sizeof buf, "unsupported");
  }
  return buf;
}

// {"failed": N, "backends": [...], "rows": [{"op": ..., "cells": [{"status", "worst", "why"}]}]};
// strings here are our own row names and reasons, so escaping " and \ is enough.
bool write_json(const std::string& path, const std::vector<std::string>& rows, const std::vector<Backend>& backends,
                const std::map<std::string, std::vector<Cell>>& table, int failures) {
  auto q = [](const std::string& s) {
    std::string o = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') o += '\\';
      o += ch;
    }
    return o + "\"";
  };
  FILE* f = std::fopen(path.c_str(), "w");
  if (!f) return false;
  std::fprintf(f, "{\"failed\": %d, \"backends\": [", failures);
  for (size_t b = 0; b < backends.size(); ++b) std::fprintf(f, "%s%s", b ? ", " : "", q(backends[b].name).c_str());
  std::fprintf(f, "],\n \"rows\": [");
  for (size_t r = 0; r < rows.size(); ++r) {
    std::fprintf(f, "%s\n  {\"op\": %s, \"cells\": [", r ? "," : "", q(rows[r]).c_str());
    const auto& cells = table.at(rows[r]);
    for (size_t b = 0; b < cells.size(); ++b) {
      const Cell& c = cells[b];
      const char* status = c.fail ? "fail" : c.pass ? "pass" : c.skipped ? "skipped" : "unsupported";
      std::fprintf(f, "%s{\"status\": \"%s\", \"worst\": %.3g, \"why\": %s}", b ? ", " : "", status,
                   std::isfinite(c.worst) ? c.worst : 1e300, q(c.why.empty() ? backends[b].skip : c.why).c_str());
    }
    std::fprintf(f, "]}");
  }
  std::fprintf(f, "\n]}\n");
  return std::fclose(f) == 0;
}

int run(int argc, char** argv) {
  std::string op_filter, backend_filter, json_path;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "-o" || a == "-b") && i + 1 < argc) {
      (a == "-o" ? op_filter : backend_filter) = argv[++i];
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (a == "-v") {
      verbose = true;
    } else {
      std::fprintf(stderr, "usage: backend_ops [-o OP] [-b BACKEND] [-v] [--json FILE]\n");
      return 2;
    }
  }
  uint64_t base_seed = kDefaultSeed;
  if (const char* e = std::getenv("MYRIAD_TEST_SEED"); e != nullptr && *e != '\0') base_seed = std::strtoull(e, nullptr, 10);
  std::printf("backend_ops: seed %" PRIu64 " (%s)\n", base_seed,
              base_seed == kDefaultSeed ? "fixed; MYRIAD_TEST_SEED=N overrides" : "from MYRIAD_TEST_SEED");

  // Backends: the CPU as its dispatcher picks, each lower ISA forced with
  // matmul_limit_isa (AMX engages only under the dispatcher's pick, for bf16
  // at >= 5 tokens), and CUDA.
  using gpu::cpu::MatmulIsa;
  gpu::cpu::matmul_limit_isa(MatmulIsa::kAmx);
  const MatmulIsa best = gpu::cpu::matmul_isa();
  std::printf("backend_ops: cpu = the dispatcher's pick (%s)\n", gpu::cpu::matmul_kernel_name());
  std::vector<Backend> backends = {{"cpu", false, MatmulIsa::kAmx, {}}};
  const std::pair<const char*, MatmulIsa> variants[] = {
      {"cpu:avx512", MatmulIsa::kAvx512}, {"cpu:avx2", MatmulIsa::kAvx2}, {"cpu:portable", MatmulIsa::kPortable}};
  for (const auto& [name, isa] : variants) {
    Backend b{name, false, isa, {}};
    if (isa > best) b.skip = std::string("this CPU lacks ") + (name + 4);
    backends.push_back(b);
  }
  std::string cuda_why;
  auto cuda = make_cuda_backend(cuda_why);
  backends.push_back({"cuda", true, MatmulIsa::kAmx, cuda ? std::string() : cuda_why});
  if (!cuda) std::printf("backend_ops: cuda cells skipped: %s\n", cuda_why.c_str());
  std::erase_if(backends, [&](const Backend& b) { return b.name.find(backend_filter) == std::string::npos; });

  gpu::cpu::ThreadPool pool(2);
  const CpuBackend cpu_be{&pool, false}, cpu_portable{&pool, true};
  std::vector<std::string> rows;
  std::map<std::string, std::vector<Cell>> table;
  int failures = 0, ran = 0;
  const auto t0 = std::chrono::steady_clock::now();
  Cases cases = all_cases();
  for (auto& c : cases) {
    const std::string row = c->row();
    if (row.find(op_filter) == std::string::npos) continue;
    ++ran;
    if (!table.count(row)) {
      rows.push_back(row);
      table[row].resize(backends.size());
    }
    const uint64_t seed = splitmix64(base_seed ^ fnv1a(row + "|" + c->shape()));
    std::mt19937_64 rng(seed);
    c->make_inputs(rng);
    const std::vector<Expected> want = c->reference();
    for (size_t b = 0; b < backends.size(); ++b) {
      const Backend& be = backends[b];
      Cell& cell = table[row][b];
      Outcome o;
      if (be.cuda && !c->cuda_unsupported().empty()) {
        o = Outcome::unsupported(c->cuda_unsupported());
      } else if (!be.skip.empty()) {
        o = Outcome::skipped(be.skip);
      } else if (be.cuda) {
        o = c->run_cuda(*cuda);
      } else {
        gpu::cpu::matmul_limit_isa(be.isa);
        o = c->run_cpu(be.isa == MatmulIsa::kPortable ? cpu_portable : cpu_be);
        gpu::cpu::matmul_limit_isa(MatmulIsa::kAmx);
      }
      std::string detail;
      double worst = 0;
      switch (o.kind) {
        case Outcome::Kind::kUnsupported:
          ++cell.unsupported;
          if (cell.why.empty()) cell.why = o.why;
          break;
        case Outcome::Kind::kSkipped:
          ++cell.skipped;
          if (cell.why.empty()) cell.why = o.why;
          break;
        case Outcome::Kind::kError:
          worst = INFINITY;
          detail = "error: " + o.why;
          break;
        case Outcome::Kind::kRan:
          if (o.out.size() != want.size()) {
            worst = INFINITY;
            detail = std::to_string(o.out.size()) + " outputs, expected " + std::to_string(want.size());
            break;
          }
          for (size_t i = 0; i < want.size(); ++i) {
            std::string d;
            const double w = compare(want[i], o.out[i], c->tol(i, o.out[i].stored), d);
            worst = std::max(worst, w);
            if (!d.empty() && detail.empty()) detail = d;
          }
          break;
      }
      if (o.kind == Outcome::Kind::kRan || o.kind == Outcome::Kind::kError) {
        const bool ok = worst <= 1;
        ok ? ++cell.pass : ++cell.fail;
        cell.worst = std::max(cell.worst, worst);
        if (!ok) {
          ++failures;
          std::printf("FAIL  %s [%s] on %s: %s; seed %" PRIu64 ": rerun with MYRIAD_TEST_SEED=%" PRIu64
                      " backend_ops -o '%s' -b %s\n",
                      row.c_str(), c->shape().c_str(), be.name.c_str(), detail.c_str(), base_seed, base_seed,
                      row.c_str(), be.name.c_str());
        } else if (verbose) {
          std::printf("ok    %s [%s] on %s: worst %.3g\n", row.c_str(), c->shape().c_str(), be.name.c_str(), worst);
        }
      } else if (verbose) {
        std::printf("%s %s [%s] on %s: %s\n", o.kind == Outcome::Kind::kSkipped ? "skip " : "unsup", row.c_str(),
                    c->shape().c_str(), be.name.c_str(), o.why.c_str());
      }
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  // The table: pass + worst error ratio (1 = at the tolerance), FAIL
  // failed/ran, skipped, unsupported; then why for each of the last two.
  size_t w0 = 2;
  for (const auto& r : rows) w0 = std::max(w0, r.size());
  std::printf("\n%-*s", int(w0), "op");
  for (const auto& b : backends) std::printf("  %-16s", b.name.c_str());
  std::printf("\n");
  // reason -> (rows, backends) it was given for
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>> notes;
  auto add_once = [](std::vector<std::string>& v, const std::string& s) {
    if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
  };
  for (const auto& r : rows) {
    std::printf("%-*s", int(w0), r.c_str());
    for (size_t b = 0; b < backends.size(); ++b) {
      const Cell& cell = table[r][b];
      std::printf("  %-16s", cell_text(cell).c_str());
      if (!cell.why.empty() && (backends[b].skip.empty() || !cell.skipped)) {
        auto& [note_rows, note_backends] = notes[std::string(cell.skipped ? "skipped" : "unsupported") + "|" + cell.why];
        add_once(note_rows, r);
        add_once(note_backends, backends[b].name);
      }
    }
    std::printf("\n");
  }
  for (const auto& b : backends)
    if (!b.skip.empty()) std::printf("skipped on %s (every cell it supports): %s\n", b.name.c_str(), b.skip.c_str());
  auto joined = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& e : v) {
      if (!s.empty()) s += ", ";
      s += e;
    }
    return s;
  };
  for (const auto& [key, where] : notes) {
    const size_t bar = key.find('|');
    std::printf("%s on %s: %s\n    rows: %s\n", key.substr(0, bar).c_str(), joined(where.second).c_str(),
                key.substr(bar + 1).c_str(), joined(where.first).c_str());
  }
  std::printf("backend_ops: %d cases x %zu backends, %d cells failed, %.1f s\n", ran, backends.size(), failures, secs);
  if (!json_path.empty() && !write_json(json_path, rows, backends, table, failures)) {
    std::printf("backend_ops: cannot write %s\n", json_path.c_str());
    return 1;
  }
  if (failures) std::printf("backend_ops: FAILED; %s\n", ::myriad::testing::seed_note(base_seed).c_str());
  return failures ? 1 : 0;
}

}  // namespace
}  // namespace myriad::backend_ops

int main(int argc, char** argv) { return myriad::backend_ops::run(argc, argv); }
