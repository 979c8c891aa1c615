#!/usr/bin/env python3
"""A mixture of expert adapters built on a cluster (POST /v1/mixtures with a
training_file, docs/moe.md): a gateway and two worker processes on 127.0.0.1.
The gateway clusters an uploaded four-domain corpus (its hidden domains
recovered, adjusted Rand index >= 0.9), trains one expert per cluster as a
fine-tuning job on its workers (both workers get some), stores the mixture,
and routes each domain's prompt to one expert whose answer is that expert
adapter's own when named directly.

  cluster_mixture_test.py --cli build/nodes/myriad --node build/nodes/myriad-node
"""
import json
import os
import subprocess
import sys
import time
from collections import Counter
from math import comb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_procs import call_json, run_tiny_cluster_test  # noqa: E402


def log(*a):
    print("[cluster-mixture]", *a, flush=True)


def adjusted_rand_index(a, b):
    pairs = Counter(zip(a, b))
    sum_ij = sum(comb(n, 2) for n in pairs.values())
    sum_a = sum(comb(n, 2) for n in Counter(a).values())
    sum_b = sum(comb(n, 2) for n in Counter(b).values())
    expected = sum_a * sum_b / comb(len(a), 2)
    return (sum_ij - expected) / ((sum_a + sum_b) / 2 - expected)


def scenario(cl, work, a):
    r = subprocess.run([a.cli, "moe", "corpus", "--per-domain", "20", "--seed", "5", "--out", work + "/corpus.jsonl",
                        "--labels", work + "/labels.json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cl.start_gateway()
    for wid in ("w1", "w2"):
        cl.start_worker(wid)
    cl.wait_workers_up(2)
    port = cl.http_port
    r = subprocess.run(["curl", "-s", "-F", "purpose=fine-tune", "-F", "file=@" + work + "/corpus.jsonl",
                        f"http://127.0.0.1:{port}/v1/files"], capture_output=True, text=True, timeout=60)
    file_id = json.loads(r.stdout)["id"]
    code, build = call_json(port, "POST", "/v1/mixtures", {
        "name": "desk", "training_file": file_id, "k": 4, "seed": 1,
        "hyperparameters": {"steps": 10, "learning_rate": 1e-2, "batch_tokens": 256, "rank": 8}})
    assert code == 200 and build["status"] == "training", (code, build)
    code, assignments = call_json(port, "GET", f"/v1/mixture_builds/{build['id']}/assignments")
    with open(work + "/labels.json") as f:
        labels = json.load(f)
    ari = adjusted_rand_index(labels, assignments)
    log(f"build {build['id']}: {build['lines']} lines in {len(build['clusters'])} clusters, ARI {ari:.3f}")
    assert ari >= 0.9, ari

    deadline = time.time() + 120
    while time.time() < deadline:
        code, done = call_json(port, "GET", "/v1/mixture_builds/" + build["id"])
        if done["status"] != "training":
            break
        time.sleep(0.2)
    log("build:", done["status"], done["experts"], done["progress"])
    assert done["status"] == "succeeded", (done, cl.log_tails())
    assert done["progress"]["step"] == 40 and len(done["experts"]) == 4, done
    # Its four jobs trained on both workers.
    trained_on = set()
    for wid in cl.workers:
        with open(f"{work}/{wid}.log") as f:
            if "worker: training job" in f.read():
                trained_on.add(wid)
    assert trained_on == {"w1", "w2"}, trained_on

    chosen = set()
    for prompt in ("KYC CHECK | client_id=482913 | document=passport | sanctions_screen=",
                   "Section 12.3 Policy summary: the Licensee shall indemnify and hold harmless any"):
        body = {"model": "desk", "prompt": prompt, "max_tokens": 6, "temperature": 0}
        code, got = call_json(port, "POST", "/v1/completions", body)
        assert code == 200 and len(got["experts"]) == 1, (code, got)
        expert = got["experts"][0]["name"]
        chosen.add(expert)
        code, direct = call_json(port, "POST", "/v1/completions", dict(body, model="desk." + expert))
        assert code == 200, (code, direct)
        log(f"{prompt[:24]!r} -> {expert}: {got['choices'][0]['text']!r}, named directly "
            f"{direct['choices'][0]['text']!r}")
        assert got["choices"][0]["text"] == direct["choices"][0]["text"], (got, direct)
    assert len(chosen) == 2, chosen
    log("passed")


if __name__ == "__main__":
    sys.exit(run_tiny_cluster_test("mixture", scenario, slots=4))
