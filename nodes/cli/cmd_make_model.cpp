// `myriad make-model`: writes a random-weight Hugging Face model folder
// (runtime/model_factory.h) and prints a JSON summary. Uses runtime/ only.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "args.h"
#include "commands.h"
#include "runtime/checkpoint.h"
#include "runtime/model_factory.h"
#include "runtime/peft_adapter.h"

namespace myriad::cli {

namespace {

// Range checks of the parsed flags (their form was checked while parsing).
Result<MakeModelOptions> options_from(const MakeModelArgs& a) {
  MakeModelOptions o;
  o.shape = a.shape;
  if (auto s = model_shape(o.shape); !s.ok()) return s.error();
  if (a.seed < 0) return make_error(ErrorCode::kInvalidArgument, "--seed must be non-negative, got " + std::to_string(a.seed));
  o.seed = uint64_t(a.seed);
  if (a.dtype == "bf16") {
    o.dtype = DType::kBF16;
  } else if (a.dtype == "f32") {
    o.dtype = DType::kF32;
  } else {
    return make_error(ErrorCode::kInvalidArgument, "--dtype must be bf16 or f32, got '" + a.dtype + "'");
  }
  o.out_dir = a.out;
  o.tokenizer_dir = a.tokenizer;
  if (a.threads < 0 || a.threads > 1024)
    return make_error(ErrorCode::kInvalidArgument, "--threads must be in [0, 1024], got " + std::to_string(a.threads));
  o.threads = int(a.threads);
  if (!(a.init_std > 0) || !(a.init_std <= 1))
    return make_error(ErrorCode::kInvalidArgument, "--init-std must be in (0, 1], got " + std::to_string(a.init_std));
  o.init_std = float(a.init_std);
  return o;
}

}  // namespace

int cmd_make_model(const MakeModelArgs& args) {
  auto opts = options_from(args);
  if (!opts) {
    std::fprintf(stderr, "make-model: %s\n", opts.error().message.c_str());
    return 2;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (auto st = make_model(*opts); !st.ok()) {
    std::fprintf(stderr, "make-model: %s\n", st.error().to_string().c_str());
    return 1;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto cfg = load_model_config(opts->out_dir);
  if (!cfg) {
    std::fprintf(stderr, "make-model: %s\n", cfg.error().to_string().c_str());
    return 1;
  }
  int64_t params = 0;
  for (const auto& e : expected_tensors(*cfg)) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
  }
  nlohmann::json j = {{"out", opts->out_dir},
                      {"shape", opts->shape},
                      {"seed", opts->seed},
                      {"dtype", dtype_name(opts->dtype)},
                      {"vocab_size", cfg->vocab_size},
                      {"parameters", params},
                      {"bytes", params * int64_t(dtype_size(opts->dtype))},
                      {"seconds", seconds}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int cmd_make_adapter(const MakeAdapterArgs& a) {
  auto fail = [](const Error& e, int code) {
    std::fprintf(stderr, "make-adapter: %s\n", e.to_string().c_str());
    return code;
  };
  if (a.rank < 1 || a.rank > 256)
    return fail(make_error(ErrorCode::kInvalidArgument, "--rank must be in [1, 256], got " + std::to_string(a.rank)), 2);
  if (a.seed < 0)
    return fail(make_error(ErrorCode::kInvalidArgument, "--seed must be non-negative, got " + std::to_string(a.seed)), 2);
  if (!(a.alpha > 0))
    return fail(make_error(ErrorCode::kInvalidArgument, "--alpha must be > 0"), 2);
  auto cfg = load_model_config(a.model);
  if (!cfg.ok()) return fail(cfg.error(), 1);
  if (!(a.std > 0)) return fail(make_error(ErrorCode::kInvalidArgument, "--std must be > 0"), 2);
  auto w = random_lora(cfg.value(), int32_t(a.rank), float(a.alpha), uint64_t(a.seed), a.out, float(a.std));
  if (Status st = save_peft_adapter(a.out, *w, a.model); !st.ok()) return fail(st.error(), 1);
  const nlohmann::json j = {{"out", a.out}, {"rank", a.rank}, {"alpha", a.alpha}, {"seed", a.seed},
                            {"bytes", w->bytes()}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace myriad::cli
