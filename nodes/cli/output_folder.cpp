#include "output_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace myriad::cli {

namespace fs = std::filesystem;

Status write_synced(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(ErrorCode::kIo, path + ": cannot create: " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return make_error(ErrorCode::kIo, path + ": write failed: " + std::strerror(errno));
    }
    done += size_t(n);
  }
  const bool ok = ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return make_error(ErrorCode::kIo, path + ": fsync failed");
  return ok_status();
}

fs::path temp_sibling(const fs::path& dest) {
  const fs::path tmp = dest.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return tmp;
}

Status move_into_place(const fs::path& tmp, const fs::path& dest) {
  std::error_code ec;
  fs::path old;
  if (fs::exists(dest, ec)) {
    old = dest.string() + ".old-" + std::to_string(::getpid());
    fs::rename(dest, old, ec);
    if (ec) return make_error(ErrorCode::kIo, dest.string() + ": cannot move the old folder aside: " + ec.message());
  }
  fs::rename(tmp, dest, ec);
  if (ec) return make_error(ErrorCode::kIo, dest.string() + ": cannot rename the new folder into place: " + ec.message());
  if (!old.empty()) fs::remove_all(old, ec);
  return ok_status();
}

}  // namespace myriad::cli
