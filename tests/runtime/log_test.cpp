// runtime/log.h: level names round-trip, unknown names are refused naming
// the text, the level filters what reaches stderr, and a line is whole.
#include <gtest/gtest.h>

#include <string>

#include "runtime/log.h"

namespace myriad {
namespace {

// Restores the process's level (warn unless a test set it) after each test.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = log_level(); }
  void TearDown() override { set_log_level(saved_); }
  LogLevel saved_ = LogLevel::kWarn;
};

TEST_F(LogTest, LevelNamesRoundTrip) {
  for (LogLevel l : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError,
                     LogLevel::kOff}) {
    auto parsed = parse_log_level(log_level_name(l));
    ASSERT_TRUE(parsed.ok()) << log_level_name(l);
    EXPECT_EQ(parsed.value(), l);
    EXPECT_NE(std::string(log_level_names()).find(log_level_name(l)), std::string::npos);
  }
}

TEST_F(LogTest, UnknownLevelIsRefusedNamingIt) {
  for (const char* bad : {"", "verbose", "WARN", "warning", "info "}) {
    auto parsed = parse_log_level(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(parsed.error().message.find(std::string("'") + bad + "'"), std::string::npos) << parsed.error().message;
    EXPECT_NE(parsed.error().message.find("trace|debug|info|warn|error|off"), std::string::npos);
  }
}

TEST_F(LogTest, StartsAtWarn) {
  // No test before this one in the binary sets the level without restoring it.
  EXPECT_EQ(log_level(), LogLevel::kWarn);
  EXPECT_FALSE(log_enabled(LogLevel::kInfo));
  EXPECT_TRUE(log_enabled(LogLevel::kWarn));
  EXPECT_TRUE(log_enabled(LogLevel::kError));
}

TEST_F(LogTest, LevelFiltersWhatReachesStderr) {
  set_log_level(LogLevel::kInfo);
  ::testing::internal::CaptureStderr();
  log_debug("hidden {}", 1);
  log_info("shown {} of {:.1f}", 2, 3.0);
  log_error("bad {}", "thing");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(err.find("hidden"), std::string::npos) << err;
  EXPECT_NE(err.find("] [info] shown 2 of 3.0\n"), std::string::npos) << err;
  EXPECT_NE(err.find("] [error] bad thing\n"), std::string::npos) << err;
  EXPECT_LT(err.find("shown"), err.find("bad thing"));
}

TEST_F(LogTest, OffSilencesEverything) {
  set_log_level(LogLevel::kOff);
  EXPECT_FALSE(log_enabled(LogLevel::kError));
  EXPECT_FALSE(log_enabled(LogLevel::kOff));
  ::testing::internal::CaptureStderr();
  log_error("never {}", 1);
  log_write(LogLevel::kOff, "not a level to write at");
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace myriad
