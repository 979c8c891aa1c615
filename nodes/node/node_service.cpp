#include "node_service.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gpu/cpu/cpu_executor.h"
#include "runtime/chat_template.h"
#include "runtime/log.h"
#include "runtime/sha256.h"
#ifdef MYRIAD_HAVE_CUDA
#include "gpu/cuda/cuda_executor.h"
#endif

namespace myriad::node {

// Routes the worker's events to the callback each request was submitted
// with (on the worker thread); forgets it after the final event.
class NodeService::Dispatch final : public EventSink {
 public:
  void add(RequestId id, EventCallback cb) {
    std::lock_guard lock(mu_);
    callbacks_[id] = std::move(cb);
  }
  void remove(RequestId id) {
    std::lock_guard lock(mu_);
    callbacks_.erase(id);
  }
  void on_event(const RequestEvent& e) override {
    EventCallback cb;
    {
      std::lock_guard lock(mu_);
      auto it = callbacks_.find(e.id);
      if (it == callbacks_.end()) return;
      cb = e.is_final() ? std::move(it->second) : it->second;
      if (e.is_final()) callbacks_.erase(it);
    }
    cb(e);
  }

 private:
  std::mutex mu_;
  std::unordered_map<RequestId, EventCallback> callbacks_;
};

namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kNotFound, "cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

Result<std::unique_ptr<NodeService>> NodeService::start(const NodeOptions& o) {
  std::unique_ptr<NodeService> s(new NodeService());
  auto ck = Checkpoint::load(o.model_dir);
  if (!ck.ok()) return ck.error();
  s->checkpoint_ = ck.value();
  auto tok = Tokenizer::load(o.model_dir);
  if (!tok.ok()) return tok.error();
  s->tokenizer_ = tok.value();
  if (auto t = chat_template_from_config(s->tokenizer_->config().raw); t.ok()) s->chat_template_ = t.value();
  s->model_name_ = o.model_name.empty() ? std::filesystem::path(o.model_dir).filename().string() : o.model_name;
  if (s->model_name_.empty()) s->model_name_ = std::filesystem::path(o.model_dir).parent_path().filename().string();
  const ModelConfig& cfg = s->checkpoint_->config();
  for (int64_t id : s->checkpoint_->generation_config().eos_token_ids) s->eos_ids_.push_back(int32_t(id));
  for (int64_t id : cfg.eos_token_ids) s->eos_ids_.push_back(int32_t(id));

  // The store: adapters are checked against this base; its fingerprint is
  // the config.json's hash, so a store is never served over another model.
  auto config_json = read_file(o.model_dir + "/config.json");
  if (!config_json.ok()) return config_json.error();
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) return make_error(ErrorCode::kIo, "cannot create --data " + o.data_dir + ": " + ec.message());
  AdapterStoreOptions so;
  so.max_rank = o.max_adapter_rank;
  auto store = AdapterStore::open(o.data_dir, cfg, sha256_hex(config_json.value()), so);
  if (!store.ok()) return store.error();
  s->store_ = std::move(store.value());
  s->cache_ = std::make_unique<AdapterCache>(o.host_cache_bytes);
  s->source_ = std::make_unique<CachedAdapterSource>(*s->cache_);

  // The executor and its KV pool: enough for max_running requests of the
  // whole context when that is small, else a pool of 64k positions.
  const int32_t block = 16;
  int64_t ctx = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : 2048;
  int32_t kv_blocks = o.kv_blocks;
  if (kv_blocks <= 0) kv_blocks = int32_t(std::min<int64_t>((ctx + block - 1) / block * o.max_running, 65536 / block));
  if (o.device == "cpu") {
    gpu::cpu::CpuExecutorOptions eo;
    eo.kv_block_size = block;
    eo.kv_num_blocks = kv_blocks;
    eo.threads = o.threads;
    eo.num_adapter_slots = o.slots;
    eo.max_adapter_rank = o.max_adapter_rank;
    auto ex = gpu::cpu::CpuExecutor::create(s->checkpoint_, eo);
    if (!ex.ok()) return ex.error();
    s->executor_ = std::move(ex.value());
  } else if (o.device == "cuda") {
#ifdef MYRIAD_HAVE_CUDA
    gpu::cuda::CudaExecutorOptions eo;
    eo.kv_block_size = block;
    eo.kv_num_blocks = kv_blocks;
    eo.num_adapter_slots = o.slots;
    eo.max_adapter_rank = o.max_adapter_rank;
    eo.max_tokens_per_step = o.max_tokens_per_step;
    eo.max_rows = o.max_running;
    eo.cuda_graphs = true;
    auto ex = gpu::cuda::CudaExecutor::create(s->checkpoint_, eo);
    if (!ex.ok()) return ex.error();
    s->executor_ = std::move(ex.value());
#else
    return make_error(ErrorCode::kUnsupported, "--device cuda: this build has no CUDA (no toolkit at build time)");
#endif
  } else {
    return make_error(ErrorCode::kInvalidArgument, "--device " + o.device + ": expected cpu or cuda");
  }

  SchedulerConfig sc;
  sc.num_slots = o.slots;
  sc.quantum_ms = o.quantum_ms;
  sc.max_running_seqs = o.max_running;
  sc.max_tokens_per_step = o.max_tokens_per_step;
  sc.kv_block_size = block;
  sc.num_kv_blocks = kv_blocks;
  sc.max_seq_len = int32_t(std::min<int64_t>(ctx + 1, int64_t(kv_blocks) * block));
  s->dispatch_ = std::make_unique<Dispatch>();
  auto worker = EngineWorker::start(sc, *s->executor_, *s->source_, *s->dispatch_, s->tokenizer_);
  if (!worker.ok()) return worker.error();
  s->worker_ = std::move(worker.value());
  // Ids unique across restarts: milliseconds since the epoch in the high bits.
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  s->next_id_ = (uint64_t(now_ms) << 16) + 1;
  log_info("node: model {} ({}), {} adapter slots, {} KV blocks, device {}", s->model_name_, o.model_dir, o.slots,
           kv_blocks, s->executor_->info().device);
  return s;
}

NodeService::~NodeService() {
  if (worker_) worker_->stop(EngineWorker::StopMode::kCancel);
}

Result<AdapterName> NodeService::name_for(const Caller& caller, std::string_view name) const {
  auto n = parse_adapter_name(name, caller.tenant);
  if (!n.ok()) return n.error();
  if (!caller.admin && n.value().tenant != caller.tenant)
    return make_error(ErrorCode::kNotFound, "model '" + std::string(name) + "' does not exist");
  return n.value();
}

Result<ModelRef> NodeService::resolve(std::string_view model, const Caller& caller) const {
  if (model == model_name_) return ModelRef{};
  auto n = name_for(caller, model);
  if (!n.ok()) {
    if (n.error().code == ErrorCode::kNotFound) return n.error();
    return make_error(ErrorCode::kNotFound, "model '" + std::string(model) + "' does not exist");
  }
  auto r = store_->resolve(n.value());
  if (!r.ok()) return make_error(ErrorCode::kNotFound, "model '" + std::string(model) + "' does not exist");
  ModelRef m;
  m.base = false;
  m.adapter = r.value();
  return m;
}

Result<std::vector<ModelRef>> NodeService::models(const Caller& caller) const {
  std::vector<ModelRef> out(1);  // the base first
  auto list = store_->list(caller.admin ? std::string_view() : std::string_view(caller.tenant));
  if (!list.ok()) return list.error();
  // The newest version of each name (what "tenant/name" resolves to).
  for (const AdapterRecord& r : list.value()) {
    bool replaced = false;
    for (ModelRef& m : out)
      if (!m.base && m.adapter.id.tenant == r.id.tenant && m.adapter.id.name == r.id.name) {
        if (r.id.version > m.adapter.id.version) m.adapter = r;
        replaced = true;
      }
    if (!replaced) out.push_back(ModelRef{false, r});
  }
  return out;
}

Result<std::vector<int32_t>> NodeService::encode_prompt(std::string_view text) const {
  return tokenizer_->encode(text, /*add_special_tokens=*/true);
}

Result<std::vector<int32_t>> NodeService::encode_chat(const nlohmann::json& messages) const {
  if (chat_template_.empty())
    return make_error(ErrorCode::kUnsupported, "model '" + model_name_ + "' has no chat template; use /v1/completions");
  auto text = render_chat_template(chat_template_, messages, /*add_generation_prompt=*/true,
                                   chat_template_context(tokenizer_->config()));
  if (!text.ok()) return text.error();
  return tokenizer_->encode(text.value(), /*add_special_tokens=*/false);
}

void NodeService::ensure_registered(const AdapterId& id) {
  if (cache_->registered(id)) return;
  const AdapterStore* store = store_.get();
  // A concurrent registration of the same id loses harmlessly.
  (void)cache_->add(id, [store, id] { return store->load(id); });
}

Result<RequestId> NodeService::generate(GenerateCall call, EventCallback on_event) {
  if (draining_) return make_error(ErrorCode::kCancelled, "the node is shutting down");
  Request r;
  r.id = next_id_.fetch_add(1);
  if (!call.model.base) {
    ensure_registered(call.model.adapter.id);
    r.adapters = {AdapterUse{call.model.adapter.id, 1.0f}};
  }
  r.prompt = std::move(call.prompt);
  r.sampling = call.sampling;
  r.max_tokens = call.max_tokens;
  r.stop = std::move(call.stop);
  if (!call.ignore_eos) r.stop_token_ids = eos_ids_;
  r.stop_token_ids.insert(r.stop_token_ids.end(), call.stop_token_ids.begin(), call.stop_token_ids.end());
  r.timeout_ms = call.timeout_ms;
  const RequestId id = r.id;
  dispatch_->add(id, std::move(on_event));
  if (Status st = worker_->submit(std::move(r)); !st.ok()) {
    dispatch_->remove(id);
    return st.error();
  }
  return id;
}

void NodeService::cancel(RequestId id) { worker_->cancel(id); }

Result<AdapterRecord> NodeService::add_adapter_from_path(const Caller& caller, std::string_view name,
                                                          const std::string& path) {
  auto n = name_for(caller, name);
  if (!n.ok()) return make_error(ErrorCode::kInvalidArgument, n.error().message);
  return store_->publish_folder(n.value(), path);
}

Result<AdapterRecord> NodeService::add_adapter_bytes(const Caller& caller, std::string_view name,
                                                      std::string_view config_json, std::string_view safetensors) {
  auto n = name_for(caller, name);
  if (!n.ok()) return make_error(ErrorCode::kInvalidArgument, n.error().message);
  return store_->publish(n.value(), config_json, safetensors);
}

Status NodeService::remove_adapter(const Caller& caller, std::string_view name) {
  auto n = name_for(caller, name);
  if (!n.ok()) return n.error();
  // Requests already running keep their host copy (shared_ptr) until they end.
  if (n.value().version != 0) return store_->remove(n.value().pinned(n.value().version));
  return store_->remove_all_versions(n.value().tenant, n.value().name);
}

void NodeService::drain() {
  draining_ = true;
  worker_->stop(EngineWorker::StopMode::kDrain);
}

}  // namespace myriad::node
