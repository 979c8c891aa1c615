// The CUDA training kernels (gpu/cuda/train_kernels.h) against the CPU's
// (gpu/cpu/train_kernels.h, which tests/gpu/lora_training_test.cpp checks
// against finite differences in float64), on seeded random inputs. Outputs a
// kernel writes start as NaN; outputs it adds into start random, so a kernel
// that writes where it should add fails. float32 on both sides: only the order
// of sums differs, so 1e-5 + 1e-4·|ref| for rows of a few hundred; attention
// (sums over up to 130 keys of exp) as the CPU's own float-vs-double test, 1e-4 + 1e-4·|ref|.
#include "gpu/cpu/train_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cuda_test_util.h"
#include "gpu/cuda/train_kernels.h"

namespace myriad::cuda_test {
namespace {

namespace cpu_train = gpu::cpu::train;
namespace cuda_train = gpu::cuda::train;

constexpr Tol kRowTol{1e-5f, 1e-4f};
constexpr Tol kAttentionTol{1e-4f, 1e-4f};

std::vector<float> download_f32(const DeviceBuffer& b, size_t n) { return download(b, n, DType::kF32); }

TEST(CudaTrainKernels, RmsNormForwardAndBackwardMatchTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  for (bool gathered : {false, true}) {
    SCOPED_TRACE(gathered ? "gathered rows" : "all rows");
    const int64_t rows_in = 9, n = 300;  // n not a multiple of 32
    const std::vector<int32_t> pick = {7, 0, 4, 8};
    const int64_t T = gathered ? int64_t(pick.size()) : rows_in;
    const auto x = randn(size_t(rows_in * n), DType::kF32, 2.0f);
    auto w = randn(size_t(n), DType::kF32, 0.3f);
    for (auto& v : w) v += 1.0f;
    const auto dy = randn(size_t(T * n), DType::kF32);
    const auto dx0 = randn(size_t(rows_in * n), DType::kF32);
    std::vector<float> y_ref(size_t(T * n)), r_ref(static_cast<size_t>(T)), dx_ref = dx0;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t src = gathered ? pick[size_t(t)] : t;
      r_ref[size_t(t)] = cpu_train::rmsnorm_row(x.data() + src * n, w.data(), n, 1e-5, y_ref.data() + t * n);
      cpu_train::rmsnorm_row_backward(x.data() + src * n, w.data(), r_ref[size_t(t)], dy.data() + t * n, n,
                                      dx_ref.data() + src * n);
    }
    DeviceBuffer dxd = upload(x, DType::kF32), dwd = upload(w, DType::kF32), ddy = upload(dy, DType::kF32);
    DeviceBuffer ddx = upload(dx0, DType::kF32), dpick = upload_raw(pick);
    DeviceBuffer dyo = poisoned(size_t(T * n), DType::kF32), dro = poisoned(size_t(T), DType::kF32);
    const int32_t* rows = gathered ? dpick.as<int32_t>() : nullptr;
    MYRIAD_ASSERT_OK(cuda_train::rmsnorm_forward(dxd.as<float>(), dwd.as<float>(), T, n, 1e-5f,
                                                 dyo.as<float>(), dro.as<float>(), rows, nullptr));
    MYRIAD_ASSERT_OK(cuda_train::rmsnorm_backward(dxd.as<float>(), dwd.as<float>(), dro.as<float>(),
                                                  ddy.as<float>(), T, n, ddx.as<float>(), rows, nullptr));
    EXPECT_TRUE(all_close(download_f32(dyo, y_ref.size()), y_ref, kRowTol, "y"));
    EXPECT_TRUE(all_close(download_f32(dro, r_ref.size()), r_ref, kRowTol, "inverse rms"));
    EXPECT_TRUE(all_close(download_f32(ddx, dx_ref.size()), dx_ref, kRowTol, "dx (added into)"));
  }
}

TEST(CudaTrainKernels, RopeSiluAndElementwiseMatchTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  {  // RoPE forward and back, 5 tokens of 3 heads of 16, each token its own angles.
    const int64_t T = 5, heads = 3, d = 16, half = d / 2;
    const auto x = randn(size_t(T * heads * d), DType::kF32);
    const auto angles = randn(size_t(T * half), DType::kF32, 3.0f);
    std::vector<float> cos(angles.size()), sin(angles.size());
    for (size_t i = 0; i < angles.size(); ++i) cos[i] = std::cos(angles[i]), sin[i] = std::sin(angles[i]);
    std::vector<float> fwd = x, bwd = x;
    for (int64_t t = 0; t < T; ++t) {
      cpu_train::rope_row(fwd.data() + t * heads * d, heads, d, cos.data() + t * half, sin.data() + t * half);
      cpu_train::rope_row_backward(bwd.data() + t * heads * d, heads, d, cos.data() + t * half,
                                   sin.data() + t * half);
    }
    DeviceBuffer a = upload(x, DType::kF32), b = upload(x, DType::kF32);
    DeviceBuffer dc = upload(cos, DType::kF32), ds = upload(sin, DType::kF32);
    MYRIAD_ASSERT_OK(
        cuda_train::rope_forward(a.as<float>(), T, heads, d, dc.as<float>(), ds.as<float>(), nullptr));
    MYRIAD_ASSERT_OK(
        cuda_train::rope_backward(b.as<float>(), T, heads, d, dc.as<float>(), ds.as<float>(), nullptr));
    EXPECT_TRUE(all_close(download_f32(a, x.size()), fwd, kRowTol, "rope forward"));
    EXPECT_TRUE(all_close(download_f32(b, x.size()), bwd, kRowTol, "rope backward"));
  }
  {  // SiLU-mul forward and backward (added into dg, du).
    const int64_t n = 1000;
    const auto g = randn(size_t(n), DType::kF32, 3.0f), u = randn(size_t(n), DType::kF32);
    const auto da = randn(size_t(n), DType::kF32), dg0 = randn(size_t(n), DType::kF32),
               du0 = randn(size_t(n), DType::kF32);
    std::vector<float> a_ref(static_cast<size_t>(n)), dg_ref = dg0, du_ref = du0;
    cpu_train::silu_mul_row(g.data(), u.data(), n, a_ref.data());
    cpu_train::silu_mul_row_backward(g.data(), u.data(), da.data(), n, dg_ref.data(), du_ref.data());
    DeviceBuffer dgd = upload(g, DType::kF32), dud = upload(u, DType::kF32), dad = upload(da, DType::kF32);
    DeviceBuffer a = poisoned(size_t(n), DType::kF32), dg = upload(dg0, DType::kF32),
                 du = upload(du0, DType::kF32);
    MYRIAD_ASSERT_OK(
        cuda_train::silu_mul_forward(dgd.as<float>(), dud.as<float>(), n, a.as<float>(), nullptr));
    MYRIAD_ASSERT_OK(cuda_train::silu_mul_backward(dgd.as<float>(), dud.as<float>(), dad.as<float>(), n,
                                                   dg.as<float>(), du.as<float>(), nullptr));
    EXPECT_TRUE(all_close(download_f32(a, size_t(n)), a_ref, kRowTol, "silu_mul"));
    EXPECT_TRUE(all_close(download_f32(dg, size_t(n)), dg_ref, kRowTol, "dg"));
    EXPECT_TRUE(all_close(download_f32(du, size_t(n)), du_ref, kRowTol, "du"));
  }
  {  // add_into, add_bias_rows, embed_rows: exact.
    const int64_t T = 4, n = 37, vocab = 11;
    const auto y0 = randn(size_t(T * n), DType::kF32), x = randn(size_t(T * n), DType::kF32);
    const auto bias = randn(size_t(n), DType::kF32), table = randn(size_t(vocab * n), DType::kF32);
    const std::vector<int32_t> ids = {3, 10, 0, 3};
    std::vector<float> sum(y0.size()), biased(y0.size()), embedded(y0.size());
    for (size_t i = 0; i < y0.size(); ++i) {
      sum[i] = y0[i] + x[i];
      biased[i] = y0[i] + bias[i % size_t(n)];
      embedded[i] = table[size_t(ids[i / size_t(n)]) * size_t(n) + i % size_t(n)];
    }
    DeviceBuffer a = upload(y0, DType::kF32), b = upload(y0, DType::kF32), dxx = upload(x, DType::kF32);
    DeviceBuffer db = upload(bias, DType::kF32), dt = upload(table, DType::kF32), di = upload_raw(ids);
    DeviceBuffer e = poisoned(y0.size(), DType::kF32);
    MYRIAD_ASSERT_OK(cuda_train::add_into(a.as<float>(), dxx.as<float>(), T * n, nullptr));
    MYRIAD_ASSERT_OK(cuda_train::add_bias_rows(b.as<float>(), db.as<float>(), T, n, nullptr));
    MYRIAD_ASSERT_OK(cuda_train::embed_rows(dt.as<float>(), di.as<int32_t>(), T, n, e.as<float>(), nullptr));
    EXPECT_TRUE(all_close(download_f32(a, sum.size()), sum, {0, 0}, "add_into"));
    EXPECT_TRUE(all_close(download_f32(b, biased.size()), biased, {0, 0}, "add_bias_rows"));
    EXPECT_TRUE(all_close(download_f32(e, embedded.size()), embedded, {0, 0}, "embed_rows"));
  }
}

// Packed sequences of 1, 7, 33 and 130 tokens (longer than a block's 128
// threads: the key kernel's chunk loop), 4 query heads over 2 kv heads.
TEST(CudaTrainKernels, AttentionForwardAndBackwardMatchTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const std::vector<int64_t> lengths = {1, 7, 33, 130};
  // 24: the CPU's portable loops (not a multiple of 8); 256: two columns per
  // thread in the key kernel.
  for (int64_t d : {8, 24, 64, 128, 256})
    for (int64_t window : {0, 5}) {
      SCOPED_TRACE("head_dim " + std::to_string(d) + " window " + std::to_string(window));
      const int64_t heads = 4, kv_heads = 2;
      int64_t T = 0;
      std::vector<int32_t> starts, ends;
      for (int64_t n : lengths) {
        for (int64_t i = 0; i < n; ++i) starts.push_back(int32_t(T)), ends.push_back(int32_t(T + n));
        T += n;
      }
      const size_t Q = size_t(heads * d), KV = size_t(kv_heads * d);
      const auto q = randn(size_t(T) * Q, DType::kF32), k = randn(size_t(T) * KV, DType::kF32);
      const auto v = randn(size_t(T) * KV, DType::kF32), d_out = randn(size_t(T) * Q, DType::kF32);
      const auto dq0 = randn(size_t(T) * Q, DType::kF32), dk0 = randn(size_t(T) * KV, DType::kF32),
                 dv0 = randn(size_t(T) * KV, DType::kF32);
      std::vector<float> out_ref(size_t(T) * Q), lse_ref(size_t(T * heads));
      std::vector<float> dq_ref = dq0, dk_ref = dk0, dv_ref = dv0;
      int64_t b = 0;
      for (int64_t n : lengths) {
        const cpu_train::AttentionShape s{n, heads, kv_heads, d, window};
        for (int64_t g = 0; g < kv_heads; ++g) {
          cpu_train::attention_forward(s, g, q.data() + b * Q, k.data() + b * KV, v.data() + b * KV,
                                       out_ref.data() + b * Q, lse_ref.data() + b * heads);
          cpu_train::attention_backward(s, g, q.data() + b * Q, k.data() + b * KV, v.data() + b * KV,
                                        out_ref.data() + b * Q, lse_ref.data() + b * heads,
                                        d_out.data() + b * Q, dq_ref.data() + b * Q, dk_ref.data() + b * KV,
                                        dv_ref.data() + b * KV);
        }
        b += n;
      }
      DeviceBuffer dqq = upload(q, DType::kF32), dkk = upload(k, DType::kF32), dvv = upload(v, DType::kF32);
      DeviceBuffer ddo = upload(d_out, DType::kF32), dst = upload_raw(starts), den = upload_raw(ends);
      DeviceBuffer out = poisoned(size_t(T) * Q, DType::kF32), lse = poisoned(size_t(T * heads), DType::kF32);
      DeviceBuffer delta = poisoned(size_t(T * heads), DType::kF32);
      DeviceBuffer dq = upload(dq0, DType::kF32), dk = upload(dk0, DType::kF32),
                   dv = upload(dv0, DType::kF32);
      const cuda_train::AttentionShape s{T, heads, kv_heads, d, window, 130};
      MYRIAD_ASSERT_OK(cuda_train::attention_forward(s, dst.as<int32_t>(), dqq.as<float>(), dkk.as<float>(),
                                                     dvv.as<float>(), out.as<float>(), lse.as<float>(),
                                                     nullptr));
      MYRIAD_ASSERT_OK(cuda_train::attention_backward(
          s, dst.as<int32_t>(), den.as<int32_t>(), dqq.as<float>(), dkk.as<float>(), dvv.as<float>(),
          out.as<float>(), lse.as<float>(), ddo.as<float>(), delta.as<float>(), dq.as<float>(),
          dk.as<float>(), dv.as<float>(), nullptr));
      EXPECT_TRUE(all_close(download_f32(out, out_ref.size()), out_ref, kAttentionTol, "out"));
      EXPECT_TRUE(all_close(download_f32(lse, lse_ref.size()), lse_ref, kAttentionTol, "lse"));
      EXPECT_TRUE(all_close(download_f32(dq, dq_ref.size()), dq_ref, kAttentionTol, "dq"));
      EXPECT_TRUE(all_close(download_f32(dk, dk_ref.size()), dk_ref, kAttentionTol, "dk"));
      EXPECT_TRUE(all_close(download_f32(dv, dv_ref.size()), dv_ref, kAttentionTol, "dv"));
    }
}

TEST(CudaTrainKernels, AttentionRefusesSequencesItCannotHold) {
  MYRIAD_REQUIRE_CUDA();
  const cuda_train::AttentionShape s{1, 1, 1, 8, 0, cuda_train::kMaxAttentionLength + 1};
  const auto st =
      cuda_train::attention_forward(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kUnsupported);
}

TEST(CudaTrainKernels, CrossEntropyMatchesTheCpu) {
  MYRIAD_REQUIRE_CUDA();
  MYRIAD_CUDA_TEST_SEED();
  const int64_t P = 3, V = 3001;
  const auto logits = randn(size_t(P * V), DType::kF32, 4.0f);
  const std::vector<int32_t> targets = {5, 3000, 0};
  const std::vector<float> weights = {1.0f, 0.5f, 0.0f};
  std::vector<float> dl_ref(logits.size()), loss_ref(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) {
    loss_ref[size_t(p)] = float(cpu_train::cross_entropy_row(logits.data() + p * V, V, targets[size_t(p)],
                                                             weights[size_t(p)], dl_ref.data() + p * V));
  }
  DeviceBuffer dl = upload(logits, DType::kF32), dt = upload_raw(targets), dw = upload(weights, DType::kF32);
  DeviceBuffer loss = poisoned(size_t(P), DType::kF32);
  MYRIAD_ASSERT_OK(cuda_train::cross_entropy(dl.as<float>(), P, V, dt.as<int32_t>(), dw.as<float>(),
                                             loss.as<float>(), nullptr));
  EXPECT_TRUE(all_close(download_f32(loss, size_t(P)), loss_ref, kRowTol, "loss"));
  // Softmax values of ~1/3000 each: the tolerance is on their scale.
  EXPECT_TRUE(all_close(download_f32(dl, dl_ref.size()), dl_ref, {1e-7f, 1e-4f}, "dlogits"));
}

}  // namespace
}  // namespace myriad::cuda_test
