"""A region's `rate_limit`: provider calls started per period, shared by every process.

The counters live in the `limits` storage named by BEACON_RATE_LIMIT_STORAGE (a storage URI
such as `redis://127.0.0.1:6379/0`), the same place as the submission limit's, so every worker
process and instance pointing at it shares one window per region. The default, `memory://`,
keeps the window in each process: then the limit holds per process only.

A moving window: in any span of the period, at most the limit's count of calls start. A call
that finds no free slot is not failed; the execution waits (`RegionRates.take` says how long)
and asks again, never past its job's deadline (portal/execution.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.strategies import MovingWindowRateLimiter

from portal.config import Region
from portal.ratelimit import DEFAULT_STORAGE, build_storage

log = logging.getLogger(__name__)

NAMESPACE = "beacon-region-calls"
# How long to wait before asking the storage again when it could not be reached.
STORAGE_RETRY_S = 1.0
# A storage that does not say when a slot frees (or says "now") is asked again after this.
MIN_WAIT_S = 0.02


class RegionRates:
    """The rate limits of the configured regions, counted in one shared storage."""

    def __init__(self, regions: Iterable[Region], uri: str = DEFAULT_STORAGE):
        self.items: dict[str, RateLimitItem] = {
            r.id: parse(r.rate_limit) for r in regions if r.rate_limit.strip()
        }
        self.uri = uri
        self._limiter: MovingWindowRateLimiter | None = None

    def _window(self) -> MovingWindowRateLimiter:
        # Connected on first use, in the process (and greenlet world) that calls.
        if self._limiter is None:
            self._limiter = MovingWindowRateLimiter(build_storage(self.uri))
        return self._limiter

    def take(self, region_id: str) -> float:
        """Takes a slot for one call in `region_id`: 0.0 when taken (or the region has no
        limit), else the seconds to wait before asking again."""
        item = self.items.get(region_id)
        if item is None:
            return 0.0
        try:
            window = self._window()
            if window.hit(item, NAMESPACE, region_id):
                return 0.0
            reset = window.get_window_stats(item, NAMESPACE, region_id).reset_time
        except StorageError as exc:
            log.warning("rate-limit storage %s unreachable (%s); waiting", self.uri, exc)
            return STORAGE_RETRY_S
        return max(MIN_WAIT_S, reset - time.time())
