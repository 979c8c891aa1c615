// PLACEHOLDER (first session): replaced by the commit that implements it.
#include <cstdio>

#include "commands.h"

namespace myriad::cli {
int cmd_make_model(int, char**) { std::fprintf(stderr, "myriad: cmd_make_model is not built yet\n"); return 2; }
}  // namespace myriad::cli
