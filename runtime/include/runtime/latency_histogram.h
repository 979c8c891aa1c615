// A fixed-size log-bucket histogram of latencies in milliseconds: records
// without allocating (the engine records one value per token) and answers
// quantiles within ±2% (buckets grow by 4%). Covers 1 µs .. ~4 hours;
// smaller values land in the first bucket, larger in the last (min/max are
// exact). A value type; not thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <limits>

namespace myriad {

class LatencyHistogram {
 public:
  void record(double ms);
  void merge(const LatencyHistogram& other);

  uint64_t count() const { return count_; }
  double sum_ms() const { return sum_; }
  double mean_ms() const { return count_ ? sum_ / double(count_) : 0.0; }
  double min_ms() const { return count_ ? min_ : 0.0; }
  double max_ms() const { return count_ ? max_ : 0.0; }
  // q in [0, 1]; 0 when empty. The geometric middle of the bucket holding
  // the q-quantile, clamped to [min, max].
  double quantile_ms(double q) const;

  static constexpr double kMinMs = 1e-3;
  static constexpr double kGrowth = 1.04;
  static constexpr int kBuckets = 600;  // bucket 0: < kMinMs; bucket i: [kMinMs·g^(i-1), kMinMs·g^i)

 private:
  std::array<uint32_t, kBuckets + 1> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0.0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = -std::numeric_limits<double>::infinity();
};

}  // namespace myriad
