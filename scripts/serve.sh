#!/usr/bin/env bash
# Sets up the portal in .venv (again only when pyproject.toml changed), upgrades the
# database and serves it with gunicorn as the Procfile does, on http://127.0.0.1:${PORT:-8000}.
# With no settings it uses the embedded default: three local regions served by SmolLM2.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Python 3.11 or newer is needed (python3 is $(python3 --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "Installing the portal into .venv (the first time builds llama.cpp: a few minutes)..."
  .venv/bin/pip install -q --disable-pip-version-check -e .
  touch .venv/.installed
fi

.venv/bin/flask --app wsgi db upgrade
export PORT="${PORT:-8000}"
echo "Beacon portal on http://127.0.0.1:${PORT}/  (Ctrl-C stops it; run a job: .venv/bin/flask --app wsgi beacon demo)"
exec .venv/bin/gunicorn wsgi:app -k gevent -c gunicorn.conf.py --bind "127.0.0.1:${PORT}"
