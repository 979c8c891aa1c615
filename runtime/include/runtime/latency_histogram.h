// A fixed-size log-linear histogram of latencies in milliseconds (the
// HdrHistogram layout): each power of two above 1 µs is split into 16
// equal buckets, so the bucket is found with bit operations, recording
// allocates nothing (the engine records per token) and quantiles are within
// ±3.2%. Covers 1 µs .. ~2.4 hours; smaller values land in the first
// bucket, larger in the last (min/max are exact). A value type; not
// thread-safe.
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
  static constexpr int kSubBuckets = 16;  // per power of two
  static constexpr int kOctaves = 33;
  // bucket 0: < kMinMs; bucket 1 + 16e + s: [kMinMs·2^e·(1 + s/16), kMinMs·2^e·(1 + (s+1)/16))
  static constexpr int kBuckets = kOctaves * kSubBuckets;
  static int bucket_of(double ms);

 private:
  std::array<uint32_t, kBuckets + 1> counts_{};
  uint64_t count_ = 0;
  double sum_ = 0.0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = -std::numeric_limits<double>::infinity();
};

}  // namespace myriad
