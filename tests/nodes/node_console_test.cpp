// The web console's server side on a real myriad-node: its pages without a
// key (built in, or from --console-dir), the paged adapter listing with
// residency and request figures per tenant, and the live stream, which
// hides other tenants' adapter names. The pages themselves are driven in
// Chromium by tests/console/console_test.mjs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_run.h"
#include "node_process.h"

namespace myriad::testing_cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// A folder with keys.json (tenants alpha and beta, an admin) and one adapter,
// for a node started over it.
struct KeysAndAdapter {
  std::string dir;
  KeysAndAdapter() {
    dir = (fs::temp_directory_path() / ("myriad-console-" + std::to_string(::getpid()))).string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir + "/keys.json")
        << R"({"alpha-key": "alpha", "beta-key": "beta", "ops-key": {"tenant": "ops", "admin": true}})";
  }
  ~KeysAndAdapter() { fs::remove_all(dir); }
};

std::string get(const Node& node, const std::string& path, const std::string& key = "") {
  const std::string auth = key.empty() ? "" : " -H 'Authorization: Bearer " + key + "'";
  return sh("curl -s -w ' HTTP%{http_code}'" + auth + " '" + node.url() + path + "'");
}

std::string post_as(Node& node, const std::string& key, const std::string& path, const std::string& body) {
  return node.post(path, body, "-H 'Authorization: Bearer " + key + "'");
}

std::vector<std::string> ids_of(const json& page) {
  std::vector<std::string> out;
  for (const json& a : page["data"]) out.push_back(a["id"]);
  return out;
}

// The JSON of each `data:` event of a server-sent stream.
std::vector<json> sse_events(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("data: ", 0) == 0) out.push_back(json::parse(line.substr(6), nullptr, false));
  return out;
}

TEST(NodeConsole, PagesAnswerWithoutAKeyAndNothingOutsideTheirFolder) {
  KeysAndAdapter k;
  Node node({"--api-keys", k.dir + "/keys.json"});
  std::string r = sh("curl -s -D - -o /dev/null " + node.url() + "/");
  EXPECT_NE(r.find("200 OK"), std::string::npos) << r;
  EXPECT_NE(r.find("Content-Type: text/html"), std::string::npos) << r;
  r = get(node, "/");
  EXPECT_NE(r.find("<html"), std::string::npos) << r;
  // Every asset index.html names is served, with its type.
  const std::string html = r.substr(0, r.rfind(" HTTP"));
  size_t at = 0, assets = 0;
  while ((at = html.find("/console/", at)) != std::string::npos) {
    const size_t end = html.find_first_of("\"'", at);
    const std::string path = html.substr(at, end - at);
    r = sh("curl -s -o /dev/null -w '%{http_code} %{content_type}' " + node.url() + path);
    EXPECT_EQ(r.substr(0, 3), "200") << path;
    if (path.size() > 3 && path.substr(path.size() - 3) == ".js") {
      EXPECT_NE(r.find("text/javascript"), std::string::npos) << r;
    }
    ++assets;
    at = end;
  }
  EXPECT_GE(assets, 2u) << html;
  EXPECT_NE(get(node, "/console/nothere.js").find("HTTP404"), std::string::npos);
  EXPECT_NE(get(node, "/console/..%2Fkeys.json").find("HTTP404"), std::string::npos);
  EXPECT_NE(get(node, "/console/.hidden").find("HTTP404"), std::string::npos);
  // The API still needs its key.
  EXPECT_NE(get(node, "/v1/adapters").find("HTTP401"), std::string::npos);
}

TEST(NodeConsole, ConsoleDirServesThePagesFromDisk) {
  KeysAndAdapter k;
  fs::create_directories(k.dir + "/pages");
  std::ofstream(k.dir + "/pages/index.html") << "<html>from disk</html>";
  Node node({"--console-dir", k.dir + "/pages"});
  EXPECT_NE(get(node, "/").find("<html>from disk</html> HTTP200"), std::string::npos);
  std::ofstream(k.dir + "/pages/index.html") << "<html>edited</html>";  // no restart needed
  EXPECT_NE(get(node, "/").find("<html>edited</html> HTTP200"), std::string::npos);
  EXPECT_NE(get(node, "/console/console.js").find("HTTP404"), std::string::npos);
}

TEST(NodeConsole, AdapterListingIsPagedPerTenantWithResidencyAndFigures) {
  KeysAndAdapter k;
  Node node({"--api-keys", k.dir + "/keys.json", "--slots", "2"});
  const std::string a = node.dir() + "/a";
  ASSERT_EQ(run_cli("make-adapter --model " + node.dir() + "/tiny --rank 4 --seed 2 --out " + a).code, 0);
  for (const std::string name : {"a3", "a1", "a2"})
    ASSERT_NE(post_as(node, "alpha-key", "/v1/adapters", R"({"name": ")" + name + R"(", "path": ")" + a + "\"}")
                  .find("HTTP200"), std::string::npos);
  ASSERT_NE(post_as(node, "beta-key", "/v1/adapters", R"({"name": "a1", "path": ")" + a + "\"}").find("HTTP200"),
            std::string::npos);

  std::string r = get(node, "/v1/adapters?limit=2", "alpha-key");
  json page = body_of(r);
  ASSERT_EQ(ids_of(page), (std::vector<std::string>{"alpha/a1", "alpha/a2"})) << r;
  EXPECT_EQ(page["total"], 3);
  EXPECT_EQ(page["has_more"], true);
  EXPECT_EQ(page["last_id"], "alpha/a2");
  page = body_of(get(node, "/v1/adapters?limit=2&after=alpha/a2", "alpha-key"));
  EXPECT_EQ(ids_of(page), (std::vector<std::string>{"alpha/a3"}));
  EXPECT_EQ(page["has_more"], false);
  EXPECT_EQ(ids_of(body_of(get(node, "/v1/adapters?q=A3", "alpha-key"))), (std::vector<std::string>{"alpha/a3"}));
  // Tenants see their own; an admin sees every tenant's.
  EXPECT_EQ(ids_of(body_of(get(node, "/v1/adapters", "beta-key"))), (std::vector<std::string>{"beta/a1"}));
  EXPECT_EQ(body_of(get(node, "/v1/adapters", "ops-key"))["total"], 4);
  EXPECT_NE(get(node, "/v1/adapters/beta%2Fa1", "alpha-key").find("HTTP404"), std::string::npos);
  EXPECT_NE(get(node, "/v1/adapters?limit=0", "alpha-key").find("HTTP400"), std::string::npos);
  EXPECT_NE(get(node, "/v1/adapters?limit=x", "alpha-key").find("limit"), std::string::npos);

  // Before any request the version is only in the store; after one it is in
  // a slot of the worker, and its figures count the request.
  json one = body_of(get(node, "/v1/adapters/a1", "alpha-key"));
  ASSERT_EQ(one["versions"].size(), 1u) << one.dump();
  EXPECT_EQ(one["versions"][0]["residency"][0]["where"], "store") << one.dump();
  EXPECT_EQ(one["metrics"]["requests"], 0);
  // ignore_eos: sampled at temperature 1, a random-weight model can end early on EOS.
  r = post_as(node, "alpha-key", "/v1/completions",
              R"({"model": "a1", "prompt": "hi", "max_tokens": 5, "ignore_eos": true})");
  ASSERT_NE(r.find("HTTP200"), std::string::npos) << r;
  // Residency comes from the worker's reports (a timer): poll for the slot.
  for (int i = 0; i < 40; ++i) {
    one = body_of(get(node, "/v1/adapters/a1", "alpha-key"));
    if (one["versions"][0]["residency"][0]["where"] == "slot") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const json where = one["versions"][0]["residency"][0];
  EXPECT_EQ(where["where"], "slot") << one.dump();
  EXPECT_EQ(where["worker"], "local/cpu0") << one.dump();
  EXPECT_GE(where["slot"].get<int>(), 0);
  EXPECT_EQ(one["metrics"]["requests"], 1) << one.dump();
  EXPECT_EQ(one["metrics"]["output_tokens"], 5);
  EXPECT_GT(one["metrics"]["e2e_ms"]["p50"].get<double>(), 0.0);
  // beta's same-named adapter is another adapter: untouched.
  EXPECT_EQ(body_of(get(node, "/v1/adapters/a1", "beta-key"))["metrics"]["requests"], 0);
}

// Residency is reported as it happens, not only by the worker's timer: a
// stored file damaged on disk makes the worker's fetch fail, and the
// version's residency says "failed" with the store's reason, while the
// request gets that error and the node keeps serving the others.
TEST(NodeConsole, AFetchThatFailsShowsAsFailedResidencyWithItsReason) {
  Node node({"--slots", "2"});
  const std::string a = node.dir() + "/dmg-src";
  ASSERT_EQ(run_cli("make-adapter --model " + node.dir() + "/tiny --rank 4 --seed 5 --out " + a).code, 0);
  ASSERT_NE(node.post("/v1/adapters", R"({"name": "dmg", "path": ")" + a + "\"}").find("HTTP200"),
            std::string::npos);
  // Damage the stored weights in place: same size, other bytes.
  std::string blob;
  for (const auto& e : fs::recursive_directory_iterator(node.dir() + "/data"))
    if (e.path().filename() == "adapter_model.safetensors") blob = e.path().string();
  ASSERT_FALSE(blob.empty());
  {
    std::fstream f(blob, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-16, std::ios::end);
    f.write("damaged-bytes!!!", 16);
  }
  const std::string r = node.post("/v1/completions", R"({"model": "dmg", "prompt": "hi", "max_tokens": 3})");
  EXPECT_NE(r.find("sha256"), std::string::npos) << r;
  json one;
  for (int i = 0; i < 40; ++i) {
    one = body_of(get(node, "/v1/adapters/dmg"));
    if (one["versions"][0]["residency"][0]["where"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const json where = one["versions"][0]["residency"][0];
  EXPECT_EQ(where["where"], "failed") << one.dump();
  EXPECT_NE(where.value("error", std::string()).find("sha256"), std::string::npos) << one.dump();
  const std::string base = node.post("/v1/completions", R"({"model": "tiny", "prompt": "hi", "max_tokens": 3})");
  EXPECT_NE(base.find("HTTP200"), std::string::npos) << base;
}

TEST(NodeConsole, TheLiveStreamSendsSnapshotsAndHidesOtherTenantsAdapters) {
  KeysAndAdapter k;
  Node node({"--api-keys", k.dir + "/keys.json", "--slots", "2"});
  const std::string a = node.dir() + "/a";
  ASSERT_EQ(run_cli("make-adapter --model " + node.dir() + "/tiny --rank 4 --seed 2 --out " + a).code, 0);
  ASSERT_NE(post_as(node, "beta-key", "/v1/adapters", R"({"name": "b", "path": ")" + a + "\"}").find("HTTP200"),
            std::string::npos);
  ASSERT_NE(post_as(node, "beta-key", "/v1/completions",
                    R"({"model": "b", "prompt": "hi", "max_tokens": 4, "ignore_eos": true})")  // totals count 4
                .find("HTTP200"), std::string::npos);
  // The worker reports its slots on a timer: wait for the report to show b.
  std::vector<json> admin;
  for (int i = 0; i < 20; ++i) {
    admin = sse_events(sh("curl -sN --max-time 0.4 '" + node.url() + "/v1/console/live?key=ops-key'"));
    ASSERT_FALSE(admin.empty());
    if (admin[0]["workers"][0]["active"].dump().find("beta/b@1") != std::string::npos) break;
  }
  EXPECT_EQ(admin[0]["workers"][0]["active"], json::array({"beta/b@1"})) << admin[0].dump();

  const std::vector<json> alpha = sse_events(
      sh("curl -sN --max-time 1.3 -H 'Authorization: Bearer alpha-key' '" + node.url() +
         "/v1/console/live?interval_ms=250'"));
  ASSERT_GE(alpha.size(), 3u);  // one at once, then one per interval
  EXPECT_LT(alpha.size(), 8u);
  const json& s = alpha.back();
  EXPECT_EQ(s["workers"][0]["active"], json::array({"(other tenant)"})) << s.dump();
  EXPECT_EQ(s["workers"][0]["id"], "local/cpu0");
  EXPECT_EQ(s["totals"]["requests"], 1);  // the shared device's figures are everyone's
  EXPECT_EQ(s["totals"]["output_tokens"], 4);
  EXPECT_GT(s["latency"]["ttft_ms"]["p50"].get<double>(), 0.0);
  EXPECT_GT(alpha.back()["time_ms"].get<int64_t>(), alpha.front()["time_ms"].get<int64_t>());

  EXPECT_NE(get(node, "/v1/console/live").find("HTTP401"), std::string::npos);
  EXPECT_NE(get(node, "/v1/console/live?interval_ms=5", "alpha-key").find("HTTP400"), std::string::npos);
  // The node still answers after streams were dropped.
  EXPECT_NE(get(node, "/health").find("HTTP200"), std::string::npos);
}

}  // namespace
}  // namespace myriad::testing_cli
