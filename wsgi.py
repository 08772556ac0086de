"""WSGI entry point for gunicorn: gevent monkey-patches first, then the app is built."""

from gevent import monkey

monkey.patch_all()

from portal import create_app  # noqa: E402

app = create_app()
