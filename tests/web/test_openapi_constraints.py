"""The OpenAPI document's request constraints come from the validators' own constants: a change
of a limit, a pattern, a field's type or a status list changes the document with it."""

from __future__ import annotations

import re

from portal.config_tables import PROVIDER_KINDS
from portal.intake import signing
from portal.intake.jobspec import CONSTRAINT_TYPES, FIELD_TYPES, JOB_ID_PATTERN, MAX_RUNS
from portal.status import JOB_STATUSES, RUN_STATUSES
from portal.web import paging
from portal.web.api import openapi
from portal.web.api.openapi_schemas import base64_pattern, json_type

DOC = openapi.document("test")
JOBSPEC = DOC["components"]["schemas"]["JobSpec"]["properties"]


def parameter(path: str, name: str) -> dict:
    params = DOC["paths"][path]["get"]["parameters"]
    return next(p for p in params if p["name"] == name)["schema"]


def test_jobspec_fields_and_types_are_the_validators():
    assert set(JOBSPEC) == set(FIELD_TYPES) | {"jobspec"}
    for name, types in FIELD_TYPES.items():
        assert JOBSPEC[name]["type"] == json_type(types), name
    constraints = JOBSPEC["constraints"]["properties"]
    assert {n: c["type"] for n, c in constraints.items()} == {
        n: json_type(t) for n, t in CONSTRAINT_TYPES.items()
    }
    assert JOBSPEC["runs"]["maximum"] == MAX_RUNS and JOBSPEC["runs"]["minimum"] == 1
    assert JOBSPEC["id"]["pattern"] == JOB_ID_PATTERN.pattern


def test_signature_patterns_accept_real_signatures_only(signer):
    signed = signer.sign({"version": "v1", "models": ["m"]})
    for field, size in (("signature", signing.SIGNATURE_BYTES), ("public_key", signing.KEY_BYTES)):
        pattern = re.compile(JOBSPEC[field]["pattern"])
        assert pattern.pattern == base64_pattern(size)
        assert pattern.fullmatch(signed[field])
        assert not pattern.fullmatch(signed[field][:-4])


def test_listing_limits_cursor_and_status_filters_are_the_apis():
    for path in ("/api/v1/jobs", "/api/v1/executions"):
        limit = parameter(path, "limit")
        assert (limit["minimum"], limit["maximum"]) == (1, paging.MAX_LIMIT)
        assert parameter(path, "cursor")["pattern"] == f"^{paging.DIGITS.pattern}$"
    assert parameter("/api/v1/jobs", "status")["enum"] == [*JOB_STATUSES, ""]
    assert parameter("/api/v1/executions", "status")["enum"] == [*RUN_STATUSES, ""]
    region = DOC["components"]["schemas"]["Region"]["properties"]
    assert region["provider"]["enum"] == list(PROVIDER_KINDS)


def test_the_api_refuses_what_the_document_refuses(client):
    too_many = client.get(f"/api/v1/jobs?limit={paging.MAX_LIMIT + 1}")
    assert too_many.status_code == 400 and too_many.json["error"]["code"] == "invalid_parameter"
    assert client.get(f"/api/v1/jobs?limit={paging.MAX_LIMIT}").status_code == 200
    bad_status = client.get("/api/v1/executions?status=partial")
    assert bad_status.status_code == 400
    assert client.get("/api/v1/jobs?status=partial").status_code == 200
