"""`flask beacon regions check`: one short prompt to each configured (region, model) pair."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import click
from flask.cli import AppGroup

from portal import settings
from portal.providers import check

regions_group = AppGroup("regions", help="The configured regions.")
PARALLEL = 8
COLUMNS = ("region", "model", "status", "latency", "answered as", "what to do")


@regions_group.command("check")
@click.option("--region", "region_ids", multiple=True, help="check only this region (repeatable)")
@click.option("--model", "model_ids", multiple=True, help="check only this model (repeatable)")
@click.option("--timeout", default=30.0, show_default=True, help="seconds per call")
def check_command(region_ids: tuple[str, ...], model_ids: tuple[str, ...], timeout: float):
    """Sends one short prompt to each (region, model) and prints how each answered.

    Exits 1 when any pair failed. Keys are never printed."""
    config = settings.current().config
    regions = [_pick(config.regions, r, "region") for r in region_ids] or list(
        config.regions.values()
    )
    models = [_pick(config.models, m, "model") for m in model_ids] or list(config.models.values())
    pairs = [(region, model) for region in regions for model in models]
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(pairs) or 1)) as pool:
        results = list(pool.map(lambda pair: check.check_pair(*pair, timeout), pairs))
    rows = [
        (
            r.region,
            r.model,
            r.status,
            f"{r.latency_ms} ms" if r.latency_ms is not None else "-",
            r.answered_as or "-",
            r.hint or "",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS) - 1)]
    for row in [COLUMNS, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())
    failed = sum(not r.ok for r in results)
    click.echo(f"{len(results) - failed} of {len(results)} pairs answered.")
    if failed:
        raise SystemExit(1)


def _pick(table: dict, wanted: str, what: str):
    if wanted not in table:
        known = ", ".join(table) or "none"
        raise click.BadParameter(f"no {what} {wanted!r} (known: {known})", param_hint=f"--{what}")
    return table[wanted]
