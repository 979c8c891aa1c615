#include "cuda_graph_cache.cuh"

#include "cuda_check.cuh"

namespace myriad::gpu::cuda {

GraphCache::~GraphCache() {
  for (auto& [key, exec] : graphs_) (void)cudaGraphExecDestroy(exec);
}

Status GraphCache::launch(const Key& key, cudaStream_t stream, const std::function<Status()>& record) {
  auto it = graphs_.find(key);
  if (it == graphs_.end()) {
    MYRIAD_CUDA_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    const Status st = record();
    cudaGraph_t graph = nullptr;
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    if (!st.ok()) {
      if (graph) (void)cudaGraphDestroy(graph);
      return st;
    }
    MYRIAD_CUDA_TRY(end);
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    (void)cudaGraphDestroy(graph);
    MYRIAD_CUDA_TRY(inst);
    it = graphs_.emplace(key, exec).first;
  }
  MYRIAD_CUDA_TRY(cudaGraphLaunch(it->second, stream));
  return ok_status();
}

}  // namespace myriad::gpu::cuda
