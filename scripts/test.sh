#!/usr/bin/env bash
# The whole test suite: unit tests, store tests on real SQLite files and on
# a real PostgreSQL 15 (started by scripts/start-postgres.sh), and the
# end-to-end tests that build the guest examples and drive the real cairn
# binary over HTTP (one of them in headless Chromium). Installs what it
# needs: the wasm32-wasip2 target and, from Debian, Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
bash scripts/install-test-deps.sh
# The Python and JavaScript guests, with their toolchains from PyPI and npm.
bash scripts/build-polyglot.sh
# Every store test and the multi-host tests also run on PostgreSQL.
CAIRN_TEST_POSTGRES_URL="$(bash scripts/start-postgres.sh)"
export CAIRN_TEST_POSTGRES_URL
cargo test --workspace "$@"
# The end-to-end tests again, with every host on PostgreSQL. (--workspace:
# the same features as above, so nothing is built again.)
CAIRN_TEST_BACKEND=postgres cargo test --workspace --test '*' "$@"
