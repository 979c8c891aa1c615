#include "nodes/openai/model_field.h"

namespace myriad::openai {

ApiResult<ModelRef> resolve_model_field(std::string_view model, std::string_view base_model_name,
                                        std::string_view caller_tenant) {
  if (!base_model_name.empty() && model == base_model_name) return ModelRef{};
  // A name that cannot exist is still "not found" (404), not a malformed
  // request: clients treat both the same way, and the reason is in the message.
  auto name = parse_adapter_name(model, caller_tenant);
  if (!name.ok()) return model_not_found(model, name.error().message);
  return ModelRef{ModelRef::Kind::kAdapter, std::move(name).value()};
}

}  // namespace myriad::openai
