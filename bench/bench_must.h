// The benches' error handling: a failed call ends the program with its name
// and the error (a benchmark has nothing to recover), so call sites read as
// the work they time.
#pragma once

#include <cerrno>  // program_invocation_short_name (glibc)
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

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
