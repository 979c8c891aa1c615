#include "runtime/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "store_files.h"

namespace myriad {

namespace {
Error io_error(const std::string& path, const char* what, int err) {
  return make_error(ErrorCode::kIo, path + ": " + what + " failed: " + std::strerror(err));
}
}  // namespace

Status write_file_atomically_with(const std::string& path,
                                  const std::function<Status(int fd, const std::string& temp_path)>& fill) {
  // Unique across the processes (pid) and threads (counter) that may write
  // the same path at once; each renames its own complete file.
  static std::atomic<uint64_t> next_temp{0};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(next_temp++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(tmp, "open", errno);
  Status written = fill(fd, tmp);
  if (written.ok() && ::fsync(fd) != 0) written = io_error(tmp, "fsync", errno);
  if (::close(fd) != 0 && written.ok()) written = io_error(tmp, "close", errno);
  if (written.ok()) written = store::rename_path(tmp, path);
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    return written;
  }
  const std::string dir = std::filesystem::path(path).parent_path().string();
  return store::fsync_dir(dir.empty() ? "." : dir);
}

Status write_file_atomically(const std::string& path, std::string_view bytes) {
  return write_file_atomically_with(path, [&](int fd, const std::string& tmp) -> Status {
    const char* p = bytes.data();
    size_t left = bytes.size();
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        return io_error(tmp, "write", errno);
      }
      p += n;
      left -= size_t(n);
    }
    return ok_status();
  });
}

}  // namespace myriad
