// CudaLoraTrainingBackend (lora_trainer.h): the CPU trainer's pass
// (gpu/src/cpu/train/lora_trainer.cpp) on the device, a unit per layer.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>

#include "cuda_check.cuh"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/lora_trainer.h"
#include "gpu/cuda/rope.h"
#include "gpu/cuda/train_kernels.h"
#include "runtime/training/training_batch.h"

namespace myriad::gpu::cuda {

namespace {

constexpr int64_t kHeadChunk =
    256;  // positions whose logits are made at once (bounds [P, vocab]), as the CPU

// Row-major C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C in float32 (no
// TF32). Read column-major, that is Cᵀ = op(B)ᵀ op(A)ᵀ: the operands swap
// and each keeps its transpose flag. lda, ldb, ldc: the stored row strides.
Status sgemm(cublasHandle_t h, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
             const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return ok_status();
  if (M < 0 || N < 0 || K <= 0 || M > INT32_MAX || N > INT32_MAX || K > INT32_MAX)
    return make_error(ErrorCode::kInvalidArgument, "training gemm: bad shape M=" + std::to_string(M) +
                                                       " N=" + std::to_string(N) + " K=" + std::to_string(K));
  MYRIAD_CUBLAS_TRY(cublasGemmEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                 int(N), int(M), int(K), &alpha, B, CUDA_R_32F, int(ldb), A, CUDA_R_32F,
                                 int(lda), &beta, C, CUDA_R_32F, int(ldc), CUBLAS_COMPUTE_32F_PEDANTIC,
                                 CUBLAS_GEMM_DEFAULT));
  return ok_status();
}

// A device array that only grows (a pass reuses the last one's memory).
template <class T>
class DeviceVector {
 public:
  Status resize(size_t n) {
    if (n * sizeof(T) > buf_.bytes()) {
      auto b = DeviceBuffer::alloc(std::max<size_t>(n * sizeof(T), 256));
      if (!b.ok()) return b.error();
      buf_ = std::move(b.value());
    }
    size_ = n;
    return ok_status();
  }
  T* data() const { return buf_.as<T>(); }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }
  Status upload(const std::vector<T>& host, StreamHandle s) {
    MYRIAD_TRY(resize(host.size()));
    return host.empty() ? ok_status() : copy_h2d(data(), host.data(), host.size() * sizeof(T), s);
  }
  Status zero(StreamHandle s) { return size_ == 0 ? ok_status() : fill_bytes(data(), 0, bytes(), s); }

 private:
  DeviceBuffer buf_;
  size_t size_ = 0;
};

Result<DeviceBuffer> upload_f32(const TensorView& t) {
  std::vector<float> host(size_t(t.numel()));
  for (size_t i = 0; i < host.size(); ++i) host[i] = t.at(i);
  auto d = DeviceBuffer::alloc(std::max<size_t>(host.size() * sizeof(float), 256));
  if (!d.ok()) return d.error();
  if (!host.empty()) MYRIAD_TRY(copy_h2d(d.value().data(), host.data(), host.size() * sizeof(float)));
  MYRIAD_TRY(sync_stream(nullptr));  // `host` is freed on return
  return d;
}

}  // namespace

struct CudaLoraTrainingBackend::Impl {
  struct Layer {
    DeviceBuffer w[kNumLinearModules];
    DeviceBuffer input_norm, post_attn_norm;
    DeviceBuffer bias[kNumLinearModules];  // q, k, v, o where the model has them
  };
  // What a layer's backward needs of its forward (see lora_trainer.h).
  struct Acts {
    DeviceVector<float> r1, h1, q, k, v, lse, attn, x_mid, r2, h2, g, u, act;
    DeviceVector<float> z[kNumLinearModules];  // s·x·Aᵀ per token: [T, rmax]
  };
  // One job's module on the device for this pass.
  struct ModuleTensors {
    const float* a = nullptr;  // [rank, in]
    const float* b = nullptr;  // [out, rank]
    float* da = nullptr;       // null: the job takes no gradients
    float* db = nullptr;
    int32_t rank = 0;
    float scale = 0;
  };
  struct Row {
    int64_t begin = 0, end = 0;
    int32_t job = 0;
    const std::vector<uint8_t>* targets = nullptr;
  };

  std::shared_ptr<const Checkpoint> ckpt;
  ModelConfig c;
  Stream stream;
  cublasHandle_t blas = nullptr;
  std::vector<Layer> layers;
  DeviceBuffer embed, lm_head_own, final_norm;
  const float* lm_head = nullptr;  // the embedding when tied
  std::vector<float> inv_freq;
  int64_t window = 0;
  bool recompute = false;
  size_t base_bytes = 0;

  // The pass in flight.
  std::span<TrainingJobTensors<float>> jobs;
  int64_t T = 0, rmax = 0, max_len = 0;
  bool backward = false, keep_all = false;
  std::vector<Row> rows;
  std::vector<std::vector<std::pair<int64_t, int64_t>>>
      job_spans;  // per job: its runs of tokens, in row order
  std::vector<int32_t> tokens, row_start, row_end;
  std::vector<float> cos, sin;                   // [T, head_dim / 2]: each token's rope angles
  std::vector<int32_t> head_rows, head_targets;  // positions predicting a target token, and that token
  std::vector<float> head_weight;
  std::vector<ModuleTensors> modules;                  // [job][layer][module]
  std::vector<std::pair<size_t, size_t>> grad_ranges;  // per job: [begin, end) of its gradients in grads_d
  DeviceVector<int32_t> tokens_d, row_start_d, row_end_d, head_rows_d, head_targets_d;
  DeviceVector<float> cos_d, sin_d, head_weight_d, params_d, grads_d;
  std::vector<DeviceVector<float>> xs;  // each layer's input; xs[num_layers]: the last one's output
  std::vector<Acts> acts;               // per layer (kept), or one (recompute)
  DeviceVector<float> dx, dh, di1, di2, dg, dattn, dq, dk, dv, delta, dz;
  DeviceVector<float> head_x, head_r, logits, head_loss, head_dx;
  std::vector<float> host_loss;
  std::vector<std::function<Status()>> plan;
  size_t next_unit = 0;
  bool in_flight = false;
  size_t activation_bytes = 0;
  // A unit's failure (a device fault: every buffer is sized in begin()) ends
  // its pass and every later begin() with this error (whose caller reports
  // it: a job fails naming it); the node stays up.
  std::optional<Error> failed;

  ~Impl() {
    if (blas) (void)cublasDestroy(blas);
  }

  StreamHandle s() const { return stream.get(); }
  const ModuleTensors& module(size_t job, int l, LinearModule m) const {
    return modules[(job * size_t(c.num_layers) + size_t(l)) * kNumLinearModules + size_t(m)];
  }
  Acts& acts_of(int l) { return keep_all ? acts[size_t(l)] : acts[0]; }
  train::AttentionShape attention_shape() const {
    return {T, c.num_heads, c.num_kv_heads, c.head_dim, window, max_len};
  }

  Status load() {
    MYRIAD_TRY(check_shape());
    auto st = Stream::create();
    if (!st.ok()) return st.error();
    stream = std::move(st.value());
    MYRIAD_CUBLAS_TRY(cublasCreate(&blas));
    MYRIAD_CUBLAS_TRY(cublasSetMathMode(blas, CUBLAS_DEFAULT_MATH));
    MYRIAD_CUBLAS_TRY(cublasSetStream(blas, stream.get()));
    auto up = [&](const TensorView& t, DeviceBuffer& out) -> Status {
      auto d = upload_f32(t);
      if (!d.ok()) return d.error();
      out = std::move(d.value());
      base_bytes += size_t(t.numel()) * sizeof(float);
      return ok_status();
    };
    for (const LayerWeights& lw : ckpt->layers()) {
      Layer L;
      MYRIAD_TRY(up(lw.input_norm, L.input_norm));
      MYRIAD_TRY(up(lw.post_attn_norm, L.post_attn_norm));
      for (int m = 0; m < kNumLinearModules; ++m) MYRIAD_TRY(up(lw.linear(LinearModule(m)), L.w[m]));
      const TensorView* biases[] = {&lw.q_bias, &lw.k_bias, &lw.v_bias, &lw.o_bias};
      const LinearModule biased[] = {LinearModule::kQ, LinearModule::kK, LinearModule::kV, LinearModule::kO};
      for (int i = 0; i < 4; ++i)
        if (biases[i]->data) MYRIAD_TRY(up(*biases[i], L.bias[int(biased[i])]));
      layers.push_back(std::move(L));
    }
    MYRIAD_TRY(up(ckpt->embed_tokens(), embed));
    MYRIAD_TRY(up(ckpt->final_norm(), final_norm));
    if (ckpt->lm_head().data == ckpt->embed_tokens().data) {
      lm_head = embed.as<float>();
    } else {
      MYRIAD_TRY(up(ckpt->lm_head(), lm_head_own));
      lm_head = lm_head_own.as<float>();
    }
    inv_freq = rope_inv_freq(c);
    if (c.use_sliding_window && c.sliding_window) window = *c.sliding_window;
    return ok_status();
  }

  Status check_shape() const {
    if (c.head_dim > train::kMaxAttentionHeadDim || c.head_dim % 2 != 0)
      return make_error(ErrorCode::kUnsupported, "CUDA training: head_dim " + std::to_string(c.head_dim) +
                                                     " (even, at most " +
                                                     std::to_string(train::kMaxAttentionHeadDim) + ")");
    return ok_status();
  }

  // Checks the batch and lays it out: tokens, rows, each job's runs, the
  // positions the head predicts from; uploads them, the rope angles and
  // the jobs' tensors, and sizes every buffer. Nothing is accumulated.
  Status prepare(std::span<const TrainingRow> in_rows, std::span<TrainingJobTensors<float>> in_jobs,
                 bool grads) {
    MYRIAD_TRY(check_training_batch(c, in_rows, in_jobs));
    for (size_t r = 0; r < in_rows.size(); ++r)
      if (int64_t(in_rows[r].tokens->size()) > train::kMaxAttentionLength)
        return make_error(ErrorCode::kUnsupported, "training row " + std::to_string(r) + ": " +
                                                       std::to_string(in_rows[r].tokens->size()) +
                                                       " tokens, over the CUDA trainer's " +
                                                       std::to_string(train::kMaxAttentionLength));
    jobs = in_jobs;
    T = 0;
    max_len = 0;
    rows.clear();
    tokens.clear();
    row_start.clear();
    row_end.clear();
    head_rows.clear();
    head_targets.clear();
    head_weight.clear();
    job_spans.assign(jobs.size(), {});
    cos.clear();
    sin.clear();
    const int64_t half = c.head_dim / 2;
    for (const TrainingRow& r : in_rows) {
      const int64_t b = T, n = int64_t(r.tokens->size());
      max_len = std::max(max_len, n);
      for (int64_t i = 0; i < n; ++i) {
        tokens.push_back((*r.tokens)[size_t(i)]);
        row_start.push_back(int32_t(b));
        row_end.push_back(int32_t(b + n));
        for (int64_t k = 0; k < half; ++k) {
          const float angle = float(i) * inv_freq[size_t(k)];  // as the CPU's rope_cos_sin
          cos.push_back(std::cos(angle));
          sin.push_back(std::sin(angle));
        }
      }
      T += n;
      rows.push_back({b, T, r.job, r.targets});
      auto& spans = job_spans[size_t(r.job)];
      if (!spans.empty() && spans.back().second == b) {
        spans.back().second = T;  // contiguous with the job's previous row: one run
      } else {
        spans.emplace_back(b, T);
      }
      const auto& job = jobs[size_t(r.job)];
      for (int64_t i = 0; i + 1 < n; ++i)
        if ((*r.targets)[size_t(i + 1)]) {
          head_rows.push_back(int32_t(b + i));
          head_targets.push_back((*r.tokens)[size_t(i + 1)]);
          head_weight.push_back(job.grads ? float(job.loss_weight) : 0.0f);
        }
    }
    backward = false;
    if (grads)
      for (const auto& j : jobs) backward = backward || j.grads != nullptr;
    keep_all = backward && !recompute;
    MYRIAD_TRY(upload_jobs());
    const StreamHandle st = s();
    MYRIAD_TRY(tokens_d.upload(tokens, st));
    MYRIAD_TRY(row_start_d.upload(row_start, st));
    MYRIAD_TRY(row_end_d.upload(row_end, st));
    MYRIAD_TRY(cos_d.upload(cos, st));
    MYRIAD_TRY(sin_d.upload(sin, st));
    MYRIAD_TRY(head_rows_d.upload(head_rows, st));
    MYRIAD_TRY(head_targets_d.upload(head_targets, st));
    MYRIAD_TRY(head_weight_d.upload(head_weight, st));
    MYRIAD_TRY(size_buffers());
    return sync_stream(st);  // the next pass may change the host vectors only after their copies
  }

  // Every job of the step's A and B (and zeroed dA, dB for those with
  // gradients) in two device arenas, in LoraParams' module order.
  Status upload_jobs() {
    const size_t nl = size_t(c.num_layers);
    modules.assign(jobs.size() * nl * kNumLinearModules, ModuleTensors{});
    grad_ranges.assign(jobs.size(), {0, 0});
    std::vector<float> host;
    size_t grad_floats = 0;
    rmax = 0;
    std::vector<std::pair<size_t, size_t>> offsets(modules.size(),
                                                   {SIZE_MAX, SIZE_MAX});  // of a and b in host
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (!jobs[j].params || job_spans[j].empty()) continue;
      const size_t g0 = grad_floats;
      for (size_t i = 0; i < nl * kNumLinearModules; ++i) {
        const auto& p = jobs[j].params->modules[i];
        if (p.rank == 0) continue;
        rmax = std::max<int64_t>(rmax, p.rank);
        offsets[j * nl * kNumLinearModules + i] = {host.size(), host.size() + p.a.size()};
        host.insert(host.end(), p.a.begin(), p.a.end());
        host.insert(host.end(), p.b.begin(), p.b.end());
        if (jobs[j].grads) grad_floats += p.a.size() + p.b.size();
      }
      grad_ranges[j] = {g0, grad_floats};
    }
    MYRIAD_TRY(params_d.upload(host, s()));
    MYRIAD_TRY(grads_d.resize(grad_floats));
    MYRIAD_TRY(grads_d.zero(s()));
    for (size_t j = 0; j < jobs.size(); ++j) {
      size_t g = grad_ranges[j].first;
      for (size_t i = 0; i < nl * kNumLinearModules; ++i) {
        const size_t idx = j * nl * kNumLinearModules + i;
        if (offsets[idx].first == SIZE_MAX) continue;
        const auto& p = jobs[j].params->modules[i];
        ModuleTensors& mt = modules[idx];
        mt.rank = p.rank;
        mt.scale = float(p.scale);
        mt.a = params_d.data() + offsets[idx].first;
        mt.b = params_d.data() + offsets[idx].second;
        if (jobs[j].grads) {
          mt.da = grads_d.data() + g;
          mt.db = grads_d.data() + g + p.a.size();
          g += p.a.size() + p.b.size();
        }
      }
    }
    return ok_status();
  }

  Status size_buffers() {
    using Sized = std::pair<DeviceVector<float>*, size_t>;
    const size_t t = size_t(T), H = size_t(c.hidden_size), I = size_t(c.intermediate_size);
    const size_t Q = size_t(c.q_dim()), KV = size_t(c.kv_dim()), NH = size_t(c.num_heads), R = size_t(rmax);
    const size_t nl = size_t(c.num_layers);
    // What a backward keeps (activation_bytes(), as the CPU counts it).
    size_t kept_bytes = 0;
    if (xs.size() < nl + 1) xs.resize(nl + 1);
    for (auto& x : xs) {
      MYRIAD_TRY(x.resize(t * H));
      kept_bytes += x.bytes();
    }
    const size_t kept = keep_all ? nl : 1;
    if (acts.size() < kept) acts.resize(kept);
    for (size_t i = 0; i < kept; ++i) {
      Acts& a = acts[i];
      for (auto [v, n] : std::initializer_list<Sized>{{&a.r1, t},
                                                      {&a.h1, t * H},
                                                      {&a.q, t * Q},
                                                      {&a.k, t * KV},
                                                      {&a.v, t * KV},
                                                      {&a.lse, t * NH},
                                                      {&a.attn, t * Q},
                                                      {&a.x_mid, t * H},
                                                      {&a.r2, t},
                                                      {&a.h2, t * H},
                                                      {&a.g, t * I},
                                                      {&a.u, t * I},
                                                      {&a.act, t * I}}) {
        MYRIAD_TRY(v->resize(n));
        kept_bytes += v->bytes();
      }
      for (auto& z : a.z) {
        MYRIAD_TRY(z.resize(t * R));
        kept_bytes += z.bytes();
      }
    }
    for (auto [v, n] : std::initializer_list<Sized>{{&dx, t * H},
                                                    {&dh, t * H},
                                                    {&di1, t * I},
                                                    {&di2, t * I},
                                                    {&dg, t * I},
                                                    {&dattn, t * Q},
                                                    {&dq, t * Q},
                                                    {&dk, t * KV},
                                                    {&dv, t * KV},
                                                    {&delta, t * NH},
                                                    {&dz, t * R}})
      MYRIAD_TRY(v->resize(backward ? n : 0));
    const size_t P = std::min<size_t>(size_t(kHeadChunk), head_rows.size());
    for (auto [v, n] : std::initializer_list<Sized>{{&head_x, P * H},
                                                    {&head_r, P},
                                                    {&logits, P * size_t(c.vocab_size)},
                                                    {&head_loss, P},
                                                    {&head_dx, P * H}})
      MYRIAD_TRY(v->resize(n));
    activation_bytes = backward ? kept_bytes : 0;
    return ok_status();
  }

  // y = x·Wᵀ (+ bias) + each job's s·(x·Aᵀ)·Bᵀ over its runs, keeping z = s·x·Aᵀ.
  Status linear(int l, LinearModule m, const float* x, float* y, Acts& a) {
    const auto [out, in] = linear_module_shape(c, m);
    const Layer& L = layers[size_t(l)];
    MYRIAD_TRY(sgemm(blas, false, true, T, out, in, 1.0f, x, in, L.w[int(m)].as<float>(), in, 0.0f, y, out));
    if (L.bias[int(m)].data()) MYRIAD_TRY(train::add_bias_rows(y, L.bias[int(m)].as<float>(), T, out, s()));
    float* z = a.z[int(m)].data();
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (job_spans[j].empty()) continue;
      const ModuleTensors& mt = module(j, l, m);
      if (mt.rank == 0) continue;
      for (const auto& [b, e] : job_spans[j]) {
        MYRIAD_TRY(sgemm(blas, false, true, e - b, mt.rank, in, mt.scale, x + b * in, in, mt.a, in, 0.0f,
                         z + b * rmax, rmax));
        MYRIAD_TRY(sgemm(blas, false, true, e - b, out, mt.rank, 1.0f, z + b * rmax, rmax, mt.b, mt.rank,
                         1.0f, y + b * out, out));
      }
    }
    return ok_status();
  }

  // dx += dy·W + dz·A with dz = s·dy·B; dA += dzᵀ·x, dB += dyᵀ·z per job run.
  Status linear_backward(int l, LinearModule m, const float* x, const float* dy, float* dxm, Acts& a) {
    const auto [out, in] = linear_module_shape(c, m);
    MYRIAD_TRY(sgemm(blas, false, false, T, in, out, 1.0f, dy, out, layers[size_t(l)].w[int(m)].as<float>(),
                     in, 1.0f, dxm, in));
    const float* z = a.z[int(m)].data();
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (job_spans[j].empty()) continue;
      const ModuleTensors& mt = module(j, l, m);
      if (mt.rank == 0) continue;
      const int64_t r = mt.rank;
      for (const auto& [b, e] : job_spans[j]) {
        float* dzb = dz.data() + b * rmax;
        MYRIAD_TRY(
            sgemm(blas, false, false, e - b, r, out, mt.scale, dy + b * out, out, mt.b, r, 0.0f, dzb, rmax));
        MYRIAD_TRY(
            sgemm(blas, false, false, e - b, in, r, 1.0f, dzb, rmax, mt.a, in, 1.0f, dxm + b * in, in));
        if (!mt.da) continue;
        MYRIAD_TRY(sgemm(blas, true, false, r, in, e - b, 1.0f, dzb, rmax, x + b * in, in, 1.0f, mt.da, in));
        MYRIAD_TRY(sgemm(blas, true, false, out, r, e - b, 1.0f, dy + b * out, out, z + b * rmax, rmax, 1.0f,
                         mt.db, r));
      }
    }
    return ok_status();
  }

  Status forward_layer(int l, const float* x_in, Acts& a, float* x_out) {
    const Layer& L = layers[size_t(l)];
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const float eps = float(c.rms_norm_eps);
    const StreamHandle st = s();
    MYRIAD_TRY(train::rmsnorm_forward(x_in, L.input_norm.as<float>(), T, H, eps, a.h1.data(), a.r1.data(),
                                      nullptr, st));
    MYRIAD_TRY(linear(l, LinearModule::kQ, a.h1.data(), a.q.data(), a));
    MYRIAD_TRY(linear(l, LinearModule::kK, a.h1.data(), a.k.data(), a));
    MYRIAD_TRY(linear(l, LinearModule::kV, a.h1.data(), a.v.data(), a));
    MYRIAD_TRY(train::rope_forward(a.q.data(), T, c.num_heads, c.head_dim, cos_d.data(), sin_d.data(), st));
    MYRIAD_TRY(
        train::rope_forward(a.k.data(), T, c.num_kv_heads, c.head_dim, cos_d.data(), sin_d.data(), st));
    MYRIAD_TRY(train::attention_forward(attention_shape(), row_start_d.data(), a.q.data(), a.k.data(),
                                        a.v.data(), a.attn.data(), a.lse.data(), st));
    MYRIAD_TRY(linear(l, LinearModule::kO, a.attn.data(), a.x_mid.data(), a));
    MYRIAD_TRY(train::add_into(a.x_mid.data(), x_in, T * H, st));
    MYRIAD_TRY(train::rmsnorm_forward(a.x_mid.data(), L.post_attn_norm.as<float>(), T, H, eps, a.h2.data(),
                                      a.r2.data(), nullptr, st));
    MYRIAD_TRY(linear(l, LinearModule::kGate, a.h2.data(), a.g.data(), a));
    MYRIAD_TRY(linear(l, LinearModule::kUp, a.h2.data(), a.u.data(), a));
    MYRIAD_TRY(train::silu_mul_forward(a.g.data(), a.u.data(), T * I, a.act.data(), st));
    MYRIAD_TRY(linear(l, LinearModule::kDown, a.act.data(), x_out, a));
    return train::add_into(x_out, a.x_mid.data(), T * H, st);
  }

  // dx: the gradient of the layer's output on entry, of its input on return.
  Status backward_layer(int l, const float* x_in, Acts& a) {
    const Layer& L = layers[size_t(l)];
    const int64_t H = c.hidden_size, I = c.intermediate_size;
    const StreamHandle st = s();
    MYRIAD_TRY(di1.zero(st));  // d act
    MYRIAD_TRY(linear_backward(l, LinearModule::kDown, a.act.data(), dx.data(), di1.data(), a));
    MYRIAD_TRY(dg.zero(st));
    MYRIAD_TRY(di2.zero(st));  // d up
    MYRIAD_TRY(
        train::silu_mul_backward(a.g.data(), a.u.data(), di1.data(), T * I, dg.data(), di2.data(), st));
    MYRIAD_TRY(dh.zero(st));  // d h2
    MYRIAD_TRY(linear_backward(l, LinearModule::kGate, a.h2.data(), dg.data(), dh.data(), a));
    MYRIAD_TRY(linear_backward(l, LinearModule::kUp, a.h2.data(), di2.data(), dh.data(), a));
    MYRIAD_TRY(train::rmsnorm_backward(a.x_mid.data(), L.post_attn_norm.as<float>(), a.r2.data(), dh.data(),
                                       T, H, dx.data(), nullptr, st));
    MYRIAD_TRY(dattn.zero(st));
    MYRIAD_TRY(linear_backward(l, LinearModule::kO, a.attn.data(), dx.data(), dattn.data(), a));
    MYRIAD_TRY(dq.zero(st));
    MYRIAD_TRY(dk.zero(st));
    MYRIAD_TRY(dv.zero(st));
    MYRIAD_TRY(train::attention_backward(attention_shape(), row_start_d.data(), row_end_d.data(), a.q.data(),
                                         a.k.data(), a.v.data(), a.attn.data(), a.lse.data(), dattn.data(),
                                         delta.data(), dq.data(), dk.data(), dv.data(), st));
    MYRIAD_TRY(train::rope_backward(dq.data(), T, c.num_heads, c.head_dim, cos_d.data(), sin_d.data(), st));
    MYRIAD_TRY(
        train::rope_backward(dk.data(), T, c.num_kv_heads, c.head_dim, cos_d.data(), sin_d.data(), st));
    MYRIAD_TRY(dh.zero(st));  // d h1
    MYRIAD_TRY(linear_backward(l, LinearModule::kQ, a.h1.data(), dq.data(), dh.data(), a));
    MYRIAD_TRY(linear_backward(l, LinearModule::kK, a.h1.data(), dk.data(), dh.data(), a));
    MYRIAD_TRY(linear_backward(l, LinearModule::kV, a.h1.data(), dv.data(), dh.data(), a));
    return train::rmsnorm_backward(x_in, L.input_norm.as<float>(), a.r1.data(), dh.data(), T, H, dx.data(),
                                   nullptr, st);
  }

  // Positions [c0, c0 + kHeadChunk) of head_rows: the final norm, logits,
  // cross-entropy (losses summed per job on the host, in position order) and,
  // in a backward pass, their gradient into dx.
  Status head_chunk(size_t c0) {
    const int64_t H = c.hidden_size, V = c.vocab_size;
    const int64_t P = std::min<int64_t>(kHeadChunk, int64_t(head_rows.size() - c0));
    const StreamHandle st = s();
    const float* x_last = xs[size_t(c.num_layers)].data();
    MYRIAD_TRY(train::rmsnorm_forward(x_last, final_norm.as<float>(), P, H, float(c.rms_norm_eps),
                                      head_x.data(), head_r.data(), head_rows_d.data() + c0, st));
    MYRIAD_TRY(sgemm(blas, false, true, P, V, H, 1.0f, head_x.data(), H, lm_head, H, 0.0f, logits.data(), V));
    MYRIAD_TRY(train::cross_entropy(logits.data(), P, V, head_targets_d.data() + c0,
                                    head_weight_d.data() + c0, head_loss.data(), st));
    host_loss.resize(size_t(P));
    MYRIAD_TRY(copy_d2h(host_loss.data(), head_loss.data(), size_t(P) * sizeof(float), st));
    if (backward) {
      MYRIAD_TRY(
          sgemm(blas, false, false, P, H, V, 1.0f, logits.data(), V, lm_head, H, 0.0f, head_dx.data(), H));
      MYRIAD_TRY(train::rmsnorm_backward(x_last, final_norm.as<float>(), head_r.data(), head_dx.data(), P, H,
                                         dx.data(), head_rows_d.data() + c0, st));
    }
    MYRIAD_TRY(sync_stream(st));
    size_t row = 0;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t t = head_rows[c0 + size_t(p)];
      while (rows[row].end <= t) ++row;
      auto& job = jobs[size_t(rows[row].job)];
      job.loss_sum += double(host_loss[size_t(p)]);
      job.loss_tokens += 1;
    }
    return ok_status();
  }

  // Adds the pass's gradients into each job's host gradients.
  Status collect_grads() {
    std::vector<float> host(grads_d.size());
    if (!host.empty()) MYRIAD_TRY(copy_d2h(host.data(), grads_d.data(), grads_d.bytes(), s()));
    MYRIAD_TRY(sync_stream(s()));
    for (size_t j = 0; j < jobs.size(); ++j) {
      if (!jobs[j].grads || job_spans[j].empty()) continue;
      size_t g = grad_ranges[j].first;
      for (size_t i = 0; i < jobs[j].params->modules.size(); ++i) {
        if (jobs[j].params->modules[i].rank == 0) continue;
        auto& gm = jobs[j].grads->modules[i];
        for (auto& v : gm.a) v += host[g++];
        for (auto& v : gm.b) v += host[g++];
      }
    }
    return ok_status();
  }

  Status embed_tokens() {
    return train::embed_rows(embed.as<float>(), tokens_d.data(), T, c.hidden_size, xs[0].data(), s());
  }

  // A unit, then the stream synchronised (so a caller's clock sees its work).
  void add_unit(std::function<Status()> body) {
    plan.push_back([this, body = std::move(body)]() -> Status {
      MYRIAD_TRY(body());
      return sync_stream(s());
    });
  }

  void plan_pass() {
    plan.clear();
    next_unit = 0;
    const int nl = int(c.num_layers);
    for (int l = 0; l < nl; ++l)
      add_unit(
          [this, l] { return forward_layer(l, xs[size_t(l)].data(), acts_of(l), xs[size_t(l) + 1].data()); });
    for (size_t c0 = 0; c0 < head_rows.size(); c0 += size_t(kHeadChunk))
      add_unit([this, c0] { return head_chunk(c0); });
    if (!backward) return;
    for (int l = nl - 1; l >= 0; --l)
      add_unit([this, l]() -> Status {
        // Recomputing rewrites the layer's output buffer: free by now, its gradient is in dx.
        if (!keep_all)
          MYRIAD_TRY(forward_layer(l, xs[size_t(l)].data(), acts_of(l), xs[size_t(l) + 1].data()));
        return backward_layer(l, xs[size_t(l)].data(), acts_of(l));
      });
    add_unit([this] { return collect_grads(); });
  }
};

CudaLoraTrainingBackend::CudaLoraTrainingBackend(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaLoraTrainingBackend::~CudaLoraTrainingBackend() = default;

Result<std::unique_ptr<CudaLoraTrainingBackend>> CudaLoraTrainingBackend::create(
    std::shared_ptr<const Checkpoint> ckpt) {
  if (auto why = device_unavailable_reason())
    return make_error(ErrorCode::kUnsupported, "CUDA training: no CUDA device: " + *why);
  auto impl = std::make_unique<Impl>();
  impl->c = ckpt->config();
  impl->ckpt = std::move(ckpt);
  MYRIAD_TRY(impl->load());
  return std::unique_ptr<CudaLoraTrainingBackend>(new CudaLoraTrainingBackend(std::move(impl)));
}

Status CudaLoraTrainingBackend::forward_backward(std::span<const TrainingRow> rows,
                                                 std::span<TrainingJobTensors<float>> jobs) {
  MYRIAD_TRY(begin(rows, jobs));
  while (!advance()) {
  }
  return ok_status();
}

Status CudaLoraTrainingBackend::begin(std::span<const TrainingRow> rows,
                                      std::span<TrainingJobTensors<float>> jobs) {
  Impl& m = *impl_;
  if (m.failed) return *m.failed;
  m.in_flight = false;  // a pass left unfinished is dropped, as the CPU's begin() does
  MYRIAD_TRY(m.prepare(rows, jobs, /*grads=*/true));
  if (m.backward) MYRIAD_TRY(m.dx.zero(m.s()));
  MYRIAD_TRY(m.embed_tokens());
  MYRIAD_TRY(sync_stream(m.s()));
  m.plan_pass();
  m.in_flight = true;
  return ok_status();
}

bool CudaLoraTrainingBackend::advance() {
  Impl& m = *impl_;
  MYRIAD_CHECK(m.in_flight, "advance() without begin()");
  if (m.next_unit < m.plan.size()) {
    const Status st = m.plan[m.next_unit++]();
    if (!st.ok()) {
      m.failed = make_error(st.error().code, "CUDA training failed (unit " + std::to_string(m.next_unit - 1) +
                                                 " of a pass; the device is not used for training again): " +
                                                 st.error().message);
      m.next_unit = m.plan.size();  // the pass ends here; its gradients are never added
    }
  }
  if (m.next_unit < m.plan.size()) return false;
  m.in_flight = false;
  m.plan.clear();
  return true;
}

void CudaLoraTrainingBackend::set_recompute(bool on) { impl_->recompute = on; }

Status CudaLoraTrainingBackend::mean_hidden(std::span<const TrainingRow> rows,
                                            std::span<TrainingJobTensors<float>> jobs, int layers,
                                            std::vector<float>& out) {
  Impl& m = *impl_;
  MYRIAD_CHECK(!m.in_flight, "mean_hidden() while a pass is in flight");
  if (m.failed) return *m.failed;
  if (layers < 0 || layers > m.c.num_layers)
    return make_error(ErrorCode::kInvalidArgument, "layer " + std::to_string(layers) + " outside [0, " +
                                                       std::to_string(m.c.num_layers) + "]");
  MYRIAD_TRY(m.prepare(rows, jobs, /*grads=*/false));
  MYRIAD_TRY(m.embed_tokens());
  for (int l = 0; l < layers; ++l)
    MYRIAD_TRY(m.forward_layer(l, m.xs[size_t(l)].data(), m.acts[0], m.xs[size_t(l) + 1].data()));
  const int64_t H = m.c.hidden_size;
  std::vector<float> x(size_t(m.T * H));
  if (!x.empty())
    MYRIAD_TRY(copy_d2h(x.data(), m.xs[size_t(layers)].data(), x.size() * sizeof(float), m.s()));
  MYRIAD_TRY(sync_stream(m.s()));
  out.assign(m.rows.size() * size_t(H), 0.0f);
  for (size_t r = 0; r < m.rows.size(); ++r) {
    // The positions the row's targets mark (all of them when none is), as the CPU.
    const Impl::Row& row = m.rows[r];
    const auto& marks = *row.targets;
    const bool marked = std::any_of(marks.begin(), marks.end(), [](uint8_t v) { return v != 0; });
    int64_t n = 0;
    for (int64_t t = row.begin; t < row.end; ++t) n += !marked || marks[size_t(t - row.begin)] != 0;
    const double inv = 1.0 / double(n);
    for (int64_t i = 0; i < H; ++i) {
      double sum = 0;
      for (int64_t t = row.begin; t < row.end; ++t)
        if (!marked || marks[size_t(t - row.begin)] != 0) sum += double(x[size_t(t * H + i)]);
      out[r * size_t(H) + size_t(i)] = float(sum * inv);
    }
  }
  return ok_status();
}

size_t CudaLoraTrainingBackend::activation_bytes() const { return impl_->activation_bytes; }
size_t CudaLoraTrainingBackend::base_bytes() const { return impl_->base_bytes; }

}  // namespace myriad::gpu::cuda
