import base64
import copy
import json

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from portal.intake import signing
from portal.intake.signing import SignatureError
from tests.support.apps import SHARED

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENVELOPE = ("signature", "public_key")
SEED = bytes(range(32))


LEGACY_FILES = {
    "legacy-c0": "jobspec-who-are-you.signed.json",
    "legacy-c1": "3-model-verification-job.signed.json",
    "legacy-c2": "portal-jobspec.signed.json",
}


def load_compat(name: str) -> dict:
    body = signing.load_json((SHARED / "compat" / name).read_bytes())
    return body["jobspec"] if "jobspec" in body else body


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
specs = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in ENVELOPE), values, min_size=1, max_size=6
)


def leaf_paths(value, path=()):
    """Yield the path of every scalar or empty container in value."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))
    else:
        yield path


def dict_paths(value, path=()):
    """Yield the path of every object in value, value itself included."""
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from dict_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from dict_paths(item, (*path, index))


def get(value, path):
    for step in path:
        value = value[step]
    return value


def refused_unless_same_bytes(spec, original: signing.Verified) -> None:
    """Assert that spec is refused, or under legacy-c2 only, matches the original bytes."""
    with pytest.raises(SignatureError):
        signing.verify(spec, allow_legacy=False)
    # legacy-c2 ignores top-level id and created_at and drops null, "" and {} values, so an
    # edit that only adds such values can still match the same bytes; the signed bytes, and
    # so the job's identity, are then unchanged.
    try:
        verified = signing.verify(spec)
    except SignatureError as exc:
        assert exc.code == "invalid_signature"
    else:
        assert verified.scheme == "legacy-c2"
        assert verified.spec_hash == original.spec_hash


def refused(spec) -> bool:
    try:
        signing.verify(spec)
    except SignatureError as exc:
        assert exc.code == "invalid_signature"
        return True
    return False


@SETTINGS
@given(specs)
def test_signed_specs_verify(spec):
    signed = signing.sign(spec, SEED)
    assert signing.verify(signed).scheme == "beacon-jcs-v1"
    received = signing.load_json(json.dumps(signed).encode("utf-8"))
    assert signing.verify(received).spec_hash == signing.verify(signed).spec_hash


@SETTINGS
@given(specs, st.data())
def test_changing_a_leaf_never_verifies(spec, data):
    signed = signing.sign(spec, SEED)
    path = data.draw(st.sampled_from([p for p in leaf_paths(spec) if p]))
    new = data.draw(values)
    # 1 and 1.0 are the same JSON number; only a different value is a change.
    assume(rfc8785.dumps(new) != rfc8785.dumps(get(spec, path)))
    original = signing.verify(signed)
    get(signed, path[:-1])[path[-1]] = new
    refused_unless_same_bytes(signed, original)


@SETTINGS
@given(specs, st.data())
def test_adding_a_key_never_verifies(spec, data):
    signed = signing.sign(spec, SEED)
    original = signing.verify(signed)
    path = data.draw(st.sampled_from(list(dict_paths(spec))))
    target = get(signed, path)
    key = data.draw(st.text(max_size=8).filter(lambda k: k not in target))
    assume(path or key not in ENVELOPE)
    target[key] = data.draw(values)
    refused_unless_same_bytes(signed, original)


@SETTINGS
@given(specs, st.data())
def test_removing_a_key_never_verifies(spec, data):
    signed = signing.sign(spec, SEED)
    paths = [p for p in dict_paths(spec) if get(spec, p)]
    path = data.draw(st.sampled_from(paths))
    target = get(signed, path)
    del target[data.draw(st.sampled_from(sorted(k for k in target if path or k not in ENVELOPE)))]
    assert refused(signed)


# Fields the legacy forms leave unsigned: changing them is not a change to signed content.
UNSIGNED = {
    "legacy-c0": {"signature", "public_key"},
    "legacy-c1": {"id", "signature", "public_key"},
}
UNSIGNED["legacy-c2"] = UNSIGNED["legacy-c1"] | {"created_at"}
# legacy-c2 drops keys holding these, so they never make a visible change.
EMPTY = (None, "", {})
distinct = st.text(min_size=1, max_size=10) | st.integers(min_value=1, max_value=10**6)


@pytest.mark.parametrize("scheme", sorted(LEGACY_FILES))
@SETTINGS
@given(data=st.data())
def test_mutating_a_legacy_file_never_verifies(scheme, data):
    original = load_compat(LEGACY_FILES[scheme])
    assert signing.verify(original).scheme == scheme
    spec = copy.deepcopy(original)
    signed_paths = [p for p in leaf_paths(spec) if p and p[0] not in UNSIGNED[scheme]]
    signed_paths = [p for p in signed_paths if get(spec, p) not in EMPTY]
    action = data.draw(st.sampled_from(["change", "add", "remove"]))
    if action == "change":
        path = data.draw(st.sampled_from(signed_paths))
        new = data.draw(distinct)
        assume(new != get(spec, path))
        get(spec, path[:-1])[path[-1]] = new
    elif action == "add":
        path = data.draw(st.sampled_from(list(dict_paths(spec))))
        target = get(spec, path)
        key = data.draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in target))
        assume(path or key not in UNSIGNED[scheme])
        target[key] = data.draw(distinct)
    else:
        path = data.draw(st.sampled_from([p for p in signed_paths if isinstance(p[-1], str)]))
        del get(spec, path[:-1])[path[-1]]
    assert refused(spec)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_load_json_raises_only_value_error(raw):
    try:
        signing.load_json(raw)
    except ValueError:
        pass


json_fragments = st.sampled_from(['{"a":', "[1,", "NaN", '"\\ud800"', "1e999", '{"a":1,"a":2}'])


@settings(max_examples=100, deadline=None)
@given(st.lists(json_fragments | st.text(max_size=5), max_size=6).map("".join))
def test_load_json_on_json_like_text_raises_only_value_error(text):
    try:
        signing.load_json(text)
    except ValueError:
        pass


b64 = st.binary(min_size=30, max_size=66).map(lambda b: base64.b64encode(b).decode())
envelope_values = (
    b64 | st.text(max_size=90) | st.none() | st.integers() | st.lists(st.integers(), max_size=2)
)


# Dict-shaped input need not come from load_json: any integer, NaN and infinities included.
wild_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)
wild_specs = st.dictionaries(st.text(max_size=8), wild_values, max_size=5)


@settings(max_examples=150, deadline=None)
@given(wild_specs, envelope_values, envelope_values, st.booleans())
def test_verify_raises_only_signature_error(spec, signature, public_key, allow_legacy):
    spec = dict(spec, signature=signature, public_key=public_key)
    with pytest.raises(SignatureError) as info:
        signing.verify(spec, allow_legacy=allow_legacy)
    assert info.value.code in ("missing_signature", "malformed_signature", "invalid_signature")
