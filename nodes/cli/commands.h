// The `myriad` CLI's subcommands. Each takes the arguments after its name,
// prints its result (JSON where the issue names fields) and returns the
// process exit code; errors go to stderr naming what is wrong.
#pragma once

namespace myriad::cli {

int cmd_selfcheck(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_detokenize(int argc, char** argv);
int cmd_make_model(int argc, char** argv);
int cmd_logits(int argc, char** argv);
int cmd_generate(int argc, char** argv);

}  // namespace myriad::cli
