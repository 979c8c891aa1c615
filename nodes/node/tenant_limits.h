// Per-tenant admission limits, one book for every front end of a node (HTTP
// and RPC count against the same limits, so a tenant cannot double its share
// by using both): at most `max_open` requests open at once, and at most
// `tokens_per_minute` tokens asked for (prompt + max tokens, counted at
// admission, as OpenAI's limits count them) in any sliding minute. A refused
// request is told why and when to retry (429 + Retry-After over HTTP,
// `overloaded` over RPC). Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace myriad::node {

struct TenantLimitOptions {
  int max_open = 256;             // requests open per tenant
  int64_t tokens_per_minute = 0;  // per tenant; 0 = no limit
};

class TenantLimits {
 public:
  using Clock = std::chrono::steady_clock;

  struct Refusal {
    std::string message;    // names the tenant, what it used and the limit
    int retry_after_s = 1;  // when a retry can succeed
  };

  // Holds one open request of a tenant; the request stops counting as open
  // when its ticket ends. Move-only.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept { *this = std::move(other); }
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { release(); }
    void release();

   private:
    friend class TenantLimits;
    std::shared_ptr<TenantLimits> owner_;
    std::string tenant_;
    int requests_ = 1;
  };

  static std::shared_ptr<TenantLimits> create(TenantLimitOptions options,
                                              std::function<Clock::time_point()> now = Clock::now);

  // A request of `cost` tokens for `tenant` that runs as `requests` engine
  // requests (n choices of several prompts): a ticket (they count as open
  // until the ticket ends; its tokens stay in the minute's window either
  // way), or why not.
  std::pair<std::optional<Ticket>, std::optional<Refusal>> admit(const std::string& tenant, int64_t cost,
                                                                 int requests = 1);
  int open(const std::string& tenant) const;
  const TenantLimitOptions& options() const { return options_; }

 private:
  TenantLimits(TenantLimitOptions options, std::function<Clock::time_point()> now)
      : options_(options), now_(std::move(now)) {}
  void close(const std::string& tenant, int requests);

  const TenantLimitOptions options_;
  const std::function<Clock::time_point()> now_;
  std::weak_ptr<TenantLimits> self_;
  mutable std::mutex mu_;
  std::map<std::string, int> open_;
  std::map<std::string, std::deque<std::pair<Clock::time_point, int64_t>>> asked_;  // the last minute's admissions
};

}  // namespace myriad::node
