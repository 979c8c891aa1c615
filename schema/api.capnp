# The client RPC API of a Myriad node (Cap'n Proto RPC, two-party, on the
# node's --rpc address). The same service as the OpenAI-compatible HTTP API,
# as capabilities: the bootstrap capability is a `Myriad`.
#
# Authentication is capability-style: `login` trades an API key for a
# `Myriad` scoped to the key's tenant, and every call on that capability acts
# as that tenant (another tenant's adapter answers notFound exactly like one
# that does not exist). The key crosses the wire once per connection instead
# of on every request, and a capability cannot be forged or widened by the
# client, so no method has to re-check a key field. A node without
# --api-keys serves the `default` tenant: its bootstrap already is that
# tenant's session (login is then optional and returns it for any key). On a
# node with keys, the bootstrap answers only health, stats and login; its
# other methods answer the error `unauthenticated`.
#
# Errors are values: each fallible method returns a result with a union of
# the answer and a common Error, whose code a program acts on (HTTP's 400 /
# 401 / 404 / 429 / 503). Exceptions (kj::Exception) mean only a broken
# connection or a bug in the node.
#
# Fields and methods are only ever appended.
@0x94986833699f3ab1;

$import "/capnp/c++.capnp".namespace("myriad::schema::api");

using Common = import "common.capnp";

interface Myriad {
  # Generates one completion. Token events go to `sink` as they are sampled,
  # with flow control (a `-> stream` method: the node keeps a bounded window
  # of unacknowledged tokens; a client that stops reading long enough for the
  # request's buffer to fill gets its request cancelled, never the node's
  # step loop stalled). The call returns after the last token call has been
  # acknowledged, with the final outcome. `sink` may be null: the result
  # then carries every token. Cancel by dropping the call (the client
  # releases the promise; the node allows cancellation, stops the request
  # and frees its KV blocks) or by `cancel` with the request's requestId; a
  # dropped connection cancels all its requests.
  generate @0 (request :GenerateRequest, sink :TokenSink) -> (result :GenerateResult);

  # The adapter management capability of this session's tenant.
  adapters @1 () -> (adapters :Adapters);

  # What `GenerateRequest.model` may name: the base model, then this tenant's
  # adapters (an operator's session: every tenant's).
  models @2 () -> (result :ModelsResult);

  # Liveness and readiness; answered without a key.
  health @3 () -> (health :Health);

  # A node-wide snapshot of the counters /metrics exports; answered without
  # a key (like /metrics), so it names no tenant or adapter.
  stats @4 () -> (stats :Stats);

  # Trades an API key for a session of its tenant (see the top of the file).
  login @5 (apiKey :Text) -> (result :LoginResult);

  # Cancels this session's running request whose GenerateRequest.requestId
  # is `requestId` (for clients that cannot drop a call, e.g. another
  # process); its generate call then returns with finishReason cancelled.
  # found is false when no such request is running (finished, or another
  # tenant's: the two look alike).
  cancel @6 (requestId :Text) -> (found :Bool);

  # This session's fine-tuning files and jobs (docs/training.md): what the
  # HTTP API's /v1/files and /v1/fine_tuning/jobs do.
  fineTuning @7 () -> (fineTuning :FineTuning);
}

# One tenant's fine-tuning files and jobs. Each answer is the JSON object the
# HTTP API gives for the same call (OpenAI's "file", "fine_tuning.job", and
# lists of them, of events and of checkpoints; docs/api.md), so a client
# reads one format over both APIs; errors are the common Error.
interface FineTuning {
  # A training file (JSONL, checked against the served base; a bad line is
  # invalidArgument naming FILE:LINE) uploaded from the client's host. Its
  # size is bounded by the node's --max-body-bytes.
  uploadFile @0 (filename :Text, content :Data) -> (result :JsonResult);

  # The tenant's files, newest first ({"object": "list", "data": [...]}).
  listFiles @1 () -> (result :JsonResult);

  # Creates a job from OpenAI's request body (JSON text: model,
  # training_file, hyperparameters, suffix, seed, ...); answers the job.
  createJob @2 (requestJson :Text) -> (result :JsonResult);

  # The tenant's jobs, newest first, after the job `after` ("" = from the
  # newest), at most `limit` (0 = 20).
  listJobs @3 (after :Text, limit :UInt32) -> (result :JsonResult);

  # One job (notFound for another tenant's, as for a missing one).
  getJob @4 (id :Text) -> (result :JsonResult);

  # Cancels a queued or running job; answers it as it is then.
  cancelJob @5 (id :Text) -> (result :JsonResult);

  # A job's events, newest first, after the event `after`, at most `limit`
  # (0 = 20): messages and one metrics event per optimizer step.
  events @6 (id :Text, after :Text, limit :UInt32) -> (result :JsonResult);

  # The versions a job published, newest first.
  checkpoints @7 (id :Text) -> (result :JsonResult);

  # A training loop this session drives (docs/training.md, "Training runs"):
  # a LoRA adapter on the served base, trained by the client's own calls on
  # the worker that serves, beside everyone else's traffic and jobs.
  # requestJson: {"name" (the adapter its versions are published as),
  # "rank"?, "alpha"?, "targets"?, "seed"?, "weight_decay"?, "beta1"?,
  # "beta2"?, "eps"?}, or {"name", "from_checkpoint": "ckpt-..."} to go on
  # from a saved state (TrainingRun.saveState). result: {"object": "training_run", "adapter", ...};
  # run is null on an error. Dropping the run forgets its gradients and
  # optimizer state; its published versions stay adapters.
  trainingRun @8 (requestJson :Text) -> (run :TrainingRun, result :JsonResult);

  # The tenant's saved run states (TrainingRun.saveState), newest first:
  # {"object": "list", "data": [{"object": "training_run.checkpoint", "id",
  # "step", "adapter", "created_at"}, ...]}.
  listRunCheckpoints @9 () -> (result :JsonResult);

  # Deletes one (notFound for another tenant's, as for a missing one).
  deleteRunCheckpoint @10 (id :Text) -> (result :JsonResult);
}

# One client-driven training run. Calls run in the order sent, on the
# worker's thread between its inference steps; each answers JSON.
interface TrainingRun {
  # Each example a JSON object in a training file's formats ({"prompt",
  # "completion"}, {"messages"}, {"text"}). Adds the gradient of the batch's
  # mean loss per target token to the gradients held; answers {"loss",
  # "tokens", "target_tokens"}. A bad example is invalidArgument naming
  # "example N" and changes nothing.
  forwardBackward @0 (examples :List(Text)) -> (result :JsonResult);

  # Clips the held gradients to maxGradNorm (global L2 norm; 0: no
  # clipping), one AdamW step at learningRate, then zeroes them; answers
  # {"step", "grad_norm" (before clipping), "accumulated" (forwardBackward
  # calls applied)}. invalidArgument without a forwardBackward since the
  # last step.
  optimStep @1 (learningRate :Float64, maxGradNorm :Float64 = 1.0) -> (result :JsonResult);

  # Publishes the adapter as it is now as the next version of its name
  # (PEFT files in the store; served from memory at once); answers
  # {"adapter": "tenant/name@N", "step"}.
  publish @2 () -> (result :JsonResult);

  # One completion of `prompt` (text, tokenized as a completion's) from the
  # newest published version; answers {"text", "adapter", "finish_reason",
  # "completion_tokens"}. invalidArgument before the first publish.
  sample @3 (prompt :Text, maxTokens :UInt32 = 16, temperature :Float32 = 0, seed :UInt64) -> (result :JsonResult);

  # The run as trainingRun answered it, with its newest published version.
  describe @4 () -> (result :JsonResult);

  # Saves the run's state (adapter, AdamW moments, step count; not the
  # gradients accumulated since the last optimStep) as a checkpoint of the
  # tenant that survives the node; answers {"object":
  # "training_run.checkpoint", "id": "ckpt-...", "step", "adapter"}. A run
  # opened with {"name", "from_checkpoint": id} goes on from it.
  saveState @5 () -> (result :JsonResult);
}

struct JsonResult {
  union {
    json @0 :Text;           # the HTTP API's JSON object for the same call
    error @1 :Common.Error;  # invalidArgument (naming the field), notFound, unauthenticated, unsupported
  }
}

# The client's receiver of one request's token events.
interface TokenSink {
  # One sampled token; the node sends the next only within its flow-control window.
  token @0 (event :TokenEvent) -> stream;
}

# One message of a chat, as the OpenAI chat API has it.
struct ChatMessage {
  role @0 :Text;     # "system", "user" or "assistant"
  content @1 :Text;  # the message's text
}

struct GenerateRequest {
  # Which model, as OpenAI's `model` field: "tenant/name" (its newest
  # version), "tenant/name@N" (version N, pinned), "tenant/name@latest"
  # (same as bare), a bare "name" (the session's tenant's adapter), or the
  # base model's name.
  model @0 :Text;
  prompt :union {
    text @1 :Text;                  # a completion prompt, tokenized by the node
    tokenIds @2 :List(Int32);       # a prompt already tokenized (ids of the base's vocabulary)
    chat @3 :List(ChatMessage);     # a chat, rendered with the base model's chat template
  }
  maxTokens @4 :UInt32 = 16;        # output tokens at most; prompt + maxTokens must fit the context (else invalidArgument naming both)
  sampling @5 :Common.SamplingParams; # temperature, topP, topK, seed, penalties; unset = the runtime's defaults
  stop @6 :List(Text);              # stop strings: the output ends before the first one (finishReason stop)
  stopTokenIds @7 :List(Int32);     # sampling one ends the output (finishReason stop); the token is sent
  logprobs @8 :Bool;                # fill TokenEvent.logprob (else 0)
  timeoutMs @9 :UInt32;             # unfinished this long after the node accepted it => finishReason deadline; 0 = none
  requestId @10 :Text;              # optional client-chosen id: echoed in the result, used by `cancel` and in the node's logs
  ignoreEos @11 :Bool;              # keep going past the model's end-of-sequence ids (HTTP's ignore_eos)
  logitBias @12 :List(Common.LogitBias); # added to these tokens' logits before sampling (OpenAI's logit_bias): distinct
                                    # ids of the vocabulary, each in [-100, 100], at most 300; a CPU node's executor only
  minTokens @13 :UInt32;            # vLLM's min_tokens: stop tokens and strings end nothing before this many (<= maxTokens)
}

# One token as streamed to the client.
struct TokenEvent {
  index @0 :UInt32;    # output index (0 = the first token)
  tokenId @1 :Int32;   # the sampled token id
  text @2 :Text;       # the text this token released (may be empty while a partial character or a possible stop string is held back)
  logprob @3 :Float32; # the token's log-probability, when the request asked for logprobs; else 0
  top @4 :List(Common.TopToken); # sampling.topLogprobs most likely tokens here, most likely first (a CPU node's)
}

# The final outcome of one generate call.
struct GenerateResult {
  union {
    finishReason @0 :Common.FinishReason;  # it finished normally
    error @1 :Common.Error;                # it failed (bad request, unknown model, overload, ...)
  }
  # Text released at the end, after the last token's text. The whole output
  # is the concatenation of every TokenEvent.text, then this. Without a sink
  # there were no events: this is the whole output.
  text @2 :Text;
  tokens @3 :List(TokenEvent);  # every token, only when the call had no sink
  promptTokens @4 :UInt32;      # tokens of the prompt as tokenized (and templated)
  completionTokens @5 :UInt32;  # tokens generated
  queueMs @6 :Float64;          # accepted -> first admitted into a batch (ms); -1 if never admitted
  ttftMs @7 :Float64;           # accepted -> first token sent (ms); -1 if none
  totalMs @8 :Float64;          # accepted -> this result (ms)
  model @9 :Text;               # what ran: "tenant/name@N" (the resolved version) or the base model's name
  requestId @10 :Text;          # the request's requestId, echoed
}

# The adapters of one tenant. A name is "name" (this tenant) or
# "tenant/name" (the tenant must be the session's, unless an operator's).
interface Adapters {
  # Starts uploading a new version of `name` from the client's host: the
  # safetensors bytes in chunks, then the config. `sizeBytes` (the
  # safetensors file's size) lets the node refuse an oversized upload before
  # any byte is sent. The name is checked here, not after the upload.
  beginUpload @0 (name :Text, sizeBytes :UInt64) -> (result :UploadResult);

  # Publishes a new version of `name` from a PEFT folder on the node
  # (adapter_config.json + adapter_model.safetensors), as vLLM's
  # load_lora_adapter does.
  addFromPath @1 (name :Text, path :Text) -> (result :AdapterResult);

  # Every version of every adapter of this tenant (an operator: of every
  # tenant), ordered by tenant, name, version.
  list @2 () -> (result :AdapterListResult);

  # The newest version of `name`, or the pinned one of "name@N".
  get @3 (name :Text) -> (result :AdapterResult);

  # Deletes version `version` of `name`, or every version when `version` is
  # 0. A version's number is never given out again. Running requests that
  # pinned a deleted version finish on it; new ones no longer resolve it.
  # Answers the versions deleted.
  delete @4 (name :Text, version :UInt64) -> (result :AdapterListResult);

  # Every version of `name`, oldest first.
  versions @5 (name :Text) -> (result :AdapterListResult);
}

# One upload in progress. Dropping it before `finish` abandons the upload:
# nothing is published.
interface AdapterUpload {
  # The next chunk of adapter_model.safetensors, in order (flow-controlled; a
  # chunk of 1 MiB keeps each message far below the 64 MiB RPC limit). Bytes
  # beyond the size announced in beginUpload (or the node's limit) are not
  # kept: `finish` then answers the error.
  write @0 (chunk :Data) -> stream;

  # Ends the upload with adapter_config.json's text; validates the adapter
  # against the served base (ranks, targets, shapes, finite values) and
  # publishes it atomically. A rejected upload leaves the store unchanged.
  finish @1 (configJson :Text) -> (result :AdapterResult);
}

struct UploadResult {
  union {
    upload @0 :AdapterUpload;  # the upload to write to
    error @1 :Common.Error;    # bad name, another tenant's name, too large, unauthenticated
  }
}

# One published adapter version; mirrors runtime AdapterRecord (adapter_store.h).
struct AdapterInfo {
  id @0 :Common.AdapterId;          # tenant, name and version (>= 1)
  baseFingerprint @1 :Text;         # the base model it was validated against
  rank @2 :Int32;                   # the largest LoRA rank of any module (what a slot needs)
  alpha @3 :Float32;                # lora_alpha as written in adapter_config.json
  targetModules @4 :List(Text);     # modules with a delta in some layer, e.g. ["q_proj", "v_proj"]
  sha256 @5 :Text;                  # the stored files' content hash (64 hex digits; operations.md says of what)
  sizeBytes @6 :UInt64;             # both files together
  createdUnixMs @7 :Int64;          # when this version was published (Unix ms)
}

struct AdapterResult {
  union {
    adapter @0 :AdapterInfo;  # the version added or asked for
    error @1 :Common.Error;   # notFound, badFile (the file at fault named), invalidArgument, ...
  }
}

struct AdapterListResult {
  union {
    adapters @0 :List(AdapterInfo);  # the versions, as each method orders them
    error @1 :Common.Error;          # notFound (versions, delete), unauthenticated, ...
  }
}

# The base model, as models() describes it.
struct BaseModelInfo {
  fingerprint @0 :Text;     # identifies the base's weights; adapters record it
  architecture @1 :Text;    # e.g. "LlamaForCausalLM"
  contextLength @2 :UInt32; # tokens of prompt plus output at most
  vocabSize @3 :UInt32;     # token ids are 0 .. vocabSize-1
}

# Something `GenerateRequest.model` may name.
struct ModelInfo {
  id @0 :Text;              # the name to put in `model`: the base's name or "tenant/name"
  ownedBy @1 :Text;         # the tenant, or "myriad" for the base
  createdUnixMs @2 :Int64;  # when the base was loaded, or the adapter's newest version published
  union {
    base @3 :BaseModelInfo; # the served base model
    adapter @4 :AdapterInfo; # an adapter: its newest version
  }
}

struct ModelsResult {
  union {
    models @0 :List(ModelInfo);  # the base first, then adapters by tenant and name
    error @1 :Common.Error;      # unauthenticated
  }
}

enum HealthState {
  starting @0;  # loading the base model: no request is accepted yet
  serving @1;   # accepting requests
  draining @2;  # stopping: running requests finish, new ones get `unavailable`
}

struct Health {
  state @0 :HealthState;    # whether the node accepts requests
  version @1 :Text;         # Myriad's version / build
  uptimeMs @2 :UInt64;      # since the node started
  baseModel @3 :Text;       # the served base model's name
  workersUp @4 :UInt32;     # workers answering
  workersTotal @5 :UInt32;  # workers configured
}

# One worker's load, as Stats shows it.
struct WorkerStats {
  worker @0 :Text;           # the worker's id, e.g. "node1/cuda0"
  device @1 :Text;           # "cpu" or the GPU's name
  queued @2 :UInt32;         # requests waiting for admission
  running @3 :UInt32;        # requests in the running batch
  freeKvBlocks @4 :UInt32;   # KV blocks free now
  totalKvBlocks @5 :UInt32;  # KV blocks in the pool
  activeAdapters @6 :UInt32; # adapter slots in use
  totalSlots @7 :UInt32;     # adapter slots on the device
  stepMs @8 :Float32;        # mean device time of recent steps (ms)
  up @9 :Bool;               # live (false once lost: its connection closed or its reports stopped)
  draining @10 :Bool;        # takes no new requests (leaving, or drained by an operator)
  pendingTokens @11 :UInt64; # tokens to compute for its queued and running requests
  resident @12 :List(Text);  # adapter versions in its slots ("tenant/name@N")
  hostCached @13 :List(Text); # adapter versions in its host memory
  reportAgeMs @14 :Float64;  # since its latest load report (its heartbeat)
}

# Node-wide counters since start, and gauges now.
struct Stats {
  requestsRunning @0 :UInt32;      # in a running batch now
  requestsQueued @1 :UInt32;       # waiting for admission now
  requestsTotal @2 :UInt64;        # accepted since start
  requestsFailed @3 :UInt64;       # ended with an error since start
  promptTokensTotal @4 :UInt64;    # prompt tokens computed since start
  outputTokensTotal @5 :UInt64;    # tokens generated since start
  adapterSwapsTotal @6 :UInt64;    # adapters swapped into a slot since start
  ttftMsP50 @7 :Float64;           # time to first token, median since start (ms)
  ttftMsP99 @8 :Float64;           # time to first token, 99th percentile (ms)
  itlMsP50 @9 :Float64;            # inter-token latency, median (ms)
  itlMsP99 @10 :Float64;           # inter-token latency, 99th percentile (ms)
  workers @11 :List(WorkerStats);  # per worker
  requestsCancelled @12 :UInt64;   # ended cancelled (by a client, a dropped call or a disconnect) since start
}

struct LoginResult {
  union {
    session @0 :Myriad;      # the tenant's session: every call on it acts as the tenant
    error @1 :Common.Error;  # unauthenticated (an unknown key; the same answer for every wrong key)
  }
  tenant @2 :Text;           # the key's tenant (empty on error)
  admin @3 :Bool;            # an operator key: the session sees every tenant
}
