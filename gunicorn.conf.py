"""gunicorn settings for the `web` process: each gevent worker also runs one dispatcher."""

import os

worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Provider calls are awaited by greenlets, never by the request that submitted the job, so the
# default request timeout stays; graceful shutdown leaves time to hand leases back.
graceful_timeout = 20
accesslog = "-"
# The control socket is one path per user (~/.gunicorn/gunicorn.ctl), so two servers on one
# machine would fight over it; nothing here uses gunicornc.
control_socket_disable = True


def post_worker_init(worker):
    """Logs the keys this worker trusts and starts its dispatcher once the app has loaded."""
    from portal import trust
    from portal.engine import pool

    beacon = worker.wsgi.extensions["beacon"]
    # Which keys may submit is read from this process's environment: say so where it starts.
    worker.log.info(
        "trusted keys: %s", trust.describe(beacon.trusted_keys, beacon.portal_public_key)
    )
    worker.beacon_dispatcher = pool.start_dispatcher(worker.wsgi)


def worker_exit(server, worker):
    """Hands this worker's running executions back to the queue before it exits."""
    dispatcher = getattr(worker, "beacon_dispatcher", None)
    if dispatcher is not None:
        dispatcher.stop()
