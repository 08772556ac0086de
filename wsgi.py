"""WSGI entry point for gunicorn: gevent monkey-patches first, then the app is built."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from portal import create_app  # noqa: E402
from portal.config import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:
    # One line an operator can act on, not a traceback. Exit status 3 is gunicorn's "worker
    # failed to boot": the whole server stops instead of restarting workers in a loop.
    print(f"beacon: cannot start: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None
