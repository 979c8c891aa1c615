#include "engine_run.h"

#include <algorithm>
#include <cstdio>
#include <string>
#include <thread>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/adapter_source.h"
#include "runtime/clock.h"
#include "runtime/engine.h"
#include "runtime/kv_block_allocator.h"

namespace myriad::cli {

void LogitsCollector::on_event(const RequestEvent& e) {
  if (e.num_expert_weights > 0)
    expert_weights[e.id].assign(e.expert_weights.begin(), e.expert_weights.begin() + e.num_expert_weights);
  if (e.kind == EventKind::kLogits) {
    auto& v = logits[e.id];
    v.insert(v.end(), e.logits.begin(), e.logits.end());
  } else if (e.kind == EventKind::kFailed && !error) {
    error = e.error;
  }
}

std::string logits_rows_json(const std::vector<float>& logits, size_t vocab) {
  std::string out;
  char buf[32];
  for (size_t p = 0; vocab > 0 && p < logits.size() / vocab; ++p) {
    out += p ? ", [" : "[";
    for (size_t i = 0; i < vocab; ++i) {
      std::snprintf(buf, sizeof buf, i ? ", %.9g" : "%.9g", double(logits[p * vocab + i]));
      out += buf;
    }
    out += "]";
  }
  return out;
}

Status run_on_engine(std::shared_ptr<const Checkpoint> checkpoint, std::vector<CliRequest> requests,
                     const EngineRunOptions& options, EventSink& sink) {
  gpu::cpu::CpuExecutorOptions opt;
  opt.kv_block_size = 16;
  opt.threads = options.threads;
  opt.kv_dtype = options.kv_dtype;
  int32_t blocks = 0, prompt_tokens = 0;
  // One slot per distinct adapter, named by its first request.
  StaticAdapterSource source;
  std::vector<const LoraWeights*> distinct;
  for (size_t i = 0; i < requests.size(); ++i) {
    CliRequest& r = requests[i];
    blocks += KvBlockAllocator::blocks_for(int32_t(r.request.prompt.size() + r.request.max_tokens), opt.kv_block_size);
    prompt_tokens += int32_t(r.request.prompt.size());
    std::vector<WeightedAdapter> uses = r.experts;
    if (uses.empty() && r.adapter) uses.push_back({r.adapter, 1.0f});
    r.request.adapters.clear();
    for (const WeightedAdapter& u : uses) {
      auto it = std::find(distinct.begin(), distinct.end(), u.weights.get());
      const AdapterId id{"cli", "adapter-" + std::to_string(it - distinct.begin()), 1};
      r.request.adapters.push_back(AdapterUse{id, u.weight});
      if (it == distinct.end()) {
        distinct.push_back(u.weights.get());
        source.put(id, u.weights);
        opt.max_adapter_rank = std::max(opt.max_adapter_rank, u.weights->max_rank());
      }
    }
  }
  opt.kv_num_blocks = std::max(blocks, 1);
  opt.num_adapter_slots = int32_t(distinct.size());
  auto ex = gpu::cpu::CpuExecutor::create(checkpoint, opt);
  if (!ex.ok()) return ex.error();

  SchedulerConfig sc;
  sc.num_slots = opt.num_adapter_slots;
  sc.kv_block_size = opt.kv_block_size;
  sc.num_kv_blocks = opt.kv_num_blocks;
  sc.max_running_seqs = std::max<int32_t>(int32_t(requests.size()), 1);
  sc.max_tokens_per_step = std::max(prompt_tokens, sc.max_running_seqs);
  SteadyClock clock;
  auto engine = Engine::create(sc, **ex, source, clock, sink, options.tokenizer);
  if (!engine.ok()) return engine.error();
  RequestId next_id = 1;
  for (CliRequest& r : requests) {
    r.request.id = next_id++;
    auto id = (*engine)->submit(std::move(r.request));
    if (!id.ok()) return id.error();
  }
  // An adapter load finishes in the background; a step with nothing to run
  // yet (its adapter still loading) returns at once, so yield between polls.
  while ((*engine)->has_work()) {
    if ((*engine)->step().ok() && (*engine)->last_schedule().plan.rows.empty()) std::this_thread::yield();
  }
  return ok_status();
}

}  // namespace myriad::cli
