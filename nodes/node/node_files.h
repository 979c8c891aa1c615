// Small file and id helpers the node's stores of records share (fine-tuning
// jobs, mixture builds): reads and random ids (atomic writes:
// runtime/atomic_file.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/result.h"

namespace myriad::node {

// kIo naming the path when it cannot be read.
Result<std::string> read_file(const std::string& path);
// n random hex digits (ids: not secrets).
std::string random_hex(size_t n);
// Seconds since the epoch (the API's created_at fields).
int64_t unix_s();

}  // namespace myriad::node
