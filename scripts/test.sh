#!/usr/bin/env bash
# The whole test suite: unit tests, store tests on real SQLite files, and the
# end-to-end tests that build the guest examples and drive the real cairn
# binary over HTTP (one of them in headless Chromium). Installs what it
# needs: the wasm32-wasip2 target and, from Debian, Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
bash scripts/install-test-deps.sh
cargo test --workspace "$@"
