// Training beside serving in one EngineWorker (runtime/training/training_work.h):
// requests are answered while a job trains on the same executor's threads,
// and each published version is served from memory as soon as it exists.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "gpu/cpu/cpu_executor.h"
#include "gpu/cpu/lora_trainer.h"
#include "runtime/adapter_source.h"
#include "runtime/engine_worker.h"
#include "runtime/model_factory.h"
#include "runtime/tokenizer.h"
#include "runtime/training/training_work.h"
#include "test_seed.h"
#include "training_task.h"

namespace myriad {
namespace {

namespace fs = std::filesystem;

class CollectingSink final : public EventSink {
 public:
  void on_event(const RequestEvent& e) override {
    std::lock_guard lock(mu);
    if (e.kind == EventKind::kToken) tokens[e.id].push_back(e.token);
    if (e.kind == EventKind::kFailed) failures.push_back(e.error.to_string());
    if (e.is_final()) ++finals;
  }
  std::mutex mu;
  std::map<RequestId, std::vector<int32_t>> tokens;
  std::vector<std::string> failures;
  int finals = 0;
};

using testing::upper_last_task;

TEST(CoServing, RequestsAreAnsweredWhileAJobTrainsAndItsVersionsServeFromMemory) {
  const uint64_t seed = testing::test_seed();
  SCOPED_TRACE(testing::seed_note(seed));
  const testing::TrainableTiny model = testing::make_trainable_tiny(11, "myriad_coserve");
  ASSERT_TRUE(model.ckpt && model.tok);
  const fs::path dir = model.dir;
  const auto& ck = model.ckpt;
  const auto& tok = model.tok;

  gpu::cpu::CpuExecutorOptions eo;
  eo.threads = 2;
  eo.num_adapter_slots = 2;
  eo.max_adapter_rank = 8;
  eo.kv_num_blocks = 256;
  auto ex = gpu::cpu::CpuExecutor::create(ck, eo);
  ASSERT_TRUE(ex.ok());
  StaticAdapterSource source;
  CollectingSink sink;
  SchedulerConfig cfg;
  cfg.num_slots = 2;
  cfg.num_kv_blocks = 256;
  cfg.kv_block_size = 16;
  auto worker = EngineWorker::start(cfg, *ex.value(), source, sink, tok);
  ASSERT_TRUE(worker.ok());

  gpu::cpu::CpuLoraTrainingBackend backend(ck, ex.value()->pool());
  std::atomic<uint64_t> latest{0};
  std::atomic<int64_t> steps{0};
  TrainingWork work(
      backend, /*publish_every=*/50,
      [&](const std::string& name, uint64_t version, std::shared_ptr<const LoraWeights> w, double) {
        source.put(AdapterId{"team", name, version}, std::move(w));
        latest = version;
      },
      [&](const TrainingJob&, const TrainingStepRecord& rec) { steps = rec.step; });
  worker.value()->set_background(&work, 0.5);

  std::vector<TrainingExample> train = testing::task_examples(upper_last_task(seed, 400), *tok);
  auto job = TrainingJob::create("upper", ck->config(), testing::task_job_config(seed), std::move(train));
  ASSERT_TRUE(job.ok());
  work.add(std::shared_ptr<TrainingJob>(std::move(job.value())));

  // Requests to the base and to the newest version while the job trains.
  RequestId next = 1;
  int answered_during_training = 0;
  std::map<RequestId, uint64_t> version_of;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (work.active() > 0 && std::chrono::steady_clock::now() < deadline) {
    Request r;
    r.id = next++;
    r.prompt = tok->encode("xyz", true);
    r.max_tokens = 4;
    r.sampling.temperature = 0.0f;
    if (const uint64_t v = latest.load(); v > 0) {
      r.adapters = {AdapterUse{AdapterId{"team", "upper", v}}};
      version_of[r.id] = v;
    }
    ASSERT_TRUE(worker.value()->submit(std::move(r)).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::lock_guard lock(sink.mu);
    answered_during_training = sink.finals;
  }
  ASSERT_EQ(work.active(), 0u) << "training did not finish in time (step " << steps << ")";
  EXPECT_EQ(steps.load(), 300);
  EXPECT_EQ(latest.load(), 6u);  // every 50 steps
  EXPECT_GT(answered_during_training, 10) << "inference starved while training";
  std::set<uint64_t> versions_served;
  for (const auto& [id, v] : version_of) versions_served.insert(v);
  EXPECT_GE(versions_served.size(), 3u) << "requests reached the versions as they were published";

  // The final version answers the rule on held-out prompts.
  const auto held_out = upper_last_task(seed ^ 0x5eed, 50);
  std::vector<RequestId> ids;
  for (const auto& [p, c] : held_out) {
    Request r;
    r.id = next++;
    r.prompt = tok->encode(p, true);
    r.max_tokens = 1;
    r.sampling.temperature = 0.0f;
    r.adapters = {AdapterUse{AdapterId{"team", "upper", latest.load()}}};
    ids.push_back(r.id);
    ASSERT_TRUE(worker.value()->submit(std::move(r)).ok());
  }
  worker.value()->stop(EngineWorker::StopMode::kDrain);
  std::lock_guard lock(sink.mu);
  EXPECT_TRUE(sink.failures.empty()) << sink.failures.front();
  EXPECT_EQ(sink.finals, int(next - 1)) << "every request answered once";
  int right = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    right += sink.tokens[ids[i]].size() == 1 && tok->decode(sink.tokens[ids[i]]) == held_out[i].second;
  std::printf("[ coserve  ] %d requests answered while training; versions served %zu; held-out %d/%zu right\n",
              answered_during_training, versions_served.size(), right, ids.size());
  EXPECT_GE(right, 40);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace myriad

namespace myriad {
namespace {

// Jobs pause, resume and are cancelled between rounds without disturbing the
// others: a job paused for a while and resumed ends with the adapter it
// would have had unpaused, and the active count stays exact.
TEST(CoServing, AJobAddedToASleepingWorkerTrainsWithoutARequestToWakeIt) {
  const testing::TrainableTiny model = testing::make_trainable_tiny(5, "myriad_coserve_wake");
  ASSERT_TRUE(model.ckpt && model.tok);
  gpu::cpu::CpuExecutorOptions eo;
  eo.threads = 1;
  eo.kv_num_blocks = 64;
  auto ex = gpu::cpu::CpuExecutor::create(model.ckpt, eo);
  ASSERT_TRUE(ex.ok());
  StaticAdapterSource source;
  CollectingSink sink;
  SchedulerConfig cfg;
  cfg.num_slots = 0;
  cfg.num_kv_blocks = 64;
  auto worker = EngineWorker::start(cfg, *ex.value(), source, sink, model.tok);
  ASSERT_TRUE(worker.ok());
  gpu::cpu::CpuLoraTrainingBackend backend(model.ckpt, ex.value()->pool());
  std::atomic<int64_t> steps{0};
  TrainingWork work(backend, 100, nullptr, [&](const TrainingJob&, const TrainingStepRecord& rec) { steps = rec.step; });
  worker.value()->set_background(&work, 0.5);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // nothing to do: the worker sleeps
  TrainingJobConfig jc;
  jc.targets.rank = 4;
  jc.steps = 3;
  jc.batch_tokens = 64;
  auto job = TrainingJob::create("late", model.ckpt->config(), jc,
                                 testing::task_examples(upper_last_task(1, 20), *model.tok));
  ASSERT_TRUE(job.ok());
  work.add(std::shared_ptr<TrainingJob>(std::move(job.value())));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (steps.load() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(steps.load(), 3) << "the job waited for a request to wake the worker";
  worker.value()->stop(EngineWorker::StopMode::kDrain);
}

// A rank-4 job of the upper-case task (64-token micro-batches) for the
// TrainingWork tests: `examples` task pairs of `data_seed`, and held-out ones
// of `eval_seed` when `eval_examples` > 0.
struct TaskJob {
  std::string name;
  uint64_t data_seed = 1;
  size_t examples = 30;
  int64_t steps = 6;
  uint64_t seed = 0;  // the job's own (initialisation, shuffling)
  size_t eval_examples = 0;
  uint64_t eval_seed = 0;
};
std::shared_ptr<TrainingJob> make_task_job(const testing::TrainableTiny& model, const TaskJob& t) {
  TrainingJobConfig jc;
  jc.targets.rank = 4;
  jc.adamw.lr = 5e-3;
  jc.steps = t.steps;
  jc.batch_tokens = 64;
  jc.seed = t.seed;
  std::vector<TrainingExample> eval;
  if (t.eval_examples > 0) eval = testing::task_examples(upper_last_task(t.eval_seed, t.eval_examples), *model.tok);
  auto job = TrainingJob::create(t.name, model.ckpt->config(), jc,
                                 testing::task_examples(upper_last_task(t.data_seed, t.examples), *model.tok),
                                 std::move(eval));
  EXPECT_TRUE(job.ok()) << job.error().to_string();
  return std::shared_ptr<TrainingJob>(std::move(job.value()));
}

TEST(TrainingWorkJobs, PauseAndCancelLeaveTheOtherJobsAsIfAlone) {
  const testing::TrainableTiny model = testing::make_trainable_tiny(4, "myriad_trainwork");
  ASSERT_TRUE(model.ckpt && model.tok);
  const fs::path dir = model.dir;
  const auto& ck = model.ckpt;
  gpu::cpu::CpuLoraTrainingBackend backend(ck, 2);
  auto make = [&](const std::string& name, uint64_t seed) {
    return make_task_job(model, {.name = name, .data_seed = seed, .examples = 40, .steps = 12, .seed = seed});
  };
  // Reference: job "a" alone.
  auto a_alone = make("a", 1);
  {
    TrainingWork alone(backend, 100, nullptr);
    alone.add(a_alone);
    while (alone.has_work()) alone.run_once();
  }
  auto a = make("a", 1), b = make("b", 2), c = make("c", 3);
  std::map<std::string, uint64_t> published;
  TrainingWork work(backend, 4, [&](const std::string& name, uint64_t v, std::shared_ptr<const LoraWeights>, double) {
    published[name] = v;
  });
  work.set_unit_budget_ms(0);  // one unit per run_once(): the commands below land mid-round
  work.add(a);
  work.add(b);
  work.add(c);
  EXPECT_EQ(work.active(), 3u);
  int units = 0;
  bool resumed = false;
  for (int guard = 0; guard < 100000 && work.active() > 0; ++guard) {
    if (!work.has_work()) {  // b is done, c cancelled, a paused: resume a
      ASSERT_FALSE(resumed) << "nothing left to run with a job still active";
      EXPECT_EQ(work.active(), 1u);
      EXPECT_TRUE(b->done());
      work.pause("a", false);
      resumed = true;
      continue;
    }
    work.run_once();
    ++units;
    if (units == 40) work.pause("a", true);  // mid-round: applied when the round ends
    if (units == 60) {
      work.cancel("c");
      work.cancel("c");  // twice: the second is a no-op
    }
  }
  EXPECT_TRUE(resumed);
  EXPECT_EQ(work.active(), 0u);
  EXPECT_TRUE(a->done());
  EXPECT_TRUE(b->done());
  EXPECT_FALSE(c->done()) << "cancelled before its end";
  EXPECT_EQ(published["a"], 3u);  // steps 4, 8, 12
  EXPECT_EQ(published["b"], 3u);
  // The paused and resumed job trained exactly as alone (same micro-batches,
  // same optimizer steps; only the base GEMM's rounding could differ).
  for (size_t m = 0; m < a->params().modules.size(); ++m)
    for (size_t i = 0; i < a->params().modules[m].b.size(); ++i)
      ASSERT_NEAR(a->params().modules[m].b[i], a_alone->params().modules[m].b[i], 1e-5) << "module " << m;
  fs::remove_all(dir);
}

// A job with eval examples: each version's eval loss is computed in units
// (run_once() calls of one unit each between the round that ends the step
// and the publication), equals a whole forward pass's, and belongs to the
// version (the job trains no further meanwhile); a job without eval examples
// publishes at once with NaN.
TEST(TrainingWorkJobs, AVersionsEvalLossRunsInUnitsAndEqualsAWholePass) {
  const testing::TrainableTiny model = testing::make_trainable_tiny(6, "myriad_trainwork_eval");
  ASSERT_TRUE(model.ckpt && model.tok);
  gpu::cpu::CpuLoraTrainingBackend backend(model.ckpt, 2);
  auto with_eval = make_task_job(model, {.name = "e", .data_seed = 1, .eval_examples = 12, .eval_seed = 2});
  auto without = make_task_job(model, {.name = "n", .data_seed = 3});
  int calls = 0;
  std::map<std::pair<std::string, int64_t>, int> step_ended_at;  // (job, step) -> run_once call
  struct Published {
    std::string job;
    uint64_t version;
    double eval_loss, whole_pass;
    int64_t step;
    int at;
  };
  std::vector<Published> published;
  size_t active_at_last_version = 0;
  TrainingWork* work_ptr = nullptr;
  TrainingWork work(
      backend, 3,
      [&](const std::string& name, uint64_t v, std::shared_ptr<const LoraWeights>, double eval_loss) {
        TrainingJob& job = name == "e" ? *with_eval : *without;
        // The backend is free here (between rounds): the same pass whole.
        const double whole = job.eval_examples().empty()
                                 ? std::numeric_limits<double>::quiet_NaN()
                                 : JobTrainer(backend).evaluate(job).value();
        published.push_back({name, v, eval_loss, whole, job.steps_done(), calls});
        if (name == "e" && job.done()) active_at_last_version = work_ptr->active();
      },
      [&](const TrainingJob& job, const TrainingStepRecord& rec) { step_ended_at[{job.name(), rec.step}] = calls; });
  work_ptr = &work;
  work.set_unit_budget_ms(0);  // one unit per run_once()
  work.add(with_eval);
  work.add(without);
  for (int guard = 0; guard < 100000 && work.has_work(); ++guard) {
    ++calls;
    work.run_once();
  }
  ASSERT_TRUE(with_eval->done());
  ASSERT_TRUE(without->done());
  int evaluated = 0;
  for (const Published& p : published) {
    SCOPED_TRACE(p.job + " version " + std::to_string(p.version));
    EXPECT_EQ(p.step, int64_t(3 * p.version)) << "the version is the step it was published at";
    const int ended = step_ended_at.at({p.job, p.step});
    if (p.job == "n") {
      EXPECT_TRUE(std::isnan(p.eval_loss));
      EXPECT_EQ(p.at, ended) << "no eval examples: published in the call that ended the step";
      continue;
    }
    ++evaluated;
    EXPECT_TRUE(std::isfinite(p.eval_loss));
    EXPECT_NEAR(p.eval_loss, p.whole_pass, 1e-9 * std::abs(p.whole_pass)) << "units and a whole pass disagree";
    EXPECT_GE(p.at - ended, 3) << "the eval pass ran in units: begin, then the layers";
  }
  EXPECT_EQ(evaluated, 2);  // steps 3 and 6
  EXPECT_EQ(published.size(), 4u);
  EXPECT_EQ(active_at_last_version, 1u) << "a finished job is active until its last version is out ('n' is not)";
  EXPECT_EQ(work.active(), 0u);
  fs::remove_all(model.dir);
}

// Posted work in units (a client's forward/backward): posted while the job
// trains, it runs one unit per run_once() with nothing else between its
// units (it owns the backend), the tasks posted after it wait their turn,
// and then the rounds go on.
TEST(TrainingWorkJobs, APostedTaskInUnitsOwnsTheBackendFromItsFirstUnitToItsLast) {
  const testing::TrainableTiny model = testing::make_trainable_tiny(7, "myriad_trainwork_units");
  ASSERT_TRUE(model.ckpt && model.tok);
  gpu::cpu::CpuLoraTrainingBackend backend(model.ckpt, 2);
  auto job = make_task_job(model, {.name = "j", .data_seed = 1, .examples = 20, .steps = 3});
  int calls = 0;
  std::vector<int> step_ended_at, unit_calls;
  int task_call = -1;
  TrainingWork work(backend, 100, nullptr,
                    [&](const TrainingJob&, const TrainingStepRecord&) { step_ended_at.push_back(calls); });
  work.set_unit_budget_ms(0);  // one unit per run_once()
  work.add(job);
  for (int i = 0; i < 3; ++i) {
    ++calls;
    work.run_once();  // the job is training
  }
  ASSERT_TRUE(step_ended_at.empty());
  work.post_units([&] {
    unit_calls.push_back(calls);
    return unit_calls.size() == 5;
  });
  work.post([&] { task_call = calls; });
  for (int guard = 0; guard < 100000 && work.has_work(); ++guard) {
    ++calls;
    work.run_once();
  }
  ASSERT_TRUE(job->done());
  ASSERT_EQ(step_ended_at.size(), 3u);
  ASSERT_EQ(unit_calls.size(), 5u);
  for (size_t i = 1; i < unit_calls.size(); ++i) EXPECT_EQ(unit_calls[i], unit_calls[i - 1] + 1) << "unit " << i;
  for (int ended : step_ended_at)
    EXPECT_FALSE(ended >= unit_calls.front() && ended <= unit_calls.back())
        << "a round ended at call " << ended << ", inside the task's units";
  EXPECT_EQ(task_call, unit_calls.back() + 1) << "the task posted after it ran next";
  EXPECT_GT(step_ended_at[1], task_call) << "the rounds went on after both";
  fs::remove_all(model.dir);
}

}  // namespace
}  // namespace myriad
