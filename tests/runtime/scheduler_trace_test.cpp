// Trace tests: the expected state of every step, as a table (one EXPECT per
// step). Rows read id:adapter:start_pos+num_tokens ('*' = samples), see
// scheduler_trace.h. Time advances 1 ms per step; loads are ready at the
// next step's poll unless a test says otherwise.
#include "scheduler_trace.h"

namespace myriad::testing {
namespace {

SchedulerConfig small_config() {
  SchedulerConfig c;
  c.num_slots = 2;
  c.quantum_ms = 3.0;
  c.max_tokens_per_step = 8;
  c.max_running_seqs = 4;
  c.num_kv_blocks = 64;
  c.kv_block_size = 4;
  return c;
}

size_t finals_of(const RecordingSink& sink, RequestId id) {
  size_t n = 0;
  for (const auto& e : sink.all) n += e.id == id && e.is_final();
  return n;
}

TEST(SchedulerTrace, AdmissionFillsTokenBudgetAndChunksTheLastPrompt) {
  Trace t(small_config());
  t.submit("", 3, 2);
  t.submit("", 3, 2);
  t.submit("", 3, 2);
  // Budget 8: 3 + 3 + the first 2 tokens of request 3 (a non-sampling chunk).
  EXPECT_EQ(t.step(), "run 1:-:0+3* 2:-:0+3* 3:-:0+2");
  EXPECT_EQ(t.step(), "run 1:-:3+1* 2:-:3+1* 3:-:2+1*; done 1:length 2:length");
  EXPECT_EQ(t.step(), "run 3:-:3+1*; done 3:length");
  EXPECT_EQ(t.step(), "idle");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, AdmissionStopsAtMaxRunningAndTokenBudget) {
  SchedulerConfig c = small_config();
  c.max_running_seqs = 2;
  Trace t(c);
  t.submit("", 1, 2);
  t.submit("", 1, 2);
  t.submit("", 1, 1);
  EXPECT_EQ(t.step(), "run 1:-:0+1* 2:-:0+1*; wait -:max_running(1)");
  EXPECT_EQ(t.step(), "run 1:-:1+1* 2:-:1+1*; wait -:max_running(1); done 1:length 2:length");
  EXPECT_EQ(t.step(), "run 3:-:0+1*; done 3:length");

  Trace u(small_config());
  u.submit("", 8, 1);
  u.submit("", 2, 1);
  EXPECT_EQ(u.step(), "run 1:-:0+8*; wait -:token_budget(1); done 1:length");
  EXPECT_EQ(u.step(), "run 2:-:0+2*; done 2:length");
}

TEST(SchedulerTrace, QueuedTokensCountPromptAndOutputUntilAdmittedOrCancelled) {
  SchedulerConfig c = small_config();
  c.max_running_seqs = 1;
  Trace t(c);
  const Scheduler& s = t.engine().scheduler();
  t.submit("", 3, 2);
  const RequestId second = t.submit("", 5, 4);
  t.submit("", 1, 1);
  EXPECT_EQ(s.queued_tokens(), 5u + 9u + 2u);
  EXPECT_EQ(t.step(), "run 1:-:0+3*; wait -:max_running(2)");
  EXPECT_EQ(s.queued_tokens(), 9u + 2u);  // admitted: no longer waiting
  EXPECT_TRUE(t.engine().cancel(second));
  EXPECT_EQ(s.queued_tokens(), 2u);
  while (t.step() != "idle") {
  }
  EXPECT_EQ(s.queued_tokens(), 0u);
  EXPECT_EQ(s.num_queued(), 0u);
}

TEST(SchedulerTrace, AdmissionWaitsForKvBlocksAndTakesWhatFits) {
  SchedulerConfig c = small_config();
  c.num_kv_blocks = 4;  // 16 token positions
  Trace t(c);
  t.submit("", 8, 4);  // needs 3 blocks at most
  t.submit("", 8, 4);
  EXPECT_EQ(t.step(), "run 1:-:0+8*; wait -:token_budget(1)");
  // Request 1 takes its 3rd block; request 2 gets the last block: 4 of its 8 tokens.
  EXPECT_EQ(t.step(), "run 1:-:8+1* 2:-:0+4");
  // Request 2 needs a 2nd block and is the youngest: it preempts itself and
  // is not readmitted in the step that preempted (that would only thrash).
  EXPECT_EQ(t.step(), "run 1:-:9+1*; preempt(1); wait -:kv_blocks(1)");
  EXPECT_EQ(t.step(), "run 1:-:10+1* 2:-:0+4; done 1:length");
  EXPECT_EQ(t.step(), "run 2:-:4+4*");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, ChunkedPrefillSharesStepsWithDecodeRows) {
  Trace t(small_config());  // T = 8, R = 4: each running row is guaranteed g = 2 tokens
  t.submit("", 2, 5);
  EXPECT_EQ(t.step(), "run 1:-:0+2*");
  t.submit("", 12, 2);
  EXPECT_EQ(t.step(), "run 1:-:2+1* 2:-:0+7");
  EXPECT_EQ(t.step(), "run 1:-:3+1* 2:-:7+5*");
  EXPECT_EQ(t.step(), "run 1:-:4+1* 2:-:12+1*; done 2:length");
  EXPECT_EQ(t.step(), "run 1:-:5+1*; done 1:length");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, ChunkedPrefillRespectsMaxPrefillChunk) {
  SchedulerConfig c = small_config();
  c.max_prefill_chunk = 3;
  Trace t(c);
  t.submit("", 7, 1);
  EXPECT_EQ(t.step(), "run 1:-:0+3");
  EXPECT_EQ(t.step(), "run 1:-:3+3");
  EXPECT_EQ(t.step(), "run 1:-:6+1*; done 1:length");
}

TEST(SchedulerTrace, SwapAtTheQuantumDrainsThenLoadsTheLongestWaiting) {
  SchedulerConfig c = small_config();
  c.num_slots = 1;
  c.max_running_seqs = 2;
  Trace t(c);
  t.submit("a", 2, 5);  // 1
  t.submit("a", 2, 5);  // 2
  t.submit("a", 2, 1);  // 3
  t.submit("b", 2, 2);  // 4
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(3); wait b:no_slot(1)");                      // t=0
  EXPECT_EQ(t.step(), "run 1:a:0+2* 2:a:0+2*; wait a:max_running(1); wait b:no_slot(1)");     // t=1 a active
  EXPECT_EQ(t.step(), "run 1:a:2+1* 2:a:2+1*; wait a:max_running(1); wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:3+1* 2:a:3+1*; wait a:max_running(1); wait b:no_slot(1)");
  // t=4: a has been active for the quantum (3 ms) and b waits: a is swapped
  // out; its running requests finish, its queued one waits behind b.
  EXPECT_EQ(t.step(), "run 1:a:4+1* 2:a:4+1*; wait a:swapped_out(1); wait b:no_slot(1)");
  EXPECT_EQ(t.engine().metrics().swaps, 1u);
  EXPECT_EQ(t.step(), "run 1:a:5+1* 2:a:5+1*; wait a:swapped_out(1); wait b:no_slot(1); done 1:length 2:length");
  EXPECT_EQ(t.step(), "evict a@0; load b>0; wait a:no_slot(1); wait b:loading(1)");
  EXPECT_EQ(t.step(), "run 4:b:0+2*; wait a:no_slot(1)");
  // b has nothing queued and a waits: b drains at once (no quantum needed).
  EXPECT_EQ(t.step(), "run 4:b:2+1*; wait a:no_slot(1); done 4:length");
  EXPECT_EQ(t.step(), "evict b@0; load a>0; wait a:loading(1)");
  EXPECT_EQ(t.step(), "run 3:a:0+2*; done 3:length");
  EXPECT_EQ(t.step(), "evict a@0");  // nothing queued or running: the slot frees at once
  EXPECT_EQ(t.step(), "idle");
  EXPECT_EQ(t.engine().metrics().swaps, 1u);
  EXPECT_EQ(t.engine().metrics().slot_loads, 3u);
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, SwapOutWithPauseFreesTheSlotAtOnceAndResumesLater) {
  SchedulerConfig c = small_config();
  c.num_slots = 1;
  c.max_running_seqs = 2;
  c.pause_on_swap_out = true;
  Trace t(c);
  t.submit("a", 2, 5);
  t.submit("a", 2, 5);
  t.submit("a", 2, 1);
  t.submit("b", 2, 2);
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(3); wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:0+2* 2:a:0+2*; wait a:max_running(1); wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:2+1* 2:a:2+1*; wait a:max_running(1); wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:3+1* 2:a:3+1*; wait a:max_running(1); wait b:no_slot(1)");
  // Quantum: a's two running requests pause (keeping their KV); the slot is free at once.
  EXPECT_EQ(t.step(), "evict a@0; load b>0; pause(2); wait a:no_slot(3); wait b:loading(1)");
  EXPECT_EQ(t.engine().scheduler().num_paused(), 2u);
  EXPECT_EQ(t.step(), "run 4:b:0+2*; wait a:no_slot(3)");
  EXPECT_EQ(t.step(), "run 4:b:2+1*; wait a:no_slot(3); done 4:length");  // early release drains, never pauses
  EXPECT_EQ(t.step(), "evict b@0; load a>0; wait a:loading(3)");
  // The paused requests resume where they stopped (4 positions cached), before the queued one.
  EXPECT_EQ(t.step(), "run 1:a:4+1* 2:a:4+1*; wait a:max_running(1)");
  EXPECT_EQ(t.step(), "run 1:a:5+1* 2:a:5+1*; wait a:max_running(1); done 1:length 2:length");
  EXPECT_EQ(t.step(), "run 3:a:0+2*; done 3:length");
  EXPECT_EQ(t.step(), "evict a@0");
  t.expect_tokens_consistent();  // paused requests give the same tokens
}

// Paused requests keep their KV only while nobody needs it: new work (an
// admission) and running rows take it back, the youngest paused request
// first, which then recomputes from position 0 when its adapter returns
// while the older one resumes where it stopped.
TEST(SchedulerTrace, PausedKvIsReclaimedYoungestFirst) {
  SchedulerConfig c = small_config();
  c.num_slots = 1;
  c.max_running_seqs = 2;
  c.pause_on_swap_out = true;
  c.kv_block_size = 2;
  c.num_kv_blocks = 6;  // 12 positions
  {
    // An admission reclaims: b's 6-token prompt needs 3 blocks, 2 are free.
    Trace t(c);
    t.submit("a", 2, 5);  // 1
    t.submit("a", 2, 5);  // 2
    t.submit("a", 2, 1);  // 3
    t.submit("b", 6, 3);  // 4
    EXPECT_EQ(t.step(), "load a>0; wait a:loading(3); wait b:no_slot(1)");
    EXPECT_EQ(t.step(), "run 1:a:0+2* 2:a:0+2*; wait a:max_running(1); wait b:no_slot(1)");
    EXPECT_EQ(t.step(), "run 1:a:2+1* 2:a:2+1*; wait a:max_running(1); wait b:no_slot(1)");
    EXPECT_EQ(t.step(), "run 1:a:3+1* 2:a:3+1*; wait a:max_running(1); wait b:no_slot(1)");
    // 1 and 2 pause with 2 blocks each (4 positions cached): 2 blocks free.
    EXPECT_EQ(t.step(), "evict a@0; load b>0; pause(2); wait a:no_slot(3); wait b:loading(1)");
    EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 2);
    // Request 2 (the younger) loses its 2 blocks to b's prompt.
    EXPECT_EQ(t.step(), "run 4:b:0+6*; preempt(1); wait a:no_slot(3)");
    EXPECT_EQ(t.engine().scheduler().num_paused(), 1u);
    EXPECT_EQ(t.step(), "run 4:b:6+1*; wait a:no_slot(3)");  // b's 4th block: the last free one
    EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 0);
    EXPECT_EQ(t.step(), "run 4:b:7+1*; wait a:no_slot(3); done 4:length");
    EXPECT_EQ(t.step(), "evict b@0; load a>0; wait a:loading(3)");
    // 1 resumes at position 4; 2 recomputes its 5 known tokens and samples its 4th.
    EXPECT_EQ(t.step(), "run 1:a:4+1* 2:a:0+5*; wait a:max_running(1)");
    EXPECT_EQ(t.step(), "run 1:a:5+1* 2:a:5+1*; wait a:max_running(1); done 1:length 2:length");
    EXPECT_EQ(t.step(), "run 3:a:0+2*; done 3:length");
    EXPECT_EQ(t.step(), "evict a@0");
    EXPECT_EQ(t.engine().metrics().preemptions, 1u);
    EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 6);
    t.expect_tokens_consistent();  // the recomputed request's tokens are unchanged
  }
  {
    // A running row reclaims: b's 4-token prompt takes the last 2 blocks;
    // its first decode needs a 3rd, taken from paused request 2 rather than
    // preempting b itself.
    Trace t(c);
    t.submit("a", 2, 5);  // 1
    t.submit("a", 2, 5);  // 2
    t.submit("a", 2, 1);  // 3
    t.submit("b", 4, 2);  // 4
    for (int i = 0; i < 4; ++i) t.step();  // as above: 1 and 2 at position 4
    EXPECT_EQ(t.step(), "evict a@0; load b>0; pause(2); wait a:no_slot(3); wait b:loading(1)");
    EXPECT_EQ(t.step(), "run 4:b:0+4*; wait a:no_slot(3)");
    EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 0);
    EXPECT_EQ(t.step(), "run 4:b:4+1*; preempt(1); wait a:no_slot(3); done 4:length");
    EXPECT_EQ(t.engine().scheduler().num_paused(), 1u);
    EXPECT_EQ(t.step(), "evict b@0; load a>0; wait a:loading(3)");
    EXPECT_EQ(t.step(), "run 1:a:4+1* 2:a:0+5*; wait a:max_running(1)");
    EXPECT_EQ(t.step(), "run 1:a:5+1* 2:a:5+1*; wait a:max_running(1); done 1:length 2:length");
    EXPECT_EQ(t.step(), "run 3:a:0+2*; done 3:length");
    EXPECT_EQ(t.engine().metrics().preemptions, 1u);
    t.expect_tokens_consistent();
  }
}

TEST(SchedulerTrace, EarlyReleaseWhenNothingQueuedOrRunning) {
  SchedulerConfig c = small_config();
  c.num_slots = 1;
  Trace t(c);
  t.submit("a", 2, 1);
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(1)");
  EXPECT_EQ(t.step(), "run 1:a:0+2*; done 1:length");
  EXPECT_EQ(t.step(), "evict a@0");
  t.submit("b", 2, 1);
  EXPECT_EQ(t.step(), "load b>0; wait b:loading(1)");
  EXPECT_EQ(t.step(), "run 2:b:0+2*; done 2:length");
}

TEST(SchedulerTrace, PreemptionFreesTheYoungestAndRecomputesIdentically) {
  SchedulerConfig c = small_config();
  c.kv_block_size = 2;
  c.num_kv_blocks = 4;  // 8 positions for two requests of up to 6
  c.max_running_seqs = 2;
  Trace t(c);
  t.submit("", 2, 4);
  t.submit("", 2, 4);
  EXPECT_EQ(t.step(), "run 1:-:0+2* 2:-:0+2*");
  EXPECT_EQ(t.step(), "run 1:-:2+1* 2:-:2+1*");
  EXPECT_EQ(t.step(), "run 1:-:3+1* 2:-:3+1*");
  // Request 1 needs a 3rd block: request 2 (the youngest) loses its KV and
  // waits; then it recomputes its 5 known tokens (prompt + 3 generated) and
  // samples its 4th, the same token it would have had.
  EXPECT_EQ(t.step(), "run 1:-:4+1*; preempt(1); wait -:kv_blocks(1); done 1:length");
  EXPECT_EQ(t.step(), "run 2:-:0+5*; done 2:length");
  EXPECT_EQ(t.engine().metrics().preemptions, 1u);
  t.expect_tokens_consistent();
  EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 4);
}

// Ids are the caller's: any non-zero value, refused while in flight; a
// timeout counts from submission, not from the clock's zero.
TEST(SchedulerTrace, CallersIdsAndRelativeTimeouts) {
  Trace t(small_config());
  auto submit = [&](RequestId id, double timeout_ms, uint32_t max_tokens) {
    Request r;
    r.id = id;
    r.prompt = {1, 2};
    r.max_tokens = max_tokens;
    r.timeout_ms = timeout_ms;
    return t.engine().submit(std::move(r));
  };
  auto refused = submit(0, kNoDeadline, 4);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("request id 0"), std::string::npos);
  EXPECT_FALSE(submit(7, -1.0, 4).ok());
  ASSERT_TRUE(submit(0xFFFF'FFFF'0000'0001ull, kNoDeadline, 2).ok());
  ASSERT_TRUE(submit(42, /*timeout_ms=*/100.0, 2).ok());  // at t=0: expires at t=100
  auto dup = submit(42, kNoDeadline, 2);
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("request id 42 is already in flight"), std::string::npos);
  EXPECT_EQ(t.step(), "run 18446744069414584321:-:0+2* 42:-:0+2*");
  EXPECT_EQ(t.step(), "run 18446744069414584321:-:2+1* 42:-:2+1*; done 18446744069414584321:length 42:length");
  for (int i = 0; i < 3; ++i) t.step();  // idle steps: t = 5
  ASSERT_TRUE(submit(43, /*timeout_ms=*/2.5, 200).ok());  // expires at t = 7.5, not 2.5
  EXPECT_EQ(t.step(), "run 43:-:0+2*");    // t=5
  EXPECT_EQ(t.step(), "run 43:-:2+1*");    // t=6
  EXPECT_EQ(t.step(), "run 43:-:3+1*");    // t=7
  EXPECT_EQ(t.step(), "done 43:deadline");  // t=8 >= 7.5
  EXPECT_EQ(t.sink().all.back().reason, FinishReason::kDeadline);
}

TEST(SchedulerTrace, CancellationAndDeadlines) {
  Trace t(small_config());
  const RequestId r1 = t.submit("", 2, 10);
  const RequestId r2 = t.submit("", 2, 10);
  const RequestId r3 = t.submit("", 2, 10, /*timeout_ms=*/2.5);
  EXPECT_EQ(t.step(), "run 1:-:0+2* 2:-:0+2* 3:-:0+2*");
  EXPECT_TRUE(t.engine().cancel(r2));  // running: answered at once
  ASSERT_FALSE(t.sink().all.empty());
  EXPECT_EQ(t.sink().all.back().id, r2);
  EXPECT_EQ(t.sink().all.back().reason, FinishReason::kCancelled);
  EXPECT_FALSE(t.engine().cancel(r2));  // already answered
  EXPECT_EQ(t.step(), "run 1:-:2+1* 3:-:2+1*");
  EXPECT_EQ(t.step(), "run 1:-:3+1* 3:-:3+1*");
  EXPECT_EQ(t.step(), "run 1:-:4+1*; done 3:deadline");  // t=3 >= 2.5
  // A queued request (its adapter still loading) is cancelled too; the
  // adapter then has nothing to do and frees its slot when ready.
  const RequestId r4 = t.submit("a", 2, 1);
  EXPECT_EQ(t.step(), "load a>0; run 1:-:5+1*; wait a:loading(1)");
  EXPECT_TRUE(t.engine().cancel(r4));
  EXPECT_EQ(t.sink().all.back().queue_ms, -1.0);
  EXPECT_EQ(t.step(), "evict a@0; run 1:-:6+1*");
  EXPECT_TRUE(t.engine().cancel(r1));
  EXPECT_EQ(t.step(), "idle");
  for (RequestId id : {r1, r2, r3, r4}) EXPECT_EQ(finals_of(t.sink(), id), 1u) << id;
  EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 64);
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, StopTokenFinishesWithReasonStop) {
  Trace t(small_config());
  const int32_t third = FakeExecutor::token_for(1, 2, "", 1000);
  t.submit("", 2, 10, kNoDeadline, {third});
  EXPECT_EQ(t.step(), "run 1:-:0+2*");
  EXPECT_EQ(t.step(), "run 1:-:2+1*");
  EXPECT_EQ(t.step(), "run 1:-:3+1*; done 1:stop");
  EXPECT_EQ(t.sink().all.back().num_output_tokens, 3u);
}

TEST(SchedulerTrace, FcfsKeepsTheSlotWhileItsAdapterHasWork) {
  SchedulerConfig c = small_config();
  c.policy = SchedulerPolicy::kFcfs;
  c.num_slots = 1;
  c.quantum_ms = 0.0;  // ignored by fcfs
  Trace t(c);
  t.submit("a", 2, 3);
  t.submit("b", 2, 1);
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(1); wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:0+2*; wait b:no_slot(1)");
  t.submit("a", 2, 1);  // newer than b's request, but a holds the slot
  EXPECT_EQ(t.step(), "run 1:a:2+1* 3:a:0+2*; wait b:no_slot(1); done 3:length");
  EXPECT_EQ(t.step(), "run 1:a:3+1*; wait b:no_slot(1); done 1:length");
  EXPECT_EQ(t.step(), "evict a@0; load b>0; wait b:loading(1)");
  EXPECT_EQ(t.step(), "run 2:b:0+2*; done 2:length");
  EXPECT_EQ(t.engine().metrics().swaps, 0u);
}

TEST(SchedulerTrace, OneAtATimeServesOneQueueUntilEmpty) {
  SchedulerConfig c = small_config();
  c.policy = SchedulerPolicy::kOneAtATime;  // 2 slots, but one adapter at a time
  Trace t(c);
  t.submit("a", 2, 2);
  t.submit("b", 2, 1);
  t.submit("", 2, 1);  // the base model is always served
  EXPECT_EQ(t.step(), "load a>0; run 3:-:0+2*; wait a:loading(1); wait b:no_slot(1); done 3:length");
  EXPECT_EQ(t.step(), "run 1:a:0+2*; wait b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:a:2+1*; wait b:no_slot(1); done 1:length");
  EXPECT_EQ(t.step(), "evict a@0; load b>0; wait b:loading(1)");
  EXPECT_EQ(t.step(), "run 2:b:0+2*; done 2:length");
}

TEST(SchedulerTrace, LoadFailureFailsThatAdaptersQueueOnly) {
  Trace t(small_config());
  t.exec().fail_loads_of("c");
  const RequestId rc = t.submit("c", 2, 1);
  const RequestId ra = t.submit("a", 2, 1);
  EXPECT_EQ(t.step(), "load c>0; load a>1; wait c:loading(1); wait a:loading(1); done 1:failed");
  EXPECT_EQ(t.sink().all.back().error.code, ErrorCode::kBadFile);
  EXPECT_NE(t.sink().all.back().error.message.find("adapter t/c@1"), std::string::npos) << t.sink().all.back().error.message;
  EXPECT_EQ(t.step(), "run 2:a:0+2*; done 2:length");
  EXPECT_EQ(finals_of(t.sink(), rc), 1u);
  EXPECT_EQ(finals_of(t.sink(), ra), 1u);
  EXPECT_EQ(t.engine().metrics().load_failures, 1u);
}

TEST(SchedulerTrace, ExecutorFailureFailsThatStepsRequestsAndGoesOn) {
  Trace t(small_config());
  t.submit("", 2, 2);
  t.exec().fail_next_step(make_error(ErrorCode::kInternal, "device lost"));
  EXPECT_EQ(t.step(), "run 1:-:0+2*; done 1:failed");
  EXPECT_EQ(t.sink().all.back().error.message, "device lost");
  t.submit("", 2, 1);
  EXPECT_EQ(t.step(), "run 2:-:0+2*; done 2:length");
  EXPECT_EQ(t.engine().scheduler().num_free_kv_blocks(), 64);
}

TEST(SchedulerTrace, BadRequestsAreRejectedWithErrorsNamingTheProblem) {
  SchedulerConfig c = small_config();
  c.num_kv_blocks = 4;
  Trace t(c);
  EXPECT_EQ(t.submit("nope", 2, 1), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kNotFound);
  EXPECT_NE(t.last_error.message.find("nope"), std::string::npos);
  EXPECT_EQ(t.submit("a@2", 2, 1), 0u);  // only version 1 exists
  EXPECT_EQ(t.last_error.code, ErrorCode::kNotFound);
  EXPECT_EQ(t.submit("a@x", 2, 1), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.submit("", 0, 1), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.submit("", 2, 0), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(t.submit("", 10, 10), 0u);  // 20 positions > 4 blocks of 4
  EXPECT_EQ(t.last_error.code, ErrorCode::kResourceExhausted);
  Request r;
  r.prompt = {1, 5000};
  EXPECT_FALSE(t.engine().submit(r).ok());  // outside the fake's 1000-token vocabulary
  r.prompt = {1, 2};
  r.sampling.top_p = 0.0f;
  EXPECT_FALSE(t.engine().submit(r).ok());
  EXPECT_NE(t.submit("a@1", 2, 1), 0u);  // the current version, pinned
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(1)");
  // "nope", "a@2" and "a@x" never reach the engine (resolved before submit).
  EXPECT_EQ(t.engine().metrics().overall.rejected, 5u);
  EXPECT_EQ(t.engine().metrics().per_adapter.count("nope"), 0u);  // junk names leave no entry
  EXPECT_TRUE(t.sink().all.empty());  // rejected requests get no events
}

TEST(SchedulerTrace, RequestsPinTheVersionCurrentAtAdmission) {
  SchedulerConfig c = small_config();
  Trace t(c);
  t.submit("a", 2, 1);
  t.publish("a", 2, named_weights("a-v2"));  // a new version is published
  t.submit("a", 2, 1);
  // Two versions, two slots; each request runs on the version it pinned.
  EXPECT_EQ(t.step(), "load a>0; load a>1; wait a:loading(1); wait a:loading(1)");
  EXPECT_EQ(t.step(), "run 1:a:0+2* 2:a-v2:0+2*; done 1:length 2:length");
}

TEST(SchedulerTrace, NoSlotsServesTheBaseModelOnly) {
  SchedulerConfig c = small_config();
  c.num_slots = 0;
  Trace t(c);
  EXPECT_EQ(t.submit("a", 2, 1), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kUnsupported);
  t.submit("", 2, 1);  // the trace numbers requests 1, 2, ...: the rejected one was 1
  EXPECT_EQ(t.step(), "run 2:-:0+2*; done 2:length");
}

TEST(SchedulerConfigTest, ValidationNamesTheField) {
  SchedulerConfig c;
  c.max_running_seqs = 1000;
  c.max_tokens_per_step = 10;
  Status s = validate_scheduler_config(c);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("max_running_seqs"), std::string::npos);
  c = SchedulerConfig{};
  c.num_slots = -1;
  EXPECT_FALSE(validate_scheduler_config(c).ok());
  EXPECT_TRUE(parse_scheduler_policy("one-at-a-time").ok());
  EXPECT_FALSE(parse_scheduler_policy("lottery").ok());
}

TEST(SchedulerTrace, AdapterWaitsForItsFetchWhileOthersRun) {
  Trace t(small_config());
  t.source().hold(true);  // the store is slow to answer
  t.submit("a", 2, 2);
  t.submit("", 2, 1);
  EXPECT_EQ(t.source().num_held(), 1u);
  EXPECT_EQ(t.step(), "run 2:-:0+2*; wait a:fetching(1); done 2:length");
  EXPECT_EQ(t.step(), "wait a:fetching(1)");
  t.submit("a", 2, 1);  // the same version: no second fetch
  EXPECT_EQ(t.source().fetches, 1);
  t.source().release();
  EXPECT_EQ(t.step(), "load a>0; wait a:loading(2)");
  EXPECT_EQ(t.step(), "run 1:a:0+2* 3:a:0+2*; done 3:length");
  EXPECT_EQ(t.step(), "run 1:a:2+1*; done 1:length");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, FailedFetchFailsItsRequestsAndIsRetriedLater) {
  Trace t(small_config());
  t.source().hold(true);
  t.publish("gone", 1, named_weights("gone"));
  const RequestId r1 = t.submit("gone", 2, 1);
  const RequestId r2 = t.submit("gone", 3, 1);
  t.source().table.remove(AdapterId{"t", "gone", 1});  // deleted from the store meanwhile
  t.source().release();
  EXPECT_EQ(t.step(), "done 1:failed 2:failed");
  EXPECT_EQ(t.sink().all.back().error.code, ErrorCode::kNotFound);
  EXPECT_NE(t.sink().all.back().error.message.find("fetching adapter t/gone@1"), std::string::npos)
      << t.sink().all.back().error.message;
  EXPECT_EQ(finals_of(t.sink(), r1), 1u);
  EXPECT_EQ(finals_of(t.sink(), r2), 1u);
  EXPECT_EQ(t.engine().scheduler().num_known_adapters(), 0u);  // forgotten: a new request fetches again
  t.source().hold(false);
  t.publish("gone", 1, named_weights("gone"));
  t.submit("gone", 2, 1);
  EXPECT_EQ(t.source().fetches, 2);
  EXPECT_EQ(t.step(), "load gone>0; wait gone:loading(1)");
  EXPECT_EQ(t.step(), "run 3:gone:0+2*; done 3:length");
}

TEST(SchedulerTrace, MixtureLoadsItsAdaptersTogetherAndSharesSlots) {
  SchedulerConfig c = small_config();
  c.num_slots = 3;
  Trace t(c);
  t.submit("a", 2, 3);
  t.submit_mix({"a", "b"}, {0.75f, 0.25f}, 2, 2);
  // The mixture's two adapters load together; it shares a's slot.
  EXPECT_EQ(t.step(), "load a>0; load b>1; wait a:loading(1); wait a+b:loading(1)");
  EXPECT_EQ(t.step(), "run 1:a:0+2* 2:a+b:0+2*");
  const SeqRow& mixed = t.engine().last_schedule().plan.rows[1];
  ASSERT_EQ(mixed.adapters.count, 2);
  EXPECT_EQ(mixed.adapters.refs[0].slot, 0);
  EXPECT_FLOAT_EQ(mixed.adapters.refs[0].weight, 0.75f);
  EXPECT_EQ(mixed.adapters.refs[1].slot, 1);
  EXPECT_FLOAT_EQ(mixed.adapters.refs[1].weight, 0.25f);
  EXPECT_EQ(t.step(), "run 1:a:2+1* 2:a+b:2+1*; done 2:length");
  // a's slot stays while request 1 runs; b's frees once the mixture is done.
  EXPECT_EQ(t.step(), "evict b@1; run 1:a:3+1*; done 1:length");
  EXPECT_EQ(t.step(), "evict a@0");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, MixtureWaitsUntilEnoughSlotsAreFree) {
  Trace t(small_config());  // 2 slots
  t.submit("c", 2, 4);
  t.submit_mix({"a", "b"}, {0.5f, 0.5f}, 2, 1);
  // One slot left: the mixture needs two, so it waits; c, with nothing
  // queued, drains at once (its running request finishes), then both load.
  EXPECT_EQ(t.step(), "load c>0; wait c:loading(1); wait a+b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:c:0+2*; wait a+b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:c:2+1*; wait a+b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:c:3+1*; wait a+b:no_slot(1)");
  EXPECT_EQ(t.step(), "run 1:c:4+1*; wait a+b:no_slot(1); done 1:length");
  EXPECT_EQ(t.step(), "evict c@0; load a>0; load b>1; wait a+b:loading(1)");
  EXPECT_EQ(t.step(), "run 2:a+b:0+2*; done 2:length");
  t.expect_tokens_consistent();
}

TEST(SchedulerTrace, MixtureLargerThanTheSlotsIsRejected) {
  Trace t(small_config());  // 2 slots
  EXPECT_EQ(t.submit_mix({"a", "b", "c"}, {0.3f, 0.3f, 0.4f}, 2, 1), 0u);
  EXPECT_EQ(t.last_error.code, ErrorCode::kInvalidArgument);
  EXPECT_NE(t.last_error.message.find("needs as many slots"), std::string::npos) << t.last_error.message;
  EXPECT_EQ(t.submit_mix({"a", "a"}, {0.5f, 0.5f}, 2, 1), 0u);
  EXPECT_NE(t.last_error.message.find("listed twice"), std::string::npos) << t.last_error.message;
}

}  // namespace
}  // namespace myriad::testing
