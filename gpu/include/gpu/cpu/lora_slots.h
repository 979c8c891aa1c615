// N adapter slots on the CPU "device": each holds one adapter's A and Bᵀ for
// every (layer, module) at the adapter's TRUE rank (capacity max_rank),
// laid out for the lora_sgmv kernels, plus the hook the forward pass calls
// after each linear projection to add every row's delta. Modules sharing an
// input (q, k, v; gate, up) are stored as a LoraGroupView: their A stacked,
// then their Bᵀ, so apply_group reads a slot's bytes of the group in one run
// (o and down are groups of one: A then Bᵀ, adjacent at the true rank).
//
// Slot lifecycle (per slot, an atomic state):
//   empty --begin_load--> loading --(loader thread copies)--> ready --unload--> empty
// begin_load validates shapes and ranks synchronously (a bad adapter changes
// nothing) and returns at once; a background thread does the copy, so the
// engine keeps stepping other sequences meanwhile. ready() flips (release /
// acquire) only when every byte is in place.
//
// Invariants: a slot being loaded or in use is never written by another
// load; rows may use a slot only once ready() (validate() checks); a row's
// delta never depends on other rows of the batch.
//
// Thread-safety: begin_load / ready / unload / validate / apply are called by
// the one engine thread; the loader thread writes only a loading slot.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "gpu/cpu/huge_page_buffer.h"
#include "gpu/cpu/lora_hook.h"
#include "gpu/cpu/lora_sgmv.h"
#include "gpu/cpu/thread_pool.h"
#include "runtime/lora_weights.h"
#include "runtime/model_config.h"

namespace myriad::gpu::cpu {

class CpuLoraSlots final : public CpuLoraHook {
 public:
  // `pool` (not owned, may be null => serial) runs the kernels' parallel loops.
  // `storage`: kF32 (exact) or kBF16 (half the bytes per step; rounds A and B
  // to bf16, the precision of a bf16 base model's own weights).
  CpuLoraSlots(const ModelConfig& config, int32_t num_slots, int32_t max_rank, ThreadPool* pool,
               DType storage = DType::kF32);
  ~CpuLoraSlots() override;
  CpuLoraSlots(const CpuLoraSlots&) = delete;
  CpuLoraSlots& operator=(const CpuLoraSlots&) = delete;

  // Queues a copy of `w` into `slot`. kInvalidArgument: slot out of range or
  // not empty; kUnsupported/kInvalidArgument: the adapter does not fit (layer
  // count, a module's shape, a rank above max_rank). `done` (optional) is
  // called on the loader thread once the slot is ready.
  Status begin_load(int32_t slot, std::shared_ptr<const LoraWeights> w, std::function<void(Status)> done = nullptr);
  bool ready(int32_t slot) const;
  // Waits for a load in flight into `slot`, then empties it. The caller
  // guarantees no row uses it.
  void unload(int32_t slot);
  // Every slot a row names is in range and ready; kInvalidArgument names the row.
  Status validate(std::span<const AdapterMix> per_token) const;

  // CpuLoraHook: y[t] += delta of row t's mix, for module m of `layer`.
  void apply(int layer, LinearModule m, const float* x, float* y,
             std::span<const AdapterMix> per_token) override;
  // One stacked pass for {q, k, v} and {gate, up} (any other list: apply per module).
  void apply_group(int layer, std::span<const LinearModule> ms, const float* x, std::span<float* const> ys,
                   std::span<const AdapterMix> per_token) override;

  int32_t num_slots() const { return num_slots_; }
  int32_t max_rank() const { return max_rank_; }
  DType storage() const { return storage_; }
  // Distinct slots the current step's rows use (after the first apply of a step).
  size_t distinct_slots_in_step() const { return plan_.num_distinct_slots(); }
  // Tests: runs on the loader thread before each copy (e.g. to make loads slow).
  void set_load_hook(std::function<void(int32_t slot)> hook);

 private:
  enum State : int { kEmpty = 0, kLoading = 1, kReady = 2 };
  struct Job {
    int32_t slot;
    std::shared_ptr<const LoraWeights> weights;
    std::function<void(Status)> done;
  };
  void loader_loop();
  void copy_into(int32_t slot, const LoraWeights& w);
  // Regroups the step's rows when the mixes change (once per step).
  void plan_for(std::span<const AdapterMix> per_token);

  const ModelConfig config_;
  const int32_t num_slots_;
  const int32_t max_rank_;
  ThreadPool* pool_;
  const DType storage_;
  std::vector<size_t> group_offset_;  // [layer * kGroupsPerLayer + g] elements into a slot's buffer
  size_t slot_elems_ = 0;

  // [slot], allocated on first load (loader thread); huge pages, as every
  // step of a batch with one adapter per row streams the slots like weights.
  std::vector<HugePageBuffer> buffers_;
  std::vector<std::vector<LoraModuleView>> views_;       // [layer * 7 + m][slot]
  std::vector<std::vector<LoraGroupView>> group_views_;  // [layer * kGroupsPerLayer + g][slot]
  std::unique_ptr<std::atomic<int>[]> state_;            // [slot]

  // Per-step: the rows grouped by slot, rebuilt when the mixes change.
  std::vector<AdapterMix> plan_mixes_;
  LoraBatchPlan plan_;
  LoraScratch scratch_;
  LoraParallelFor parallel_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  int32_t copying_ = -1;  // slot the loader is copying now
  bool stop_ = false;
  std::function<void(int32_t)> load_hook_;
  std::thread loader_;
};

}  // namespace myriad::gpu::cpu
