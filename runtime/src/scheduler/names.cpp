#include "runtime/request.h"
#include "runtime/schedule_output.h"
#include "runtime/scheduler.h"

namespace myriad {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kDeadline: return "deadline";
  }
  return "?";
}

const char* wait_reason_name(WaitReason r) {
  switch (r) {
    case WaitReason::kFetching: return "fetching";
    case WaitReason::kNoSlot: return "no_slot";
    case WaitReason::kLoading: return "loading";
    case WaitReason::kSwappedOut: return "swapped_out";
    case WaitReason::kMaxRunning: return "max_running";
    case WaitReason::kTokenBudget: return "token_budget";
    case WaitReason::kKvBlocks: return "kv_blocks";
  }
  return "?";
}

const char* adapter_phase_name(AdapterPhase p) {
  switch (p) {
    case AdapterPhase::kIdle: return "idle";
    case AdapterPhase::kLoading: return "loading";
    case AdapterPhase::kActive: return "active";
    case AdapterPhase::kDraining: return "draining";
  }
  return "?";
}

}  // namespace myriad
