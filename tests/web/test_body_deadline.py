"""Issue 20, item 1, in process: a request body that has not arrived whole by its deadline is
answered 408 `body_timeout`, however steadily its bytes trickle in, and only `upload_slots`
bodies at a time get the full deadline. (tests/web/test_slow_uploads.py holds the same against
gunicorn with 1,100 slow clients.)"""

from __future__ import annotations

import time

from tests.support.apps import THREE_REGIONS


class Trickle:
    """A body that gives one byte per read, `pause` seconds apart: never idle for long."""

    def __init__(self, size: int, pause: float):
        self.left, self.pause = size, pause

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        time.sleep(self.pause)
        self.left -= 1
        return b" "


def limits_config(tmp_path, **intake):
    lines = [THREE_REGIONS.read_text("utf-8"), "[intake]"]
    lines += [f"{key} = {value}" for key, value in intake.items()]
    path = tmp_path / "deadline.toml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def post_trickle(client, path: str, size: int, pause: float, **kwargs):
    return client.post(
        path,
        content_type=kwargs.pop("content_type", "application/json"),
        environ_overrides={"wsgi.input": Trickle(size, pause), "CONTENT_LENGTH": str(size)},
        **kwargs,
    )


def test_a_trickling_body_is_cut_at_its_deadline_with_408(make_app, tmp_path):
    config = limits_config(tmp_path, body_timeout_s=1)
    client = make_app(BEACON_CONFIG=str(config)).test_client()
    started = time.monotonic()
    # A byte every 20 ms: never silent long enough for a timeout between reads.
    response = post_trickle(client, "/api/v1/jobs", 10_000, 0.02)
    took = time.monotonic() - started
    assert response.status_code == 408, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "body_timeout"
    assert took < 5, took
    # A page form's body is read under the same deadline (by the CSRF check): its error page.
    page = post_trickle(
        client, "/jobs/new", 10_000, 0.02, content_type="application/x-www-form-urlencoded"
    )
    assert page.status_code == 408 and "<html" in page.get_data(as_text=True).lower()
    # A whole body is read as before.
    assert (
        client.post("/api/v1/jobs", data="{}", content_type="application/json").status_code == 401
    )


def test_bodies_past_the_slots_get_the_short_deadline(make_app, tmp_path):
    config = limits_config(tmp_path, body_timeout_s=30, upload_slots=1)
    app = make_app(BEACON_CONFIG=str(config))
    deadlines = app.wsgi_app
    assert deadlines.slots.acquire(blocking=False)  # the one slot, taken by a slow upload
    try:
        started = time.monotonic()
        response = post_trickle(app.test_client(), "/api/v1/jobs", 10_000, 0.02)
        assert response.status_code == 408
        assert time.monotonic() - started < 10
    finally:
        deadlines.slots.release()
    # The slot is free again: the full deadline, so this slow body is read to its end.
    response = post_trickle(app.test_client(), "/api/v1/jobs", 60, 0.02)
    assert response.status_code == 400, response.get_data(as_text=True)
