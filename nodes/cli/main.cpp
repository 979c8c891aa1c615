// `myriad`: the command-line entry point. main() only dispatches; each
// command's usage text lives here so that `myriad <command> --help` prints
// it (to stdout, exit 0) before the command parses anything.
#include <cstdio>
#include <cstring>

#include "commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int, char**);
  const char* summary;
  const char* usage;  // the flags, one a line
};

const Command kCommands[] = {
    {"selfcheck", myriad::cli::cmd_selfcheck, "report the compute backends found and check them numerically",
     "(no flags)\n"
     "exit 0 when every backend present agrees with its reference, 1 otherwise\n"},
    {"tokenize", myriad::cli::cmd_tokenize, "text or a chat to token ids (JSON)",
     "  --tokenizer DIR        folder with tokenizer.json (and tokenizer_config.json)\n"
     "  --text T               text to encode, or\n"
     "  --chat FILE.json       messages [{\"role\", \"content\"}...] rendered by the chat template\n"
     "  --chat-template FILE   a Jinja chat template instead of tokenizer_config.json's\n"
     "  --no-special           do not add BOS/EOS (text only)\n"},
    {"detokenize", myriad::cli::cmd_detokenize, "token ids to text",
     "  --tokenizer DIR        folder with tokenizer.json\n"
     "  --ids 1,2,3            ids to decode\n"
     "  --skip-special         drop special tokens from the text\n"},
    {"make-model", myriad::cli::cmd_make_model, "write a random-weight Llama checkpoint in Hugging Face format",
     "  --shape S              tiny | llama-110m | tinyllama-1.1b | llama3-8b\n"
     "  --seed S               weight seed (same seed, same bytes)\n"
     "  --dtype D              bf16 | f32\n"
     "  --out DIR              folder to write (config.json, model.safetensors, ...)\n"
     "  --tokenizer DIR        copy this tokenizer into the model folder\n"
     "  --threads N            threads that draw the weights (default: all cores)\n"},
    {"logits", myriad::cli::cmd_logits, "logits of a prompt (JSON), optionally through LoRA adapters",
     "  --model DIR            Hugging Face model folder\n"
     "  --ids 1,2,3            prompt token ids, or\n"
     "  --batch FILE.json      rows with their own ids and adapters, run in one batched step\n"
     "  --all-positions        logits of every position, not only the last\n"
     "  --adapter DIR[:W]      PEFT adapter (repeatable: a weighted mixture)\n"
     "  --kv-cache-dtype D     auto | f32 | bf16 | f16 (auto: the model's dtype)\n"
     "  --threads N            CPU threads (default: all cores)\n"},
    {"generate", myriad::cli::cmd_generate, "generate text or ids from a prompt",
     "  --model DIR            Hugging Face model folder\n"
     "  --prompt T             prompt text (needs tokenizer.json in the model folder), or\n"
     "  --ids 1,2,3            prompt token ids\n"
     "  --chat                 wrap --prompt as one user message in the model's chat template\n"
     "  --max-tokens N         new tokens at most (default 16)\n"
     "  --temperature T        0 = greedy (default: generation_config.json, else 1)\n"
     "  --top-p P              nucleus sampling, (0, 1] (default: generation_config.json, else 1)\n"
     "  --top-k K              0 = off (default: generation_config.json, else 0)\n"
     "  --seed S               sampling seed (default 0)\n"
     "  --repetition-penalty R  > 0 (default: generation_config.json, else 1)\n"
     "  --presence-penalty P   OpenAI's presence penalty (default 0)\n"
     "  --frequency-penalty F  OpenAI's frequency penalty (default 0)\n"
     "  --stop S               stop string (repeatable; not part of the output)\n"
     "  --ignore-eos           keep going past EOS\n"
     "  --adapter DIR[:W]      PEFT adapter (repeatable: a weighted mixture)\n"
     "  --kv-cache-dtype D     auto | f32 | bf16 | f16 (auto: the model's dtype)\n"
     "  --threads N            CPU threads (default: all cores)\n"
     "  --json                 print {\"ids\": [generated ids], \"text\": \"...\"}\n"},
};

void print_commands(FILE* out) {
  std::fprintf(out, "usage: myriad <command> [flags]    (myriad <command> --help for its flags)\n\ncommands:\n");
  for (const auto& c : kCommands) std::fprintf(out, "  %-11s %s\n", c.name, c.summary);
}

bool is_help(const char* a) { return !std::strcmp(a, "--help") || !std::strcmp(a, "-h"); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_commands(stderr);
    return 2;
  }
  if (is_help(argv[1])) {
    print_commands(stdout);
    return 0;
  }
  for (const auto& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    for (int i = 2; i < argc; ++i) {
      if (is_help(argv[i])) {
        std::printf("usage: myriad %s [flags]\n%s\n\n%s", c.name, c.summary, c.usage);
        return 0;
      }
    }
    return c.run(argc - 2, argv + 2);
  }
  std::fprintf(stderr, "myriad: unknown command '%s'\n", argv[1]);
  print_commands(stderr);
  return 2;
}
