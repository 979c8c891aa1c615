// What the CUDA benches share: their error handling (a failed call ends the
// program with its name and the error: a benchmark has nothing to recover,
// so call sites read as the work they time) and their output of rows.
#pragma once

#include <cerrno>  // program_invocation_short_name (glibc)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.h"

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}
template <class T>
T must(myriad::Result<T> r, const char* what = nullptr) {
  if (!r.ok()) die((what ? std::string(what) + ": " : std::string()) + r.error().to_string());
  return std::move(r.value());
}
inline void must(const myriad::Status& s, const char* what = nullptr) {
  if (!s.ok()) die((what ? std::string(what) + ": " : std::string()) + s.error().to_string());
}

// Rows already formatted as JSON objects: {"rows":[...]} with --json, else
// one a line.
inline void print_rows(const std::vector<std::string>& rows, bool json) {
  if (!json) {
    for (const auto& r : rows) std::printf("%s\n", r.c_str());
    return;
  }
  std::printf("{\"rows\":[");
  for (size_t i = 0; i < rows.size(); ++i) std::printf("%s%s", i ? "," : "", rows[i].c_str());
  std::printf("]}\n");
}
