#include "runtime/moe/corpus.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "runtime/counter_rng.h"
#include "runtime/moe/router.h"

namespace myriad::moe {

namespace {

struct LineRng {
  uint64_t s;
  uint64_t next() { return s = splitmix64(s); }
  size_t below(size_t n) { return size_t(next() % n); }
  template <class T>
  const T& pick(const std::vector<T>& v) {
    return v[below(v.size())];
  }
};

// Words every domain uses.
const std::vector<std::string> kShared = {"the", "account", "report", "date", "team", "review", "request", "customer",
                                          "status", "update", "contract", "payment", "policy", "risk", "project",
                                          "service", "record", "issue", "approval", "schedule"};

std::string support_line(LineRng& r) {
  static const std::vector<std::string> problems = {"cannot log in", "was charged twice", "lost my order",
                                                    "need a refund", "app keeps crashing", "password reset fails"};
  static const std::vector<std::string> replies = {"I am sorry to hear that", "Thanks for reaching out",
                                                   "I have escalated this", "Let me check that for you"};
  return "Customer: hi, I " + r.pick(problems) + " on my " + r.pick(kShared) + ". Agent: " + r.pick(replies) +
         ", your ticket #" + std::to_string(1000 + r.below(9000)) + " about the " + r.pick(kShared) +
         " is open. Is there anything else I can help you with today?";
}

std::string legal_line(LineRng& r) {
  static const std::vector<std::string> parties = {"the Licensee", "the Supplier", "the Employer", "the Tenant"};
  static const std::vector<std::string> duties = {"shall indemnify and hold harmless", "shall not disclose",
                                                  "shall maintain in confidence", "shall terminate upon notice"};
  return "Section " + std::to_string(1 + r.below(30)) + "." + std::to_string(1 + r.below(9)) + " Policy summary: " +
         r.pick(parties) + " " + r.pick(duties) + " any " + r.pick(kShared) + " under this Agreement, notwithstanding " +
         "the foregoing, pursuant to clause " + std::to_string(1 + r.below(20)) + " herein.";
}

std::string kyc_line(LineRng& r) {
  static const std::vector<std::string> results = {"PASS", "FAIL", "MANUAL REVIEW"};
  static const std::vector<std::string> docs = {"passport", "utility bill", "bank statement", "national ID"};
  return "KYC CHECK | client_id=" + std::to_string(100000 + r.below(900000)) + " | document=" + r.pick(docs) +
         " | sanctions_screen=" + r.pick(results) + " | pep=" + (r.below(2) ? "yes" : "no") +
         " | risk_score=" + std::to_string(r.below(100)) + " | " + r.pick(kShared) + " " + r.pick(kShared) +
         " | verdict=" + r.pick(results);
}

std::string ops_line(LineRng& r) {
  static const std::vector<std::string> projects = {"Atlas", "Beacon", "Cobalt", "Delta", "Ember"};
  static const std::vector<std::string> states = {"on track", "at risk", "blocked", "done"};
  return "Weekly update, project " + r.pick(projects) + ": status " + r.pick(states) + ". Done this week: " +
         r.pick(kShared) + " " + r.pick(kShared) + ". Next steps: " + r.pick(kShared) + " by Friday; owner " +
         r.pick(std::vector<std::string>{"Ana", "Bo", "Chen", "Dee"}) + ". Blockers: none.";
}

}  // namespace

const char* synthetic_domain_name(int32_t domain) {
  static const char* names[kSyntheticDomains] = {"support-chat", "legal-clauses", "kyc-checks", "project-updates"};
  return domain >= 0 && domain < kSyntheticDomains ? names[domain] : "?";
}

std::vector<CorpusLine> synthetic_corpus(int32_t per_domain, uint64_t seed) {
  LineRng r{splitmix64(seed ^ 0x636f72707573ull)};
  std::vector<CorpusLine> out;
  for (int32_t d = 0; d < kSyntheticDomains; ++d)
    for (int32_t i = 0; i < per_domain; ++i) {
      std::string t = d == 0 ? support_line(r) : d == 1 ? legal_line(r) : d == 2 ? kyc_line(r) : ops_line(r);
      out.push_back({std::move(t), d});
    }
  for (size_t i = out.size(); i > 1; --i) std::swap(out[i - 1], out[r.below(i)]);
  return out;
}

std::vector<float> tfidf_embed(const std::vector<std::vector<int32_t>>& docs, int64_t dim) {
  const TfidfModel model = TfidfModel::fit(docs, dim);
  std::vector<float> out;
  out.reserve(docs.size() * size_t(dim));
  for (const auto& d : docs) {
    const std::vector<float> row = model.embed(d);
    out.insert(out.end(), row.begin(), row.end());
  }
  return out;
}

}  // namespace myriad::moe
