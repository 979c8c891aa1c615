// TypedWire<T>: one Cap'n Proto message of struct type T as the bytes CAF
// carries between actors (in-process and across hosts), tagged with T's
// schema type id so that one kind can never be read as another: a
// SubmitRequest's bytes decoded as a CancelRequest are an Error, not a
// CancelRequest full of garbage (Cap'n Proto itself is not self-describing).
//
// Two checks guard a message: CAF's (each TypedWire<T> is its own registered
// message type, message_types.h, so a typed actor refuses the wrong one
// before any code runs) and decode()'s (the tag, then every pointer of the
// message against T's schema). decode() never throws: Cap'n Proto reports
// malformed input by kj::Exception, caught at this one edge
// (run_capnp_guarded, capnp_bytes.cpp); a reader of a decoded message then
// never meets a throw, since every pointer in it has been checked.
//
// A value type (copyable, default-constructible as CAF requires; the empty
// value decodes to an Error). Not thread-safe to mutate, safe to share const.
#pragma once

#include <capnp/dynamic.h>
#include <capnp/message.h>

#include <caf/meta/type_name.hpp>
#include <cstdint>
#include <string>
#include <utility>

#include "actors/capnp_bytes.h"
#include "runtime/result.h"

namespace myriad::actors {

namespace detail {
// Reads every field of `root` (recursively, as its schema says) so that a
// malformed pointer anywhere throws here, under the guard, and not later.
void check_every_pointer(capnp::DynamicStruct::Reader root);
// "expected a SubmitRequest message (kind 0x...), got kind 0x..."
std::string kind_mismatch(uint64_t expected, const char* expected_name, uint64_t got);
}  // namespace detail

// A decoded message: owns its aligned bytes and the reader over them; get()
// is valid while this lives (moving it keeps get() valid: the memory is on
// the heap).
template <class T>
class Decoded {
 public:
  typename T::Reader get() const { return root_; }

  Decoded(WireReader reader, typename T::Reader root) : reader_(std::move(reader)), root_(root) {}
  Decoded(Decoded&&) = default;
  Decoded& operator=(Decoded&&) = default;

 private:
  WireReader reader_;
  typename T::Reader root_;
};

template <class T>
class TypedWire {
 public:
  static constexpr uint64_t kKind = capnp::typeId<T>();

  TypedWire() = default;

  // The message's root must be a T (from() guarantees it; encode trusts the caller).
  static TypedWire encode(capnp::MessageBuilder& message) { return TypedWire(kKind, to_wire(message)); }

  // Builds a T with fill(typename T::Builder) and encodes it.
  template <class Fill>
  static TypedWire from(Fill&& fill) {
    capnp::MallocMessageBuilder message;
    fill(message.initRoot<T>());
    return encode(message);
  }

  // Bytes and tag exactly as they arrived, unchecked: decode() checks them.
  static TypedWire adopt(uint64_t kind, WireBytes bytes) { return TypedWire(kind, std::move(bytes)); }

  // The message, or kInvalidArgument: another kind, an empty value, bytes
  // that are not a whole message, or a pointer that does not fit T's schema.
  Result<Decoded<T>> decode() const {
    if (kind_ != kKind)
      return make_error(ErrorCode::kInvalidArgument, detail::kind_mismatch(kKind, kind_name(), kind_));
    auto reader = WireReader::parse(bytes_);
    if (!reader) return reader.error();
    typename T::Reader root;
    const std::string what = std::string("malformed ") + kind_name() + " message";
    MYRIAD_TRY(run_capnp_guarded(what.c_str(), [&]() {
      root = reader->template root<T>();
      detail::check_every_pointer(capnp::toDynamic(root));
    }));
    return Decoded<T>(std::move(reader).value(), root);
  }

  uint64_t kind() const { return kind_; }
  const WireBytes& bytes() const { return bytes_; }
  // T's name in its schema, e.g. "SubmitRequest".
  static const char* kind_name() { return capnp::Schema::from<T>().getShortDisplayName().cStr(); }

  bool operator==(const TypedWire&) const = default;

  // CAF serialization (CAF 0.17 inspect): the tag, then the bytes.
  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, TypedWire& x) {
    return f(caf::meta::type_name("myriad.TypedWire"), x.kind_, x.bytes_);
  }

 private:
  TypedWire(uint64_t kind, WireBytes bytes) : kind_(kind), bytes_(std::move(bytes)) {}

  uint64_t kind_ = 0;  // capnp::typeId<T>() when built here; 0 when empty
  WireBytes bytes_;    // one flat Cap'n Proto message (segment table + segments)
};

}  // namespace myriad::actors
