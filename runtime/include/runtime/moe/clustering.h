// Clustering for the mixture of adapter experts (issue 22): k-means with
// k-means++ seeding and restarts (euclidean, or cosine on L2-normalised
// points), the mean silhouette for choosing k, and the adjusted Rand index
// for checking clusters against hidden labels. Pure functions; seeded, so
// the same input gives the same clusters.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/result.h"

namespace myriad::moe {

struct KMeansOptions {
  int32_t k = 2;
  int32_t restarts = 5;    // the lowest-inertia run is kept
  int32_t max_iters = 100;
  uint64_t seed = 0;
  bool cosine = true;      // normalise points and centroids (spherical k-means)
};

struct KMeansResult {
  std::vector<float> centroids;      // [k, dim]
  std::vector<int32_t> assignment;   // [n]: each point's cluster
  std::vector<int64_t> sizes;        // [k]
  double inertia = 0;                // sum of squared distances to the assigned centroid
  int32_t iterations = 0;            // of the kept run
};

// points: [n, dim], row-major. Errors: k < 1, k > n, dim < 1, a non-finite value.
Result<KMeansResult> kmeans(const std::vector<float>& points, int64_t n, int64_t dim, const KMeansOptions& options);

// Mean silhouette over the points (in [-1, 1]; higher is better separated);
// a point alone in its cluster counts 0. O(n^2 dim). Cosine distance
// (1 - cos) when `cosine`, else euclidean.
double mean_silhouette(const std::vector<float>& points, int64_t n, int64_t dim, const std::vector<int32_t>& assignment,
                       bool cosine);

// Hubert and Arabie's adjusted Rand index of two labelings of the same items
// (1: identical up to renaming; ~0: as by chance). Equal-length vectors.
double adjusted_rand_index(const std::vector<int32_t>& a, const std::vector<int32_t>& b);

}  // namespace myriad::moe
