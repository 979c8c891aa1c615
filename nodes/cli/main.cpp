// `myriad`: the command-line entry point. main() only dispatches.
#include <cstdio>
#include <cstring>

#include "commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* help;
};

const Command kCommands[] = {
    {"selfcheck", myriad::cli::cmd_selfcheck, "report the compute backends found and check them"},
    {"tokenize", myriad::cli::cmd_tokenize, "--tokenizer DIR (--text T | --chat FILE.json) [--no-special] [--chat-template FILE]"},
    {"detokenize", myriad::cli::cmd_detokenize, "--tokenizer DIR --ids 1,2,3 [--skip-special]"},
    {"make-model", myriad::cli::cmd_make_model, "--shape tiny|llama-110m|tinyllama-1.1b|llama3-8b --seed S --dtype bf16|f32 --out DIR [--tokenizer DIR]"},
    {"logits", myriad::cli::cmd_logits, "--model DIR (--ids 1,2,3 [--all-positions] | --batch FILE.json) [--adapter DIR[:w]]..."},
    {"generate", myriad::cli::cmd_generate, "--model DIR (--prompt T | --ids 1,2,3) [--max-tokens N] [--temperature T] ..."},
};

void usage() {
  std::fprintf(stderr, "usage: myriad <command> [flags]\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(stderr, "  %-11s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : kCommands) {
    if (!std::strcmp(argv[1], c.name)) return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "myriad: unknown command '%s'\n", argv[1]);
  usage();
  return 2;
}
