#!/usr/bin/env python3
"""A worker whose host hangs (SIGSTOP: its process and link stay up, its
heartbeats stop) while it trains a fine-tuning job and holds a training run,
on a cluster of a gateway and two worker processes on 127.0.0.1. Once the
gateway's heartbeat timeout passes, the job goes on on the other worker from
its last version and the run's waiting call answers 503 naming the hung
worker. When the hung worker wakes (SIGCONT) it stops the job it had (the
gateway's cancel waited for it) and closes the run it held, nothing it
reports late counts, and the job ends with exactly its steps and versions.

  cluster_hung_test.py --cli build/nodes/myriad --node build/nodes/myriad-node
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_procs import call_json, get_json, last_letter, letter_words, run_tiny_cluster_test  # noqa: E402


def log(*a):
    print("[cluster-hung]", *a, flush=True)


def scenario(cl, work, a):
    cl.start_gateway()
    port = cl.http_port
    for wid in ("w1", "w2"):
        cl.start_worker(wid)
    cl.wait_workers_up(2)
    # One run on each worker (a run opens where the fewest are).
    runs = []
    for _ in range(2):
        code, run = call_json(port, "POST", "/v1/training_runs", {"name": "probe", "rank": 4, "seed": 1})
        assert code == 200, (code, run)
        runs.append(run)
    assert {r["worker"] for r in runs} == {"w1", "w2"}, runs
    batch = {"examples": [{"prompt": w, "completion": last_letter(w)} for w in letter_words(3, 8)]}

    train = work + "/train.jsonl"
    with open(train, "w") as f:
        for w in letter_words(1, 400):
            f.write(json.dumps({"prompt": w, "completion": last_letter(w)}) + "\n")
    r = subprocess.run(["curl", "-s", "-F", "purpose=fine-tune", "-F", "file=@" + train,
                        f"http://127.0.0.1:{port}/v1/files"], capture_output=True, text=True, timeout=60)
    file_id = json.loads(r.stdout)["id"]
    code, job = call_json(port, "POST", "/v1/fine_tuning/jobs", {
        "model": "tiny", "training_file": file_id, "suffix": "hung", "seed": 1,
        "hyperparameters": {"steps": 400, "learning_rate": 0.01, "batch_tokens": 256, "rank": 8, "alpha": 16}})
    assert code == 200, (code, job)

    def state():
        return get_json(port, "/v1/fine_tuning/jobs/" + job["id"])
    deadline = time.time() + 120
    while time.time() < deadline and len(state()["myriad"]["versions"]) < 1:
        time.sleep(0.05)
    for wid in cl.workers:
        with open(f"{work}/{wid}.log") as f:
            if f"training job {job['id']} from step 0" in f.read():
                victim = wid
    assert victim, cl.log_tails()
    hung_run = [r for r in runs if r["worker"] == victim][0]
    other_run = [r for r in runs if r["worker"] != victim][0]
    cl.workers[victim].send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    log(f"SIGSTOP {victim} while it trained {job['id']} at step {state()['myriad']['step']}")

    # A call to the hung worker's run waits, then fails once the gateway gives up on it.
    answer = {}

    def call_hung():
        answer["r"] = call_json(port, "POST", f"/v1/training_runs/{hung_run['id']}/forward_backward", batch)
    t = threading.Thread(target=call_hung)
    t.start()
    code, fb = call_json(port, "POST", f"/v1/training_runs/{other_run['id']}/forward_backward", batch)
    assert code == 200, (code, fb)
    t.join(30)
    code, err = answer["r"]
    log(f"the hung run's call after {time.time() - stopped_at:.1f} s: {code} {err['error']['message']}")
    assert code == 503 and victim in err["error"]["message"], (code, err)

    while time.time() < deadline:
        with open(work + "/gateway.log") as f:
            m = re.search(f"job {job['id']} lost its worker '{victim}' \\(its heartbeats stopped\\); it goes on "
                          "elsewhere from step ([0-9]+)", f.read())
        if m:
            break
        time.sleep(0.1)
    assert m, cl.log_tails()
    moved_from = int(m.group(1))
    log(f"the job moved from step {moved_from}")
    # Let the other worker train on, then wake the hung one.
    while time.time() < deadline and state()["myriad"]["step"] < moved_from + 20:
        time.sleep(0.05)
    cl.workers[victim].send_signal(signal.SIGCONT)
    log(f"SIGCONT {victim} at step {state()['myriad']['step']}")
    while time.time() < deadline and state()["status"] in ("queued", "running"):
        time.sleep(0.2)
    done = state()
    log("job:", done["status"], "step", done["myriad"]["step"], "versions", len(done["myriad"]["versions"]))
    assert done["status"] == "succeeded", (done, cl.log_tails())
    assert done["myriad"]["step"] == 400, done
    assert len(done["myriad"]["versions"]) == 40, done["myriad"]["versions"]
    time.sleep(0.5)
    with open(f"{work}/{victim}.log") as f:
        text = f.read()
    assert f"worker: job {job['id']} stopped here" in text, cl.log_tails()
    # It let go of the run it held too (a close waited for it).
    assert re.search("worker: training run wrun-[0-9a-f]+ of default/probe closed", text), cl.log_tails()
    events = get_json(port, "/v1/fine_tuning/jobs/" + job["id"] + "/events?limit=10000")["data"]
    steps = sorted(e["data"]["step"] for e in events if e.get("type") == "metrics")
    assert steps[-1] == 400, steps[-5:]
    log("passed")


if __name__ == "__main__":
    sys.exit(run_tiny_cluster_test("hung", scenario, gateway_args=["--publish-every", "10", "--heartbeat-timeout-ms", "1500"]))
