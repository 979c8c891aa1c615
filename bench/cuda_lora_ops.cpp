// Achieved bandwidth of the SGMV and BGMV LoRA kernels (shrink + expand of
// one module) on tinyllama-1.1b shapes, bf16, rank 16, batch 64, with 1, 8 and
// 64 distinct adapters: bytes = distinct adapters' A and B + x read + y read
// and written, over the kernels' time (CUDA events, 50 repetitions). Then
// tinyllama's q|k|v (2048 -> 2048 | 256 | 256) as one group launch pair
// against three launch pairs, BGMV, same data (the A/B of grouping). Rows
// "shrink ..." / "expand ...": BGMV's shrink (a warp per rank row) and
// expand (4 tokens a block) against the segmented kernels on one-token
// segments (BGMV's until 2026-12-08), interleaved.
//
//   cuda_lora_ops [--json]
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_common.h"
#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/elementwise.h"
#include "gpu/cuda/lora.h"
#include "nodes/cli_app.h"

using namespace myriad;
using namespace myriad::gpu::cuda;

namespace {
// Microseconds a call of launch() takes: reps calls after one to warm up,
// between two CUDA events on the legacy stream.
template <class F>
double time_us(const F& launch, int reps) {
  auto e0 = must(Event::create(true)), e1 = must(Event::create(true));
  launch();
  must(e0.record(nullptr));
  for (int i = 0; i < reps; ++i) launch();
  must(e1.record(nullptr));
  must(e1.synchronize());
  return must(elapsed_ms(e0, e1)) * 1000.0 / reps;
}
// Each form's best time_us over 3 rounds, the forms interleaved in each.
template <class F>
std::vector<double> best_of_rounds(int forms, const F& launch_form, int reps) {
  std::vector<double> us(size_t(forms), 1e30);
  for (int round = 0; round < 3; ++round)
    for (int form = 0; form < forms; ++form)
      us[size_t(form)] = std::min(us[size_t(form)], time_us([&] { launch_form(form); }, reps));
  return us;
}
template <class T>
DeviceBuffer up(const std::vector<T>& v) {
  auto b = must(DeviceBuffer::alloc(v.size() * sizeof(T)));
  must(copy_h2d(b.data(), v.data(), v.size() * sizeof(T)));
  return b;
}
}  // namespace

int main(int argc, char** argv) {
  bool json = false;
  LogLevel log_level = LogLevel::kWarn;
  CLI::App app("Achieved bandwidth of the SGMV and BGMV LoRA kernels on tinyllama-1.1b shapes.", "cuda_lora_ops");
  cli::set_conventions(app);
  app.add_flag("--json", json, "print JSON rows instead of the table");
  cli::add_log_level(app, log_level);
  // scripts/gpu-check passes its --bench-args (cuda_decode's flags) to every
  // cuda_* program; this one has none of those and ignores them, as it
  // always has.
  app.allow_extras();
  if (const auto exit_code = cli::parse(app, argc, argv, log_level)) return *exit_code;
  if (auto why = device_unavailable_reason()) {
    std::fprintf(stderr, "cuda_lora_ops: no CUDA device: %s\n", why->c_str());
    if (json) std::printf("{\"rows\":[{\"case\":\"skipped\",\"reason\":\"no CUDA device\"}]}\n");
    return 0;
  }
  const int slots = 64, R = 16, T = 64, reps = 50;
  struct Shape {
    const char* name;
    int in, out;
  };
  const Shape shapes[] = {{"q_proj 2048x2048", 2048, 2048}, {"gate_proj 2048->5632", 2048, 5632},
                          {"down_proj 5632->2048", 5632, 2048}};
  std::vector<std::string> rows;
  for (const Shape& sh : shapes) {
    auto a = must(DeviceBuffer::alloc(size_t(slots) * R * sh.in * 2));
    auto b = must(DeviceBuffer::alloc(size_t(slots) * sh.out * R * 2));
    // Random data, never zeros (zeros can hide wrong indexing and time faster).
    must(fill_random(DType::kBF16, a.data(), int64_t(a.bytes() / 2), 0.05f, 11, nullptr));
    must(fill_random(DType::kBF16, b.data(), int64_t(b.bytes() / 2), 0.05f, 12, nullptr));
    auto ranks = up(std::vector<int32_t>(slots, R));
    auto scales = up(std::vector<float>(slots, 1.0f));
    auto x = must(DeviceBuffer::alloc(size_t(T) * sh.in * 2));
    auto y = must(DeviceBuffer::alloc(size_t(T) * sh.out * 2));
    must(fill_random(DType::kBF16, x.data(), int64_t(x.bytes() / 2), 1.0f, 13, nullptr));
    must(fill_random(DType::kBF16, y.data(), int64_t(y.bytes() / 2), 1.0f, 14, nullptr));
    auto v = must(DeviceBuffer::alloc(size_t(T) * R * 4));
    LoraModuleSlots w{a.data(), b.data(), ranks.as<int32_t>(), scales.as<float>(), 1, slots, R, sh.in, sh.out};
    for (int distinct : {1, 8, 64}) {
      std::vector<int32_t> token_slot(T), seg_slot, seg_start, entry_token;
      std::vector<float> entry_weight(T, 1.0f);
      for (int t = 0; t < T; ++t) token_slot[size_t(t)] = t % distinct;
      for (int s = 0; s < distinct; ++s) {
        seg_slot.push_back(s);
        seg_start.push_back(int32_t(entry_token.size()));
        for (int t = s; t < T; t += distinct) entry_token.push_back(t);
      }
      seg_start.push_back(T);
      auto dts = up(token_slot), dss = up(seg_slot), dst = up(seg_start), det = up(entry_token), dew = up(entry_weight);
      SgmvBatch sb{dss.as<int32_t>(), dst.as<int32_t>(), det.as<int32_t>(), dew.as<float>(), distinct, T / distinct};
      const double bytes = double(distinct) * R * (sh.in + sh.out) * 2 + double(T) * sh.in * 2 + 2.0 * T * sh.out * 2;
      for (int form = 0; form < 2; ++form) {
        auto launch = [&] {
          if (form == 0) {
            must(bgmv_shrink(DType::kBF16, v.as<float>(), x.data(), sh.in, w, dts.as<int32_t>(), T, nullptr));
            must(bgmv_expand(DType::kBF16, y.data(), sh.out, v.as<float>(), w, dts.as<int32_t>(), T, nullptr));
          } else {
            must(sgmv_shrink(DType::kBF16, v.as<float>(), x.data(), sh.in, w, sb, nullptr));
            must(sgmv_expand(DType::kBF16, y.data(), sh.out, v.as<float>(), w, sb, nullptr));
          }
        };
        const double us = time_us(launch, reps);
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "{\"case\":\"%s %s b64 %d distinct\",\"us\":%.1f,\"GBps\":%.0f,\"MB\":%.2f}",
                      form == 0 ? "bgmv" : "sgmv", sh.name, distinct, us, bytes / (us * 1e3), bytes / 1e6);
        rows.push_back(buf);
      }
      {  // BGMV's kernels (shrink: a warp a rank row; expand: 4 tokens a block) against the segmented
         // ones on one-token segments, which BGMV used before
        std::vector<int32_t> one_start(size_t(T) + 1), one_token(T);
        for (int t = 0; t <= T; ++t) one_start[size_t(t)] = t;
        for (int t = 0; t < T; ++t) one_token[size_t(t)] = t;
        auto d_start = up(one_start), d_token = up(one_token), d_weight = up(std::vector<float>(T, 1.0f));
        SgmvBatch ones{dts.as<int32_t>(), d_start.as<int32_t>(), d_token.as<int32_t>(), d_weight.as<float>(), T, 1};
        const auto us = best_of_rounds(
            4,
            [&](int form) {
              if (form == 0)
                must(bgmv_shrink(DType::kBF16, v.as<float>(), x.data(), sh.in, w, dts.as<int32_t>(), T, nullptr));
              else if (form == 1)
                must(sgmv_shrink(DType::kBF16, v.as<float>(), x.data(), sh.in, w, ones, nullptr));
              else if (form == 2)
                must(bgmv_expand(DType::kBF16, y.data(), sh.out, v.as<float>(), w, dts.as<int32_t>(), T, nullptr));
              else
                must(sgmv_expand(DType::kBF16, y.data(), sh.out, v.as<float>(), w, ones, nullptr));
            },
            reps);
        char buf[256];
        std::snprintf(buf, sizeof buf,
                      "{\"case\":\"shrink %s b64 %d distinct\",\"warp_rows_us\":%.1f,\"segmented_us\":%.1f,"
                      "\"warp_vs_segmented\":%.3f}",
                      sh.name, distinct, us[0], us[1], us[0] / us[1]);
        rows.push_back(buf);
        std::snprintf(buf, sizeof buf,
                      "{\"case\":\"expand %s b64 %d distinct\",\"token_tiles_us\":%.1f,\"segmented_us\":%.1f,"
                      "\"tiles_vs_segmented\":%.3f}",
                      sh.name, distinct, us[2], us[3], us[2] / us[3]);
        rows.push_back(buf);
      }
    }
  }
  {  // q|k|v: one group against each module alone
    const int64_t in = 2048, outs[3] = {2048, 256, 256}, width = 2560;
    std::vector<DeviceBuffer> as, bs;
    auto ranks = up(std::vector<int32_t>(slots, R));
    auto scales = up(std::vector<float>(slots, 1.0f));
    LoraGroupSlots g;
    g.count = 3;
    for (int i = 0; i < 3; ++i) {
      as.push_back(must(DeviceBuffer::alloc(size_t(slots) * R * in * 2)));
      bs.push_back(must(DeviceBuffer::alloc(size_t(slots) * outs[i] * R * 2)));
      must(fill_random(DType::kBF16, as.back().data(), int64_t(as.back().bytes() / 2), 0.05f, 21 + i, nullptr));
      must(fill_random(DType::kBF16, bs.back().data(), int64_t(bs.back().bytes() / 2), 0.05f, 31 + i, nullptr));
      g.member[i] = {as.back().data(), bs.back().data(), ranks.as<int32_t>(), scales.as<float>(), 1, slots, R, in,
                     outs[i]};
    }
    auto x = must(DeviceBuffer::alloc(size_t(T) * in * 2));
    auto y = must(DeviceBuffer::alloc(size_t(T) * width * 2));
    must(fill_random(DType::kBF16, x.data(), int64_t(x.bytes() / 2), 1.0f, 41, nullptr));
    must(fill_random(DType::kBF16, y.data(), int64_t(y.bytes() / 2), 1.0f, 42, nullptr));
    auto v = must(DeviceBuffer::alloc(size_t(T) * 3 * R * 4));
    for (int distinct : {1, 8, 64}) {
      std::vector<int32_t> token_slot(T);
      for (int t = 0; t < T; ++t) token_slot[size_t(t)] = t % distinct;
      auto dts = up(token_slot);
      const auto us = best_of_rounds(  // form 0 grouped, 1 separate
          2,
          [&](int form) {
            if (form == 0) {
              must(bgmv_shrink(DType::kBF16, v.as<float>(), x.data(), in, g, dts.as<int32_t>(), T, nullptr));
              must(bgmv_expand(DType::kBF16, y.data(), width, v.as<float>(), g, dts.as<int32_t>(), T, nullptr));
              return;
            }
            char* yc = static_cast<char*>(y.data());
            int64_t col = 0;
            for (int i = 0; i < 3; ++i) {
              must(bgmv_shrink(DType::kBF16, v.as<float>(), x.data(), in, g.member[i], dts.as<int32_t>(), T, nullptr));
              must(bgmv_expand(DType::kBF16, yc + col * 2, width, v.as<float>(), g.member[i], dts.as<int32_t>(), T,
                               nullptr));
              col += outs[i];
            }
          },
          reps);
      char buf[256];
      std::snprintf(buf, sizeof buf,
                    "{\"case\":\"bgmv qkv b64 %d distinct\",\"grouped_us\":%.1f,\"separate_us\":%.1f,"
                    "\"grouped_vs_separate\":%.3f}",
                    distinct, us[0], us[1], us[0] / us[1]);
      rows.push_back(buf);
    }
  }
  print_rows(rows, json);
  return 0;
}
