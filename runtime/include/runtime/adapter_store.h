// The adapter store: every published adapter version of every tenant, kept
// on disk for one served base model. A catalog (SQLite) says which versions
// exist; the adapters' files live content-addressed beside it:
//
//   <data_dir>/catalog.sqlite3            WAL mode, synchronous=FULL
//   <data_dir>/LOCK                       flock'ed by the one open store
//   <data_dir>/blobs/<sha256>/adapter_config.json
//   <data_dir>/blobs/<sha256>/adapter_model.safetensors
//   <data_dir>/tmp/                       publishes in progress; emptied on open
//
// <sha256> names the pair of files: the SHA-256 of the manifest text
//   "<sha256 of adapter_config.json>  adapter_config.json\n"
//   "<sha256 of adapter_model.safetensors>  adapter_model.safetensors\n"
// i.e. what `sha256sum adapter_config.json adapter_model.safetensors | sha256sum`
// prints inside the blob folder.
//
// Invariants (also after a crash at any point, once reopened):
//   - every catalog row's blob folder exists, complete, and was validated
//     against the base when published (load() re-checks its hashes);
//   - a version of (tenant, name) is never reused, even after remove: a
//     counter per name lives in the catalog; versions are 1, 2, 3, ... and
//     only remove() leaves gaps;
//   - a blob folder exists only while a row references it; tmp/ is empty.
//
// Publishing one version (each arrow is one durable step; a crash before
// step 5 commits leaves the catalog as it was, and the next open() deletes
// what the earlier steps wrote):
//
//   (1) write both files into tmp/publish-N/, fsync each file and the folder
//    |  validate: load_peft_adapter against the base (ranks, alpha, targets,
//    |  shapes, finite values); invalid -> delete tmp/publish-N, error
//    v
//   (2) hash the two files (the manifest above) -> <sha256>
//    v
//   (3) rename tmp/publish-N -> blobs/<sha256>, fsync blobs/
//    |  (already there: the same bytes were published before; keep it, or,
//    |  if its files no longer hash right, rename the new files over them)
//    v
//   (4) one transaction: version = counter(tenant, name) + 1, INSERT the
//    |  row, bump the counter
//    v
//   (5) COMMIT  -> published; resolve() sees it
//
// Removing: one transaction deletes the row (and the blob's row when no
// other version shares it), then the folder is renamed into tmp/ and
// deleted; a crash in between leaves an unreferenced folder for open().
//
// Ownership: one AdapterStore owns its data directory (an flock on LOCK
// refuses a second store, in this process or another); load() returns
// weights the caller shares. Thread-safe: every call may come from any
// thread; a mutex serializes catalog work and the blob folders. All calls do
// blocking disk I/O (fsync, hashing): call them from a service thread (the
// registry actor), never from the engine's step loop.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

#include "runtime/adapter_id.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/result.h"

namespace myriad {

// One published adapter version as the catalog describes it.
struct AdapterRecord {
  AdapterId id;                             // version >= 1
  std::string base_fingerprint;             // of the base it was validated against
  int32_t rank = 0;                         // the largest rank of any module (what a slot needs)
  float alpha = 0.0f;                       // lora_alpha as written in adapter_config.json
  std::vector<std::string> target_modules;  // modules with a delta in some layer, e.g. {"q_proj", "v_proj"}
  std::string sha256;                       // the blob's name (see above), 64 hex digits
  uint64_t size_bytes = 0;                  // both files together
  int64_t created_unix_ms = 0;              // when the version was published
};

// A mixture of expert adapters (issue 22) as the store keeps it: the router
// (mixture.json: embedding, centroids, routing settings, expert names) and
// the published version of each expert, in the router's expert order.
struct MixtureRecord {
  std::string tenant, name;
  std::string router_json;
  std::vector<AdapterId> experts;
  int64_t created_unix_ms = 0;
  std::string qualified_name() const { return tenant + "/" + name; }
};

// A stored version's two files, as another host receives them: it checks
// each against its sha256 again before it loads them.
struct AdapterFiles {
  AdapterRecord record;
  std::string config_json;     // adapter_config.json
  std::string safetensors;     // adapter_model.safetensors
  std::string config_sha256;   // of config_json, as stored
  std::string weights_sha256;  // of safetensors, as stored
};

struct AdapterStoreOptions {
  int32_t max_rank = 64;                           // the executor's slot capacity; larger ranks are refused
  uint64_t max_adapter_bytes = uint64_t(4) << 30;  // both files together; larger uploads are refused
};

class AdapterStore {
 public:
  // Opens (creating when missing) the store in `data_dir` for the served
  // base `base`; `base_fingerprint` (non-empty) names that base in every
  // record, and load() refuses versions published for another. Recovers what
  // a crash left: empties tmp/ and deletes blob folders no row references.
  // kIo when the directory cannot be made or another store holds it.
  static Result<std::unique_ptr<AdapterStore>> open(const std::string& data_dir, const ModelConfig& base,
                                                    std::string base_fingerprint,
                                                    AdapterStoreOptions options = {});
  ~AdapterStore();
  AdapterStore(const AdapterStore&) = delete;
  AdapterStore& operator=(const AdapterStore&) = delete;

  // Publishes the next version of name.tenant/name.name (name.version is
  // ignored). The adapter must load against the base (load_peft_adapter);
  // otherwise the error names the file, field or tensor at fault and the
  // store is unchanged. The same bytes published again make a new version
  // that shares the blob.
  Result<AdapterRecord> publish(const AdapterName& name, std::string_view adapter_config_json,
                                std::string_view safetensors_bytes);
  // Reads <dir>/adapter_config.json and <dir>/adapter_model.safetensors,
  // then publish().
  Result<AdapterRecord> publish_folder(const AdapterName& name, const std::string& dir);

  // Version 0: the newest. kNotFound naming the adapter.
  Result<AdapterRecord> resolve(const AdapterName& name) const;
  // Every version of `tenant` (empty: of every tenant, for an operator),
  // ordered by tenant, name, version.
  Result<std::vector<AdapterRecord>> list(std::string_view tenant) const;
  // Every version of tenant/name, oldest first; kNotFound when there is none.
  Result<std::vector<AdapterRecord>> versions(std::string_view tenant, std::string_view name) const;

  // Deletes one version (kNotFound if absent); its files go once no version
  // shares them. Its number is never given out again.
  Status remove(const AdapterId& id);
  // Deletes every version of tenant/name; the next publish continues the
  // numbering. kNotFound when there is none.
  Status remove_all_versions(std::string_view tenant, std::string_view name);

  // The version's weights, after re-hashing its files: a file that no longer
  // matches its hash is kBadFile ("stored adapter t/n@N: <file> no longer
  // matches its sha256 (stored <x>, now <y>)") and is never served.
  Result<std::shared_ptr<const LoraWeights>> load(const AdapterId& id) const;
  // The version's files as bytes, re-hashed the same way (kBadFile when one
  // no longer matches): what a worker on another host fetches.
  Result<AdapterFiles> read_files(const AdapterId& id) const;

  // Mixtures: tenant/name shares the adapters' names (a name is one or the
  // other: kInvalidArgument when an adapter has it). put replaces a mixture
  // of that name whole; every expert must be a published version.
  Result<MixtureRecord> put_mixture(std::string_view tenant, std::string_view name, std::string router_json,
                                    std::vector<AdapterId> experts);
  // nullopt when tenant/name is no mixture.
  Result<std::optional<MixtureRecord>> find_mixture(std::string_view tenant, std::string_view name) const;
  // tenant empty: every tenant's (an operator); ordered by tenant, name.
  Result<std::vector<MixtureRecord>> list_mixtures(std::string_view tenant) const;
  // kNotFound when there is none. The experts' versions stay (adapters of their own).
  Status remove_mixture(std::string_view tenant, std::string_view name);

  const std::string& data_dir() const;
  const std::string& base_fingerprint() const;

 private:
  struct Impl;
  explicit AdapterStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace myriad
