// The request's "model" field: which model a client asks for. Every model
// Myriad serves is the one base model or a LoRA adapter over it, so the
// field names either the base (by its exact served name, --model-name) or an
// adapter as runtime/adapter_id.h spells it:
//
//   "tenant/name"          the adapter's newest published version
//   "tenant/name@N"        version N, pinned
//   "tenant/name@latest"   the same as "tenant/name"
//   "name" / "name@N"      the caller's own tenant's adapter (vLLM clients'
//                          adapter names work unchanged)
//
// The base's exact name is checked first, so a base called "org/model"
// shadows tenant "org"'s adapter "model" (pick --model-name accordingly).
// Resolution here is syntax only: another tenant's adapter resolves like
// the caller's own, and the registry answers 404 model_not_found for it, as
// for a name that does not exist, so that no tenant can probe another's
// adapters. Pure; thread-safe.
#pragma once

#include <string_view>

#include "nodes/openai/api_error.h"
#include "runtime/adapter_id.h"

namespace myriad::openai {

struct ModelRef {
  enum class Kind { kBase, kAdapter };
  Kind kind = Kind::kBase;
  AdapterName adapter;  // kAdapter only; version 0 = the newest

  bool is_base() const { return kind == Kind::kBase; }
};

// 404 model_not_found for a name that cannot name any model (empty, bad
// characters, a bad version), with the reason appended.
ApiResult<ModelRef> resolve_model_field(std::string_view model, std::string_view base_model_name,
                                        std::string_view caller_tenant);

}  // namespace myriad::openai
