#!/usr/bin/env bash
# PostgreSQL for the test suite: starts the local PostgreSQL 15 cluster
# (installing the Debian package if it is missing) and creates the role and
# database the tests use. Prints the URL to put in CAIRN_TEST_POSTGRES_URL.
# Idempotent.
set -euo pipefail

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sudo -u postgres sh -c "$*"; fi
}

prepare() {
  if ! command -v pg_ctlcluster >/dev/null || [ ! -d /usr/lib/postgresql/15 ]; then
    echo "installing postgresql-15 (for the PostgreSQL tests) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q postgresql-15 >/dev/null 2>&1 \
      || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q postgresql-15 >/dev/null; }
  fi
  if ! pg_lsclusters -h | awk '$1 == "15" && $2 == "main"' | grep -q .; then
    as_root pg_createcluster 15 main >/dev/null
  fi
  if ! pg_lsclusters -h | awk '$1 == "15" && $2 == "main" && $4 == "online"' | grep -q .; then
    as_root pg_ctlcluster 15 main start
  fi
  for _ in $(seq 50); do
    as_postgres "psql -qAtc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # The tests run many hosts at once, each with a pool of connections.
  if [ "$(as_postgres "psql -qAtc 'SHOW max_connections'")" -lt 300 ]; then
    as_postgres "psql -qc 'ALTER SYSTEM SET max_connections = 300'" >/dev/null
    as_root pg_ctlcluster 15 main restart
    for _ in $(seq 50); do
      as_postgres "psql -qAtc 'SELECT 1'" >/dev/null 2>&1 && break
      sleep 0.2
    done
  fi
  as_postgres "psql -qAtc \"SELECT 1 FROM pg_roles WHERE rolname = 'cairn'\"" | grep -q 1 \
    || as_postgres "psql -qc \"CREATE ROLE cairn LOGIN PASSWORD 'cairn'\""
  as_postgres "psql -qAtc \"SELECT 1 FROM pg_database WHERE datname = 'cairn_test'\"" | grep -q 1 \
    && as_postgres "dropdb --force cairn_test"
  as_postgres "createdb -O cairn cairn_test"
}

# Only the URL goes to standard output, which callers capture; whatever the
# PostgreSQL tools print (e.g. pg_ctlcluster's "Removed stale pid file.") goes
# to standard error. (Not through a duplicated descriptor: the server started
# here would inherit it and keep the caller's capture open forever.)
prepare >&2
echo "postgres://cairn:cairn@127.0.0.1:5432/cairn_test"
