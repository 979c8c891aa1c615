// The adapter store's catalog (internal to runtime/src/store): which versions
// exist and which blob each uses, in one SQLite file. Every statement is
// prepared with bound parameters; every write is one transaction, so a
// version and its counter commit together or not at all. SQLite failures
// are kIo errors naming the statement and sqlite3_errmsg.
//
// Tables:
//   blobs(sha256 PK, config_sha256, weights_sha256, size_bytes)
//   adapters(tenant, name, version, sha256 -> blobs, base_fingerprint, rank,
//            alpha, target_modules "q_proj,v_proj", created_unix_ms;
//            PK (tenant, name, version))
//   version_counters(tenant, name, last_version; PK (tenant, name))
//     -- the highest version ever given out; never decreases, so a removed
//        version's number is never reused
//   mixtures(tenant, name, router_json, experts "t/n@N,...", created_unix_ms;
//            PK (tenant, name))  -- schema 2: a mixture of expert adapters
//
// Not thread-safe: the AdapterStore's mutex serializes it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/adapter_store.h"
#include "runtime/result.h"

struct sqlite3;

namespace myriad::store {

struct BlobRow {
  std::string sha256;  // the blob's name (store_files.h: blob_name)
  std::string config_sha256;
  std::string weights_sha256;
  uint64_t size_bytes = 0;
};

class Catalog {
 public:
  // Opens or creates the file: WAL journal, synchronous=FULL (a commit is on
  // disk when COMMIT returns), the schema above. kUnsupported for a catalog
  // a newer schema wrote.
  static Result<std::unique_ptr<Catalog>> open(const std::string& path);
  ~Catalog();
  Catalog(const Catalog&) = delete;
  Catalog& operator=(const Catalog&) = delete;

  // One transaction: version = counter(tenant, name) + 1; inserts `blob`
  // unless present, the row, and the new counter. Returns `rec` with its version.
  Result<AdapterRecord> insert_next_version(AdapterRecord rec, const BlobRow& blob);

  // version 0: the newest. nullopt when absent.
  Result<std::optional<AdapterRecord>> find(std::string_view tenant, std::string_view name, uint64_t version);
  // tenant empty: every tenant; name empty: every name of the tenant.
  Result<std::vector<AdapterRecord>> list(std::string_view tenant, std::string_view name);
  Result<std::optional<BlobRow>> blob(std::string_view sha256);
  Result<std::vector<std::string>> blob_names();
  // The highest version ever given out for tenant/name (0: never published).
  Result<uint64_t> last_version(std::string_view tenant, std::string_view name);

  struct Removed {
    uint64_t versions = 0;                 // rows deleted
    std::vector<std::string> freed_blobs;  // blobs no row references any more (their rows deleted)
  };
  // One transaction: deletes version `version` of tenant/name (0: every
  // version) and the blob rows left unreferenced.
  Result<Removed> remove(std::string_view tenant, std::string_view name, uint64_t version);

  // Mixtures: one row per tenant/name, replaced whole by put_mixture.
  Status put_mixture(const MixtureRecord& m);
  // tenant empty: every tenant; name empty: every name of the tenant.
  Result<std::vector<MixtureRecord>> mixtures(std::string_view tenant, std::string_view name);
  Result<bool> remove_mixture(std::string_view tenant, std::string_view name);  // false: there was none

 private:
  Catalog(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::string path_;
};

}  // namespace myriad::store
