#include "actors/service_wire.h"

#include "actors/adapter_info_wire.h"
#include "actors/common_wire.h"
#include "actors/event_wire.h"
#include "actors/request_wire.h"

namespace myriad::actors {

AcceptedWire accepted(uint64_t request_id, const std::string& model) {
  return AcceptedWire::from([&](schema::Accepted::Builder a) {
    a.setRequestId(request_id);
    a.setModel(model);
  });
}

AcceptedWire refused(const Error& error) {
  return AcceptedWire::from([&](schema::Accepted::Builder a) { write_error(error, a.initError()); });
}

Result<uint64_t> read_accepted(const AcceptedWire& wire, std::string* model) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto a = d->get();
  if (a.isError()) return read_error(a.getError());
  if (model) *model = as_string(a.getModel());
  return a.getRequestId();
}

GenerateWire generate_wire(const std::string& tenant, bool admin, const std::string& model,
                           const Request& request, const std::vector<std::pair<std::string, float>>& experts) {
  return GenerateWire::from([&](schema::Generate::Builder g) {
    g.setTenant(tenant);
    g.setAdmin(admin);
    g.setModel(model);
    write_submit(request, 0, g.initRequest());
    auto e = g.initExperts(static_cast<unsigned>(experts.size()));
    for (unsigned i = 0; i < e.size(); ++i) {
      e[i].setModel(experts[i].first);
      e[i].setWeight(experts[i].second);
    }
  });
}

RegistryCallWire registry_call(const std::string& tenant, bool admin, const std::string& name,
                               const std::string& path, uint64_t pin_request) {
  return RegistryCallWire::from([&](schema::RegistryCall::Builder c) {
    c.setTenant(tenant);
    c.setAdmin(admin);
    c.setName(name);
    c.setPath(path);
    c.setPinRequest(pin_request);
  });
}

Result<RegistryCallView> read_registry_call(const RegistryCallWire& wire) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto c = d->get();
  return RegistryCallView{as_string(c.getTenant()), c.getAdmin(), as_string(c.getName()),
                          as_string(c.getPath()), c.getPinRequest()};
}

AdapterAnswerWire answer_base() {
  return AdapterAnswerWire::from([](schema::AdapterAnswer::Builder a) { a.setBase(); });
}

AdapterAnswerWire answer_adapter(const AdapterRecord& record) {
  return AdapterAnswerWire::from(
      [&](schema::AdapterAnswer::Builder a) { write_adapter_info(record, a.initAdapter()); });
}

AdapterAnswerWire answer_error(const Error& error) {
  return AdapterAnswerWire::from(
      [&](schema::AdapterAnswer::Builder a) { write_error(error, a.initError()); });
}

Result<std::optional<AdapterRecord>> read_answer(const AdapterAnswerWire& wire) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto a = d->get();
  switch (a.which()) {
    case schema::AdapterAnswer::BASE:
      return std::optional<AdapterRecord>();
    case schema::AdapterAnswer::ADAPTER:
      return std::optional<AdapterRecord>(read_adapter_info(a.getAdapter()));
    case schema::AdapterAnswer::ERROR:
      return read_error(a.getError());
  }
  return make_error(ErrorCode::kInvalidArgument, "AdapterAnswer of an unknown kind");
}

AdapterListWire list_answer(const std::vector<AdapterRecord>& records) {
  return AdapterListWire::from([&](schema::AdapterList::Builder l) {
    auto list = l.initAdapters(uint32_t(records.size()));
    for (uint32_t i = 0; i < records.size(); ++i) write_adapter_info(records[i], list[i]);
  });
}

AdapterListWire list_error(const Error& error) {
  return AdapterListWire::from([&](schema::AdapterList::Builder l) { write_error(error, l.initError()); });
}

Result<std::vector<AdapterRecord>> read_list(const AdapterListWire& wire) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto l = d->get();
  if (l.isError()) return read_error(l.getError());
  std::vector<AdapterRecord> out;
  for (auto info : l.getAdapters()) out.push_back(read_adapter_info(info));
  return out;
}

PinWire pin_wire(const AdapterId& id, uint64_t request_id) {
  return PinWire::from([&](schema::Pin::Builder p) {
    write_adapter_id(id, p.initAdapter());
    p.setRequestId(request_id);
  });
}

RetireWire retire_wire(const std::string& tenant, const std::string& name,
                       const std::vector<uint64_t>& versions) {
  return RetireWire::from([&](schema::Retire::Builder r) {
    r.setTenant(tenant);
    r.setName(name);
    auto list = r.initVersions(uint32_t(versions.size()));
    for (uint32_t i = 0; i < versions.size(); ++i) list.set(i, versions[i]);
  });
}

EventWire final_event(uint64_t request_id, uint32_t attempt, const Error* error) {
  RequestEvent e;
  e.id = request_id;
  if (error) {
    e.kind = EventKind::kFailed;
    e.error = *error;
  } else {
    e.kind = EventKind::kFinished;
    e.reason = FinishReason::kCancelled;
  }
  return encode_event(e, attempt);
}

ResumeWire resume_point(uint64_t request_id, uint32_t attempt, const std::vector<int32_t>& tokens) {
  return ResumeWire::from([&](schema::ResumePoint::Builder out) {
    out.setRequestId(request_id);
    out.setAttempt(attempt);
    auto list = out.initTokens(static_cast<unsigned>(tokens.size()));
    for (unsigned i = 0; i < list.size(); ++i) list.set(i, tokens[i]);
  });
}

Result<std::vector<int32_t>> read_resume_point(const ResumeWire& wire, uint64_t request_id) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto in = d->get();
  if (in.getRequestId() != request_id)
    return make_error(ErrorCode::kInvalidArgument, "resume point of request " + std::to_string(in.getRequestId()) +
                                                       ", asked for " + std::to_string(request_id));
  return to_vector<int32_t>(in.getTokens());
}

Result<AdapterFiles> read_adapter_files(const AdapterFilesWire& wire) {
  auto d = wire.decode();
  if (!d) return d.error();
  auto in = d->get();
  if (in.isError()) return read_error(in.getError());
  auto f = in.getFiles();
  AdapterFiles out;
  out.record.id = read_adapter_id(f.getAdapter());
  out.record.sha256 = as_string(f.getSha256());
  out.config_sha256 = as_string(f.getConfigSha256());
  out.weights_sha256 = as_string(f.getWeightsSha256());
  out.config_json = as_string(f.getConfigJson());
  auto bytes = f.getSafetensors();
  out.safetensors.assign(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
  return out;
}

}  // namespace myriad::actors
