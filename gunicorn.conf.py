"""gunicorn settings for the `web` process: each gevent worker also runs one dispatcher.

SIGTERM (Railway sends it on every deploy) drains each worker: its dispatcher stops claiming
and starting calls, the calls in flight finish and store their answers, and the executions it
did not get to go back to the queue. Whatever still runs when `graceful_timeout` ends is handed
back unfinished. See docs/deploy.md.
"""

import os
import shutil
import tempfile
import time

worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Connections each worker serves at once (gunicorn's default, written out). Of them, at most
# `[intake] upload_slots` (100) may spend `body_timeout_s` (10 s) sending a request body; every
# other body must arrive within 1 s, so slow uploads cannot take the rest (docs/deploy.md,
# portal/web/body_deadline.py).
worker_connections = int(os.environ.get("BEACON_WORKER_CONNECTIONS", "1000"))
# Provider calls are awaited by greenlets, never by the request that submitted the job, so the
# default request timeout stays. The graceful timeout is how long in-flight provider calls may
# take to finish after SIGTERM; the platform must wait at least this long before SIGKILL.
graceful_timeout = int(os.environ.get("BEACON_GRACEFUL_TIMEOUT", "20"))
# Production logs one JSON line per request from the app itself (portal/logs.py), and
# gunicorn's own lines (boot, worker exit) as JSON too, so every line of the log parses.
accesslog = None if os.environ.get("BEACON_ENV") == "production" else "-"
if os.environ.get("BEACON_ENV") == "production":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        # The app puts its own JSON handler on the root logger in each worker (portal/logs.py).
        "root": {"level": "INFO", "handlers": []},
        "formatters": {"json": {"()": "portal.logs.JsonFormatter"}},
        "handlers": {
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False}
        },
    }
# The control socket is one path per user (~/.gunicorn/gunicorn.ctl), so two servers on one
# machine would fight over it; nothing here uses gunicornc.
control_socket_disable = True

# prometheus-client's multiprocess mode: every worker writes its counters and histograms to
# files in this folder, and /metrics (in any worker) adds them up. One fresh folder per server,
# set before any worker imports prometheus_client.
_OWN_METRICS_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _OWN_METRICS_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="beacon-metrics-")
_METRICS_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]
# Seconds kept back at the end of the graceful timeout to hand the leases back.
_HAND_BACK_S = 3.0


def on_starting(server):
    """Starts the metrics folder empty: values of an earlier server are not this one's."""
    shutil.rmtree(_METRICS_DIR, ignore_errors=True)
    os.makedirs(_METRICS_DIR, exist_ok=True)


def on_exit(server):
    """Removes the metrics folder this server made for itself."""
    if _OWN_METRICS_DIR:
        shutil.rmtree(_METRICS_DIR, ignore_errors=True)


def post_worker_init(worker):
    """Logs the keys this worker trusts, starts its dispatcher and its watcher (schedules,
    changes, webhooks) once gevent has patched it and the app has loaded, and a greenlet that
    drains the dispatcher as soon as the worker is told to stop."""
    import logging
    import sys

    import gevent

    from portal import logs
    from portal.engine import pool
    from portal.intake import trust
    from portal.watch import loop

    beacon = worker.wsgi.extensions["beacon"]
    # Pages render and comparisons run on a real thread (portal/offload.py); while one holds the
    # GIL, the event loop's thread gets it back within 1 ms (Python's default is 5 ms), so
    # /health and every other request go on meanwhile.
    sys.setswitchinterval(0.001)
    # gunicorn's own lines (a traceback of a failed request, the access log) hide the secrets the
    # app knows, as the app's do (portal/logs.py).
    for name in ("gunicorn.error", "gunicorn.access"):
        logs.hide_secrets(logging.getLogger(name), beacon.secrets)
    # Which keys may submit is read from this process's environment: say so where it starts.
    worker.log.info(
        "trusted keys: %s", trust.describe(beacon.trusted_keys, beacon.portal_public_key)
    )
    # Schedules are submitted by every worker that runs a watcher (unless BEACON_SCHEDULER=0):
    # a slot's unique row lets exactly one of them submit it.
    worker.beacon_watcher = loop.start_watcher(worker.wsgi)
    dispatcher = pool.start_dispatcher(worker.wsgi)
    worker.beacon_dispatcher = dispatcher
    if dispatcher is None:
        return

    def drain_when_told():
        while worker.alive:
            gevent.sleep(0.1)
        worker.beacon_drain_started = time.monotonic()
        dispatcher.drain()

    gevent.spawn(drain_when_told)


def worker_exit(server, worker):
    """Lets the calls in flight finish within the graceful timeout, then hands back the rest."""
    watcher = getattr(worker, "beacon_watcher", None)
    if watcher is not None:
        watcher.stop(timeout=1.0)
    dispatcher = getattr(worker, "beacon_dispatcher", None)
    if dispatcher is None:
        return
    started = getattr(worker, "beacon_drain_started", None) or time.monotonic()
    left = worker.cfg.graceful_timeout - (time.monotonic() - started) - _HAND_BACK_S
    dispatcher.stop(timeout=max(0.0, left))


def child_exit(server, worker):
    """Drops an exited worker's live gauges (pool slots) from the metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, _METRICS_DIR)
