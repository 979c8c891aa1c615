#include "runtime/latency_histogram.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace myriad {

int LatencyHistogram::bucket_of(double ms) {
  const double x = ms / kMinMs;
  if (!(x >= 1.0)) return 0;  // also NaN
  uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const int e = int((bits >> 52) & 0x7ff) - 1023;       // floor(log2 x) >= 0
  const int sub = int((bits >> (52 - 4)) & 0xf);        // top 4 mantissa bits
  const int b = 1 + e * kSubBuckets + sub;
  return b > kBuckets ? kBuckets : b;
}

void LatencyHistogram::record(double ms) {
  ++counts_[size_t(bucket_of(ms))];
  ++count_;
  sum_ += ms;
  min_ = std::min(min_, ms);
  max_ = std::max(max_, ms);
}

void LatencyHistogram::merge(const LatencyHistogram& o) {
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
}

double LatencyHistogram::quantile_ms(double q) const {
  if (count_ == 0) return 0.0;
  q = std::clamp(q, 0.0, 1.0);
  // The value of rank ceil(q * count) (1-based), as nearest-rank percentiles.
  const uint64_t rank = std::max<uint64_t>(1, uint64_t(std::ceil(q * double(count_))));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      double v;
      if (i == 0) {
        v = min_;
      } else {
        const int e = int(i - 1) / kSubBuckets, sub = int(i - 1) % kSubBuckets;
        const double lo = std::ldexp(kMinMs * (1.0 + sub / double(kSubBuckets)), e);
        const double hi = std::ldexp(kMinMs * (1.0 + (sub + 1) / double(kSubBuckets)), e);
        v = std::sqrt(lo * hi);
      }
      return std::clamp(v, min_, max_);
    }
  }
  return max_;
}

}  // namespace myriad
