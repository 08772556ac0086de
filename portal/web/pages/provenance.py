"""What the pages show of provenance: an execution's receipt, the log's head in the footer.

Template globals rather than view code, so the execution page, its htmx fragment and the
footer of every page get them without the page views changing.
"""

from __future__ import annotations

import json
import shlex

from flask import request
from sqlalchemy.exc import SQLAlchemyError

from portal import settings
from portal.db import db
from portal.provenance import receipts, tlog
from portal.web.pages.blueprint import bp


@bp.app_template_global("log_head")
def log_head() -> dict | None:
    """Returns the log's current size and root hash (standard base64); None if unreadable."""
    try:
        size, root_hash = tlog.head()
    except SQLAlchemyError:
        # Error pages render this footer too, also when the database is what failed.
        db.session.rollback()
        return None
    return {"size": size, "root_hash": tlog.b64(root_hash)}


@bp.app_template_global("receipt_view")
def receipt_view(execution_id: int) -> dict | None:
    """Returns what the execution page shows of its newest receipt, or None before it ends."""
    receipt = receipts.latest_receipt(execution_id)
    if receipt is None:
        return None
    public_key = settings.current().portal_public_key
    command = [
        "python3",
        "scripts/verify_receipt.py",
        "--portal",
        request.host_url.rstrip("/"),
        "--execution",
        str(execution_id),
        "--public-key",
        public_key,
    ]
    return {
        **receipt.to_dict(),
        "document": json.dumps(json.loads(receipt.body), indent=2, ensure_ascii=False),
        "signature": receipt.signature,
        "public_key": public_key,
        "verify_command": shlex.join(command),
    }
