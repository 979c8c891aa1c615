#include "actors/typed_wire.h"

#include <capnp/schema.h>

#include <cstdio>

namespace myriad::actors::detail {
namespace {

void check_value(const capnp::DynamicValue::Reader& value);

void check_struct(const capnp::DynamicStruct::Reader& s) {
  for (auto field : s.getSchema().getNonUnionFields()) check_value(s.get(field));
  // Only the active member of a union is meaningful; an unknown one (a newer
  // sender) is skipped here and refused by the converter that reads it.
  KJ_IF_MAYBE (field, s.which()) {
    check_value(s.get(*field));
  }
}

void check_value(const capnp::DynamicValue::Reader& value) {
  switch (value.getType()) {
    case capnp::DynamicValue::STRUCT:
      check_struct(value.as<capnp::DynamicStruct>());
      break;
    case capnp::DynamicValue::LIST: {
      auto list = value.as<capnp::DynamicList>();
      switch (list.getSchema().whichElementType()) {
        // Reading the list pointer checked its bounds; scalar elements hold no pointers.
        case capnp::schema::Type::STRUCT:
        case capnp::schema::Type::LIST:
        case capnp::schema::Type::TEXT:
        case capnp::schema::Type::DATA:
        case capnp::schema::Type::INTERFACE:
        case capnp::schema::Type::ANY_POINTER:
          for (auto element : list) check_value(element);
          break;
        default:
          break;
      }
      break;
    }
    default:  // scalars, enums; text and data were checked (bounds, NUL) by get()
      break;
  }
}

}  // namespace

void check_every_pointer(capnp::DynamicStruct::Reader root) { check_struct(root); }

std::string kind_mismatch(uint64_t expected, const char* expected_name, uint64_t got) {
  char buf[160];
  if (got == 0)
    std::snprintf(buf, sizeof buf, "expected a %s message (kind 0x%016llx), got an empty TypedWire",
                  expected_name, static_cast<unsigned long long>(expected));
  else
    std::snprintf(buf, sizeof buf, "expected a %s message (kind 0x%016llx), got kind 0x%016llx",
                  expected_name, static_cast<unsigned long long>(expected),
                  static_cast<unsigned long long>(got));
  return buf;
}

}  // namespace myriad::actors::detail
