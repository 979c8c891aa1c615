# Types shared by the client RPC API (api.capnp) and the messages between
# actors (messages.capnp), so both speak of outcomes, errors, adapters and
# sampling the same way. Each mirrors a runtime type (named per item); the
# converters live in actors/ (common_wire.h). Fields and enumerants are only
# ever appended: a reader of an older schema sees an unknown enumerant as its
# raw number, and the converters map that to an error, never a guess.
@0xf066cf4d0266a4a8;

$import "/capnp/c++.capnp".namespace("myriad::schema");

# Why a request finished normally; mirrors runtime FinishReason (request.h).
# Failures are an Error, not a reason.
enum FinishReason {
  stop @0;       # sampled a stop token id or completed a stop string
  length @1;     # produced maxTokens tokens
  cancelled @2;  # cancelled (by the client, a dropped call or a disconnect) before it finished
  deadline @3;   # its timeout passed before it finished
}

# What kind of failure; mirrors runtime ErrorCode (result.h) ordinal for
# ordinal for @0..@8. @9 and up are the service's own (the gateway's
# authentication and draining) and have no runtime counterpart yet: converted
# to a runtime Error they become `internal`, their name kept in the message.
enum ErrorCode {
  invalidArgument @0;    # a request field out of range (HTTP 400); the message names the field and the limit
  badFile @1;            # a malformed, hostile or truncated file or upload (HTTP 400)
  notFound @2;           # unknown adapter or model, or another tenant's (HTTP 404: the two look alike)
  unsupported @3;        # valid input Myriad does not implement, e.g. DoRA, response_format (HTTP 400)
  resourceExhausted @4;  # over a limit or a bounded queue: retry later (HTTP 429; 413 for a too-large upload)
  io @5;                 # an OS call failed on the node (HTTP 500)
  cancelled @6;          # the operation was cancelled
  deadlineExceeded @7;   # the operation's deadline passed
  internal @8;           # Myriad's own bug or an unexpected state (HTTP 500)
  unauthenticated @9;    # no valid API key for this call (HTTP 401); service only
  unavailable @10;       # the node is draining or not ready (HTTP 503); service only
  overloaded @11;        # a bounded queue is full: retry shortly (HTTP 429 with Retry-After)
}

# An expected failure as a value; mirrors runtime Error.
struct Error {
  code @0 :ErrorCode;  # what kind, for programs to act on
  message @1 :Text;    # for people: names what is wrong (field, file, value, limit)
}

# One published adapter version; mirrors runtime AdapterId (adapter_id.h).
# Tenants and names are 1..64 characters of [A-Za-z0-9._-], not starting
# with '.' or '-'.
struct AdapterId {
  tenant @0 :Text;    # the owning tenant
  name @1 :Text;      # the adapter's name within its tenant
  version @2 :UInt64; # >= 1 once published; 0 only where a field says "0 = newest"
}

# How one sequence picks its next token; mirrors runtime SamplingParams
# (sampling_params.h), defaults included, so an unset struct means the
# runtime's defaults.
struct SamplingParams {
  temperature @0 :Float32 = 1.0;        # 0 => greedy (argmax, ties to the lowest id)
  topK @1 :Int32 = 0;                   # keep the k most likely tokens; 0 => off
  topP @2 :Float32 = 1.0;               # nucleus mass kept; 1 => off
  seed @3 :UInt64 = 0;                  # the draw for output token i depends only on (seed, i): batch-independent
  repetitionPenalty @4 :Float32 = 1.0;  # HF/CTRL style: divide positive logits, multiply negative; 1 => off
  presencePenalty @5 :Float32 = 0.0;    # OpenAI style: subtracted once if the token occurred in the output
  frequencyPenalty @6 :Float32 = 0.0;   # OpenAI style: subtracted per occurrence in the output
  topLogprobs @7 :UInt32 = 0;           # report this many most likely tokens beside each sampled one
}

# One of the most likely tokens at a sampled position.
struct TopToken {
  token @0 :Int32;
  logprob @1 :Float32;
}

# A bias on one token's logit; mirrors runtime LogitBias (logit_bias.h).
struct LogitBias {
  token @0 :Int32;
  bias @1 :Float32;
}
