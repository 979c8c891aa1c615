#include "actors/registry_actor.h"

#include "actors/adapter_actor.h"
#include "actors/adapter_info_wire.h"
#include "actors/common_wire.h"
#include "actors/service_wire.h"
#include "runtime/log.h"

namespace myriad::actors {

namespace {

using Self = registry_actor::stateful_pointer<RegistryState>;

adapter_actor adapter_for(Self self, const std::string& tenant, const std::string& name) {
  auto key = std::make_pair(tenant, name);
  auto it = self->state.adapters.find(key);
  if (it != self->state.adapters.end()) return it->second;
  auto actor = self->spawn<caf::linked>(adapter_behavior, tenant, name);  // they end with the registry
  self->state.adapters.emplace(key, actor);
  return actor;
}

Error no_such_model(const std::string& model) {
  return make_error(ErrorCode::kNotFound, "model '" + model + "' does not exist");
}

// The caller's view of a name: its own tenant's, or any for an admin;
// another tenant's is notFound, like a missing one.
Result<AdapterName> name_for(const RegistryCallView& call) {
  auto n = parse_adapter_name_for(call.name, call.tenant, call.admin);
  if (!n && n.error().code == ErrorCode::kNotFound) return no_such_model(call.name);
  return n;
}

}  // namespace

registry_actor::behavior_type registry_behavior(Self self, std::shared_ptr<AdapterStore> store,
                                                std::string base_model) {
  self->state.store = std::move(store);
  self->state.base_model = std::move(base_model);
  if (auto all = self->state.store->list(""); all.ok()) {
    for (const AdapterRecord& r : all.value()) {
      self->state.index.add(r);
      (void)adapter_for(self, r.id.tenant, r.id.name);
    }
  } else {
    log_error("registry: the adapter catalog could not be read: {}", all.error().to_string());
  }
  return {
      [self](resolve_atom, const RegistryCallWire& wire) -> caf::typed_response_promise<AdapterAnswerWire> {
        auto rp = self->make_response_promise<AdapterAnswerWire>();
        auto call = read_registry_call(wire);
        if (!call) {
          rp.deliver(answer_error(call.error()));
          return rp;
        }
        if (call->name == self->state.base_model) {
          rp.deliver(answer_base());
          return rp;
        }
        auto name = name_for(*call);
        if (!name) {
          rp.deliver(answer_error(no_such_model(call->name)));
          return rp;
        }
        std::optional<AdapterRecord> record = self->state.index.resolve(name.value());
        if (!record) {
          rp.deliver(answer_error(no_such_model(call->name)));
          return rp;
        }
        if (call->pin_request == 0) {
          rp.deliver(answer_adapter(record.value()));
          return rp;
        }
        // Pinning goes through the adapter actor, which refuses a version being deleted.
        self->request(adapter_for(self, record->id.tenant, record->id.name), caf::infinite, pin_atom::value,
                      encode_adapter_info(record.value()), pin_wire(record->id, call->pin_request))
            .then([rp](const AdapterAnswerWire& answer) mutable { rp.deliver(answer); },
                  [rp](caf::error&) mutable {
                    rp.deliver(
                        answer_error(make_error(ErrorCode::kInternal, "the adapter actor did not answer")));
                  });
        return rp;
      },
      [self](publish_atom, const RegistryCallWire& wire) -> AdapterAnswerWire {
        auto d = wire.decode();
        if (!d) return answer_error(d.error());
        auto call = read_registry_call(wire);
        auto name = name_for(call.value());
        if (!name) return answer_error(make_error(ErrorCode::kInvalidArgument, name.error().message));
        auto c = d->get();
        Result<AdapterRecord> record =
            call->path.empty()
                ? self->state.store->publish(
                      name.value(), std::string_view(c.getConfigJson().cStr(), c.getConfigJson().size()),
                      std::string_view(reinterpret_cast<const char*>(c.getSafetensors().begin()),
                                       c.getSafetensors().size()))
                : self->state.store->publish_folder(name.value(), call->path);
        if (!record) return answer_error(record.error());
        self->state.index.add(record.value());
        (void)adapter_for(self, record->id.tenant, record->id.name);
        return answer_adapter(record.value());
      },
      [self](remove_atom, const RegistryCallWire& wire) -> caf::typed_response_promise<AdapterListWire> {
        auto rp = self->make_response_promise<AdapterListWire>();
        auto call = read_registry_call(wire);
        if (!call) {
          rp.deliver(list_error(call.error()));
          return rp;
        }
        auto name = name_for(*call);
        if (!name) {
          rp.deliver(list_error(name.error()));
          return rp;
        }
        std::vector<AdapterRecord> doomed;
        if (name->version != 0) {
          if (auto r = self->state.index.resolve(name.value())) doomed.push_back(*r);
        } else {
          doomed = self->state.index.versions(name->tenant, name->name);
        }
        if (doomed.empty()) {
          rp.deliver(list_error(no_such_model(call->name)));
          return rp;
        }
        std::vector<uint64_t> versions;
        for (const AdapterRecord& r : doomed) versions.push_back(r.id.version);
        // Running requests that pinned a version finish on it first.
        self->request(adapter_for(self, name->tenant, name->name), caf::infinite, retire_atom::value,
                      retire_wire(name->tenant, name->name, versions))
            .then(
                [self, rp, doomed](bool) mutable {
                  for (const AdapterRecord& r : doomed) {
                    if (Status st = self->state.store->remove(r.id); !st.ok()) {
                      rp.deliver(list_error(st.error()));
                      return;
                    }
                    self->state.index.remove(r.id);
                  }
                  rp.deliver(list_answer(doomed));
                },
                [rp](caf::error&) mutable {
                  rp.deliver(
                      list_error(make_error(ErrorCode::kInternal, "the adapter actor did not answer")));
                });
        return rp;
      },
      [self](list_atom, const RegistryCallWire& wire) -> AdapterListWire {
        auto call = read_registry_call(wire);
        if (!call) return list_error(call.error());
        return list_answer(self->state.index.list(call->admin ? std::string() : call->tenant));
      },
      [self](unpin_atom, const PinWire& pin) {
        auto p = pin.decode();
        if (!p) return;
        const AdapterId id = read_adapter_id(p->get().getAdapter());
        auto it = self->state.adapters.find({id.tenant, id.name});
        if (it != self->state.adapters.end()) self->send(it->second, unpin_atom::value, pin);
      },
      [self](residency_atom, const ResidencyWire& report) {
        auto r = report.decode();
        if (!r) return;
        const AdapterId id = read_adapter_id(r->get().getAdapter());
        self->send(adapter_for(self, id.tenant, id.name), residency_atom::value, report);
      },
      [self](fetch_atom, const RegistryCallWire& wire) -> AdapterFilesWire {
        auto call = read_registry_call(wire);
        Result<AdapterId> id = call ? parse_adapter_id(call->name) : Result<AdapterId>(call.error());
        Result<AdapterFiles> files = id ? self->state.store->read_files(id.value()) : Result<AdapterFiles>(id.error());
        return AdapterFilesWire::from([&](schema::AdapterFiles::Builder out) {
          if (!files) {
            write_error(files.error(), out.initError());
            return;
          }
          auto f = out.initFiles();
          write_adapter_id(files->record.id, f.initAdapter());
          f.setSha256(files->record.sha256);
          f.setConfigSha256(files->config_sha256);
          f.setWeightsSha256(files->weights_sha256);
          f.setConfigJson(files->config_json);
          f.setSafetensors(kj::arrayPtr(reinterpret_cast<const kj::byte*>(files->safetensors.data()),
                                        files->safetensors.size()));
        });
      },
      [self](status_atom, const RegistryCallWire& wire) -> caf::typed_response_promise<AdapterStatusWire> {
        auto rp = self->make_response_promise<AdapterStatusWire>();
        auto call = read_registry_call(wire);
        auto name = call ? name_for(*call) : Result<AdapterName>(call.error());
        auto it = name ? self->state.adapters.find({name->tenant, name->name}) : self->state.adapters.end();
        if (it == self->state.adapters.end()) {
          rp.deliver(AdapterStatusWire::from([](auto) {}));
          return rp;
        }
        self->request(it->second, caf::infinite, status_atom::value)
            .then([rp](const AdapterStatusWire& s) mutable { rp.deliver(s); },
                  [rp](caf::error&) mutable { rp.deliver(AdapterStatusWire::from([](auto) {})); });
        return rp;
      },
  };
}

}  // namespace myriad::actors
