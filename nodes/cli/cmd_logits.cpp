// `myriad logits`: one forward pass on the CPU backend, printing logits.
//   myriad logits --model DIR --ids 1,2,3 [--all-positions] [--threads N] [--adapter DIR[:w]]...
//                 [--kv-cache-dtype auto|f32|bf16|f16]
//     -> {"logits": [[...vocab floats...], ...]}
//   myriad logits --model DIR --batch FILE.json  (rows with their own adapters, one step; lora_cli.h)
// One row per position: only the last position by default, every position
// with --all-positions. Floats are printed with %.9g (round-trip exact).
#include <cstdio>
#include <string>

#include "args.h"
#include "commands.h"
#include "gpu/cpu/cpu_executor.h"
#include "lora_cli.h"
#include "runtime/checkpoint.h"
#include "runtime/kv_block_allocator.h"

namespace myriad::cli {
namespace {

int fail(const Error& e, int code = 1) {
  std::fprintf(stderr, "myriad logits: %s\n", e.to_string().c_str());
  return code;
}

}  // namespace

int cmd_logits(const LogitsArgs& args) {
  const std::string& model = args.model;
  auto kv_dtype = kv_cache_dtype(args.kv_cache_dtype);
  if (!kv_dtype.ok()) return fail(kv_dtype.error(), 2);
  if (args.batch) {
    if (args.ids || !args.adapter.empty() || args.all_positions)
      return fail(make_error(ErrorCode::kInvalidArgument, "--batch takes ids and adapters from the file"), 2);
    return run_logits_batch(model, *args.batch, int(args.threads), kv_dtype.value());
  }
  if (!args.ids) return fail(make_error(ErrorCode::kInvalidArgument, "--ids is required"), 2);
  auto ids = parse_id_list(*args.ids);
  if (!ids.ok()) return fail(ids.error(), 2);
  if (ids->empty()) return fail(make_error(ErrorCode::kInvalidArgument, "--ids is empty"), 2);

  auto ckpt = Checkpoint::load(model);
  if (!ckpt.ok()) return fail(ckpt.error());
  const auto& cfg = (*ckpt)->config();
  const int64_t n = int64_t(ids->size());
  if (cfg.max_position_embeddings > 0 && n > cfg.max_position_embeddings)
    return fail(make_error(ErrorCode::kInvalidArgument, std::to_string(n) + " ids exceed max_position_embeddings " +
                                                            std::to_string(cfg.max_position_embeddings)), 2);
  gpu::cpu::CpuExecutorOptions opt;
  opt.kv_block_size = 16;
  opt.kv_num_blocks = KvBlockAllocator::blocks_for(int32_t(n), opt.kv_block_size);
  opt.threads = int(args.threads);
  opt.kv_dtype = kv_dtype.value();
  auto adapters = read_adapter_flags(args.adapter, cfg, opt);
  if (!adapters.ok()) return fail(adapters.error(), adapters.error().code == ErrorCode::kInvalidArgument ? 2 : 1);
  auto ex = gpu::cpu::CpuExecutor::create(ckpt.value(), opt);
  if (!ex.ok()) return fail(ex.error());
  if (Status st = adapters->adapters.load_into(**ex); !st.ok()) return fail(st.error());

  StepPlan plan;
  SeqRow row;
  row.num_tokens = uint32_t(n);
  row.num_blocks = uint32_t(opt.kv_num_blocks);
  row.logits = args.all_positions ? LogitsRequest::kAll : LogitsRequest::kLast;
  row.adapters = adapters->mix;
  plan.rows.push_back(row);
  plan.tokens = ids.value();
  for (int32_t b = 0; b < opt.kv_num_blocks; ++b) plan.block_ids.push_back(b);
  StepResult res;
  const Status st = (*ex)->step(plan, res);
  if (!st.ok()) return fail(st.error(), st.error().code == ErrorCode::kInvalidArgument ? 2 : 1);

  const size_t V = size_t(cfg.vocab_size);
  std::string out = "{\"logits\": [";
  char buf[32];
  for (size_t p = 0; p < res.logits.size() / V; ++p) {
    out += p ? ", [" : "[";
    for (size_t i = 0; i < V; ++i) {
      std::snprintf(buf, sizeof buf, i ? ", %.9g" : "%.9g", double(res.logits[p * V + i]));
      out += buf;
    }
    out += "]";
  }
  out += "]}\n";
  std::fputs(out.c_str(), stdout);
  return 0;
}

}  // namespace myriad::cli
