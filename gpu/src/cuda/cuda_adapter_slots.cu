// CudaExecutor's adapter slots: a load is converted into the pinned staging
// buffer and copied on the upload stream, then reported by a host callback;
// clone and unload.
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
}  // namespace

Status CudaExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> w, LoadDone done) {
  Impl& m = *impl_;
  if (slot < 0 || slot >= m.slots)
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter slot " + std::to_string(slot) + " outside [0, " + std::to_string(m.slots) + ")");
  if (m.slot_state[size_t(slot)] != Impl::SlotState::kEmpty)
    return make_error(ErrorCode::kInvalidArgument, "adapter slot " + std::to_string(slot) + " is busy");
  if (!w) return make_error(ErrorCode::kInvalidArgument, "no adapter weights");
  if (w->num_layers != m.L || w->modules.size() != size_t(m.L) * kNumLinearModules)
    return make_error(ErrorCode::kInvalidArgument, "adapter " + w->name + ": " + std::to_string(w->num_layers) +
                                                       " layers, base model has " + std::to_string(m.L));
  for (int64_t li = 0; li < m.L; ++li)
    for (int mi = 0; mi < kNumLinearModules; ++mi) {
      const LoraModuleWeights& mw = w->at(int(li), LinearModule(mi));
      const LoraDev& d = m.lora[size_t(li) * kNumLinearModules + mi];
      if (mw.rank < 0 || mw.rank > m.R)
        return make_error(ErrorCode::kResourceExhausted,
                          "adapter " + w->name + ": rank " + std::to_string(mw.rank) + " of layer " +
                              std::to_string(li) + " " + linear_module_name(LinearModule(mi)) +
                              " exceeds the slots' max rank " + std::to_string(m.R));
      if (mw.rank > 0 && (mw.a.size() != size_t(mw.rank) * d.in || mw.b.size() != size_t(d.out) * mw.rank))
        return make_error(ErrorCode::kInvalidArgument, "adapter " + w->name + ": layer " + std::to_string(li) + " " +
                                                           linear_module_name(LinearModule(mi)) +
                                                           " A/B sizes do not match rank and shape");
    }
  // The staging buffer may still feed the previous upload.
  if (m.staging_used) MYRIAD_TRY(m.staging_event.synchronize());
  char* st = static_cast<char*>(m.staging.data());
  size_t off = 0, bytes = 0;
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  auto put = [&](float f) {
    if (m.dt == DType::kF32) {
      std::memcpy(st + off, &f, 4);
    } else {
      const uint16_t h = f32_to_bf16(f);
      std::memcpy(st + off, &h, 2);
    }
    off += m.esz;
  };
  cudaStream_t us = m.upload.get();
  MYRIAD_TRY(m.compute_mark.record(m.compute.get()));
  MYRIAD_TRY(m.compute_mark.wait_in(us));
  for (size_t idx = 0; idx < L7; ++idx) {
    const LoraModuleWeights& mw = w->modules[idx];
    if (mw.rank == 0) continue;
    const LoraDev& d = m.lora[idx];
    const size_t a_off = off;
    for (float f : mw.a) put(f);
    const size_t b_off = off;
    for (int64_t o = 0; o < d.out; ++o)
      for (int32_t r = 0; r < m.R; ++r) put(r < mw.rank ? mw.b[size_t(o) * mw.rank + r] : 0.0f);
    MYRIAD_TRY(copy_h2d(static_cast<char*>(d.a.data()) + size_t(slot) * m.R * d.in * m.esz, st + a_off, b_off - a_off, us));
    MYRIAD_TRY(copy_h2d(static_cast<char*>(d.b.data()) + size_t(slot) * d.out * m.R * m.esz, st + b_off, off - b_off, us));
    bytes += size_t(mw.rank) * (d.in + d.out) * m.esz;
  }
  off = (off + 15) / 16 * 16;
  auto* ranks = reinterpret_cast<int32_t*>(st + off);
  auto* scales = reinterpret_cast<float*>(st + off + L7 * 4);
  for (size_t idx = 0; idx < L7; ++idx) {
    ranks[idx] = w->modules[idx].rank;
    scales[idx] = w->modules[idx].scale;
  }
  // Ranks last: until they land, the slot contributes nothing.
  MYRIAD_TRY(copy_h2d(m.lora_scales.as<float>() + size_t(slot) * L7, scales, L7 * 4, us));
  MYRIAD_TRY(copy_h2d(m.lora_ranks.as<int32_t>() + size_t(slot) * L7, ranks, L7 * 4, us));
  MYRIAD_TRY(m.slot_event[size_t(slot)].record(us));
  MYRIAD_TRY(m.staging_event.record(us));
  m.staging_used = true;
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
  const size_t L7 = size_t(m.L) * kNumLinearModules;
  for (size_t idx = 0; idx < L7; ++idx) {
    const LoraDev& d = m.lora[idx];
    const size_t a = size_t(m.R) * d.in * m.esz, b = size_t(d.out) * m.R * m.esz;
    MYRIAD_TRY(copy_d2d(static_cast<char*>(d.a.data()) + dst * a, static_cast<char*>(d.a.data()) + src * a, a, us));
    MYRIAD_TRY(copy_d2d(static_cast<char*>(d.b.data()) + dst * b, static_cast<char*>(d.b.data()) + src * b, b, us));
  }
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
  if (st == Impl::SlotState::kLoading && m.slot_event[size_t(slot)].done()) st = Impl::SlotState::kReady;
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
}

}  // namespace myriad::gpu::cuda
