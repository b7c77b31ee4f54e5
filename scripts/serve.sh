#!/usr/bin/env bash
# Cairn's main job: a host on the embedded SQLite default (./cairn-data) with
# the example workflow modules deployed. Installs the wasm32-wasip2 target if
# needed, builds the examples and the host, then serves on 127.0.0.1:8080
# (override with CAIRN_LISTEN=ADDR:PORT).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
CARGO_TARGET_DIR="$PWD/target/guest-examples" \
  cargo build --release --target wasm32-wasip2 --manifest-path guest-examples/Cargo.toml
cargo build --release -p cairn-host --bin cairn

wasm="$PWD/target/guest-examples/wasm32-wasip2/release"
listen="${CAIRN_LISTEN:-127.0.0.1:8080}"
cat <<MSG

Cairn is starting on http://$listen with the modules steps, orders, faulty,
approvals, fanout, payments, streams and event-listener. From another terminal, trigger the seed: its HTTP handler
starts stepsWorkflow and answers with both events,

  curl -s http://$listen/app/events

or start a run yourself, follow it live, and read an event:

  curl -s -X POST http://$listen/v1/workflows --json '{"module":"steps","workflow":"steps_with_pause","id":"seed-1"}'
  curl -sN -H 'Accept: text/event-stream' http://$listen/v1/workflows/seed-1/events
  curl -s http://$listen/v1/workflows/seed-1/events/step2

(the run's timeline in a browser: http://$listen/ui/runs/seed-1)

MSG
exec ./target/release/cairn serve --listen "$listen" --data-dir "${CAIRN_DATA_DIR:-./cairn-data}" \
  --deploy "steps=$wasm/steps.wasm" \
  --deploy "orders=$wasm/orders.wasm,guest-examples/orders/routes.json" \
  --deploy "faulty=$wasm/faulty.wasm" \
  --deploy "approvals=$wasm/approvals.wasm" \
  --deploy "fanout=$wasm/fanout.wasm" \
  --deploy "payments=$wasm/payments.wasm" \
  --deploy "streams=$wasm/streams.wasm" \
  --deploy "event-listener=$wasm/event_listener.wasm,guest-examples/event-listener/routes.json"
