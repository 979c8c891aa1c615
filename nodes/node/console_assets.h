// The web console's static files (index.html, its scripts and styles), served
// without a key at `/` and `/console/<file>`: the copy built into the binary,
// or a folder on disk (myriad-node --console-dir, for working on the pages
// without rebuilding).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace myriad::node {

struct ConsoleFile {
  std::string content_type;
  std::string body;
};

class ConsoleAssets {
 public:
  // dir empty: the built-in copy.
  explicit ConsoleAssets(std::string dir = {}) : dir_(std::move(dir)) {}
  // The file a request path names ("/" is index.html, "/console/x.js" is
  // x.js); nullopt when there is none. Names are one flat folder of
  // [A-Za-z0-9._-]: nothing outside it can be named.
  std::optional<ConsoleFile> find(std::string_view path) const;
  // A path this serves ("/", "/index.html" or under "/console/").
  static bool serves(std::string_view path);

 private:
  std::string dir_;
};

}  // namespace myriad::node
