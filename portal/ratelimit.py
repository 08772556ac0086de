"""The limit on job submissions per client address (SPEC section 4: 429 `rate_limited`)."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from .errors import ApiError


def parse_rate(text: str) -> RateLimitItem | None:
    """Parses "30 per minute" (limits' notation); "" means no limit; ValueError otherwise."""
    return parse(text) if text.strip() else None


class SubmissionLimiter:
    """Counts submissions per client in a moving window, in this process's memory."""

    def __init__(self, rate: str):
        self.item = parse_rate(rate)
        self.window = MovingWindowRateLimiter(MemoryStorage())

    def check(self, client: str) -> None:
        """Counts one submission from `client`; raises 429 when it is over the limit."""
        if self.item is None or self.window.hit(self.item, "submit", client):
            return
        reset = self.window.get_window_stats(self.item, "submit", client).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise ApiError(
            429,
            "rate_limited",
            f"more than {self.item} job submissions from {client}; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
