#include "console_assets.h"

#include <cctype>
#include <fstream>
#include <sstream>

#include "embedded_files.h"

namespace myriad::node {
namespace {

constexpr std::string_view kPrefix = "/console/";

std::string content_type_of(std::string_view name) {
  auto ends = [&](std::string_view ext) {
    return name.size() >= ext.size() && name.substr(name.size() - ext.size()) == ext;
  };
  if (ends(".html")) return "text/html; charset=utf-8";
  if (ends(".js") || ends(".mjs")) return "text/javascript; charset=utf-8";
  if (ends(".css")) return "text/css; charset=utf-8";
  if (ends(".svg")) return "image/svg+xml";
  if (ends(".png")) return "image/png";
  if (ends(".json")) return "application/json";
  return "application/octet-stream";
}

bool safe_name(std::string_view name) {
  if (name.empty() || name.front() == '.') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

}  // namespace

bool ConsoleAssets::serves(std::string_view path) {
  return path == "/" || path == "/index.html" || path.substr(0, kPrefix.size()) == kPrefix;
}

std::optional<ConsoleFile> ConsoleAssets::find(std::string_view path) const {
  std::string_view name;
  if (path == "/" || path == "/index.html") name = "index.html";
  else if (path.substr(0, kPrefix.size()) == kPrefix) name = path.substr(kPrefix.size());
  if (!safe_name(name)) return std::nullopt;
  if (!dir_.empty()) {
    std::ifstream in(dir_ + "/" + std::string(name), std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream body;
    body << in.rdbuf();
    return ConsoleFile{content_type_of(name), body.str()};
  }
  for (size_t i = 0; i < kEmbeddedFileCount; ++i)
    if (kEmbeddedFiles[i].name == name) return ConsoleFile{content_type_of(name), std::string(kEmbeddedFiles[i].bytes)};
  return std::nullopt;
}

}  // namespace myriad::node
