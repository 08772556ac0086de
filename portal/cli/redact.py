"""`flask beacon redact`: hides the secrets the portal knows in rows stored before it hid them."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select, update

from portal import settings
from portal.db import db
from portal.judge.models import JobSummary, Judgement
from portal.models import Answer, Execution

# Every stored column a provider's words reach besides answers' outputs (whose hashes the
# receipts sign: an output is never rewritten after it is stored).
COLUMNS = (
    Answer.error,
    Execution.error,
    Judgement.error,
    Judgement.reply,
    JobSummary.error,
    JobSummary.reply,
)
BATCH = 500


@click.command("redact")
@with_appcontext
def redact_command():
    """Hides every secret of the running configuration in stored errors and judge replies."""
    secrets = settings.current().secrets
    total = 0
    for column in COLUMNS:
        table = column.class_
        key = table.__mapper__.primary_key[0]
        last, changed = None, 0
        while True:
            query = select(key, column).where(column.is_not(None)).order_by(key).limit(BATCH)
            if last is not None:
                query = query.where(key > last)
            rows = db.session.execute(query).all()
            if not rows:
                break
            for row_id, text in rows:
                scrubbed = secrets.scrub(text)
                if scrubbed != text:
                    db.session.execute(
                        update(table).where(key == row_id).values({column.key: scrubbed})
                    )
                    changed += 1
            last = rows[-1][0]
            db.session.commit()
        click.echo(f"{table.__tablename__}.{column.key}: {changed} value(s) had a secret hidden")
        total += changed
    click.echo(f"{total} value(s) in all")
