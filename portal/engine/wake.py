"""Tells this process's dispatchers that work is waiting, so they claim it now.

A dispatcher polls the database every `POLL_S` for work any process may have queued. Work this
process queued itself (a submission, a retry) or a pool slot it just freed need not wait for
that poll: whoever commits it calls `new_work()`, and every dispatcher of this process wakes.
Other processes still find the work at their next poll; waking them would need the database's
own notification, and half a second is within what a queued job may wait.
"""

from __future__ import annotations

import gevent.event

_listening: set[gevent.event.Event] = set()


def listen(event: gevent.event.Event) -> None:
    """Has `new_work()` set `event` until it is forgotten."""
    _listening.add(event)


def forget(event: gevent.event.Event) -> None:
    """Stops setting `event`."""
    _listening.discard(event)


def new_work() -> None:
    """Wakes every dispatcher of this process; call it after the commit that queued the work."""
    for event in list(_listening):
        event.set()
