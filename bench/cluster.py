#!/usr/bin/env python3
"""bench/cluster: a gateway and 1, 2, 3 worker processes on this machine under one load.

For each worker count and each placement (affinity: a worker holding the
adapter first, else the least loaded; random: the baseline) it starts a fresh
gateway (myriad-node --role gateway --placement P) and the workers
(--role worker --threads 1), publishes the adapters, and runs the same
requests: streamed completions from --clients concurrent clients, adapters
drawn by a Zipf law (a few hot, many cold), greedy, --max-tokens each. It
prints, per run, the throughput (output tokens/s and requests/s), TTFT p50 and
p99 as the clients measured them, and the affinity hit rate: the share of
adapter requests the gateway placed on a worker whose slots already held the
adapter (by its latest report), and the warm hit rate (in a slot or in the
worker's host memory: no fetch from the gateway). The runs alternate affinity and random at
each worker count, so each pair's ratio comes from back-to-back runs.
`--json` prints the rows as JSON.

    python3 bench/cluster.py [--workers 1,2,3] [--adapters 40] [--slots 4] [--requests 600]
                             [--clients 32] [--max-tokens 128] [--zipf 1.0] [--seed 1] [--json]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "cluster"))
from cluster_procs import Cluster, make_model_and_adapters, publish, run_clients  # noqa: E402


def percentile(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def one_run(args, work, model, folders, n_workers, placement, bodies):
    run_dir = tempfile.mkdtemp(dir=work, prefix=f"{n_workers}w-{placement}-")
    cl = Cluster(args.node, run_dir, model, slots=args.slots, gateway_args=["--placement", placement])
    try:
        cl.start_gateway()
        for i in range(n_workers):
            cl.start_worker(f"w{i}")
        cl.wait_workers_up(n_workers)
        for i, folder in enumerate(folders):
            publish(cl.http_port, f"a{i}", folder)
        before = cl.cluster_view()
        t0 = time.time()
        threads, results = run_clients(cl.http_port, bodies, args.clients)
        for t in threads:
            t.join()
        elapsed = time.time() - t0
        after = cl.cluster_view()
    finally:
        cl.stop()
    failed = [r for r in results if r["text"] is None]
    if failed:
        sys.exit(f"{len(failed)} requests failed, e.g. {failed[0]}")
    ttft = [r["ttft_s"] * 1000 for r in results if r["ttft_s"] is not None]
    placed = after["placed_adapter"] - before["placed_adapter"]
    resident = after["placed_resident"] - before["placed_resident"]
    host = after["placed_host_cached"] - before["placed_host_cached"]
    return {
        "workers": n_workers,
        "placement": placement,
        "requests": len(bodies),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(bodies) / elapsed, 2),
        "output_tokens_per_s": round(len(bodies) * args.max_tokens / elapsed, 1),
        "ttft_ms_p50": round(percentile(ttft, 0.5), 2),
        "ttft_ms_p99": round(percentile(ttft, 0.99), 2),
        "ttft_ms_mean": round(statistics.mean(ttft), 2) if ttft else None,
        "adapter_placements": placed,
        "affinity_hit_rate": round(resident / placed, 3) if placed else None,
        "warm_hit_rate": round((resident + host) / placed, 3) if placed else None,  # in a slot or host memory
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    ap.add_argument("--cli", default=os.path.join(root, "build", "nodes", "myriad"))
    ap.add_argument("--node", default=os.path.join(root, "build", "nodes", "myriad-node"))
    ap.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated (default 1,2,3)")
    ap.add_argument("--adapters", type=int, default=40)
    ap.add_argument("--slots", type=int, default=4, help="adapter slots per worker (default 4)")
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--zipf", type=float, default=1.0, help="adapter popularity exponent (default 1.0)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = random.Random(args.seed)

    work = tempfile.mkdtemp(prefix="myriad-bench-cluster-")
    try:
        model, folders = make_model_and_adapters(args.cli, work, args.adapters)
        weights = [1.0 / (i + 1) ** args.zipf for i in range(args.adapters)]
        names = [f"a{i}" for i in range(args.adapters)]
        bodies = [{"model": rng.choices(names, weights)[0], "prompt": "Hello, Myriad", "max_tokens": args.max_tokens,
                   "ignore_eos": True, "temperature": 0, "stream": True} for _ in range(args.requests)]
        rows = []
        for n in [int(x) for x in args.workers.split(",")]:
            for placement in ("affinity", "random"):
                rows.append(one_run(args, work, model, folders, n, placement, bodies))
                if not args.json:
                    r = rows[-1]
                    print(f"  ran {n} worker(s), {placement}: {r['seconds']} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    if args.json:
        print(json.dumps({"config": vars(args), "rows": rows}, indent=1))
        return 0
    print(f"{args.requests} streamed requests, {args.clients} clients, {args.max_tokens} tokens each, "
          f"{args.adapters} adapters (Zipf {args.zipf}), {args.slots} slots per worker, workers --threads 1")
    print(f"{'workers':>7} {'placement':>9} {'req/s':>7} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'resident hits':>13} {'warm hits':>9}")
    for r in rows:
        hit = "-" if r["affinity_hit_rate"] is None else f"{100 * r['affinity_hit_rate']:.1f}%"
        warm = "-" if r["warm_hit_rate"] is None else f"{100 * r['warm_hit_rate']:.1f}%"
        print(f"{r['workers']:>7} {r['placement']:>9} {r['requests_per_s']:>7.1f} {r['output_tokens_per_s']:>8.0f} "
              f"{r['ttft_ms_p50']:>7.1f}ms {r['ttft_ms_p99']:>7.1f}ms {hit:>13} {warm:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
