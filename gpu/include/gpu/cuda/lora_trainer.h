// LoRA training on a CUDA device: the LoraTrainingBackend of the CPU
// (gpu/cpu/lora_trainer.h) on the GPU, the same graph (llama_graph.h's op
// order), the same batch checks (runtime/training/training_batch.h) and the
// same units (a layer's forward, a chunk of the head, a layer's backward), so
// a worker that serves on the device can run training steps between its
// inference steps.
//
// Correctness first: everything is float32. The base weights are kept on
// the device as float32 (widened once from bf16 at create(): 4 bytes per
// parameter, beside what a CUDA executor holds), the GEMMs are cuBLAS SGEMMs
// without TF32, and each job's LoRA runs as GEMMs over its contiguous runs of
// rows (z = s·x·Aᵀ kept for dB, dz = s·dy·B for dA and the input gradient).
// A job's gradients are summed over its runs in row order, then added into
// the host gradients (+=) after the pass's last unit; losses are summed on the
// host per position in order, as the CPU does.
//
// Kept per layer for the backward (as the CPU): its normed inputs and
// inverse RMS, q/k after RoPE, v, the attention output and log-sum-exp,
// gate/up/act and each module's z; with recompute on, only each layer's input
// and the layer is recomputed before its backward.
//
// Not thread-safe: one caller at a time. It owns a stream and a cuBLAS handle;
// each unit ends with the stream synchronised (a unit's time is its wall time).
// Every buffer is sized in begin(), so a unit fails only on a device fault:
// that pass then ends without adding its gradients, and every later begin()
// and mean_hidden() returns the error (the process stays up,
// serving whatever else it serves).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/checkpoint.h"
#include "runtime/result.h"
#include "runtime/training/lora_training_backend.h"

namespace myriad::gpu::cuda {

class CudaLoraTrainingBackend final : public LoraTrainingBackend {
 public:
  // Uploads the base (float32) to device 0. kUnsupported: no device, or a
  // head_dim the attention kernels do not take; kResourceExhausted: no room.
  static Result<std::unique_ptr<CudaLoraTrainingBackend>> create(std::shared_ptr<const Checkpoint> ckpt);
  ~CudaLoraTrainingBackend() override;

  // Also kUnsupported for a row longer than train::kMaxAttentionLength.
  Status forward_backward(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) override;
  Status begin(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs) override;
  bool advance() override;
  void set_recompute(bool on) override;
  Status mean_hidden(std::span<const TrainingRow> rows, std::span<TrainingJobTensors<float>> jobs, int layers,
                     std::vector<float>& out) override;
  // Device bytes of the last pass's activations and scratch, and of the base.
  size_t activation_bytes() const override;
  size_t base_bytes() const;

  struct Impl;

 private:
  explicit CudaLoraTrainingBackend(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace myriad::gpu::cuda
