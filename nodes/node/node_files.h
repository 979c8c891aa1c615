// Small file and id helpers the node's stores of records share (fine-tuning
// jobs, mixture builds): atomic writes and random ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "runtime/result.h"

namespace myriad::node {

// Temp file, fsync, rename, fsync of the folder: a reader sees the old file or the new one.
Status write_atomically(const std::string& path, std::string_view bytes);
// kIo naming the path when it cannot be read.
Result<std::string> read_file(const std::string& path);
// n random hex digits (ids: not secrets).
std::string random_hex(size_t n);
// Seconds since the epoch (the API's created_at fields).
int64_t unix_s();

}  // namespace myriad::node
