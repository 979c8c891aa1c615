#include "runtime/bench_plans.h"

#include <string>

namespace myriad {

Status plan_greedy_step(std::vector<GreedySeq>& seqs, KvBlockAllocator& alloc, int32_t block_size, StepPlan& plan) {
  plan.clear();
  for (size_t i = 0; i < seqs.size(); ++i) {
    GreedySeq& s = seqs[i];
    SeqRow r;
    r.seq = SeqId(i + 1);
    r.start_pos = s.cached;
    r.num_tokens = uint32_t(int32_t(s.ids.size()) - s.cached);
    r.token_offset = uint32_t(plan.tokens.size());
    plan.tokens.insert(plan.tokens.end(), s.ids.begin() + s.cached, s.ids.end());
    const int32_t need = KvBlockAllocator::blocks_for(int32_t(s.ids.size()), block_size) - int32_t(s.blocks.size());
    if (need > 0 && !alloc.allocate(need, s.blocks))
      return make_error(ErrorCode::kResourceExhausted, "KV pool exhausted at sequence " + std::to_string(i) + " (" +
                                                           std::to_string(alloc.num_free()) + " blocks free, " +
                                                           std::to_string(need) + " needed)");
    r.block_offset = uint32_t(plan.block_ids.size());
    r.num_blocks = uint32_t(s.blocks.size());
    plan.block_ids.insert(plan.block_ids.end(), s.blocks.begin(), s.blocks.end());
    r.adapters = s.mix;
    r.sample = true;
    r.sampling.temperature = 0.0f;
    r.output_index = uint32_t(s.ids.size());
    plan.rows.push_back(r);
  }
  return ok_status();
}

void absorb_greedy_step(std::vector<GreedySeq>& seqs, const StepResult& result) {
  for (size_t i = 0; i < seqs.size() && i < result.sampled.size(); ++i) {
    seqs[i].cached = int32_t(seqs[i].ids.size());
    seqs[i].ids.push_back(result.sampled[i].token);
  }
}

void plan_decode_batch(int batch, int ctx, int steps, int32_t block_size, std::span<const int32_t> slots,
                       StepPlan& plan) {
  plan.clear();
  const int per_row = (ctx + steps + block_size - 1) / block_size;
  for (int r = 0; r < batch; ++r) {
    SeqRow row;
    row.seq = SeqId(r + 1);
    row.token_offset = uint32_t(r);
    row.num_tokens = 1;
    row.start_pos = ctx;
    row.block_offset = uint32_t(plan.block_ids.size());
    row.num_blocks = uint32_t(per_row);
    for (int b = 0; b < per_row; ++b) plan.block_ids.push_back(r * per_row + b);
    row.sample = true;
    row.sampling.temperature = 0.0f;
    row.adapters = AdapterMix::single(slots.empty() ? -1 : slots[size_t(r)]);
    plan.rows.push_back(row);
    plan.tokens.push_back(int32_t(r % 100 + 1));
  }
}

void advance_decode_batch(StepPlan& plan) {
  for (SeqRow& r : plan.rows) {
    r.start_pos += 1;
    r.output_index += 1;
  }
}

void plan_prefill(int tokens, int32_t block_size, StepPlan& plan) {
  plan.clear();
  SeqRow row;
  row.seq = 1;
  row.num_tokens = uint32_t(tokens);
  row.num_blocks = uint32_t((tokens + block_size - 1) / block_size);
  for (uint32_t b = 0; b < row.num_blocks; ++b) plan.block_ids.push_back(int32_t(b));
  row.sample = true;
  row.sampling.temperature = 0.0f;
  plan.rows.push_back(row);
  for (int t = 0; t < tokens; ++t) plan.tokens.push_back(int32_t(t % 100 + 1));
}

}  // namespace myriad
