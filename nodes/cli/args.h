// The `myriad` commands' flags as plain values, filled by the command line
// (main.cpp declares every flag with CLI11, its help text and default) and
// read by the commands (commands.h). A field per flag, named after it; an
// std::optional is a flag whose absence matters (or whose default comes from
// the model); a vector is a repeatable flag. Values are checked for form
// while parsing (a number is a number) and for range by the commands, whose
// messages name the flag. Also the parsers of values the commands share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/result.h"

namespace myriad::cli {

struct TokenizeArgs {
  std::string tokenizer;                     // --tokenizer DIR (required)
  std::optional<std::string> text;           // --text T
  std::optional<std::string> chat;           // --chat FILE.json
  std::optional<std::string> chat_template;  // --chat-template FILE
  bool no_special = false;                   // --no-special
};

struct DetokenizeArgs {
  std::string tokenizer;  // --tokenizer DIR (required)
  std::string ids;        // --ids 1,2,3 (required)
  bool skip_special = false;
};

struct MakeModelArgs {
  std::string shape;      // --shape (required)
  int64_t seed = 0;       // --seed (required, >= 0)
  std::string dtype;      // --dtype bf16|f32 (required)
  std::string out;        // --out DIR (required)
  std::string tokenizer;  // --tokenizer DIR; empty: the built-in byte-level one
  int64_t threads = 0;    // --threads N, in [0, 1024]; 0 = all cores
  double init_std = 0.02;  // --init-std X: weights ~ N(0, X^2)
};

struct MakeAdapterArgs {
  std::string model;      // --model DIR (required): the base it fits
  int64_t rank = 8;       // --rank R, in [1, 256]
  double alpha = 16.0;    // --alpha A (scale = alpha / rank)
  double std = 0.1;       // --std: A, B ~ N(0, std^2); large enough that outputs visibly differ
  int64_t seed = 0;       // --seed S (required, >= 0)
  std::string out;        // --out DIR (required)
};

// `myriad finetune`: train one LoRA adapter in-process on the CPU.
struct FinetuneArgs {
  std::string model;                   // --model DIR (required)
  std::string data;                    // --data FILE.jsonl (required)
  std::string out;                     // --out DIR (required): the PEFT folder written
  std::optional<std::string> eval;     // --eval FILE.jsonl: its loss at the end
  int64_t rank = 8;                    // --rank R
  double alpha = 16.0;                 // --alpha A
  std::string targets = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";  // --targets
  int64_t steps = 0;                   // --steps N (0: --epochs)
  double epochs = 1.0;                 // --epochs E
  double lr = 2e-4;                    // --lr LR (peak)
  int64_t batch_tokens = 2048;         // --batch-tokens T
  int64_t grad_accum = 1;              // --grad-accum K
  int64_t warmup_steps = -1;           // --warmup-steps (-1: 3% of the steps)
  double max_grad_norm = 1.0;          // --max-grad-norm (0: off)
  double weight_decay = 0.0;           // --weight-decay
  int64_t seed = 0;                    // --seed S
  int64_t max_tokens = 0;              // --max-tokens (0: the model's context)
  std::string overflow = "truncate";   // --overflow truncate|reject
  bool recompute = false;              // --recompute: activation checkpointing
  int64_t threads = 0;                 // --threads N
  std::string device = "cpu";          // --device cpu|cuda: where the passes run
  std::optional<std::string> checkpoint_dir;  // --checkpoint-dir DIR: resume from / save to
  int64_t checkpoint_every = 50;       // --checkpoint-every N steps
};

// `--moe MIXTURE_DIR` of generate and logits: route each prompt to experts.
struct MoeFlags {
  std::optional<std::string> dir;     // --moe MIXTURE_DIR
  std::optional<int64_t> top_k;       // --moe-top-k K (default: the mixture's routing.top_k)
  std::optional<double> temperature;  // --moe-temperature T (default: the mixture's)
  // --moe-route auto|prefill|pass: a hidden-state mixture routes from the
  // request's own prefill, or by a base pass before it (auto: the prefill
  // where the experts allow it).
  std::optional<std::string> route;
  bool given() const { return dir || top_k || temperature || route; }
};

// `myriad moe corpus`: the synthetic multi-domain corpus as JSONL.
struct MoeCorpusArgs {
  int64_t per_domain = 50;            // --per-domain N lines of each domain
  int64_t seed = 0;                   // --seed S
  std::string out;                    // --out FILE.jsonl (required)
  std::optional<std::string> labels;  // --labels FILE.json: the hidden domain of every line
};

// `myriad moe sweep`: clusters for a range of k, to choose one.
struct MoeSweepArgs {
  std::string model;                       // --model DIR (required): its tokenizer (and base, for hidden)
  std::string corpus;                      // --corpus FILE.jsonl (required)
  int64_t from = 2, to = 8;                // --from K, --to K
  int64_t seed = 0;                        // --seed S
  std::string embedding = "tfidf";         // --embedding tfidf|hidden
  int64_t embedding_dim = 1024;            // --embedding-dim D
  std::optional<int64_t> embedding_layer;  // --embedding-layer L
  std::optional<std::string> labels;       // --labels FILE.json: adds the ARI column
  bool json = false;                       // --json
  int64_t threads = 0;                     // --threads N
};

// `myriad moe inspect DIR`: a mixture's clusters.
struct MoeInspectArgs {
  std::string dir;    // the mixture folder (positional)
  bool json = false;  // --json: the clusters as JSON
};

// `myriad moe create`: cluster a corpus, train one expert adapter per cluster.
struct MoeCreateArgs {
  std::string model;            // --model DIR (required)
  std::string corpus;           // --corpus FILE.jsonl (required): {"text": ...} a line
  int64_t k = 4;                // --k K
  std::string out;              // --out DIR (required): the mixture folder
  int64_t steps = 100;          // --steps N per expert
  int64_t seed = 0;             // --seed S
  int64_t rank = 8;             // --rank R
  double lr = 1e-3;             // --lr LR
  int64_t batch_tokens = 1024;  // --batch-tokens T per expert per step
  std::string embedding = "tfidf";  // --embedding tfidf|hidden
  int64_t embedding_dim = 1024; // --embedding-dim D (TF-IDF buckets)
  std::optional<int64_t> embedding_layer;  // --embedding-layer L (hidden; default: half the layers)
  // --expert-layers all|above: the experts adapt every layer, or only the
  // routing layer and those above it, so requests route from their own
  // prefill (default: above for hidden, all for tfidf).
  std::optional<std::string> expert_layers;
  std::optional<std::string> labels;  // --labels FILE.json: known domains, to print the clusters' ARI
  int64_t top_k = 1;            // --top-k K: the mixture's default experts per request
  double temperature = 0.05;    // --temperature T: of the routing softmax
  int64_t threads = 0;          // --threads N
};

struct LogitsArgs {
  std::string model;                  // --model DIR (required)
  std::optional<std::string> ids;     // --ids 1,2,3
  std::optional<std::string> batch;   // --batch FILE.json
  bool all_positions = false;         // --all-positions
  std::vector<std::string> adapter;   // --adapter DIR[:W], repeatable
  MoeFlags moe;                       // --moe DIR [--moe-top-k K] [--moe-temperature T]
  std::string kv_cache_dtype = "auto";
  int64_t threads = 0;                // 0 = all cores
};

struct GenerateArgs {
  std::string model;                 // --model DIR (required)
  std::optional<std::string> prompt;  // --prompt T
  std::optional<std::string> ids;     // --ids 1,2,3
  bool chat = false;
  int64_t max_tokens = 16;
  // Absent: generation_config.json's value, else 1 / 1 / 0 / 1.
  std::optional<double> temperature, top_p;
  std::optional<int64_t> top_k;
  std::optional<double> repetition_penalty;
  int64_t seed = 0;
  double presence_penalty = 0, frequency_penalty = 0;
  std::vector<std::string> stop;     // --stop S, repeatable
  bool ignore_eos = false, json = false;
  std::vector<std::string> adapter;  // --adapter DIR[:W], repeatable
  MoeFlags moe;                      // --moe DIR [--moe-top-k K] [--moe-temperature T]
  std::string kv_cache_dtype = "auto";
  int64_t threads = 0;               // 0 = all cores
};

// The client commands (full build only): a node's RPC API at --server.
struct ServerArgs {
  std::string server;   // --server HOST:PORT (required)
  std::string api_key;  // --api-key K (default $MYRIAD_API_KEY); "" = the node's open tenant
};

// `myriad chat` and `myriad complete`: one generate call, streamed.
struct RemoteGenerateArgs : ServerArgs {
  bool chat = false;                  // which command (not a flag)
  std::string model;                  // --model tenant/name[@N] or the base's name (required)
  std::optional<std::string> prompt;  // --prompt T (complete) or the positional text (chat); else stdin
  std::optional<std::string> ids;     // --ids 1,2,3 (complete)
  std::optional<std::string> system;  // --system T (chat): a system message first
  int64_t max_tokens = 16;
  // Any of these set: sampling is sent, the others at the runtime's
  // defaults (temperature 1, seed 0, ...). None: the node's defaults with a
  // fresh seed.
  std::optional<double> temperature, top_p, repetition_penalty, presence_penalty, frequency_penalty;
  std::optional<int64_t> top_k, seed;
  std::vector<std::string> stop;      // --stop S, repeatable
  bool ignore_eos = false, logprobs = false, json = false;
  int64_t timeout_ms = 0;
  std::string request_id;
};

struct AdaptersAddArgs : ServerArgs {
  std::string name;  // --name [tenant/]name (required)
  std::string path;  // --path DIR (required): a PEFT folder on this host
  bool json = false;
};

struct AdaptersListArgs : ServerArgs {
  bool json = false;
};

// `myriad cluster ls`: the workers a gateway places on, and what each holds.
struct ClusterListArgs : ServerArgs {
  bool json = false;
};

// `myriad jobs ...`: a node's fine-tuning jobs over RPC (docs/training.md).
struct JobsCreateArgs : ServerArgs {
  std::string model;  // --model BASE (required): the node's base model
  std::string file;   // --file FILE.jsonl (required): uploaded from this host
  std::optional<std::string> validation_file;  // --validation-file FILE.jsonl
  std::string suffix;                          // --suffix NAME: the adapter's name
  std::optional<int64_t> steps, rank, batch_tokens, seed;
  std::optional<double> epochs, lr, alpha;
  std::string targets;  // --targets q_proj,v_proj,... ("" = all seven)
  bool follow = false;  // --follow: draw its progress until it ends
  bool json = false;
};

struct JobsListArgs : ServerArgs {
  int64_t limit = 20;
  bool json = false;
};

// jobs get | cancel | events: one job by id.
struct JobArgs : ServerArgs {
  std::string id;       // the positional job id (required)
  int64_t limit = 20;   // events: how many (the newest)
  bool follow = false;  // get / events: draw its progress until it ends
  bool json = false;
};

struct AdaptersRemoveArgs : ServerArgs {
  std::string name;  // --name [tenant/]name[@N] (required)
};

// "1,2,3" -> {1, 2, 3}; errors name the bad element.
Result<std::vector<int32_t>> parse_id_list(const std::string& s);

// --kv-cache-dtype (vLLM's flag): "auto" -> nullopt (the model's weight
// dtype); "f32"/"float32", "bf16"/"bfloat16", "f16"/"float16"; anything else
// is an error naming the flag.
Result<std::optional<DType>> kv_cache_dtype(const std::string& name);

}  // namespace myriad::cli
