#!/usr/bin/env python3
"""Fine-tuning jobs on a cluster (nodes/node/cluster_jobs.h), as a user runs
them: a gateway and two worker processes on 127.0.0.1; a training file
uploaded to the gateway (curl, multipart) and two OpenAI-shaped jobs created
there. The workers train them beside their inference; every version reaches
the gateway's store and answers through the gateway's /v1/completions (from
whichever worker serves it). The worker training the second job is killed
with SIGKILL mid-job: the job goes on on the other worker from its last
version and succeeds. The first job must learn its rule (held-out words
answered right, far above the base's chance). Then the gateway itself is
killed with SIGKILL mid-job and restarted: the job resumes from the
checkpoint it kept and succeeds.

  cluster_jobs_test.py --cli build/nodes/myriad --node build/nodes/myriad-node
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_procs import (get_json, last_letter as answer_of, letter_words as words, letters_right,  # noqa: E402
                           run_tiny_cluster_test)


def log(*a):
    print("[cluster-jobs]", *a, flush=True)


def curl_json(args):
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}"] + args, capture_output=True, text=True, timeout=120)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), (json.loads(body) if body.strip().startswith("{") else body)


def scenario(cl, work, a):
    cl.start_gateway()
    base = f"http://127.0.0.1:{cl.http_port}"
    # A job created before any worker joined waits for one.
    train = work + "/train.jsonl"
    with open(train, "w") as f:
        for w in words(1, 400):
            f.write(json.dumps({"prompt": w, "completion": answer_of(w)}) + "\n")
    code, up = curl_json(["-F", "purpose=fine-tune", "-F", "file=@" + train, base + "/v1/files"])
    assert code == 200, (code, up)
    job_body = lambda suffix, steps: json.dumps({  # noqa: E731
        "model": "tiny", "training_file": up["id"], "suffix": suffix, "seed": 1,
        "hyperparameters": {"steps": steps, "learning_rate": 0.01, "batch_tokens": 256, "rank": 8, "alpha": 16}})
    code, first = curl_json(["-H", "Content-Type: application/json", "-d", job_body("letters", 300),
                             base + "/v1/fine_tuning/jobs"])
    assert code == 200, (code, first)
    log("job", first["id"], "created before any worker joined:", first["status"])
    time.sleep(1.0)
    assert get_json(cl.http_port, "/v1/fine_tuning/jobs/" + first["id"])["myriad"]["step"] == 0
    for wid in ("w1", "w2"):
        cl.start_worker(wid)
    cl.wait_workers_up(2)
    code, second = curl_json(["-H", "Content-Type: application/json", "-d", job_body("moved", 200),
                              base + "/v1/fine_tuning/jobs"])
    assert code == 200, (code, second)

    # The second job's worker is killed once it has a version out.
    def job(j):
        return get_json(cl.http_port, "/v1/fine_tuning/jobs/" + j["id"])
    deadline = time.time() + 300
    while time.time() < deadline and len(job(second)["myriad"]["versions"]) < 1:
        time.sleep(0.2)
    assert job(second)["myriad"]["versions"], cl.log_tails()
    step_before = job(second)["myriad"]["step"]
    victim = None
    for wid in cl.workers:
        with open(f"{work}/{wid}.log") as f:
            if f"training job {second['id']}" in f.read():
                victim = wid
    assert victim, cl.log_tails()
    cl.kill_worker(victim)
    log(f"killed {victim} (SIGKILL) while it trained {second['id']} at step {step_before}")

    for j in (first, second):
        while time.time() < deadline and job(j)["status"] in ("queued", "running"):
            time.sleep(0.5)
    done1, done2 = job(first), job(second)
    log("first:", done1["status"], done1["myriad"]["versions"], "train_loss", done1["myriad"]["train_loss"])
    log("second:", done2["status"], done2["myriad"]["versions"], "train_loss", done2["myriad"]["train_loss"])
    assert done1["status"] == "succeeded", (done1, cl.log_tails())
    assert done2["status"] == "succeeded", (done2, cl.log_tails())
    assert done2["myriad"]["step"] == 200, done2
    survivor = [w for w in cl.workers if w != victim][0]
    with open(f"{work}/{survivor}.log") as f:
        m = re.search(f"training job {second['id']} from step ([0-9]+)", f.read())
    # It went on from its last version (a multiple of --publish-every), not from the start.
    assert m and int(m.group(1)) > 0 and int(m.group(1)) % 20 == 0, cl.log_tails()
    log(f"{survivor} went on with {second['id']} from step {m.group(1)}")
    assert len(done1["myriad"]["versions"]) == 300 // 20, done1

    # The trained adapter answers through the gateway; the base does not know the rule.
    held_out = words(99, 24)

    before, after = letters_right(cl.http_port, "tiny", held_out), letters_right(cl.http_port, done1["fine_tuned_model"], held_out)
    log(f"held-out: base {before}/24, {done1['fine_tuned_model']} {after}/24")
    assert before <= 4, before
    assert after >= 19, after  # 80% of 24
    events = get_json(cl.http_port, "/v1/fine_tuning/jobs/" + second["id"] + "/events?limit=1000")["data"]
    steps = [e["data"]["step"] for e in events if e.get("type") == "metrics"]
    assert max(steps) == 200, steps[:5]

    # The gateway killed with SIGKILL mid-job: the restarted one resumes the
    # job from the checkpoint it kept, on a worker that joins it again
    # (the old gateway's copy stopped when its link went down).
    cl.start_worker("w3")
    cl.wait_workers_up(2)
    base = f"http://127.0.0.1:{cl.http_port}"
    code, third = curl_json(["-H", "Content-Type: application/json", "-d", job_body("kept", 200),
                             base + "/v1/fine_tuning/jobs"])
    assert code == 200, (code, third)
    while time.time() < deadline and len(job(third)["myriad"]["versions"]) < 2:
        time.sleep(0.1)
    at_kill = job(third)["myriad"]["step"]
    cl.restart_gateway()
    log(f"gateway restarted (SIGKILL) while {third['id']} was at step {at_kill}")
    cl.wait_workers_up(2)
    while time.time() < deadline and job(third)["status"] in ("queued", "running"):
        time.sleep(0.5)
    done3 = job(third)
    log("third:", done3["status"], "versions", len(done3["myriad"]["versions"]))
    assert done3["status"] == "succeeded", (done3, cl.log_tails())
    assert done3["myriad"]["step"] == 200, done3
    log("passed")


if __name__ == "__main__":
    sys.exit(run_tiny_cluster_test("jobs", scenario, gateway_args=["--publish-every", "20"]))
