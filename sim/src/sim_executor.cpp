#include "sim/sim_executor.h"

#include <algorithm>
#include <string>

namespace myriad::sim {

SimExecutor::SimExecutor(const SimExecutorOptions& o, const CostModel& cost) : cost_(cost) {
  info_.device = "sim (" + cost.name + ")";
  info_.vocab_size = o.vocab_size;
  info_.kv_block_size = o.kv_block_size;
  info_.kv_num_blocks = o.kv_num_blocks;
  info_.num_adapter_slots = o.num_adapter_slots;
  info_.max_adapter_rank = o.max_adapter_rank;
  info_.max_tokens_per_step = o.max_tokens_per_step;
  info_.max_rows = o.max_rows;
  slot_rank_.assign(size_t(std::max(o.num_adapter_slots, 0)), 0);
}

Status SimExecutor::step(const StepPlan& plan, StepResult& out) {
  out.clear();
  if (plan.rows.empty()) return ok_status();
  for (const SeqRow& r : plan.rows) {
    if (!r.sample) continue;
    // A hash of (sequence, output index) in [1, vocab): deterministic, and never
    // 0 (requests here name no stop token anyway).
    uint64_t h = (r.seq + 0x9e3779b97f4a7c15ULL) * 0xbf58476d1ce4e5b9ULL ^ (uint64_t(r.output_index) << 17);
    h ^= h >> 31;
    out.add_sampled(r.seq, int32_t(1 + h % uint64_t(std::max(info_.vocab_size - 1, 1))), 0.0f);
  }
  out.device_ms = cost_.step_ms(plan, [this](int32_t slot) {
    return slot >= 0 && size_t(slot) < slot_rank_.size() ? slot_rank_[size_t(slot)] : 0;
  });
  return ok_status();
}

Status SimExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) {
  if (slot < 0 || size_t(slot) >= slot_rank_.size())
    return make_error(ErrorCode::kInvalidArgument, "slot " + std::to_string(slot) + " out of range");
  const int rank = weights ? weights->max_rank() : 0;
  slot_rank_[size_t(slot)] = rank;
  const double start = loads_.empty() ? now_ms_ : std::max(now_ms_, loads_.back().end_ms);
  loads_.push_back(Load{slot, start + cost_.load_ms(rank), std::move(done)});
  ++loads_started_;
  return ok_status();
}

void SimExecutor::unload_adapter(int32_t slot) {
  if (slot < 0 || size_t(slot) >= slot_rank_.size()) return;
  // A load still in flight into it completes first (the real executors wait for it).
  for (auto it = loads_.begin(); it != loads_.end(); ++it) {
    if (it->slot != slot) continue;
    LoadDone done = std::move(it->done);
    loads_.erase(it);
    done(ok_status());
    break;
  }
  slot_rank_[size_t(slot)] = 0;
}

double SimExecutor::finish_loads(double now_ms) {
  while (!loads_.empty() && loads_.front().end_ms <= now_ms) {
    LoadDone done = std::move(loads_.front().done);
    loads_.pop_front();
    done(ok_status());
  }
  return next_load_end_ms();
}

}  // namespace myriad::sim
