#!/usr/bin/env bash
# Debian packages the test suite needs beyond the Rust toolchain: Chromium,
# for the browser test of the run page. Installs only what is missing.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (for the browser test) ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get install -y -q chromium >/dev/null 2>&1 \
    || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q chromium >/dev/null; }
fi
