#!/usr/bin/env bash
# Sets up the portal in .venv (again only when pyproject.toml changed), upgrades the
# database and serves it with gunicorn as the Procfile does, on http://127.0.0.1:${PORT:-8000}.
# With no settings it uses the embedded default: three local regions served by SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/install.sh ""

.venv/bin/flask --app wsgi db upgrade
export PORT="${PORT:-8000}"
echo "Beacon portal on http://127.0.0.1:${PORT}/  (Ctrl-C stops it; run a job: .venv/bin/flask --app wsgi beacon demo)"
exec .venv/bin/gunicorn wsgi:app -k gevent -c gunicorn.conf.py --bind "127.0.0.1:${PORT}"
