#!/usr/bin/env bash
# The runs behind docs/simulator.md "First findings" and "How fast"; run from the repository root.
set -euo pipefail
S=./build/nodes/myriad-sim
H=sim/cost_models/h200-tinyllama-estimate.json
run() { echo "$ myriad-sim $*"; "$S" "$@" --json | tail -n 1; }
run --adapters 10000 --workers 8 --rate 100 --duration-s 3600 --zipf 1 --policy timeslice --seed 1 --cost-model $H
run --adapters 64 --workers 1 --rate 0.5 --duration-s 600 --zipf 1 --policy timeslice --seed 1
run --adapters 64 --workers 1 --rate 5 --duration-s 600 --zipf 1 --policy timeslice --seed 1 --cost-model $H
for r in 3 4 5; do
  for p in timeslice fcfs one-at-a-time; do
    run --adapters 40 --workers 1 --rate $r --duration-s 300 --zipf 0 --policy $p --slots 4 --quantum-ms 5 \
      --max-running 16 --kv-blocks 2048 --prompt-mean 64 --output-mean 32 --seed 9
  done
done
for w in 2 4 8; do
  for p in affinity least-loaded random; do
    run --adapters 200 --workers $w --rate $w --duration-s 600 --zipf 1 --policy timeslice --placement $p --seed 2 \
      --prompt-mean 64 --output-mean 32
  done
done
