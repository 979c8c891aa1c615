// Where the test data lives: tests/fixtures/ in this repository (its README
// says how each file was made). MYRIAD_FIXTURES in the environment overrides
// the compiled-in path, e.g. for a copy of the fixtures on another machine.
#pragma once

#include <cstdlib>
#include <string>

namespace myriad::testing {

inline std::string fixtures_dir() {
  if (const char* e = std::getenv("MYRIAD_FIXTURES"); e != nullptr && *e != '\0') return e;
  return MYRIAD_FIXTURES;
}

}  // namespace myriad::testing
