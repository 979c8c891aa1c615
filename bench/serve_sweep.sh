#!/usr/bin/env bash
# The serving comparison of docs/results/2026-11-23-serve-sweep.md: bench/serve on llama-110m (bf16, random weights)
# with 64 random rank-16 adapters, Zipf(1.0) popularity, Poisson arrivals:
# the three policies at one quantum, then a quantum sweep of the time slice.
# Prints one markdown table; each run's JSON goes to $OUT_DIR.
#   usage: bench/serve_sweep.sh [BUILD_DIR]   (env: REQUESTS, RATE, SLOTS, OUT_DIR)
set -euo pipefail
build=${1:-build}
requests=${REQUESTS:-120}
rate=${RATE:-6}
slots=${SLOTS:-8}
out=${OUT_DIR:-$build/serve-sweep}
model=$build/models/llama-110m-bf16
mkdir -p "$out"
[ -f "$model/config.json" ] || "$build/nodes/myriad" make-model --shape llama-110m --seed 1 --dtype bf16 --out "$model" >/dev/null

run() {  # name policy quantum_ms
  "$build/bench/serve" --model "$model" --adapters 64 --rank 16 --policy "$2" --slots "$slots" \
    --quantum-ms "$3" --rate "$rate" --requests "$requests" --zipf 1.0 --prompt-len 64 --output-len 32 \
    --seed 7 --json > "$out/$1.json"
  python3 - "$1" "$2" "$3" "$out/$1.json" <<'PY'
import json, sys
name, policy, q, path = sys.argv[1:]
j = json.load(open(path))
g = lambda k: j.get(k, float('nan'))
print(f"| {policy} | {q} | {g('throughput_tok_s'):.1f} | {g('ttft_ms_p50'):.0f} | {g('ttft_ms_p99'):.0f} | "
      f"{g('itl_ms_p50'):.1f} | {g('itl_ms_p99'):.1f} | {g('completed')} / {g('failed')} | {g('jain_fairness'):.3f} | "
      f"{g('swaps')} ({g('swaps_per_s'):.2f}/s) | {g('slot_load_ms_p50'):.1f} |")
PY
}

echo "llama-110m bf16, 64 adapters rank 16, Zipf 1.0, $slots slots, $requests requests at $rate req/s, prompt 64, output 32"
echo
echo "| policy | quantum ms | tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | completed / failed | Jain | swaps | slot load p50 ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
run timeslice-500 timeslice 500
run fcfs fcfs 500
run one-at-a-time one-at-a-time 500
for q in 50 200 2000 10000; do run "timeslice-$q" timeslice "$q"; done
