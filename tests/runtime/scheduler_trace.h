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

class Trace {
 public:
  explicit Trace(SchedulerConfig cfg, int32_t load_polls = 0, double step_ms = 1.0)
      : step_ms_(step_ms),
        exec_(FakeExecutorOptions{.vocab_size = 1000,
                                  .kv_block_size = cfg.kv_block_size,
                                  .kv_num_blocks = cfg.num_kv_blocks,
                                  .num_adapter_slots = cfg.num_slots,
                                  .load_polls = load_polls}) {
    for (const char* n : {"a", "b", "c", "d", "e"}) resolver_.put(n, 1, named_weights(n));
    auto e = Engine::create(cfg, exec_, resolver_, clock_, sink_);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().to_string());
    engine_ = std::move(e.value());
  }

  // Prompt ids are 1..prompt_len; request ids 1, 2, ... in submission
  // order; returns the id (0 when rejected).
  RequestId submit(const std::string& adapter, int prompt_len, uint32_t max_tokens,
                   double timeout_ms = kNoDeadline, std::vector<int32_t> stop = {}) {
    Request r;
    r.id = next_id_++;
    r.adapter = adapter;
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
      s += "evict " + ev.adapter->name + "@" + std::to_string(ev.slot);
    }
    for (const auto& ld : o.loads) {
      sep();
      s += "load " + ld.adapter->name + ">" + std::to_string(ld.slot);
    }
    if (!o.plan.rows.empty()) {
      sep();
      s += "run";
      for (const SeqRow& r : o.plan.rows) {
        const std::string a = r.adapters.count ? exec_.slot_name(r.adapters.refs[0].slot) : "-";
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
      s += "wait " + (w.adapter ? w.adapter->name : std::string("-")) + ":" + wait_reason_name(w.reason) + "(" +
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
  StaticAdapterResolver& resolver() { return resolver_; }

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
  StaticAdapterResolver resolver_;
  RecordingSink sink_;
  FakeExecutor exec_;
  std::unique_ptr<Engine> engine_;
};

}  // namespace myriad::testing
