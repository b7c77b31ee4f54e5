#!/usr/bin/env bash
# Fuzz the host's doors: upload validation, request parsing/routing, the
# routes manifest and the multipart upload body.
# Usage: bash scripts/fuzz.sh [seconds per target, default 30] [release]
# Installs cargo-fuzz if missing. Runs on the stable toolchain without a
# sanitizer (`-s none`): a panic or a 5xx answer is what the targets catch.
# CI's short run builds in the dev profile (3 minutes 20 from cold, where
# the instrumented release build of wasmtime takes 13) and so executes about
# a fifth as many inputs a second; long runs by hand should say `release`.
# A crash leaves its input in fuzz/artifacts/<target>/; make it a regression
# test before fixing it.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
profile=(--dev)
[ "${2:-}" = release ] && profile=(--release)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup target add wasm32-wasip2 >/dev/null

# Seed the upload target with real components, so it explores past the
# header checks from the start.
examples="target/guest-examples/wasm32-wasip2/release"
if [ ! -f "$examples/steps.wasm" ]; then
  CARGO_TARGET_DIR="$PWD/target/guest-examples" \
    cargo build --release --target wasm32-wasip2 --manifest-path guest-examples/Cargo.toml
fi
mkdir -p fuzz/corpus/upload fuzz/corpus/request fuzz/corpus/routes fuzz/corpus/multipart
cp "$examples"/steps.wasm "$examples"/faulty.wasm fuzz/corpus/upload/

cd fuzz
cargo fuzz build -s none "${profile[@]}"
for target in upload request routes multipart; do
  echo "fuzzing $target for ${seconds}s" >&2
  log="$(mktemp)"
  status=0
  cargo fuzz run -s none "${profile[@]}" "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|^#[0-9]+ +DONE' "$log" >&2 || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "the fuzzer found a crash in $target (exit $status): see fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
