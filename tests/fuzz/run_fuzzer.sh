#!/bin/sh
# ctest driver for one libFuzzer target: builds it (clang++), copies the seed
# corpus into a scratch folder and fuzzes for MYRIAD_FUZZ_SECONDS (60).
# Exit 77 (ctest: skipped) when clang++ is missing.
# usage: run_fuzzer.sh CLANGXX CMAKE BUILD_DIR TARGET BINARY DICT SEED...
clangxx="$1"; cmake="$2"; build="$3"; target="$4"; binary="$5"; dict="$6"; shift 6
if [ -z "$clangxx" ] || [ ! -x "$clangxx" ]; then
  echo "skipped: clang++ (with libclang-rt-14-dev) not found; install clang-14 to run the fuzzers"
  exit 77
fi
"$cmake" --build "$build" --target "$target" || exit 1
corpus=$(mktemp -d "${TMPDIR:-/tmp}/myriad_${target}_XXXXXX") || exit 1
trap 'rm -rf "$corpus"' EXIT
for seed in "$@"; do
  [ -f "$seed" ] && cp "$seed" "$corpus/$(echo "$seed" | tr '/' '_')"
done
echo "$target: $(ls "$corpus" | wc -l) seeds, ${MYRIAD_FUZZ_SECONDS:-60} s"
mkdir "$corpus/in" "$corpus/out" && mv "$corpus"/*_* "$corpus/in/" 2>/dev/null
"$binary" -max_total_time="${MYRIAD_FUZZ_SECONDS:-60}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -dict="$dict" -artifact_prefix="$corpus/out/" "$corpus/in" > "$corpus/log" 2>&1
rc=$?
tail -40 "$corpus/log"
# Keep crash/leak/timeout inputs for reproduction: $build/fuzz-artifacts/.
for a in "$corpus"/out/*; do
  if [ -f "$a" ]; then
    mkdir -p "$build/fuzz-artifacts" && cp "$a" "$build/fuzz-artifacts/${target}-$(basename "$a")"
    echo "artifact kept: $build/fuzz-artifacts/${target}-$(basename "$a") (rerun: $binary FILE)"
    od -c "$a" | head -100
  fi
done
exit $rc
