#include "runtime/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "store_files.h"

namespace myriad {

Status write_file_atomically(const std::string& path, std::string_view bytes) {
  // Unique across the processes (pid) and threads (counter) that may write
  // the same path at once; each renames its own complete file.
  static std::atomic<uint64_t> next_temp{0};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(next_temp++);
  Status written = store::write_file_durable(tmp, bytes);
  if (written.ok()) written = store::rename_path(tmp, path);
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    return written;
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return store::fsync_dir(dir.empty() ? "." : dir);
}

}  // namespace myriad
