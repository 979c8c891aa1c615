#include "gpu/lora_slot_image.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace myriad::gpu {
namespace {

size_t align16(size_t n) { return (n + 15) / 16 * 16; }

// FNV-1a over the fields that fix the layout.
uint64_t layout_id(const LoraSlotLayout& l) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(uint64_t(l.dtype));
  mix(uint64_t(l.max_rank));
  mix(uint64_t(l.num_layers));
  for (int m = 0; m < kNumLinearModules; ++m) mix(uint64_t(l.in[m])), mix(uint64_t(l.out[m]));
  return h;
}

// Element storage of the slot dtype: float as is, bf16 as its 16 bits.
template <class E>
E to_element(float v);
template <>
float to_element<float>(float v) { return v; }
template <>
uint16_t to_element<uint16_t>(float v) { return f32_to_bf16(v); }

// One module's A rows [0, rank) and B columns [0, rank), in element type E.
template <class E>
void write_module(const LoraSlotLayout& l, int m, const LoraModuleWeights& mw, std::byte* a_dst, std::byte* b_dst) {
  E* a = reinterpret_cast<E*>(a_dst);
  for (size_t k = 0; k < mw.a.size(); ++k) a[k] = to_element<E>(mw.a[k]);
  E* b = reinterpret_cast<E*>(b_dst);
  for (int64_t o = 0; o < l.out[m]; ++o) {
    const float* src = mw.b.data() + size_t(o) * size_t(mw.rank);
    E* row = b + size_t(o) * size_t(l.max_rank);
    for (int32_t r = 0; r < mw.rank; ++r) row[r] = to_element<E>(src[r]);
  }
}

}  // namespace

Result<LoraSlotLayout> LoraSlotLayout::make(const ModelConfig& config, int32_t max_rank, DType dtype) {
  if (dtype != DType::kF32 && dtype != DType::kBF16)
    return make_error(ErrorCode::kUnsupported, std::string("LoRA slot layout: dtype ") + dtype_name(dtype));
  if (max_rank <= 0 || config.num_layers <= 0)
    return make_error(ErrorCode::kInvalidArgument, "LoRA slot layout: max_rank " + std::to_string(max_rank) +
                                                       ", layers " + std::to_string(config.num_layers));
  LoraSlotLayout l;
  l.dtype = dtype;
  l.max_rank = max_rank;
  l.num_layers = int32_t(config.num_layers);
  for (int m = 0; m < kNumLinearModules; ++m) {
    const auto [out, in] = linear_module_shape(config, LinearModule(m));
    l.in[m] = in;
    l.out[m] = out;
  }
  l.a_offset.resize(l.table_entries());
  l.b_offset.resize(l.table_entries());
  const size_t e = l.element_bytes();
  size_t off = 0;
  for (int m = 0; m < kNumLinearModules; ++m)  // module-major
    for (int layer = 0; layer < l.num_layers; ++layer) {
      const size_t i = l.index(layer, LinearModule(m));
      l.a_offset[i] = off;
      off = align16(off + size_t(max_rank) * size_t(l.in[m]) * e);
      l.b_offset[i] = off;
      off = align16(off + size_t(l.out[m]) * size_t(max_rank) * e);
    }
  l.slot_bytes = off;
  l.id = layout_id(l);
  return l;
}

Status check_fits(const LoraSlotLayout& l, const LoraWeights& w) {
  if (w.num_layers != l.num_layers || w.modules.size() != l.table_entries())
    return make_error(ErrorCode::kInvalidArgument, "adapter " + w.name + ": " + std::to_string(w.num_layers) +
                                                       " layers, base model has " + std::to_string(l.num_layers));
  for (int layer = 0; layer < l.num_layers; ++layer)
    for (int m = 0; m < kNumLinearModules; ++m) {
      const LoraModuleWeights& mw = w.at(layer, LinearModule(m));
      const std::string where = "adapter " + w.name + ": layer " + std::to_string(layer) + " " +
                                linear_module_name(LinearModule(m));
      if (mw.rank < 0 || mw.rank > l.max_rank)
        return make_error(ErrorCode::kResourceExhausted, where + ": rank " + std::to_string(mw.rank) +
                                                             " exceeds the slots' max rank " +
                                                             std::to_string(l.max_rank));
      if (mw.rank > 0 && (mw.a.size() != size_t(mw.rank) * size_t(l.in[m]) ||
                          mw.b.size() != size_t(l.out[m]) * size_t(mw.rank)))
        return make_error(ErrorCode::kInvalidArgument, where + " A/B sizes do not match rank and shape");
    }
  return ok_status();
}

ByteSpan used_span(const LoraSlotLayout& l, const LoraWeights& w) {
  ByteSpan s{l.slot_bytes, 0};
  const size_t e = l.element_bytes();
  for (int layer = 0; layer < l.num_layers; ++layer)
    for (int m = 0; m < kNumLinearModules; ++m) {
      if (w.at(layer, LinearModule(m)).rank == 0) continue;
      const size_t i = l.index(layer, LinearModule(m));
      s.begin = std::min(s.begin, l.a_offset[i]);
      s.end = std::max(s.end, l.b_offset[i] + size_t(l.out[m]) * size_t(l.max_rank) * e);
    }
  return s.end == 0 ? ByteSpan{} : s;
}

void write_slot_image(const LoraSlotLayout& l, const LoraWeights& w, std::span<std::byte> dst) {
  const ByteSpan span = used_span(l, w);
  MYRIAD_CHECK(dst.size() == image_bytes(l, span), "write_slot_image: destination of the wrong size");
  std::fill(dst.begin(), dst.begin() + ptrdiff_t(span.size()), std::byte{0});
  const auto at = [&](size_t slot_byte) { return dst.data() + (slot_byte - span.begin); };
  for (int layer = 0; layer < l.num_layers; ++layer)
    for (int m = 0; m < kNumLinearModules; ++m) {
      const LoraModuleWeights& mw = w.at(layer, LinearModule(m));
      if (mw.rank == 0) continue;
      const size_t i = l.index(layer, LinearModule(m));
      if (l.dtype == DType::kF32)
        write_module<float>(l, m, mw, at(l.a_offset[i]), at(l.b_offset[i]));
      else
        write_module<uint16_t>(l, m, mw, at(l.a_offset[i]), at(l.b_offset[i]));
    }
  const size_t tables = image_tables_offset(span);
  std::fill(dst.begin() + ptrdiff_t(span.size()), dst.begin() + ptrdiff_t(tables), std::byte{0});
  auto* ranks = reinterpret_cast<int32_t*>(dst.data() + tables);
  auto* scales = reinterpret_cast<float*>(dst.data() + tables + l.table_entries() * sizeof(int32_t));
  for (size_t i = 0; i < l.table_entries(); ++i) {
    ranks[i] = w.modules[i].rank;
    scales[i] = w.modules[i].scale;
  }
}

}  // namespace myriad::gpu
