// Captured CUDA graphs of decode steps, keyed by what fixes their launch
// shapes (tokens, sampled rows, logits rows, LoRA levels: 0 without LoRA, 1
// for one adapter a row, up to kMaxAdaptersPerRow for mixtures, whether
// the expands read mixture weights, and whether LoRA shrinks run on the side
// stream, which changes the graph's shape); every argument
// that changes between such steps lives in fixed device arrays, so a graph
// replays any later step with the same key. Owns the graph executables.
// Not thread-safe: the executor's step.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <tuple>

#include "runtime/result.h"

namespace myriad::gpu::cuda {

class GraphCache {
 public:
  // tokens, sampled rows, logits rows, LoRA levels, mixture weights, LoRA side stream
  using Key = std::tuple<int64_t, int64_t, int64_t, int, bool, bool>;

  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache();

  // Launches the graph for `key` on `stream`, capturing `record` (which
  // enqueues the step's work on `stream`) the first time.
  Status launch(const Key& key, cudaStream_t stream, const std::function<Status()>& record);
  size_t size() const { return graphs_.size(); }

 private:
  std::map<Key, cudaGraphExec_t> graphs_;
};

}  // namespace myriad::gpu::cuda
