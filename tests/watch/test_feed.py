"""The feed of changes (SPEC section 12): Atom 1.0 as RFC 4287 requires it, newest first, each
entry with a stable id and a link to its cell page, and `?question_id=` for one question."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from tests.support.watching import QUESTIONS, REFUSAL, Runs

ATOM = "{http://www.w3.org/2005/Atom}"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def runs(tmp_path, make_app, signer):
    runs = Runs(tmp_path, make_app, signer)
    yield runs
    runs.close()


def parse_atom(response) -> ET.Element:
    """Parses a feed and checks what RFC 4287 requires of it and of each entry."""
    assert response.status_code == 200
    assert response.mimetype == "application/atom+xml"
    feed = ET.fromstring(response.data)
    assert feed.tag == f"{ATOM}feed"
    for element in (feed, *feed.findall(f"{ATOM}entry")):
        for name in ("id", "title", "updated"):
            assert len(element.findall(f"{ATOM}{name}")) == 1, name  # exactly one each
        assert RFC3339.match(element.find(f"{ATOM}updated").text)
        assert urlsplit(element.find(f"{ATOM}id").text).scheme  # an IRI
    # Every entry has an author when the feed has one (4.1.1).
    assert feed.find(f"{ATOM}author/{ATOM}name").text
    assert feed.find(f"{ATOM}link[@rel='self']") is not None
    return feed


def test_the_feed_is_atom_and_links_each_entry_to_its_cell(runs):
    empty = parse_atom(runs.client.get("/feeds/changes.atom"))
    assert empty.findall(f"{ATOM}entry") == []
    runs.run()
    runs.say["asia-pacific"] = lambda region, prompt: REFUSAL
    runs.run()
    runs.say["us-east"] = lambda region, prompt: REFUSAL
    runs.run(questions=QUESTIONS[1:])
    changes = runs.changes()
    feed = parse_atom(runs.client.get("/feeds/changes.atom"))
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == len(changes) == 3
    updated = [datetime.fromisoformat(e.find(f"{ATOM}updated").text) for e in entries]
    assert updated == sorted(updated, reverse=True)
    for entry, change in zip(entries, changes, strict=True):
        title = entry.find(f"{ATOM}title").text
        for part in (
            change["model_id"],
            change["region"],
            change["language"],
            change["question_id"],
        ):
            assert part in title
        # A link without rel is the entry's alternate (RFC 4287 4.2.7.2).
        (link,) = [
            e.get("href")
            for e in entry.findall(f"{ATOM}link")
            if e.get("rel") in (None, "alternate")
        ]
        path = urlsplit(link).path
        assert path == (
            f"/jobs/{change['job_id']}/models/{change['model_id']}"
            f"/questions/{change['question_index']}"
        )
        assert runs.client.get(path).status_code == 200
    again = parse_atom(runs.client.get("/feeds/changes.atom"))
    ids = [e.find(f"{ATOM}id").text for e in entries]
    assert ids == [e.find(f"{ATOM}id").text for e in again.findall(f"{ATOM}entry")]
    assert len(set(ids)) == 3 and all(i.startswith("urn:uuid:") for i in ids)
    one = parse_atom(runs.client.get(f"/feeds/changes.atom?question_id={QUESTIONS[0]}"))
    assert len(one.findall(f"{ATOM}entry")) == 1
    assert runs.client.get("/feeds/changes.atom?question=x").status_code == 400
