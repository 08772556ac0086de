"""CPU-heavy work run on a real OS thread, so a gevent worker's event loop keeps serving.

Under gevent one greenlet computing for seconds stalls every request, provider call and lease
heartbeat of its process. `run` hands such work (a job's comparison) to a one-thread pool of
real threads, as `portal.compare.similarity` does for embeddings, and waits for it without
blocking the loop. In a process gevent has not patched (tests, the CLI) it calls the function.

`in_background` is the same on a second thread, for work nobody is waiting to see (the
comparison computed when a job ends): a request's page or JSON, handed to `run`, never queues
behind it; the two threads share the core through the GIL's switch interval instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_pools: dict[str, object] = {}


def run(function: Callable[..., T], *args, **kwargs) -> T:
    """Returns `function(*args, **kwargs)`, computed off the event loop under gevent."""
    return _apply("requests", function, args, kwargs)


def in_background(function: Callable[..., T], *args, **kwargs) -> T:
    """`run` on the background thread, for work no request waits for."""
    return _apply("background", function, args, kwargs)


def _apply(name: str, function, args, kwargs):
    import gevent.monkey

    if not gevent.monkey.is_module_patched("threading"):
        return function(*args, **kwargs)
    if name not in _pools:
        from gevent.threadpool import ThreadPool

        # One thread each: two comparisons at once would only share the same core, and a queue
        # of them must not starve the loop thread of the GIL. Work a thread hands to `run`
        # runs in place (gevent applies it at once from a thread other than the loop's).
        _pools[name] = ThreadPool(1)
    return _pools[name].apply(function, args, kwargs)
