// The typed wire (actors/typed_wire.h) and the converters between runtime
// types and schema messages: every field round-trips; a message of another
// kind, truncated bytes, garbage and pointers that do not fit the schema are
// Errors, never a throw or a crash. No CAF here (typed_wire_actor_test.cpp
// sends them through actors).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "actors/adapter_info_wire.h"
#include "actors/common_wire.h"
#include "actors/event_wire.h"
#include "actors/request_wire.h"
#include "actors/training_wire.h"
#include "runtime/model_factory.h"

namespace myriad::actors {
namespace {

Request full_request() {
  Request r;
  r.id = 0x1234'5678'9abcULL;
  r.adapters = {AdapterUse{AdapterId{"alpha", "chat", 3}, 0.75f},
                AdapterUse{AdapterId{"beta", "code.v2", 11}, 0.25f}};
  r.prompt = {1, 15043, 29892, -7, 32000};
  r.sampling.temperature = 0.7f;
  r.sampling.top_k = 40;
  r.sampling.top_p = 0.9f;
  r.sampling.seed = 0xdead'beef'cafeULL;
  r.sampling.repetition_penalty = 1.1f;
  r.sampling.presence_penalty = 0.5f;
  r.sampling.frequency_penalty = -0.25f;
  r.sampling.top_logprobs = 7;
  r.max_tokens = 123;
  r.min_tokens = 17;
  r.prompt_logits = LogitsRequest::kAll;
  r.stop_token_ids = {2, 32001};
  r.stop = {"\n\n", "</s>", ""};
  r.timeout_ms = 2500.5;
  r.resume_output = {17, 0, 31999};
  r.logit_bias = {{50256, -100.0f}, {3, 2.5f}, {0, 0.0f}};
  return r;
}

void expect_same_request(const Request& a, const Request& b) {
  EXPECT_EQ(a.id, b.id);
  ASSERT_EQ(a.adapters.size(), b.adapters.size());
  for (size_t i = 0; i < a.adapters.size(); ++i) {
    EXPECT_EQ(a.adapters[i].id, b.adapters[i].id) << i;
    EXPECT_EQ(a.adapters[i].weight, b.adapters[i].weight) << i;
  }
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.sampling.temperature, b.sampling.temperature);
  EXPECT_EQ(a.sampling.top_k, b.sampling.top_k);
  EXPECT_EQ(a.sampling.top_p, b.sampling.top_p);
  EXPECT_EQ(a.sampling.seed, b.sampling.seed);
  EXPECT_EQ(a.sampling.repetition_penalty, b.sampling.repetition_penalty);
  EXPECT_EQ(a.sampling.presence_penalty, b.sampling.presence_penalty);
  EXPECT_EQ(a.sampling.frequency_penalty, b.sampling.frequency_penalty);
  EXPECT_EQ(a.sampling.top_logprobs, b.sampling.top_logprobs);
  EXPECT_EQ(a.max_tokens, b.max_tokens);
  EXPECT_EQ(a.min_tokens, b.min_tokens);
  EXPECT_EQ(a.prompt_logits, b.prompt_logits);
  EXPECT_EQ(a.stop_token_ids, b.stop_token_ids);
  EXPECT_EQ(a.stop, b.stop);
  EXPECT_EQ(a.timeout_ms, b.timeout_ms);
  EXPECT_EQ(a.resume_output, b.resume_output);
  ASSERT_EQ(a.logit_bias.size(), b.logit_bias.size());
  for (size_t i = 0; i < a.logit_bias.size(); ++i) {
    EXPECT_EQ(a.logit_bias[i].token, b.logit_bias[i].token) << i;
    EXPECT_EQ(a.logit_bias[i].bias, b.logit_bias[i].bias) << i;
  }
}

Request round_trip(const Request& in, uint32_t attempt, uint32_t* attempt_out = nullptr) {
  SubmitWire wire = encode_submit(in, attempt);
  auto decoded = wire.decode();
  EXPECT_TRUE(decoded.ok()) << decoded.error().message;
  if (attempt_out) *attempt_out = decoded->get().getAttempt();
  auto out = read_submit(decoded->get());
  EXPECT_TRUE(out.ok()) << out.error().message;
  return *out;
}

TEST(SubmitWire, EveryFieldRoundTrips) {
  const Request in = full_request();
  uint32_t attempt = 0;
  expect_same_request(in, round_trip(in, 4, &attempt));
  EXPECT_EQ(attempt, 4u);
}

TEST(SubmitWire, DefaultsRoundTripIncludingNoDeadline) {
  Request in;  // the base model, no deadline, default sampling
  in.id = 1;
  in.prompt = {5};
  const Request out = round_trip(in, 0);
  expect_same_request(in, out);
  EXPECT_TRUE(std::isinf(out.timeout_ms));
}

TEST(SubmitWire, AnUnsetSchemaStructMeansTheRuntimeDefaults) {
  // A sender that leaves sampling, maxTokens and timeoutMs unset (e.g. an
  // older one) gets exactly the runtime's defaults, as the schema promises.
  auto wire = SubmitWire::from([](schema::SubmitRequest::Builder b) { b.setRequestId(9); });
  auto decoded = wire.decode();
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  auto out = read_submit(decoded->get());
  ASSERT_TRUE(out.ok()) << out.error().message;
  Request defaults;
  defaults.id = 9;
  expect_same_request(defaults, *out);
}

TEST(SubmitWire, AnUnknownPromptLogitsValueIsAnError) {
  auto wire = SubmitWire::from([](schema::SubmitRequest::Builder b) {
    b.setRequestId(9);
    b.setPromptLogits(static_cast<schema::LogitsRequest>(7));  // as a newer sender might
  });
  auto decoded = wire.decode();
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  auto out = read_submit(decoded->get());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(out.error().message.find("promptLogits: unknown value 7"), std::string::npos)
      << out.error().message;
}

OwnedEvent event_round_trip(const RequestEvent& in, uint32_t attempt) {
  EventWire wire = encode_event(in, attempt);
  auto decoded = wire.decode();
  EXPECT_TRUE(decoded.ok()) << decoded.error().message;
  auto out = read_event(decoded->get());
  EXPECT_TRUE(out.ok()) << out.error().message;
  return std::move(out).value();
}

TEST(EventWire, TokenRoundTrips) {
  RequestEvent in;
  in.id = 77;
  in.kind = EventKind::kToken;
  in.time_ms = 12.25;
  in.token = 29871;
  in.logprob = -0.125f;
  in.index = 41;
  in.text = "h\xc3\xa9llo";
  const OwnedEvent owned = event_round_trip(in, 2);
  const RequestEvent out = owned.view();
  EXPECT_EQ(owned.attempt(), 2u);
  EXPECT_EQ(out.id, in.id);
  EXPECT_EQ(out.kind, EventKind::kToken);
  EXPECT_EQ(out.time_ms, in.time_ms);
  EXPECT_EQ(out.token, in.token);
  EXPECT_EQ(out.logprob, in.logprob);
  EXPECT_EQ(out.index, in.index);
  EXPECT_EQ(out.text, in.text);
  EXPECT_TRUE(out.top.empty());
  EXPECT_FALSE(out.is_final());
}

TEST(EventWire, ATokensTopLogprobsRoundTrip) {
  RequestEvent in;
  in.id = 5;
  in.kind = EventKind::kToken;
  in.token = 9;
  in.logprob = -0.5f;
  const TopLogprobs::Entry top[] = {{9, -0.5f}, {31999, -1.25f}, {0, -7.0f}};
  in.top = top;
  const OwnedEvent owned = event_round_trip(in, 0);
  const RequestEvent out = owned.view();
  ASSERT_EQ(out.top.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(out.top[i].token, top[i].token) << i;
    EXPECT_EQ(out.top[i].logprob, top[i].logprob) << i;
  }
}

TEST(EventWire, LogitsRoundTrip) {
  const std::vector<float> values = {0.5f, -1.0f, 3.25f, 0.0f, -0.0f, 1e-30f};  // [2 positions, vocab 3]
  RequestEvent in;
  in.id = 5;
  in.kind = EventKind::kLogits;
  in.time_ms = 1.5;
  in.logits_start = 8;
  in.logits_count = 2;
  in.logits = values;
  const OwnedEvent owned = event_round_trip(in, 0);
  const RequestEvent out = owned.view();
  EXPECT_EQ(out.kind, EventKind::kLogits);
  EXPECT_EQ(out.id, 5u);
  EXPECT_EQ(out.time_ms, 1.5);
  EXPECT_EQ(out.logits_start, 8u);
  EXPECT_EQ(out.logits_count, 2u);
  ASSERT_EQ(out.logits.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i)
    EXPECT_EQ(std::memcmp(&out.logits[i], &values[i], sizeof(float)), 0) << i;
}

TEST(EventWire, FinishedRoundTripsEveryReason) {
  for (FinishReason reason :
       {FinishReason::kStop, FinishReason::kLength, FinishReason::kCancelled, FinishReason::kDeadline}) {
    RequestEvent in;
    in.id = 9;
    in.kind = EventKind::kFinished;
    in.time_ms = 99.0;
    in.reason = reason;
    in.text = "tail";
    in.num_output_tokens = 17;
    in.queue_ms = 3.5;
    const OwnedEvent owned = event_round_trip(in, 1);
    const RequestEvent out = owned.view();
    EXPECT_EQ(out.kind, EventKind::kFinished);
    EXPECT_EQ(out.reason, reason) << finish_reason_name(reason);
    EXPECT_EQ(out.text, "tail");
    EXPECT_EQ(out.num_output_tokens, 17u);
    EXPECT_EQ(out.queue_ms, 3.5);
    EXPECT_EQ(out.time_ms, 99.0);
    EXPECT_EQ(owned.attempt(), 1u);
    EXPECT_TRUE(out.is_final());
  }
}

TEST(EventWire, FailedRoundTripsEveryRuntimeErrorCode) {
  for (ErrorCode code : {ErrorCode::kInvalidArgument, ErrorCode::kBadFile, ErrorCode::kNotFound,
                         ErrorCode::kUnsupported, ErrorCode::kResourceExhausted, ErrorCode::kIo,
                         ErrorCode::kCancelled, ErrorCode::kDeadlineExceeded, ErrorCode::kInternal}) {
    RequestEvent in;
    in.id = 10;
    in.kind = EventKind::kFailed;
    in.error = make_error(code, "max_tokens 9000 exceeds the context left, 1536");
    in.num_output_tokens = 0;
    in.queue_ms = -1.0;
    const RequestEvent out = event_round_trip(in, 0).view();
    EXPECT_EQ(out.kind, EventKind::kFailed);
    EXPECT_EQ(out.error.code, code) << error_code_name(code);
    EXPECT_EQ(out.error.message, in.error.message);
    EXPECT_EQ(out.num_output_tokens, 0u);
    EXPECT_EQ(out.queue_ms, -1.0);
  }
}

TEST(EventWire, AnUnknownFinishReasonOrRaggedLogitsAreErrors) {
  auto reason = EventWire::from([](schema::RequestEvent::Builder b) {
    b.initFinished().setReason(static_cast<schema::FinishReason>(42));
  });
  auto d1 = reason.decode();
  ASSERT_TRUE(d1.ok()) << d1.error().message;
  auto e1 = read_event(d1->get());
  ASSERT_FALSE(e1.ok());
  EXPECT_NE(e1.error().message.find("unknown finish reason 42"), std::string::npos) << e1.error().message;

  auto ragged = EventWire::from([](schema::RequestEvent::Builder b) {
    auto l = b.initLogits();
    l.setCount(2);
    l.initValues(5);
  });
  auto d2 = ragged.decode();
  ASSERT_TRUE(d2.ok()) << d2.error().message;
  auto e2 = read_event(d2->get());
  ASSERT_FALSE(e2.ok());
  EXPECT_NE(e2.error().message.find("not a whole number of rows"), std::string::npos) << e2.error().message;

  auto too_many = EventWire::from([](schema::RequestEvent::Builder b) { b.initToken().initTop(21); });
  auto d3 = too_many.decode();
  ASSERT_TRUE(d3.ok()) << d3.error().message;
  auto e3 = read_event(d3->get());
  ASSERT_FALSE(e3.ok());
  EXPECT_NE(e3.error().message.find("SampledToken.top: 21 tokens; at most 20"), std::string::npos)
      << e3.error().message;
}

TEST(ErrorWire, UnauthenticatedAndUnknownCodesBecomeInternalKeepingTheirName) {
  capnp::MallocMessageBuilder message;
  auto e = message.initRoot<schema::Error>();
  e.setMessage("no valid API key");
  e.setCode(schema::ErrorCode::UNAUTHENTICATED);
  Error out = read_error(e.asReader());
  EXPECT_EQ(out.code, ErrorCode::kInternal);
  EXPECT_EQ(out.message, "unauthenticated: no valid API key");
  e.setCode(schema::ErrorCode::UNAVAILABLE);
  EXPECT_EQ(read_error(e.asReader()).code, ErrorCode::kUnavailable);
  e.setCode(schema::ErrorCode::OVERLOADED);
  EXPECT_EQ(read_error(e.asReader()).code, ErrorCode::kOverloaded);
  e.setCode(static_cast<schema::ErrorCode>(200));
  out = read_error(e.asReader());
  EXPECT_EQ(out.code, ErrorCode::kInternal);
  EXPECT_EQ(out.message, "error code 200: no valid API key");
}

TEST(AdapterInfoWire, EveryFieldRoundTrips) {
  AdapterRecord in;
  in.id = AdapterId{"alpha", "chat", 12};
  in.base_fingerprint = "llama-tiny-2f9c";
  in.rank = 16;
  in.alpha = 32.0f;
  in.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  in.sha256 = std::string(64, 'a');
  in.size_bytes = 123'456'789;
  in.created_unix_ms = 1'790'000'000'123;
  AdapterInfoWire wire = encode_adapter_info(in);
  auto decoded = wire.decode();
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  const AdapterRecord out = read_adapter_info(decoded->get());
  EXPECT_EQ(out.id, in.id);
  EXPECT_EQ(out.base_fingerprint, in.base_fingerprint);
  EXPECT_EQ(out.rank, in.rank);
  EXPECT_EQ(out.alpha, in.alpha);
  EXPECT_EQ(out.target_modules, in.target_modules);
  EXPECT_EQ(out.sha256, in.sha256);
  EXPECT_EQ(out.size_bytes, in.size_bytes);
  EXPECT_EQ(out.created_unix_ms, in.created_unix_ms);
}

TEST(TypedWire, AnotherKindIsRefusedWithAClearError) {
  SubmitWire submit = encode_submit(full_request());
  EXPECT_EQ(submit.kind(), capnp::typeId<schema::SubmitRequest>());
  // The same bytes presented as a CancelRequest (as a confused or hostile peer might).
  CancelWire as_cancel = CancelWire::adopt(submit.kind(), submit.bytes());
  auto decoded = as_cancel.decode();
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.error().code, ErrorCode::kInvalidArgument);
  EXPECT_NE(decoded.error().message.find("expected a CancelRequest message"), std::string::npos)
      << decoded.error().message;
  EXPECT_NE(decoded.error().message.find("got kind 0x"), std::string::npos) << decoded.error().message;
  // Relabelled with the right tag, the bytes still decode: the tag, not the bytes, was wrong.
  EXPECT_TRUE(SubmitWire::adopt(submit.kind(), submit.bytes()).decode().ok());
}

TEST(TypedWire, AnEmptyValueIsRefused) {
  auto decoded = SubmitWire{}.decode();
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("got an empty TypedWire"), std::string::npos)
      << decoded.error().message;
}

TEST(TypedWire, EveryTruncationIsRefused) {
  const SubmitWire submit = encode_submit(full_request());
  const WireBytes& bytes = submit.bytes();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto cut = SubmitWire::adopt(submit.kind(), WireBytes(bytes.begin(), bytes.begin() + long(n)));
    auto decoded = cut.decode();
    EXPECT_FALSE(decoded.ok()) << "a prefix of " << n << " of " << bytes.size() << " bytes decoded";
  }
}

TEST(TypedWire, GarbageBytesAreRefused) {
  std::mt19937_64 rng(16);
  for (int trial = 0; trial < 200; ++trial) {
    WireBytes garbage(8 * (1 + rng() % 64));
    for (char& c : garbage) c = static_cast<char>(rng());
    auto decoded = SubmitWire::adopt(capnp::typeId<schema::SubmitRequest>(), garbage).decode();
    EXPECT_FALSE(decoded.ok()) << "trial " << trial;
  }
}

// A well-framed message whose root is a SubmitRequest but whose `stop` field
// (a List(Text)) holds a struct pointer: Cap'n Proto would throw when `stop`
// is read; decode() reads every field first and answers an Error instead.
TEST(TypedWire, APointerThatDoesNotFitTheSchemaIsRefusedUpFront) {
  const SubmitWire submit = encode_submit(full_request());
  WireBytes bytes = submit.bytes();
  const auto node = capnp::Schema::from<schema::SubmitRequest>().getProto();
  const unsigned data_words = node.getStruct().getDataWordCount();
  const unsigned stop_ptr =
      capnp::Schema::from<schema::SubmitRequest>().getFieldByName("stop").getProto().getSlot().getOffset();
  // One segment: [segment table word][root pointer][root struct: data words, then pointers].
  const size_t word = 1 + 1 + data_words + stop_ptr;
  ASSERT_LT((word + 1) * 8, bytes.size());
  const uint64_t struct_ptr = uint64_t(1) << 32;  // struct, offset 0, one data word, no pointers
  std::memcpy(bytes.data() + 8 * word, &struct_ptr, sizeof struct_ptr);
  auto decoded = SubmitWire::adopt(submit.kind(), bytes).decode();
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().message.find("malformed SubmitRequest message"), std::string::npos)
      << decoded.error().message;
}

TEST(TypedWire, ALargeMessageStaysReadableAfterTheFullCheck) {
  // 12M prompt ids = 48 MB: past the 8M-word traversal default once checked
  // and read, which the reader's size-proportional limit allows.
  Request big;
  big.id = 3;
  big.prompt.assign(12'000'000, 7);
  auto decoded = encode_submit(big).decode();
  ASSERT_TRUE(decoded.ok()) << decoded.error().message;
  auto out = read_submit(decoded->get());
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(out->prompt.size(), big.prompt.size());
}


// A fine-tuning job's spec (cluster_jobs.h): config (every field, doubles to
// the bit), examples and checkpoint bytes round-trip; a ragged sequence or
// no publish interval is an Error.
TEST(TrainJobWire, ConfigExamplesAndCheckpointRoundTrip) {
  ModelConfig base = model_shape("tiny").value();
  TrainingJobConfig c;
  c.targets.rank = 5;
  c.targets.alpha = 7.25f;
  c.targets.modules[int(LinearModule::kK)] = false;
  c.targets.first_layer = 1;
  c.adamw.lr = 1.0 / 3.0;
  c.adamw.beta1 = 0.8;
  c.adamw.weight_decay = 0.01;
  c.steps = 17;
  c.epochs = 2.5;
  c.batch_tokens = 77;
  c.grad_accum = 3;
  c.warmup_steps = -1;
  c.min_lr_ratio = 0.1;
  c.max_grad_norm = 0.0;
  c.seed = 0xffff'ffff'ffff'fff0ULL;
  std::vector<TrainingExample> train(2), eval(1);
  train[0].tokens = {1, 2, 3};
  train[0].targets = {0, 1, 1};
  train[1].tokens = {4, 5};
  train[1].targets = {0, 1};
  eval[0].tokens = {9, 8, 7, 6};
  eval[0].targets = {0, 0, 1, 1};
  auto job = TrainingJob::create("ftjob-1", base, c, train, eval);
  ASSERT_TRUE(job.ok()) << job.error().to_string();
  constexpr char kBytes[] = "\x01\x02safetensors bytes\x00!";  // an embedded NUL: the length is the array's
  const std::string checkpoint(kBytes, sizeof kBytes - 1);
  auto back = read_train_job(train_job_wire(*job.value(), checkpoint, 20));
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->job, "ftjob-1");
  EXPECT_EQ(back->checkpoint, checkpoint);
  EXPECT_EQ(back->publish_every, 20);
  EXPECT_EQ(training_job_config_json(back->config), training_job_config_json(c));
  EXPECT_EQ(back->config.adamw.lr, c.adamw.lr);
  EXPECT_EQ(back->config.seed, c.seed);
  EXPECT_FALSE(back->config.targets.modules[int(LinearModule::kK)]);
  ASSERT_EQ(back->train.size(), 2u);
  EXPECT_EQ(back->train[1].tokens, train[1].tokens);
  EXPECT_EQ(back->train[1].targets, train[1].targets);
  ASSERT_EQ(back->eval.size(), 1u);
  EXPECT_EQ(back->eval[0].targets, eval[0].targets);
  // The job built from it on a worker is the same job (its checkpoints fit).
  auto rebuilt = TrainingJob::create(back->job, base, back->config, back->train, back->eval);
  ASSERT_TRUE(rebuilt.ok());
  EXPECT_EQ(rebuilt.value()->fingerprint(), job.value()->fingerprint());

  auto ragged = TrainJobWire::from([](schema::TrainJob::Builder b) {
    b.setJob("j");
    b.setConfigJson(training_job_config_json(TrainingJobConfig{}).dump());
    auto seq = b.initTrain(1)[0];
    seq.initTokens(3);
    seq.setTargets(kj::arrayPtr(reinterpret_cast<const kj::byte*>("\x01"), 1));
    b.setPublishEvery(1);
  });
  auto bad = read_train_job(ragged);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("differ in length"), std::string::npos) << bad.error().message;
  auto never = read_train_job(train_job_wire(*job.value(), "", 0));
  ASSERT_FALSE(never.ok());
  EXPECT_NE(never.error().message.find("publishEvery"), std::string::npos);
  auto no_config = TrainJobWire::from([](schema::TrainJob::Builder b) {
    b.setJob("j");
    b.setConfigJson("{\"rank\": 4}");
    b.setPublishEvery(1);
  });
  EXPECT_FALSE(read_train_job(no_config).ok());
}

TEST(TrainProgressAndVersionWires, RoundTripAndRefuseWhatCannotBe) {
  TrainingStepRecord rec{12, 1.0 / 7.0, 300, 41, 2e-4, 0.125};
  auto p = read_train_progress(train_progress_wire("ftjob-2", "w7", rec));
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ(p->job, "ftjob-2");
  EXPECT_EQ(p->worker, "w7");
  EXPECT_EQ(p->record.step, 12);
  EXPECT_EQ(p->record.loss, rec.loss);
  EXPECT_EQ(p->record.tokens, 300);
  EXPECT_EQ(p->record.target_tokens, 41);
  EXPECT_EQ(p->record.lr, rec.lr);
  EXPECT_EQ(p->record.grad_norm, rec.grad_norm);
  rec.step = 0;
  EXPECT_FALSE(read_train_progress(train_progress_wire("ftjob-2", "w7", rec)).ok());
  auto v = read_train_version(train_version_wire("ftjob-2", "w7", 3, std::numeric_limits<double>::quiet_NaN(), "ck"));
  ASSERT_TRUE(v.ok()) << v.error().to_string();
  EXPECT_EQ(v->worker, "w7");
  EXPECT_EQ(v->version, 3u);
  EXPECT_TRUE(std::isnan(v->eval_loss));
  EXPECT_EQ(v->checkpoint, "ck");
  EXPECT_FALSE(read_train_version(train_version_wire("ftjob-2", "w7", 3, 0.5, "")).ok());
  // Another kind is refused before any field is read.
  EXPECT_FALSE(read_train_version(TrainVersionWire::adopt(TrainProgressWire::kKind,
                                                          train_progress_wire("x", "w7", TrainingStepRecord{1}).bytes()))
                   .ok());
}

TEST(RunCallWire, EveryCallRoundTrips) {
  RunCallMsg open;
  open.run = "wrun-1";
  open.call = 7;
  open.op = RunOp::kOpen;
  open.options_json = R"({"tenant":"acme"})";
  open.state = std::string("\0st\xff", 4);
  open.steps = 12;
  auto o = read_run_call(run_call_wire(open));
  ASSERT_TRUE(o.ok()) << o.error().to_string();
  EXPECT_EQ(o->op, RunOp::kOpen);
  EXPECT_EQ(o->run, "wrun-1");
  EXPECT_EQ(o->call, 7u);
  EXPECT_EQ(o->options_json, open.options_json);
  EXPECT_EQ(o->state, open.state);
  EXPECT_EQ(o->steps, 12);

  RunCallMsg fb;
  fb.run = "wrun-1";
  fb.op = RunOp::kForwardBackward;
  TrainingExample ex;
  ex.tokens = {1, 2, 3};
  ex.targets = {0, 1, 1};
  fb.batch.push_back(ex);
  auto f = read_run_call(run_call_wire(fb));
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  ASSERT_EQ(f->batch.size(), 1u);
  EXPECT_EQ(f->batch[0].tokens, fb.batch[0].tokens);
  EXPECT_EQ(f->batch[0].targets, fb.batch[0].targets);

  RunCallMsg step;
  step.run = "wrun-1";
  step.op = RunOp::kOptimStep;
  step.learning_rate = 1e-3;
  step.max_grad_norm = 0.5;
  auto s = read_run_call(run_call_wire(step));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->op, RunOp::kOptimStep);
  EXPECT_EQ(s->learning_rate, 1e-3);
  EXPECT_EQ(s->max_grad_norm, 0.5);
  for (RunOp op : {RunOp::kSnapshot, RunOp::kState, RunOp::kClose}) {
    RunCallMsg m;
    m.run = "wrun-1";
    m.op = op;
    auto r = read_run_call(run_call_wire(m));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->op, op);
  }
  // Refused: no run, negative steps, a ragged sequence.
  RunCallMsg bad = open;
  bad.run = "";
  EXPECT_FALSE(read_run_call(run_call_wire(bad)).ok());
  bad = open;
  bad.steps = -1;
  EXPECT_FALSE(read_run_call(run_call_wire(bad)).ok());
  bad = fb;
  bad.batch[0].targets.pop_back();
  EXPECT_FALSE(read_run_call(run_call_wire(bad)).ok());
}

TEST(RunAnswerWire, EveryAnswerAndAnErrorRoundTrip) {
  RunAnswerMsg fb;
  fb.run = "wrun-1";
  fb.call = 3;
  fb.kind = RunAnswerMsg::Kind::kForwardBackward;
  fb.loss = 1.0 / 3.0;
  fb.tokens = 40;
  fb.target_tokens = 9;
  auto f = read_run_answer(run_answer_wire(fb));
  ASSERT_TRUE(f.ok()) << f.error().to_string();
  EXPECT_FALSE(f->error);
  EXPECT_EQ(f->kind, RunAnswerMsg::Kind::kForwardBackward);
  EXPECT_EQ(f->call, 3u);
  EXPECT_EQ(f->loss, fb.loss);
  EXPECT_EQ(f->tokens, 40);
  EXPECT_EQ(f->target_tokens, 9);

  RunAnswerMsg step;
  step.run = "wrun-1";
  step.kind = RunAnswerMsg::Kind::kOptimStep;
  step.step = 5;
  step.grad_norm = 0.25;
  step.accumulated = 2;
  auto s = read_run_answer(run_answer_wire(step));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->step, 5);
  EXPECT_EQ(s->grad_norm, 0.25);
  EXPECT_EQ(s->accumulated, 2);

  RunAnswerMsg tensors;
  tensors.run = "wrun-1";
  tensors.kind = RunAnswerMsg::Kind::kTensors;
  tensors.safetensors = "bytes";
  tensors.steps = 17;
  auto t = read_run_answer(run_answer_wire(tensors));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->safetensors, "bytes");
  EXPECT_EQ(t->steps, 17);
  tensors.safetensors.clear();
  EXPECT_FALSE(read_run_answer(run_answer_wire(tensors)).ok());

  RunAnswerMsg failed;
  failed.run = "wrun-1";
  failed.call = 4;
  failed.error = make_error(ErrorCode::kInvalidArgument, "no forward_backward since the last optim_step");
  auto e = read_run_answer(run_answer_wire(failed));
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(e->error);
  EXPECT_EQ(e->error->code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->error->message, failed.error->message);
}

}  // namespace
}  // namespace myriad::actors
