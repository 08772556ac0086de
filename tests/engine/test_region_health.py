"""Region health from recent calls, in GET /api/v1/regions and on the /regions page: a region
whose every call fails says so plainly."""

from __future__ import annotations

import pytest

from tests.support.apps import spec_3x3
from tests.support.html_check import assert_valid_page
from tests.support.workers import Engine, submit, wait_for_job

pytestmark = pytest.mark.live


def test_region_health_after_a_job_with_one_failing_region(
    tmp_path, database_url, make_app, signer
):
    engine = Engine(tmp_path, database_url)
    try:
        providers = engine.three_providers(latency_s=0.05)
        providers["eu-west"].always("404")  # not transient: each answer fails at once
        config = engine.config({r: p.base_url_openai for r, p in providers.items()})
        client = make_app(BEACON_CONFIG=str(config)).test_client()
        idle = client.get("/api/v1/regions").json["items"]
        assert {item["health"]["status"] for item in idle} == {"idle"}

        job_id = submit(client, signer, spec_3x3())
        engine.worker(config)
        job = wait_for_job(client, job_id, timeout=90, engine=engine)
        assert job["status"] == "partial"

        items = {item["id"]: item["health"] for item in client.get("/api/v1/regions").json["items"]}
        for region in ("us-east", "asia-pacific"):
            health = items[region]
            assert health["status"] == "ok"
            assert health["calls"] == 9 and health["failed"] == 0
            assert health["error_rate"] == 0.0
            assert health["p50_latency_ms"] is not None and health["p50_latency_ms"] >= 50
            assert health["last_success_at"].endswith("Z")
        failing = items["eu-west"]
        assert failing == {
            "status": "failing",
            "window_s": 3600,
            "calls": 9,
            "failed": 9,
            "error_rate": 1.0,
            "p50_latency_ms": None,
            "last_success_at": None,
        }

        page = client.get("/regions")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert_valid_page(html)
        row = html.split('data-region="eu-west"', 1)[1].split("</tr>", 1)[0]
        assert 'data-health="failing"' in html
        assert "Failing: all 9 calls failed" in row
        assert "100%" in row and "never" in row
        ok_row = html.split('data-region="us-east"', 1)[1].split("</tr>", 1)[0]
        assert "OK" in ok_row and "0%" in ok_row and " ms" in ok_row
    finally:
        engine.close()
