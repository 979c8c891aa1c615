#include "tenant_limits.h"

namespace myriad::node {

TenantLimits::Ticket& TenantLimits::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::move(other.owner_);
    tenant_ = std::move(other.tenant_);
    requests_ = other.requests_;
    other.owner_.reset();
  }
  return *this;
}

void TenantLimits::Ticket::release() {
  if (!owner_) return;
  owner_->close(tenant_, requests_);
  owner_.reset();
}

std::shared_ptr<TenantLimits> TenantLimits::create(TenantLimitOptions options,
                                                   std::function<Clock::time_point()> now) {
  std::shared_ptr<TenantLimits> limits(new TenantLimits(options, std::move(now)));
  limits->self_ = limits;
  return limits;
}

std::pair<std::optional<TenantLimits::Ticket>, std::optional<TenantLimits::Refusal>> TenantLimits::admit(
    const std::string& tenant, int64_t cost, int requests) {
  std::lock_guard lock(mu_);
  int& open = open_[tenant];
  if (requests > options_.max_open)  // can never pass: retrying does not help
    return {std::nullopt, Refusal{"this request runs " + std::to_string(requests) + " requests (n times the prompts); tenant '" +
                                      tenant + "' may have at most " + std::to_string(options_.max_open) + " open",
                                  60}};
  if (open + requests > options_.max_open)
    return {std::nullopt, Refusal{"tenant '" + tenant + "' has " + std::to_string(open) + " requests open" +
                                      (requests > 1 ? " and this one runs " + std::to_string(requests) : std::string()) +
                                      "; at most " + std::to_string(options_.max_open) + " may be; retry shortly",
                                  1}};
  if (options_.tokens_per_minute > 0) {
    auto& log = asked_[tenant];
    const auto now = now_();
    while (!log.empty() && now - log.front().first >= std::chrono::minutes(1)) log.pop_front();
    int64_t used = 0;
    for (const auto& [when, n] : log) used += n;
    if (used + cost > options_.tokens_per_minute) {
      // The oldest admission leaves the window first; a request larger than
      // the whole limit can never pass, and is told to wait a full minute.
      const auto wait = log.empty() ? std::chrono::minutes(1) : log.front().first + std::chrono::minutes(1) - now;
      return {std::nullopt,
              Refusal{"tenant '" + tenant + "' asked for " + std::to_string(used) +
                          " tokens in the last minute; this request's " + std::to_string(cost) +
                          " (prompt + max tokens) would pass its limit of " +
                          std::to_string(options_.tokens_per_minute),
                      int(std::chrono::duration_cast<std::chrono::seconds>(wait).count()) + 1}};
    }
    log.emplace_back(now, cost);
  }
  open += requests;
  Ticket t;
  t.owner_ = self_.lock();
  t.tenant_ = tenant;
  t.requests_ = requests;
  return {std::move(t), std::nullopt};
}

int TenantLimits::open(const std::string& tenant) const {
  std::lock_guard lock(mu_);
  auto it = open_.find(tenant);
  return it == open_.end() ? 0 : it->second;
}

void TenantLimits::close(const std::string& tenant, int requests) {
  std::lock_guard lock(mu_);
  auto it = open_.find(tenant);
  if (it != open_.end() && (it->second -= requests) <= 0) open_.erase(it);
}

}  // namespace myriad::node
