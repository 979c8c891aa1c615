#include "runtime/moe/clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "runtime/counter_rng.h"

namespace myriad::moe {

namespace {

double dist2(const float* a, const float* b, int64_t dim) {
  double s = 0;
  for (int64_t i = 0; i < dim; ++i) {
    const double d = double(a[i]) - double(b[i]);
    s += d * d;
  }
  return s;
}

void normalise(float* v, int64_t dim) {
  double s = 0;
  for (int64_t i = 0; i < dim; ++i) s += double(v[i]) * double(v[i]);
  if (s <= 0) return;
  const float inv = float(1.0 / std::sqrt(s));
  for (int64_t i = 0; i < dim; ++i) v[i] *= inv;
}

struct Rng {
  uint64_t s;
  double uniform() {
    s = splitmix64(s);
    return double(s >> 11) * (1.0 / 9007199254740992.0);
  }
};

KMeansResult run_once(const std::vector<float>& pts, int64_t n, int64_t dim, const KMeansOptions& o, Rng& rng) {
  const int64_t k = o.k;
  KMeansResult r;
  r.centroids.assign(size_t(k * dim), 0.0f);
  // Greedy k-means++ (Arthur and Vassilvitskii's seeding as scikit-learn
  // runs it): the first centre uniformly; each next one the best of 2 +
  // ln(k) candidates drawn with probability ~ D^2, the one that lowers the
  // potential (sum of D^2) most. A single draw per centre too often seeds
  // two centres in one well-separated group (a merged pair and a split one
  // that Lloyd's iterations cannot undo: 2% of the routing test's seeds).
  const int64_t candidates = 2 + int64_t(std::log(double(k)));
  std::vector<double> d2(static_cast<size_t>(n)), trial(static_cast<size_t>(n)), best_d2(static_cast<size_t>(n));
  const int64_t first = std::min<int64_t>(n - 1, int64_t(rng.uniform() * double(n)));
  std::copy(pts.begin() + first * dim, pts.begin() + (first + 1) * dim, r.centroids.begin());
  for (int64_t i = 0; i < n; ++i) d2[size_t(i)] = dist2(&pts[size_t(i * dim)], &r.centroids[0], dim);
  for (int64_t c = 1; c < k; ++c) {
    double total = 0;
    for (double v : d2) total += v;
    int64_t pick = -1;
    double pick_potential = std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < candidates; ++t) {
      int64_t cand = std::min<int64_t>(n - 1, int64_t(rng.uniform() * double(n)));  // all points on a centre
      if (total > 0) {
        double u = rng.uniform() * total;
        cand = n - 1;
        for (int64_t i = 0; i < n; ++i) {
          u -= d2[size_t(i)];
          if (u <= 0) {
            cand = i;
            break;
          }
        }
      }
      double potential = 0;
      for (int64_t i = 0; i < n; ++i) {
        trial[size_t(i)] = std::min(d2[size_t(i)], dist2(&pts[size_t(i * dim)], &pts[size_t(cand * dim)], dim));
        potential += trial[size_t(i)];
      }
      if (potential < pick_potential) {
        pick_potential = potential;
        pick = cand;
        best_d2.swap(trial);
      }
    }
    d2.swap(best_d2);
    std::copy(pts.begin() + pick * dim, pts.begin() + (pick + 1) * dim, r.centroids.begin() + c * dim);
  }
  r.assignment.assign(size_t(n), -1);
  std::vector<double> sum(static_cast<size_t>(k * dim));
  std::vector<int64_t> count(static_cast<size_t>(k));
  for (r.iterations = 1; r.iterations <= o.max_iters; ++r.iterations) {
    bool changed = false;
    r.inertia = 0;
    for (int64_t i = 0; i < n; ++i) {
      int32_t best = 0;
      double bd = std::numeric_limits<double>::infinity();
      for (int64_t c = 0; c < k; ++c) {
        const double d = dist2(&pts[size_t(i * dim)], &r.centroids[size_t(c * dim)], dim);
        if (d < bd) bd = d, best = int32_t(c);
      }
      changed = changed || r.assignment[size_t(i)] != best;
      r.assignment[size_t(i)] = best;
      r.inertia += bd;
    }
    if (!changed) break;
    std::fill(sum.begin(), sum.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int32_t c = r.assignment[size_t(i)];
      ++count[size_t(c)];
      for (int64_t j = 0; j < dim; ++j) sum[size_t(c * dim + j)] += pts[size_t(i * dim + j)];
    }
    for (int64_t c = 0; c < k; ++c) {
      if (count[size_t(c)] == 0) {  // an empty cluster takes the point farthest from its centre
        int64_t far = 0;
        double fd = -1;
        for (int64_t i = 0; i < n; ++i) {
          const double d = dist2(&pts[size_t(i * dim)], &r.centroids[size_t(r.assignment[size_t(i)] * dim)], dim);
          if (d > fd) fd = d, far = i;
        }
        std::copy(pts.begin() + far * dim, pts.begin() + (far + 1) * dim, r.centroids.begin() + c * dim);
        continue;
      }
      for (int64_t j = 0; j < dim; ++j)
        r.centroids[size_t(c * dim + j)] = float(sum[size_t(c * dim + j)] / double(count[size_t(c)]));
      if (o.cosine) normalise(&r.centroids[size_t(c * dim)], dim);
    }
  }
  r.iterations = std::min(r.iterations, o.max_iters);
  r.sizes.assign(size_t(k), 0);
  for (int32_t c : r.assignment) ++r.sizes[size_t(c)];
  return r;
}

}  // namespace

Result<KMeansResult> kmeans(const std::vector<float>& points, int64_t n, int64_t dim, const KMeansOptions& o) {
  if (dim < 1 || n < 1 || int64_t(points.size()) != n * dim)
    return make_error(ErrorCode::kInvalidArgument, "kmeans: points must be n x dim with n, dim >= 1");
  if (o.k < 1 || o.k > n)
    return make_error(ErrorCode::kInvalidArgument, "kmeans: k = " + std::to_string(o.k) + " must be in [1, " +
                                                       std::to_string(n) + "] (the number of points)");
  for (float v : points)
    if (!std::isfinite(v)) return make_error(ErrorCode::kInvalidArgument, "kmeans: a point has a non-finite value");
  std::vector<float> pts = points;
  if (o.cosine)
    for (int64_t i = 0; i < n; ++i) normalise(&pts[size_t(i * dim)], dim);
  Rng rng{splitmix64(o.seed ^ 0x6b6d65616e73ull)};
  KMeansResult best;
  bool have = false;
  for (int32_t r = 0; r < std::max(1, o.restarts); ++r) {
    KMeansResult run = run_once(pts, n, dim, o, rng);
    if (!have || run.inertia < best.inertia) {
      best = std::move(run);
      have = true;
    }
  }
  return best;
}

double mean_silhouette(const std::vector<float>& points, int64_t n, int64_t dim, const std::vector<int32_t>& assignment,
                       bool cosine) {
  std::vector<float> pts = points;
  if (cosine)
    for (int64_t i = 0; i < n; ++i) normalise(&pts[size_t(i * dim)], dim);
  auto distance = [&](int64_t i, int64_t j) {
    const double d2v = dist2(&pts[size_t(i * dim)], &pts[size_t(j * dim)], dim);
    return cosine ? d2v / 2.0 : std::sqrt(d2v);  // for unit vectors |a-b|^2 / 2 = 1 - cos
  };
  int32_t k = 0;
  for (int32_t c : assignment) k = std::max(k, c + 1);
  std::vector<int64_t> size(size_t(k), 0);
  for (int32_t c : assignment) ++size[size_t(c)];
  double total = 0;
  std::vector<double> mean_to(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const int32_t own = assignment[size_t(i)];
    if (size[size_t(own)] <= 1) continue;  // counts 0
    std::fill(mean_to.begin(), mean_to.end(), 0.0);
    for (int64_t j = 0; j < n; ++j)
      if (j != i) mean_to[size_t(assignment[size_t(j)])] += distance(i, j);
    const double a = mean_to[size_t(own)] / double(size[size_t(own)] - 1);
    double b = std::numeric_limits<double>::infinity();
    for (int32_t c = 0; c < k; ++c)
      if (c != own && size[size_t(c)] > 0) b = std::min(b, mean_to[size_t(c)] / double(size[size_t(c)]));
    if (!std::isfinite(b)) continue;  // a single cluster
    const double m = std::max(a, b);
    total += m > 0 ? (b - a) / m : 0.0;
  }
  return n > 0 ? total / double(n) : 0.0;
}

double adjusted_rand_index(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  MYRIAD_CHECK(a.size() == b.size(), "adjusted_rand_index: labelings of different lengths");
  const double n = double(a.size());
  if (a.size() < 2) return 1.0;
  std::map<std::pair<int32_t, int32_t>, int64_t> table;
  std::map<int32_t, int64_t> rows, cols;
  for (size_t i = 0; i < a.size(); ++i) {
    ++table[{a[i], b[i]}];
    ++rows[a[i]];
    ++cols[b[i]];
  }
  auto c2 = [](double x) { return x * (x - 1) / 2; };
  double index = 0, sa = 0, sb = 0;
  for (const auto& [_, v] : table) index += c2(double(v));
  for (const auto& [_, v] : rows) sa += c2(double(v));
  for (const auto& [_, v] : cols) sb += c2(double(v));
  const double expected = sa * sb / c2(n);
  const double max_index = (sa + sb) / 2;
  if (max_index == expected) return 1.0;  // both labelings trivial (one cluster each, or all singletons)
  return (index - expected) / (max_index - expected);
}

}  // namespace myriad::moe
