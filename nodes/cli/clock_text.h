// Seconds as "M:SS" (rounded, never negative): the ETA of training progress
// lines (myriad finetune, myriad jobs --follow).
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>

namespace myriad::cli {

inline std::string clock_text(double seconds) {
  const long s = long(std::max(0.0, seconds) + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace myriad::cli
