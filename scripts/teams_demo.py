#!/usr/bin/env python3
"""The main job's fine-tuning story, through a running myriad-node's OpenAI API.

Four teams (customer-success chat, legal policy summaries, finance KYC
checks, operations project updates), each a tenant with its own key, upload
a small dataset (their domain's lines of `myriad moe corpus`, as prompt = the
first words, completion = the rest) and fine-tune an adapter at the same
time on the node's one base. While the jobs train, each team's adapter
answers as soon as its first version is out; at the end every team's loss
curve end points, answers before / during / after, and the training
throughput are printed.

usage: teams_demo.py --url http://HOST:PORT --corpus C.jsonl --labels L.json --domains D.json
                     --keys K.json [--steps N] [--work DIR]
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

TEAMS = [  # (tenant, the corpus domain it trains on)
    ("support", "support-chat"),
    ("legal", "legal-clauses"),
    ("finance", "kyc-checks"),
    ("ops", "project-updates"),
]
PROMPT_WORDS = 5


def call(url, key, method="GET", body=None, content_type="application/json"):
    req = urllib.request.Request(url, method=method, data=body)
    req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read().decode()
    except urllib.error.HTTPError as e:
        sys.exit(f"teams_demo: {method} {url}: HTTP {e.code}: {e.read().decode()}")
    return json.loads(text) if text.startswith("{") else text


def upload(base, key, name, text):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/jsonl\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    return call(f"{base}/v1/files", key, "POST", body, f"multipart/form-data; boundary={boundary}")


def complete(base, key, model, prompt):
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": 14, "temperature": 0}).encode()
    return call(f"{base}/v1/completions", key, "POST", body)["choices"][0]["text"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--domains", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--base", required=True, help="the node's base model name")
    ap.add_argument("--steps", type=int, default=120)
    a = ap.parse_args()

    texts = [json.loads(line)["text"] for line in open(a.corpus)]
    labels = json.load(open(a.labels))
    domains = json.load(open(a.domains))["domains"]
    key_of = {tenant: key for key, tenant in json.load(open(a.keys)).items()}

    jobs = {}
    asked = {}
    for tenant, domain in TEAMS:
        lines = [t for t, l in zip(texts, labels) if domains[l] == domain]
        held_out, train = lines[0], lines[1:]
        rows = []
        for t in train:
            words = t.split(" ")
            rows.append(json.dumps({"prompt": " ".join(words[:PROMPT_WORDS]),
                                    "completion": " " + " ".join(words[PROMPT_WORDS:])}))
        f = upload(a.url, key_of[tenant], f"{tenant}.jsonl", "\n".join(rows) + "\n")
        asked[tenant] = " ".join(held_out.split(" ")[:PROMPT_WORDS])
        before = complete(a.url, key_of[tenant], a.base, asked[tenant])
        body = {"model": a.base, "training_file": f["id"], "suffix": "assistant", "seed": 1,
                "hyperparameters": {"steps": a.steps, "learning_rate": 5e-3, "batch_tokens": 512, "rank": 8}}
        job = call(f"{a.url}/v1/fine_tuning/jobs", key_of[tenant], "POST", json.dumps(body).encode())
        jobs[tenant] = job["id"]
        print(f"  {tenant:8} uploaded {f['myriad']['examples']} examples ({f['id']}), started {job['id']}")
        print(f"  {tenant:8} base model  : {asked[tenant]!r} -> {before!r}")

    t0 = time.time()
    answered_during = set()
    done = {}
    while len(done) < len(jobs):
        for tenant, jid in jobs.items():
            if tenant in done:
                continue
            j = call(f"{a.url}/v1/fine_tuning/jobs/{jid}", key_of[tenant])
            if j["status"] not in ("queued", "running"):
                done[tenant] = j
                continue
            if j["myriad"]["versions"] and tenant not in answered_during:
                answered_during.add(tenant)
                version = j["myriad"]["versions"][-1]
                text = complete(a.url, key_of[tenant], j["fine_tuned_model"], asked[tenant])
                print(f"  {tenant:8} while training, step {j['myriad']['step']:3}/{j['myriad']['total_steps']}, "
                      f"{version}: {text!r}")
        time.sleep(0.5)
    wall = time.time() - t0

    tokens = 0
    for tenant, _ in TEAMS:
        j = done[tenant]
        if j["status"] != "succeeded":
            sys.exit(f"teams_demo: {tenant}'s job ended {j['status']}: {j.get('error')}")
        tokens += j["trained_tokens"]
        curve = call(f"{a.url}/v1/fine_tuning/jobs/{j['id']}/loss.csv", key_of[tenant]).strip().splitlines()[1:]
        first, last = float(curve[0].split(",")[1]), float(curve[-1].split(",")[1])
        after = complete(a.url, key_of[tenant], j["fine_tuned_model"], asked[tenant])
        print(f"  {tenant:8} loss {first:.3f} -> {last:.3f} over {len(curve)} steps, "
              f"{len(j['myriad']['versions'])} versions; {j['fine_tuned_model']}: {asked[tenant]!r} -> {after!r}")
    print(f"  four jobs together: {tokens} training tokens in {wall:.0f} s, {tokens / wall:.0f} tokens/s")


if __name__ == "__main__":
    main()
