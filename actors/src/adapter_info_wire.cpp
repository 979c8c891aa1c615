#include "actors/adapter_info_wire.h"

#include "actors/common_wire.h"

namespace myriad::actors {

void write_adapter_info(const AdapterRecord& record, schema::api::AdapterInfo::Builder out) {
  write_adapter_id(record.id, out.initId());
  out.setBaseFingerprint(record.base_fingerprint);
  out.setRank(record.rank);
  out.setAlpha(record.alpha);
  auto targets = out.initTargetModules(static_cast<unsigned>(record.target_modules.size()));
  for (unsigned i = 0; i < targets.size(); ++i) targets.set(i, record.target_modules[i]);
  out.setSha256(record.sha256);
  out.setSizeBytes(record.size_bytes);
  out.setCreatedUnixMs(record.created_unix_ms);
}

AdapterRecord read_adapter_info(schema::api::AdapterInfo::Reader in) {
  AdapterRecord r;
  r.id = read_adapter_id(in.getId());
  r.base_fingerprint = as_string(in.getBaseFingerprint());
  r.rank = in.getRank();
  r.alpha = in.getAlpha();
  auto targets = in.getTargetModules();
  r.target_modules.reserve(targets.size());
  for (auto t : targets) r.target_modules.push_back(as_string(t));
  r.sha256 = as_string(in.getSha256());
  r.size_bytes = in.getSizeBytes();
  r.created_unix_ms = in.getCreatedUnixMs();
  return r;
}

AdapterInfoWire encode_adapter_info(const AdapterRecord& record) {
  return AdapterInfoWire::from(
      [&](schema::api::AdapterInfo::Builder out) { write_adapter_info(record, out); });
}

}  // namespace myriad::actors
