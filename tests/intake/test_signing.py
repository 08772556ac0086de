import base64
import hashlib
import json

import pytest
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from portal.intake import signing
from portal.intake.signing import SignatureError
from portal.web.errors import STATUS_OF_KIND
from tests.support.apps import SHARED

VECTORS = json.loads((SHARED / "signing-vectors.json").read_text(encoding="utf-8"))
SEED = bytes.fromhex(VECTORS["test_signing_key_seed_hex"])

# The scheme each compat file verifies under, from compat/README.md.
COMPAT = {
    "3-model-verification-job.signed.json": "legacy-c1",
    "first-live-job.signed.json": "legacy-c1",
    "jobspec-who-are-you.signed.json": "legacy-c0",
    "minimal.jobspec.signed.json": "legacy-c0",
    "portal-jobspec.signed.json": "legacy-c2",
    "portal-sorted-keys.signed.json": "beacon-jcs-v1",
}


def load_compat(name: str) -> dict:
    body = signing.load_json((SHARED / "compat" / name).read_bytes())
    # The original portal's wrapper: only the inner spec is signed.
    return body["jobspec"] if "jobspec" in body else body


def vector_id(vector: dict) -> str:
    return vector["signed_jobspec"]["id"]


def test_every_compat_file_is_listed():
    on_disk = {p.name for p in (SHARED / "compat").glob("*.json")}
    assert on_disk == set(COMPAT) | {"invalid-signature.json"}


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_canonical_bytes_and_hash(vector):
    spec = signing.load_json(json.dumps(vector["signed_jobspec"], ensure_ascii=False))
    data = signing.signed_bytes(spec, "beacon-jcs-v1")
    assert data == vector["canonical"].encode("utf-8")
    assert hashlib.sha256(data).hexdigest() == vector["canonical_sha256"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_vector_verifies(vector):
    spec = signing.load_json(json.dumps(vector["signed_jobspec"]))
    verified = signing.verify(spec)
    assert verified.scheme == "beacon-jcs-v1"
    assert verified.public_key == VECTORS["public_key"]
    assert verified.spec_hash == vector["canonical_sha256"]


def test_test_seed_gives_published_key():
    assert signing.public_key_b64(SEED) == VECTORS["public_key"]


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=vector_id)
def test_sign_reproduces_vector_signature(vector):
    # Ed25519 is deterministic, so our signer must reproduce the published signature.
    spec = signing.load_json(json.dumps(vector["signed_jobspec"]))
    assert signing.sign(spec, SEED)["signature"] == spec["signature"]


@pytest.mark.parametrize("entry", VECTORS["tampered"], ids=lambda e: e["why"])
def test_tampered_vector_refused(entry):
    with pytest.raises(SignatureError) as info:
        signing.verify(entry["signed_jobspec"])
    assert info.value.code == "invalid_signature"
    assert STATUS_OF_KIND[info.value.kind] == 401


@pytest.mark.parametrize("name", sorted(COMPAT))
def test_compat_file_verifies_under_its_scheme(name):
    spec = load_compat(name)
    verified = signing.verify(spec)
    assert verified.scheme == COMPAT[name]
    assert verified.public_key == spec["public_key"]
    assert verified.signed_bytes == signing.signed_bytes(spec, COMPAT[name])


@pytest.mark.parametrize("name", sorted(COMPAT))
def test_compat_file_verifies_under_no_other_scheme(name):
    spec = load_compat(name)
    key = base64.b64decode(spec["public_key"])
    sig = base64.b64decode(spec["signature"])
    for scheme in signing.SCHEMES:
        if scheme == COMPAT[name]:
            continue
        with pytest.raises(BadSignatureError):
            VerifyKey(key).verify(signing.signed_bytes(spec, scheme), sig)


def test_legacy_c2_drops_empty_values_and_envelope_fields():
    data = signing.signed_bytes(load_compat("portal-jobspec.signed.json"), "legacy-c2")
    text = data.decode("utf-8")
    assert text.startswith('{"benchmark":{')
    for absent in ('"id":', '"created_at":', '"public_key":', '"hcjx'):
        assert absent not in text
    # The nested wallet_auth.signature is content, not the envelope: it stays.
    assert '"wallet_auth":{"address"' in text


def test_legacy_c0_keeps_id_and_blanks_signature():
    spec = load_compat("minimal.jobspec.signed.json")
    text = signing.signed_bytes(spec, "legacy-c0").decode("utf-8")
    assert '"id":"who-are-you-benchmark-v1"' in text
    assert '"public_key":"","signature":""' in text
    assert '"metadata":null' in text
    assert '"min_success_rate":0,' in text
    assert '"id":' not in signing.signed_bytes(spec, "legacy-c1").decode("utf-8")


def test_legacy_forms_escape_like_go():
    spec = load_compat("first-live-job.signed.json")
    text = signing.signed_bytes(spec, "legacy-c1").decode("utf-8")
    assert "\\u0026\\u0026 echo" in text
    assert "&" not in text
    assert "🚀" in text  # non-ASCII stays as UTF-8


def test_legacy_number_formatting():
    spec = {"a": 1.0, "b": 0.67, "c": 600000000000, "d": 1e21, "e": 1e-7, "f": -0.0, "g": 0}
    text = signing.signed_bytes(spec, "legacy-c1").decode()
    assert text == (
        '{"a":1,"b":0.67,"c":600000000000,"d":1e+21,"e":1e-7,"f":-0,"g":0,'
        '"public_key":"","signature":""}'
    )


def test_invalid_signature_file_refused():
    spec = load_compat("invalid-signature.json")
    with pytest.raises(SignatureError) as info:
        signing.verify(spec)
    # Its signature "invalid-signature-base64" is not standard base64 at all.
    assert info.value.code == "malformed_signature"
    assert STATUS_OF_KIND[info.value.kind] == 400


@pytest.mark.parametrize("name", [n for n, s in COMPAT.items() if s != "beacon-jcs-v1"])
def test_legacy_refused_when_switched_off(name):
    with pytest.raises(SignatureError) as info:
        signing.verify(load_compat(name), allow_legacy=False)
    assert info.value.code == "invalid_signature"
    assert COMPAT[name] in info.value.message


def test_ours_still_verifies_with_legacy_off():
    spec = load_compat("portal-sorted-keys.signed.json")
    assert signing.verify(spec, allow_legacy=False).scheme == "beacon-jcs-v1"


def signed_basic() -> dict:
    return json.loads(json.dumps(VECTORS["vectors"][0]["signed_jobspec"]))


@pytest.mark.parametrize("field", ["signature", "public_key"])
@pytest.mark.parametrize("value", [None, "", 42, "absent"])
def test_missing_signature(field, value):
    spec = signed_basic()
    if value == "absent":
        del spec[field]
    else:
        spec[field] = value
    with pytest.raises(SignatureError) as info:
        signing.verify(spec)
    assert info.value.code == "missing_signature"
    assert STATUS_OF_KIND[info.value.kind] == 401


@pytest.mark.parametrize(
    "field,value",
    [
        ("signature", "not base64!"),
        ("signature", "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="),  # URL-safe alphabet
        ("public_key", "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"),  # padding missing
        ("public_key", base64.b64encode(bytes(31)).decode()),
        ("public_key", base64.b64encode(bytes(33)).decode()),
        ("signature", base64.b64encode(bytes(63)).decode()),
        ("signature", base64.b64encode(bytes(65)).decode()),
    ],
)
def test_malformed_signature(field, value):
    spec = signed_basic()
    spec[field] = value
    with pytest.raises(SignatureError) as info:
        signing.verify(spec)
    assert info.value.code == "malformed_signature"
    assert STATUS_OF_KIND[info.value.kind] == 400


def test_other_key_refused():
    spec = signed_basic()
    spec["public_key"] = signing.public_key_b64(bytes(32))
    with pytest.raises(SignatureError) as info:
        signing.verify(spec)
    assert info.value.code == "invalid_signature"


def test_sign_then_verify_round_trip():
    seed = signing.generate_seed()
    spec = {"id": "round-trip", "questions": ["identity_basic"], "constraints": {"regions": ["US"]}}
    signed = signing.sign(spec, seed)
    assert "signature" not in spec
    assert signed["public_key"] == signing.public_key_b64(seed)
    verified = signing.verify(signing.load_json(json.dumps(signed)))
    assert verified.scheme == "beacon-jcs-v1"
    assert verified.public_key == signed["public_key"]


def test_sign_replaces_existing_signature():
    resigned = signing.sign(signed_basic(), signing.generate_seed())
    assert resigned["signature"] != signed_basic()["signature"]
    assert signing.verify(resigned).scheme == "beacon-jcs-v1"


def test_unicode_and_html_characters_round_trip():
    spec = {
        "id": "unicode",
        "benchmark": {"input": {"data": {"prompt": '天安门 <b>&</b> \u2028 café "q" \t'}}},
        "metadata": {"nonce": "ñ", "weights": [0.1, 1e21, 3]},
    }
    signed = signing.sign(spec, SEED)
    for raw in (json.dumps(signed), json.dumps(signed, ensure_ascii=False, indent=2)):
        assert signing.verify(signing.load_json(raw.encode("utf-8"))).scheme == "beacon-jcs-v1"
    canonical = signing.signed_bytes(signed, "beacon-jcs-v1").decode("utf-8")
    assert "<b>&</b>" in canonical  # RFC 8785 does not escape HTML characters


def test_large_integer_canonicalized_as_double():
    # A browser reads this integer as the nearest double before canonicalizing.
    spec = signing.load_json('{"n": 12345678901234567890}')
    assert signing.signed_bytes(spec, "beacon-jcs-v1") == b'{"n":12345678901234567000}'


def test_integer_beyond_double_range_has_no_signed_bytes():
    with pytest.raises(ValueError, match="beyond the range"):
        signing.signed_bytes({"n": 10**400}, "beacon-jcs-v1")


def test_signed_bytes_unknown_scheme():
    with pytest.raises(ValueError, match="unknown signature scheme"):
        signing.signed_bytes({}, "legacy-c9")


@pytest.mark.parametrize(
    "raw,fragment",
    [
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1e400}', "out of range"),
        (b'{"a": 1' + b"0" * 400 + b"}", "out of range"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b'{"a": "\\ud800"}', "surrogate"),
        (b'{"a": ', "Expecting value"),
        (b"[" * 100000, "nested"),
    ],
)
def test_load_json_refuses(raw, fragment):
    with pytest.raises(ValueError, match=fragment):
        signing.load_json(raw)


def test_load_json_keeps_ints_and_floats_apart():
    value = signing.load_json('{"i": 2, "f": 2.0, "p": "\\ud83d\\ude00"}')
    assert type(value["i"]) is int
    assert type(value["f"]) is float
    assert value["p"] == "😀"


def test_spec_hash_is_sha256_of_signed_bytes():
    verified = signing.Verified("beacon-jcs-v1", "k", b"abc")
    assert verified.spec_hash == hashlib.sha256(b"abc").hexdigest()


def test_decode_seed():
    text = base64.b64encode(SEED).decode()
    assert signing.decode_seed(text + "\n") == SEED
    with pytest.raises(ValueError, match="not standard base64"):
        signing.decode_seed("$$$")
    with pytest.raises(ValueError, match="31 bytes"):
        signing.decode_seed(base64.b64encode(bytes(31)).decode())


def test_generate_seed_is_random_32_bytes():
    first, second = signing.generate_seed(), signing.generate_seed()
    assert len(first) == 32
    assert first != second


def test_sign_refuses_short_seed():
    with pytest.raises(ValueError, match="32 bytes"):
        signing.sign({}, bytes(16))


def test_legacy_c2_does_not_cover_id_of_an_unidentified_spec():
    # Signed bytes with no id, created_at or empty values are both a JCS form and a legacy-c2
    # form, so with legacy forms on an id can be added without breaking the signature; the
    # signed bytes, and so the job's identity, stay the same.
    signed = signing.sign({"questions": ["identity_basic"]}, SEED)
    original = signing.verify(signed)
    claimed = dict(signed, id="someone-elses-id")
    verified = signing.verify(claimed)
    assert verified.scheme == "legacy-c2"
    assert verified.spec_hash == original.spec_hash
    with pytest.raises(SignatureError):
        signing.verify(claimed, allow_legacy=False)
