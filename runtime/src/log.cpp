// runtime/log.h over spdlog: one logger with one stderr sink, created on
// first use and never destroyed (threads may still log during exit).
#include "runtime/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

namespace myriad {
namespace {

constexpr LogLevel kLevels[] = {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo,
                                LogLevel::kWarn,  LogLevel::kError, LogLevel::kOff};

std::atomic<LogLevel> g_level{LogLevel::kWarn};

spdlog::level::level_enum to_spdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return spdlog::level::trace;
    case LogLevel::kDebug: return spdlog::level::debug;
    case LogLevel::kInfo: return spdlog::level::info;
    case LogLevel::kWarn: return spdlog::level::warn;
    case LogLevel::kError: return spdlog::level::err;
    case LogLevel::kOff: break;
  }
  return spdlog::level::off;
}

spdlog::logger& logger() {
  // Not registered in spdlog's registry and not spdlog's default logger: this
  // is the only one, and only this file reaches it. The level filter is ours
  // (g_level), so the logger itself passes everything.
  static spdlog::logger* const l = [] {
    auto* lg = new spdlog::logger("myriad", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    lg->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
    lg->set_level(spdlog::level::trace);
    lg->flush_on(spdlog::level::trace);
    return lg;
  }();
  return *l;
}

}  // namespace

const char* log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace: return "trace";
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
    case LogLevel::kOff: return "off";
  }
  return "?";
}

const char* log_level_names() { return "trace|debug|info|warn|error|off"; }

Result<LogLevel> parse_log_level(std::string_view name) {
  for (LogLevel l : kLevels)
    if (name == log_level_name(l)) return l;
  // Appended piece by piece: GCC 12's -Wrestrict misfires on "'" + string.
  std::string message = "'";
  message.append(name).append("' is not a log level (").append(log_level_names()).append(")");
  return make_error(ErrorCode::kInvalidArgument, std::move(message));
}

void set_log_level(LogLevel level) { g_level.store(level, std::memory_order_relaxed); }

LogLevel log_level() { return g_level.load(std::memory_order_relaxed); }

void log_write(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  logger().log(to_spdlog(level), "{}", message);
}

}  // namespace myriad
