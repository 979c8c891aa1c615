// runtime AdapterRecord <-> schema api::AdapterInfo (api.capnp): what the
// adapter API and the registry actor answer about a published version.
// One-to-one both ways.
#pragma once

#include "actors/messages.h"
#include "runtime/adapter_store.h"

namespace myriad::actors {

void write_adapter_info(const AdapterRecord& record, schema::api::AdapterInfo::Builder out);
AdapterRecord read_adapter_info(schema::api::AdapterInfo::Reader in);

AdapterInfoWire encode_adapter_info(const AdapterRecord& record);

}  // namespace myriad::actors
