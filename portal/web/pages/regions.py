"""The /regions page: each configured region's health from its recent provider calls."""

from __future__ import annotations

from flask import render_template

from portal import settings
from portal.engine.region_health import WINDOW, region_health
from portal.web.pages.blueprint import bp


@bp.get("/regions")
def list_regions():
    """Shows each configured region with its health over the last hour."""
    config = settings.current().config
    health = region_health(config)
    rows = [{"region": r, "health": health[r.id]} for r in config.regions.values()]
    minutes = int(WINDOW.total_seconds() // 60)
    return render_template("regions.html", rows=rows, window_minutes=minutes)
