# The messages between actors (gateway, registry, adapter, scheduler and
# worker actors). Each travels as the bytes of one Cap'n Proto message inside
# a CAF message, wrapped in actors::TypedWire<T> so that one kind can never be
# read as another; in-process and across hosts alike, so a single node and a
# cluster run the same code. Build every one as if it crossed a network: no
# pointers, no clocks compared across machines (times are relative, or say
# whose clock), ids that stay unique across workers and restarts.
#
# Fields are only ever appended. Who sends what:
#
#   gateway  --SubmitRequest-->  scheduler (of the worker placement chose)
#   gateway  --CancelRequest-->  scheduler
#   worker   --RequestEvent-->   gateway   (tokens, prompt logits, then exactly one final event)
#   worker   --AdapterResidency--> adapter actor (and the gateway, for placement by affinity)
#   worker   --WorkerLoad-->     gateway   (periodically, for placement by load)
@0xd943e97e5362579a;

$import "/capnp/c++.capnp".namespace("myriad::schema");

using Common = import "common.capnp";
using Api = import "api.capnp";

# One adapter of a request and its weight in the mixture; mirrors runtime
# AdapterUse (request.h).
struct AdapterUse {
  id @0 :Common.AdapterId;  # a published version (version >= 1): resolved by the registry before placement
  weight @1 :Float32 = 1.0; # the output adds weight * scale * B A x for this adapter; 1 for a plain request
}

# Which prompt logits a request wants; mirrors runtime LogitsRequest (step_plan.h).
enum LogitsRequest {
  none @0;  # no prompt logits
  last @1;  # the logits of the prompt's last position
  all @2;   # the logits of every prompt position (big: [prompt, vocab] floats, sent in ranges)
}

# Admit a request into a worker's engine; mirrors runtime Request
# (request.h) field for field, plus the placement attempt.
struct SubmitRequest {
  requestId @0 :UInt64;                  # assigned by the gateway, never 0, unique across workers and restarts
  adapters @1 :List(AdapterUse);         # empty = the base model; else 1..kMaxAdaptersPerRow distinct versions, resident together
  prompt @2 :List(Int32);                # token ids, at least one
  sampling @3 :Common.SamplingParams;    # how to pick each token
  maxTokens @4 :UInt32 = 16;             # output tokens at most (>= 1; 0 with promptLogits: score the prompt only)
  stopTokenIds @5 :List(Int32);          # sampling one ends the request (reason stop); the token is emitted
  stop @6 :List(Text);                   # stop strings (the worker's engine needs a tokenizer); the text ends before one
  timeoutMs @7 :Float64 = inf;           # relative to the worker's submit, so clocks need not agree; inf = no deadline
  promptLogits @8 :LogitsRequest;        # prompt logits wanted as `logits` events
  attempt @9 :UInt32;                    # 0 on the first placement, +1 each time the gateway places it again
                                         # (worker lost): events of an older attempt are stale and dropped
  resumeOutput @10 :List(Int32);         # placed again mid-stream: the output tokens the client already has;
                                         # prefilled with the prompt, not sent again; the output goes on at
                                         # index resumeOutput.size() (runtime Request::resume_output)
  prefillRouter @11 :PrefillRouter;      # set: a mixture of experts routed by hidden state in this request's
                                         # own prefill; `adapters` are its experts (runtime Request::prefill_router)
  logitBias @12 :List(Common.LogitBias);        # added to these tokens' logits before each sample (runtime Request::logit_bias)
  minTokens @13 :UInt32;                 # stop tokens and strings end nothing before this many (Request::min_tokens)
}


# How a request picks its experts at a layer of its own prefill; mirrors
# runtime PrefillRouter (step_plan.h).
struct PrefillRouter {
  layer @0 :Int32;              # the hidden state after this many decoder layers
  skipTokens @1 :UInt32;        # leading prompt tokens attended to but not averaged (a BOS)
  maxTokens @2 :UInt32;         # prompt tokens averaged at most (0: all)
  dim @3 :Int32;                # the model's hidden size
  centroids @4 :List(Float32);  # [experts, dim], expert e = adapters[e]
  cosine @5 :Bool = true;       # else minus the squared euclidean distance
  topK @6 :Int32 = 1;           # experts chosen per request
  temperature @7 :Float64 = 0.05;  # of the softmax over the chosen experts' similarities
}

# Stop a request; the worker answers with its final event (cancelled) if it
# still held the request, nothing otherwise (the final event was already sent).
struct CancelRequest {
  requestId @0 :UInt64;  # the request to stop
  attempt @1 :UInt32;    # the placement attempt being cancelled (a newer attempt is not touched)
  reason @2 :Text;       # for logs: "client disconnected", "gateway deadline", ...
}

# A sampled token; runtime RequestEvent with kind kToken.
struct SampledToken {
  index @0 :UInt32;    # output index of this token (0 = the first)
  token @1 :Int32;     # the token id
  logprob @2 :Float32; # its log-probability under the sampling distribution
  text @3 :Text;       # the text this token released (UTF-8-whole; may be empty: held back for a stop string)
  top @4 :List(Common.TopToken);  # the request's topLogprobs most likely tokens here, most likely first
}


# Logits of a range of prompt positions; runtime RequestEvent with kind kLogits.
struct PromptLogits {
  start @0 :UInt32;          # first prompt position of the range
  count @1 :UInt32;          # positions in the range
  values @2 :List(Float32);  # row-major [count, vocab]; a range stays under the 64 MiB message limit
}

# The request finished normally; runtime RequestEvent with kind kFinished.
struct Finished {
  reason @0 :Common.FinishReason;  # why it ended
  text @1 :Text;                   # text held back until the end (after the last token's text)
  numOutputTokens @2 :UInt32;      # tokens emitted before this event
  queueMs @3 :Float64 = -1;        # submit -> first admission into the batch; -1 if never admitted
}

# The request failed; runtime RequestEvent with kind kFailed.
struct Failed {
  error @0 :Common.Error;       # what went wrong, for the client
  numOutputTokens @1 :UInt32;   # tokens emitted before this event
  queueMs @2 :Float64 = -1;     # submit -> first admission; -1 if never admitted
}

# What a worker's engine tells the request's owner; mirrors runtime
# RequestEvent (engine_events.h). Per request, in order: tokens (or prompt
# logits), then exactly one final event (finished or failed).
struct RequestEvent {
  requestId @0 :UInt64;  # the request's id
  attempt @1 :UInt32;    # the SubmitRequest's attempt this event belongs to
  timeMs @2 :Float64;    # the worker engine's clock: compare only with the same worker's events
  union {
    token @3 :SampledToken;    # a sampled token
    logits @4 :PromptLogits;   # logits of prompt positions
    finished @5 :Finished;     # final: done, with a reason
    failed @6 :Failed;         # final: an error
  }
  expertWeights @7 :List(Float32);  # a request routed in its prefill, once routed: each adapter's weight (0: not chosen)
}

# Where one adapter version is on one worker, reported by that worker when it
# changes; the adapter actor keeps the latest report per worker.
#   store -> fetching -> hostCache -> loading -> slot -> hostCache (swapped out) -> evicted
# any step may end in `failed`.
struct AdapterResidency {
  adapter @0 :Common.AdapterId;  # the version
  worker @1 :Text;               # the reporting worker's id (unique in the cluster), e.g. "node1/cuda0"
  seq @2 :UInt64;                # increases with every report of this worker: an older one is stale
  atUnixMs @3 :Int64;            # when it changed, the worker's wall clock (for humans and metrics)
  where :union {
    store @4 :Void;      # only in the adapter store: not on this worker
    fetching @5 :Void;   # being fetched (from the store, by hash) into this worker's host cache
    hostCache @6 :Void;  # in this worker's host memory cache, in no slot
    loading @7 :UInt32;  # being copied into this device slot
    slot @8 :UInt32;     # resident in this device slot: requests of it can run
    evicted @9 :Void;    # dropped from the slot and the host cache
    failed @10 :Common.Error;  # a fetch or load failed (e.g. the stored file's hash no longer matches)
  }
  pins @11 :UInt32;      # running requests pinning this version on this worker (a delete waits for 0)
}

# A worker's load, sent periodically to the gateway for placement.
struct WorkerLoad {
  worker @0 :Text;                             # the worker's id, as in AdapterResidency
  seq @1 :UInt64;                              # increases with every report: an older one is stale
  atUnixMs @2 :Int64;                          # when measured, the worker's wall clock
  queued @3 :UInt32;                           # requests waiting for admission
  running @4 :UInt32;                          # requests in the running batch
  freeKvBlocks @5 :UInt32;                     # KV blocks free now
  totalKvBlocks @6 :UInt32;                    # KV blocks in the pool
  freeSlots @7 :UInt32;                        # adapter slots holding nothing
  totalSlots @8 :UInt32;                       # adapter slots on the device
  activeAdapters @9 :List(Common.AdapterId);   # versions resident in slots now
  stepMs @10 :Float32;                         # mean device time of recent steps (ms)
  draining @11 :Bool;                          # refusing new requests (shutting down): place elsewhere
  slots @12 :List(SlotContent);                # the occupied device slots (residency, for placement by affinity)
  pendingTokens @13 :UInt64;                   # tokens to compute for queued and running requests (prompt left to prefill + output to come): load for placement
  hostCached @14 :List(Common.AdapterId);      # versions in the worker's host memory: a slot load from there needs no fetch
  device @15 :Text;                            # the executor, e.g. "cpu (2 threads, ...)" or the GPU's name
  heartbeat @16 :Bool;                         # only a heartbeat: the worker is up but its step thread has not
                                               # taken the last report yet (a long step); every other field but
                                               # worker and atUnixMs is unset, and the gateway only notes the time
  # What it served since it started (counters and percentiles over its
  # lifetime): the gateway's per-worker view, the web console's charts.
  outputTokens @17 :UInt64;                    # tokens generated
  requests @18 :UInt64;                        # requests accepted by its engine
  ttftP50Ms @19 :Float32;                      # time to first token, median (ms; 0 before any)
  ttftP99Ms @20 :Float32;                      # time to first token, 99th percentile (ms)
  itlP50Ms @21 :Float32;                       # inter-token latency, median (ms; 0 before any)
  itlP99Ms @22 :Float32;                       # inter-token latency, 99th percentile (ms)
  slotLoads @23 :UInt64;                       # adapter loads into its device slots begun
  swaps @24 :UInt64;                           # adapters swapped out at the end of their time slice
}

# ---- Appended with the service's actors (gateway, registry, adapter,
# scheduler, worker). ----

# What one device slot of a worker holds; WorkerLoad.slots lists the
# occupied ones.
struct SlotContent {
  slot @0 :UInt32;               # the device slot
  adapter @1 :Common.AdapterId;  # the version in it
  loading @2 :Bool;              # being copied in (not yet usable by requests)
}

# A front end (HTTP or RPC server) asks the gateway to run one request of an
# authenticated caller. The gateway resolves `model`, pins the version,
# places the request on a worker and answers Accepted.
struct Generate {
  tenant @0 :Text;           # the caller's tenant (authenticated by the front end)
  admin @1 :Bool;            # an operator key: may name any tenant's adapter
  model @2 :Text;            # as GenerateRequest.model (api.capnp): base, tenant/name[@N], bare name
  request @3 :SubmitRequest; # the request; requestId and adapters are left for the gateway to fill
  experts @4 :List(WeightedModel);  # non-empty: run a per-row mixture of these adapters instead of `model`
                                    # (a routed mixture of experts); each is resolved and pinned like `model`
}

# One adapter of a weighted per-row mixture (Generate.experts).
struct WeightedModel {
  model @0 :Text;           # tenant/name@N (as Generate.model names an adapter)
  weight @1 :Float32 = 1.0; # its mixing weight: the output adds weight * scale * B A x
}

# The gateway's (or a scheduler's) answer to a Generate (a SubmitRequest):
# accepted with its id (events follow to the sink named with it, ending
# in exactly one final event), or refused (no events follow).
struct Accepted {
  union {
    requestId @0 :UInt64;     # accepted: the id its events carry
    error @1 :Common.Error;   # refused: notFound, invalidArgument (naming the limit), overloaded, unavailable
  }
  model @2 :Text;             # what will run: "tenant/name@N" or the base model's name
}

# A caller's request to the registry: resolve a model name, publish a folder,
# remove versions, list adapters. Which one is the message kind the
# registry's handler names; the fields a kind does not use stay empty.
struct RegistryCall {
  tenant @0 :Text;      # the caller's tenant
  admin @1 :Bool;       # an operator: may name any tenant
  name @2 :Text;        # a model or adapter name as the API takes it
  path @3 :Text;        # publish: the PEFT folder on the registry's host
  pinRequest @4 :UInt64;  # resolve: pin the version for this request (0 = only resolve)
  configJson @5 :Text;    # publish without a path: adapter_config.json's text
  safetensors @6 :Data;   # publish without a path: adapter_model.safetensors' bytes
}

# The registry's answer about one model name.
struct AdapterAnswer {
  union {
    base @0 :Void;                     # the name is the base model
    adapter @1 :Api.AdapterInfo;       # the version it names (pinned, when asked)
    error @2 :Common.Error;            # notFound (also: another tenant's, or being deleted), badFile, ...
  }
}

# The registry's answer listing versions (list, remove).
struct AdapterList {
  union {
    adapters @0 :List(Api.AdapterInfo);  # by tenant, name, version
    error @1 :Common.Error;              # notFound, invalidArgument
  }
}

# One request starts (pin) or stops (unpin: its final event was relayed)
# using a version; registry -> adapter actor.
struct Pin {
  adapter @0 :Common.AdapterId;  # the version
  requestId @1 :UInt64;          # the request
}

# Retire versions of one adapter before the registry deletes them: no new
# request may pin them; the adapter actor answers once none is pinned.
struct Retire {
  tenant @0 :Text;
  name @1 :Text;
  versions @2 :List(UInt64);  # the versions to retire
}

# What an adapter actor knows of one adapter (tenant/name): per version, the
# requests pinning it, whether a delete waits for them, and where it is on
# each worker (the latest residency report per worker).
struct AdapterStatus {
  tenant @0 :Text;
  name @1 :Text;
  versions @2 :List(VersionStatus);
}

struct VersionStatus {
  version @0 :UInt64;                      # >= 1
  pins @1 :UInt32;                         # requests running on it now
  deleting @2 :Bool;                       # a delete waits for the pins to end; no new request resolves it
  residency @3 :List(AdapterResidency);    # one per worker that reported it
}

# An adapter version's two files, fetched from the registry by a worker on
# another host (no shared filesystem is assumed): the worker checks both
# hashes again before it loads them. Under the 64 MiB message limit (the
# store refuses larger uploads by default: --max-body-bytes).
struct AdapterFiles {
  union {
    files :group {
      adapter @0 :Common.AdapterId;  # the version
      sha256 @1 :Text;               # the blob's content address (AdapterInfo's sha256)
      configSha256 @2 :Text;         # of configJson
      weightsSha256 @3 :Text;        # of safetensors
      configJson @4 :Text;           # adapter_config.json
      safetensors @5 :Data;          # adapter_model.safetensors
    }
    error @6 :Common.Error;          # notFound (no such version), badFile (a stored file no longer matches its hash)
  }
}

# ---- Appended with the cluster (a gateway and workers on other hosts). ----

# A worker asks to join a gateway's cluster (the gateway's door actor,
# published on --cluster). The door checks the proof and the base model's
# fingerprint before the worker's scheduler gets any request.
struct Join {
  worker @0 :Text;           # the worker's id, unique in the cluster (default: host/pid)
  baseFingerprint @1 :Text;  # sha256 of the worker's base config.json: must equal the gateway's
  device @2 :Text;           # e.g. "cpu", "cuda:0 (NVIDIA H100 ...)"
  slots @3 :UInt32;          # adapter slots on its device
  nonce @4 :Text;            # the challenge the door gave this connection (hello)
  proof @5 :Text;            # hex sha256("myriad-join:" secret ":" nonce ":" worker); empty without a secret
}

# The door's answer to a Join.
struct JoinAnswer {
  union {
    accepted @0 :Void;       # the worker's scheduler now takes requests
    error @1 :Common.Error;  # invalidArgument: no or a wrong proof of the secret, another base model, an id in use
  }
  baseModel @2 :Text;        # the gateway's name of the base model
}

# ---- Appended with resuming a request on another worker. ----

# Where a request's client is: the output tokens its sink passed on, asked by
# the gateway before it places the request again (its worker was lost). The
# sink drops every event of an attempt older than `attempt` from then on.
struct ResumePoint {
  requestId @0 :UInt64;     # the request
  attempt @1 :UInt32;       # the attempt about to be placed
  tokens @2 :List(Int32);   # output tokens the client has, indices [0, n); empty: none, or not known
}

# ---- Appended with fine-tuning jobs on a cluster. ----
#
#   gateway  --TrainJob-->      a worker's trainer (train it, from its checkpoint when it has one)
#   trainer  --TrainProgress--> gateway  (each optimizer step)
#   trainer  --TrainVersion-->  gateway  (each published version: its checkpoint, from which the
#                                         gateway publishes the adapter and resumes the job elsewhere)

# One training sequence: token ids and which of them are learnt (a byte each,
# 1 = learnt; the first is ignored), as runtime's TrainingExample.
struct TrainingSequence {
  tokens @0 :List(Int32);
  targets @1 :Data;
}

# A fine-tuning job for a worker to train: the gateway tokenized its files.
struct TrainJob {
  job @0 :Text;                      # the job's id: how progress and versions name it
  configJson @1 :Text;               # runtime TrainingJobConfig as JSON (training_job_config_json)
  train @2 :List(TrainingSequence);
  eval @3 :List(TrainingSequence);   # the validation file's: each version's eval loss
  checkpoint @4 :Data;               # the job's checkpoint (safetensors bytes) to resume from; empty: from the start
  publishEvery @5 :Int64;            # optimizer steps between versions (the gateway's --publish-every)
}

# One optimizer step of a job, as runtime's TrainingStepRecord.
struct TrainProgress {
  job @0 :Text;
  step @1 :Int64;
  loss @2 :Float64;
  tokens @3 :Int64;
  targetTokens @4 :Int64;
  lr @5 :Float64;
  gradNorm @6 :Float64;
  worker @7 :Text;   # the reporting worker's id: a report from one that no longer has the job is ignored
}

# A version a job published: its whole checkpoint (adapter, AdamW state, data
# position, loss history) at that step, and its validation loss (NaN without
# a validation file).
struct TrainVersion {
  job @0 :Text;
  version @1 :UInt64;
  evalLoss @2 :Float64;
  checkpoint @3 :Data;
  worker @4 :Text;   # as TrainProgress.worker
}

# ---- Appended with training runs on a cluster. ----
#
#   gateway  --RunCall-->   a worker's trainer (open, forwardBackward, optimStep, snapshot, state, close)
#   trainer  --RunAnswer--> gateway (one per call but close, naming the call)
#
# The run's adapter, gradients and AdamW state live on the worker; the
# gateway keeps the run's id, its tenant and what it published.

struct RunCall {
  run @0 :Text;     # the run's id (the gateway's)
  call @1 :UInt64;  # the gateway's number for this call: its answer names it
  union {
    open :group {
      optionsJson @2 :Text;  # tenant, adapter, and the TrainingJobConfig JSON of its targets, AdamW and seed
      state @3 :Data;        # a saved state (safetensors: params., adam_m., adam_v.) to go on from; empty: fresh
      steps @4 :Int64;       # the saved state's optimizer steps
    }
    forwardBackward @5 :List(TrainingSequence);
    optimStep :group {
      learningRate @6 :Float64;
      maxGradNorm @7 :Float64;
    }
    snapshot @8 :Void;
    state @9 :Void;
    close @10 :Void;
  }
}

struct RunAnswer {
  run @0 :Text;
  call @1 :UInt64;
  error @2 :Common.Error;   # set (hasError) when the call failed; nothing changed then
  union {
    none @3 :Void;          # open
    forwardBackward :group {
      loss @4 :Float64;
      tokens @5 :Int64;
      targetTokens @6 :Int64;
    }
    optimStep :group {
      step @7 :Int64;
      gradNorm @8 :Float64;
      accumulated @9 :Int64;
    }
    tensors :group {        # snapshot (params. only) and state (params., adam_m., adam_v.)
      safetensors @10 :Data;
      steps @11 :Int64;
    }
  }
}
