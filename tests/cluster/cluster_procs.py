"""Processes and HTTP calls of a Myriad cluster on this machine, for
tests/cluster/cluster_test.py and bench/cluster.py: a gateway, worker
processes (optionally in their own network namespace over a veth pair), and
the OpenAI-compatible calls the clients make."""
import argparse
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time


class Cluster:
    """A gateway and its workers (myriad-node processes) over the model folder `model`."""

    def __init__(self, node, work, model, slots=4, gateway_args=()):
        self.node, self.work, self.model, self.slots = node, work, model, slots
        self.gateway_args = list(gateway_args)
        self.workers = {}  # id -> Popen
        self.netns = None  # setup_netns()'s namespace, where the workers run
        self.secret = None  # a cluster secret file (needed with netns: the gateway listens off loopback)
        self.tls_args = []  # --cluster-tls-* flags (make_tls_files), for the gateway and every worker
        self.join_host = "127.0.0.1"

    def start_gateway(self, cluster_port=0):
        cmd = [self.node, "--role", "gateway", "--model", self.model, "--data", self.work + "/data",
               "--http", "127.0.0.1:0", "--rpc", "127.0.0.1:0", "--log-level", "info"] + self.gateway_args
        if self.netns:
            cmd += ["--cluster", f"{self.netns['gateway_ip']}:{cluster_port}", "--cluster-secret", self.secret]
        else:
            cmd += ["--cluster", f"127.0.0.1:{cluster_port}"]
        cmd += self.tls_args
        self.gateway_out = open(self.work + "/gateway.out", "w+")
        self.gateway = subprocess.Popen(cmd, stdout=self.gateway_out, stderr=open(self.work + "/gateway.log", "w"))
        deadline = time.time() + 30
        while time.time() < deadline:
            self.gateway_out.seek(0)
            text = self.gateway_out.read()
            if "workers join on" in text:
                self.http_port = int(text.split("http://")[1].split(":")[1].split()[0])
                self.rpc_port = int(text.split("rpc://")[1].split(":")[1].split()[0]) if "rpc://" in text else None
                host_port = text.split("workers join on ")[1].split()[0]
                self.join_host, self.cluster_port = host_port.rsplit(":", 1)
                return
            if self.gateway.poll() is not None:
                break
            time.sleep(0.05)
        sys.exit("the gateway did not start:\n" + open(self.work + "/gateway.log").read())

    def start_worker(self, wid):
        cmd = [self.node, "--role", "worker", "--join", f"{self.join_host}:{self.cluster_port}", "--model",
               self.model, "--threads", "1", "--slots", str(self.slots), "--worker-id", wid, "--log-level", "info"]
        cmd += self.tls_args
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns["name"]] + cmd + ["--cluster-secret", self.secret]
        self.workers[wid] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                             stderr=open(f"{self.work}/{wid}.log", "a"))

    def restart_gateway(self):
        """SIGKILL to the gateway, then a new one on the same data and cluster port (the workers join it again)."""
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait()
        self.start_gateway(int(self.cluster_port))

    def kill_worker(self, wid):
        p = self.workers[wid]
        p.send_signal(signal.SIGKILL)  # `ip netns exec` execs the node: the same pid
        p.wait()

    def cluster_view(self):
        return get_json(self.http_port, "/admin/cluster")

    def wait_workers_up(self, n, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            up = [w for w in self.cluster_view()["workers"] if w["up"]]
            if len(up) >= n:
                return
            time.sleep(0.1)
        sys.exit(f"fewer than {n} workers joined: {self.cluster_view()}\n{self.log_tails()}")

    def log_tails(self, lines=15):
        """The last lines of every process's log: why a worker did not join is in its own."""
        out = []
        for name in ["gateway"] + sorted(self.workers):
            try:
                with open(f"{self.work}/{name}.log") as f:
                    tail = f.read().splitlines()[-lines:]
            except OSError as e:
                tail = [f"(no log: {e})"]
            state = "" if name == "gateway" else f" (exit code {self.workers[name].poll()})"
            out.append(f"--- {name}.log{state}, last {len(tail)} lines:\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self):
        for p in self.workers.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        if getattr(self, "gateway", None) and self.gateway.poll() is None:
            self.gateway.send_signal(signal.SIGTERM)
            try:
                self.gateway.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
        if self.netns:
            teardown_netns(self.netns)


def setup_netns(tag):
    """A namespace for the workers and a veth pair to it; None and the reason where impossible."""
    if os.geteuid() != 0:
        return None, "not root"
    if not shutil.which("ip"):
        return None, "no `ip` command (iproute2)"
    ns = {"name": f"myriad-{tag}", "host_if": f"myr{tag}a", "ns_if": f"myr{tag}b",
          "gateway_ip": "10.231.0.1", "worker_ip": "10.231.0.2"}
    steps = [["ip", "netns", "add", ns["name"]],
             ["ip", "link", "add", ns["host_if"], "type", "veth", "peer", "name", ns["ns_if"]],
             ["ip", "link", "set", ns["ns_if"], "netns", ns["name"]],
             ["ip", "addr", "add", ns["gateway_ip"] + "/24", "dev", ns["host_if"]],
             ["ip", "link", "set", ns["host_if"], "up"],
             ["ip", "netns", "exec", ns["name"], "ip", "addr", "add", ns["worker_ip"] + "/24", "dev", ns["ns_if"]],
             ["ip", "netns", "exec", ns["name"], "ip", "link", "set", ns["ns_if"], "up"],
             ["ip", "netns", "exec", ns["name"], "ip", "link", "set", "lo", "up"]]
    for s in steps:
        r = subprocess.run(s, capture_output=True, text=True)
        if r.returncode != 0:
            teardown_netns(ns)
            return None, f"`{' '.join(s)}` failed: {r.stderr.strip()}"
    return ns, ""


def teardown_netns(ns):
    subprocess.run(["ip", "link", "del", ns["host_if"]], capture_output=True)
    subprocess.run(["ip", "netns", "del", ns["name"]], capture_output=True)


def get_json(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return json.loads(body)


def call_json(port, method, path, body=None, timeout=120):
    """Any JSON call: (HTTP status, the JSON answer)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request(method, path, None if body is None else json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    payload = json.loads(r.read() or b"null")
    c.close()
    return r.status, payload


# The rule-based task the fine-tuning tests teach (the base cannot do it):
# a random lower-case word -> its last letter, upper-cased.
def letter_words(seed, n):
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6))) for _ in range(n)]


def last_letter(w):
    return w[-1].upper()


def letters_right(port, model, words):
    """How many of `words` `model` answers with their last letter (one greedy token each)."""
    n = 0
    for w in words:
        out = post_json(port, "/v1/completions", {"model": model, "prompt": w, "max_tokens": 1, "temperature": 0})
        assert out["error"] is None, out
        n += out["text"] == last_letter(w)
    return n


def post_json(port, path, body, timeout=180):
    """One completion; a dict: status, text (None on error), error, finals ([DONE] lines when streamed),
    ttft_s (seconds to the first streamed token), elapsed_s."""
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    out = {"status": r.status, "text": None, "error": None, "finals": 1, "ttft_s": None}
    if body.get("stream") and r.status == 200:
        text, finals = "", 0
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                finals += 1
                continue
            ev = json.loads(data)
            if "error" in ev:
                out["error"] = ev["error"].get("message", "") or "an error without a message"
                continue
            for ch in ev.get("choices", []):
                if ch.get("text") and out["ttft_s"] is None:
                    out["ttft_s"] = time.time() - t0
                text += ch.get("text", "")
        out["finals"] = finals
        if out["error"] is None:
            out["text"] = text
    else:
        payload = json.loads(r.read())
        if r.status == 200:
            out["text"] = payload["choices"][0]["text"]
        else:
            out["error"] = payload.get("error", {}).get("message", "") or f"HTTP {r.status} without a message"
    c.close()
    out["elapsed_s"] = time.time() - t0
    return out


def publish(port, name, folder):
    """Publishes a PEFT folder on the gateway's host as `name`; exits naming the error otherwise."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("POST", "/v1/adapters", json.dumps({"name": name, "path": folder}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    payload = r.read().decode()
    c.close()
    if r.status != 200:
        sys.exit(f"publishing {name} failed: {payload}")


def replacement_counts(cl):
    """The gateway's counters of requests placed again: all of them, those resumed after
    tokens their client had, and those tokens."""
    view = cl.cluster_view()
    return {k: int(view.get(k, 0)) for k in ("placed_again", "resumed", "resumed_tokens")}




def live_snapshot(port):
    """The first snapshot of the web console's stream (GET /v1/console/live)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", "/v1/console/live")
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"/v1/console/live: HTTP {r.status} {r.read()[:300]!r}")
    line = b""
    while not line.startswith(b"data: "):
        line = r.fp.readline()
        if not line:
            raise RuntimeError("/v1/console/live ended before a snapshot")
    c.close()
    return json.loads(line[6:])


def make_model_and_adapters(cli, work, n_adapters):
    """A tiny random model and n random rank-4 adapters (PEFT folders); the model folder and the folders."""
    model = work + "/tiny"
    subprocess.run([cli, "make-model", "--shape", "tiny", "--seed", "1", "--dtype", "f32", "--out", model],
                   check=True, stdout=subprocess.DEVNULL)
    folders = []
    for i in range(n_adapters):
        folder = f"{work}/adapter-{i}"
        subprocess.run([cli, "make-adapter", "--model", model, "--rank", "4", "--seed", str(i + 1), "--out", folder],
                       check=True, stdout=subprocess.DEVNULL)
        folders.append(folder)
    return model, folders


def run_clients(port, bodies, clients):
    """Posts every body to /v1/completions from `clients` threads; the threads (started) and the results list,
    filled in as requests end (a dropped connection: status 0 and the exception)."""
    results = [None] * len(bodies)
    next_i = [0]
    lock = threading.Lock()

    def client():
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= len(bodies):
                return
            try:
                results[i] = post_json(port, "/v1/completions", bodies[i])
            except Exception as e:  # no clean end
                results[i] = {"status": 0, "text": None, "error": None, "finals": 0, "ttft_s": None,
                              "exception": repr(e)}

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    return threads, results


def make_tls_files(work):
    """A throwaway CA and one member certificate signed by it (the openssl command); the --cluster-tls-* flags,
    or None and the reason where openssl is missing."""
    if not shutil.which("openssl"):
        return None, "no `openssl` command"
    d = work + "/tls"
    os.makedirs(d, exist_ok=True)
    steps = [["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/ca.key", "-out",
              d + "/ca.pem", "-days", "2", "-subj", "/CN=myriad-test-ca"],
             ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", d + "/member.key", "-out",
              d + "/member.csr", "-subj", "/CN=myriad-member"],
             ["openssl", "x509", "-req", "-in", d + "/member.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
              "-CAcreateserial", "-out", d + "/member.pem", "-days", "2"]]
    for step in steps:
        r = subprocess.run(step, capture_output=True, text=True)
        if r.returncode != 0:
            return None, f"`{' '.join(step)}` failed: {r.stderr.strip()}"
    return ["--cluster-tls-cert", d + "/member.pem", "--cluster-tls-key", d + "/member.key",
            "--cluster-tls-ca", d + "/ca.pem"], ""


def run_tiny_cluster_test(tag, body, slots=2, gateway_args=(), options=()):
    """The frame of the fine-tuning cluster tests: flags --cli and --node (and `options`, (flag, help) pairs),
    a random tiny model (seed 11, f32, init std 0.08: one the letter task can teach) in a fresh folder, and a
    Cluster over it (not started) for body(cl, work, args). The folder goes when body returns; when it
    raises, the folder stays and the processes' log tails are printed. Every process is stopped either way.
    Returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--node", required=True)
    for flag, help_text in options:
        ap.add_argument(flag, help=help_text)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix=f"myriad-cluster-{tag}-")
    r = subprocess.run([args.cli, "make-model", "--shape", "tiny", "--seed", "11", "--dtype", "f32", "--init-std",
                        "0.08", "--out", work + "/tiny"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("make-model failed: " + r.stderr)
    cl = Cluster(args.node, work, work + "/tiny", slots=slots, gateway_args=gateway_args)
    ok = False
    try:
        body(cl, work, args)
        ok = True
    finally:
        cl.stop()
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"[cluster-{tag}] left", work, flush=True)
            print(cl.log_tails(), flush=True)
    return 0 if ok else 1
