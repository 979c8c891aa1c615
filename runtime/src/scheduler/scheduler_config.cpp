#include "runtime/scheduler_config.h"

#include <string>

namespace myriad {

const char* scheduler_policy_name(SchedulerPolicy p) {
  switch (p) {
    case SchedulerPolicy::kTimeslice: return "timeslice";
    case SchedulerPolicy::kFcfs: return "fcfs";
    case SchedulerPolicy::kOneAtATime: return "one-at-a-time";
  }
  return "?";
}

Result<SchedulerPolicy> parse_scheduler_policy(std::string_view s) {
  if (s == "timeslice") return SchedulerPolicy::kTimeslice;
  if (s == "fcfs") return SchedulerPolicy::kFcfs;
  if (s == "one-at-a-time") return SchedulerPolicy::kOneAtATime;
  return make_error(ErrorCode::kInvalidArgument,
                    "unknown scheduler policy '" + std::string(s) + "' (expected timeslice, fcfs or one-at-a-time)");
}

Status validate_scheduler_config(const SchedulerConfig& c) {
  auto bad = [](const std::string& field, const std::string& value, const std::string& want) {
    return make_error(ErrorCode::kInvalidArgument, "scheduler config: " + field + " = " + value + ": " + want);
  };
  if (c.num_slots < 0) return bad("num_slots", std::to_string(c.num_slots), "must be >= 0 (0: base model only)");
  if (!(c.quantum_ms >= 0.0)) return bad("quantum_ms", std::to_string(c.quantum_ms), "must be >= 0");
  if (c.max_tokens_per_step < 1) return bad("max_tokens_per_step", std::to_string(c.max_tokens_per_step), "must be >= 1");
  if (c.max_running_seqs < 1) return bad("max_running_seqs", std::to_string(c.max_running_seqs), "must be >= 1");
  if (c.max_running_seqs > c.max_tokens_per_step)
    return bad("max_running_seqs", std::to_string(c.max_running_seqs),
               "must be <= max_tokens_per_step (" + std::to_string(c.max_tokens_per_step) +
                   ") so every running row progresses each step");
  if (c.max_prefill_chunk < 0) return bad("max_prefill_chunk", std::to_string(c.max_prefill_chunk), "must be >= 0");
  if (c.num_kv_blocks < 1) return bad("num_kv_blocks", std::to_string(c.num_kv_blocks), "must be >= 1");
  if (c.kv_block_size < 1) return bad("kv_block_size", std::to_string(c.kv_block_size), "must be >= 1");
  if (c.max_seq_len < 0) return bad("max_seq_len", std::to_string(c.max_seq_len), "must be >= 0");
  if (c.vocab_size < 0) return bad("vocab_size", std::to_string(c.vocab_size), "must be >= 0");
  return ok_status();
}

}  // namespace myriad
