"""The limit on job submissions per client address (SPEC section 4: 429 `rate_limited`).

Counters live where `BEACON_RATE_LIMIT_STORAGE` says (a `limits` storage URI): `memory://`
(the default) keeps them in each process, so N processes let N times the limit through;
`redis://host:6379/0` makes one counter for every worker and instance. When that storage
cannot be reached, submissions are never refused for it: the limiter counts in this
process's memory instead, says so in the log, and goes back to the shared storage once it
answers again.
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem, parse
from limits.errors import ConfigurationError, StorageError
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from portal.errors import RateLimited

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "memory://"
# A Redis that does not answer must not hold a submission for long.
REDIS_TIMEOUT_S = 1.0
# After a failure the shared storage is tried again no sooner than this.
RETRY_SHARED_S = 5.0


def parse_rate(text: str) -> RateLimitItem | None:
    """Parses "30 per minute" (limits' notation); "" means no limit; ValueError otherwise."""
    return parse(text) if text.strip() else None


def build_storage(uri: str | None) -> Storage:
    """Returns the `limits` storage for `uri` (memory:// when empty); ValueError when the URI
    names no storage `limits` knows. Shared by every limit that must hold across processes."""
    uri = (uri or "").strip() or DEFAULT_STORAGE
    # Driver errors (a Redis that went away) arrive as limits' StorageError.
    options: dict = {"wrap_exceptions": True}
    if uri.startswith(("redis://", "rediss://", "redis+unix://")):
        options.update(socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
    try:
        return storage_from_string(uri, **options)
    except (ConfigurationError, ValueError) as exc:
        raise ValueError(f"not a usable rate-limit storage URI ({exc})") from None


class SubmissionLimiter:
    """Counts submissions per client in a moving window, in the configured storage.

    Other limits per client address use the same class under their own `namespace` and `noun`
    (the admin-token throttle: portal/web/admin.py)."""

    def __init__(
        self,
        rate: str,
        storage_uri: str | None = None,
        *,
        namespace: str = "submit",
        noun: str = "submissions",
        refusal: str = "job submissions",
    ):
        # `noun` names what is counted in the log, `refusal` in the 429's message.
        self.namespace, self.noun, self.refusal = namespace, noun, refusal
        self.item = parse_rate(rate)
        self.storage = build_storage(storage_uri)
        self.window = MovingWindowRateLimiter(self.storage)
        self.fallback = MovingWindowRateLimiter(MemoryStorage())
        self.shared = not isinstance(self.storage, MemoryStorage)
        self._failed_at: float | None = None

    def check(self, client: str) -> None:
        """Counts one submission from `client`; raises 429 when it is over the limit."""
        if self.item is None:
            return
        window = self._window()
        # One atomic hit per attempt (a Lua script on Redis): concurrent attempts from many
        # workers cannot all pass a check made before they are counted.
        try:
            allowed = window.hit(self.item, self.namespace, client)
            reset = None if allowed else window.get_window_stats(self.item, self.namespace, client)
        except StorageError as exc:
            if window is self.fallback:
                raise
            self._fail(exc.storage_error)
            window = self.fallback
            allowed = window.hit(self.item, self.namespace, client)
            reset = None if allowed else window.get_window_stats(self.item, self.namespace, client)
        if allowed:
            return
        wait = max(1, math.ceil(reset.reset_time - time.time()))
        raise RateLimited(
            "rate_limited",
            f"more than {self.item} {self.refusal} from {client}; try again in {wait} s",
            wait,
        )

    def _window(self) -> MovingWindowRateLimiter:
        if self._failed_at is None:
            return self.window
        if time.monotonic() - self._failed_at >= RETRY_SHARED_S:
            self._failed_at = None
            log.warning("trying the shared rate-limit storage again")
            return self.window
        return self.fallback

    def _fail(self, exc: Exception) -> None:
        self._failed_at = time.monotonic()
        log.warning(
            "the shared rate-limit storage is unreachable (%s); counting %s in this "
            "process's memory until it answers",
            type(exc).__name__,
            self.noun,
        )
