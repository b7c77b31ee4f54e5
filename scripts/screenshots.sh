#!/usr/bin/env bash
# Renders the console's pages in headless Chromium (the browser tests in
# tests/tests/ui.rs write a screenshot of each) and copies them to
# docs/screenshots/, where the README shows them.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh
target="${CARGO_TARGET_DIR:-target}"
cargo test -p cairn-tests --test ui
mkdir -p docs/screenshots
cp "$target"/tmp/screenshots/*.png docs/screenshots/
ls docs/screenshots
