#include "rpc_server.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/async.h>
#include <kj/debug.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "event_copy.h"
#include "actors/adapter_info_wire.h"
#include "actors/common_wire.h"
#include "runtime/adapter_id.h"
#include "runtime/log.h"
#include "schema/api.capnp.h"

namespace myriad::node {

namespace api = schema::api;
using SCode = schema::ErrorCode;
using Clock = std::chrono::steady_clock;
using actors::as_string;

namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

int64_t unix_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Any result struct with an `error` member of its union.
template <class Builder>
void set_error(Builder result, SCode code, const std::string& message) {
  auto e = result.initError();
  e.setCode(code);
  e.setMessage(message);
}

SCode code_of(const Error& e) { return actors::to_schema(e.code); }

// A JsonResult: the JSON text, or the error (the FineTuning and TrainingRun answers).
void answer(api::JsonResult::Builder r, const Result<nlohmann::json>& j) {
  if (j.ok()) {
    r.setJson(j.value().dump());
  } else {
    set_error(r, code_of(j.error()), j.error().message);
  }
}

const char* arch_name(ModelArch a) {
  switch (a) {
    case ModelArch::kLlama: return "LlamaForCausalLM";
    case ModelArch::kMistral: return "MistralForCausalLM";
    case ModelArch::kQwen2: return "Qwen2ForCausalLM";
  }
  return "unknown";
}

// A token's alternatives (sampling.topLogprobs) into its TokenEvent.
void write_top(const EventCopy& ev, api::TokenEvent::Builder out) {
  if (ev.top.empty()) return;
  auto top = out.initTop(static_cast<unsigned>(ev.top.size()));
  for (unsigned i = 0; i < top.size(); ++i) {
    top[i].setToken(ev.top[i].token);
    top[i].setLogprob(ev.top[i].logprob);
  }
}

// Where the worker thread leaves one request's events for the loop thread.
// Bounded: past `limit` waiting token events the request has overflowed
// (its client does not acknowledge its stream); tokens are then dropped and
// the loop cancels the request. The fulfillers are created, reset and
// destroyed on the loop thread only (under `mu`); the worker only fulfils.
struct Mailbox {
  std::mutex mu;
  std::deque<EventCopy> events;
  size_t limit = 0;
  bool closed = false;    // the loop side is gone: drop everything
  bool overflow = false;
  bool woken = false;     // `wake` has been fulfilled
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> wake;      // set while the loop waits for events
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> overflowed;  // fulfilled once, at the first overflow

  void post(const RequestEvent& e) {
    if (e.kind == EventKind::kLogits) return;
    EventCopy ev = EventCopy::of(e);
    std::lock_guard lock(mu);
    if (closed) return;
    if (!e.is_final() && events.size() >= limit) {
      if (!overflow && overflowed) overflowed->fulfill();
      overflow = true;
      return;
    }
    events.push_back(std::move(ev));
    if (wake && !woken) {
      wake->fulfill();
      woken = true;
    }
  }
};

}  // namespace

struct RpcServer::Impl {
  class Session;
  class AdaptersImpl;
  class UploadImpl;
  class FineTuningImpl;
  class TrainingRunImpl;
  class GenerateOp;

  Impl(NodeService& s, const Tenants& t, const RpcOptions& o) : service(s), tenants(t), opts(o) {
    if (!opts.limits) opts.limits = TenantLimits::create({});
  }
  void run(std::promise<Result<uint16_t>>& ready);

  NodeService& service;
  const Tenants& tenants;
  RpcOptions opts;
  std::thread thread;
  uint16_t bound_port = 0;
  const Clock::time_point started = Clock::now();
  const int64_t started_unix_ms = unix_ms_now();
  std::mutex stop_mu;
  kj::Own<kj::CrossThreadPromiseFulfiller<void>> stop_fulfiller;  // reset on the loop thread

  // The loop thread's own state.
  std::set<GenerateOp*> ops;
  std::mt19937_64 seeds{std::random_device{}()};

  // "name", "tenant/name[@N]" of the caller's tenant (any for an admin);
  // another tenant's name answers notFound exactly like a missing one.
  Result<AdapterName> own_name(const Caller& caller, std::string_view text) const;
};

Result<AdapterName> RpcServer::Impl::own_name(const Caller& caller, std::string_view text) const {
  auto n = parse_adapter_name_for(text, caller.tenant, caller.admin);
  if (!n.ok() && n.error().code != ErrorCode::kNotFound) return make_error(ErrorCode::kInvalidArgument, n.error().message);
  return n;
}

// One accepted generate call, from submit to its final event. Owned by the
// call's promise: destroying it (the client dropped the call or the
// connection) cancels the request if it has not ended.
class RpcServer::Impl::GenerateOp {
 public:
  GenerateOp(Impl& s, std::string tenant, std::string client_id, std::optional<api::TokenSink::Client> sink)
      : s_(s), tenant_(std::move(tenant)), client_id_(std::move(client_id)), sink_(std::move(sink)) {
    mailbox_ = std::make_shared<Mailbox>();
    mailbox_->limit = s.opts.max_buffered_events;
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    mailbox_->overflowed = kj::mv(paf.fulfiller);
    overflow_ = kj::mv(paf.promise);
  }
  ~GenerateOp() {
    {
      std::lock_guard lock(mailbox_->mu);
      mailbox_->closed = true;
      mailbox_->wake = nullptr;
      mailbox_->overflowed = nullptr;
    }
    if (registered_) {
      if (!final_) s_.service.cancel(id_);  // dropped call or connection: free its KV
      s_.ops.erase(this);
    }
  }

  std::shared_ptr<Mailbox> mailbox() const { return mailbox_; }
  void accepted(RequestId id, TenantLimits::Ticket ticket) {
    id_ = id;
    registered_ = true;
    ticket_ = std::move(ticket);
    s_.ops.insert(this);
  }
  const std::string& tenant() const { return tenant_; }
  const std::string& client_id() const { return client_id_; }
  RequestId id() const { return id_; }

  // Streams the events until the final one, or until the client's
  // backlog overflows (the request is then cancelled).
  kj::Promise<void> run() {
    return pump().exclusiveJoin(kj::mv(overflow_).then([this] {
      overflowed_ = true;
      s_.service.cancel(id_);
    }));
  }

  void answer(api::GenerateResult::Builder r, const std::string& model, uint32_t prompt_tokens) const {
    const auto now = Clock::now();
    r.setModel(model);
    r.setRequestId(client_id_);
    r.setPromptTokens(prompt_tokens);
    r.setTtftMs(first_token_ ? ms_between(accepted_at_, *first_token_) : -1.0);
    r.setTotalMs(ms_between(accepted_at_, now));
    r.setQueueMs(final_ ? final_->queue_ms : -1.0);
    if (!sink_) {
      auto list = r.initTokens(uint32_t(tokens_.size()));
      for (size_t i = 0; i < tokens_.size(); ++i) {
        list[uint32_t(i)].setIndex(tokens_[i].index);
        list[uint32_t(i)].setTokenId(tokens_[i].token);
        list[uint32_t(i)].setText(tokens_[i].text);
        list[uint32_t(i)].setLogprob(tokens_[i].logprob);
        write_top(tokens_[i], list[uint32_t(i)]);
      }
    }
    if (overflowed_) {
      r.setCompletionTokens(sent_);
      set_error(r, SCode::RESOURCE_EXHAUSTED,
                "the client stopped reading its token stream: " + std::to_string(s_.opts.max_buffered_events) +
                    " events waited, the most one request may buffer; the request was cancelled");
      return;
    }
    KJ_ASSERT(final_ != std::nullopt);
    r.setCompletionTokens(final_->num_output_tokens);
    if (final_->kind == EventKind::kFailed) {
      set_error(r, code_of(final_->error), final_->error.message);
      return;
    }
    r.setText(final_->text);
    r.setFinishReason(actors::to_schema(final_->reason));
  }
  void set_logprobs(bool on) { logprobs_ = on; }

 private:
  // Waits until the worker has left events in the mailbox.
  kj::Promise<void> wait_for_events() {
    std::lock_guard lock(mailbox_->mu);
    mailbox_->wake = nullptr;  // the last wait's, fulfilled: destroyed here, on the loop thread
    mailbox_->woken = false;
    if (!mailbox_->events.empty()) return kj::READY_NOW;
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    mailbox_->wake = kj::mv(paf.fulfiller);
    return kj::mv(paf.promise);
  }

  kj::Promise<void> pump() {
    return wait_for_events().then([this] {
      {
        std::lock_guard lock(mailbox_->mu);
        while (!mailbox_->events.empty()) {
          pending_.push_back(std::move(mailbox_->events.front()));
          mailbox_->events.pop_front();
        }
      }
      return send_pending();
    });
  }

  // Hands the taken events to the sink one stream call at a time (each
  // send's promise resolves when the flow-control window has room).
  kj::Promise<void> send_pending() {
    while (!pending_.empty()) {
      EventCopy ev = std::move(pending_.front());
      pending_.pop_front();
      if (ev.kind != EventKind::kToken) {
        final_ = std::move(ev);
        return kj::READY_NOW;
      }
      if (!first_token_) first_token_ = Clock::now();
      if (!logprobs_) ev.logprob = 0.0f;
      ++sent_;
      if (!sink_) {
        tokens_.push_back(std::move(ev));
        continue;
      }
      auto req = sink_->tokenRequest();
      auto e = req.initEvent();
      e.setIndex(ev.index);
      e.setTokenId(ev.token);
      e.setText(ev.text);
      e.setLogprob(ev.logprob);
      write_top(ev, e);
      return req.send().then([this] { return send_pending(); });
    }
    return pump();
  }

  Impl& s_;
  std::string tenant_, client_id_;
  std::optional<api::TokenSink::Client> sink_;
  std::shared_ptr<Mailbox> mailbox_;
  kj::Promise<void> overflow_ = nullptr;
  TenantLimits::Ticket ticket_;  // the request counts as open for its tenant while the op lives
  RequestId id_ = 0;
  bool registered_ = false, overflowed_ = false, logprobs_ = false;
  const Clock::time_point accepted_at_ = Clock::now();
  std::optional<Clock::time_point> first_token_;
  std::deque<EventCopy> pending_;  // taken from the mailbox, not yet sent
  std::vector<EventCopy> tokens_;  // every token, without a sink
  uint32_t sent_ = 0;
  std::optional<EventCopy> final_;
};

// One adapter upload in progress (Adapters.beginUpload).
class RpcServer::Impl::UploadImpl final : public api::AdapterUpload::Server {
 public:
  UploadImpl(Impl& s, Caller caller, std::string name, uint64_t announced)
      : s_(s), caller_(std::move(caller)), name_(std::move(name)), announced_(announced) {}

  kj::Promise<void> write(WriteContext context) override {
    const auto chunk = context.getParams().getChunk();
    if (finished_ || too_large_) return kj::READY_NOW;
    if (bytes_.size() + chunk.size() > announced_ || bytes_.size() + chunk.size() > s_.opts.max_upload_bytes) {
      too_large_ = true;
      bytes_.clear();
      bytes_.shrink_to_fit();
      return kj::READY_NOW;
    }
    bytes_.append(reinterpret_cast<const char*>(chunk.begin()), chunk.size());
    return kj::READY_NOW;
  }

  kj::Promise<void> finish(FinishContext context) override {
    auto r = context.getResults().initResult();
    if (finished_) {
      set_error(r, SCode::INVALID_ARGUMENT, "this upload has already finished");
      return kj::READY_NOW;
    }
    finished_ = true;
    if (too_large_) {
      set_error(r, SCode::RESOURCE_EXHAUSTED,
                "adapter_model.safetensors: more bytes than the " + std::to_string(announced_) +
                    " announced in beginUpload (the node's limit is " + std::to_string(s_.opts.max_upload_bytes) +
                    "); nothing was published");
      return kj::READY_NOW;
    }
    if (bytes_.size() != announced_) {
      set_error(r, SCode::BAD_FILE,
                "adapter_model.safetensors: " + std::to_string(bytes_.size()) + " bytes arrived of the " +
                    std::to_string(announced_) + " announced; nothing was published");
      return kj::READY_NOW;
    }
    const std::string config = as_string(context.getParams().getConfigJson());
    // Validation and the store's fsync run on the loop thread: an adapter
    // of a few MiB takes milliseconds.
    auto rec = s_.service.add_adapter_bytes(caller_, name_, config, bytes_);
    bytes_.clear();
    bytes_.shrink_to_fit();
    if (!rec.ok()) {
      set_error(r, code_of(rec.error()), rec.error().message);
      return kj::READY_NOW;
    }
    actors::write_adapter_info(rec.value(), r.initAdapter());
    log_info("rpc: {} published {} ({} bytes)", caller_.tenant, rec.value().id.to_string(), rec.value().size_bytes);
    return kj::READY_NOW;
  }

 private:
  Impl& s_;
  Caller caller_;
  std::string name_;
  uint64_t announced_;
  std::string bytes_;
  bool too_large_ = false, finished_ = false;
};

// One tenant's adapters (Myriad.adapters).
class RpcServer::Impl::AdaptersImpl final : public api::Adapters::Server {
 public:
  AdaptersImpl(Impl& s, Caller caller) : s_(s), caller_(std::move(caller)) {}

  kj::Promise<void> beginUpload(BeginUploadContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    const std::string name = as_string(p.getName());
    // The name is checked before any byte is sent: its form, then its
    // tenant (another tenant's name is refused as the HTTP API refuses it).
    auto n = parse_adapter_name_for(name, caller_.tenant, caller_.admin);
    if (!n.ok()) {
      set_error(r, SCode::INVALID_ARGUMENT,
                n.error().code == ErrorCode::kNotFound ? "model '" + name + "' does not exist" : n.error().message);
      return kj::READY_NOW;
    }
    if (n.value().version != 0) {
      set_error(r, SCode::INVALID_ARGUMENT,
                "name '" + name + "': an upload publishes the next version; give the name without @N");
      return kj::READY_NOW;
    }
    if (p.getSizeBytes() > s_.opts.max_upload_bytes) {
      set_error(r, SCode::RESOURCE_EXHAUSTED,
                "adapter_model.safetensors is " + std::to_string(p.getSizeBytes()) +
                    " bytes; this node accepts uploads of at most " + std::to_string(s_.opts.max_upload_bytes) +
                    " (--max-body-bytes)");
      return kj::READY_NOW;
    }
    r.setUpload(kj::heap<UploadImpl>(s_, caller_, name, p.getSizeBytes()));
    return kj::READY_NOW;
  }

  kj::Promise<void> addFromPath(AddFromPathContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    auto rec = s_.service.add_adapter_from_path(caller_, as_string(p.getName()), as_string(p.getPath()));
    if (!rec.ok()) {
      set_error(r, code_of(rec.error()), rec.error().message);
      return kj::READY_NOW;
    }
    actors::write_adapter_info(rec.value(), r.initAdapter());
    return kj::READY_NOW;
  }

  kj::Promise<void> list(ListContext context) override {
    auto r = context.getResults().initResult();
    auto all = s_.service.list_adapters(caller_);
    if (!all.ok()) {
      set_error(r, code_of(all.error()), all.error().message);
      return kj::READY_NOW;
    }
    write_list(all.value(), r);
    return kj::READY_NOW;
  }

  kj::Promise<void> get(GetContext context) override {
    auto r = context.getResults().initResult();
    const std::string name = as_string(context.getParams().getName());
    auto n = s_.own_name(caller_, name);
    if (!n.ok()) {
      set_error(r, code_of(n.error()), n.error().message);
      return kj::READY_NOW;
    }
    auto rec = s_.service.resolve(n.value().to_string(), caller_);
    if (!rec.ok() || rec.value().base) {
      set_error(r, SCode::NOT_FOUND, "adapter '" + name + "' does not exist");
      return kj::READY_NOW;
    }
    actors::write_adapter_info(rec.value().adapter, r.initAdapter());
    return kj::READY_NOW;
  }

  kj::Promise<void> delete_(DeleteContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    const std::string name = as_string(p.getName());
    auto n = s_.own_name(caller_, name);
    if (!n.ok()) {
      set_error(r, code_of(n.error()), n.error().message);
      return kj::READY_NOW;
    }
    AdapterName target = n.value();
    if (p.getVersion() != 0) {
      if (target.version != 0 && target.version != p.getVersion()) {
        set_error(r, SCode::INVALID_ARGUMENT,
                  "name '" + name + "' pins a version other than version " + std::to_string(p.getVersion()));
        return kj::READY_NOW;
      }
      target.version = p.getVersion();
    }
    const std::string qualified =
        target.tenant + "/" + target.name + (target.version ? "@" + std::to_string(target.version) : "");
    auto doomed = s_.service.delete_adapter(caller_, qualified);
    if (!doomed.ok()) {
      set_error(r, code_of(doomed.error()),
                doomed.error().code == ErrorCode::kNotFound ? "adapter '" + target.to_string() + "' does not exist"
                                                            : doomed.error().message);
      return kj::READY_NOW;
    }
    write_list(doomed.value(), r);
    return kj::READY_NOW;
  }

  kj::Promise<void> versions(VersionsContext context) override {
    auto r = context.getResults().initResult();
    const std::string name = as_string(context.getParams().getName());
    auto n = s_.own_name(caller_, name);
    if (!n.ok()) {
      set_error(r, code_of(n.error()), n.error().message);
      return kj::READY_NOW;
    }
    auto all = s_.service.adapter_versions(caller_, n.value().to_string());
    if (!all.ok() || all.value().empty()) {
      set_error(r, SCode::NOT_FOUND, "adapter '" + name + "' does not exist");
      return kj::READY_NOW;
    }
    write_list(all.value(), r);
    return kj::READY_NOW;
  }

 private:
  static void write_list(const std::vector<AdapterRecord>& records, api::AdapterListResult::Builder r) {
    auto list = r.initAdapters(uint32_t(records.size()));
    for (size_t i = 0; i < records.size(); ++i) actors::write_adapter_info(records[i], list[uint32_t(i)]);
  }

  Impl& s_;
  Caller caller_;
};

// A `Myriad` capability: the bootstrap (a session of the `default` tenant
// on a node without keys; on one with keys, only health/stats/login) or a
// tenant's session from login.
// One tenant's fine-tuning files and jobs (Myriad.fineTuning): the HTTP
// API's JSON answers, from the same FineTuning.
class RpcServer::Impl::FineTuningImpl final : public api::FineTuning::Server {
 public:
  FineTuningImpl(Impl& s, Caller caller) : s_(s), caller_(std::move(caller)) {}

  kj::Promise<void> uploadFile(UploadFileContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    FineTuning* ft = fine_tuning(r);
    if (!ft) return kj::READY_NOW;
    const auto content = p.getContent();
    if (content.size() > s_.opts.max_upload_bytes) {
      set_error(r, SCode::RESOURCE_EXHAUSTED,
                "the file is " + std::to_string(content.size()) + " bytes; this node accepts at most " +
                    std::to_string(s_.opts.max_upload_bytes) + " (--max-body-bytes)");
      return kj::READY_NOW;
    }
    auto f = ft->add_file(caller_, as_string(p.getFilename()), "fine-tune",
                          std::string_view(reinterpret_cast<const char*>(content.begin()), content.size()));
    answer(r, f.ok() ? Result<nlohmann::json>(fine_tuning_file_json(f.value())) : Result<nlohmann::json>(f.error()));
    return kj::READY_NOW;
  }

  kj::Promise<void> listFiles(ListFilesContext context) override {
    auto r = context.getResults().initResult();
    FineTuning* ft = fine_tuning(r);
    if (!ft) return kj::READY_NOW;
    auto files = ft->list_files(caller_);
    if (!files.ok()) {
      answer(r, files.error());
      return kj::READY_NOW;
    }
    nlohmann::json data = nlohmann::json::array();
    for (const auto& f : files.value()) data.push_back(fine_tuning_file_json(f));
    answer(r, nlohmann::json{{"object", "list"}, {"data", data}, {"has_more", false}});
    return kj::READY_NOW;
  }

  kj::Promise<void> createJob(CreateJobContext context) override {
    auto r = context.getResults().initResult();
    FineTuning* ft = fine_tuning(r);
    if (!ft) return kj::READY_NOW;
    const auto body = nlohmann::json::parse(as_string(context.getParams().getRequestJson()), nullptr, false);
    if (body.is_discarded() || !body.is_object()) {
      set_error(r, SCode::INVALID_ARGUMENT, "requestJson: not a JSON object");
      return kj::READY_NOW;
    }
    answer(r, ft->create_job(caller_, body));
    return kj::READY_NOW;
  }

  kj::Promise<void> listJobs(ListJobsContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r)) answer(r, ft->list_jobs(caller_, as_string(p.getAfter()), limit(p.getLimit())));
    return kj::READY_NOW;
  }

  kj::Promise<void> getJob(GetJobContext context) override {
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r)) answer(r, ft->get_job(caller_, as_string(context.getParams().getId())));
    return kj::READY_NOW;
  }

  kj::Promise<void> cancelJob(CancelJobContext context) override {
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r)) answer(r, ft->cancel_job(caller_, as_string(context.getParams().getId())));
    return kj::READY_NOW;
  }

  kj::Promise<void> events(EventsContext context) override {
    const auto p = context.getParams();
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r))
      answer(r, ft->job_events(caller_, as_string(p.getId()), as_string(p.getAfter()), limit(p.getLimit())));
    return kj::READY_NOW;
  }

  kj::Promise<void> checkpoints(CheckpointsContext context) override {
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r)) answer(r, ft->job_checkpoints(caller_, as_string(context.getParams().getId())));
    return kj::READY_NOW;
  }

  kj::Promise<void> trainingRun(TrainingRunContext context) override;

  kj::Promise<void> listRunCheckpoints(ListRunCheckpointsContext context) override {
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r)) answer(r, ft->list_run_checkpoints(caller_));
    return kj::READY_NOW;
  }

  kj::Promise<void> deleteRunCheckpoint(DeleteRunCheckpointContext context) override {
    auto r = context.getResults().initResult();
    if (FineTuning* ft = fine_tuning(r))
      answer(r, ft->delete_run_checkpoint(caller_, as_string(context.getParams().getId())));
    return kj::READY_NOW;
  }

 private:
  static int64_t limit(uint32_t n) { return n == 0 ? 20 : int64_t(std::min<uint32_t>(n, 10000)); }
  // The node's FineTuning, or null after answering why there is none.
  FineTuning* fine_tuning(api::JsonResult::Builder r) {
    FineTuning* ft = s_.service.fine_tuning();
    if (!ft) set_error(r, SCode::UNSUPPORTED, s_.service.fine_tuning_unavailable());
    return ft;
  }

  Impl& s_;
  Caller caller_;
};

// One client-driven training run (FineTuning.trainingRun): each call is
// posted to the worker's thread and answered on this loop through a
// cross-thread promise.
class RpcServer::Impl::TrainingRunImpl final : public api::TrainingRun::Server {
 public:
  TrainingRunImpl(Impl& s, Caller caller, std::shared_ptr<TrainingRun> run)
      : s_(s), caller_(std::move(caller)), run_(std::move(run)) {}

  kj::Promise<void> forwardBackward(ForwardBackwardContext context) override {
    FineTuning* ft = s_.service.fine_tuning();
    std::vector<std::string> lines;
    for (auto e : context.getParams().getExamples()) lines.push_back(as_string(e));
    auto batch = ft->parse_examples(lines);
    if (!batch.ok()) return answered(context, batch.error());
    auto h = std::make_shared<Handoff>();
    auto promise = h->promise();
    run_->forward_backward(std::move(batch.value()), [h](Result<ForwardBackwardResult> r) {
      if (!r.ok()) return h->set(r.error());
      h->set(nlohmann::json{
          {"loss", r.value().loss}, {"tokens", r.value().tokens}, {"target_tokens", r.value().target_tokens}});
    });
    return promise.then([context, h]() mutable { answer(context.getResults().initResult(), h->take()); });
  }

  kj::Promise<void> optimStep(OptimStepContext context) override {
    const auto p = context.getParams();
    auto h = std::make_shared<Handoff>();
    auto promise = h->promise();
    run_->optim_step(p.getLearningRate(), p.getMaxGradNorm(), [h](Result<OptimStepResult> r) {
      if (!r.ok()) return h->set(r.error());
      h->set(nlohmann::json{
          {"step", r.value().step}, {"grad_norm", r.value().grad_norm}, {"accumulated", r.value().accumulated}});
    });
    return promise.then([context, h]() mutable { answer(context.getResults().initResult(), h->take()); });
  }

  kj::Promise<void> publish(PublishContext context) override {
    auto h = std::make_shared<Handoff>();
    auto promise = h->promise();
    run_->snapshot([h](Result<RunSnapshot> snap) {
      if (!snap.ok()) return h->set(snap.error());
      {
        std::lock_guard lock(h->mu);
        h->weights = std::move(snap.value().weights);
        h->step = snap.value().step;
      }
      h->set(nlohmann::json());
    });
    // The files are written here, off the worker's thread.
    return promise.then([this, context, h]() mutable {
      std::lock_guard lock(h->mu);
      if (!h->weights) return answer(context.getResults().initResult(), std::move(h->result));
      auto rec = s_.service.fine_tuning()->publish_run(*run_, std::move(h->weights), h->step);
      answer(context.getResults().initResult(),
             rec.ok() ? Result<nlohmann::json>(nlohmann::json{{"adapter", rec.value().id.to_string()}, {"step", h->step}})
                      : Result<nlohmann::json>(rec.error()));
    });
  }

  kj::Promise<void> sample(SampleContext context) override;

  kj::Promise<void> saveState(SaveStateContext context) override {
    auto h = std::make_shared<Handoff>();
    auto promise = h->promise();
    run_->state([h](Result<std::shared_ptr<const TrainingRunState>> state) {
      if (!state.ok()) return h->set(state.error());
      {
        std::lock_guard lock(h->mu);
        h->state = std::move(state.value());
      }
      h->set(nlohmann::json());
    });
    // The file is written here, off the worker's thread.
    return promise.then([this, context, h]() mutable {
      std::lock_guard lock(h->mu);
      if (!h->state) return answer(context.getResults().initResult(), std::move(h->result));
      answer(context.getResults().initResult(), s_.service.fine_tuning()->save_run_state(*run_, *h->state));
    });
  }

  kj::Promise<void> describe(DescribeContext context) override {
    answer(context.getResults().initResult(), run_->describe());
    return kj::READY_NOW;
  }

 private:
  // An answer made on another thread (the worker's, or the engine's event
  // callback) for this loop: a void promise (GCC 12 warns falsely on kj's
  // storage of a promised json) and the value beside it.
  struct Handoff {
    std::mutex mu;
    Result<nlohmann::json> result = make_error(ErrorCode::kInternal, "no answer");
    std::shared_ptr<const LoraWeights> weights;  // publish's snapshot
    int64_t step = 0;
    std::shared_ptr<const TrainingRunState> state;  // saveState's copy
    bool done = false;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
    kj::Promise<void> promise() {
      auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
      fulfiller = kj::mv(paf.fulfiller);
      return kj::mv(paf.promise);
    }
    // Once; later calls are ignored.
    void set(Result<nlohmann::json> r) {
      std::lock_guard lock(mu);
      if (done) return;
      done = true;
      result = std::move(r);
      fulfiller->fulfill();
    }
    Result<nlohmann::json> take() {
      std::lock_guard lock(mu);
      return std::move(result);
    }
  };
  template <class Ctx>
  static kj::Promise<void> answered(Ctx& context, const Result<nlohmann::json>& j) {
    answer(context.getResults().initResult(), j);
    return kj::READY_NOW;
  }

  Impl& s_;
  Caller caller_;
  std::shared_ptr<TrainingRun> run_;
};

// Generates from the run's newest published version and answers the whole
// text once the request's final event arrives; dropping the call cancels it.
kj::Promise<void> RpcServer::Impl::TrainingRunImpl::sample(SampleContext context) {
  const auto p = context.getParams();
  const auto version = run_->published();
  if (!version)
    return answered(context, make_error(ErrorCode::kInvalidArgument, "nothing published yet: call publish first"));
  NodeService& service = s_.service;
  auto model = service.resolve(version->to_string(), caller_);
  if (!model.ok()) return answered(context, model.error());
  auto prompt = service.encode_prompt(as_string(p.getPrompt()));
  if (!prompt.ok()) return answered(context, prompt.error());
  if (p.getMaxTokens() < 1 || p.getMaxTokens() > 4096)
    return answered(context, make_error(ErrorCode::kInvalidArgument, "maxTokens must be in [1, 4096]"));
  GenerateCall call;
  call.model = model.value();
  call.prompt = std::move(prompt.value());
  call.max_tokens = p.getMaxTokens();
  call.sampling.temperature = p.getTemperature();
  call.sampling.seed = p.getSeed();
  struct Collected {
    std::mutex mu;
    std::string text;
    uint32_t tokens = 0;
    bool ended = false;
  };
  auto collected = std::make_shared<Collected>();
  auto h = std::make_shared<Handoff>();
  auto promise = h->promise();
  const std::string adapter = version->to_string();
  auto id = service.generate(std::move(call), [collected, h, adapter](const RequestEvent& e) {
    std::lock_guard lock(collected->mu);
    if (e.kind == EventKind::kToken) {
      collected->text.append(e.text);
      ++collected->tokens;
      return;
    }
    if (!e.is_final() || collected->ended) return;
    collected->ended = true;
    if (e.kind == EventKind::kFailed) return h->set(e.error);
    collected->text.append(e.text);
    h->set(nlohmann::json{{"text", collected->text},
                          {"adapter", adapter},
                          {"finish_reason", finish_reason_name(e.reason)},
                          {"completion_tokens", collected->tokens}});
  });
  if (!id.ok()) return answered(context, id.error());
  auto cancel_if_dropped = kj::defer([&service, rid = id.value(), collected] {
    bool ended = false;
    {
      std::lock_guard lock(collected->mu);
      ended = collected->ended;
    }
    if (!ended) service.cancel(rid);  // unlocked: the cancel's final event takes the lock
  });
  return promise.then([context, h, guard = kj::mv(cancel_if_dropped)]() mutable {
    answer(context.getResults().initResult(), h->take());
  });
}

kj::Promise<void> RpcServer::Impl::FineTuningImpl::trainingRun(TrainingRunContext context) {
  auto r = context.getResults().initResult();
  FineTuning* ft = fine_tuning(r);
  if (!ft) return kj::READY_NOW;
  const auto body = nlohmann::json::parse(as_string(context.getParams().getRequestJson()), nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    set_error(r, SCode::INVALID_ARGUMENT, "requestJson: not a JSON object");
    return kj::READY_NOW;
  }
  auto run = ft->open_run(caller_, body);
  if (!run.ok()) {
    answer(r, run.error());
    return kj::READY_NOW;
  }
  answer(r, run.value()->describe());
  context.getResults().setRun(kj::heap<TrainingRunImpl>(s_, caller_, run.value()));
  return kj::READY_NOW;
}

class RpcServer::Impl::Session final : public api::Myriad::Server {
 public:
  Session(Impl& s, std::optional<Caller> caller) : s_(s), caller_(std::move(caller)) {}

  kj::Promise<void> generate(GenerateContext context) override;

  kj::Promise<void> adapters(AdaptersContext context) override {
    // Without a session, every method of the Adapters it gets answers unauthenticated.
    if (!caller_) {
      context.getResults().setAdapters(kj::heap<Unauthenticated>());
      return kj::READY_NOW;
    }
    context.getResults().setAdapters(kj::heap<AdaptersImpl>(s_, *caller_));
    return kj::READY_NOW;
  }

  kj::Promise<void> fineTuning(FineTuningContext context) override {
    if (!caller_) {
      context.getResults().setFineTuning(kj::heap<UnauthenticatedFineTuning>());
      return kj::READY_NOW;
    }
    context.getResults().setFineTuning(kj::heap<FineTuningImpl>(s_, *caller_));
    return kj::READY_NOW;
  }

  kj::Promise<void> models(ModelsContext context) override {
    auto r = context.getResults().initResult();
    if (!caller_) {
      set_error(r, SCode::UNAUTHENTICATED, kNeedsLogin);
      return kj::READY_NOW;
    }
    auto list = s_.service.models(*caller_);
    if (!list.ok()) {
      set_error(r, code_of(list.error()), list.error().message);
      return kj::READY_NOW;
    }
    auto out = r.initModels(uint32_t(list.value().size()));
    for (size_t i = 0; i < list.value().size(); ++i) {
      const ModelRef& m = list.value()[i];
      auto o = out[uint32_t(i)];
      if (m.base) {
        o.setId(s_.service.model_name());
        o.setOwnedBy("myriad");
        o.setCreatedUnixMs(s_.started_unix_ms);
        auto b = o.initBase();
        b.setFingerprint(s_.service.base_fingerprint());
        b.setArchitecture(arch_name(s_.service.model_config().arch));
        b.setContextLength(uint32_t(std::max<int64_t>(0, s_.service.context_length())));
        b.setVocabSize(uint32_t(s_.service.model_config().vocab_size));
      } else {
        o.setId(m.adapter.id.qualified_name());
        o.setOwnedBy(m.adapter.id.tenant);
        o.setCreatedUnixMs(m.adapter.created_unix_ms);
        actors::write_adapter_info(m.adapter, o.initAdapter());
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> health(HealthContext context) override {
    auto h = context.getResults().initHealth();
    const bool draining = s_.service.draining();
    h.setState(draining ? api::HealthState::DRAINING : api::HealthState::SERVING);
    h.setVersion("myriad");
    h.setUptimeMs(uint64_t(ms_between(s_.started, Clock::now())));
    h.setBaseModel(s_.service.model_name());
    const auto [up, total] = s_.service.worker_counts();
    h.setWorkersUp(draining ? 0 : up);
    h.setWorkersTotal(total);
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext context) override {
    auto st = context.getResults().initStats();
    const EngineWorkerStats w = s_.service.stats();
    st.setRequestsRunning(uint32_t(w.running));
    st.setRequestsQueued(uint32_t(w.queued));
    // The engine's figures are read between steps: this waits at most one step.
    const auto m = nlohmann::json::parse(s_.service.metrics_json(), nullptr, /*allow_exceptions=*/false);
    auto num = [](const nlohmann::json& j, const char* key) {
      return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
    };
    double submitted = 0, failed = 0, cancelled = 0, output = 0;
    if (m.is_object() && m.contains("per_adapter") && m["per_adapter"].is_object())
      for (const auto& [key, v] : m["per_adapter"].items()) {
        submitted += num(v, "submitted");
        failed += num(v, "failed") + num(v, "rejected");
        cancelled += num(v, "cancelled");
        output += num(v, "output_tokens");
      }
    st.setRequestsTotal(uint64_t(submitted));
    st.setRequestsFailed(uint64_t(failed));
    st.setRequestsCancelled(uint64_t(cancelled));
    st.setOutputTokensTotal(uint64_t(output));
    st.setAdapterSwapsTotal(uint64_t(num(m, "swaps")));
    const nlohmann::json overall = m.is_object() && m.contains("overall") ? m["overall"] : nlohmann::json::object();
    const nlohmann::json ttft = overall.contains("ttft_ms") ? overall["ttft_ms"] : nlohmann::json::object();
    const nlohmann::json itl = overall.contains("itl_ms") ? overall["itl_ms"] : nlohmann::json::object();
    st.setTtftMsP50(num(ttft, "p50"));
    st.setTtftMsP99(num(ttft, "p99"));
    st.setItlMsP50(num(itl, "p50"));
    st.setItlMsP99(num(itl, "p99"));
    // Every worker as the gateway last heard from it (one for --role all).
    const nlohmann::json gateway = m.is_object() && m.contains("gateway") ? m["gateway"] : nlohmann::json::object();
    const nlohmann::json list = gateway.contains("workers") ? gateway["workers"] : nlohmann::json::array();
    auto workers = st.initWorkers(uint32_t(list.size()));
    for (uint32_t i = 0; i < list.size(); ++i) {
      const nlohmann::json& g = list[i];
      auto out = workers[i];
      out.setWorker(g.value("id", ""));
      out.setDevice(g.value("device", ""));
      out.setQueued(g.value("queued", uint32_t(0)));
      out.setRunning(g.value("running", uint32_t(0)));
      out.setTotalSlots(g.value("slots", uint32_t(0)));
      out.setActiveAdapters(g.value("resident", uint32_t(0)));
      out.setStepMs(g.value("step_ms", 0.0f));
      out.setUp(g.value("up", false));
      out.setDraining(g.value("draining", false));
      out.setPendingTokens(g.value("pending_tokens", uint64_t(0)));
      out.setReportAgeMs(g.value("report_age_ms", 0.0));
      // Adapter names are tenants' business: listed for an operator (or a node without keys) only.
      const bool operator_view = !s_.tenants.requires_key() || (caller_ && caller_->admin);
      for (const auto& [field, key] : {std::pair{0, "resident_adapters"}, std::pair{1, "host_cached_adapters"}}) {
        const nlohmann::json names = g.contains(key) && operator_view ? g[key] : nlohmann::json::array();
        auto to = field == 0 ? out.initResident(uint32_t(names.size())) : out.initHostCached(uint32_t(names.size()));
        for (uint32_t j = 0; j < names.size(); ++j) to.set(j, names[j].get<std::string>());
      }
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> login(LoginContext context) override {
    auto r = context.getResults().initResult();
    auto caller = s_.tenants.authenticate(std::string_view(as_string(context.getParams().getApiKey())));
    if (!caller.ok()) {
      set_error(r, SCode::UNAUTHENTICATED, "invalid API key");  // the same answer for every wrong key
      return kj::READY_NOW;
    }
    r.setTenant(caller.value().tenant);
    r.setAdmin(caller.value().admin);
    r.setSession(kj::heap<Session>(s_, caller.value()));
    return kj::READY_NOW;
  }

  kj::Promise<void> cancel(CancelContext context) override {
    bool found = false;
    if (caller_) {
      const std::string wanted = as_string(context.getParams().getRequestId());
      for (GenerateOp* op : s_.ops)
        if (!wanted.empty() && op->client_id() == wanted && (caller_->admin || op->tenant() == caller_->tenant)) {
          s_.service.cancel(op->id());
          found = true;
        }
    }
    context.getResults().setFound(found);
    return kj::READY_NOW;
  }

 private:
  static constexpr const char* kNeedsLogin =
      "this node requires an API key: call login(apiKey) and use the session it returns";

  // The Adapters of a session without a key: every method answers unauthenticated.
  class Unauthenticated final : public api::Adapters::Server {
    template <class Ctx>
    static kj::Promise<void> refuse(Ctx& context) {
      set_error(context.getResults().initResult(), SCode::UNAUTHENTICATED, kNeedsLogin);
      return kj::READY_NOW;
    }
    kj::Promise<void> beginUpload(BeginUploadContext c) override { return refuse(c); }
    kj::Promise<void> addFromPath(AddFromPathContext c) override { return refuse(c); }
    kj::Promise<void> list(ListContext c) override { return refuse(c); }
    kj::Promise<void> get(GetContext c) override { return refuse(c); }
    kj::Promise<void> delete_(DeleteContext c) override { return refuse(c); }
    kj::Promise<void> versions(VersionsContext c) override { return refuse(c); }
  };

  // The FineTuning of a session without a key: every method answers unauthenticated.
  class UnauthenticatedFineTuning final : public api::FineTuning::Server {
    template <class Ctx>
    static kj::Promise<void> refuse(Ctx& context) {
      set_error(context.getResults().initResult(), SCode::UNAUTHENTICATED, kNeedsLogin);
      return kj::READY_NOW;
    }
    kj::Promise<void> uploadFile(UploadFileContext c) override { return refuse(c); }
    kj::Promise<void> listFiles(ListFilesContext c) override { return refuse(c); }
    kj::Promise<void> createJob(CreateJobContext c) override { return refuse(c); }
    kj::Promise<void> listJobs(ListJobsContext c) override { return refuse(c); }
    kj::Promise<void> getJob(GetJobContext c) override { return refuse(c); }
    kj::Promise<void> cancelJob(CancelJobContext c) override { return refuse(c); }
    kj::Promise<void> events(EventsContext c) override { return refuse(c); }
    kj::Promise<void> checkpoints(CheckpointsContext c) override { return refuse(c); }
    kj::Promise<void> trainingRun(TrainingRunContext c) override { return refuse(c); }
    kj::Promise<void> listRunCheckpoints(ListRunCheckpointsContext c) override { return refuse(c); }
    kj::Promise<void> deleteRunCheckpoint(DeleteRunCheckpointContext c) override { return refuse(c); }
  };

  Impl& s_;
  std::optional<Caller> caller_;
};

kj::Promise<void> RpcServer::Impl::Session::generate(GenerateContext context) {
  const auto p = context.getParams();
  const auto req = p.getRequest();
  const std::string model = as_string(req.getModel());
  const std::string client_id = as_string(req.getRequestId());
  auto fail = [&](SCode code, const std::string& message) {
    auto r = context.getResults().initResult();
    r.setModel(model);
    r.setRequestId(client_id);
    r.setQueueMs(-1.0);
    r.setTtftMs(-1.0);
    set_error(r, code, message);
    return kj::Promise<void>(kj::READY_NOW);
  };
  if (!caller_) return fail(SCode::UNAUTHENTICATED, kNeedsLogin);
  if (s_.service.draining()) return fail(SCode::UNAVAILABLE, "the node is draining: it accepts no new requests");
  NodeService& service = s_.service;

  // The prompt, as the HTTP API makes it; and what a mixture of experts
  // routes on (the text, or the last user message; else the ids).
  std::vector<int32_t> prompt;
  std::optional<std::string> route_text;
  const auto pr = req.getPrompt();
  switch (pr.which()) {
    case api::GenerateRequest::Prompt::TEXT: {
      route_text = as_string(pr.getText());
      auto ids = service.encode_prompt(as_string(pr.getText()));
      if (!ids.ok()) return fail(code_of(ids.error()), ids.error().message);
      prompt = std::move(ids.value());
      break;
    }
    case api::GenerateRequest::Prompt::TOKEN_IDS: {
      const int64_t vocab = service.model_config().vocab_size;
      uint32_t i = 0;
      for (int32_t id : pr.getTokenIds()) {
        if (id < 0 || id >= vocab)
          return fail(SCode::INVALID_ARGUMENT, "prompt token " + std::to_string(i) + " is " + std::to_string(id) +
                                                   ", outside the vocabulary [0, " + std::to_string(vocab) + ")");
        prompt.push_back(id);
        ++i;
      }
      break;
    }
    case api::GenerateRequest::Prompt::CHAT: {
      nlohmann::json messages = nlohmann::json::array();
      for (auto m : pr.getChat()) {
        messages.push_back({{"role", as_string(m.getRole())}, {"content", as_string(m.getContent())}});
        if (as_string(m.getRole()) == "user") route_text = as_string(m.getContent());
      }
      auto ids = service.encode_chat(messages);
      if (!ids.ok()) return fail(code_of(ids.error()), ids.error().message);
      prompt = std::move(ids.value());
      break;
    }
  }
  auto ref = service.resolve(model, *caller_);
  if (!ref.ok()) return fail(SCode::NOT_FOUND, "model '" + model + "' does not exist");
  if (prompt.empty()) return fail(SCode::INVALID_ARGUMENT, "the prompt is empty");
  const int64_t context_len = service.context_length() > 0 ? service.context_length() : int64_t(1) << 30;
  const int64_t prompt_len = int64_t(prompt.size());
  if (prompt_len >= context_len)
    return fail(SCode::INVALID_ARGUMENT, "the prompt has " + std::to_string(prompt_len) +
                                             " tokens; the model's context is " + std::to_string(context_len));
  const int64_t left = context_len - prompt_len;
  const int64_t max_tokens = req.getMaxTokens();
  if (max_tokens < 1) return fail(SCode::INVALID_ARGUMENT, "maxTokens must be at least 1");
  if (max_tokens > left)
    return fail(SCode::INVALID_ARGUMENT, "maxTokens " + std::to_string(max_tokens) + " exceeds the context left, " +
                                             std::to_string(left) + " (the prompt has " + std::to_string(prompt_len) +
                                             " of the model's " + std::to_string(context_len) + " tokens)");
  auto [ticket, refused] = s_.opts.limits->admit(caller_->tenant, prompt_len + max_tokens);
  if (refused) return fail(SCode::OVERLOADED, refused->message);

  GenerateCall call;
  call.model = ref.value();
  if (ref.value().mixture) {  // routed here, as over HTTP (the experts run as one per-row mixture)
    auto experts = route_text ? service.route(ref.value(), *route_text) : service.route_ids(ref.value(), prompt);
    if (!experts.ok()) return fail(code_of(experts.error()), experts.error().message);
    call.experts = std::move(experts.value());
    call.prefill_router = service.prefill_router(ref.value(), prompt);
  }
  call.prompt = std::move(prompt);
  // Unset sampling: the runtime's defaults with a fresh seed (as HTTP draws
  // one when the request names none); set: exactly as given.
  if (req.hasSampling()) {
    call.sampling = actors::read_sampling(req.getSampling());
  } else {
    call.sampling.seed = s_.seeds();
  }
  call.max_tokens = uint32_t(max_tokens);
  for (auto s : req.getStop()) call.stop.push_back(as_string(s));
  if (req.getStopTokenIds().size() > kMaxStopTokenIds)
    return fail(SCode::INVALID_ARGUMENT, "stopTokenIds has " + std::to_string(req.getStopTokenIds().size()) +
                                             " ids; at most " + std::to_string(kMaxStopTokenIds));
  for (int32_t t : req.getStopTokenIds()) call.stop_token_ids.push_back(t);
  call.ignore_eos = req.getIgnoreEos();
  // Their values, the engine checks (as for a request from HTTP); the
  // lists' lengths here, before a copy.
  auto bias = req.getLogitBias();
  if (bias.size() > kMaxLogitBias)
    return fail(SCode::INVALID_ARGUMENT, "logitBias has " + std::to_string(bias.size()) + " tokens; at most " +
                                             std::to_string(kMaxLogitBias));
  for (auto b : bias) call.logit_bias.push_back({b.getToken(), b.getBias()});
  call.min_tokens = req.getMinTokens();
  if (req.getTimeoutMs() > 0) call.timeout_ms = double(req.getTimeoutMs());

  std::optional<api::TokenSink::Client> sink;
  if (p.hasSink()) sink = p.getSink();
  auto op = kj::heap<GenerateOp>(s_, caller_->tenant, client_id, kj::mv(sink));
  op->set_logprobs(req.getLogprobs());
  std::shared_ptr<Mailbox> mailbox = op->mailbox();
  auto id = service.generate(std::move(call), [mailbox](const RequestEvent& e) { mailbox->post(e); });
  if (!id.ok()) {
    if (id.error().code == ErrorCode::kCancelled) return fail(SCode::UNAVAILABLE, id.error().message);
    return fail(code_of(id.error()), id.error().message);
  }
  op->accepted(id.value(), std::move(*ticket));
  // The client may drop the call: its promise (and the op) is then
  // destroyed, which cancels the request.
  context.allowCancellation();
  const std::string ran = ref.value().base ? service.model_name() : ref.value().adapter.id.to_string();
  const uint32_t prompt_tokens = uint32_t(prompt_len);
  GenerateOp& o = *op;
  return o.run()
      .then([&o, context, ran, prompt_tokens]() mutable {
        o.answer(context.getResults().initResult(), ran, prompt_tokens);
      })
      .attach(kj::mv(op));  // a failed sink (the client went away) rejects the call and the op cancels the request
}

void RpcServer::Impl::run(std::promise<Result<uint16_t>>& ready) {
  bool announced = false;
  KJ_IF_MAYBE(e, kj::runCatchingExceptions([&] {
    auto io = kj::setupAsyncIo();
    auto address = io.provider->getNetwork().parseAddress(opts.host, opts.port).wait(io.waitScope);
    auto listener = address->listen();
    capnp::TwoPartyServer server(kj::heap<Session>(
        *this, tenants.requires_key() ? std::nullopt : std::optional<Caller>(tenants.authenticate(std::nullopt).value())));
    auto listening = server.listen(*listener).eagerlyEvaluate([](kj::Exception&& e) {
      log_error("rpc: the listener failed: {}", e.getDescription().cStr());
    });
    auto stop = kj::newPromiseAndCrossThreadFulfiller<void>();
    {
      std::lock_guard lock(stop_mu);
      stop_fulfiller = kj::mv(stop.fulfiller);
    }
    bound_port = uint16_t(listener->getPort());
    announced = true;
    ready.set_value(bound_port);
    stop.promise.wait(io.waitScope);
    {
      std::lock_guard lock(stop_mu);
      stop_fulfiller = nullptr;
    }
    // Let answers of requests that finished while the node drained go out.
    for (int i = 0; i < 100 && !ops.empty(); ++i) io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
    io.provider->getTimer().afterDelay(20 * kj::MILLISECONDS).wait(io.waitScope);
  })) {
    if (!announced) {
      ready.set_value(make_error(ErrorCode::kIo, "cannot listen on " + opts.host + ":" + std::to_string(opts.port) +
                                                     ": " + std::string(e->getDescription().cStr())));
    } else {
      log_error("rpc: the event loop stopped: {}", e->getDescription().cStr());
    }
  }
  std::lock_guard lock(stop_mu);
  stop_fulfiller = nullptr;
}

Result<std::unique_ptr<RpcServer>> RpcServer::start(NodeService& service, const Tenants& tenants,
                                                    const RpcOptions& options) {
  auto impl = std::make_unique<Impl>(service, tenants, options);
  std::promise<Result<uint16_t>> ready;
  auto port = ready.get_future();
  Impl* p = impl.get();
  impl->thread = std::thread([p, &ready] { p->run(ready); });
  Result<uint16_t> bound = port.get();
  if (!bound.ok()) {
    impl->thread.join();
    return bound.error();
  }
  log_info("rpc: listening on {}:{}", options.host, bound.value());
  return std::unique_ptr<RpcServer>(new RpcServer(std::move(impl)));
}

RpcServer::RpcServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RpcServer::~RpcServer() { stop(); }

uint16_t RpcServer::port() const { return impl_->bound_port; }

void RpcServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard lock(impl_->stop_mu);
    if (impl_->stop_fulfiller) impl_->stop_fulfiller->fulfill();
  }
  impl_->thread.join();
}

}  // namespace myriad::node
