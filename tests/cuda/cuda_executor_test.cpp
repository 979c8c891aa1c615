// CudaExecutor end to end on the tiny fixtures: Hugging Face goldens through
// the F32 path (TF32 off; 1e-4 absolute, greedy tokens exact) for the base
// model and all three PEFT adapters loaded into slots; all 16 (prompt,
// variant) rows in one mixed batch with chunked prefills equal their goldens;
// the BF16 serving path within bf16 tolerance; decode through CUDA graphs
// equals decode without; split-K attention equals unsplit; a profiled step
// equals a plain one. Blocks come from a shuffled KvBlockAllocator.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cuda_test_util.h"
#include "gpu/cuda/cuda_executor.h"
#include "gpu/cuda/paged_attention.h"
#include "runtime/kv_block_allocator.h"
#include "runtime/lora_weights.h"
#include "runtime/peft_adapter.h"
#include "runtime/safetensors.h"
#include "test_fixtures.h"

using myriad::testing::fixtures_dir;

namespace myriad::cuda_test {
namespace {

using gpu::cuda::CudaExecutor;
using gpu::cuda::CudaExecutorOptions;

nlohmann::json golden(const std::string& model) {
  std::ifstream f(fixtures_dir() + "/" + model + "/golden.json");
  return nlohmann::json::parse(f);
}

// The fixtures' PEFT adapters through the real loader (runtime/peft_adapter.h).
std::shared_ptr<const LoraWeights> load_fixture_adapter(const Checkpoint& ck, const std::string& dir) {
  auto w = load_peft_adapter(dir, ck.config());
  EXPECT_TRUE(w.ok()) << (w.ok() ? "" : w.error().to_string());
  return w.ok() ? *w : nullptr;
}

struct MakeOptions {
  bool graphs = false;
  int32_t attention_splits = 0;  // CudaExecutorOptions'
  // Executors whose outputs a test compares to 1e-5 force one GEMM kernel:
  // create-time tuning may pick differently in each.
  int32_t small_gemm = 0;
  // Every adapter goes through stage_adapter first (the host cache's form:
  // a pinned slot image) rather than being written at load time.
  bool staged = false;
};

std::unique_ptr<CudaExecutor> make_executor(const std::string& model, DType dt, const MakeOptions& m = {}) {
  auto ck = Checkpoint::load(fixtures_dir() + "/" + model);
  EXPECT_TRUE(ck.ok()) << (ck.ok() ? "" : ck.error().to_string());
  if (!ck.ok()) return nullptr;
  CudaExecutorOptions o;
  o.compute = dt;
  o.kv_num_blocks = 512;
  o.kv_block_size = 4;
  o.max_tokens_per_step = 1024;
  o.max_rows = 32;
  o.max_logits_rows = 128;
  o.num_adapter_slots = 4;
  o.max_adapter_rank = 16;
  o.cuda_graphs = m.graphs;
  o.attention_splits = m.attention_splits;
  o.small_gemm = m.small_gemm;
  auto ex = CudaExecutor::create(*ck, o);
  EXPECT_TRUE(ex.ok()) << (ex.ok() ? "" : ex.error().to_string());
  if (!ex.ok()) return nullptr;
  // Slots 0..2: the three adapters, in golden.json's variant order.
  // Each load is reported once, from CUDA's callback thread, after its copies.
  const char* names[] = {"r4-qv", "r8-all", "r16-rslora-o-down"};
  auto reports = std::make_shared<std::atomic<int>>(0);
  for (int s = 0; s < 3; ++s) {
    auto w = load_fixture_adapter(**ck, fixtures_dir() + "/" + model + "/adapters/" + names[s]);
    if (!w) return nullptr;
    if (m.staged) {
      auto st = (*ex)->stage_adapter(w);
      EXPECT_TRUE(st.ok()) << st.error().to_string();
      if (!st.ok()) return nullptr;
      EXPECT_TRUE((*st)->staged && !(*st)->has_host_weights());
      w = *st;
    }
    auto st = (*ex)->begin_load_adapter(s, w, [reports](Status done) {
      EXPECT_TRUE(done.ok());
      ++*reports;
    });
    EXPECT_TRUE(st.ok()) << st.error().to_string();
  }
  EXPECT_TRUE((*ex)->wait_for_uploads().ok());
  for (int i = 0; i < 5000 && reports->load() < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(reports->load(), 3);
  for (int s = 0; s < 3; ++s) EXPECT_TRUE((*ex)->adapter_ready(s));
  return std::move(*ex);
}

int slot_of(const std::string& variant) {
  if (variant == "r4-qv") return 0;
  if (variant == "r8-all") return 1;
  if (variant == "r16-rslora-o-down") return 2;
  return -1;
}

struct Seq {
  SeqId id = 0;
  std::vector<int32_t> prompt;
  std::vector<int> chunks;
  int slot = -1;
  AdapterMix mix;  // used instead of slot when it names any adapter
  int max_new = 24;
  std::vector<int32_t> ids, blocks, outputs;
  int32_t cached = 0;
  size_t next_chunk = 0;
  std::vector<std::vector<float>> logits;
  bool done() const { return int(outputs.size()) >= max_new; }
};

void run(Executor& ex, std::vector<Seq>& seqs, KvBlockAllocator& alloc) {
  const int32_t bs = ex.info().kv_block_size;
  const int64_t V = ex.info().vocab_size;
  for (auto& s : seqs) {
    s.ids = s.prompt;
    if (s.chunks.empty()) s.chunks = {int(s.prompt.size())};
  }
  StepPlan plan;
  StepResult res;
  for (int step = 0; step < 1000; ++step) {
    plan.clear();
    std::vector<Seq*> in_step;
    for (auto& s : seqs) {
      if (s.done()) continue;
      SeqRow r;
      r.seq = s.id;
      r.start_pos = s.cached;
      r.num_tokens = s.next_chunk < s.chunks.size() ? uint32_t(s.chunks[s.next_chunk]) : 1;
      r.token_offset = uint32_t(plan.tokens.size());
      for (uint32_t j = 0; j < r.num_tokens; ++j) plan.tokens.push_back(s.ids[size_t(s.cached) + j]);
      const int32_t need = KvBlockAllocator::blocks_for(s.cached + int32_t(r.num_tokens), bs);
      ASSERT_TRUE(alloc.allocate(need - int32_t(s.blocks.size()), s.blocks));
      r.block_offset = uint32_t(plan.block_ids.size());
      r.num_blocks = uint32_t(s.blocks.size());
      plan.block_ids.insert(plan.block_ids.end(), s.blocks.begin(), s.blocks.end());
      r.sample = s.cached + int32_t(r.num_tokens) == int32_t(s.ids.size());
      r.logits = r.sample ? LogitsRequest::kLast : LogitsRequest::kNone;
      r.sampling.temperature = 0.0f;
      r.output_index = uint32_t(s.outputs.size());
      r.adapters = s.mix.count > 0 ? s.mix : AdapterMix::single(s.slot);
      plan.rows.push_back(r);
      in_step.push_back(&s);
    }
    if (in_step.empty()) return;
    const Status st = ex.step(plan, res);
    ASSERT_TRUE(st.ok()) << st.error().to_string();
    size_t sampled = 0, lp = 0;
    for (size_t i = 0; i < in_step.size(); ++i) {
      Seq& s = *in_step[i];
      const SeqRow& r = plan.rows[i];
      s.cached += int32_t(r.num_tokens);
      if (s.next_chunk < s.chunks.size()) ++s.next_chunk;
      if (!r.sample) continue;
      ASSERT_LT(sampled, res.sampled.size());
      ASSERT_EQ(res.sampled[sampled].seq, s.id);
      ASSERT_EQ(res.logits_rows[lp], uint32_t(i));
      s.logits.emplace_back(res.logits.begin() + long(lp * V), res.logits.begin() + long((lp + 1) * V));
      s.outputs.push_back(res.sampled[sampled].token);
      s.ids.push_back(res.sampled[sampled].token);
      ++sampled;
      ++lp;
    }
    ASSERT_EQ(sampled, res.sampled.size());
  }
  FAIL() << "did not finish";
}

::testing::AssertionResult logits_close(const std::vector<float>& got, const nlohmann::json& want, Tol tol,
                                        const std::string& what) {
  return all_close(got, want.get<std::vector<float>>(), tol, what);
}

// One sequence per adapter variant of the golden on prompt p7, or with
// every_prompt one per (variant, prompt); each generates max_new tokens.
std::vector<Seq> variant_seqs(const nlohmann::json& g, bool every_prompt, int max_new = 24) {
  std::vector<Seq> seqs;
  for (const auto& [variant, results] : g["results"].items())
    for (const auto& [name, prompt] : g["prompts"].items()) {
      if (!every_prompt && name != "p7") continue;
      Seq s;
      s.id = seqs.size() + 1;
      s.prompt = prompt.get<std::vector<int32_t>>();
      s.slot = slot_of(variant);
      s.max_new = max_new;
      seqs.push_back(s);
    }
  return seqs;
}

// Runs `seqs` through a and through b (blocks from pools shuffled by the two
// seeds) and expects the same tokens, and b's logits within tol of a's.
void expect_same_runs(Executor& a, Executor& b, const std::vector<Seq>& seqs, Tol tol, const std::string& what,
                      uint64_t seed_a, uint64_t seed_b) {
  std::vector<Seq> ra = seqs, rb = seqs;
  KvBlockAllocator al(a.info().kv_num_blocks, seed_a), bl(b.info().kv_num_blocks, seed_b);
  run(a, ra, al);
  run(b, rb, bl);
  for (size_t i = 0; i < ra.size(); ++i) {
    EXPECT_EQ(ra[i].outputs, rb[i].outputs) << "row " << i;
    for (size_t k = 0; k < ra[i].logits.size(); ++k)
      EXPECT_TRUE(all_close(rb[i].logits[k], ra[i].logits[k], tol, what));
  }
}

class CudaGolden : public ::testing::TestWithParam<std::string> {};

// Each (variant, prompt) of the golden alone through `ex` (F32): greedy
// tokens exact, last and per-step logits within 1e-4.
void expect_single_rows_match_goldens(CudaExecutor* ex, const std::string& model, const std::string& tag) {
  ASSERT_TRUE(ex);
  const auto g = golden(model);
  for (const auto& [variant, results] : g["results"].items())
    for (const auto& [name, prompt] : g["prompts"].items()) {
      KvBlockAllocator alloc(ex->info().kv_num_blocks, 0x5eed + name.size());
      std::vector<Seq> seqs(1);
      seqs[0].id = 1;
      seqs[0].prompt = prompt.get<std::vector<int32_t>>();
      seqs[0].slot = slot_of(variant);
      run(*ex, seqs, alloc);
      const auto& want = results[name];
      const std::string what = model + " " + variant + " " + name + tag;
      EXPECT_EQ(seqs[0].outputs, want["greedy_tokens"].get<std::vector<int32_t>>()) << what;
      EXPECT_TRUE(logits_close(seqs[0].logits[0], want["last_logits"], Tol{1e-4f, 0}, what + " last_logits"));
      if (want.contains("greedy_step_logits")) {
        for (size_t k = 0; k < seqs[0].logits.size(); ++k) {
          EXPECT_TRUE(logits_close(seqs[0].logits[k], want["greedy_step_logits"][k], Tol{1e-4f, 0},
                                   what + " step " + std::to_string(k)));
        }
      }
    }
}

TEST_P(CudaGolden, F32MatchesHuggingFaceForBaseAndEveryAdapter) {
  MYRIAD_REQUIRE_CUDA();
  expect_single_rows_match_goldens(make_executor(GetParam(), DType::kF32).get(), GetParam(), "");
}

void expect_mixed_batch_matches_goldens(CudaExecutor* ex, const std::string& model) {
  ASSERT_TRUE(ex);
  const auto g = golden(model);
  std::vector<Seq> seqs;
  std::vector<nlohmann::json> want;
  for (const auto& [variant, results] : g["results"].items())
    for (const auto& [name, prompt] : g["prompts"].items()) {
      Seq s;
      s.id = seqs.size() + 1;
      s.prompt = prompt.get<std::vector<int32_t>>();
      s.slot = slot_of(variant);
      if (s.prompt.size() > 8) s.chunks = {5, int(s.prompt.size()) - 5};  // prefill chunk beside others' decodes
      seqs.push_back(s);
      want.push_back(results[name]);
    }
  KvBlockAllocator alloc(ex->info().kv_num_blocks, 4242);
  run(*ex, seqs, alloc);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_EQ(seqs[i].outputs, want[i]["greedy_tokens"].get<std::vector<int32_t>>()) << "row " << i;
    EXPECT_TRUE(logits_close(seqs[i].logits[0], want[i]["last_logits"], Tol{1e-4f, 0}, "row " + std::to_string(i)));
  }
}

TEST_P(CudaGolden, MixedBatchOfAllVariantsWithChunkedPrefillsMatchesGoldens) {
  MYRIAD_REQUIRE_CUDA();
  expect_mixed_batch_matches_goldens(make_executor(GetParam(), DType::kF32).get(), GetParam());
}

// Adapters staged as the host cache stages them (pinned slot images, the
// float32 copies dropped) load with one copy and give the same goldens.
TEST_P(CudaGolden, StagedAdaptersMatchGoldens) {
  MYRIAD_REQUIRE_CUDA();
  expect_mixed_batch_matches_goldens(make_executor(GetParam(), DType::kF32, {.staged = true}).get(), GetParam());
}

// Every GEMM of up to 8 rows on small_gemm (the goldens' single rows decode
// through it; the 16-row mixed batch uses cuBLAS until 8 or fewer rows are
// left): the same goldens, so whichever kernel the tuning picks computes the
// model.
TEST_P(CudaGolden, SmallGemmDecodeMatchesGoldens) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto ex = make_executor(model, DType::kF32, {.small_gemm = 2});
  expect_single_rows_match_goldens(ex.get(), model, " (small_gemm)");
  expect_mixed_batch_matches_goldens(ex.get(), model);
}

// An image staged for another slot layout cannot be loaded (its float32
// copy is gone): a clear error, the slot stays free.
TEST_P(CudaGolden, AnAdapterStagedForAnotherLayoutIsRefused) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto ck = Checkpoint::load(fixtures_dir() + "/" + model);
  ASSERT_TRUE(ck.ok());
  CudaExecutorOptions o;
  o.compute = DType::kF32;
  o.kv_num_blocks = 64;
  o.max_tokens_per_step = 64;
  o.max_rows = 4;
  o.max_logits_rows = 4;
  o.num_adapter_slots = 2;
  o.max_adapter_rank = 16;
  auto r16 = CudaExecutor::create(*ck, o);
  o.max_adapter_rank = 32;
  auto r32 = CudaExecutor::create(*ck, o);
  ASSERT_TRUE(r16.ok() && r32.ok());
  auto w = load_fixture_adapter(**ck, fixtures_dir() + "/" + model + "/adapters/r8-all");
  ASSERT_TRUE(w);
  auto staged = (*r16)->stage_adapter(w);
  ASSERT_TRUE(staged.ok()) << staged.error().to_string();
  const Status st = (*r32)->begin_load_adapter(0, *staged, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("no float32 A/B"), std::string::npos) << st.error().to_string();
  EXPECT_TRUE((*r32)->begin_load_adapter(0, w, nullptr).ok());  // the slot was left free
  EXPECT_TRUE((*r16)->begin_load_adapter(0, *staged, nullptr).ok());
  EXPECT_TRUE((*r16)->wait_for_uploads().ok());
  EXPECT_TRUE((*r16)->adapter_ready(0));
}

TEST_P(CudaGolden, Bf16ServingPathWithinBf16Tolerance) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto ex = make_executor(model, DType::kBF16);
  ASSERT_TRUE(ex);
  const auto g = golden(model);
  for (const auto& [variant, results] : g["results"].items())
    for (const auto& [name, prompt] : g["prompts"].items()) {
      KvBlockAllocator alloc(ex->info().kv_num_blocks, 7);
      std::vector<Seq> seqs(1);
      seqs[0].prompt = prompt.get<std::vector<int32_t>>();
      seqs[0].slot = slot_of(variant);
      run(*ex, seqs, alloc);
      const auto& want = results[name];
      const auto tokens = want["greedy_tokens"].get<std::vector<int32_t>>();
      const auto margins = want["greedy_margins"].get<std::vector<float>>();
      for (size_t k = 0; k < tokens.size() && margins[k] >= 0.05f; ++k)
        ASSERT_EQ(seqs[0].outputs[k], tokens[k]) << model << " " << variant << " " << name << " step " << k;
      EXPECT_TRUE(logits_close(seqs[0].logits[0], want["last_logits"], Tol{5e-2f, 2e-2f},
                               model + " " + variant + " " + name + " bf16 last_logits"));
    }
}

TEST_P(CudaGolden, CudaGraphDecodeEqualsPlainDecode) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto plain = make_executor(model, DType::kF32, {.small_gemm = 1});
  auto graphs = make_executor(model, DType::kF32, {.graphs = true, .small_gemm = 1});
  ASSERT_TRUE(plain && graphs);
  expect_same_runs(*plain, *graphs, variant_seqs(golden(model), false), Tol{1e-5f, 0}, "graph vs plain", 1, 2);
  EXPECT_GT(graphs->graphs_captured(), 0);
}

// LoRA out of line (the shrinks on a second stream forked and joined by
// events, a parallel branch when captured; in decode steps with one adapter
// level and unfused norms the expands as epilogues of the kernels that read
// the GEMM outputs) computes what LoRA in line on the compute stream does,
// bit for bit, in F32 and BF16, in plain steps and from graphs. cuda_emu runs
// a stream's work as late as its waits allow, so a join placed after its
// expand, or an epilogue applied before the join, fails here (and every LoRA
// golden). small_gemm = 1 leaves every norm unfused, so the decode steps take
// the epilogues (the prefills' expands stay launches after the side shrinks).
TEST_P(CudaGolden, LoraShrinksOnTheSideStreamEqualShrinksInLine) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  const auto seqs = variant_seqs(golden(model), false);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(dt));
    auto in_line = make_executor(model, dt, {.small_gemm = 1});
    auto side_plain = make_executor(model, dt, {.small_gemm = 1});
    auto side_graphs = make_executor(model, dt, {.graphs = true, .small_gemm = 1});
    ASSERT_TRUE(in_line && side_plain && side_graphs);
    in_line->set_lora_side_stream(false);
    expect_same_runs(*in_line, *side_plain, seqs, Tol{0, 0}, "side stream vs in line", 5, 6);
    expect_same_runs(*in_line, *side_graphs, seqs, Tol{0, 0}, "side stream graphs vs in line", 7, 8);
    EXPECT_GT(side_graphs->graphs_captured(), 0);
  }
}

// A weighted mixture of two adapters decodes on the graph path (one BGMV
// level per adapter, captured like single-adapter steps) as the one adapter
// mix_lora merges them into (their ranks stacked): equal in real arithmetic,
// so the same greedy tokens and logits within float32 reassociation. Its
// prefill chunks take the SGMV path, so both paths run.
TEST_P(CudaGolden, MixtureDecodeOnTheGraphPathEqualsItsMergedAdapter) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto ex = make_executor(model, DType::kF32, {.graphs = true, .small_gemm = 1});
  ASSERT_TRUE(ex);
  auto ck = Checkpoint::load(fixtures_dir() + "/" + model);
  ASSERT_TRUE(ck.ok());
  auto qv = load_fixture_adapter(**ck, fixtures_dir() + "/" + model + "/adapters/r4-qv");  // slot 0
  auto all = load_fixture_adapter(**ck, fixtures_dir() + "/" + model + "/adapters/r8-all");  // slot 1
  ASSERT_TRUE(qv && all);
  const float w_qv = 0.75f, w_all = -0.5f;
  auto merged = std::make_shared<const LoraWeights>(mix_lora({{qv, w_qv}, {all, w_all}}, "merged"));
  MYRIAD_ASSERT_OK(ex->begin_load_adapter(3, merged, nullptr));
  MYRIAD_ASSERT_OK(ex->wait_for_uploads());
  ASSERT_TRUE(ex->adapter_ready(3));

  const auto g = golden(model);
  std::vector<Seq> mixed, as_one;
  for (const char* name : {"p7", "p33"}) {
    Seq s;
    s.id = mixed.size() + 1;
    s.prompt = g["prompts"][name].get<std::vector<int32_t>>();
    s.max_new = 12;
    s.mix.count = 2;
    s.mix.refs[0] = {0, w_qv};
    s.mix.refs[1] = {1, w_all};
    mixed.push_back(s);
    s.mix = {};
    s.slot = 3;
    as_one.push_back(s);
  }
  KvBlockAllocator al(ex->info().kv_num_blocks, 7), bl(ex->info().kv_num_blocks, 8);
  run(*ex, mixed, al);
  EXPECT_GT(ex->graphs_captured(), 0) << "the mixture's decode steps were not captured";
  run(*ex, as_one, bl);
  for (size_t i = 0; i < mixed.size(); ++i) {
    EXPECT_EQ(mixed[i].outputs, as_one[i].outputs) << "row " << i;
    for (size_t k = 0; k < mixed[i].logits.size(); ++k)
      EXPECT_TRUE(all_close(mixed[i].logits[k], as_one[i].logits[k], Tol{1e-4f, 1e-4f},
                            model + " mixture vs merged, row " + std::to_string(i) + " step " + std::to_string(k)));
  }
}

// Every row's keys in 16 shares (flash-decoding) against never splitting:
// the same tokens, logits within float32 reassociation.
TEST_P(CudaGolden, SplitAttentionEqualsUnsplitAttention) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto unsplit = make_executor(model, DType::kF32, {.attention_splits = 1, .small_gemm = 1});
  auto split = make_executor(
      model, DType::kF32, {.graphs = true, .attention_splits = gpu::cuda::kMaxAttentionSplits, .small_gemm = 1});
  ASSERT_TRUE(unsplit && split);
  // 40 tokens: past one 32-key tile, so several shares hold keys.
  expect_same_runs(*unsplit, *split, variant_seqs(golden(model), true, 40), Tol{1e-4f, 1e-4f}, "split vs unsplit",
                   11, 12);
}

// Runs every step through CudaExecutor::profile_step and keeps the names.
class ProfilingExecutor final : public Executor {
 public:
  explicit ProfilingExecutor(CudaExecutor& ex) : ex_(ex) {}
  const ExecutorInfo& info() const override { return ex_.info(); }
  Status step(const StepPlan& plan, StepResult& out) override {
    std::vector<std::pair<std::string, double>> ms;
    MYRIAD_TRY(ex_.profile_step(plan, out, ms));
    for (const auto& [name, t] : ms) {
      names.insert(name);
      if (!(t >= 0.0)) negative_or_nan = true;
    }
    return ok_status();
  }
  Status begin_load_adapter(int32_t slot, std::shared_ptr<const LoraWeights> w, LoadDone done) override {
    return ex_.begin_load_adapter(slot, std::move(w), std::move(done));
  }
  void unload_adapter(int32_t slot) override { ex_.unload_adapter(slot); }

  std::set<std::string> names;
  bool negative_or_nan = false;

 private:
  CudaExecutor& ex_;
};

// profile_step computes what step() computes, never from a graph, and times
// every operation of the forward (LoRA ones too, with adapters in the batch).
TEST_P(CudaGolden, ProfiledStepsEqualPlainStepsAndTimeEveryOperation) {
  MYRIAD_REQUIRE_CUDA();
  const std::string model = GetParam();
  auto plain = make_executor(model, DType::kF32, {.small_gemm = 1});
  auto graphs = make_executor(model, DType::kF32, {.graphs = true, .small_gemm = 1});
  ASSERT_TRUE(plain && graphs);
  ProfilingExecutor profiled(*graphs);
  expect_same_runs(*plain, profiled, variant_seqs(golden(model), false), Tol{1e-6f, 0}, "profiled vs plain", 3, 4);
  EXPECT_EQ(graphs->graphs_captured(), 0);
  for (const char* op : {"embed", "rmsnorm", "qkv gemm", "rope+kv write", "attention", "o gemm", "gate_up gemm",
                         "silu_mul", "down gemm", "gather", "lm_head", "sample", "lora shrink", "lora expand"})
    EXPECT_EQ(profiled.names.count(op), 1u) << op;
  EXPECT_FALSE(profiled.negative_or_nan);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CudaGolden, ::testing::Values("tiny-llama", "tiny-qwen2"),
                         [](const auto& info) { return info.param == "tiny-llama" ? "llama" : "qwen2"; });

TEST(CudaExecutor, CreateFailsCleanlyWithoutDevice) {
  if (!gpu::cuda::device_unavailable_reason()) GTEST_SKIP() << "a device is present";
  auto ck = Checkpoint::load(fixtures_dir() + "/tiny-llama");
  ASSERT_TRUE(ck.ok());
  auto ex = CudaExecutor::create(*ck, {});
  ASSERT_FALSE(ex.ok());
  EXPECT_EQ(ex.error().code, ErrorCode::kUnsupported) << ex.error().to_string();
}

}  // namespace
}  // namespace myriad::cuda_test
