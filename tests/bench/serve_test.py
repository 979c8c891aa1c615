#!/usr/bin/env python3
"""bench/serve's bookkeeping, not its speed: every request is answered and
counted once as cold or warm; adapters made as they enter a bounded host
cache are made again after eviction; --modules sizes the adapters; bad flags
are errors naming the flag. Usage: serve_test.py --cli MYRIAD --serve SERVE"""
import argparse, json, subprocess, sys, tempfile, os

p = argparse.ArgumentParser()
p.add_argument("--cli", required=True)
p.add_argument("--serve", required=True)
a = p.parse_args()
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what)


with tempfile.TemporaryDirectory() as d:
    model = os.path.join(d, "tiny")
    subprocess.run([a.cli, "make-model", "--shape", "tiny", "--seed", "1", "--dtype", "f32", "--out", model],
                   check=True, stdout=subprocess.DEVNULL)

    def serve(*flags):
        r = subprocess.run([a.serve, "--model", model, "--threads", "1", "--json", *flags],
                           capture_output=True, text=True)
        return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else None), r.stderr

    # 40 adapters through a host cache that holds a handful: made lazily, evicted, made again.
    rc, j, err = serve("--adapters", "40", "--requests", "120", "--rate", "400", "--lazy-adapters",
                       "--host-cache-mb", "1", "--seed", "3")
    check(rc == 0, f"lazy run exits 0 ({err.strip()})")
    if j:
        check(j["completed"] == 120 and j["failed"] == 0, f"every request completed: {j['completed']}, {j['failed']}")
        check(j["cold_requests"] + j["warm_requests"] == 120, "each request counted once as cold or warm")
        check(j["cold_requests"] > 0, "40 adapters in 4 slots: some requests are cold")
        per = j["adapter_bytes"]
        held = (1 << 20) // per
        check(held < 40, f"the cache holds fewer adapters ({held}) than the run uses")
        check(j["host_cache_evictions"] > 0, "a bounded cache evicts")
        check(j["host_cache_misses"] >= j["host_cache_evictions"], "an evicted adapter was made by a miss")

    # Made before the run: no miss during it beyond the 40 made up front.
    rc, j, err = serve("--adapters", "40", "--requests", "60", "--rate", "0")
    check(rc == 0, f"prefetched run exits 0 ({err.strip()})")
    if j:
        check(j["host_cache_misses"] == 40 and j["host_cache_evictions"] == 0, f"40 made up front: {j['host_cache_misses']}")

    # q/k/v/o only: 4 of the 7 modules' values (tiny: hidden 64, intermediate 176).
    _, all7, _ = serve("--adapters", "2", "--requests", "4", "--rank", "4")
    _, qkvo, _ = serve("--adapters", "2", "--requests", "4", "--rank", "4", "--modules", "q_proj,k_proj,v_proj,o_proj")
    if all7 and qkvo:
        check(qkvo["adapter_bytes"] < all7["adapter_bytes"], "fewer modules, fewer bytes")
        check(qkvo["modules"] == "q_proj,k_proj,v_proj,o_proj", "the JSON names the modules")

    # Lengths from a range stay in it (the context clamps nothing at 8:40 here).
    rc, j, err = serve("--adapters", "3", "--requests", "30", "--prompt-range", "8:40", "--output-range", "5:5")
    check(rc == 0 and j and j["output_tokens"] == 30 * 5, f"--output-range 5:5 gives 5 tokens each ({err.strip()})")

    for flags, words in [(["--modules", "q_proj,nope"], "--modules: 'nope'"),
                         (["--prompt-range", "9:3"], "--prompt-range 9:3"),
                         (["--device", "tpu"], "--device tpu"),
                         (["--shape", "tiny"], "give one of --model DIR and --shape NAME")]:
        rc, _, err = serve(*flags)
        check(rc != 0 and words in err, f"{flags} is an error naming it: {err.strip()}")

print("serve_test:", "FAILED " + str(len(failures)) if failures else "ok")
sys.exit(1 if failures else 0)
