// Adapter slots for the CPU executor (see gpu/cpu/lora_slots.h).
#include "gpu/cpu/lora_slots.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <new>
#include <utility>

#include "runtime/log.h"

namespace myriad::gpu::cpu {

namespace {
// The modules of a layer in input-sharing groups, in module order.
struct ModuleGroup {
  int first, count;
};
constexpr ModuleGroup kGroups[] = {{int(LinearModule::kQ), 3},
                                   {int(LinearModule::kO), 1},
                                   {int(LinearModule::kGate), 2},
                                   {int(LinearModule::kDown), 1}};
constexpr int kGroupsPerLayer = int(std::size(kGroups));
constexpr int group_of(int m) {
  for (int g = 0; g < kGroupsPerLayer; ++g)
    if (m < kGroups[g].first + kGroups[g].count) return g;
  return -1;
}
static_assert(group_of(int(LinearModule::kUp)) == 2 && group_of(int(LinearModule::kDown)) == 3);

// Field-wise (AdapterMix has padding bytes, so no memcmp).
bool same_mixes(std::span<const AdapterMix> a, const std::vector<AdapterMix>& b) {
  if (a.size() != b.size()) return false;
  for (size_t t = 0; t < a.size(); ++t) {
    if (a[t].count != b[t].count) return false;
    for (uint8_t i = 0; i < a[t].count; ++i) {
      if (a[t].refs[i].slot != b[t].refs[i].slot || a[t].refs[i].weight != b[t].refs[i].weight) return false;
    }
  }
  return true;
}
}  // namespace

CpuLoraSlots::CpuLoraSlots(const ModelConfig& config, int32_t num_slots, int32_t max_rank, ThreadPool* pool,
                           DType storage)
    : config_(config),
      num_slots_(num_slots),
      max_rank_(max_rank),
      pool_(pool),
      storage_(storage == DType::kBF16 ? DType::kBF16 : DType::kF32) {
  const size_t n = size_t(config.num_layers) * kNumLinearModules;
  // Per group: every module's A [r, in] stacked, then every module's Bᵀ [r, out].
  group_offset_.resize(size_t(config.num_layers) * kGroupsPerLayer);
  for (size_t i = 0; i < group_offset_.size(); ++i) {
    group_offset_[i] = slot_elems_;
    const ModuleGroup& g = kGroups[i % kGroupsPerLayer];
    for (int m = g.first; m < g.first + g.count; ++m) {
      const auto [out, in] = linear_module_shape(config, LinearModule(m));
      slot_elems_ += size_t(max_rank) * size_t(in + out);
    }
  }
  buffers_.resize(size_t(num_slots));
  views_.assign(n, std::vector<LoraModuleView>(size_t(num_slots)));
  group_views_.assign(group_offset_.size(), std::vector<LoraGroupView>(size_t(num_slots)));
  state_ = std::make_unique<std::atomic<int>[]>(size_t(num_slots));
  for (int32_t s = 0; s < num_slots; ++s) state_[size_t(s)].store(kEmpty);
  if (pool_) {
    // Each thread walks its own contiguous share of the work items, one at a
    // time (the rest balanced from the back of the largest share): the item a
    // thread takes next is usually the one after, whose weights the kernels
    // prefetch (detail::LoraPrefetch).
    parallel_ = [this](int64_t n_items, const std::function<void(int64_t, int64_t)>& body) {
      pool_->parallel_for_shares(n_items, 1, 1, [&](int64_t b, int64_t e, int) { body(b, e); });
    };
  }
  loader_ = std::thread([this] { loader_loop(); });
}

CpuLoraSlots::~CpuLoraSlots() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  loader_.join();
}

void CpuLoraSlots::set_load_hook(std::function<void(int32_t)> hook) {
  std::lock_guard lock(mu_);
  load_hook_ = std::move(hook);
}

Status CpuLoraSlots::begin_load(int32_t slot, std::shared_ptr<const LoraWeights> w,
                                std::function<void(Status)> done) {
  if (slot < 0 || slot >= num_slots_) {
    return make_error(ErrorCode::kInvalidArgument,
                      "adapter slot " + std::to_string(slot) + " out of range [0, " + std::to_string(num_slots_) + ")");
  }
  if (!w) return make_error(ErrorCode::kInvalidArgument, "no adapter weights for slot " + std::to_string(slot));
  if (state_[size_t(slot)].load(std::memory_order_acquire) != kEmpty) {
    return make_error(ErrorCode::kInvalidArgument, "adapter slot " + std::to_string(slot) + " is busy (" +
                                                       (ready(slot) ? "holds an adapter" : "loading") +
                                                       "); unload it first");
  }
  const std::string who = "adapter '" + w->name + "'";
  if (!w->has_host_weights())
    return make_error(ErrorCode::kInvalidArgument,
                      who + " was staged for another executor, which dropped its float32 weights");
  if (w->num_layers != config_.num_layers || w->modules.size() != size_t(config_.num_layers) * kNumLinearModules) {
    return make_error(ErrorCode::kInvalidArgument, who + " has " + std::to_string(w->num_layers) +
                                                       " layers; the base model has " +
                                                       std::to_string(config_.num_layers));
  }
  for (size_t i = 0; i < w->modules.size(); ++i) {
    const LoraModuleWeights& mw = w->modules[i];
    const auto [out, in] = linear_module_shape(config_, LinearModule(i % kNumLinearModules));
    const std::string where = " at layer " + std::to_string(i / kNumLinearModules) + " " +
                              linear_module_name(LinearModule(i % kNumLinearModules));
    if (mw.rank < 0 || mw.rank > max_rank_) {
      return make_error(ErrorCode::kUnsupported, who + " has rank " + std::to_string(mw.rank) + where +
                                                     ", above the slots' maximum rank " + std::to_string(max_rank_));
    }
    if (mw.a.size() != size_t(mw.rank * in) || mw.b.size() != size_t(mw.rank * out)) {
      return make_error(ErrorCode::kInvalidArgument, who + where + ": A/B sizes do not match rank " +
                                                         std::to_string(mw.rank) + " and shape [" +
                                                         std::to_string(out) + ", " + std::to_string(in) + "]");
    }
  }
  state_[size_t(slot)].store(kLoading, std::memory_order_release);
  {
    std::lock_guard lock(mu_);
    queue_.push_back({slot, std::move(w), std::move(done)});
  }
  cv_.notify_all();
  return ok_status();
}

bool CpuLoraSlots::ready(int32_t slot) const {
  return slot >= 0 && slot < num_slots_ && state_[size_t(slot)].load(std::memory_order_acquire) == kReady;
}

void CpuLoraSlots::unload(int32_t slot) {
  if (slot < 0 || slot >= num_slots_) return;
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_[size_t(slot)].load(std::memory_order_acquire) != kLoading; });
  for (auto& v : views_) v[size_t(slot)] = LoraModuleView{};
  for (auto& v : group_views_) v[size_t(slot)] = LoraGroupView{};
  state_[size_t(slot)].store(kEmpty, std::memory_order_release);
}

Status CpuLoraSlots::validate(std::span<const AdapterMix> per_token) const {
  for (size_t t = 0; t < per_token.size(); ++t) {
    const AdapterMix& m = per_token[t];
    if (m.count > kMaxAdaptersPerRow) {
      return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(t) + ": adapter mix of " +
                                                         std::to_string(m.count) + " slots (max " +
                                                         std::to_string(kMaxAdaptersPerRow) + ")");
    }
    for (uint8_t i = 0; i < m.count; ++i) {
      const AdapterRef& r = m.refs[i];
      if (r.slot < 0) continue;
      if (!ready(r.slot)) {
        return make_error(ErrorCode::kInvalidArgument,
                          "token " + std::to_string(t) + " uses adapter slot " + std::to_string(r.slot) +
                              (r.slot >= num_slots_ ? ", out of range" : ", which is not loaded (adapter_ready false)"));
      }
      if (!std::isfinite(r.weight)) {
        return make_error(ErrorCode::kInvalidArgument, "token " + std::to_string(t) + ": adapter weight is not finite");
      }
    }
  }
  return ok_status();
}

void CpuLoraSlots::loader_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    copying_ = job.slot;
    auto hook = load_hook_;
    lock.unlock();
    if (hook) hook(job.slot);
    const auto t0 = std::chrono::steady_clock::now();
    copy_into(job.slot, *job.weights);
    log_debug("adapter slot {}: '{}' loaded ({:.1f} MB as {}) in {:.2f} ms", job.slot, job.weights->name,
              double(job.weights->bytes()) / 1e6, dtype_name(storage_),
              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    job.weights.reset();  // the host cache may free it now
    lock.lock();
    copying_ = -1;
    state_[size_t(job.slot)].store(kReady, std::memory_order_release);
    cv_.notify_all();
    if (job.done) {
      lock.unlock();  // the callback may take the engine inbox's lock
      job.done(ok_status());
      lock.lock();
    }
  }
}

namespace {
// Copies A [r, in] as is and B [out, r] transposed to Bᵀ [r, out] (expand
// reads along out), converting to the storage type.
template <class W, class Conv>
void copy_module(const LoraModuleWeights& mw, int64_t in, int64_t out, W* a, W* bt, Conv conv) {
  for (size_t i = 0; i < mw.a.size(); ++i) a[i] = conv(mw.a[i]);
  for (int64_t o = 0; o < out; ++o) {
    for (int32_t k = 0; k < mw.rank; ++k) bt[int64_t(k) * out + o] = conv(mw.b[size_t(o * mw.rank + k)]);
  }
  (void)in;
}
}  // namespace

void CpuLoraSlots::copy_into(int32_t slot, const LoraWeights& w) {
  auto& buf = buffers_[size_t(slot)];
  const size_t esize = dtype_size(storage_);
  if (!buf.data()) {
    auto r = HugePageBuffer::allocate(slot_elems_ * esize);
    if (!r.ok()) throw std::bad_alloc();  // as the plain allocation it replaces
    buf = std::move(*r);
  }
  for (size_t gi = 0; gi < group_offset_.size(); ++gi) {
    const int layer = int(gi / kGroupsPerLayer);
    const ModuleGroup& g = kGroups[gi % kGroupsPerLayer];
    // A of the group's modules at their true ranks, back to back, then their
    // Bᵀ likewise: one run of bytes per slot and group, whatever max_rank.
    const int64_t in = linear_module_shape(config_, LinearModule(g.first)).second;
    size_t rank_total = 0;
    for (int j = 0; j < g.count; ++j)
      rank_total += size_t(w.modules[size_t(layer) * kNumLinearModules + size_t(g.first + j)].rank);
    std::byte* a = static_cast<std::byte*>(buf.data()) + group_offset_[gi] * esize;
    std::byte* bt = a + rank_total * size_t(in) * esize;
    LoraGroupView gv{a, 0, storage_, g.count, {}};
    for (int j = 0; j < g.count; ++j) {
      const size_t i = size_t(layer) * kNumLinearModules + size_t(g.first + j);
      const LoraModuleWeights& mw = w.modules[i];
      LoraModuleView& v = views_[i][size_t(slot)];
      if (mw.rank == 0) {
        v = LoraModuleView{};
        gv.modules[j] = v;
        continue;
      }
      const int64_t out = linear_module_shape(config_, LinearModule(g.first + j)).first;
      if (storage_ == DType::kBF16) {
        copy_module(mw, in, out, reinterpret_cast<uint16_t*>(a), reinterpret_cast<uint16_t*>(bt),
                    f32_to_bf16);
      } else {
        copy_module(mw, in, out, reinterpret_cast<float*>(a), reinterpret_cast<float*>(bt),
                    [](float f) { return f; });
      }
      v = LoraModuleView{a, bt, mw.rank, mw.scale, storage_};
      gv.modules[j] = v;
      gv.rank_total += mw.rank;
      a += size_t(mw.rank) * size_t(in) * esize;
      bt += size_t(mw.rank) * size_t(out) * esize;
    }
    group_views_[gi][size_t(slot)] = gv;
  }
}

void CpuLoraSlots::plan_for(std::span<const AdapterMix> per_token) {
  // The same mixes reach all 7 * layers calls of a step: group once.
  if (!same_mixes(per_token, plan_mixes_)) {
    plan_mixes_.assign(per_token.begin(), per_token.end());
    plan_.build(per_token);
  }
}

void CpuLoraSlots::apply(int layer, LinearModule m, const float* x, float* y,
                         std::span<const AdapterMix> per_token) {
  plan_for(per_token);
  if (plan_.empty()) return;
  const auto [out, in] = linear_module_shape(config_, m);
  const auto& views = views_[size_t(layer) * kNumLinearModules + size_t(m)];
  lora_sgmv(plan_, views, x, in, y, out, scratch_, parallel_);
}

void CpuLoraSlots::apply_group(int layer, std::span<const LinearModule> ms, const float* x,
                               std::span<float* const> ys, std::span<const AdapterMix> per_token) {
  const int g = ms.empty() ? -1 : group_of(int(ms[0]));
  bool whole_group = g >= 0 && int(ms.size()) == kGroups[g].count && int(ms[0]) == kGroups[g].first;
  for (size_t i = 1; whole_group && i < ms.size(); ++i) whole_group = int(ms[i]) == int(ms[0]) + int(i);
  if (!whole_group) {
    CpuLoraHook::apply_group(layer, ms, x, ys, per_token);
    return;
  }
  plan_for(per_token);
  if (plan_.empty()) return;
  int64_t outs[kMaxGroupModules];
  for (size_t i = 0; i < ms.size(); ++i) outs[i] = linear_module_shape(config_, ms[i]).first;
  const int64_t in = linear_module_shape(config_, ms[0]).second;
  lora_sgmv_group(plan_, group_views_[size_t(layer) * kGroupsPerLayer + size_t(g)], x, in, ys,
                  std::span<const int64_t>(outs, ms.size()), scratch_, parallel_);
}

}  // namespace myriad::gpu::cpu
