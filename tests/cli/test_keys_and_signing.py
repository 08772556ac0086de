"""`flask beacon keygen | sign | verify`: from nothing to a signed, accepted job."""

from __future__ import annotations

import json
import re

from tests.support.apps import ROOT, SHARED, THREE_REGIONS


def test_keygen_sign_submit(make_app, tmp_path, monkeypatch):
    runner = make_app().test_cli_runner()
    out = runner.invoke(args=["beacon", "keygen"]).output
    seed = re.search(r"BEACON_USER_KEY=(\S+)", out).group(1)
    trusted = re.search(r"BEACON_TRUSTED_KEYS='(.+)'", out).group(1)
    assert json.loads(trusted)[0]["status"] == "active"

    monkeypatch.setenv("BEACON_USER_KEY", seed)
    signed_path = tmp_path / "signed.json"
    spec = ROOT / "scripts" / "3-model-verification-job.json"
    result = runner.invoke(args=["beacon", "sign", "--fresh", str(spec), "-o", str(signed_path)])
    assert result.exit_code == 0, result.output
    signed = json.loads(signed_path.read_text())
    assert signed["metadata"]["nonce"] and signed["public_key"] in trusted
    assert signed["created_at"].endswith("Z")

    app = make_app(BEACON_CONFIG=str(THREE_REGIONS), BEACON_TRUSTED_KEYS=trusted)
    verify = app.test_cli_runner().invoke(args=["beacon", "verify", str(signed_path)])
    assert verify.exit_code == 0 and "beacon-jcs-v1" in verify.output
    assert "is trusted here" in verify.output
    response = app.test_client().post(
        "/api/v1/jobs", data=signed_path.read_bytes(), content_type="application/json"
    )
    assert response.status_code == 202, response.json
    assert len(response.json["job"]["executions"]) == 9


def test_verify_reports_legacy_scheme_and_untrusted_key(make_app):
    runner = make_app().test_cli_runner()
    result = runner.invoke(
        args=["beacon", "verify", str(SHARED / "compat" / "portal-jobspec.signed.json")]
    )
    assert "legacy-c2" in result.output and "NOT trusted" in result.output
    assert result.exit_code == 3
    bad = runner.invoke(
        args=["beacon", "verify", str(SHARED / "compat" / "invalid-signature.json")]
    )
    assert bad.exit_code != 0 and "does not verify" in bad.output


def test_sign_refuses_a_bad_key(make_app, tmp_path):
    key = tmp_path / "key"
    key.write_text("bm90IGEga2V5")
    runner = make_app().test_cli_runner()
    spec = ROOT / "scripts" / "3-model-verification-job.json"
    result = runner.invoke(args=["beacon", "sign", "--key-file", str(key), str(spec)])
    assert result.exit_code != 0 and "bad signing key" in result.output
