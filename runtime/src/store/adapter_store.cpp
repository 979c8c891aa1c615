// The adapter store: validation and the publish/remove protocols over the
// catalog (catalog.h) and the blob folders (store_files.h). The header draws
// the state machine this file follows.
#include "runtime/adapter_store.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <tuple>
#include <utility>

#include "catalog.h"
#include "runtime/log.h"
#include "runtime/peft_adapter.h"
#include "runtime/sha256.h"
#include "store_files.h"

namespace myriad {

using store::BlobRow;
using store::Catalog;
using store::kConfigFile;
using store::kWeightsFile;

struct AdapterStore::Impl {
  std::string dir;
  std::string blobs_dir;  // <dir>/blobs
  std::string tmp_dir;    // <dir>/tmp
  ModelConfig base;
  std::string fingerprint;
  AdapterStoreOptions options;
  int lock_fd = -1;
  std::unique_ptr<Catalog> catalog;
  mutable std::mutex mu;              // the catalog and blobs/; publish writes its own tmp folder unlocked
  std::atomic<uint64_t> next_tmp{0};  // tmp/ names: unique while this store holds the lock

  ~Impl() {
    if (lock_fd >= 0) ::close(lock_fd);
  }

  std::string blob_dir(std::string_view sha) const { return blobs_dir + "/" + std::string(sha); }
  std::string new_tmp(const char* what) { return tmp_dir + "/" + what + "-" + std::to_string(next_tmp++); }

  Status recover();
  Status discard_blob_dir(const std::string& sha);
  Result<bool> blob_intact(const std::string& dir, const BlobRow& blob) const;
};

namespace {

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status check_name(std::string_view tenant, std::string_view name) {
  MYRIAD_TRY(check_tenant(tenant));
  MYRIAD_TRY(check_adapter_name(name));
  return ok_status();
}

std::string qualified(std::string_view tenant, std::string_view name) {
  std::string s(tenant);
  s += '/';
  s += name;
  return s;
}

// Loader messages name the temporary folder; the publisher knows only its
// two files, so name those instead.
Error publish_error(const AdapterName& name, const std::string& tmp, Error e) {
  std::string m = "publish ";
  m += qualified(name.tenant, name.name);
  m += ": ";
  const std::string prefix = tmp + "/";
  for (size_t at = e.message.find(prefix); at != std::string::npos; at = e.message.find(prefix)) {
    e.message.erase(at, prefix.size());
  }
  m += e.message;
  e.message = std::move(m);
  return e;
}

std::vector<std::string> targeted_modules(const LoraWeights& w) {
  std::vector<std::string> out;
  for (int m = 0; m < kNumLinearModules; ++m) {
    for (int l = 0; l < w.num_layers; ++l) {
      if (w.at(l, LinearModule(m)).rank > 0) {
        out.emplace_back(linear_module_name(LinearModule(m)));
        break;
      }
    }
  }
  return out;
}

}  // namespace

AdapterStore::AdapterStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
AdapterStore::~AdapterStore() = default;

const std::string& AdapterStore::data_dir() const { return impl_->dir; }
const std::string& AdapterStore::base_fingerprint() const { return impl_->fingerprint; }

Result<std::unique_ptr<AdapterStore>> AdapterStore::open(const std::string& data_dir, const ModelConfig& base,
                                                         std::string base_fingerprint,
                                                         AdapterStoreOptions options) {
  if (data_dir.empty())
    return make_error(ErrorCode::kInvalidArgument, "adapter store: the data directory is empty");
  if (base_fingerprint.empty()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter store " + data_dir + ": the base fingerprint is empty");
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = data_dir;
  impl->blobs_dir = data_dir + "/blobs";
  impl->tmp_dir = data_dir + "/tmp";
  impl->base = base;
  impl->fingerprint = std::move(base_fingerprint);
  impl->options = options;
  MYRIAD_TRY(store::make_dirs(impl->blobs_dir));
  MYRIAD_TRY(store::make_dirs(impl->tmp_dir));
  MYRIAD_TRY(store::fsync_dir(data_dir));
  // The data directory's own entry, in case it was just made (best effort:
  // the parent may not be ours to open).
  const size_t slash = data_dir.find_last_of('/');
  (void)store::fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : data_dir.substr(0, slash));
  // Before anything else: recovery deletes tmp/, which must not be another
  // live store's publish in progress.
  auto lock = store::lock_dir(data_dir);
  if (!lock.ok()) return lock.error();
  impl->lock_fd = *lock;
  auto catalog = Catalog::open(data_dir + "/catalog.sqlite3");
  if (!catalog.ok()) return catalog.error();
  impl->catalog = std::move(*catalog);
  MYRIAD_TRY(impl->recover());
  return std::unique_ptr<AdapterStore>(new AdapterStore(std::move(impl)));
}

// What a crash can leave (header: the publish state machine): publish
// folders in tmp/ (steps 1-2), a blob folder renamed in but never committed
// (step 3), a removed blob's folder not yet deleted. None is referenced by
// the catalog, so all of it goes.
Status AdapterStore::Impl::recover() {
  auto leftovers = store::list_dir(tmp_dir);
  if (!leftovers.ok()) return leftovers.error();
  for (const auto& n : *leftovers) MYRIAD_TRY(store::remove_tree(tmp_dir + "/" + n));

  auto names = catalog->blob_names();
  if (!names.ok()) return names.error();
  const std::set<std::string> referenced(names->begin(), names->end());
  auto present = store::list_dir(blobs_dir);
  if (!present.ok()) return present.error();
  size_t orphans = 0;
  for (const auto& n : *present) {
    if (referenced.count(n) != 0) continue;
    MYRIAD_TRY(store::remove_tree(blobs_dir + "/" + n));
    ++orphans;
  }
  if (!leftovers->empty() || orphans > 0) {
    MYRIAD_TRY(store::fsync_dir(tmp_dir));
    MYRIAD_TRY(store::fsync_dir(blobs_dir));
    log_info(
        "adapter store {}: recovered from an interrupted run: deleted {} temporary and {} unreferenced blob "
        "folder(s)",
        dir, leftovers->size(), orphans);
  }
  const std::set<std::string> on_disk(present->begin(), present->end());
  for (const auto& n : referenced) {
    if (on_disk.count(n) == 0)
      log_warn("adapter store {}: blob {} is in the catalog but its folder is missing", dir, n);
  }
  return ok_status();
}

// Renames the folder out of blobs/ first, so its name disappears in one step.
Status AdapterStore::Impl::discard_blob_dir(const std::string& sha) {
  const std::string from = blob_dir(sha);
  if (!store::path_exists(from)) return ok_status();
  const std::string doomed = new_tmp("removed");
  MYRIAD_TRY(store::rename_path(from, doomed));
  MYRIAD_TRY(store::fsync_dir(blobs_dir));
  return store::remove_tree(doomed);
}

Result<bool> AdapterStore::Impl::blob_intact(const std::string& folder, const BlobRow& blob) const {
  for (const auto& [file, want] :
       {std::pair{kConfigFile, &blob.config_sha256}, std::pair{kWeightsFile, &blob.weights_sha256}}) {
    auto h = store::hash_file(folder + "/" + file);
    if (!h.ok()) {
      if (h.error().code == ErrorCode::kNotFound) return false;
      return h.error();
    }
    if (*h != *want) return false;
  }
  return true;
}

Result<AdapterRecord> AdapterStore::publish(const AdapterName& name, std::string_view adapter_config_json,
                                            std::string_view safetensors_bytes) {
  Impl& s = *impl_;
  MYRIAD_TRY(check_name(name.tenant, name.name));
  const uint64_t size = uint64_t(adapter_config_json.size()) + safetensors_bytes.size();
  if (size > s.options.max_adapter_bytes) {
    return make_error(ErrorCode::kInvalidArgument, "publish " + qualified(name.tenant, name.name) + ": " +
                                                       std::to_string(size) +
                                                       " bytes exceed the store's limit of " +
                                                       std::to_string(s.options.max_adapter_bytes));
  }

  // (1) Durable files in a private tmp folder, validated there: nothing the
  // catalog or blobs/ can see yet, so this runs without the lock.
  const std::string tmp = s.new_tmp("publish");
  struct Cleanup {  // deletes the tmp folder on every early return
    std::string path;
    ~Cleanup() {
      if (!path.empty()) (void)store::remove_tree(path);
    }
  } cleanup{tmp};
  MYRIAD_TRY(store::make_dirs(tmp));
  MYRIAD_TRY(store::write_file_durable(tmp + "/" + kConfigFile, adapter_config_json));
  MYRIAD_TRY(store::write_file_durable(tmp + "/" + kWeightsFile, safetensors_bytes));
  MYRIAD_TRY(store::fsync_dir(tmp));

  PeftLoadOptions load_options;
  load_options.max_rank = s.options.max_rank;
  load_options.name = qualified(name.tenant, name.name);
  auto weights = load_peft_adapter(tmp, s.base, load_options);
  if (!weights.ok()) return publish_error(name, tmp, weights.error());
  auto config = parse_peft_config(adapter_config_json, kConfigFile);
  if (!config.ok()) return publish_error(name, tmp, config.error());  // the loader parsed it already

  // (2) The content address.
  BlobRow blob;
  blob.config_sha256 = sha256_hex(adapter_config_json);
  blob.weights_sha256 = sha256_hex(safetensors_bytes);
  blob.sha256 = store::blob_name(blob.config_sha256, blob.weights_sha256);
  blob.size_bytes = size;

  AdapterRecord rec;
  rec.id = AdapterId{name.tenant, name.name, 0};
  rec.base_fingerprint = s.fingerprint;
  rec.rank = (*weights)->max_rank();
  rec.alpha = config->lora_alpha;
  rec.target_modules = targeted_modules(**weights);
  rec.sha256 = blob.sha256;
  rec.size_bytes = size;
  rec.created_unix_ms = now_unix_ms();

  std::lock_guard<std::mutex> lock(s.mu);
  auto mixture = s.catalog->mixtures(name.tenant, name.name);
  if (!mixture.ok()) return mixture.error();
  if (!mixture->empty())
    return make_error(ErrorCode::kInvalidArgument,
                      qualified(name.tenant, name.name) + " is a mixture; an adapter needs a name of its own");
  // (3) Into blobs/ under its hash. A folder already there holds the same
  // bytes (published before, or left by a failed insert) unless it was
  // damaged: then these verified files replace its files one by one (a
  // rename over a file is atomic, so versions sharing the folder never see
  // a file missing, even across a crash).
  const std::string dest = s.blob_dir(blob.sha256);
  auto known = s.catalog->blob(blob.sha256);
  if (!known.ok()) return known.error();
  bool placed_here = false;
  if (store::path_exists(dest)) {
    auto intact = s.blob_intact(dest, blob);
    if (!intact.ok()) return intact.error();
    if (!*intact) {
      log_warn("adapter store {}: blob {} was damaged; repairing it with the bytes of {}", s.dir, blob.sha256,
               load_options.name);
      for (const char* f : {kConfigFile, kWeightsFile}) {
        MYRIAD_TRY(store::rename_path(tmp + "/" + f, dest + "/" + f));
      }
      MYRIAD_TRY(store::fsync_dir(dest));
    }
  } else {
    MYRIAD_TRY(store::rename_path(tmp, dest));
    cleanup.path.clear();
    placed_here = true;
    MYRIAD_TRY(store::fsync_dir(s.blobs_dir));
  }

  // (4)+(5) The version and the row commit together.
  auto inserted = s.catalog->insert_next_version(std::move(rec), blob);
  if (!inserted.ok()) {
    if (placed_here && !known->has_value()) (void)s.discard_blob_dir(blob.sha256);  // else open() would
    return inserted.error();
  }
  log_info("adapter store {}: published {} (rank {}, {} bytes, blob {})", s.dir, inserted->id.to_string(),
           inserted->rank, inserted->size_bytes, blob.sha256);
  return inserted;
}

Result<AdapterRecord> AdapterStore::publish_folder(const AdapterName& name, const std::string& dir) {
  const uint64_t limit = impl_->options.max_adapter_bytes;
  auto config = store::read_file(dir + "/" + kConfigFile, limit);
  if (!config.ok()) return config.error();
  auto weights = store::read_file(dir + "/" + kWeightsFile, limit);
  if (!weights.ok()) return weights.error();
  return publish(name, *config, *weights);
}

Result<MixtureRecord> AdapterStore::put_mixture(std::string_view tenant, std::string_view name, std::string router_json,
                                                std::vector<AdapterId> experts) {
  MYRIAD_TRY(check_name(tenant, name));
  if (experts.empty()) return make_error(ErrorCode::kInvalidArgument, "mixture " + qualified(tenant, name) + " has no experts");
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto same_name = impl_->catalog->find(tenant, name, 0);
  if (!same_name.ok()) return same_name.error();
  if (same_name->has_value())
    return make_error(ErrorCode::kInvalidArgument, qualified(tenant, name) + " is an adapter; a mixture needs a name of its own");
  for (const AdapterId& e : experts) {
    auto found = impl_->catalog->find(e.tenant, e.name, e.version);
    if (!found.ok()) return found.error();
    if (!found->has_value() || e.version == 0)
      return make_error(ErrorCode::kNotFound, "mixture " + qualified(tenant, name) + ": expert " + e.to_string() +
                                                  " is not a published version");
  }
  MixtureRecord m{std::string(tenant), std::string(name), std::move(router_json), std::move(experts), now_unix_ms()};
  MYRIAD_TRY(impl_->catalog->put_mixture(m));
  log_info("adapter store {}: mixture {} of {} experts", impl_->dir, m.qualified_name(), m.experts.size());
  return m;
}

Result<std::optional<MixtureRecord>> AdapterStore::find_mixture(std::string_view tenant, std::string_view name) const {
  MYRIAD_TRY(check_name(tenant, name));
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto rows = impl_->catalog->mixtures(tenant, name);
  if (!rows.ok()) return rows.error();
  if (rows->empty()) return std::optional<MixtureRecord>();
  return std::optional<MixtureRecord>(std::move(rows->front()));
}

Result<std::vector<MixtureRecord>> AdapterStore::list_mixtures(std::string_view tenant) const {
  if (!tenant.empty()) MYRIAD_TRY(check_tenant(tenant));
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->catalog->mixtures(tenant, "");
}

Status AdapterStore::remove_mixture(std::string_view tenant, std::string_view name) {
  MYRIAD_TRY(check_name(tenant, name));
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto removed = impl_->catalog->remove_mixture(tenant, name);
  if (!removed.ok()) return removed.error();
  if (!*removed) return make_error(ErrorCode::kNotFound, "mixture " + qualified(tenant, name) + " not found");
  return ok_status();
}

Result<AdapterRecord> AdapterStore::resolve(const AdapterName& name) const {
  MYRIAD_TRY(check_name(name.tenant, name.name));
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto rec = impl_->catalog->find(name.tenant, name.name, name.version);
  if (!rec.ok()) return rec.error();
  if (rec->has_value()) return std::move(**rec);
  std::string m = "adapter " + name.to_string() + " not found";
  if (name.version != 0) {
    auto newest = impl_->catalog->find(name.tenant, name.name, 0);
    if (newest.ok() && newest->has_value())
      m += " (newest is @" + std::to_string((*newest)->id.version) + ")";
  }
  return make_error(ErrorCode::kNotFound, std::move(m));
}

Result<std::vector<AdapterRecord>> AdapterStore::list(std::string_view tenant) const {
  if (!tenant.empty()) MYRIAD_TRY(check_tenant(tenant));
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->catalog->list(tenant, "");
}

Result<std::vector<AdapterRecord>> AdapterStore::versions(std::string_view tenant,
                                                          std::string_view name) const {
  MYRIAD_TRY(check_name(tenant, name));
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto all = impl_->catalog->list(tenant, name);
  if (!all.ok()) return all.error();
  if (all->empty())
    return make_error(ErrorCode::kNotFound, "adapter " + qualified(tenant, name) + " not found");
  return all;
}

Status AdapterStore::remove(const AdapterId& id) {
  MYRIAD_TRY(check_name(id.tenant, id.name));
  if (id.version == 0) {
    return make_error(ErrorCode::kInvalidArgument, "remove " + qualified(id.tenant, id.name) +
                                                       ": name a version (remove_all_versions removes all)");
  }
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  auto removed = s.catalog->remove(id.tenant, id.name, id.version);
  if (!removed.ok()) return removed.error();
  if (removed->versions == 0)
    return make_error(ErrorCode::kNotFound, "adapter " + id.to_string() + " not found");
  for (const auto& sha : removed->freed_blobs) {
    // The catalog no longer names it: a failure here leaves an orphan that
    // the next open() deletes, not a broken version.
    if (auto st = s.discard_blob_dir(sha); !st.ok())
      log_warn("adapter store {}: {}", s.dir, st.error().to_string());
  }
  log_info("adapter store {}: removed {}", s.dir, id.to_string());
  return ok_status();
}

Status AdapterStore::remove_all_versions(std::string_view tenant, std::string_view name) {
  MYRIAD_TRY(check_name(tenant, name));
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  auto removed = s.catalog->remove(tenant, name, 0);
  if (!removed.ok()) return removed.error();
  if (removed->versions == 0)
    return make_error(ErrorCode::kNotFound, "adapter " + qualified(tenant, name) + " not found");
  for (const auto& sha : removed->freed_blobs) {
    if (auto st = s.discard_blob_dir(sha); !st.ok())
      log_warn("adapter store {}: {}", s.dir, st.error().to_string());
  }
  log_info("adapter store {}: removed {} version(s) of {}", s.dir, removed->versions,
           qualified(tenant, name));
  return ok_status();
}

namespace {

// A stored version's record and blob row, checked against the served base.
struct Located {
  AdapterRecord record;
  store::BlobRow blob;
  std::string folder;
  std::string what;  // "stored adapter t/n@N", for messages
};

std::string mismatch(const std::string& what, const char* file, const std::string& want, const std::string& now) {
  return what + ": " + file + " no longer matches its sha256 (stored " + want + ", now " + now + ")";
}

// `Impl` is AdapterStore's (private) state; call with its mutex held.
template <class Impl>
Result<Located> locate(const Impl& s, const AdapterId& id) {
  MYRIAD_TRY(check_name(id.tenant, id.name));
  auto rec = s.catalog->find(id.tenant, id.name, id.version);
  if (!rec.ok()) return rec.error();
  if (id.version == 0 || !rec->has_value()) return make_error(ErrorCode::kNotFound, "adapter " + id.to_string() + " not found");
  Located l;
  l.record = **rec;
  l.what = "stored adapter " + id.to_string();
  if (l.record.base_fingerprint != s.fingerprint) {
    return make_error(ErrorCode::kInvalidArgument, l.what + " was published for base '" + l.record.base_fingerprint +
                                                       "'; this store serves base '" + s.fingerprint + "'");
  }
  auto blob = s.catalog->blob(l.record.sha256);
  if (!blob.ok()) return blob.error();
  if (!blob->has_value()) return make_error(ErrorCode::kInternal, l.what + ": its blob " + l.record.sha256 + " has no row");
  l.blob = **blob;
  l.folder = s.blob_dir(l.record.sha256);
  return l;
}

}  // namespace

Result<std::shared_ptr<const LoraWeights>> AdapterStore::load(const AdapterId& id) const {
  const Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);  // a concurrent remove must not delete the folder mid-read
  auto at = locate(s, id);
  if (!at.ok()) return at.error();
  const Located& l = at.value();
  for (const auto& [file, want] : {std::pair{kConfigFile, &l.blob.config_sha256}, std::pair{kWeightsFile, &l.blob.weights_sha256}}) {
    auto h = store::hash_file(l.folder + "/" + file);
    if (!h.ok()) {
      std::string m = l.what;
      m += ": ";
      m += file;
      m += h.error().code == ErrorCode::kNotFound ? " is missing from " + l.folder
                                                  : " cannot be read: " + h.error().message;
      return make_error(ErrorCode::kBadFile, std::move(m));
    }
    if (*h != *want) return make_error(ErrorCode::kBadFile, mismatch(l.what, file, *want, *h));
  }
  PeftLoadOptions load_options;
  load_options.max_rank = s.options.max_rank;
  load_options.name = id.to_string();
  auto w = load_peft_adapter(l.folder, s.base, load_options);
  if (!w.ok()) return make_error(w.error().code, l.what + ": " + w.error().message);
  return w;
}

Result<AdapterFiles> AdapterStore::read_files(const AdapterId& id) const {
  const Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.mu);
  auto at = locate(s, id);
  if (!at.ok()) return at.error();
  const Located& l = at.value();
  AdapterFiles out;
  out.record = l.record;
  out.config_sha256 = l.blob.config_sha256;
  out.weights_sha256 = l.blob.weights_sha256;
  for (const auto& [file, want, bytes] : {std::tuple{kConfigFile, &l.blob.config_sha256, &out.config_json},
                                          std::tuple{kWeightsFile, &l.blob.weights_sha256, &out.safetensors}}) {
    auto read = store::read_file(l.folder + "/" + file, s.options.max_adapter_bytes);
    if (!read.ok()) return make_error(ErrorCode::kBadFile, l.what + ": " + file + " cannot be read: " + read.error().message);
    const std::string now = sha256_hex(read.value());
    if (now != *want) return make_error(ErrorCode::kBadFile, mismatch(l.what, file, *want, now));
    *bytes = std::move(read.value());
  }
  return out;
}

}  // namespace myriad
