// PLACEHOLDER (first session): replaced by the commit that implements it.
#include <cstdio>

#include "commands.h"

namespace myriad::cli {
int cmd_tokenize(int, char**) { std::fprintf(stderr, "myriad: cmd_tokenize is not built yet\n"); return 2; }
int cmd_detokenize(int, char**) { std::fprintf(stderr, "myriad: cmd_detokenize is not built yet\n"); return 2; }
}  // namespace myriad::cli
