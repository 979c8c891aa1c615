// training_wire.h's converters.
#include "actors/training_wire.h"

#include <nlohmann/json.hpp>

#include "actors/common_wire.h"

namespace myriad::actors {

namespace {

void write_sequences(const std::vector<TrainingExample>& examples,
                     capnp::List<schema::TrainingSequence>::Builder out) {
  for (size_t i = 0; i < examples.size(); ++i) {
    auto seq = out[unsigned(i)];
    auto tokens = seq.initTokens(unsigned(examples[i].tokens.size()));
    for (size_t t = 0; t < examples[i].tokens.size(); ++t) tokens.set(unsigned(t), examples[i].tokens[t]);
    seq.setTargets(kj::arrayPtr(examples[i].targets.data(), examples[i].targets.size()));
  }
}

Result<std::vector<TrainingExample>> read_sequences(capnp::List<schema::TrainingSequence>::Reader in,
                                                    const std::string& what) {
  std::vector<TrainingExample> out;
  out.reserve(in.size());
  for (auto seq : in) {
    TrainingExample ex;
    ex.tokens = to_vector<int32_t>(seq.getTokens());
    auto targets = seq.getTargets();
    ex.targets.assign(targets.begin(), targets.end());
    if (ex.tokens.empty() || ex.targets.size() != ex.tokens.size())
      return make_error(ErrorCode::kInvalidArgument,
                        what + ": a sequence's tokens and targets differ in length");
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace

TrainJobWire train_job_wire(const TrainingJob& job, std::string_view checkpoint, int64_t publish_every) {
  return TrainJobWire::from([&](schema::TrainJob::Builder b) {
    b.setJob(job.name());
    b.setConfigJson(training_job_config_json(job.config()).dump());
    write_sequences(job.train_examples(), b.initTrain(unsigned(job.train_examples().size())));
    write_sequences(job.eval_examples(), b.initEval(unsigned(job.eval_examples().size())));
    b.setCheckpoint(kj::arrayPtr(reinterpret_cast<const kj::byte*>(checkpoint.data()), checkpoint.size()));
    b.setPublishEvery(publish_every);
  });
}

Result<TrainJobSpec> read_train_job(const TrainJobWire& wire) {
  auto d = wire.decode();
  if (!d.ok()) return d.error();
  auto r = d->get();
  TrainJobSpec s;
  s.job = as_string(r.getJob());
  if (s.job.empty()) return make_error(ErrorCode::kInvalidArgument, "TrainJob.job: empty");
  const auto config = nlohmann::json::parse(as_string(r.getConfigJson()), nullptr, false);
  auto c = training_job_config_from_json(config);
  if (!c.ok()) return c.error();
  s.config = c.value();
  auto train = read_sequences(r.getTrain(), "TrainJob.train");
  if (!train.ok()) return train.error();
  s.train = std::move(train.value());
  auto eval = read_sequences(r.getEval(), "TrainJob.eval");
  if (!eval.ok()) return eval.error();
  s.eval = std::move(eval.value());
  auto ck = r.getCheckpoint();
  s.checkpoint.assign(reinterpret_cast<const char*>(ck.begin()), ck.size());
  s.publish_every = r.getPublishEvery();
  if (s.publish_every < 1) return make_error(ErrorCode::kInvalidArgument, "TrainJob.publishEvery: must be >= 1");
  return s;
}

TrainProgressWire train_progress_wire(const std::string& job, const std::string& worker, const TrainingStepRecord& rec) {
  return TrainProgressWire::from([&](schema::TrainProgress::Builder b) {
    b.setJob(job);
    b.setWorker(worker);
    b.setStep(rec.step);
    b.setLoss(rec.loss);
    b.setTokens(rec.tokens);
    b.setTargetTokens(rec.target_tokens);
    b.setLr(rec.lr);
    b.setGradNorm(rec.grad_norm);
  });
}

Result<TrainProgressMsg> read_train_progress(const TrainProgressWire& wire) {
  auto d = wire.decode();
  if (!d.ok()) return d.error();
  auto r = d->get();
  TrainingStepRecord rec;
  rec.step = r.getStep();
  rec.loss = r.getLoss();
  rec.tokens = r.getTokens();
  rec.target_tokens = r.getTargetTokens();
  rec.lr = r.getLr();
  rec.grad_norm = r.getGradNorm();
  if (rec.step < 1) return make_error(ErrorCode::kInvalidArgument, "TrainProgress.step: must be >= 1");
  return TrainProgressMsg{as_string(r.getJob()), as_string(r.getWorker()), rec};
}

TrainVersionWire train_version_wire(const std::string& job, const std::string& worker, uint64_t version,
                                    double eval_loss, std::string_view checkpoint) {
  return TrainVersionWire::from([&](schema::TrainVersion::Builder b) {
    b.setJob(job);
    b.setWorker(worker);
    b.setVersion(version);
    b.setEvalLoss(eval_loss);
    b.setCheckpoint(kj::arrayPtr(reinterpret_cast<const kj::byte*>(checkpoint.data()), checkpoint.size()));
  });
}

Result<TrainVersionMsg> read_train_version(const TrainVersionWire& wire) {
  auto d = wire.decode();
  if (!d.ok()) return d.error();
  auto r = d->get();
  TrainVersionMsg m;
  m.job = as_string(r.getJob());
  m.worker = as_string(r.getWorker());
  m.version = r.getVersion();
  m.eval_loss = r.getEvalLoss();
  auto ck = r.getCheckpoint();
  m.checkpoint.assign(reinterpret_cast<const char*>(ck.begin()), ck.size());
  if (m.checkpoint.empty()) return make_error(ErrorCode::kInvalidArgument, "TrainVersion.checkpoint: empty");
  return m;
}

namespace {
kj::ArrayPtr<const kj::byte> as_bytes(const std::string& s) {
  return kj::arrayPtr(reinterpret_cast<const kj::byte*>(s.data()), s.size());
}
std::string bytes_of(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }
}  // namespace

RunCallWire run_call_wire(const RunCallMsg& msg) {
  return RunCallWire::from([&](schema::RunCall::Builder b) {
    b.setRun(msg.run);
    b.setCall(msg.call);
    switch (msg.op) {
      case RunOp::kOpen: {
        auto open = b.initOpen();
        open.setOptionsJson(msg.options_json);
        open.setState(as_bytes(msg.state));
        open.setSteps(msg.steps);
        break;
      }
      case RunOp::kForwardBackward:
        write_sequences(msg.batch, b.initForwardBackward(unsigned(msg.batch.size())));
        break;
      case RunOp::kOptimStep: {
        auto step = b.initOptimStep();
        step.setLearningRate(msg.learning_rate);
        step.setMaxGradNorm(msg.max_grad_norm);
        break;
      }
      case RunOp::kSnapshot: b.setSnapshot(); break;
      case RunOp::kState: b.setState(); break;
      case RunOp::kClose: b.setClose(); break;
    }
  });
}

Result<RunCallMsg> read_run_call(const RunCallWire& wire) {
  auto d = wire.decode();
  if (!d.ok()) return d.error();
  auto r = d->get();
  RunCallMsg m;
  m.run = as_string(r.getRun());
  m.call = r.getCall();
  if (m.run.empty()) return make_error(ErrorCode::kInvalidArgument, "RunCall.run: empty");
  switch (r.which()) {
    case schema::RunCall::OPEN: {
      m.op = RunOp::kOpen;
      auto open = r.getOpen();
      m.options_json = as_string(open.getOptionsJson());
      m.state = bytes_of(open.getState());
      m.steps = open.getSteps();
      if (m.steps < 0) return make_error(ErrorCode::kInvalidArgument, "RunCall.open.steps: negative");
      break;
    }
    case schema::RunCall::FORWARD_BACKWARD: {
      m.op = RunOp::kForwardBackward;
      auto batch = read_sequences(r.getForwardBackward(), "RunCall.forwardBackward");
      if (!batch.ok()) return batch.error();
      m.batch = std::move(batch.value());
      break;
    }
    case schema::RunCall::OPTIM_STEP:
      m.op = RunOp::kOptimStep;
      m.learning_rate = r.getOptimStep().getLearningRate();
      m.max_grad_norm = r.getOptimStep().getMaxGradNorm();
      break;
    case schema::RunCall::SNAPSHOT: m.op = RunOp::kSnapshot; break;
    case schema::RunCall::STATE: m.op = RunOp::kState; break;
    case schema::RunCall::CLOSE: m.op = RunOp::kClose; break;
    default: return make_error(ErrorCode::kInvalidArgument, "RunCall: a call this build does not know");
  }
  return m;
}

RunAnswerWire run_answer_wire(const RunAnswerMsg& msg) {
  return RunAnswerWire::from([&](schema::RunAnswer::Builder b) {
    b.setRun(msg.run);
    b.setCall(msg.call);
    if (msg.error) write_error(*msg.error, b.initError());
    switch (msg.kind) {
      case RunAnswerMsg::Kind::kNone: b.setNone(); break;
      case RunAnswerMsg::Kind::kForwardBackward: {
        auto fb = b.initForwardBackward();
        fb.setLoss(msg.loss);
        fb.setTokens(msg.tokens);
        fb.setTargetTokens(msg.target_tokens);
        break;
      }
      case RunAnswerMsg::Kind::kOptimStep: {
        auto step = b.initOptimStep();
        step.setStep(msg.step);
        step.setGradNorm(msg.grad_norm);
        step.setAccumulated(msg.accumulated);
        break;
      }
      case RunAnswerMsg::Kind::kTensors: {
        auto t = b.initTensors();
        t.setSafetensors(as_bytes(msg.safetensors));
        t.setSteps(msg.steps);
        break;
      }
    }
  });
}

Result<RunAnswerMsg> read_run_answer(const RunAnswerWire& wire) {
  auto d = wire.decode();
  if (!d.ok()) return d.error();
  auto r = d->get();
  RunAnswerMsg m;
  m.run = as_string(r.getRun());
  m.call = r.getCall();
  if (r.hasError()) m.error = read_error(r.getError());
  switch (r.which()) {
    case schema::RunAnswer::NONE: m.kind = RunAnswerMsg::Kind::kNone; break;
    case schema::RunAnswer::FORWARD_BACKWARD: {
      m.kind = RunAnswerMsg::Kind::kForwardBackward;
      auto fb = r.getForwardBackward();
      m.loss = fb.getLoss();
      m.tokens = fb.getTokens();
      m.target_tokens = fb.getTargetTokens();
      break;
    }
    case schema::RunAnswer::OPTIM_STEP: {
      m.kind = RunAnswerMsg::Kind::kOptimStep;
      auto step = r.getOptimStep();
      m.step = step.getStep();
      m.grad_norm = step.getGradNorm();
      m.accumulated = step.getAccumulated();
      break;
    }
    case schema::RunAnswer::TENSORS: {
      m.kind = RunAnswerMsg::Kind::kTensors;
      auto t = r.getTensors();
      m.safetensors = bytes_of(t.getSafetensors());
      m.steps = t.getSteps();
      if (m.safetensors.empty() && !m.error)
        return make_error(ErrorCode::kInvalidArgument, "RunAnswer.tensors.safetensors: empty");
      break;
    }
    default: return make_error(ErrorCode::kInvalidArgument, "RunAnswer: an answer this build does not know");
  }
  return m;
}

}  // namespace myriad::actors
