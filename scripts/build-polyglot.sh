#!/usr/bin/env bash
# Build the Python and JavaScript guest examples into components, with the
# toolchains installed from their registries into target/polyglot (a venv
# with componentize-py from PyPI; componentize-js and jco from npm, at the
# versions of guest-sdk-js/package-lock.json). A component is built again
# only when its sources, the SDK or the WIT changed.
#
#   target/polyglot/python/{steps,handler}.wasm
#   target/polyglot/js/{steps,handler}.wasm
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/polyglot
mkdir -p "$out/python" "$out/js" "$out/node"

if [ ! -x "$out/venv/bin/componentize-py" ]; then
  python3 -m venv "$out/venv"
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check -r guest-sdk-python/requirements.txt
fi
if [ ! -x "$out/node/node_modules/.bin/componentize-js" ] \
  || ! cmp -s guest-sdk-js/package-lock.json "$out/node/package-lock.json"; then
  cp guest-sdk-js/package.json guest-sdk-js/package-lock.json "$out/node/"
  (cd "$out/node" && npm ci --silent --no-audit --no-fund)
fi

# Whether $1 is missing or older than any file under the other arguments.
stale() {
  local target=$1
  shift
  [ ! -e "$target" ] || [ -n "$(find "$@" -newer "$target" -type f -print -quit)" ]
}

for app in steps handler; do
  world=workflow
  [ "$app" = handler ] && world=handler
  if stale "$out/python/$app.wasm" "guest-examples/python/$app" guest-sdk-python/cairn wit; then
    echo "building python/$app.wasm" >&2
    "$out/venv/bin/componentize-py" -d wit -w "$world" componentize app \
      -p "guest-examples/python/$app" -p guest-sdk-python -o "$out/python/$app.wasm" >/dev/null
  fi
  if stale "$out/js/$app.wasm" "guest-examples/js/$app" guest-sdk-js/workflow.js guest-sdk-js/handler.js wit; then
    echo "building js/$app.wasm" >&2
    "$out/node/node_modules/.bin/componentize-js" "guest-examples/js/$app/app.js" \
      -w wit -n "$world" -o "$out/js/$app.wasm" >/dev/null
  fi
done
