#include "catalog.h"

#include <sqlite3.h>

#include <utility>

namespace myriad::store {
namespace {

constexpr int kSchemaVersion = 2;  // PRAGMA user_version of the schema below (2: mixtures)

constexpr const char* kSchema =
    "CREATE TABLE IF NOT EXISTS blobs("
    "  sha256 TEXT PRIMARY KEY,"
    "  config_sha256 TEXT NOT NULL,"
    "  weights_sha256 TEXT NOT NULL,"
    "  size_bytes INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS adapters("
    "  tenant TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  version INTEGER NOT NULL,"
    "  sha256 TEXT NOT NULL REFERENCES blobs(sha256),"
    "  base_fingerprint TEXT NOT NULL,"
    "  rank INTEGER NOT NULL,"
    "  alpha REAL NOT NULL,"
    "  target_modules TEXT NOT NULL,"
    "  created_unix_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, name, version));"
    "CREATE INDEX IF NOT EXISTS adapters_by_sha256 ON adapters(sha256);"
    "CREATE TABLE IF NOT EXISTS version_counters("
    "  tenant TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  last_version INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, name));"
    "CREATE TABLE IF NOT EXISTS mixtures("
    "  tenant TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  router_json TEXT NOT NULL,"
    "  experts TEXT NOT NULL,"
    "  created_unix_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, name));";

constexpr const char* kSelectRecord =
    "SELECT a.tenant, a.name, a.version, a.base_fingerprint, a.rank, a.alpha, a.target_modules, a.sha256, "
    "b.size_bytes, a.created_unix_ms FROM adapters a JOIN blobs b ON a.sha256 = b.sha256 ";

std::string join_modules(const std::vector<std::string>& m) {
  std::string s;
  for (const auto& x : m) {
    if (!s.empty()) s += ',';
    s += x;
  }
  return s;
}

std::vector<std::string> split_modules(std::string_view s) {
  std::vector<std::string> out;
  while (!s.empty()) {
    const size_t comma = s.find(',');
    out.emplace_back(s.substr(0, comma));
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

// A prepared statement; finalized when it leaves scope. Errors name the
// catalog file, the statement's SQL and sqlite3_errmsg.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& path, const char* sql) : db_(db), path_(path), sql_(sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::string_view v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_text(s_, i, v.data() ? v.data() : "", int(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, int64_t v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, double v) {
    if (rc_ == SQLITE_OK) rc_ = sqlite3_bind_double(s_, i, v);
    return *this;
  }
  // true: a row is ready; false: done.
  Result<bool> step() {
    if (rc_ != SQLITE_OK) return error();
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    rc_ = rc;
    return error();
  }
  Status run() {  // a statement that returns no rows
    auto r = step();
    if (!r.ok()) return r.error();
    return ok_status();
  }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p == nullptr ? std::string() : std::string(p, size_t(sqlite3_column_bytes(s_, col)));
  }
  int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }

  Error error() const {
    std::string m = path_;
    m += ": SQLite statement \"";
    m += sql_;
    m += "\" failed: ";
    m += sqlite3_errmsg(db_);
    return make_error(ErrorCode::kIo, std::move(m));
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  const char* sql_;
  sqlite3_stmt* s_ = nullptr;
  int rc_ = SQLITE_OK;
};

Status exec(sqlite3* db, const std::string& path, const char* sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &msg) == SQLITE_OK) return ok_status();
  std::string m = path;
  m += ": SQLite statement \"";
  m += sql;
  m += "\" failed: ";
  m += msg != nullptr ? msg : sqlite3_errmsg(db);
  sqlite3_free(msg);
  return make_error(ErrorCode::kIo, std::move(m));
}

// BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
class Transaction {
 public:
  Transaction(sqlite3* db, const std::string& path) : db_(db), path_(path) {}
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status begin() {
    MYRIAD_TRY(exec(db_, path_, "BEGIN IMMEDIATE"));
    open_ = true;
    return ok_status();
  }
  Status commit() {
    MYRIAD_TRY(exec(db_, path_, "COMMIT"));
    open_ = false;
    return ok_status();
  }

 private:
  sqlite3* db_;
  const std::string& path_;
  bool open_ = false;
};

MixtureRecord read_mixture(const Stmt& s) {
  MixtureRecord m;
  m.tenant = s.text(0);
  m.name = s.text(1);
  m.router_json = s.text(2);
  for (const std::string& e : split_modules(s.text(3))) {
    auto id = parse_adapter_id(e);
    if (id.ok()) m.experts.push_back(id.value());
  }
  m.created_unix_ms = s.int64(4);
  return m;
}

AdapterRecord read_record(const Stmt& s) {
  AdapterRecord r;
  r.id = AdapterId{s.text(0), s.text(1), uint64_t(s.int64(2))};
  r.base_fingerprint = s.text(3);
  r.rank = int32_t(s.int64(4));
  r.alpha = float(s.real(5));
  r.target_modules = split_modules(s.text(6));
  r.sha256 = s.text(7);
  r.size_bytes = uint64_t(s.int64(8));
  r.created_unix_ms = s.int64(9);
  return r;
}

}  // namespace

Result<std::unique_ptr<Catalog>> Catalog::open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string m = path + ": cannot open the catalog: ";
    m += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return make_error(ErrorCode::kIo, std::move(m));
  }
  std::unique_ptr<Catalog> c(new Catalog(db, path));
  sqlite3_busy_timeout(db, 5000);
  {
    Stmt wal(db, c->path_, "PRAGMA journal_mode=WAL");
    auto row = wal.step();
    if (!row.ok()) return row.error();
    if (!*row || wal.text(0) != "wal") {
      return make_error(ErrorCode::kIo, path + ": SQLite would not switch to WAL journal mode (got '" +
                                            (*row ? wal.text(0) : std::string()) + "')");
    }
  }
  // FULL: a WAL commit is fsynced before COMMIT returns, so a published
  // version survives a power cut, not only a crash.
  MYRIAD_TRY(exec(db, c->path_, "PRAGMA synchronous=FULL"));
  MYRIAD_TRY(exec(db, c->path_, "PRAGMA foreign_keys=ON"));

  Stmt uv(db, c->path_, "PRAGMA user_version");
  auto row = uv.step();
  if (!row.ok()) return row.error();
  const int64_t version = *row ? uv.int64(0) : 0;
  if (version > kSchemaVersion) {
    return make_error(ErrorCode::kUnsupported, path + ": catalog schema version " + std::to_string(version) +
                                                   " was written by a newer Myriad (this one reads " +
                                                   std::to_string(kSchemaVersion) + ")");
  }
  if (version < kSchemaVersion) {
    Transaction t(db, c->path_);
    MYRIAD_TRY(t.begin());
    MYRIAD_TRY(exec(db, c->path_, kSchema));
    MYRIAD_TRY(exec(db, c->path_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str()));
    MYRIAD_TRY(t.commit());
  }
  return c;
}

Catalog::~Catalog() { sqlite3_close(db_); }

Result<AdapterRecord> Catalog::insert_next_version(AdapterRecord rec, const BlobRow& blob) {
  Transaction t(db_, path_);
  MYRIAD_TRY(t.begin());
  auto last = last_version(rec.id.tenant, rec.id.name);
  if (!last.ok()) return last.error();
  rec.id.version = *last + 1;
  {
    Stmt s(db_, path_,
           "INSERT OR IGNORE INTO blobs(sha256, config_sha256, weights_sha256, size_bytes) VALUES (?1, ?2, "
           "?3, ?4)");
    MYRIAD_TRY(s.bind(1, blob.sha256)
                   .bind(2, blob.config_sha256)
                   .bind(3, blob.weights_sha256)
                   .bind(4, int64_t(blob.size_bytes))
                   .run());
  }
  {
    Stmt s(
        db_, path_,
        "INSERT INTO adapters(tenant, name, version, sha256, base_fingerprint, rank, alpha, target_modules, "
        "created_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
    MYRIAD_TRY(s.bind(1, rec.id.tenant)
                   .bind(2, rec.id.name)
                   .bind(3, int64_t(rec.id.version))
                   .bind(4, rec.sha256)
                   .bind(5, rec.base_fingerprint)
                   .bind(6, int64_t(rec.rank))
                   .bind(7, double(rec.alpha))
                   .bind(8, join_modules(rec.target_modules))
                   .bind(9, rec.created_unix_ms)
                   .run());
  }
  {
    Stmt s(db_, path_,
           "INSERT INTO version_counters(tenant, name, last_version) VALUES (?1, ?2, ?3) "
           "ON CONFLICT(tenant, name) DO UPDATE SET last_version = excluded.last_version");
    MYRIAD_TRY(s.bind(1, rec.id.tenant).bind(2, rec.id.name).bind(3, int64_t(rec.id.version)).run());
  }
  MYRIAD_TRY(t.commit());
  return rec;
}

Result<std::optional<AdapterRecord>> Catalog::find(std::string_view tenant, std::string_view name,
                                                   uint64_t version) {
  std::string sql = kSelectRecord;
  sql += version == 0 ? "WHERE a.tenant = ?1 AND a.name = ?2 ORDER BY a.version DESC LIMIT 1"
                      : "WHERE a.tenant = ?1 AND a.name = ?2 AND a.version = ?3";
  Stmt s(db_, path_, sql.c_str());
  s.bind(1, tenant).bind(2, name);
  if (version != 0) s.bind(3, int64_t(version));
  auto row = s.step();
  if (!row.ok()) return row.error();
  if (!*row) return std::optional<AdapterRecord>();
  return std::optional<AdapterRecord>(read_record(s));
}

Result<std::vector<AdapterRecord>> Catalog::list(std::string_view tenant, std::string_view name) {
  // ?1 / ?2 empty match everything: one statement for the three listings.
  std::string sql = kSelectRecord;
  sql += "WHERE (?1 = '' OR a.tenant = ?1) AND (?2 = '' OR a.name = ?2) ORDER BY a.tenant, a.name, a.version";
  Stmt s(db_, path_, sql.c_str());
  s.bind(1, tenant).bind(2, name);
  std::vector<AdapterRecord> out;
  for (;;) {
    auto row = s.step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    out.push_back(read_record(s));
  }
  return out;
}

Result<std::optional<BlobRow>> Catalog::blob(std::string_view sha256) {
  Stmt s(db_, path_, "SELECT sha256, config_sha256, weights_sha256, size_bytes FROM blobs WHERE sha256 = ?1");
  s.bind(1, sha256);
  auto row = s.step();
  if (!row.ok()) return row.error();
  if (!*row) return std::optional<BlobRow>();
  return std::optional<BlobRow>(BlobRow{s.text(0), s.text(1), s.text(2), uint64_t(s.int64(3))});
}

Result<std::vector<std::string>> Catalog::blob_names() {
  Stmt s(db_, path_, "SELECT sha256 FROM blobs");
  std::vector<std::string> out;
  for (;;) {
    auto row = s.step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    out.push_back(s.text(0));
  }
  return out;
}

Result<uint64_t> Catalog::last_version(std::string_view tenant, std::string_view name) {
  Stmt s(db_, path_, "SELECT last_version FROM version_counters WHERE tenant = ?1 AND name = ?2");
  s.bind(1, tenant).bind(2, name);
  auto row = s.step();
  if (!row.ok()) return row.error();
  return *row ? uint64_t(s.int64(0)) : uint64_t(0);
}

Result<Catalog::Removed> Catalog::remove(std::string_view tenant, std::string_view name, uint64_t version) {
  Transaction t(db_, path_);
  MYRIAD_TRY(t.begin());
  Removed removed;
  {
    Stmt s(db_, path_, "DELETE FROM adapters WHERE tenant = ?1 AND name = ?2 AND (?3 = 0 OR version = ?3)");
    MYRIAD_TRY(s.bind(1, tenant).bind(2, name).bind(3, int64_t(version)).run());
    removed.versions = uint64_t(sqlite3_changes(db_));
  }
  constexpr const char* kUnreferenced =
      "SELECT sha256 FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM adapters)";
  {
    Stmt s(db_, path_, kUnreferenced);
    for (;;) {
      auto row = s.step();
      if (!row.ok()) return row.error();
      if (!*row) break;
      removed.freed_blobs.push_back(s.text(0));
    }
  }
  {
    Stmt s(db_, path_, "DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM adapters)");
    MYRIAD_TRY(s.run());
  }
  MYRIAD_TRY(t.commit());
  return removed;
}

Status Catalog::put_mixture(const MixtureRecord& m) {
  std::string experts;
  for (const AdapterId& e : m.experts) {
    if (!experts.empty()) experts += ',';
    experts += e.to_string();
  }
  Transaction t(db_, path_);
  MYRIAD_TRY(t.begin());
  Stmt s(db_, path_,
         "INSERT OR REPLACE INTO mixtures(tenant, name, router_json, experts, created_unix_ms) VALUES (?1, ?2, ?3, ?4, "
         "?5)");
  MYRIAD_TRY(s.bind(1, m.tenant).bind(2, m.name).bind(3, m.router_json).bind(4, experts).bind(5, m.created_unix_ms).run());
  return t.commit();
}

Result<std::vector<MixtureRecord>> Catalog::mixtures(std::string_view tenant, std::string_view name) {
  Stmt s(db_, path_,
         "SELECT tenant, name, router_json, experts, created_unix_ms FROM mixtures WHERE (?1 = '' OR tenant = ?1) AND "
         "(?2 = '' OR name = ?2) ORDER BY tenant, name");
  s.bind(1, tenant).bind(2, name);
  std::vector<MixtureRecord> out;
  for (;;) {
    auto row = s.step();
    if (!row.ok()) return row.error();
    if (!*row) break;
    out.push_back(read_mixture(s));
  }
  return out;
}

Result<bool> Catalog::remove_mixture(std::string_view tenant, std::string_view name) {
  Transaction t(db_, path_);
  MYRIAD_TRY(t.begin());
  Stmt s(db_, path_, "DELETE FROM mixtures WHERE tenant = ?1 AND name = ?2");
  MYRIAD_TRY(s.bind(1, tenant).bind(2, name).run());
  const bool removed = sqlite3_changes(db_) > 0;
  MYRIAD_TRY(t.commit());
  return removed;
}

}  // namespace myriad::store
