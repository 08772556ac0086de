import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from portal.intake.trust import TrustedKey, TrustError, check_trust, parse_trusted_keys
from portal.web.errors import STATUS_OF_KIND

KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(1, 33))).decode()
PORTAL = base64.b64encode(bytes(range(2, 34))).decode()
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def entries(*items) -> str:
    return json.dumps(list(items))


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_empty_means_no_keys(raw):
    assert parse_trusted_keys(raw) == []


def test_comma_separated_keys():
    keys = parse_trusted_keys(f" {KEY_A} , {KEY_B},")
    assert keys == [
        TrustedKey(KEY_A[:8], KEY_A, "active", None, None),
        TrustedKey(KEY_B[:8], KEY_B, "active", None, None),
    ]


def test_json_entries():
    raw = entries(
        {
            "kid": "ci",
            "public_key": KEY_A,
            "status": "active",
            "not_before": "2026-01-01T00:00:00Z",
            "not_after": "2027-01-01T00:00:00+01:00",
        },
        {"public_key": KEY_B, "status": "revoked", "not_before": None},
    )
    first, second = parse_trusted_keys(raw)
    assert first.kid == "ci"
    assert first.not_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert first.not_after == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert second == TrustedKey(KEY_B[:8], KEY_B, "revoked", None, None)


def test_time_without_offset_is_utc():
    (key,) = parse_trusted_keys(entries({"public_key": KEY_A, "not_after": "2027-01-01T00:00:00"}))
    assert key.not_after == datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "raw,fragment",
    [
        ("not-base64!", "entry 0: public_key 'not-base64!' is not standard base64"),
        (f"{KEY_A},{base64.b64encode(bytes(31)).decode()}", "entry 1: public_key decodes to 31"),
        ("[", "not valid JSON"),
        (entries("just a string"), "entry 0: expected an object"),
        (entries({"kid": "x"}), "entry 0: public_key is missing"),
        (entries({"kid": "x", "public_key": KEY_A, "status": "paused"}), "(x): unknown status"),
        (
            entries({"kid": "x", "public_key": KEY_A, "not_before": "yesterday"}),
            "(x): not_before 'yesterday' is not an ISO-8601 time",
        ),
        (
            entries({"kid": "x", "public_key": KEY_A, "not_after": 1700000000}),
            "(x): not_after must be an ISO-8601 time string",
        ),
        (
            entries(
                {
                    "kid": "x",
                    "public_key": KEY_A,
                    "not_before": "2027-01-01T00:00:00Z",
                    "not_after": "2026-01-01T00:00:00Z",
                }
            ),
            "not_after is before not_before",
        ),
        (entries({"kid": "x", "public_key": KEY_A}, {"kid": "x", "public_key": KEY_B}), "kid x"),
    ],
)
def test_bad_input_names_entry_and_problem(raw, fragment):
    with pytest.raises(ValueError) as info:
        parse_trusted_keys(raw)
    assert fragment in str(info.value)


def test_portal_key_always_trusted():
    key = check_trust(PORTAL, [], PORTAL, NOW)
    assert key.kid == "portal"
    assert key.status == "active"


def test_listed_active_key_trusted():
    keys = parse_trusted_keys(entries({"kid": "ci", "public_key": KEY_A}))
    assert check_trust(KEY_A, keys, PORTAL, NOW).kid == "ci"


def test_comma_listed_key_trusted_without_portal_key():
    assert check_trust(KEY_B, parse_trusted_keys(KEY_B), None, NOW).public_key == KEY_B


def test_unlisted_key_refused():
    with pytest.raises(TrustError) as info:
        check_trust(KEY_B, parse_trusted_keys(KEY_A), PORTAL, NOW)
    assert info.value.code == "untrusted_key"
    assert STATUS_OF_KIND[info.value.kind] == 403
    assert KEY_B in info.value.message


def test_no_keys_and_no_portal_key_refuses():
    with pytest.raises(TrustError) as info:
        check_trust(KEY_A, [], None, NOW)
    assert info.value.code == "untrusted_key"


def test_revoked_key_refused():
    keys = parse_trusted_keys(entries({"kid": "old", "public_key": KEY_A, "status": "revoked"}))
    with pytest.raises(TrustError) as info:
        check_trust(KEY_A, keys, PORTAL, NOW)
    assert info.value.code == "revoked_key"
    assert "old" in info.value.message


def window(not_before=None, not_after=None) -> list[TrustedKey]:
    return [TrustedKey("w", KEY_A, "active", not_before, not_after)]


def test_expired_key_refused():
    with pytest.raises(TrustError) as info:
        check_trust(KEY_A, window(not_after=NOW - timedelta(seconds=1)), PORTAL, NOW)
    assert info.value.code == "expired_key"
    assert "expired at 2026-11-28T11:59:59Z" in info.value.message


def test_not_yet_valid_key_refused_as_expired():
    with pytest.raises(TrustError) as info:
        check_trust(KEY_A, window(not_before=NOW + timedelta(hours=1)), PORTAL, NOW)
    assert info.value.code == "expired_key"
    assert "not valid before" in info.value.message


def test_window_bounds_are_inclusive():
    assert check_trust(KEY_A, window(NOW, NOW), PORTAL, NOW).kid == "w"


def test_window_compares_across_offsets():
    plus_two = timezone(timedelta(hours=2))
    keys = window(not_after=datetime(2026, 11, 28, 13, 0, tzinfo=plus_two))  # 11:00 UTC
    with pytest.raises(TrustError):
        check_trust(KEY_A, keys, PORTAL, NOW)


def test_naive_now_is_utc():
    assert check_trust(KEY_A, window(not_after=NOW), PORTAL, NOW.replace(tzinfo=None)).kid == "w"


def test_rotation_any_valid_entry_trusts():
    keys = [
        TrustedKey("old", KEY_A, "revoked", None, None),
        TrustedKey("new", KEY_A, "active", NOW - timedelta(days=1), None),
    ]
    assert check_trust(KEY_A, keys, PORTAL, NOW).kid == "new"
