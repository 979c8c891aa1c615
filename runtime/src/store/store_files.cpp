#include "store_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "runtime/sha256.h"

namespace myriad::store {
namespace {

Error io_error(const std::string& path, const char* what, int err) {
  std::string m = path;
  m += ": ";
  m += what;
  m += " failed: ";
  m += std::strerror(err);
  return make_error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIo, std::move(m));
}

// Closes the fd when it leaves scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string blob_name(std::string_view config_sha256, std::string_view weights_sha256) {
  Sha256 h;
  h.update(config_sha256);
  h.update("  ");
  h.update(kConfigFile);
  h.update("\n");
  h.update(weights_sha256);
  h.update("  ");
  h.update(kWeightsFile);
  h.update("\n");
  return h.hex_digest();
}

Status make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return make_error(ErrorCode::kIo, path + ": cannot create the folder: " + ec.message());
  return ok_status();
}

Status write_file_durable(const std::string& path, std::string_view bytes) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)};
  if (f.fd < 0) return io_error(path, "open", errno);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    const ssize_t n = ::write(f.fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path, "write", errno);
    }
    p += n;
    left -= size_t(n);
  }
  if (::fsync(f.fd) != 0) return io_error(path, "fsync", errno);
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) return io_error(path, "close", errno);
  return ok_status();
}

Status fsync_dir(const std::string& path) {
  Fd d{::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0) return io_error(path, "open", errno);
  if (::fsync(d.fd) != 0) return io_error(path, "fsync", errno);
  return ok_status();
}

Status rename_path(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return io_error(from + " -> " + to, "rename", errno);
  return ok_status();
}

Result<std::string> read_file(const std::string& path, uint64_t max_bytes) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return io_error(path, "open", errno);
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) return io_error(path, "stat", errno);
  if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::kBadFile, path + ": not a regular file");
  if (uint64_t(st.st_size) > max_bytes) {
    return make_error(ErrorCode::kInvalidArgument, path + ": " + std::to_string(st.st_size) +
                                                       " bytes exceed the store's limit of " +
                                                       std::to_string(max_bytes));
  }
  std::string out(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::read(f.fd, out.data() + got, out.size() - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path, "read", errno);
    }
    if (n == 0) break;  // shrank under us: return what is there
    got += size_t(n);
  }
  out.resize(got);
  return out;
}

Result<std::string> hash_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return io_error(path, "open", errno);
  Sha256 h;
  std::string buf(size_t(1) << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(f.fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(path, "read", errno);
    }
    if (n == 0) break;
    h.update(buf.data(), size_t(n));
  }
  return h.hex_digest();
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

Result<std::vector<std::string>> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return io_error(path, "opendir", errno);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view n = e->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return io_error(path, "readdir", err);
  return names;
}

Status remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return make_error(ErrorCode::kIo, path + ": cannot delete: " + ec.message());
  return ok_status();
}

Result<int> lock_dir(const std::string& dir) {
  const std::string path = dir + "/LOCK";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error(path, "open", errno);
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return make_error(ErrorCode::kIo, dir + ": another adapter store has this data directory open (" +
                                            path + " is locked)");
    }
    return io_error(path, "flock", err);
  }
  return fd;
}

}  // namespace myriad::store
