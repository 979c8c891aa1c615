#include "adapter_traffic.h"

#include <memory>

namespace myriad::node {

AdapterTraffic::EventCallback AdapterTraffic::count(const std::string& adapter, EventCallback inner) {
  using Clock = std::chrono::steady_clock;
  // One request's clock: its events arrive one at a time, in order.
  struct Timing {
    Clock::time_point start = Clock::now();
    Clock::time_point last_token{};
    bool any_token = false;
  };
  auto timing = std::make_shared<Timing>();
  // Found once: entries of an unordered_map stay where they are, and none is erased.
  Figures* figures = nullptr;
  {
    std::lock_guard lock(mu_);
    figures = &by_adapter_[adapter];
  }
  return [this, figures, inner = std::move(inner), timing](const RequestEvent& ev) {
    const auto now = Clock::now();
    auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
    {
      std::lock_guard lock(mu_);
      Figures& f = *figures;
      if (ev.kind == EventKind::kToken) {
        ++f.output_tokens;
        if (timing->any_token) f.itl_ms.record(ms(now - timing->last_token));
        else f.ttft_ms.record(ms(now - timing->start));
        timing->any_token = true;
        timing->last_token = now;
      } else if (ev.is_final()) {
        f.e2e_ms.record(ms(now - timing->start));
        if (ev.kind == EventKind::kFailed) ++f.failed;
        else if (ev.reason == FinishReason::kCancelled || ev.reason == FinishReason::kDeadline) ++f.cancelled;
        else ++f.finished;
      }
    }
    inner(ev);
  };
}

void AdapterTraffic::accepted(const std::string& adapter) {
  std::lock_guard lock(mu_);
  ++by_adapter_[adapter].requests;
}

std::optional<AdapterTraffic::Figures> AdapterTraffic::figures(const std::string& adapter) const {
  std::lock_guard lock(mu_);
  auto it = by_adapter_.find(adapter);
  if (it == by_adapter_.end()) return std::nullopt;
  return it->second;
}

}  // namespace myriad::node
