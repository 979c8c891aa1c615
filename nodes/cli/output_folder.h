// Writing a command's output folder so it is never seen half-written:
// files are written and fsynced inside a temporary sibling folder, which then
// replaces the destination by renames. Shared by `finetune` and `moe create`.
#pragma once

#include <filesystem>
#include <string>

#include "runtime/result.h"

namespace myriad::cli {

// Writes `text` to `path` and fsyncs it.
Status write_synced(const std::string& path, const std::string& text);

// `dest` + ".tmp-<pid>", emptied: where to build the folder.
std::filesystem::path temp_sibling(const std::filesystem::path& dest);

// Replaces `dest` with `tmp` (the old folder, if any, is moved aside first and
// removed after).
Status move_into_place(const std::filesystem::path& tmp, const std::filesystem::path& dest);

}  // namespace myriad::cli
