// multipart/form-data bodies (RFC 7578), as curl -F and browsers send an
// adapter upload: the parts' names, file names and bytes. Only what an
// upload needs: no nested multiparts, no transfer encodings other than
// binary. Pure; thread-safe; views into the body.
#pragma once

#include <string_view>
#include <vector>

#include "runtime/result.h"

namespace myriad::node {

struct FormPart {
  std::string_view name;      // the form field
  std::string_view filename;  // empty for a plain field
  std::string_view data;      // the bytes, views into the body
};

// kInvalidArgument naming what is malformed (no boundary, a part without a
// Content-Disposition name, a body that ends before the closing boundary).
Result<std::vector<FormPart>> parse_multipart(std::string_view content_type, std::string_view body);

}  // namespace myriad::node
