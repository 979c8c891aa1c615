// A worker's disk cache of adapter versions fetched from the gateway's store
// (no shared filesystem is assumed): content-addressed blob folders, each
// checked against the hashes the store sent before it is written, and again
// (re-hashed) each time it is found.
//
//   <dir>/blobs/<blob>/adapter_config.json, adapter_model.safetensors
//       <blob> = the store's blob name of the two files' sha256 (store_files.h)
//   <dir>/ids/<tenant>/<name>@<N>   the blob name of that version (versions never change)
//   <dir>/tmp/                      writes in progress; emptied at open
//
// Writes are temp file, fsync, rename: a worker killed mid-fetch leaves no
// partial blob. Thread-safe (one mutex; a blob written twice is written once).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "runtime/adapter_id.h"
#include "runtime/adapter_store.h"
#include "runtime/result.h"

namespace myriad {

class FetchedAdapters {
 public:
  // Opens (creating) the cache in `dir`.
  static Result<std::unique_ptr<FetchedAdapters>> open(const std::string& dir);

  // The version's blob folder when it is cached and its files still match
  // their hashes; nullopt when not cached (a damaged blob is removed, to be
  // fetched again).
  std::optional<std::string> find(const AdapterId& id);
  // Checks the fetched files against their hashes (kBadFile naming the file,
  // both hashes), writes the blob and the id's entry, and answers the folder.
  Result<std::string> put(const AdapterFiles& files);

  const std::string& dir() const { return dir_; }

 private:
  explicit FetchedAdapters(std::string dir) : dir_(std::move(dir)) {}
  std::string id_path(const AdapterId& id) const;

  std::string dir_;
  std::mutex mu_;
  uint64_t next_tmp_ = 0;
};

}  // namespace myriad
