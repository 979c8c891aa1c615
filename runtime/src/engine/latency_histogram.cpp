#include "runtime/latency_histogram.h"

#include <algorithm>
#include <cmath>

namespace myriad {

namespace {
const double kLogGrowth = std::log(LatencyHistogram::kGrowth);

int bucket_of(double ms) {
  if (!(ms >= LatencyHistogram::kMinMs)) return 0;  // also NaN
  const double b = std::floor(std::log(ms / LatencyHistogram::kMinMs) / kLogGrowth) + 1.0;
  return b >= LatencyHistogram::kBuckets ? LatencyHistogram::kBuckets : int(b);
}
}  // namespace

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
        const double lo = kMinMs * std::pow(kGrowth, double(i) - 1.0);
        v = lo * std::sqrt(kGrowth);
      }
      return std::clamp(v, min_, max_);
    }
  }
  return max_;
}

}  // namespace myriad
