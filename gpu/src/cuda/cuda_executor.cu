// CudaExecutor: see the header. One step runs, on the compute stream:
//   embedding -> per layer [rmsnorm (fused residual add) -> qkv GEMM (+bias)
//   (+LoRA q|k|v) -> RoPE fused with the KV write -> paged attention -> o GEMM (+LoRA)
//   -> rmsnorm (fused residual add) -> gate|up GEMM (+LoRA) -> SiLU-mul ->
//   down GEMM (+LoRA)] -> final rmsnorm -> gather logits positions -> lm_head
//   GEMM (float32 out) -> sampling.
// Per-step metadata is written into fixed-capacity pinned host arrays and
// copied to fixed device arrays, so device pointers never change (CUDA graphs
// replay them).
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "cuda_executor_impl.cuh"
#include "runtime/plan_validation.h"

namespace myriad::gpu::cuda {

Status CudaExecutor::Impl::validate(const StepPlan& plan) const {
  MYRIAD_TRY(validate_plan(plan, info, [this](int32_t s) { return slot_state[size_t(s)] == SlotState::kReady; }));
  if (plan.block_ids.size() > block_ids.capacity || plan.history.size() > history.capacity ||
      plan.logit_bias.size() > logit_bias.capacity)
    return make_error(ErrorCode::kResourceExhausted,
                      "step's block tables, penalty history or logit bias entries exceed capacity");
  return ok_status();
}

// ---------------------------------------------------------------------------

CudaExecutor::CudaExecutor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaExecutor::~CudaExecutor() {
  if (impl_) {
    (void)cudaStreamSynchronize(impl_->upload.get());
    (void)cudaStreamSynchronize(impl_->compute.get());
  }
}

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create(std::shared_ptr<const Checkpoint> ckpt,
                                                           const CudaExecutorOptions& options) {
  if (!ckpt) return make_error(ErrorCode::kInvalidArgument, "CudaExecutor: no checkpoint");
  auto impl = std::make_unique<Impl>();
  impl->ckpt = ckpt;
  MYRIAD_TRY(impl->init_common(ckpt->config(), options));
  MYRIAD_TRY(impl->alloc_weights());
  MYRIAD_TRY(impl->load_checkpoint());
  MYRIAD_TRY(impl->alloc_runtime());
  return std::unique_ptr<CudaExecutor>(new CudaExecutor(std::move(impl)));
}

Result<std::unique_ptr<CudaExecutor>> CudaExecutor::create_random(const ModelConfig& config,
                                                                  const CudaExecutorOptions& options, uint64_t seed) {
  auto impl = std::make_unique<Impl>();
  MYRIAD_TRY(impl->init_common(config, options));
  MYRIAD_TRY(impl->alloc_weights());
  MYRIAD_TRY(impl->random_weights(seed));
  MYRIAD_TRY(impl->alloc_runtime());
  return std::unique_ptr<CudaExecutor>(new CudaExecutor(std::move(impl)));
}

const ExecutorInfo& CudaExecutor::info() const { return impl_->info; }
size_t CudaExecutor::weight_bytes() const { return impl_->weight_bytes; }
size_t CudaExecutor::kv_bytes_per_token() const { return size_t(2 * impl_->L * impl_->KV) * impl_->esz; }
size_t CudaExecutor::adapter_bytes(int32_t slot) const {
  return slot >= 0 && slot < impl_->slots ? impl_->slot_bytes[size_t(slot)] : 0;
}
int CudaExecutor::graphs_captured() const { return int(impl_->graphs.size()); }
int CudaExecutor::small_gemm_choices() const { return impl_->small_gemm_choices; }
Status CudaExecutor::wait_for_uploads() { return sync_stream(impl_->upload.get()); }

Status CudaExecutor::step(const StepPlan& plan, StepResult& out) {
  Impl& m = *impl_;
  out.clear();
  if (plan.rows.empty()) return ok_status();
  const auto t0 = std::chrono::steady_clock::now();
  for (const SeqRow& r : plan.rows)  // promote finished loads (validate requires ready slots)
    for (uint8_t a = 0; a < r.adapters.count && a < kMaxAdaptersPerRow; ++a) (void)adapter_ready(r.adapters.refs[a].slot);
  MYRIAD_TRY(m.validate(plan));
  if (!m.lora_joined) {  // a step that failed left a shrink on the side stream: let it end first
    MYRIAD_TRY(sync_stream(m.lora_side.get()));
    m.lora_joined = true;
  }
  const int64_t bs = m.opt.kv_block_size;

  // Token-level metadata.
  int64_t T = 0;
  bool any_adapter = false, mixture = false, all_decode = true;
  int most_adapters = 0;  // in one row: the BGMV levels of a decode step
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    m.row_block_off.host[i] = int32_t(r.block_offset);
    any_adapter |= r.adapters.count > 0;
    mixture |= r.adapters.count > 1 || (r.adapters.count == 1 && r.adapters.refs[0].weight != 1.0f);
    most_adapters = std::max(most_adapters, int(r.adapters.count));
    all_decode &= r.num_tokens == 1;
    for (uint32_t j = 0; j < r.num_tokens; ++j, ++T) {
      const int32_t p = r.start_pos + int32_t(j);
      m.tokens.host[T] = plan.tokens[r.token_offset + j];
      m.pos.host[T] = p;
      m.tok_row.host[T] = int32_t(i);
      m.slot_map.host[T] = plan.block_ids[r.block_offset + uint32_t(p / bs)] * int32_t(bs) + p % int32_t(bs);
      for (int l = 0; l < kLevels; ++l) {
        const bool has = r.adapters.count > l;
        m.token_slot[l].host[T] = has ? r.adapters.refs[l].slot : -1;
        m.token_weight[l].host[T] = has ? r.adapters.refs[l].weight : 0.0f;
      }
    }
  }
  if (T == 0) return ok_status();
  std::copy(plan.block_ids.begin(), plan.block_ids.end(), m.block_ids.host);
  std::copy(plan.history.begin(), plan.history.end(), m.history.host);
  std::copy(plan.logit_bias.begin(), plan.logit_bias.end(), m.logit_bias.host);

  // Logits positions: sampled rows' last tokens first (S), then requested ones (Qn).
  int64_t S = 0, Qn = 0;
  bool any_top = false;
  {
    int64_t t = 0;
    for (const SeqRow& r : plan.rows) {
      if (r.sample) {
        m.logit_idx.host[S] = int32_t(t + r.num_tokens - 1);
        SampleRow& p = m.sample_rows.host[S];
        p.temperature = r.sampling.temperature;
        p.top_k = r.sampling.top_k;
        p.top_p = r.sampling.top_p;
        p.output_index = r.output_index;
        p.seed = r.sampling.seed;
        p.repetition_penalty = r.sampling.repetition_penalty;
        p.presence_penalty = r.sampling.presence_penalty;
        p.frequency_penalty = r.sampling.frequency_penalty;
        p.history_offset = r.history_offset;
        p.history_len = r.history_len;
        p.prompt_len = r.prompt_len;
        p.bias_offset = r.bias_offset;
        p.bias_count = r.bias_count;
        p.top_logprobs = r.sampling.top_logprobs;
        any_top |= r.sampling.top_logprobs > 0;
        ++S;
      }
      t += r.num_tokens;
    }
    t = 0;
    for (const SeqRow& r : plan.rows) {
      if (r.logits == LogitsRequest::kAll)
        for (uint32_t j = 0; j < r.num_tokens; ++j) m.logit_idx.host[S + Qn++] = int32_t(t + j);
      else if (r.logits == LogitsRequest::kLast)
        m.logit_idx.host[S + Qn++] = int32_t(t + r.num_tokens - 1);
      t += r.num_tokens;
    }
  }
  const int64_t P = S + Qn;

  // LoRA form.
  // Decode steps gather one adapter per token and level (BGMV), mixtures
  // included, so their launch shapes depend on T and the level count only
  // and they replay from graphs; steps with prompt tokens group them by
  // adapter (SGMV segments).
  int mode = kNoLora;
  if (any_adapter) mode = all_decode ? kBgmv : kSgmv;
  m.bgmv_levels = mode == kBgmv ? most_adapters : 0;
  m.bgmv_weighted = mode == kBgmv && mixture;  // else every weight is 1: no weights uploaded or read
  m.levels = 0;
  if (mode == kSgmv) {
    using Entry = Impl::SgmvEntry;
    std::vector<Entry>& entries = m.sgmv_entries;  // reused: no allocation once warm
    for (int l = 0; l < kLevels; ++l) {
      entries.clear();
      int64_t t = 0;
      for (const SeqRow& r : plan.rows) {
        if (r.adapters.count > l)
          for (uint32_t j = 0; j < r.num_tokens; ++j)
            entries.push_back({r.adapters.refs[l].slot, int32_t(t + j), r.adapters.refs[l].weight});
        t += r.num_tokens;
      }
      if (entries.empty()) break;
      // Grouped by slot, tokens in order within a slot: a counting sort
      // (validate() bounds the slots) over vectors kept warm, where
      // std::stable_sort took a temporary buffer every step.
      std::vector<int32_t>& next = m.sgmv_slot_next;
      next.assign(size_t(m.slots) + 1, 0);
      for (const Entry& e : entries) ++next[size_t(e.slot) + 1];
      for (size_t i = 1; i < next.size(); ++i) next[i] += next[i - 1];
      std::vector<Entry>& sorted = m.sgmv_sorted;
      sorted.resize(entries.size());
      for (const Entry& e : entries) sorted[size_t(next[size_t(e.slot)]++)] = e;
      int32_t segs = 0, max_len = 0;
      for (size_t e = 0; e < sorted.size(); ++e) {
        if (e == 0 || sorted[e].slot != sorted[e - 1].slot) {
          if (segs > 0) max_len = std::max(max_len, int32_t(e) - m.seg_start[l].host[segs - 1]);
          m.seg_slot[l].host[segs] = sorted[e].slot;
          m.seg_start[l].host[segs] = int32_t(e);
          ++segs;
        }
        m.entry_token[l].host[e] = sorted[e].token;
        m.entry_weight[l].host[e] = sorted[e].weight;
      }
      m.seg_start[l].host[segs] = int32_t(sorted.size());
      max_len = std::max(max_len, int32_t(sorted.size()) - m.seg_start[l].host[segs - 1]);
      m.num_segments[l] = segs;
      m.max_seg_len[l] = max_len;
      m.levels = l + 1;
    }
  }

  // Upload metadata.
  MYRIAD_TRY(m.upload_meta(m.tokens, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.pos, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.tok_row, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.slot_map, size_t(T)));
  MYRIAD_TRY(m.upload_meta(m.row_block_off, plan.rows.size()));
  MYRIAD_TRY(m.upload_meta(m.block_ids, plan.block_ids.size()));
  MYRIAD_TRY(m.upload_meta(m.logit_idx, size_t(P)));
  MYRIAD_TRY(m.upload_meta(m.sample_rows, size_t(S)));
  if (!plan.history.empty()) MYRIAD_TRY(m.upload_meta(m.history, plan.history.size()));
  if (!plan.logit_bias.empty()) MYRIAD_TRY(m.upload_meta(m.logit_bias, plan.logit_bias.size()));
  for (int l = 0; l < m.bgmv_levels; ++l) {
    MYRIAD_TRY(m.upload_meta(m.token_slot[l], size_t(T)));
    if (m.bgmv_weighted) MYRIAD_TRY(m.upload_meta(m.token_weight[l], size_t(T)));
  }
  for (int l = 0; l < m.levels; ++l) {
    const size_t n = size_t(m.seg_start[l].host[m.num_segments[l]]);
    MYRIAD_TRY(m.upload_meta(m.seg_slot[l], size_t(m.num_segments[l])));
    MYRIAD_TRY(m.upload_meta(m.seg_start[l], size_t(m.num_segments[l]) + 1));
    MYRIAD_TRY(m.upload_meta(m.entry_token[l], n));
    MYRIAD_TRY(m.upload_meta(m.entry_weight[l], n));
  }

  // Forward: replayed from a graph for plain decode steps when enabled.
  cudaStream_t s = m.compute.get();
  // Every kernel argument that changes between such steps lives in the fixed
  // device metadata arrays; the launch shapes depend only on the key.
  const bool graphable = m.opt.cuda_graphs && all_decode && mode != kSgmv && !m.profiling;
  if (graphable) {
    MYRIAD_TRY(m.graphs.launch({T, S, Qn, m.bgmv_levels, m.bgmv_weighted, m.bgmv_levels > 0 && m.lora_side_stream}, s,
                               [&] { return m.forward(T, P, S, mode); }));
  } else {
    MYRIAD_TRY(m.forward(T, P, S, mode));
  }

  // Results to the host.
  char* oh = static_cast<char*>(m.out_h.data());
  auto* tok_h = reinterpret_cast<int32_t*>(oh);
  auto* lp_h = reinterpret_cast<float*>(oh + size_t(m.opt.max_rows) * 4);
  auto* logits_h = reinterpret_cast<float*>(oh + size_t(m.opt.max_rows) * 8);
  if (S > 0) {
    MYRIAD_TRY(copy_d2h(tok_h, m.sample_out.as<int32_t>(), size_t(S) * 4, s));
    MYRIAD_TRY(copy_d2h(lp_h, m.sample_out.as<float>() + m.opt.max_rows, size_t(S) * 4, s));
    if (any_top)
      MYRIAD_TRY(copy_d2h(m.top_h.data(), m.sample_top.data(), size_t(S) * kMaxTopLogprobs * sizeof(TopLogprobs::Entry),
                          s));
  }
  if (Qn > 0) MYRIAD_TRY(copy_d2h(logits_h, m.logits.as<float>() + size_t(S) * m.V, size_t(Qn) * m.V * 4, s));
  MYRIAD_TRY(sync_stream(s));
  // Host launch overhead included: the step ends when its results are back.
  out.device_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  int64_t si = 0, qi = 0;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const SeqRow& r = plan.rows[i];
    const int64_t n = r.logits == LogitsRequest::kAll ? r.num_tokens : r.logits == LogitsRequest::kLast ? 1 : 0;
    if (n > 0) {
      out.logits.insert(out.logits.end(), logits_h + qi * m.V, logits_h + (qi + n) * m.V);
      for (int64_t j = 0; j < n; ++j) out.logits_rows.push_back(uint32_t(i));
      qi += n;
    }
    if (r.sample) {
      const uint32_t k = std::min<uint32_t>(r.sampling.top_logprobs, uint32_t(m.V));
      const auto* top = static_cast<const TopLogprobs::Entry*>(m.top_h.data()) + si * kMaxTopLogprobs;
      out.add_sampled(r.seq, tok_h[si], lp_h[si], std::span<const TopLogprobs::Entry>(top, k));
      ++si;
    }
  }
  return ok_status();
}

Status CudaExecutor::Impl::mark(const char* what) {
  if (!profiling) return ok_status();
  if (marks_used == marks.size()) {
    Event e;
    MYRIAD_ASSIGN(e, Event::create(true));
    marks.push_back(std::move(e));
    mark_names.push_back(nullptr);
  }
  mark_names[marks_used] = what;
  return marks[marks_used++].record(compute.get());
}

void CudaExecutor::set_lora_side_stream(bool on) { impl_->lora_side_stream = on; }

Status CudaExecutor::profile_step(const StepPlan& plan, StepResult& out,
                                  std::vector<std::pair<std::string, double>>& ms_by_op) {
  Impl& m = *impl_;
  ms_by_op.clear();
  m.profiling = true;
  m.marks_used = 0;
  const Status st = step(plan, out);  // synchronizes the compute stream before it returns
  m.profiling = false;
  MYRIAD_TRY(st);
  for (size_t i = 1; i < m.marks_used; ++i) {
    const Result<float> ms = elapsed_ms(m.marks[i - 1], m.marks[i]);
    if (!ms.ok()) return ms.error();
    const std::string name = m.mark_names[i];
    auto it = std::find_if(ms_by_op.begin(), ms_by_op.end(), [&](const auto& p) { return p.first == name; });
    if (it == ms_by_op.end()) ms_by_op.emplace_back(name, double(ms.value()));
    else it->second += double(ms.value());
  }
  return ok_status();
}

}  // namespace myriad::gpu::cuda
