"""CPU-heavy work run on a real OS thread, so a gevent worker's event loop keeps serving.

Under gevent one greenlet computing for seconds stalls every request, provider call and lease
heartbeat of its process. `run` hands such work (a job's comparison) to a one-thread pool of
real threads, as `portal.compare.similarity` does for embeddings, and waits for it without
blocking the loop. In a process gevent has not patched (tests, the CLI) it calls the function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
_pool = None


def run(function: Callable[..., T], *args, **kwargs) -> T:
    """Returns `function(*args, **kwargs)`, computed off the event loop under gevent."""
    import gevent.monkey

    if not gevent.monkey.is_module_patched("threading"):
        return function(*args, **kwargs)
    global _pool
    if _pool is None:
        from gevent.threadpool import ThreadPool

        # One thread: two comparisons at once would only share the same core, and a queue of
        # them must not starve the loop thread of the GIL.
        _pool = ThreadPool(1)
    return _pool.apply(function, args, kwargs)
