// A file written whole or not at all, the way every small file Myriad keeps
// (job records, checkpoints' JSON, traces, CLI outputs) is written: a
// uniquely named temporary beside it, fsync, rename over the path, fsync of
// the folder so the new name persists. A crash leaves the old file or the new
// one, never a part; readers never see the temporary under the real name.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "runtime/result.h"

namespace myriad {

// kIo naming the path and the step that failed; the temporary is removed
// then and the old file (if any) is left as it was.
Status write_file_atomically(const std::string& path, std::string_view bytes);

// The same for a file written in pieces (too large to build in memory
// first: a safetensors file): `fill` writes the content into `fd`, the
// temporary's descriptor (`temp_path` names it in errors); the steps around
// it are the same. An error of fill's removes the temporary.
Status write_file_atomically_with(const std::string& path,
                                  const std::function<Status(int fd, const std::string& temp_path)>& fill);

}  // namespace myriad
