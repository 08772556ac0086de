"""`flask beacon backfill-receipts`: receipts for executions that ended before the log existed."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from portal import settings
from portal.db import db
from portal.provenance import receipts, tlog


@click.command("backfill-receipts")
@with_appcontext
def backfill_receipts_command():
    """Issues, once, the missing receipts of ended executions, marked as issued late."""
    s = settings.current()
    issued = receipts.issue_missing(s.config, s.log_origin, s.signing_seed, late=True)
    size, root_hash = tlog.head()
    db.session.commit()
    click.echo(f"issued {issued} receipt(s) late; the log now has {size} entries")
    click.echo(f"root hash {tlog.b64(root_hash)}")
