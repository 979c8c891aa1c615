// `myriad`: the command-line entry point. Declares every command and its
// flags (CLI11 subcommands, with the help texts and defaults; conventions in
// nodes/cli_app.h), parses, sets the log level and runs the chosen command
// (commands.h). The only translation unit of the CLI that includes CLI11.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <string>

#include "commands.h"
#include "nodes/cli_app.h"

namespace {

using namespace myriad::cli;

// --threads N of make-model, logits and generate.
void add_threads(CLI::App& cmd, int64_t& threads, const char* what) {
  cmd.add_option("--threads", threads, std::string(what) + " (default: all cores)")->option_text("N");
}

void add_adapter_flags(CLI::App& cmd, std::vector<std::string>& adapter, std::string& kv_cache_dtype) {
  repeatable(cmd.add_option("--adapter", adapter, "PEFT adapter (repeatable: a weighted mixture)"))
      ->option_text("DIR[:W]");
  cmd.add_option("--kv-cache-dtype", kv_cache_dtype, "auto | f32 | bf16 | f16 (default auto: the model's dtype)")
      ->option_text("D");
}

void add_tokenize(CLI::App& app, TokenizeArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "tokenize", "text or a chat to token ids (JSON)");
  c->add_option("--tokenizer", a.tokenizer, "folder with tokenizer.json (and tokenizer_config.json)")
      ->option_text("DIR")
      ->required();
  c->add_option("--text", a.text, "text to encode, or")->option_text("T");
  c->add_option("--chat", a.chat, "messages [{\"role\", \"content\"}...] rendered by the chat template")
      ->option_text("FILE.json");
  c->add_option("--chat-template", a.chat_template,
                "a Jinja chat template instead of tokenizer_config.json's")
      ->option_text("FILE");
  c->add_flag("--no-special", a.no_special, "do not add BOS/EOS (text only)");
  c->callback([&] { run = [&] { return cmd_tokenize(a); }; });
}

void add_detokenize(CLI::App& app, DetokenizeArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "detokenize", "token ids to text");
  c->add_option("--tokenizer", a.tokenizer, "folder with tokenizer.json")->option_text("DIR")->required();
  c->add_option("--ids", a.ids, "ids to decode")->option_text("1,2,3")->required();
  c->add_flag("--skip-special", a.skip_special, "drop special tokens from the text");
  c->callback([&] { run = [&] { return cmd_detokenize(a); }; });
}

void add_make_model(CLI::App& app, MakeModelArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "make-model", "write a random-weight Llama checkpoint in Hugging Face format");
  c->add_option("--shape", a.shape, "tiny | llama-110m | tinyllama-1.1b | llama-7b | llama3-8b")->option_text("S")->required();
  c->add_option("--seed", a.seed, "weight seed, >= 0 (same seed, same bytes)")->option_text("S")->required();
  c->add_option("--dtype", a.dtype, "bf16 | f32")->option_text("D")->required();
  c->add_option("--out", a.out, "folder to write (config.json, model.safetensors, ...)")
      ->option_text("DIR")
      ->required();
  c->add_option("--tokenizer", a.tokenizer,
                "copy this tokenizer into the model folder (default: a byte-level tokenizer of its own)")
      ->option_text("DIR");
  c->add_option("--init-std", a.init_std,
                "standard deviation of the random weights (default 0.02; larger gives the tiny shape logits wide "
                "enough to learn a task)")
      ->option_text("X");
  add_threads(*c, a.threads, "threads that draw the weights");
  c->callback([&] { run = [&] { return cmd_make_model(a); }; });
}

void add_make_adapter(CLI::App& app, MakeAdapterArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "make-adapter", "write a random LoRA adapter for a model, as a PEFT folder");
  c->add_option("--model", a.model, "the base model folder it fits")->option_text("DIR")->required();
  c->add_option("--rank", a.rank, "rank of every linear module (default 8)")->option_text("R");
  c->add_option("--alpha", a.alpha, "LoRA alpha; scale = alpha / rank (default 16)")->option_text("A");
  c->add_option("--std", a.std, "standard deviation of the A and B entries (default 0.1)")->option_text("X");
  c->add_option("--seed", a.seed, "weight seed, >= 0 (same seed, same bytes)")->option_text("S")->required();
  c->add_option("--out", a.out, "folder to write (adapter_config.json, adapter_model.safetensors)")
      ->option_text("DIR")
      ->required();
  c->callback([&] { run = [&] { return cmd_make_adapter(a); }; });
}

void add_finetune(CLI::App& app, FinetuneArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "finetune", "train one LoRA adapter on a JSONL dataset (CPU), written as a PEFT folder");
  c->add_option("--model", a.model, "the base model folder")->option_text("DIR")->required();
  c->add_option("--data", a.data, "training examples: {\"prompt\",\"completion\"} or {\"messages\"} a line")
      ->option_text("FILE.jsonl")
      ->required();
  c->add_option("--out", a.out, "folder to write the adapter to (adapter_config.json, adapter_model.safetensors)")
      ->option_text("DIR")
      ->required();
  c->add_option("--eval", a.eval, "held-out examples: their mean loss is reported at the end")->option_text("FILE.jsonl");
  c->add_option("--rank", a.rank, "LoRA rank (default 8)")->option_text("R");
  c->add_option("--alpha", a.alpha, "LoRA alpha; scale = alpha / rank (default 16)")->option_text("A");
  c->add_option("--targets", a.targets, "modules to adapt in every layer (default: all seven projections)")
      ->option_text("q_proj,v_proj,...");
  c->add_option("--steps", a.steps, "optimizer steps (default: --epochs passes over the data)")->option_text("N");
  c->add_option("--epochs", a.epochs, "passes over the data when --steps is not given (default 1)")->option_text("E");
  c->add_option("--lr", a.lr, "peak learning rate: linear warmup, then cosine decay to 0 (default 2e-4)")
      ->option_text("LR");
  c->add_option("--batch-tokens", a.batch_tokens, "tokens of one micro-batch, whole examples (default 2048)")
      ->option_text("T");
  c->add_option("--grad-accum", a.grad_accum, "micro-batches per optimizer step (default 1)")->option_text("K");
  c->add_option("--warmup-steps", a.warmup_steps, "warmup steps (default: 3% of the steps)")->option_text("N");
  c->add_option("--max-grad-norm", a.max_grad_norm, "clip the gradients' global norm (default 1; 0: off)")
      ->option_text("X");
  c->add_option("--weight-decay", a.weight_decay, "AdamW weight decay (default 0)")->option_text("X");
  c->add_option("--seed", a.seed, "initialisation and shuffling seed (default 0)")->option_text("S");
  c->add_option("--max-tokens", a.max_tokens, "longest example in tokens (default: the model's context)")
      ->option_text("N");
  c->add_option("--overflow", a.overflow, "longer examples: truncate | reject (default truncate)")->option_text("P");
  c->add_flag("--recompute", a.recompute, "recompute activations in the backward instead of keeping them");
  c->add_option("--checkpoint-dir", a.checkpoint_dir,
                "resume from DIR/checkpoint.safetensors when present; save it every --checkpoint-every steps")
      ->option_text("DIR");
  c->add_option("--checkpoint-every", a.checkpoint_every, "steps between checkpoints (default 50)")->option_text("N");
  add_threads(*c, a.threads, "compute threads");
  c->add_option("--device", a.device, "cpu | cuda: where the forward and backward passes run (default cpu)")
      ->option_text("D");
  c->footer("prints progress on stderr, then one JSON line on stdout: train_loss_first, train_loss_last (means of\n"
            "10 steps), eval_loss (with --eval), steps, tokens_per_s, ...");
  c->callback([&] { run = [&] { return cmd_finetune(a); }; });
}

// --moe, --moe-top-k, --moe-temperature of generate and logits.
void add_moe_flags(CLI::App& c, MoeFlags& a) {
  c.add_option("--moe", a.dir, "route the prompt to the experts of this mixture (myriad moe create)")
      ->option_text("MIXTURE_DIR");
  c.add_option("--moe-top-k", a.top_k, "experts per prompt, softmax-weighted (default: the mixture's, 1)")
      ->option_text("K");
  c.add_option("--moe-temperature", a.temperature, "of the routing softmax (default: the mixture's, 0.05)")
      ->option_text("T");
  c.add_option("--moe-route", a.route,
               "hidden-state mixtures: route from the prompt's own prefill, or by a base pass before it "
               "(default auto: the prefill where the experts adapt no layer below the routing layer)")
      ->option_text("auto|prefill|pass");
}

void add_moe(CLI::App& app, MoeCreateArgs& a, MoeInspectArgs& inspect, MoeCorpusArgs& corpus, MoeSweepArgs& sweep,
             std::function<int()>& run) {
  auto* m = add_command(app, "moe", "mixtures of expert adapters: corpus, sweep, create, inspect");
  m->require_subcommand(1);
  auto* c = add_command(*m, "create", "cluster a corpus and train one expert adapter per cluster (CPU)");
  c->add_option("--model", a.model, "the base model folder")->option_text("DIR")->required();
  c->add_option("--corpus", a.corpus, "{\"text\": ...} a line")->option_text("FILE.jsonl")->required();
  c->add_option("--k", a.k, "clusters, one expert each (default 4)")->option_text("K");
  c->add_option("--out", a.out, "the mixture folder to write")->option_text("DIR")->required();
  c->add_option("--steps", a.steps, "optimizer steps per expert (default 100)")->option_text("N");
  c->add_option("--seed", a.seed, "clustering and training seed (default 0)")->option_text("S");
  c->add_option("--rank", a.rank, "experts' LoRA rank (default 8)")->option_text("R");
  c->add_option("--lr", a.lr, "peak learning rate (default 1e-3)")->option_text("LR");
  c->add_option("--batch-tokens", a.batch_tokens, "tokens per expert per step (default 1024)")->option_text("T");
  c->add_option("--embedding", a.embedding,
                "tfidf (hashed token n-grams, the default) or hidden (the base's mean hidden state)")
      ->option_text("tfidf|hidden");
  c->add_option("--embedding-dim", a.embedding_dim, "TF-IDF hash buckets (default 1024)")->option_text("D");
  c->add_option("--expert-layers", a.expert_layers,
                "the experts adapt all layers, or the routing layer and above, so requests route from their "
                "own prefill (default: above for --embedding hidden, all for tfidf)")
      ->option_text("all|above");
  c->add_option("--embedding-layer", a.embedding_layer, "hidden: pool after this many layers (default: half)")
      ->option_text("L");
  c->add_option("--labels", a.labels, "a JSON array of each line's known domain: prints the clusters' adjusted Rand index")
      ->option_text("FILE.json");
  c->add_option("--top-k", a.top_k, "experts a request is routed to by default (default 1)")->option_text("K");
  c->add_option("--temperature", a.temperature, "of the softmax weighting top-k experts (default 0.05)")
      ->option_text("T");
  add_threads(*c, a.threads, "compute threads");
  c->footer("writes DIR/mixture.json (centroids, experts, sizes), DIR/assignments.json (the cluster of every corpus\n"
            "line, in order) and DIR/expert-I/ (PEFT folders); prints one JSON line");
  c->callback([&] { run = [&] { return cmd_moe_create(a); }; });
  auto* i = add_command(*m, "inspect", "a mixture's clusters: size, frequent terms, sample texts, losses");
  i->add_option("dir", inspect.dir, "the mixture folder")->option_text("DIR")->required();
  i->add_flag("--json", inspect.json, "print the clusters as JSON");
  i->callback([&] { run = [&] { return cmd_moe_inspect(inspect); }; });
  auto* g = add_command(*m, "corpus", "write the synthetic four-domain corpus (support chat, legal, KYC, project updates)");
  g->add_option("--per-domain", corpus.per_domain, "lines of each domain (default 50)")->option_text("N");
  g->add_option("--seed", corpus.seed, "(default 0)")->option_text("S");
  g->add_option("--out", corpus.out, "{\"text\": ...} a line")->option_text("FILE.jsonl")->required();
  g->add_option("--labels", corpus.labels, "also write each line's hidden domain (a JSON array)")->option_text("FILE.json");
  g->callback([&] { run = [&] { return cmd_moe_corpus(corpus); }; });
  auto* w = add_command(*m, "sweep", "cluster a corpus for each k in a range: inertia, silhouette (and ARI), to choose k");
  w->add_option("--model", sweep.model, "the base model folder (its tokenizer; its weights for --embedding hidden)")
      ->option_text("DIR")
      ->required();
  w->add_option("--corpus", sweep.corpus, "{\"text\": ...} a line")->option_text("FILE.jsonl")->required();
  w->add_option("--from", sweep.from, "smallest k (default 2)")->option_text("K");
  w->add_option("--to", sweep.to, "largest k (default 8)")->option_text("K");
  w->add_option("--seed", sweep.seed, "clustering seed (default 0)")->option_text("S");
  w->add_option("--embedding", sweep.embedding, "tfidf (default) or hidden")->option_text("tfidf|hidden");
  w->add_option("--embedding-dim", sweep.embedding_dim, "TF-IDF hash buckets (default 1024)")->option_text("D");
  w->add_option("--embedding-layer", sweep.embedding_layer, "hidden: pool after this many layers (default: half)")
      ->option_text("L");
  w->add_option("--labels", sweep.labels, "known domains (a JSON array): adds an adjusted Rand index column")
      ->option_text("FILE.json");
  w->add_flag("--json", sweep.json, "print {\"lines\", \"embedding\", \"best_k\", \"rows\": [...]}");
  add_threads(*w, sweep.threads, "compute threads (--embedding hidden)");
  w->callback([&] { run = [&] { return cmd_moe_sweep(sweep); }; });
}

void add_logits(CLI::App& app, LogitsArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "logits", "logits of a prompt (JSON), optionally through LoRA adapters");
  c->add_option("--model", a.model, "Hugging Face model folder")->option_text("DIR")->required();
  c->add_option("--ids", a.ids, "prompt token ids, or")->option_text("1,2,3");
  c->add_option("--batch", a.batch, "rows with their own ids and adapters, run in one batched step")
      ->option_text("FILE.json");
  c->add_flag("--all-positions", a.all_positions, "logits of every position, not only the last");
  add_adapter_flags(*c, a.adapter, a.kv_cache_dtype);
  add_moe_flags(*c, a.moe);
  add_threads(*c, a.threads, "CPU threads");
  c->callback([&] { run = [&] { return cmd_logits(a); }; });
}

void add_generate(CLI::App& app, GenerateArgs& a, std::function<int()>& run) {
  auto* c = add_command(app, "generate", "generate text or ids from a prompt");
  c->add_option("--model", a.model, "Hugging Face model folder")->option_text("DIR")->required();
  c->add_option("--prompt", a.prompt, "prompt text (needs tokenizer.json in the model folder), or")->option_text("T");
  c->add_option("--ids", a.ids, "prompt token ids")->option_text("1,2,3");
  c->add_flag("--chat", a.chat, "wrap --prompt as one user message in the model's chat template");
  c->add_option("--max-tokens", a.max_tokens, "new tokens at most, >= 0 (default 16)")->option_text("N");
  c->add_option("--temperature", a.temperature, ">= 0; 0 = greedy (default: generation_config.json, else 1)")
      ->option_text("T");
  c->add_option("--top-p", a.top_p, "nucleus sampling, (0, 1] (default: generation_config.json, else 1)")
      ->option_text("P");
  c->add_option("--top-k", a.top_k, ">= 0; 0 = off (default: generation_config.json, else 0)")->option_text("K");
  c->add_option("--seed", a.seed, "sampling seed (default 0)")->option_text("S");
  c->add_option("--repetition-penalty", a.repetition_penalty, "> 0 (default: generation_config.json, else 1)")
      ->option_text("R");
  c->add_option("--presence-penalty", a.presence_penalty, "OpenAI's presence penalty (default 0)")->option_text("P");
  c->add_option("--frequency-penalty", a.frequency_penalty, "OpenAI's frequency penalty (default 0)")
      ->option_text("F");
  repeatable(c->add_option("--stop", a.stop, "stop string (repeatable; not part of the output)"))->option_text("S");
  c->add_flag("--ignore-eos", a.ignore_eos, "keep going past EOS");
  add_adapter_flags(*c, a.adapter, a.kv_cache_dtype);
  add_moe_flags(*c, a.moe);
  add_threads(*c, a.threads, "CPU threads");
  c->add_flag("--json", a.json, "print {\"ids\": [generated ids], \"text\": \"...\"} (and \"experts\" with --moe)");
  c->callback([&] { run = [&] { return cmd_generate(a); }; });
}

#ifdef MYRIAD_CLI_FULL
// --server and --api-key of every client command.
void add_server_flags(CLI::App& cmd, ServerArgs& a) {
  cmd.add_option("--server", a.server, "the node's RPC address (myriad-node --rpc)")->option_text("HOST:PORT")->required();
  cmd.add_option("--api-key", a.api_key, "log in with this key (default: $MYRIAD_API_KEY; none: the open tenant)")
      ->option_text("K")
      ->envname("MYRIAD_API_KEY");
}

void add_remote_generate(CLI::App& app, RemoteGenerateArgs& a, bool chat, std::function<int()>& run) {
  a.chat = chat;
  auto* c = add_command(app, chat ? "chat" : "complete",
                        chat ? "chat with a model on a node (RPC), streaming the reply"
                             : "complete a prompt on a node (RPC), streaming the text");
  add_server_flags(*c, a);
  c->add_option("--model", a.model, "tenant/name[@N], a name of the key's tenant, or the base model's name")
      ->option_text("M")
      ->required();
  if (chat) {
    c->add_option("text", a.prompt, "the user message (default: stdin)")->option_text("TEXT");
    c->add_option("--system", a.system, "a system message before it")->option_text("T");
  } else {
    c->add_option("--prompt", a.prompt, "prompt text (default: stdin), or")->option_text("T");
    c->add_option("--ids", a.ids, "prompt token ids")->option_text("1,2,3");
  }
  c->add_option("--max-tokens", a.max_tokens, "new tokens at most, >= 1 (default 16)")->option_text("N");
  c->add_option("--temperature", a.temperature, ">= 0; 0 = greedy (default 1)")->option_text("T");
  c->add_option("--top-p", a.top_p, "nucleus sampling, (0, 1] (default 1)")->option_text("P");
  c->add_option("--top-k", a.top_k, ">= 0; 0 = off (default 0)")->option_text("K");
  c->add_option("--seed", a.seed, "sampling seed (default: the node draws one unless a sampling flag is given, then 0)")
      ->option_text("S");
  c->add_option("--repetition-penalty", a.repetition_penalty, "> 0 (default 1)")->option_text("R");
  c->add_option("--presence-penalty", a.presence_penalty, "OpenAI's presence penalty (default 0)")->option_text("P");
  c->add_option("--frequency-penalty", a.frequency_penalty, "OpenAI's frequency penalty (default 0)")->option_text("F");
  repeatable(c->add_option("--stop", a.stop, "stop string (repeatable; not part of the output)"))->option_text("S");
  c->add_flag("--ignore-eos", a.ignore_eos, "keep going past EOS");
  c->add_flag("--logprobs", a.logprobs, "ask for each token's log-probability (shown with --json)");
  c->add_option("--timeout-ms", a.timeout_ms, "finish with reason deadline after this long (default 0: none)")
      ->option_text("MS");
  c->add_option("--request-id", a.request_id, "an id for the node's logs and for cancel (default none)")
      ->option_text("ID");
  c->add_flag("--json", a.json,
              "print {\"ids\", \"text\", \"finish_reason\", \"model\", ...} at the end instead of streaming");
  c->callback([&] { run = [&] { return cmd_remote_generate(a); }; });
}

void add_adapters(CLI::App& app, AdaptersAddArgs& add, AdaptersListArgs& ls, AdaptersRemoveArgs& rm,
                  std::function<int()>& run, myriad::LogLevel& log_level) {
  auto* c = add_command(app, "adapters", "manage a node's adapters over RPC: add, ls, rm");
  c->require_subcommand(1);
  c->footer("myriad adapters <add|ls|rm> --help prints that command's flags");
  auto* a = add_command(*c, "add", "upload a PEFT folder from this host to the node as a new version");
  add_server_flags(*a, add);
  a->add_option("--name", add.name, "[tenant/]name (the key's tenant unless an operator key)")
      ->option_text("NAME")
      ->required();
  a->add_option("--path", add.path, "folder with adapter_config.json and adapter_model.safetensors")
      ->option_text("DIR")
      ->required();
  a->add_flag("--json", add.json, "print the published version as JSON");
  a->callback([&] { run = [&] { return cmd_adapters_add(add); }; });
  auto* l = add_command(*c, "ls", "list the adapters the key's tenant may use: name, version, rank, targets, size, created");
  add_server_flags(*l, ls);
  l->add_flag("--json", ls.json, "print a JSON array instead of a table");
  l->callback([&] { run = [&] { return cmd_adapters_list(ls); }; });
  auto* r = add_command(*c, "rm", "delete an adapter's versions (every one, or the one @N names)");
  add_server_flags(*r, rm);
  r->add_option("--name", rm.name, "[tenant/]name or [tenant/]name@N")->option_text("NAME")->required();
  r->callback([&] { run = [&] { return cmd_adapters_remove(rm); }; });
  for (CLI::App* sub : {a, l, r}) add_log_level(*sub, log_level);
}

void add_cluster(CLI::App& app, ClusterListArgs& ls, std::function<int()>& run, myriad::LogLevel& log_level) {
  auto* c = add_command(app, "cluster", "a node's workers over RPC: ls");
  c->require_subcommand(1);
  auto* l = add_command(*c, "ls",
                        "the workers the gateway places on: state, queue, pending tokens, slots, step time, time "
                        "since their last report, and the adapters each holds");
  add_server_flags(*l, ls);
  l->add_flag("--json", ls.json, "print a JSON array instead of a table");
  l->callback([&] { run = [&] { return cmd_cluster_list(ls); }; });
  add_log_level(*l, log_level);
}

void add_jobs(CLI::App& app, JobsCreateArgs& create, JobsListArgs& ls, JobArgs& get, JobArgs& cancel, JobArgs& events,
              std::function<int()>& run, myriad::LogLevel& log_level) {
  auto* c = add_command(app, "jobs", "a node's fine-tuning jobs over RPC: create, ls, get, cancel, events");
  c->require_subcommand(1);
  c->footer("myriad jobs <create|ls|get|cancel|events> --help prints that command's flags");
  auto* n = add_command(*c, "create", "upload a JSONL dataset from this host and start a fine-tuning job on the node");
  add_server_flags(*n, create);
  n->add_option("--model", create.model, "the node's base model (its name in /v1/models)")->option_text("BASE")->required();
  n->add_option("--file", create.file, "training data: JSONL of {prompt, completion} or {messages}")
      ->option_text("FILE")
      ->required();
  n->add_option("--validation-file", create.validation_file, "held-out data in the same format")->option_text("FILE");
  n->add_option("--suffix", create.suffix, "the adapter's name (default ft-<job>)")->option_text("NAME");
  n->add_option("--steps", create.steps, "optimizer steps (default: --epochs passes)")->option_text("N");
  n->add_option("--epochs", create.epochs, "passes over the data (default 3)")->option_text("E");
  n->add_option("--lr", create.lr, "peak learning rate (default 2e-4)")->option_text("LR");
  n->add_option("--rank", create.rank, "LoRA rank (default 8)")->option_text("R");
  n->add_option("--alpha", create.alpha, "LoRA alpha (default 16)")->option_text("A");
  n->add_option("--batch-tokens", create.batch_tokens, "tokens of one micro-batch (default 4096)")->option_text("T");
  n->add_option("--targets", create.targets, "modules to train, comma-separated (default all seven)")
      ->option_text("LIST");
  n->add_option("--seed", create.seed, "the job's seed (default: one the node picks and reports)")->option_text("S");
  n->add_flag("--follow", create.follow, "draw the job's progress until it ends (exit 0 when it succeeded)");
  n->add_flag("--json", create.json, "print the created job as JSON");
  n->callback([&] { run = [&] { return cmd_jobs_create(create); }; });
  auto* l = add_command(*c, "ls", "the key's tenant's jobs, newest first: id, status, adapter, step, loss, versions");
  add_server_flags(*l, ls);
  l->add_option("--limit", ls.limit, "how many (default 20)")->option_text("N");
  l->add_flag("--json", ls.json, "print a JSON array of the jobs");
  l->callback([&] { run = [&] { return cmd_jobs_list(ls); }; });
  auto* g = add_command(*c, "get", "one job as JSON");
  add_server_flags(*g, get);
  g->add_option("id", get.id, "the job's id (ftjob-...)")->required();
  g->add_flag("--follow", get.follow, "draw its progress until it ends instead");
  g->add_flag("--json", get.json, "one line instead of indented");
  g->callback([&] { run = [&] { return cmd_jobs_get(get); }; });
  auto* x = add_command(*c, "cancel", "stop a queued or running job");
  add_server_flags(*x, cancel);
  x->add_option("id", cancel.id, "the job's id")->required();
  x->callback([&] { run = [&] { return cmd_jobs_cancel(cancel); }; });
  auto* e = add_command(*c, "events", "a job's events, oldest first: created, started, each version, the end, a metrics line per step");
  add_server_flags(*e, events);
  e->add_option("id", events.id, "the job's id")->required();
  e->add_option("--limit", events.limit, "the newest N (default 20)")->option_text("N");
  e->add_flag("--follow", events.follow, "then draw its progress until it ends");
  e->add_flag("--json", events.json, "print them as a JSON array, newest first");
  e->callback([&] { run = [&] { return cmd_jobs_events(events); }; });
  for (CLI::App* sub : {n, l, g, x, e}) add_log_level(*sub, log_level);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Myriad: serve many LoRA adapters over one base model. The local commands compute on the CPU; chat, complete, adapters, cluster and jobs call a node (myriad-node --rpc).", "myriad");
  set_conventions(app);
  app.require_subcommand(1);
  app.footer("myriad <command> --help prints that command's flags");

  myriad::LogLevel log_level = myriad::LogLevel::kWarn;
  std::function<int()> run;
  TokenizeArgs tokenize;
  DetokenizeArgs detokenize;
  MakeModelArgs make_model;
  MakeAdapterArgs make_adapter;
  LogitsArgs logits;
  GenerateArgs generate;
  FinetuneArgs finetune;
  MoeCreateArgs moe_create;
  MoeInspectArgs moe_inspect;
  MoeCorpusArgs moe_corpus;
  MoeSweepArgs moe_sweep;

  auto* selfcheck = add_command(app, "selfcheck", "report the compute backends found and check them numerically");
  selfcheck->footer(
      "no flags of its own\n"
      "exit 0 when every backend present agrees with its reference, 1 otherwise");
  selfcheck->callback([&] { run = myriad::cli::cmd_selfcheck; });
  add_tokenize(app, tokenize, run);
  add_detokenize(app, detokenize, run);
  add_make_model(app, make_model, run);
  add_make_adapter(app, make_adapter, run);
  add_logits(app, logits, run);
  add_generate(app, generate, run);
  add_finetune(app, finetune, run);
  add_moe(app, moe_create, moe_inspect, moe_corpus, moe_sweep, run);
#ifdef MYRIAD_CLI_FULL
  RemoteGenerateArgs chat, complete;
  AdaptersAddArgs adapters_add;
  AdaptersListArgs adapters_ls;
  ClusterListArgs cluster_ls;
  AdaptersRemoveArgs adapters_rm;
  add_remote_generate(app, chat, /*chat=*/true, run);
  add_remote_generate(app, complete, /*chat=*/false, run);
  add_adapters(app, adapters_add, adapters_ls, adapters_rm, run, log_level);
  add_cluster(app, cluster_ls, run, log_level);
  JobsCreateArgs jobs_create;
  JobsListArgs jobs_ls;
  JobArgs jobs_get, jobs_cancel, jobs_events;
  add_jobs(app, jobs_create, jobs_ls, jobs_get, jobs_cancel, jobs_events, run, log_level);
#endif
  for (CLI::App* cmd : app.get_subcommands({})) add_log_level(*cmd, log_level);

  if (argc < 2) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
  // A first word that is neither a flag nor a command: say so, not "a
  // command is required".
  const auto subcommands = app.get_subcommands({});
  const bool known = std::any_of(subcommands.begin(), subcommands.end(),
                                 [&](const CLI::App* cmd) { return cmd->check_name(argv[1]); });
  if (argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "myriad: unknown command '%s'\n\n%s", argv[1], app.help().c_str());
    return kExitUsage;
  }
  if (const auto exit_code = parse(app, argc, argv, log_level)) return *exit_code;
  return run();
}
