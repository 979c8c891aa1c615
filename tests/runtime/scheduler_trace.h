// Test harness: the real Engine + Scheduler over a FakeExecutor and a
// ManualClock, rendering each step as one line so a trace test is a table
// of the expected state per step (TensorRT-LLM's capacity-scheduler tests
// are the model). Time advances 1 ms per step unless told otherwise.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/fake_executor.h"

namespace myriad::testing {

inline std::shared_ptr<const LoraWeights> named_weights(const std::string& name) {
  auto w = std::make_shared<LoraWeights>();
  w->name = name;
  return w;
}

// Keeps every event (their text and logits views are not valid afterwards:
// sinks that need them read them in on_event).
class RecordingSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    all.push_back(e);
    step.push_back(e);
  }
  std::vector<RequestEvent> all;
  std::vector<RequestEvent> step;  // since the last Trace::step()
};

// The test's adapter table; with hold(true) fetches wait until release()
// answers them (an adapter store that is slow to answer).
class TraceSource final : public AdapterSource {
 public:
  StaticAdapterSource table;
  void hold(bool on) { hold_ = on; }
  void fetch(const AdapterId& id, FetchDone done) override {
    ++fetches;
    if (hold_) {
      held_.emplace_back(id, std::move(done));
    } else {
      table.fetch(id, std::move(done));
    }
  }
  // Answers every held fetch, in order.
  void release() {
    auto held = std::move(held_);
    held_.clear();
    for (auto& [id, done] : held) table.fetch(id, std::move(done));
  }
  size_t num_held() const { return held_.size(); }
  int fetches = 0;

 private:
  bool hold_ = false;
  std::vector<std::pair<AdapterId, FetchDone>> held_;
};

class Trace {
 public:
  explicit Trace(SchedulerConfig cfg, int32_t load_steps = 0, double step_ms = 1.0)
      : step_ms_(step_ms),
        exec_(FakeExecutorOptions{.vocab_size = 1000,
                                  .kv_block_size = cfg.kv_block_size,
                                  .kv_num_blocks = cfg.num_kv_blocks,
                                  .num_adapter_slots = cfg.num_slots,
                                  .load_steps = load_steps}) {
    for (const char* n : {"a", "b", "c", "d", "e"}) publish(n, 1, named_weights(n));
    auto e = Engine::create(cfg, exec_, source_, clock_, sink_);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().to_string());
    engine_ = std::move(e.value());
  }

  // A new current version of adapter `name` (of tenant "t").
  void publish(const std::string& name, uint64_t version, std::shared_ptr<const LoraWeights> w) {
    source_.table.put(AdapterId{"t", name, version}, std::move(w));
    current_[name] = version;
  }

  // "name" (the current version) or "name@N", resolved as the registry
  // does before a request reaches an engine; unknown => kNotFound.
  Result<AdapterId> resolve(const std::string& text) const {
    auto n = parse_adapter_name(text, "t");
    if (!n.ok()) return n.error();
    auto it = current_.find(n.value().name);
    if (it == current_.end()) return make_error(ErrorCode::kNotFound, "unknown adapter '" + text + "'");
    if (n.value().version != 0 && n.value().version != it->second)
      return make_error(ErrorCode::kNotFound, "adapter '" + text + "': no such version");
    return n.value().pinned(it->second);
  }

  // Prompt ids are 1..prompt_len; request ids 1, 2, ... in submission
  // order; returns the id (0 when rejected, by the resolver or the engine).
  RequestId submit(const std::string& adapter, int prompt_len, uint32_t max_tokens,
                   double timeout_ms = kNoDeadline, std::vector<int32_t> stop = {}) {
    Request r;
    r.id = next_id_++;
    if (!adapter.empty()) {
      auto id = resolve(adapter);
      if (!id.ok()) {
        last_error = id.error();
        return 0;
      }
      r.adapters = {AdapterUse{id.value()}};
    }
    return submit_request(std::move(r), adapter, prompt_len, max_tokens, timeout_ms, std::move(stop));
  }

  // A mixture of the current versions of `names` with `weights`.
  RequestId submit_mix(const std::vector<std::string>& names, const std::vector<float>& weights, int prompt_len,
                       uint32_t max_tokens) {
    Request r;
    r.id = next_id_++;
    std::string joined;
    for (size_t i = 0; i < names.size(); ++i) {
      auto id = resolve(names[i]);
      if (!id.ok()) {
        last_error = id.error();
        return 0;
      }
      r.adapters.push_back(AdapterUse{id.value(), weights[i]});
      if (i) joined += '+';
      joined += names[i];
    }
    return submit_request(std::move(r), joined, prompt_len, max_tokens, kNoDeadline, {});
  }

 private:
  RequestId submit_request(Request r, const std::string& adapter, int prompt_len, uint32_t max_tokens,
                           double timeout_ms, std::vector<int32_t> stop) {
    for (int i = 0; i < prompt_len; ++i) r.prompt.push_back(i + 1);
    r.max_tokens = max_tokens;
    r.timeout_ms = timeout_ms;
    r.stop_token_ids = std::move(stop);
    auto id = engine_->submit(std::move(r));
    if (!id.ok()) {
      last_error = id.error();
      return 0;
    }
    adapter_of[id.value()] = adapter;
    return id.value();
  }

 public:

  // Runs one engine step; renders it as
  //   "evict a@0; load b>0; run 1:a:0+4* 2:-:3+1*; wait c:no_slot(2); done 1:length"
  // rows are id:adapter(- = base):start_pos+num_tokens, '*' when sampling.
  std::string step() {
    sink_.step.clear();
    (void)engine_->step();
    const ScheduleOutput& o = engine_->last_schedule();
    std::string s;
    auto sep = [&] {
      if (!s.empty()) s += "; ";
    };
    for (const auto& ev : o.evictions) {
      sep();
      s += "evict " + ev.adapter.name + "@" + std::to_string(ev.slot);
    }
    for (const auto& ld : o.loads) {
      sep();
      s += "load " + ld.adapter.name + ">" + std::to_string(ld.slot);
    }
    if (!o.plan.rows.empty()) {
      sep();
      s += "run";
      for (const SeqRow& r : o.plan.rows) {
        std::string a;
        for (uint8_t k = 0; k < r.adapters.count; ++k) {
          if (k) a += '+';
          a += exec_.slot_name(r.adapters.refs[k].slot);
        }
        if (a.empty()) a = "-";
        s += " " + std::to_string(r.seq) + ":" + a + ":" + std::to_string(r.start_pos) + "+" +
             std::to_string(r.num_tokens) + (r.sample ? "*" : "");
      }
    }
    if (o.num_preempted) {
      sep();
      s += "preempt(" + std::to_string(o.num_preempted) + ")";
    }
    if (o.num_paused) {
      sep();
      s += "pause(" + std::to_string(o.num_paused) + ")";
    }
    for (const auto& w : o.waiting) {
      sep();
      std::string names;
      for (const AdapterId& id : w.adapters) {
        if (!names.empty()) names += '+';
        names += id.name;
      }
      s += "wait " + (names.empty() ? std::string("-") : names) + ":" + wait_reason_name(w.reason) + "(" +
           std::to_string(w.queued) + ")";
    }
    std::string done;
    for (const auto& e : sink_.step) {
      if (e.kind == EventKind::kFinished) done += " " + std::to_string(e.id) + ":" + finish_reason_name(e.reason);
      if (e.kind == EventKind::kFailed) done += " " + std::to_string(e.id) + ":failed";
    }
    if (!done.empty()) {
      sep();
      s += "done" + done;
    }
    if (s.empty()) s = "idle";
    clock_.advance(step_ms_);
    return s;
  }

  Engine& engine() { return *engine_; }
  FakeExecutor& exec() { return exec_; }
  ManualClock& clock() { return clock_; }
  RecordingSink& sink() { return sink_; }
  TraceSource& source() { return source_; }

  // Tokens each request received, checked against the fake's rule.
  void expect_tokens_consistent() const {
    std::map<RequestId, uint32_t> next;
    for (const auto& e : sink_.all) {
      if (e.kind != EventKind::kToken) continue;
      EXPECT_EQ(e.index, next[e.id]) << "request " << e.id;
      ++next[e.id];
      EXPECT_EQ(e.token, FakeExecutor::token_for(e.id, e.index, adapter_of.at(e.id), 1000)) << "request " << e.id;
    }
    EXPECT_TRUE(exec_.violations().empty()) << exec_.violations().front();
  }

  Error last_error;
  std::map<RequestId, std::string> adapter_of;

 private:
  double step_ms_;
  RequestId next_id_ = 1;
  ManualClock clock_;
  TraceSource source_;
  std::map<std::string, uint64_t> current_;  // name -> current version
  RecordingSink sink_;
  FakeExecutor exec_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace myriad::testing
