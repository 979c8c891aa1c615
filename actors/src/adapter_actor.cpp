#include "actors/adapter_actor.h"

#include <algorithm>

#include "actors/common_wire.h"
#include "actors/service_wire.h"

namespace myriad::actors {

namespace {

using Self = adapter_actor::stateful_pointer<AdapterActorState>;

bool unpinned(const AdapterActorState& s, const std::vector<uint64_t>& versions) {
  return std::all_of(versions.begin(), versions.end(), [&](uint64_t v) {
    auto it = s.versions.find(v);
    return it == s.versions.end() || it->second.pins.empty();
  });
}

// Answers the retires whose versions no request pins any more; the versions
// are forgotten (the registry deletes them from the store next).
void settle_retires(Self self) {
  auto& retires = self->state.retires;
  for (size_t i = 0; i < retires.size();) {
    if (!unpinned(self->state, retires[i].versions)) {
      ++i;
      continue;
    }
    // Retired versions stay known (and refused): a pin the registry resolved
    // just before its store delete may still arrive.
    for (uint64_t v : retires[i].versions) {
      auto& version = self->state.versions[v];
      version.retired = true;
      version.where.clear();
    }
    retires[i].promise.deliver(true);
    retires.erase(retires.begin() + std::ptrdiff_t(i));
  }
}

std::string not_found(const AdapterActorState& s, uint64_t version) {
  return "model '" + s.tenant + "/" + s.name + "@" + std::to_string(version) + "' does not exist";
}

}  // namespace

adapter_actor::behavior_type adapter_behavior(Self self, std::string tenant, std::string name) {
  self->state.tenant = std::move(tenant);
  self->state.name = std::move(name);
  return {
      [self](pin_atom, const AdapterInfoWire& info, const PinWire& pin) -> AdapterAnswerWire {
        auto p = pin.decode();
        if (!p) return answer_error(p.error());
        const uint64_t version = p->get().getAdapter().getVersion();
        auto& v = self->state.versions[version];
        if (v.retiring)
          return answer_error(make_error(ErrorCode::kNotFound, not_found(self->state, version)));
        v.pins.insert(p->get().getRequestId());
        auto d = info.decode();
        if (!d) return answer_error(d.error());
        return AdapterAnswerWire::from([&](schema::AdapterAnswer::Builder a) { a.setAdapter(d->get()); });
      },
      [self](unpin_atom, const PinWire& pin) {
        auto p = pin.decode();
        if (!p) return;
        auto it = self->state.versions.find(p->get().getAdapter().getVersion());
        if (it == self->state.versions.end()) return;
        it->second.pins.erase(p->get().getRequestId());
        settle_retires(self);
      },
      [self](retire_atom, const RetireWire& wire) -> caf::typed_response_promise<bool> {
        auto promise = self->make_response_promise<bool>();
        auto r = wire.decode();
        if (!r) {
          promise.deliver(false);
          return promise;
        }
        std::vector<uint64_t> versions;
        for (uint64_t v : r->get().getVersions()) {
          versions.push_back(v);
          self->state.versions[v].retiring = true;
        }
        self->state.retires.push_back({std::move(versions), promise});
        settle_retires(self);
        return promise;
      },
      [self](residency_atom, const ResidencyWire& wire) {
        auto r = wire.decode();
        if (!r) return;
        auto report = r->get();
        auto& v = self->state.versions[report.getAdapter().getVersion()];
        const std::string worker = as_string(report.getWorker());
        auto seq = v.seq.find(worker);
        if (seq != v.seq.end() && seq->second >= report.getSeq()) return;  // stale
        v.seq[worker] = report.getSeq();
        v.where[worker] = wire;
      },
      [self](status_atom) -> AdapterStatusWire {
        return AdapterStatusWire::from([&](schema::AdapterStatus::Builder s) {
          s.setTenant(self->state.tenant);
          s.setName(self->state.name);
          uint32_t shown = 0;
          for (const auto& [version, v] : self->state.versions) shown += !v.retired;
          auto list = s.initVersions(shown);
          uint32_t i = 0;
          for (const auto& [version, v] : self->state.versions) {
            if (v.retired) continue;
            auto out = list[i++];
            out.setVersion(version);
            out.setPins(uint32_t(v.pins.size()));
            out.setDeleting(v.retiring);
            auto where = out.initResidency(uint32_t(v.where.size()));
            uint32_t j = 0;
            for (const auto& [worker, report] : v.where) {
              auto d = report.decode();  // checked when it arrived
              if (d) where.setWithCaveats(j, d->get());
              ++j;
            }
          }
        });
      },
  };
}

}  // namespace myriad::actors
