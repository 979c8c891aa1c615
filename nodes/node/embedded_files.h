// Files compiled into the binary by cmake/EmbedFiles.cmake: the web
// console's assets (nodes/console/). The generated source defines the table.
#pragma once

#include <cstddef>
#include <string_view>

namespace myriad::node {

struct EmbeddedFile {
  std::string_view name;   // the file's base name, e.g. "console.js"
  std::string_view bytes;  // its contents
};

extern const EmbeddedFile kEmbeddedFiles[];  // kEmbeddedFileCount entries, then an empty one
extern const size_t kEmbeddedFileCount;

}  // namespace myriad::node
