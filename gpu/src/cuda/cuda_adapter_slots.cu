// CudaExecutor's adapter slots: stage_adapter writes an adapter's slot image
// into pinned memory once (as it enters the host cache); a load copies the
// image's span on the upload stream (an unstaged adapter is first written
// into the staging buffer), then a host callback reports it; clone and
// unload.
#include <cuda_runtime.h>

#include <cstring>
#include <memory>

#include "cuda_executor_impl.cuh"

namespace myriad::gpu::cuda {

namespace {
// Runs on a CUDA callback thread once the upload stream reaches it: it may
// not call CUDA, only report.
void CUDART_CB report_load(void* user) {
  std::unique_ptr<LoadDone> done(static_cast<LoadDone*>(user));
  (*done)(ok_status());
}

// An adapter's slot image in pinned memory (stage_adapter): what a load
// copies as is.
class CudaStagedAdapter final : public StagedAdapter {
 public:
  CudaStagedAdapter(PinnedBuffer image, uint64_t layout_id, ByteSpan span)
      : image_(std::move(image)), layout_id_(layout_id), span_(span) {}
  size_t bytes() const override { return image_.bytes(); }
  const std::byte* data() const { return static_cast<const std::byte*>(image_.data()); }
  uint64_t layout_id() const { return layout_id_; }
  ByteSpan span() const { return span_; }

 private:
  PinnedBuffer image_;
  uint64_t layout_id_;
  ByteSpan span_;
};
// Whether `w` can be written into a slot image of `layout`: float32 A/B at
// hand (not dropped by staging for another layout) and fitting the slots.
Status check_writable(const LoraSlotLayout& layout, const LoraWeights& w) {
  if (!w.has_host_weights())
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter " + w.name + " has no float32 A/B to load (staged for another slot layout?)");
  return check_fits(layout, w);
}
}  // namespace

Result<std::shared_ptr<const LoraWeights>> CudaExecutor::stage_adapter(std::shared_ptr<const LoraWeights> w) const {
  const Impl& m = *impl_;
  if (!w) return make_error(ErrorCode::kInvalidArgument, "no adapter weights");
  if (m.slots == 0) return w;  // nowhere to load it: nothing to stage for
  if (auto* s = dynamic_cast<const CudaStagedAdapter*>(w->staged.get()); s && s->layout_id() == m.lora_layout.id)
    return w;
  MYRIAD_TRY(check_writable(m.lora_layout, *w));
  const ByteSpan span = used_span(m.lora_layout, *w);
  const size_t bytes = image_bytes(m.lora_layout, span);
  auto image = PinnedBuffer::alloc(bytes);
  if (!image.ok()) return image.error();
  write_slot_image(m.lora_layout, *w, std::span<std::byte>(static_cast<std::byte*>(image.value().data()), bytes));
  return staged_lora(*w, std::make_shared<CudaStagedAdapter>(std::move(image.value()), m.lora_layout.id, span));
}

Status CudaExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> w, LoadDone done) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots)
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter slot " + std::to_string(slot) + " outside [0, " + std::to_string(m.slots) + ")");
  if (m.slot_state[size_t(slot)] != Impl::SlotState::kEmpty)
    return make_error(ErrorCode::kInvalidArgument, "adapter slot " + std::to_string(slot) + " is busy");
  if (!w) return make_error(ErrorCode::kInvalidArgument, "no adapter weights");
  const LoraSlotLayout& layout = m.lora_layout;
  // The image to copy from: the staged one, else this adapter written into
  // the staging buffer now (which may still feed the previous such upload).
  const auto* staged = dynamic_cast<const CudaStagedAdapter*>(w->staged.get());
  if (staged && staged->layout_id() != layout.id) staged = nullptr;
  const std::byte* image = nullptr;
  ByteSpan span;
  if (staged) {
    image = staged->data();
    span = staged->span();
  } else {
    MYRIAD_TRY(check_writable(layout, *w));
    if (m.staging_used) MYRIAD_TRY(m.staging_event.synchronize());
    auto* st = static_cast<std::byte*>(m.staging.data());
    span = used_span(layout, *w);
    write_slot_image(layout, *w, std::span<std::byte>(st, image_bytes(layout, span)));
    image = st;
  }
  cudaStream_t us = m.upload.get();
  const size_t L7 = layout.table_entries();
  char* slot_base = static_cast<char*>(m.lora_pool.data()) + size_t(slot) * layout.slot_bytes;
  const auto enqueue = [&]() -> Status {
    MYRIAD_TRY(m.compute_mark.record(m.compute.get()));
    MYRIAD_TRY(m.compute_mark.wait_in(us));
    // One copy of the adapter's span of the slot image, then its tables;
    // ranks last: until they land, the slot contributes nothing.
    if (span.size() > 0) MYRIAD_TRY(copy_h2d(slot_base + span.begin, image, span.size(), us));
    MYRIAD_TRY(copy_h2d(m.lora_scales.as<float>() + size_t(slot) * L7, image_scales(layout, span, image), L7 * 4, us));
    MYRIAD_TRY(copy_h2d(m.lora_ranks.as<int32_t>() + size_t(slot) * L7, image_ranks(layout, span, image), L7 * 4, us));
    MYRIAD_TRY(m.slot_event[size_t(slot)].record(us));
    if (!staged) MYRIAD_TRY(m.staging_event.record(us));
    return ok_status();
  };
  if (Status st = enqueue(); !st.ok()) {
    // Copies already queued still read the image: let them finish before
    // the caller may free it (or the next load rewrites the staging buffer).
    (void)cudaStreamSynchronize(us);
    return st;
  }
  if (staged)
    m.slot_source[size_t(slot)] = w->staged;  // alive until the copy lands
  else
    m.staging_used = true;
  size_t bytes = 0;
  for (size_t i = 0; i < L7; ++i) {
    const int mod = int(i % kNumLinearModules);
    bytes += size_t(w->modules[i].rank) * size_t(layout.in[mod] + layout.out[mod]) * layout.element_bytes();
  }
  m.slot_state[size_t(slot)] = Impl::SlotState::kLoading;
  m.slot_bytes[size_t(slot)] = bytes;
  if (done) {
    auto* user = new LoadDone(std::move(done));
    if (cudaLaunchHostFunc(us, report_load, user) != cudaSuccess) {
      // Report it from here once the copies are done, rather than never.
      (void)cudaGetLastError();
      std::unique_ptr<LoadDone> d(user);
      MYRIAD_TRY(m.slot_event[size_t(slot)].synchronize());
      (*d)(ok_status());
    }
  }
  return ok_status();
}

Status CudaExecutor::clone_adapter_slot(int32_t src, int32_t dst) {
  Impl& m = *impl_;
  if (src < 0 || src >= m.slots || dst < 0 || dst >= m.slots || src == dst || !adapter_ready(src) ||
      m.slot_state[size_t(dst)] != Impl::SlotState::kEmpty)
    return make_error(ErrorCode::kInvalidArgument,
                      "clone_adapter_slot: bad slots " + std::to_string(src) + " -> " + std::to_string(dst));
  cudaStream_t us = m.upload.get();
  const size_t L7 = m.lora_layout.table_entries(), sb = m.lora_layout.slot_bytes;
  char* pool = static_cast<char*>(m.lora_pool.data());
  MYRIAD_TRY(copy_d2d(pool + size_t(dst) * sb, pool + size_t(src) * sb, sb, us));
  MYRIAD_TRY(copy_d2d(m.lora_scales.as<float>() + dst * L7, m.lora_scales.as<float>() + src * L7, L7 * 4, us));
  MYRIAD_TRY(copy_d2d(m.lora_ranks.as<int32_t>() + dst * L7, m.lora_ranks.as<int32_t>() + src * L7, L7 * 4, us));
  MYRIAD_TRY(m.slot_event[size_t(dst)].record(us));
  m.slot_state[size_t(dst)] = Impl::SlotState::kLoading;
  m.slot_bytes[size_t(dst)] = m.slot_bytes[size_t(src)];
  return ok_status();
}

bool CudaExecutor::adapter_ready(int32_t slot) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots) return false;
  auto& st = m.slot_state[size_t(slot)];
  if (st == Impl::SlotState::kLoading && m.slot_event[size_t(slot)].done()) {
    st = Impl::SlotState::kReady;
    m.slot_source[size_t(slot)].reset();  // the copy has landed
  }
  return st == Impl::SlotState::kReady;
}

void CudaExecutor::unload_adapter(int32_t slot) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots) return;
  if (m.slot_state[size_t(slot)] == Impl::SlotState::kLoading) (void)m.slot_event[size_t(slot)].synchronize();
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  // On the compute stream: steps already queued may still read the slot.
  (void)fill_bytes(m.lora_ranks.as<int32_t>() + size_t(slot) * L7, 0, L7 * 4, m.compute.get());
  m.slot_state[size_t(slot)] = Impl::SlotState::kEmpty;
  m.slot_bytes[size_t(slot)] = 0;
  m.slot_source[size_t(slot)].reset();
}

}  // namespace myriad::gpu::cuda
