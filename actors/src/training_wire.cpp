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
                                                    const char* what) {
  std::vector<TrainingExample> out;
  out.reserve(in.size());
  for (auto seq : in) {
    TrainingExample ex;
    ex.tokens = to_vector<int32_t>(seq.getTokens());
    auto targets = seq.getTargets();
    ex.targets.assign(targets.begin(), targets.end());
    if (ex.tokens.empty() || ex.targets.size() != ex.tokens.size())
      return make_error(ErrorCode::kInvalidArgument,
                        std::string("TrainJob.") + what + ": a sequence's tokens and targets differ in length");
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
  auto train = read_sequences(r.getTrain(), "train");
  if (!train.ok()) return train.error();
  s.train = std::move(train.value());
  auto eval = read_sequences(r.getEval(), "eval");
  if (!eval.ok()) return eval.error();
  s.eval = std::move(eval.value());
  auto ck = r.getCheckpoint();
  s.checkpoint.assign(reinterpret_cast<const char*>(ck.begin()), ck.size());
  s.publish_every = r.getPublishEvery();
  if (s.publish_every < 1) return make_error(ErrorCode::kInvalidArgument, "TrainJob.publishEvery: must be >= 1");
  return s;
}

TrainProgressWire train_progress_wire(const std::string& job, const TrainingStepRecord& rec) {
  return TrainProgressWire::from([&](schema::TrainProgress::Builder b) {
    b.setJob(job);
    b.setStep(rec.step);
    b.setLoss(rec.loss);
    b.setTokens(rec.tokens);
    b.setTargetTokens(rec.target_tokens);
    b.setLr(rec.lr);
    b.setGradNorm(rec.grad_norm);
  });
}

Result<std::pair<std::string, TrainingStepRecord>> read_train_progress(const TrainProgressWire& wire) {
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
  return std::pair{as_string(r.getJob()), rec};
}

TrainVersionWire train_version_wire(const std::string& job, uint64_t version, double eval_loss,
                                    std::string_view checkpoint) {
  return TrainVersionWire::from([&](schema::TrainVersion::Builder b) {
    b.setJob(job);
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
  m.version = r.getVersion();
  m.eval_loss = r.getEvalLoss();
  auto ck = r.getCheckpoint();
  m.checkpoint.assign(reinterpret_cast<const char*>(ck.begin()), ck.size());
  if (m.checkpoint.empty()) return make_error(ErrorCode::kInvalidArgument, "TrainVersion.checkpoint: empty");
  return m;
}

}  // namespace myriad::actors
