// One adapter slot of a device's LoRA pool as bytes: the layout the CUDA
// executor's slots use and the image a load copies, so that an adapter
// written into an image once (when it enters the host cache) loads with one
// copy of one contiguous span. Host code only, so it is tested without a GPU.
//
// A slot is module-major: all layers' q_proj, then all layers' k_proj, ...,
// down_proj; each (module, layer) holds A [max_rank, in] then B [out,
// max_rank] in the slot dtype, 16-byte aligned. An adapter's rank r <=
// max_rank fills A's first r rows and B's first r columns; the rest is zero.
// Module-major keeps the usual adapters (q,k,v,o or all seven) in one
// contiguous span of the slot. An adapter's image is that span (the rest of
// the slot is never read for it, its ranks there being 0), then the
// per-(layer, module) rank and scale tables the device keeps apart.
// Pure functions over values; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "runtime/dtype.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"
#include "runtime/result.h"

namespace myriad::gpu {

struct LoraSlotLayout {
  DType dtype = DType::kBF16;  // kF32 or kBF16
  int32_t max_rank = 0;
  int32_t num_layers = 0;
  int64_t in[kNumLinearModules] = {}, out[kNumLinearModules] = {};
  std::vector<size_t> a_offset, b_offset;  // bytes into the slot, [layer * kNumLinearModules + module]
  size_t slot_bytes = 0;                   // one slot's weights (a multiple of 16)
  uint64_t id = 0;                         // equal ids: equal layouts (images carry it)

  static Result<LoraSlotLayout> make(const ModelConfig& config, int32_t max_rank, DType dtype);
  size_t index(int layer, LinearModule m) const { return size_t(layer) * kNumLinearModules + size_t(m); }
  size_t element_bytes() const { return dtype_size(dtype); }
  size_t table_entries() const { return size_t(num_layers) * kNumLinearModules; }
  size_t table_bytes() const { return table_entries() * (sizeof(int32_t) + sizeof(float)); }
  // The largest image (an adapter spanning the whole slot).
  size_t max_image_bytes() const { return slot_bytes + table_bytes(); }
};

// Whether `w` fits the layout: its layer count, every rank within max_rank,
// A and B sizes matching rank and shape. The error names the adapter, layer
// and module (kResourceExhausted for a rank over max_rank, else
// kInvalidArgument).
Status check_fits(const LoraSlotLayout& layout, const LoraWeights& w);

// The bytes [begin, end) of the slot that `w`'s targeted modules occupy: what
// a load copies. Empty (0, 0) when nothing is targeted.
struct ByteSpan {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};
ByteSpan used_span(const LoraSlotLayout& layout, const LoraWeights& w);

// Where an image's tables start: after its span, 16-byte aligned.
inline size_t image_tables_offset(ByteSpan span) { return (span.size() + 15) / 16 * 16; }
// Bytes of the image of an adapter whose span is `span`.
inline size_t image_bytes(const LoraSlotLayout& layout, ByteSpan span) {
  return image_tables_offset(span) + layout.table_bytes();
}

// Writes the image of `w` (which fits): dst.size() == image_bytes(layout,
// used_span(layout, w)); dst[i] is slot byte span.begin + i, zero padding
// included, then the tables from image_tables_offset(span).
void write_slot_image(const LoraSlotLayout& layout, const LoraWeights& w, std::span<std::byte> dst);

// The rank and scale tables of an image of span `span` (layout.table_entries() each).
inline const int32_t* image_ranks(const LoraSlotLayout&, ByteSpan span, const std::byte* image) {
  return reinterpret_cast<const int32_t*>(image + image_tables_offset(span));
}
inline const float* image_scales(const LoraSlotLayout& l, ByteSpan span, const std::byte* image) {
  return reinterpret_cast<const float*>(image + image_tables_offset(span) + l.table_entries() * sizeof(int32_t));
}

}  // namespace myriad::gpu
