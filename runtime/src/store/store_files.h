// The adapter store's file operations (internal to runtime/src/store): the
// durable steps of a publish (write + fsync, fsync a folder, rename), the
// content hash of a blob folder, and deleting trees. POSIX calls, errors as
// kIo values naming the path and strerror; nothing throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/result.h"

namespace myriad::store {

inline constexpr const char* kConfigFile = "adapter_config.json";
inline constexpr const char* kWeightsFile = "adapter_model.safetensors";

// The blob name of a (config, weights) pair: the SHA-256 of the manifest
// "<config hex>  adapter_config.json\n<weights hex>  adapter_model.safetensors\n"
// (sha256sum's output for the two files), so an operator can check a blob
// folder with `sha256sum adapter_config.json adapter_model.safetensors | sha256sum`.
std::string blob_name(std::string_view config_sha256, std::string_view weights_sha256);

// mkdir -p; an existing folder is fine.
Status make_dirs(const std::string& path);
// Creates `path` (which must not exist), writes `bytes`, fsyncs it.
Status write_file_durable(const std::string& path, std::string_view bytes);
// fsync of a folder, so that names created, renamed or removed in it persist.
Status fsync_dir(const std::string& path);
// rename(2): atomic, and replaces nothing but an empty folder.
Status rename_path(const std::string& from, const std::string& to);
// The whole file, or kBadFile/kNotFound; refuses files over `max_bytes`.
Result<std::string> read_file(const std::string& path, uint64_t max_bytes);
// SHA-256 hex of a file's bytes, read in chunks. kNotFound when missing.
Result<std::string> hash_file(const std::string& path);
bool path_exists(const std::string& path);
// The names in a folder (not "." or "..").
Result<std::vector<std::string>> list_dir(const std::string& path);
// rm -rf; a missing path is fine.
Status remove_tree(const std::string& path);

// An exclusive flock on <dir>/LOCK, held until the fd is closed (or the
// process dies, so a killed store never blocks the next open).
Result<int> lock_dir(const std::string& dir);

}  // namespace myriad::store
