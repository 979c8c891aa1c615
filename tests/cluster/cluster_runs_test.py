#!/usr/bin/env python3
"""Training runs on a cluster (nodes/node/cluster_training_runs.h), as a
researcher drives one: a gateway and two worker processes on 127.0.0.1. A run
opened on the gateway (POST /v1/training_runs) lives on a worker; the client's
forward_backward / optim_step calls train it there until it learns a rule the
base cannot do, publish makes a version the gateway's /v1/completions serves,
and save_state keeps its state on the gateway. The run's worker is then killed
with SIGKILL: the run's next call answers 503 naming the lost worker, and a run
opened from the saved state on the other worker goes on exactly (the same loss
on the same batch, bit for bit, and the next step number). With
--training-loop, the RPC API's example client trains its own run through the
gateway too.

  cluster_runs_test.py --cli build/nodes/myriad --node build/nodes/myriad-node \
      [--training-loop build/nodes/myriad-training-loop]
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_procs import call_json, last_letter, letter_words, letters_right, run_tiny_cluster_test  # noqa: E402


def log(*a):
    print("[cluster-runs]", *a, flush=True)


def scenario(cl, work, a):
    cl.start_gateway()
    port = cl.http_port
    # No worker yet: nowhere to hold a run.
    code, err = call_json(port, "POST", "/v1/training_runs", {"name": "letters"})
    assert code == 503 and "no worker" in err["error"]["message"], (code, err)
    for wid in ("w1", "w2"):
        cl.start_worker(wid)
    cl.wait_workers_up(2)

    code, run = call_json(port, "POST", "/v1/training_runs",
                          {"name": "letters", "rank": 8, "alpha": 16, "seed": 1})
    assert code == 200, (code, run)
    assert run["worker"] in ("w1", "w2"), run
    rid = run["id"]
    log("run", rid, "opened on worker", run["worker"])

    def call(what, body=None):
        return call_json(port, "POST", f"/v1/training_runs/{rid}/{what}", body or {})

    # Bad input is refused and changes nothing.
    code, err = call("forward_backward", {"examples": []})
    assert code == 400, (code, err)
    code, err = call("optim_step", {"learning_rate": 0.01})
    assert code == 400 and "no forward_backward" in err["error"]["message"], (code, err)

    train = letter_words(1, 400)
    losses = []
    steps = 300
    t0 = time.time()
    for step in range(steps):
        batch = [{"prompt": w, "completion": last_letter(w)} for w in train[(step * 16) % 384:(step * 16) % 384 + 16]]
        code, fb = call("forward_backward", {"examples": batch})
        assert code == 200, (code, fb, cl.log_tails())
        losses.append(fb["loss"])
        code, st = call("optim_step", {"learning_rate": 0.01, "max_grad_norm": 1.0})
        assert code == 200 and st["step"] == step + 1, (code, st)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    log(f"{steps} steps in {time.time() - t0:.1f} s through the gateway: loss {first:.3f} -> {last:.3f}")
    assert last < first / 2, (first, last)

    code, pub = call("publish")
    assert code == 200, (code, pub)
    held_out = letter_words(99, 24)

    before, after = letters_right(port, "tiny", held_out), letters_right(port, pub["model"], held_out)
    log(f"held-out: base {before}/24, {pub['model']} (step {pub['step']}) {after}/24")
    assert before <= 4, before
    assert after >= 19, after  # 80% of 24

    # Its state kept on the gateway; the loss of one batch from there.
    code, ckpt = call("save_state")
    assert code == 200 and ckpt["step"] == steps, (code, ckpt)
    probe = [{"prompt": w, "completion": last_letter(w)} for w in letter_words(7, 16)]
    code, fb = call("forward_backward", {"examples": probe})
    assert code == 200, (code, fb)
    probe_loss = fb["loss"]

    victim = run["worker"]
    cl.kill_worker(victim)
    log(f"killed {victim} (SIGKILL), which held the run")
    deadline = time.time() + 30
    while True:  # until the gateway sees the link down
        code, err = call("forward_backward", {"examples": probe})
        if code != 200 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert code == 503 and victim in err["error"]["message"], (code, err)
    log("its next call:", code, err["error"]["message"])

    code, again = call_json(port, "POST", "/v1/training_runs", {"name": "letters", "from_checkpoint": ckpt["id"]})
    assert code == 200, (code, again)
    assert again["worker"] != victim, again
    rid = again["id"]
    code, fb = call("forward_backward", {"examples": probe})
    assert code == 200, (code, fb)
    log(f"from {ckpt['id']} on {again['worker']}: probe loss {fb['loss']!r} (before the kill {probe_loss!r})")
    assert fb["loss"] == probe_loss, (fb["loss"], probe_loss)
    code, st = call("optim_step", {"learning_rate": 0.01})
    assert code == 200 and st["step"] == steps + 1, (code, st)

    # The RPC API's TrainingRun through the gateway: the example client's loop.
    if a.training_loop:
        r = subprocess.run([a.training_loop, "--server", f"127.0.0.1:{cl.rpc_port}", "--name", "letters-rpc"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (r.stdout, r.stderr, cl.log_tails())
        summary = json.loads(r.stdout[r.stdout.rfind("{"):])
        log("RPC loop through the gateway:", json.dumps(summary))
        assert summary["adapter"] == "default/letters-rpc@2", summary
        assert summary["held_out_correct"] >= 13 and summary["held_out_correct_before"] <= 3, summary

    code, listed = call_json(port, "GET", "/v1/training_runs")
    assert code == 200 and len(listed["data"]) == 2, listed
    code, gone = call_json(port, "DELETE", f"/v1/training_runs/{rid}")
    assert code == 200 and gone["deleted"], gone
    log("passed")


if __name__ == "__main__":
    sys.exit(run_tiny_cluster_test("runs", scenario,
                                  options=[("--training-loop", "nodes/examples' RPC client, run through the gateway too")]))
