#!/usr/bin/env bash
# Install (Debian packages) and start what the test suite needs: Chromium, and PostgreSQL on loopback.
# Usage: test-services.sh [PORT]   (PORT is the preferred port; default 54329)
#
# PostgreSQL: this checkout's own throwaway cluster lives outside the checkout, in
# /tmp/lookalike-pg-<uid>-<hash of the checkout path>/ (mode 700; data/, sock/, server.log), so that its owner
# can reach it wherever the checkout is. As root the cluster is owned by and run as `postgres`; as another user
# it is owned by and run as that user (no su). Idempotent: a running cluster of this checkout is reused on the
# port it already has. When the preferred port is held by anything else, the next free port is used instead.
# The database URL is printed and written to var/test-pg-url in the checkout (the Makefile's `test` target reads
# it). Needs root only for apt-get; without PostgreSQL binaries and without root, the PostgreSQL tests are skipped.
# LOOKALIKE_SKIP_CHROMIUM=1 skips the Chromium part.
set -euo pipefail
REQ_PORT="${1:-54329}"
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
URL_FILE="$ROOT/var/test-pg-url"
mkdir -p "$ROOT/var"
rm -f "$URL_FILE"

# Chromium (Debian's build) for the browser tests, driven by Playwright through executable_path; Playwright's
# own browser download is never used. Skipped when /usr/bin/chromium exists; without it browser tests skip.
if [ -z "${LOOKALIKE_SKIP_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (Debian)..."
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  else
    echo "warning: not root, cannot install chromium; browser tests will be skipped" >&2
  fi
fi

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "installing postgresql (Debian)..."
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || { echo "warning: could not install postgresql; PostgreSQL tests will be skipped" >&2; exit 0; }
  else
    echo "warning: not root, cannot install postgresql; PostgreSQL tests will be skipped" >&2; exit 0
  fi
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"

MY_UID="$(id -u)"
HASH="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
BASE="/tmp/lookalike-pg-$MY_UID-$HASH"
DATA="$BASE/data"
SOCK="$BASE/sock"
LOG="$BASE/server.log"

if [ "$MY_UID" = 0 ]; then
  OWNER=postgres
  id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
  if command -v runuser >/dev/null 2>&1; then
    as_owner() { (cd "$BASE" && runuser -u postgres -- "$@"); }
  else
    as_owner() { (cd "$BASE" && su postgres -s /bin/bash -c "$(printf '%q ' "$@")"); }
  fi
else
  OWNER="$(id -un)"
  as_owner() { (cd "$BASE" && "$@"); }
fi

# The cluster folder: created private to its owner; an existing one must be a real folder that owner holds.
if [ ! -e "$BASE" ] && [ ! -L "$BASE" ]; then
  mkdir -m 700 "$BASE"
  if [ "$MY_UID" = 0 ]; then chown "$OWNER" "$BASE"; fi
fi
if [ -L "$BASE" ] || [ ! -d "$BASE" ] || [ "$(stat -c %U "$BASE")" != "$OWNER" ]; then
  echo "error: $BASE is not a folder owned by $OWNER; remove it and rerun" >&2; exit 1
fi
chmod 700 "$BASE"
as_owner mkdir -p -m 700 "$SOCK"

if [ ! -f "$DATA/PG_VERSION" ]; then
  as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi

# True when something accepts TCP connections on 127.0.0.1:$1.
port_taken() { timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  PORT="$(sed -n 4p "$DATA/postmaster.pid")"
  echo "reusing this checkout's postgresql on port $PORT"
else
  PORT=""
  for ((p = REQ_PORT; p < REQ_PORT + 50 && p <= 65535; p++)); do
    port_taken "$p" && continue
    before=0; [ -f "$LOG" ] && before="$(wc -l <"$LOG")"
    if as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $p -k $SOCK -c fsync=off" start >/dev/null; then
      PORT="$p"; break
    fi
    # Lost a race for the port to another process: try the next one; any other failure is fatal.
    if tail -n "+$((before + 1))" "$LOG" | grep -qi "could not bind\|address already in use"; then continue; fi
    echo "error: postgresql did not start; see $LOG:" >&2; tail -n 20 "$LOG" >&2; exit 1
  done
  if [ -z "$PORT" ]; then
    echo "error: port $REQ_PORT and the 49 after it are taken on 127.0.0.1; pass another port" >&2; exit 1
  fi
  if [ "$PORT" != "$REQ_PORT" ]; then
    echo "port $REQ_PORT on 127.0.0.1 is taken (not this checkout's server); using port $PORT instead"
  fi
fi

PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA)
"${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='lookalike'" | grep -q 1 \
  || "${PSQL[@]}" -c "CREATE ROLE lookalike LOGIN CREATEDB"
"${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname='lookalike_test'" | grep -q 1 \
  || "${PSQL[@]}" -c "CREATE DATABASE lookalike_test OWNER lookalike"
URL="postgresql+psycopg://lookalike@127.0.0.1:$PORT/lookalike_test"
echo "$URL" >"$URL_FILE"
echo "postgresql on 127.0.0.1:$PORT (data $DATA)"
echo "LOOKALIKE_TEST_PG_URL=$URL (written to $URL_FILE)"
