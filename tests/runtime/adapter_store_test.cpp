// The adapter store on a real SQLite file and real folders, one fresh data
// directory per test: publish / resolve / list / versions / remove, tenants
// kept apart, a restart, a damaged stored file never served, hostile
// adapters refused with the store unchanged, recovery on open, concurrent
// publishes, and kill -9 at random points of publishing (real processes).
#include "runtime/adapter_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "runtime/fetched_adapters.h"
#include "runtime/peft_adapter.h"
#include "runtime/safetensors.h"
#include "runtime/sha256.h"
#include "test_fixtures.h"
#include "test_seed.h"

extern char** environ;

namespace myriad {
namespace {

namespace fs = std::filesystem;
using myriad::testing::fixtures_dir;

constexpr const char* kFingerprint = "tiny-llama@test";

// A fresh directory under the test temp dir, deleted afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = ::testing::TempDir() + "myriad_store_XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
    EXPECT_FALSE(path_.empty());
  }
  ~ScratchDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }
  std::string data() const { return path_ + "/data"; }

 private:
  std::string path_;
};

ModelConfig base() {
  auto c = load_model_config(fixtures_dir() + "/tiny-llama");
  EXPECT_TRUE(c.ok()) << c.error().to_string();
  return c.value();
}

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_bytes(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A fixture adapter's two files as bytes.
struct AdapterBytes {
  std::string config;
  std::string weights;
};
AdapterBytes fixture(const std::string& name) {
  const std::string dir = fixtures_dir() + "/tiny-llama/adapters/" + name;
  return {read_bytes(dir + "/adapter_config.json"), read_bytes(dir + "/adapter_model.safetensors")};
}

// The fixture's tensors rewritten: `edit(name, shape, values)` may change any.
template <class F>
std::string edited_weights(const std::string& fixture_name, const std::string& scratch, F&& edit) {
  auto st = SafetensorsFile::open(fixtures_dir() + "/tiny-llama/adapters/" + fixture_name +
                                  "/adapter_model.safetensors");
  EXPECT_TRUE(st.ok());
  std::vector<std::string> names;
  std::vector<std::vector<int64_t>> shapes;
  std::vector<std::vector<float>> data;
  for (const TensorView& t : (*st)->tensors()) {
    names.push_back(t.name);
    shapes.push_back(t.shape);
    std::vector<float> v(size_t(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = t.at(i);
    edit(names.back(), shapes.back(), v);
    data.push_back(std::move(v));
  }
  std::vector<TensorToWrite> w;
  for (size_t i = 0; i < names.size(); ++i) {
    w.push_back({names[i], DType::kF32, shapes[i], std::as_bytes(std::span(data[i]))});
  }
  const std::string path = scratch + "/edited.safetensors";
  EXPECT_TRUE(write_safetensors(path, w).ok());
  std::string bytes = read_bytes(path);
  fs::remove(path);
  return bytes;
}

AdapterName name_of(const std::string& text) {
  auto n = parse_adapter_name(text, "default");
  EXPECT_TRUE(n.ok()) << n.error().to_string();
  return n.value();
}

std::unique_ptr<AdapterStore> open_store(const std::string& dir, AdapterStoreOptions options = {},
                                         const std::string& fingerprint = kFingerprint) {
  auto s = AdapterStore::open(dir, base(), fingerprint, options);
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return s.ok() ? std::move(s.value()) : nullptr;
}

AdapterRecord publish_ok(AdapterStore& store, const std::string& name, const AdapterBytes& a) {
  auto r = store.publish(name_of(name), a.config, a.weights);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r.ok() ? r.value() : AdapterRecord{};
}

std::vector<uint64_t> version_numbers(const std::vector<AdapterRecord>& rs) {
  std::vector<uint64_t> v;
  for (const auto& r : rs) v.push_back(r.id.version);
  return v;
}

// Every path under a folder (relative), sorted: the "unchanged" check.
std::vector<std::string> tree(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    out.push_back(fs::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void expect_same_records(const std::vector<AdapterRecord>& a, const std::vector<AdapterRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].id, b[i].id);
    EXPECT_EQ(a[i].base_fingerprint, b[i].base_fingerprint);
    EXPECT_EQ(a[i].rank, b[i].rank);
    EXPECT_EQ(a[i].alpha, b[i].alpha);
    EXPECT_EQ(a[i].target_modules, b[i].target_modules);
    EXPECT_EQ(a[i].sha256, b[i].sha256);
    EXPECT_EQ(a[i].size_bytes, b[i].size_bytes);
    EXPECT_EQ(a[i].created_unix_ms, b[i].created_unix_ms);
  }
}

void expect_error(const Status& s, ErrorCode code, const std::string& fragment) {
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, code) << s.error().to_string();
  EXPECT_NE(s.error().message.find(fragment), std::string::npos)
      << "'" << fragment << "' not in: " << s.error().message;
}
template <class T>
void expect_error(const Result<T>& r, ErrorCode code, const std::string& fragment) {
  ASSERT_FALSE(r.ok()) << "expected " << error_code_name(code) << " with '" << fragment << "'";
  EXPECT_EQ(r.error().code, code) << r.error().to_string();
  EXPECT_NE(r.error().message.find(fragment), std::string::npos)
      << "'" << fragment << "' not in: " << r.error().message;
}

TEST(AdapterStore, PublishResolveListVersions) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv"), r8 = fixture("r8-all");

  const AdapterRecord v1 = publish_ok(*store, "alpha/chat", r4);
  EXPECT_EQ(v1.id, (AdapterId{"alpha", "chat", 1}));
  EXPECT_EQ(v1.base_fingerprint, kFingerprint);
  EXPECT_EQ(v1.rank, 4);
  EXPECT_EQ(v1.alpha, 16.0f);
  EXPECT_EQ(v1.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  EXPECT_EQ(v1.size_bytes, r4.config.size() + r4.weights.size());
  EXPECT_GT(v1.created_unix_ms, 1700000000000);
  // The documented content address: sha256sum's manifest of the two files, hashed.
  const std::string manifest = sha256_hex(r4.config) + "  adapter_config.json\n" + sha256_hex(r4.weights) +
                               "  adapter_model.safetensors\n";
  EXPECT_EQ(v1.sha256, sha256_hex(manifest));
  const std::string blob = d.data() + "/blobs/" + v1.sha256;
  EXPECT_EQ(read_bytes(blob + "/adapter_config.json"), r4.config);
  EXPECT_EQ(read_bytes(blob + "/adapter_model.safetensors"), r4.weights);

  const AdapterRecord v2 = publish_ok(*store, "alpha/chat@7", r8);  // a version in the name is ignored
  EXPECT_EQ(v2.id.version, 2u);
  EXPECT_EQ(v2.rank, 8);
  EXPECT_EQ(v2.target_modules.size(), 7u);

  auto newest = store->resolve(name_of("alpha/chat"));
  ASSERT_TRUE(newest.ok()) << newest.error().to_string();
  EXPECT_EQ(newest->id.version, 2u);
  auto pinned = store->resolve(name_of("alpha/chat@1"));
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(pinned->sha256, v1.sha256);
  expect_error(store->resolve(name_of("alpha/chat@3")), ErrorCode::kNotFound,
               "alpha/chat@3 not found (newest is @2)");
  expect_error(store->resolve(name_of("alpha/other")), ErrorCode::kNotFound, "adapter alpha/other not found");

  auto vs = store->versions("alpha", "chat");
  ASSERT_TRUE(vs.ok());
  EXPECT_EQ(version_numbers(*vs), (std::vector<uint64_t>{1, 2}));
  expect_error(store->versions("alpha", "nope"), ErrorCode::kNotFound, "alpha/nope");
  auto all = store->list("alpha");
  ASSERT_TRUE(all.ok());
  expect_same_records(*all, {v1, v2});

  auto w = store->load(v2.id);
  ASSERT_TRUE(w.ok()) << w.error().to_string();
  EXPECT_EQ((*w)->max_rank(), 8);
  EXPECT_EQ((*w)->name, "alpha/chat@2");
  expect_error(store->load(AdapterId{"alpha", "chat", 9}), ErrorCode::kNotFound, "alpha/chat@9");
}

TEST(AdapterStore, PublishFolderReadsThePeftFiles) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  auto r =
      store->publish_folder(name_of("alpha/rs"), fixtures_dir() + "/tiny-llama/adapters/r16-rslora-o-down");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->rank, 16);
  EXPECT_EQ(r->target_modules, (std::vector<std::string>{"o_proj", "down_proj"}));
  expect_error(store->publish_folder(name_of("alpha/rs"), d.path() + "/absent"), ErrorCode::kNotFound,
               "absent/adapter_config.json");
}

TEST(AdapterStore, SameBytesMakeANewVersionSharingTheBlob) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv");
  const AdapterRecord a = publish_ok(*store, "alpha/chat", r4);
  const AdapterRecord b = publish_ok(*store, "alpha/chat", r4);
  const AdapterRecord c = publish_ok(*store, "beta/chat", r4);
  EXPECT_EQ(b.id.version, 2u);
  EXPECT_EQ(c.id.version, 1u);
  EXPECT_EQ(a.sha256, b.sha256);
  EXPECT_EQ(a.sha256, c.sha256);
  EXPECT_EQ(tree(d.data() + "/blobs").size(), 3u);  // one folder, two files

  ASSERT_TRUE(store->remove(a.id).ok());
  ASSERT_TRUE(store->remove_all_versions("alpha", "chat").ok());
  EXPECT_TRUE(fs::exists(d.data() + "/blobs/" + a.sha256)) << "beta/chat@1 still uses it";
  EXPECT_TRUE(store->load(c.id).ok());
  ASSERT_TRUE(store->remove(c.id).ok());
  EXPECT_TRUE(tree(d.data() + "/blobs").empty()) << "no row references the blob any more";
  EXPECT_TRUE(tree(d.data() + "/tmp").empty());
}

TEST(AdapterStore, ListKeepsTenantsApart) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv"), r8 = fixture("r8-all");
  publish_ok(*store, "beta/chat", r8);
  publish_ok(*store, "alpha/code", r4);
  publish_ok(*store, "alpha/chat", r4);
  publish_ok(*store, "beta/chat", r4);

  auto alpha = store->list("alpha");
  ASSERT_TRUE(alpha.ok());
  ASSERT_EQ(alpha->size(), 2u);
  EXPECT_EQ((*alpha)[0].id, (AdapterId{"alpha", "chat", 1}));
  EXPECT_EQ((*alpha)[1].id, (AdapterId{"alpha", "code", 1}));
  auto beta = store->list("beta");
  ASSERT_TRUE(beta.ok());
  ASSERT_EQ(beta->size(), 2u);
  for (const auto& r : *beta) EXPECT_EQ(r.id.tenant, "beta");
  EXPECT_EQ(version_numbers(*beta), (std::vector<uint64_t>{1, 2}));
  auto none = store->list("gamma");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto all = store->list("");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
  // A default string_view (a null pointer) means all tenants too, not SQL NULL.
  EXPECT_EQ(store->list(std::string_view())->size(), 4u);
  EXPECT_EQ((*all)[0].id.tenant, "alpha");
  EXPECT_EQ((*all)[3].id.tenant, "beta");
  expect_error(store->list("../etc"), ErrorCode::kInvalidArgument, "tenant");
  // Removing one tenant's adapter leaves the other's same-named adapter alone.
  ASSERT_TRUE(store->remove_all_versions("alpha", "chat").ok());
  EXPECT_TRUE(store->resolve(name_of("beta/chat")).ok());
}

TEST(AdapterStore, RemovedVersionNumbersAreNeverReused) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv");
  for (int i = 0; i < 3; ++i) publish_ok(*store, "alpha/chat", r4);
  ASSERT_TRUE(store->remove(AdapterId{"alpha", "chat", 3}).ok());
  EXPECT_EQ(publish_ok(*store, "alpha/chat", r4).id.version, 4u);
  ASSERT_TRUE(store->remove(AdapterId{"alpha", "chat", 2}).ok());
  auto vs = store->versions("alpha", "chat");
  ASSERT_TRUE(vs.ok());
  EXPECT_EQ(version_numbers(*vs), (std::vector<uint64_t>{1, 4}));

  ASSERT_TRUE(store->remove_all_versions("alpha", "chat").ok());
  expect_error(store->resolve(name_of("alpha/chat")), ErrorCode::kNotFound, "alpha/chat");
  expect_error(store->versions("alpha", "chat"), ErrorCode::kNotFound, "alpha/chat");
  EXPECT_EQ(publish_ok(*store, "alpha/chat", r4).id.version, 5u);

  expect_error(store->remove(AdapterId{"alpha", "chat", 4}), ErrorCode::kNotFound, "alpha/chat@4 not found");
  expect_error(store->remove(AdapterId{"alpha", "chat", 0}), ErrorCode::kInvalidArgument, "name a version");
  expect_error(store->remove_all_versions("alpha", "nope"), ErrorCode::kNotFound, "alpha/nope");
}

TEST(AdapterStore, EverythingSurvivesARestart) {
  ScratchDir d;
  std::vector<AdapterRecord> before;
  {
    auto store = open_store(d.data());
    ASSERT_TRUE(store);
    publish_ok(*store, "alpha/chat", fixture("r4-qv"));
    publish_ok(*store, "alpha/chat", fixture("r8-all"));
    publish_ok(*store, "beta/code", fixture("r16-rslora-o-down"));
    ASSERT_TRUE(store->remove(AdapterId{"alpha", "chat", 2}).ok());
    before = store->list("").value();
  }
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  auto after = store->list("");
  ASSERT_TRUE(after.ok());
  expect_same_records(*after, before);
  for (const auto& r : *after) EXPECT_TRUE(store->load(r.id).ok()) << r.id.to_string();
  EXPECT_EQ(publish_ok(*store, "alpha/chat", fixture("r4-qv")).id.version, 3u) << "the counter survived";
  EXPECT_EQ(publish_ok(*store, "beta/code", fixture("r4-qv")).id.version, 2u);
}

TEST(AdapterStore, SecondStoreOnOneDirectoryIsRefused) {
  ScratchDir d;
  auto first = open_store(d.data());
  ASSERT_TRUE(first);
  expect_error(AdapterStore::open(d.data(), base(), kFingerprint), ErrorCode::kIo, "another adapter store");
  first.reset();
  EXPECT_TRUE(AdapterStore::open(d.data(), base(), kFingerprint).ok());
  expect_error(AdapterStore::open(d.path() + "/x", base(), ""), ErrorCode::kInvalidArgument, "fingerprint");
}

TEST(AdapterStore, DamagedStoredFileIsNeverServed) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv");
  const AdapterRecord rec = publish_ok(*store, "alpha/chat", r4);
  const std::string blob = d.data() + "/blobs/" + rec.sha256;

  // One flipped bit in a tensor value: still a valid safetensors file.
  std::string bad = r4.weights;
  bad[bad.size() - 3] ^= 0x01;
  write_bytes(blob + "/adapter_model.safetensors", bad);
  auto w = store->load(rec.id);
  expect_error(
      w, ErrorCode::kBadFile,
      "stored adapter alpha/chat@1: adapter_model.safetensors no longer matches its sha256 (stored " +
          sha256_hex(r4.weights) + ", now " + sha256_hex(bad) + ")");

  write_bytes(blob + "/adapter_model.safetensors", r4.weights);
  write_bytes(blob + "/adapter_config.json", r4.config + " ");
  expect_error(store->load(rec.id), ErrorCode::kBadFile, "adapter_config.json no longer matches its sha256");
  fs::remove(blob + "/adapter_config.json");
  expect_error(store->load(rec.id), ErrorCode::kBadFile, "adapter_config.json is missing");

  // Publishing the same bytes again replaces the damaged blob with verified files.
  const AdapterRecord again = publish_ok(*store, "alpha/chat", r4);
  EXPECT_EQ(again.sha256, rec.sha256);
  EXPECT_TRUE(store->load(again.id).ok());
  EXPECT_TRUE(store->load(rec.id).ok());
  EXPECT_TRUE(tree(d.data() + "/tmp").empty());
}

TEST(AdapterStore, ReadFilesGivesTheVerifiedBytesForAnotherHost) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv");
  const AdapterRecord rec = publish_ok(*store, "alpha/chat", r4);
  auto files = store->read_files(rec.id);
  ASSERT_TRUE(files.ok()) << files.error().to_string();
  EXPECT_EQ(files->record.id, rec.id);
  EXPECT_EQ(files->record.sha256, rec.sha256);
  EXPECT_EQ(files->config_json, r4.config);
  EXPECT_EQ(files->safetensors, r4.weights);
  EXPECT_EQ(files->config_sha256, sha256_hex(r4.config));
  EXPECT_EQ(files->weights_sha256, sha256_hex(r4.weights));
  expect_error(store->read_files(AdapterId{"alpha", "chat", 2}), ErrorCode::kNotFound, "adapter alpha/chat@2 not found");

  // A damaged file is refused, naming it, as load() refuses it.
  const std::string blob = d.data() + "/blobs/" + rec.sha256;
  std::string bad = r4.weights;
  bad[bad.size() - 3] ^= 0x01;
  write_bytes(blob + "/adapter_model.safetensors", bad);
  expect_error(store->read_files(rec.id), ErrorCode::kBadFile,
               "stored adapter alpha/chat@1: adapter_model.safetensors no longer matches its sha256 (stored " +
                   sha256_hex(r4.weights) + ", now " + sha256_hex(bad) + ")");
  fs::remove(blob + "/adapter_config.json");
  expect_error(store->read_files(rec.id), ErrorCode::kBadFile, "adapter_config.json cannot be read");
}

TEST(AdapterStore, HostileAdaptersAreRefusedWithTheStoreUnchanged) {
  ScratchDir d;
  AdapterStoreOptions options;
  options.max_rank = 8;
  options.max_adapter_bytes = 1 << 20;
  auto store = open_store(d.data(), options);
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv");
  publish_ok(*store, "alpha/chat", r4);
  const auto records = store->list("").value();
  const auto files = tree(d.data());

  const std::string shape_mismatch = edited_weights(
      "r4-qv", d.path(), [](const std::string& n, std::vector<int64_t>& shape, std::vector<float>& v) {
        if (n == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") {
          shape = {4, 32};  // the base's hidden size is 64
          v.resize(4 * 32);
        }
      });
  const std::string nan = edited_weights(
      "r4-qv", d.path(), [](const std::string& n, std::vector<int64_t>&, std::vector<float>& v) {
        if (n == "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight") {
          v[5] = std::numeric_limits<float>::quiet_NaN();
        }
      });
  const std::string inf = edited_weights(
      "r4-qv", d.path(), [](const std::string& n, std::vector<int64_t>&, std::vector<float>& v) {
        if (n == "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight") {
          v[0] = std::numeric_limits<float>::infinity();
        }
      });
  const AdapterBytes r16 = fixture("r16-rslora-o-down");
  struct Case {
    const char* what;
    std::string name;
    std::string config;
    std::string weights;
    ErrorCode code;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {"bad JSON", "alpha/chat", "{\"r\": 4, ", r4.weights, ErrorCode::kBadFile,
       "adapter_config.json: not valid JSON"},
      {"truncated safetensors", "alpha/chat", r4.config, r4.weights.substr(0, r4.weights.size() / 2),
       ErrorCode::kBadFile, "adapter_model.safetensors"},
      {"empty safetensors", "alpha/chat", r4.config, "", ErrorCode::kBadFile, "adapter_model.safetensors"},
      {"shape mismatch with the base", "alpha/chat", r4.config, shape_mismatch, ErrorCode::kBadFile,
       "layers.0.self_attn.q_proj.lora_A.weight"},
      {"NaN", "alpha/chat", r4.config, nan, ErrorCode::kBadFile, "NaN"},
      {"infinity", "alpha/chat", r4.config, inf, ErrorCode::kBadFile, "infinite"},
      {"rank over the slot capacity", "alpha/chat", r16.config, r16.weights, ErrorCode::kUnsupported,
       "rank 16, above the maximum adapter rank 8"},
      {"over the size limit", "alpha/chat", r4.config, std::string(1 << 20, '\0'),
       ErrorCode::kInvalidArgument, "exceed the store's limit"},
      {"tenant that is a path", "../alpha/chat", r4.config, r4.weights, ErrorCode::kInvalidArgument,
       "tenant"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    AdapterName name;
    const size_t slash = c.name.rfind('/');
    name.tenant = c.name.substr(0, slash);
    name.name = c.name.substr(slash + 1);
    auto r = store->publish(name, c.config, c.weights);
    ASSERT_FALSE(r.ok()) << "accepted";
    if (r.error().code != c.code) ADD_FAILURE() << "code " << r.error().to_string();
    EXPECT_NE(r.error().message.find(c.fragment), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find("/tmp/publish-"), std::string::npos)
        << "names the temporary folder: " << r.error().message;
    expect_same_records(store->list("").value(), records);
    EXPECT_EQ(tree(d.data()), files) << "a file was left behind or removed";
  }
  // The next good publish continues the numbering (no version consumed).
  EXPECT_EQ(publish_ok(*store, "alpha/chat", r4).id.version, 2u);
}

TEST(AdapterStore, OpenDeletesTemporaryAndUnreferencedFiles) {
  ScratchDir d;
  std::string kept;
  {
    auto store = open_store(d.data());
    ASSERT_TRUE(store);
    kept = publish_ok(*store, "alpha/chat", fixture("r4-qv")).sha256;
  }
  // What a crash can leave: a half-written publish, a blob renamed in but
  // never committed, a removed blob mid-delete.
  fs::create_directories(d.data() + "/tmp/publish-3");
  write_bytes(d.data() + "/tmp/publish-3/adapter_config.json", "{");
  write_bytes(d.data() + "/tmp/stray", "x");
  const std::string orphan = d.data() + "/blobs/" + std::string(64, 'a');
  fs::create_directories(orphan);
  write_bytes(orphan + "/adapter_config.json", "{}");
  write_bytes(d.data() + "/blobs/not-a-blob", "y");

  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  EXPECT_TRUE(tree(d.data() + "/tmp").empty());
  EXPECT_EQ(tree(d.data() + "/blobs"), (std::vector<std::string>{kept, kept + "/adapter_config.json",
                                                                 kept + "/adapter_model.safetensors"}));
  EXPECT_TRUE(store->load(AdapterId{"alpha", "chat", 1}).ok());
}

TEST(AdapterStore, LoadRefusesAVersionPublishedForAnotherBase) {
  ScratchDir d;
  {
    auto store = open_store(d.data(), {}, "base-A");
    ASSERT_TRUE(store);
    publish_ok(*store, "alpha/chat", fixture("r4-qv"));
  }
  auto store = open_store(d.data(), {}, "base-B");
  ASSERT_TRUE(store);
  auto rec = store->resolve(name_of("alpha/chat"));
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->base_fingerprint, "base-A");
  expect_error(store->load(rec->id), ErrorCode::kInvalidArgument,
               "alpha/chat@1 was published for base 'base-A'; this store serves base 'base-B'");
}

TEST(AdapterStore, ConcurrentPublishesGetDistinctVersions) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterBytes r4 = fixture("r4-qv"), r8 = fixture("r8-all");
  constexpr int kThreads = 4, kEach = 3;
  std::vector<std::vector<uint64_t>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = store->publish(name_of("alpha/chat"), t % 2 ? r4.config : r8.config,
                                t % 2 ? r4.weights : r8.weights);
        if (r.ok()) got[size_t(t)].push_back(r->id.version);
        (void)store->list("alpha");  // readers interleave with writers
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<uint64_t> all;
  for (const auto& g : got) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  std::vector<uint64_t> want(kThreads * kEach);
  for (size_t i = 0; i < want.size(); ++i) want[i] = i + 1;
  EXPECT_EQ(all, want);
  EXPECT_EQ(tree(d.data() + "/blobs").size(), 6u);  // two blobs
  EXPECT_TRUE(tree(d.data() + "/tmp").empty());
}

// ---- kill -9 during publish -------------------------------------------------
//
// The parent starts this test binary again as a child process running only
// AdapterStoreCrashChild.DISABLED_PublishLoop (fork + exec: the child is a
// clean single-threaded process, whatever threads earlier tests left). The
// child opens the store, reports "ready" on a pipe and publishes in a loop
// until the parent SIGKILLs it after a random delay; the parent then reopens
// the store and checks it.

constexpr const char* kChildDirEnv = "MYRIAD_STORE_CRASH_DIR";
constexpr const char* kChildFdEnv = "MYRIAD_STORE_CRASH_READY_FD";
const char* const kCrashNames[] = {"alpha/chat", "beta/chat", "alpha/code"};

TEST(AdapterStoreCrashChild, DISABLED_PublishLoop) {
  const char* dir = std::getenv(kChildDirEnv);
  const char* fd_text = std::getenv(kChildFdEnv);
  if (dir == nullptr || fd_text == nullptr) GTEST_SKIP() << "runs only as the child of AdapterStoreCrash";
  auto store = AdapterStore::open(dir, base(), kFingerprint);
  ASSERT_TRUE(store.ok()) << store.error().to_string();
  const AdapterBytes adapters[] = {fixture("r4-qv"), fixture("r8-all"), fixture("r16-rslora-o-down")};
  const int fd = std::atoi(fd_text);
  ASSERT_EQ(::write(fd, "r", 1), 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);  // if the parent is gone
  for (uint64_t i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    // Mostly new bytes (a new blob: the rename step runs), every fourth a
    // repeat (a shared blob). Low mantissa bits of the last value: still finite.
    AdapterBytes a = adapters[(i / 3) % 3];
    if (i % 4 != 3) {
      a.weights[a.weights.size() - 4] = char(i & 0xff);
      a.weights[a.weights.size() - 3] = char((i >> 8) & 0xff);
    }
    auto r = (*store)->publish(name_of(kCrashNames[i % 3]), a.config, a.weights);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
  }
}

// Runs the child until it is ready, sleeps `delay`, SIGKILLs it. Returns
// false (with a failure) if the child died on its own.
bool run_child_and_kill(const std::string& dir, std::chrono::microseconds delay) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) {
    ADD_FAILURE() << "pipe failed";
    return false;
  }
  // Everything exec needs is built before fork (the child only calls
  // async-signal-safe functions until exec).
  std::vector<std::string> env_strings = {std::string(kChildDirEnv) + "=" + dir,
                                          std::string(kChildFdEnv) + "=" + std::to_string(pipefd[1])};
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v = *e;
    if (v.rfind(kChildDirEnv, 0) != 0 && v.rfind(kChildFdEnv, 0) != 0) envp.push_back(*e);
  }
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::string filter = "--gtest_filter=AdapterStoreCrashChild.DISABLED_PublishLoop";
  std::string disabled = "--gtest_also_run_disabled_tests";
  char* argv[] = {exe.data(), filter.data(), disabled.data(), nullptr};
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);

  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    if (devnull >= 0) ::dup2(devnull, 1);  // the child's gtest banner would only clutter the log
    ::execve(argv[0], argv, envp.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  if (devnull >= 0) ::close(devnull);
  if (pid < 0) {
    ::close(pipefd[0]);
    ADD_FAILURE() << "fork failed";
    return false;
  }
  pollfd p{pipefd[0], POLLIN, 0};
  char c = 0;
  const bool ready = ::poll(&p, 1, 60000) == 1 && ::read(pipefd[0], &c, 1) == 1 && c == 'r';
  ::close(pipefd[0]);
  if (ready) std::this_thread::sleep_for(delay);
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!ready) {
    ADD_FAILURE() << "the child did not become ready (status " << status << ")";
    return false;
  }
  if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)) {
    ADD_FAILURE() << "the child ended before the kill (status " << status << "): its publish failed";
    return false;
  }
  return true;
}

// After a crash: every row's files exist and hash-match (load re-hashes),
// no temporary survives, every blob folder is referenced, and each name's
// versions are exactly 1..k (publish consumes a number only in the commit
// that inserts its row, and this child never removes).
std::map<std::string, uint64_t> check_consistent(const std::string& dir) {
  std::map<std::string, uint64_t> newest;
  auto store = open_store(dir);
  if (!store) return newest;
  EXPECT_TRUE(tree(dir + "/tmp").empty());
  auto all = store->list("");
  EXPECT_TRUE(all.ok());
  if (!all.ok()) return newest;
  std::set<std::string> referenced;
  std::map<std::string, std::vector<uint64_t>> versions;
  for (const auto& r : *all) {
    referenced.insert(r.sha256);
    versions[r.id.qualified_name()].push_back(r.id.version);
    auto w = store->load(r.id);
    EXPECT_TRUE(w.ok()) << r.id.to_string() << ": " << w.error().to_string();
  }
  for (const auto& e : fs::directory_iterator(dir + "/blobs")) {
    EXPECT_EQ(referenced.count(e.path().filename().string()), 1u) << "unreferenced blob " << e.path();
  }
  for (const auto& sha : referenced) EXPECT_TRUE(fs::is_directory(dir + "/blobs/" + sha)) << sha;
  for (const auto& [name, vs] : versions) {
    for (size_t i = 0; i < vs.size(); ++i) EXPECT_EQ(vs[i], i + 1) << name << ": versions are not 1..k";
    newest[name] = vs.size();
  }
  return newest;
}

TEST(AdapterStoreCrash, KillDuringPublishLeavesAConsistentStore) {
  const uint64_t seed = myriad::testing::test_seed();
  SCOPED_TRACE(myriad::testing::seed_note(seed));
  std::mt19937 rng(static_cast<uint32_t>(seed));
  ScratchDir d;
  { ASSERT_TRUE(open_store(d.data())); }  // created before the first child
  constexpr int kRounds = 20;
  std::map<std::string, uint64_t> newest;
  int interrupted = 0;  // rounds whose kill left a publish half done (files in tmp/ or an uncommitted blob)
  for (int round = 0; round < kRounds; ++round) {
    // 0-40 ms: from before the first publish finishes to many publishes in
    // (one takes a few ms here, mostly fsync).
    const auto delay = std::chrono::microseconds(std::uniform_int_distribution<int>(0, 40000)(rng));
    SCOPED_TRACE("round " + std::to_string(round) + ", kill after " + std::to_string(delay.count()) + " us");
    if (!run_child_and_kill(d.data(), delay)) return;
    const auto blob_dirs = [&] {
      return std::distance(fs::directory_iterator(d.data() + "/blobs"), fs::directory_iterator());
    };
    const bool left_tmp = !tree(d.data() + "/tmp").empty();
    const auto blobs_before = blob_dirs();
    auto now = check_consistent(d.data());
    if (left_tmp || blob_dirs() < blobs_before) ++interrupted;
    for (const auto& [name, k] : newest) EXPECT_GE(now[name], k) << name << " lost committed versions";
    newest = now;
  }
  uint64_t total = 0;
  for (const auto& [name, k] : newest) total += k;
  std::printf(
      "[ info     ] %llu versions published across %d killed children; %d kills left a publish half done\n",
      (unsigned long long)total, kRounds, interrupted);
  // The numbering continues after the last crash.
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  for (const char* name : kCrashNames) {
    const AdapterRecord r = publish_ok(*store, name, fixture("r4-qv"));
    EXPECT_EQ(r.id.version, newest[name] + 1) << name;
  }
}

}  // namespace
// A worker's cache of fetched versions: the hashes are checked before
// anything is written; a found blob is re-hashed, and a damaged one is
// dropped to be fetched again.
TEST(FetchedAdapters, KeepsOnlyVerifiedBlobsAndForgetsDamagedOnes) {
  ScratchDir d;
  auto store = open_store(d.data());
  ASSERT_TRUE(store);
  const AdapterRecord rec = publish_ok(*store, "alpha/chat", fixture("r4-qv"));
  auto files = store->read_files(rec.id);
  ASSERT_TRUE(files.ok()) << files.error().to_string();

  auto cache = FetchedAdapters::open(d.path() + "/worker");
  ASSERT_TRUE(cache.ok()) << cache.error().to_string();
  FetchedAdapters& c = *cache.value();
  EXPECT_FALSE(c.find(rec.id));

  AdapterFiles tampered = files.value();
  tampered.safetensors[tampered.safetensors.size() - 3] ^= 0x01;
  expect_error(c.put(tampered), ErrorCode::kBadFile,
               "fetched adapter alpha/chat@1: adapter_model.safetensors does not match its sha256 (sent " +
                   files->weights_sha256 + ", received " + sha256_hex(tampered.safetensors) + ")");
  AdapterFiles other_record = files.value();
  other_record.record.sha256 = std::string(64, '0');
  expect_error(c.put(other_record), ErrorCode::kBadFile, "not the record's");
  EXPECT_FALSE(c.find(rec.id)) << "nothing was written for a refused fetch";
  EXPECT_TRUE(fs::is_empty(d.path() + "/worker/blobs"));

  auto folder = c.put(files.value());
  ASSERT_TRUE(folder.ok()) << folder.error().to_string();
  EXPECT_EQ(folder.value(), d.path() + "/worker/blobs/" + rec.sha256);  // content-addressed, as in the store
  ASSERT_TRUE(c.find(rec.id));
  EXPECT_EQ(*c.find(rec.id), folder.value());
  EXPECT_TRUE(load_peft_adapter(folder.value(), base(), {}).ok());
  EXPECT_TRUE(fs::is_empty(d.path() + "/worker/tmp")) << "no temporary file left";

  write_bytes(folder.value() + "/adapter_model.safetensors", tampered.safetensors);
  EXPECT_FALSE(c.find(rec.id)) << "a damaged blob is not served";
  EXPECT_FALSE(fs::exists(folder.value())) << "and is dropped, to be fetched again";
  ASSERT_TRUE(c.put(files.value()).ok());
  EXPECT_TRUE(c.find(rec.id));
}

}  // namespace myriad

