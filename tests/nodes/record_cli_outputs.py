#!/usr/bin/env python3
"""Records what `myriad generate` prints for a fixed set of inputs, so a test
(tests/nodes/cli_outputs_test.cpp) can check that a change to the engine
underneath leaves the CLI's output unchanged. Run from the repository root
with a build of the commit to record from:

  python3 tests/nodes/record_cli_outputs.py build/nodes/myriad > tests/nodes/cli_outputs.json

{TINY} is `make-model --shape tiny --seed 7 --dtype bf16` (with its built-in
byte tokenizer); {FIXTURES} is tests/fixtures.
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

CASES = [
    # text model with a tokenizer: sampling, streaming, stop strings, chat, penalties
    "generate --model {TINY} --prompt 'Hello, world' --max-tokens 12 --temperature 0.9 --seed 4 --ignore-eos --json",
    "generate --model {TINY} --prompt 'Hello, world' --max-tokens 12 --temperature 0.9 --seed 4 --ignore-eos",
    "generate --model {TINY} --prompt abc --max-tokens 16 --temperature 0 --ignore-eos --json --stop 0i",
    "generate --model {TINY} --prompt abc --max-tokens 16 --temperature 0 --ignore-eos --stop 0i --stop Z-",
    "generate --model {TINY} --chat --prompt 'Hi there' --max-tokens 10 --temperature 0 --json",
    "generate --model {TINY} --prompt abcabc --max-tokens 16 --temperature 0.7 --top-k 20 --top-p 0.9"
    " --repetition-penalty 1.3 --presence-penalty 0.5 --frequency-penalty 0.5 --seed 9 --json",
    "generate --model {TINY} --prompt 'The quick brown fox' --max-tokens 20 --temperature 1.2 --seed 77 --kv-cache-dtype f32",
    # id-only fixture models: eos, adapters, a weighted mixture, qwen2 biases
    "generate --model {FIXTURES}/tiny-llama --ids 129,498,372,12,97,231,388 --max-tokens 24 --temperature 0 --json",
    "generate --model {FIXTURES}/tiny-llama --ids 129,498,372,12,97,231,388 --max-tokens 12 --temperature 0"
    " --adapter {FIXTURES}/tiny-llama/adapters/r8-all",
    "generate --model {FIXTURES}/tiny-llama --ids 5,6,7 --max-tokens 12 --temperature 0.8 --seed 3 --json"
    " --adapter {FIXTURES}/tiny-llama/adapters/r8-all:0.5 --adapter {FIXTURES}/tiny-llama/adapters/r4-qv:0.5",
    "generate --model {FIXTURES}/tiny-qwen2 --ids 1,2,3,4 --max-tokens 16 --temperature 0 --ignore-eos --json"
    " --adapter {FIXTURES}/tiny-qwen2/adapters/r16-rslora-o-down",
    # logits: last and all positions, base, adapter, mixture (mixtures within a float tolerance), a batch
    "logits --model {FIXTURES}/tiny-llama --ids 129,498,372,12,97,231,388",
    "logits --model {TINY} --ids 5,6,7,8,9 --all-positions",
    "logits --model {FIXTURES}/tiny-qwen2 --ids 9,8,7 --all-positions --adapter {FIXTURES}/tiny-qwen2/adapters/r4-qv"
    " --kv-cache-dtype bf16",
    "logits --model {FIXTURES}/tiny-llama --ids 3,1,4,1,5 --adapter {FIXTURES}/tiny-llama/adapters/r8-all:0.5"
    " --adapter {FIXTURES}/tiny-llama/adapters/r4-qv:-0.25",
    "logits --model {FIXTURES}/tiny-llama --batch tests/nodes/cli_outputs_batch.json",
]
# Cases whose floats may move within this tolerance (|got - ref| <= atol): the
# weighted mixtures' sums reordered (1e-5), and every logits case because the
# matmul kernel is the CPU's (AMX, AVX-512, AVX2: f32 accumulation in another
# order, about 1e-7 apart on these logits; 1e-6). Generated text must match
# byte for byte.
TOLERANT = {"--adapter {FIXTURES}/tiny-llama/adapters/r4-qv:-0.25": 1e-5, "cli_outputs_batch.json": 1e-5,
            "logits --model {FIXTURES}/tiny-llama --ids 129": 1e-6, "logits --model {TINY}": 1e-6,
            "logits --model {FIXTURES}/tiny-qwen2": 1e-6}


def main():
    myriad = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        tiny = os.path.join(tmp, "tiny")
        subprocess.run([myriad, "make-model", "--shape", "tiny", "--seed", "7", "--dtype", "bf16", "--out", tiny],
                       check=True, stdout=subprocess.DEVNULL)
        out = []
        for case in CASES:
            args = shlex.split(case.replace("{TINY}", tiny).replace("{FIXTURES}", "tests/fixtures"))
            r = subprocess.run([myriad] + args, capture_output=True)
            if r.returncode != 0:
                sys.exit(f"{case}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
            entry = {"args": case, "stdout": r.stdout.decode("utf-8", errors="surrogateescape")}
            for key, atol in TOLERANT.items():
                if key in case:
                    entry["atol"] = atol
            out.append(entry)
    json.dump({"recorded_from": sys.argv[2] if len(sys.argv) > 2 else "", "cases": out}, sys.stdout, indent=1,
              ensure_ascii=True)
    print()


if __name__ == "__main__":
    main()
