"""The changes as an Atom 1.0 feed (RFC 4287), written with `feedgen`: the newest changes, one
entry each, with a stable id, its time, a title naming model, region, language and question,
and a link to the cell page that shows the answers side by side."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from feedgen.feed import FeedGenerator

from portal.times import utcnow

WHAT = {
    "class": "its class changed",
    "label": "the judge's label changed",
    "text": "its text changed",
    "served_by": "the provider said it is another model",
}


def entry_id(portal_key: str, change_id: int) -> str:
    """A change's Atom id: a UUID from this portal's public key and the change's id, so it
    stays the same whatever host name the feed is read through."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"beacon:{portal_key}:change:{change_id}").urn


def title(change: dict) -> str:
    """Names the model, region, language and question, and what changed."""
    return (
        f"{change['model_id']} in {change['region']} ({change['language']}), "
        f"{change['question_id']}: {WHAT.get(change['kind'], change['kind'])}"
    )


def summary(change: dict) -> str:
    """Says what changed since which job, in one or two sentences."""
    since = f"Since job {change['previous_job_id']}, in job {change['job_id']}: "
    if change["kind"] == "class":
        said = f"class {change['from_class']} → {change['to_class']}."
    elif change["kind"] == "label":
        said = f"judge label {change['from_label']} → {change['to_label']}."
    elif change["kind"] == "text":
        said = f"the text is {change['similarity']:.2f} similar ({change['measure']})."
    else:
        said = f"served by {served(change['from_served'])} → {served(change['to_served'])}."
    return since + said


def served(said: dict | None) -> str:
    """What a provider said about itself, in words: its model name and fingerprint."""
    said = said or {}
    fingerprint = said.get("system_fingerprint")
    return f"{said.get('model') or 'an unnamed model'}" + (
        f" (fingerprint {fingerprint})" if fingerprint else ""
    )


def atom(
    changes: list[dict],
    *,
    feed_url: str,
    home_url: str,
    portal_key: str,
    cell_url: Callable[[dict], str],
    subtitle: str,
) -> bytes:
    """Returns the feed's XML for `changes` (newest first)."""
    fg = FeedGenerator()
    fg.id(feed_url)
    fg.title("Beacon: answers that changed")
    fg.subtitle(subtitle)
    fg.author({"name": "Beacon portal"})
    fg.link(href=feed_url, rel="self", type="application/atom+xml")
    fg.link(href=home_url, rel="alternate", type="text/html")
    fg.updated(_time(changes[0]["detected_at"]) if changes else utcnow())
    # feedgen puts the entry added last first: add the oldest first.
    for change in reversed(changes):
        entry = fg.add_entry()
        entry.id(entry_id(portal_key, change["id"]))
        entry.title(title(change))
        entry.updated(_time(change["detected_at"]))
        entry.link(href=cell_url(change), rel="alternate", type="text/html")
        entry.summary(summary(change))
    return fg.atom_str(pretty=True)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
