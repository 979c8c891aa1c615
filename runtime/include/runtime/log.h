// Logging for operators: one process-wide logger writing lines to stderr,
// "[2025-01-31 12:00:00.123] [info] message", behind this header so that no
// other code names spdlog (runtime/src/log.cpp wraps it; {fmt} formats).
//
// Levels, least to most severe: trace, debug, info, warn, error; `off`
// silences everything. The level starts at warn (quiet: tests and libraries
// print nothing unless something is wrong); main() sets it once from
// `--log-level`, and nothing else reads or changes it.
//
// Thread-safe: any thread may log, and a line is written whole. The message
// is formatted only when its level is on, so a disabled debug line costs one
// atomic load. Log what helps an operator (a model loaded, an executor
// created, an adapter in a slot), never inside a step's hot loops.
//
//   log_info("model {}: {} layers, {:.2f} s", dir, n, seconds);
#pragma once

#include <fmt/core.h>

#include <string_view>
#include <utility>

#include "runtime/result.h"

namespace myriad {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// "trace", "debug", "info", "warn", "error", "off".
const char* log_level_name(LogLevel level);
// The inverse of log_level_name; anything else is kInvalidArgument naming
// the text and the accepted names.
Result<LogLevel> parse_log_level(std::string_view name);
// "trace|debug|info|warn|error|off", for usage texts.
const char* log_level_names();

void set_log_level(LogLevel level);
LogLevel log_level();
inline bool log_enabled(LogLevel level) { return level != LogLevel::kOff && level >= log_level(); }

// Writes one line at `level` (dropped when the level is off).
void log_write(LogLevel level, std::string_view message);

template <class... A>
void log_at(LogLevel level, fmt::format_string<A...> format, A&&... args) {
  if (log_enabled(level)) log_write(level, fmt::format(format, std::forward<A>(args)...));
}
template <class... A>
void log_trace(fmt::format_string<A...> format, A&&... args) {
  log_at(LogLevel::kTrace, format, std::forward<A>(args)...);
}
template <class... A>
void log_debug(fmt::format_string<A...> format, A&&... args) {
  log_at(LogLevel::kDebug, format, std::forward<A>(args)...);
}
template <class... A>
void log_info(fmt::format_string<A...> format, A&&... args) {
  log_at(LogLevel::kInfo, format, std::forward<A>(args)...);
}
template <class... A>
void log_warn(fmt::format_string<A...> format, A&&... args) {
  log_at(LogLevel::kWarn, format, std::forward<A>(args)...);
}
template <class... A>
void log_error(fmt::format_string<A...> format, A&&... args) {
  log_at(LogLevel::kError, format, std::forward<A>(args)...);
}

}  // namespace myriad
