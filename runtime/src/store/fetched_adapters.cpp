#include "runtime/fetched_adapters.h"

#include <unistd.h>

#include "runtime/sha256.h"
#include "store_files.h"

namespace myriad {

namespace {

constexpr uint64_t kMaxIdFile = 256;

}  // namespace

Result<std::unique_ptr<FetchedAdapters>> FetchedAdapters::open(const std::string& dir) {
  for (const char* sub : {"/blobs", "/ids", "/tmp"})
    if (Status st = store::make_dirs(dir + sub); !st.ok()) return st.error();
  if (Status st = store::remove_tree(dir + "/tmp"); !st.ok()) return st.error();
  if (Status st = store::make_dirs(dir + "/tmp"); !st.ok()) return st.error();
  return std::unique_ptr<FetchedAdapters>(new FetchedAdapters(dir));
}

std::string FetchedAdapters::id_path(const AdapterId& id) const {
  return dir_ + "/ids/" + id.tenant + "/" + id.name + "@" + std::to_string(id.version);
}

std::optional<std::string> FetchedAdapters::find(const AdapterId& id) {
  std::lock_guard lock(mu_);
  auto blob = store::read_file(id_path(id), kMaxIdFile);
  if (!blob.ok() || blob->size() != 64) return std::nullopt;
  const std::string folder = dir_ + "/blobs/" + *blob;
  auto config = store::hash_file(folder + "/" + store::kConfigFile);
  auto weights = store::hash_file(folder + "/" + store::kWeightsFile);
  if (config.ok() && weights.ok() && store::blob_name(*config, *weights) == *blob) return folder;
  (void)store::remove_tree(folder);  // damaged or half there: fetched again
  (void)::unlink(id_path(id).c_str());
  return std::nullopt;
}

Result<std::string> FetchedAdapters::put(const AdapterFiles& f) {
  const std::string what = "fetched adapter " + f.record.id.to_string();
  for (const auto& [file, bytes, want] : {std::tuple{store::kConfigFile, &f.config_json, &f.config_sha256},
                                          std::tuple{store::kWeightsFile, &f.safetensors, &f.weights_sha256}}) {
    const std::string got = sha256_hex(*bytes);
    if (got != *want)
      return make_error(ErrorCode::kBadFile,
                        what + ": " + file + " does not match its sha256 (sent " + *want + ", received " + got + ")");
  }
  const std::string blob = store::blob_name(f.config_sha256, f.weights_sha256);
  if (blob != f.record.sha256)
    return make_error(ErrorCode::kBadFile,
                      what + ": its files make blob " + blob + ", not the record's " + f.record.sha256);
  std::lock_guard lock(mu_);
  const std::string folder = dir_ + "/blobs/" + blob;
  if (!store::path_exists(folder)) {
    const std::string tmp = dir_ + "/tmp/" + std::to_string(::getpid()) + "-" + std::to_string(next_tmp_++);
    (void)store::remove_tree(tmp);
    if (Status st = store::make_dirs(tmp); !st.ok()) return st.error();
    for (const auto& [file, bytes] : {std::pair{store::kConfigFile, &f.config_json}, std::pair{store::kWeightsFile, &f.safetensors}})
      if (Status st = store::write_file_durable(tmp + "/" + file, *bytes); !st.ok()) return st.error();
    if (Status st = store::fsync_dir(tmp); !st.ok()) return st.error();
    if (Status st = store::rename_path(tmp, folder); !st.ok()) return st.error();
    if (Status st = store::fsync_dir(dir_ + "/blobs"); !st.ok()) return st.error();
  }
  const std::string entry = id_path(f.record.id);
  const std::string entry_dir = entry.substr(0, entry.rfind('/'));
  if (Status st = store::make_dirs(entry_dir); !st.ok()) return st.error();
  const std::string tmp = dir_ + "/tmp/id-" + std::to_string(::getpid()) + "-" + std::to_string(next_tmp_++);
  (void)::unlink(tmp.c_str());
  if (Status st = store::write_file_durable(tmp, blob); !st.ok()) return st.error();
  if (Status st = store::rename_path(tmp, entry); !st.ok()) return st.error();
  if (Status st = store::fsync_dir(entry_dir); !st.ok()) return st.error();
  return folder;
}

}  // namespace myriad
