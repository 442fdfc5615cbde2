#!/usr/bin/env bash
# Install (Debian packages) and start what the test suite needs: Chromium, and PostgreSQL on loopback.
# Idempotent: a running server is reused. Needs root for apt-get (CI and dev machines run as root).
set -euo pipefail
PORT="${1:-54329}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PGDATA="$ROOT/var/pgdata"

# Chromium (Debian's build) for the browser tests, driven by Playwright through executable_path; Playwright's
# own browser download is never used. Skipped when /usr/bin/chromium exists; without it browser tests skip.
if [ ! -x /usr/bin/chromium ]; then
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
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql postgres
mkdir -p "$ROOT/var"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  install -d -o postgres "$PGDATA"
  su postgres -s /bin/sh -c "$BIN/initdb -D '$PGDATA' -U postgres --auth=trust -E UTF8 >/dev/null"
fi
chown -R postgres "$PGDATA"
if ! su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$PGDATA' status" >/dev/null 2>&1; then
  su postgres -s /bin/sh -c "$BIN/pg_ctl -D '$PGDATA' -l '$PGDATA/server.log' -w \
    -o '-c listen_addresses=127.0.0.1 -p $PORT -k /tmp -c fsync=off' start" >/dev/null
fi
PSQL="$BIN/psql -h 127.0.0.1 -p $PORT -U postgres -v ON_ERROR_STOP=1 -qtA"
$PSQL -c "SELECT 1 FROM pg_roles WHERE rolname='lookalike'" | grep -q 1 || $PSQL -c "CREATE ROLE lookalike LOGIN CREATEDB"
$PSQL -c "SELECT 1 FROM pg_database WHERE datname='lookalike_test'" | grep -q 1 \
  || $PSQL -c "CREATE DATABASE lookalike_test OWNER lookalike"
echo "postgresql on 127.0.0.1:$PORT (data $PGDATA)"
