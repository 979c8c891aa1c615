// Builders and readers of the service's messages (service_actors.h) from and
// to runtime types, so each actor reads like its logic, not like Cap'n Proto.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "actors/service_actors.h"
#include "runtime/adapter_store.h"
#include "runtime/engine_events.h"
#include "runtime/request.h"

namespace myriad::actors {

AcceptedWire accepted(uint64_t request_id, const std::string& model);
AcceptedWire refused(const Error& error);
// The id, or the refusal's Error (also for a malformed answer).
Result<uint64_t> read_accepted(const AcceptedWire& wire, std::string* model = nullptr);

// `experts` (model, weight), non-empty: a per-row mixture of those adapters.
GenerateWire generate_wire(const std::string& tenant, bool admin, const std::string& model,
                           const Request& request,
                           const std::vector<std::pair<std::string, float>>& experts = {});

RegistryCallWire registry_call(const std::string& tenant, bool admin, const std::string& name,
                               const std::string& path = {}, uint64_t pin_request = 0);
struct RegistryCallView {
  std::string tenant;
  bool admin = false;
  std::string name;
  std::string path;
  uint64_t pin_request = 0;
};
Result<RegistryCallView> read_registry_call(const RegistryCallWire& wire);

AdapterAnswerWire answer_base();
AdapterAnswerWire answer_adapter(const AdapterRecord& record);
AdapterAnswerWire answer_error(const Error& error);
// nullopt: the base model; a record: the adapter version; an Error: refused.
Result<std::optional<AdapterRecord>> read_answer(const AdapterAnswerWire& wire);

AdapterListWire list_answer(const std::vector<AdapterRecord>& records);
AdapterListWire list_error(const Error& error);
Result<std::vector<AdapterRecord>> read_list(const AdapterListWire& wire);

PinWire pin_wire(const AdapterId& id, uint64_t request_id);
RetireWire retire_wire(const std::string& tenant, const std::string& name,
                       const std::vector<uint64_t>& versions);

// A worker's reading of the registry's fetch answer: the version's files and
// their hashes as stored (checked again by the worker), or the registry's error.
Result<AdapterFiles> read_adapter_files(const AdapterFilesWire& wire);

// A request's final event that never reached a worker (cancelled while
// waiting, or refused there), for its sink.
EventWire final_event(uint64_t request_id, uint32_t attempt, const Error* error);

// A sink's answer to resume: the output tokens its client has.
ResumeWire resume_point(uint64_t request_id, uint32_t attempt, const std::vector<int32_t>& tokens);
// The tokens, or an Error for a malformed answer or one about another request.
Result<std::vector<int32_t>> read_resume_point(const ResumeWire& wire, uint64_t request_id);

}  // namespace myriad::actors
