#include "runtime/fake_executor.h"

#include <algorithm>
#include <array>
#include <string>

#include "runtime/kv_block_allocator.h"

namespace myriad {
namespace {
// What FakeExecutor::stage_adapter attaches: only a size.
class FakeStagedAdapter final : public StagedAdapter {
 public:
  explicit FakeStagedAdapter(size_t bytes) : bytes_(bytes) {}
  size_t bytes() const override { return bytes_; }

 private:
  size_t bytes_;
};

uint64_t mix(uint64_t x) {  // splitmix64 finalizer
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
uint64_t hash_name(std::string_view s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : s) h = (h ^ uint8_t(c)) * 1099511628211ull;
  return h;
}
}  // namespace

FakeExecutor::FakeExecutor(const FakeExecutorOptions& options) : opt_(options) {
  info_.device = "fake";
  info_.vocab_size = opt_.vocab_size;
  info_.kv_block_size = opt_.kv_block_size;
  info_.kv_num_blocks = opt_.kv_num_blocks;
  info_.num_adapter_slots = opt_.num_adapter_slots;
  info_.max_adapter_rank = 64;
  info_.max_tokens_per_step = opt_.max_tokens_per_step;
  info_.max_rows = opt_.max_rows;
  info_.max_top_logprobs = opt_.max_top_logprobs;
  info_.applies_logit_bias = opt_.applies_logit_bias;
  slots_.resize(size_t(opt_.num_adapter_slots));
  block_owner_.assign(size_t(opt_.kv_num_blocks), 0);
  step_mark_.assign(size_t(opt_.kv_num_blocks), 0);
}

int32_t FakeExecutor::token_for(SeqId seq, uint32_t output_index, std::string_view adapter, int32_t vocab_size) {
  return int32_t(mix(mix(seq) ^ (uint64_t(output_index) << 1) ^ hash_name(adapter)) % uint64_t(vocab_size));
}

float FakeExecutor::logit_for(int32_t token, int32_t position, int32_t v) {
  return float(mix(mix(uint64_t(uint32_t(token))) ^ (uint64_t(uint32_t(position)) << 20) ^ uint64_t(uint32_t(v))) % 2048) /
         256.0f;
}

std::string FakeExecutor::slot_name(int32_t slot) const {
  if (slot < 0 || size_t(slot) >= slots_.size()) return "";
  return slots_[size_t(slot)].name;
}

void FakeExecutor::violation(std::string what) { violations_.push_back(std::move(what)); }

Status FakeExecutor::validate(const StepPlan& plan) {
  const size_t before = violations_.size();
  const int32_t bs = opt_.kv_block_size;
  const uint32_t stamp = uint32_t(steps_ + 1);
  for (const SeqRow& r : plan.rows) {
    const std::string who = "step " + std::to_string(steps_) + " seq " + std::to_string(r.seq) + ": ";
    if (r.num_tokens == 0 || size_t(r.token_offset) + r.num_tokens > plan.tokens.size() ||
        size_t(r.block_offset) + r.num_blocks > plan.block_ids.size()) {
      violation(who + "row ranges out of the plan's arrays");
      continue;
    }
    const int32_t end = r.start_pos + int32_t(r.num_tokens);
    if (int32_t(r.num_blocks) != KvBlockAllocator::blocks_for(end, bs))
      violation(who + std::to_string(r.num_blocks) + " blocks for " + std::to_string(end) + " positions");
    SeqTrack& t = seqs_[r.seq];
    // KV continuity: continue where the cache ends, or recompute from 0.
    if (r.start_pos != 0 && r.start_pos != t.cached)
      violation(who + "start_pos " + std::to_string(r.start_pos) + " but " + std::to_string(t.cached) +
                " positions are cached");
    for (uint32_t b = 0; b < r.num_blocks; ++b) {
      const int32_t id = plan.block_ids[r.block_offset + b];
      if (id < 0 || id >= opt_.kv_num_blocks) {
        violation(who + "block id " + std::to_string(id) + " out of range");
        continue;
      }
      if (step_mark_[size_t(id)] == stamp) violation(who + "block " + std::to_string(id) + " used twice in one step");
      step_mark_[size_t(id)] = stamp;
      const SeqId owner = block_owner_[size_t(id)];
      if (owner != 0 && owner != r.seq) {
        // The block is in another sequence's current table: its KV is gone,
        // it may only recompute from position 0.
        auto it = seqs_.find(owner);
        if (it != seqs_.end() &&
            std::find(it->second.table.begin(), it->second.table.end(), id) != it->second.table.end())
          it->second.cached = -1;
      }
      block_owner_[size_t(id)] = r.seq;
    }
    t.table.assign(plan.block_ids.begin() + r.block_offset, plan.block_ids.begin() + r.block_offset + r.num_blocks);
    // The same tokens at the same positions, whatever was preempted.
    for (uint32_t k = 0; k < r.num_tokens; ++k) {
      const size_t pos = size_t(r.start_pos) + k;
      const int32_t tok = plan.tokens[r.token_offset + k];
      if (pos < t.tokens.size()) {
        if (t.tokens[pos] != tok)
          violation(who + "position " + std::to_string(pos) + " fed " + std::to_string(tok) + ", earlier " +
                    std::to_string(t.tokens[pos]));
      } else if (pos == t.tokens.size()) {
        t.tokens.push_back(tok);
      } else {
        violation(who + "position " + std::to_string(pos) + " skips ahead of " + std::to_string(t.tokens.size()));
      }
    }
    // Adapter: ready slots, and the same adapters for the whole life.
    for (uint8_t k = 0; k < r.adapters.count; ++k) {
      const int32_t s = r.adapters.refs[k].slot;
      if (s < 0 || size_t(s) >= slots_.size() || slots_[size_t(s)].state != Slot::State::kReady)
        violation(who + "uses slot " + std::to_string(s) + " which is not ready");
    }
    const std::string name(row_adapter(r, name_scratch_));
    if (!t.has_adapter) {
      t.adapter = name;
      t.has_adapter = true;
    } else if (t.adapter != name) {
      violation(who + "ran on adapter '" + name + "', earlier on '" + t.adapter + "'");
    }
    if (r.sample && !t.has_sampled && r.output_index >= t.tokens.size())
      violation(who + "output_index " + std::to_string(r.output_index) + " with only " +
                std::to_string(t.tokens.size()) + " tokens fed");
    else if (r.sample && t.has_sampled && r.output_index != t.sampled)
      violation(who + "output_index " + std::to_string(r.output_index) + " after " + std::to_string(t.sampled) +
                " sampled tokens");
    if (r.sample && size_t(end) != t.tokens.size())
      violation(who + "samples with " + std::to_string(t.tokens.size() - size_t(end)) + " known tokens not fed");
  }
  if (violations_.size() == before) return ok_status();
  return make_error(ErrorCode::kInternal, "fake executor: " + violations_[before]);
}

std::string_view FakeExecutor::row_adapter(const SeqRow& r, std::string& scratch) const {
  auto name_of = [&](uint8_t k) -> std::string_view {
    const int32_t s = r.adapters.refs[k].slot;
    return s >= 0 && size_t(s) < slots_.size() ? std::string_view(slots_[size_t(s)].name) : std::string_view();
  };
  if (r.adapters.count == 0) return {};
  if (r.adapters.count == 1) return name_of(0);  // no copy: the steady path of single-adapter rows
  scratch.clear();
  for (uint8_t k = 0; k < r.adapters.count; ++k) {
    if (k) scratch += '+';
    scratch += name_of(k);
  }
  return scratch;
}

void FakeExecutor::finish_loads() {
  for (Slot& s : slots_) {
    if (s.state != Slot::State::kLoading) continue;
    if (s.steps_left > 0) {
      --s.steps_left;
      continue;
    }
    s.state = Slot::State::kReady;
    LoadDone done = std::move(s.done);
    s.done = nullptr;
    done(ok_status());
  }
}

Status FakeExecutor::step(const StepPlan& plan, StepResult& out) {
  out.clear();
  finish_loads();
  if (plan.rows.empty()) return ok_status();  // an idle step: time does not pass
  if (fail_step_armed_) {
    fail_step_armed_ = false;
    ++steps_;
    return fail_step_;
  }
  if (opt_.validate) MYRIAD_TRY(validate(plan));
  // Refuse what a device with these limits would refuse (as the CUDA executor does).
  if ((opt_.max_rows > 0 && plan.rows.size() > size_t(opt_.max_rows)) ||
      (opt_.max_tokens_per_step > 0 && plan.num_tokens() > size_t(opt_.max_tokens_per_step)))
    return make_error(ErrorCode::kInvalidArgument, "fake executor: plan of " + std::to_string(plan.rows.size()) +
                                                       " rows, " + std::to_string(plan.num_tokens()) +
                                                       " tokens exceeds its capacity");
  for (size_t ri = 0; ri < plan.rows.size(); ++ri) {
    const SeqRow& r = plan.rows[ri];
    if (opt_.validate) {
      SeqTrack& t = seqs_[r.seq];
      t.cached = r.start_pos + int32_t(r.num_tokens);
    }
    if (r.logits != LogitsRequest::kNone) {
      out.logits_rows.push_back(uint32_t(ri));
      const uint32_t first = r.logits == LogitsRequest::kAll ? 0 : r.num_tokens - 1;
      for (uint32_t i = first; i < r.num_tokens; ++i)
        for (int32_t v = 0; v < opt_.vocab_size; ++v)
          out.logits.push_back(logit_for(plan.tokens[r.token_offset + i], r.start_pos + int32_t(i), v));
    }
    if (!r.sample) continue;
    const int32_t tok = token_for(r.seq, r.output_index, row_adapter(r, name_scratch_), opt_.vocab_size);
    const float logprob = -0.125f * float(tok % 8);
    const uint32_t k = std::min(r.sampling.top_logprobs, uint32_t(std::max(opt_.max_top_logprobs, 0)));
    if (k == 0) {
      out.add_sampled(r.seq, tok, logprob);
    } else {
      std::array<TopLogprobs::Entry, kMaxTopLogprobs> top{};
      for (uint32_t i = 0; i < k && i < top.size(); ++i)
        top[i] = {int32_t((int64_t(tok) + i) % opt_.vocab_size), logprob - float(i)};
      out.add_sampled(r.seq, tok, logprob, std::span(top.data(), std::min<size_t>(k, top.size())));
      if (misplace_top_) {
        misplace_top_ = false;
        out.sampled.back().top_offset = uint32_t(out.top_entries.size());
      }
    }
    if (opt_.validate) {
      SeqTrack& t = seqs_[r.seq];
      t.tokens.push_back(tok);
      t.sampled = r.output_index + 1;
      t.has_sampled = true;
    }
  }
  ++steps_;
  if (opt_.clock) opt_.clock->advance(opt_.step_ms + opt_.per_token_ms * double(plan.num_tokens()));
  return ok_status();
}

Result<std::shared_ptr<const LoraWeights>> FakeExecutor::stage_adapter(std::shared_ptr<const LoraWeights> w) const {
  if (!opt_.stages_adapters || !w || dynamic_cast<const FakeStagedAdapter*>(w->staged.get())) return w;
  return staged_lora(*w, std::make_shared<FakeStagedAdapter>(w->bytes() / 2));
}

Status FakeExecutor::begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> weights, LoadDone done) {
  if (slot < 0 || size_t(slot) >= slots_.size())
    return make_error(ErrorCode::kInvalidArgument, "slot " + std::to_string(slot) + " out of range");
  Slot& s = slots_[size_t(slot)];
  if (s.state != Slot::State::kFree) {
    violation("begin_load_adapter into busy slot " + std::to_string(slot));
    return make_error(ErrorCode::kResourceExhausted, "slot " + std::to_string(slot) + " is busy");
  }
  const std::string name = weights ? weights->name : std::string();
  if (!fail_loads_of_.empty() && name == fail_loads_of_)
    return make_error(ErrorCode::kBadFile, "injected load failure for adapter '" + name + "'");
  const bool staged = weights && dynamic_cast<const FakeStagedAdapter*>(weights->staged.get());
  s.state = Slot::State::kLoading;
  s.steps_left = opt_.load_steps;
  s.name = name;
  s.done = std::move(done);
  ++loads_;
  if (staged) ++staged_loads_;
  if (opt_.clock) opt_.clock->advance(opt_.load_ms);
  return ok_status();
}

void FakeExecutor::unload_adapter(int32_t slot) {
  if (slot < 0 || size_t(slot) >= slots_.size() || slots_[size_t(slot)].state != Slot::State::kReady) {
    violation("unload_adapter(" + std::to_string(slot) + ") of a slot that is not loaded (or still loading)");
    return;
  }
  slots_[size_t(slot)] = Slot{};
}

}  // namespace myriad
