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
}
