"""The engine in the test's own process: claim and run executions inline, no worker process.

`run_inline(app)` does what a dispatcher's passes do (claim with a lease, run the execution,
end the job), one execution after another, until nothing claimable is left or `limit`
executions have run. It answers in milliseconds against loopback providers, so engine changes
get fast feedback; `tests/support/workers.py` runs the real worker processes.
"""

from __future__ import annotations

from portal.db import db
from portal.engine import execution, pool
from portal.settings import current

OWNER = "inline-test-worker"


def run_inline(app, limit: int | None = None, owner: str = OWNER) -> list[int]:
    """Runs claimable executions in this process; returns the ids it ran, in order."""
    ran: list[int] = []
    with app.app_context():
        config = current().config
        while limit is None or len(ran) < limit:
            ids = []
            for region in config.regions:
                ids += pool.claim(region, 1, owner, config.execution.lease_s)
                if ids:
                    break
            db.session.commit()
            if not ids:
                break
            execution.run_execution(ids[0], owner, config)
            db.session.remove()
            ran.append(ids[0])
    return ran
