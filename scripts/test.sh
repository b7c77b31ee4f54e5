#!/usr/bin/env bash
# The whole test suite: unit tests, store tests on real SQLite files, and the
# end-to-end tests that build the guest examples and drive the real cairn
# binary over HTTP. Installs the wasm32-wasip2 target if needed.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
cargo test --workspace "$@"
