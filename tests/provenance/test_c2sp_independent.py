"""The tests' own C2SP implementation (tests/support/c2sp.py, tests/support/witness_server.py)
against the specifications' examples and against itself end to end: a log grows and is
cosigned, and the witness refuses a rollback (409), a fork (422), a stranger (403/404) and
garbage (400), as c2sp.org/tlog-witness says.
"""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from tests.support.c2sp import (
    COSIGNATURE_V1,
    ED25519,
    EMPTY_ROOT,
    SIZE_TYPE,
    Checkpoint,
    Log,
    Note,
    NoteError,
    Signer,
    Vkey,
    WitnessRefused,
    add_checkpoint_body,
    b64,
    cosignatures,
    cosigned_message,
    open_checkpoint,
    post,
)
from tests.support.witness_server import Witness, serving

ORIGIN = "beacon.test/c2sp"
# The example of c2sp.org/signed-note, "Verifier keys".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfX"
    "ppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def grown(log: Log, count: int) -> Log:
    """Appends `count` distinct leaves to `log` and returns it."""
    start = len(log.leaves)
    log.append(*(f"leaf {start + i} of {log.origin}".encode() for i in range(count)))
    return log


@pytest.fixture
def log_and_witness():
    log = Log(ORIGIN)
    witness = Witness("witness.test/w1", {ORIGIN: [log.signer.vkey()]})
    with serving(witness) as url:
        yield log, witness, url


def test_the_specification_example_note_verifies_under_its_vkey():
    vkey = Vkey.parse(SPEC_VKEY)
    assert (vkey.name, vkey.kind, vkey.text()) == ("example.com/foo", ED25519, SPEC_VKEY)
    note = Note.parse(SPEC_NOTE)
    assert note.text == "This is an example message.\n"
    assert note.verified_by(vkey) == [None]
    with pytest.raises(NoteError, match="fails"):
        Note.parse(SPEC_NOTE.replace("example message", "exemplary message")).verified_by(vkey)
    # Another key under the same name is ignored, not failed.
    stranger = Vkey("example.com/foo", ED25519, bytes(Signer("x").key.verify_key))
    assert note.verified_by(stranger) == []
    with pytest.raises(NoteError, match="key ID"):
        Vkey.parse(SPEC_VKEY.replace("530d903a", "530d903b"))


def test_notes_and_checkpoints_refuse_what_the_specifications_forbid():
    for bad in [
        "no blank line\n\u2014 a AAAAAAA=\n",
        "text\n\n\u2014 a b c\n",
        "t\n\n",
        "t\x01\n\n",
    ]:
        with pytest.raises(NoteError):
            Note.parse(bad)
    root = b64(EMPTY_ROOT)
    assert Checkpoint.parse(f"o\n0\n{root}\n") == Checkpoint("o", 0, EMPTY_ROOT)
    assert Checkpoint.parse(f"o\n3\n{root}\next\n").extensions == ("ext",)
    for bad in [f"o\n03\n{root}\n", f"o\n3\n{root}", f"o\n-1\n{root}\n", "o\n3\nAAAA\n"]:
        with pytest.raises(NoteError):
            Checkpoint.parse(bad)


def test_a_cosignature_signs_the_exact_bytes_of_tlog_cosignature():
    text = Checkpoint(ORIGIN, 5, bytes(32)).text()
    assert cosigned_message(text, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + text.encode()
    )
    witness = Signer("witness.test/w9")
    line = witness.cosign_line(text, 1679315147)
    vkey = witness.vkey(COSIGNATURE_V1)
    assert vkey.text().split("+")[2].startswith("B")  # base64 of 0x04 || key begins with "B"
    log_line = Signer(ORIGIN).sign_line(text)
    assert cosignatures(f"{text}\n{log_line}{line}", [vkey]) == {"witness.test/w9": 1679315147}
    # A type 0x01 key with the same name and key is a different key ID: not a cosigner.
    assert cosignatures(f"{text}\n{line}", [witness.vkey(ED25519)]) == {}
    moved = text.replace("\n5\n", "\n6\n")
    with pytest.raises(NoteError, match="fails"):
        cosignatures(f"{moved}\n{line}", [vkey])


def test_a_growing_log_is_cosigned_and_the_witness_remembers(log_and_witness, tmp_path):
    log, witness, url = log_and_witness
    line, stamp = log.cosign(url, witness.vkey, size=0)  # the empty tree, with no proof
    for count in (1, 4, 11, 0):
        grown(log, count)
        line, stamp = log.cosign(url, witness.vkey)
        assert line.startswith(f"\u2014 {witness.vkey.name} ")
        assert cosignatures(log.note() + line, [witness.vkey]) == {witness.vkey.name: stamp}
    assert witness.state[ORIGIN]["size"] == 16
    # The monitoring endpoint serves the cosigned checkpoint with both signatures.
    origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
    with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint", timeout=10) as response:
        served = response.read().decode()
    checkpoint, _ = open_checkpoint(served, [log.signer.vkey()])
    assert checkpoint.size == 16 and witness.vkey.name in cosignatures(served, [witness.vkey])


def test_a_log_that_forgot_the_witness_size_recovers_through_409(log_and_witness):
    log, witness, url = log_and_witness
    grown(log, 6)
    log.cosign(url, witness.vkey)
    log.known.clear()  # a restarted log sends old 0 and learns the size from the 409
    grown(log, 3)
    with pytest.raises(WitnessRefused) as refused:
        log.submit(url, 0, log.note(), 9)
    assert (refused.value.status, refused.value.body) == (409, "6\n")
    assert refused.value.content_type == SIZE_TYPE
    log.cosign(url, witness.vkey)
    assert witness.state[ORIGIN]["size"] == 9


def test_the_witness_refuses_a_rollback(log_and_witness):
    log, witness, url = log_and_witness
    log.cosign(url, witness.vkey, size=len(grown(log, 10).leaves))
    # The log rolled back to 7 leaves: from the size it knows, and from the witness's own.
    with pytest.raises(WitnessRefused) as refused:
        log.submit(url, 10, log.note(7), 7)
    assert refused.value.status == 400  # old size above the checkpoint size
    with pytest.raises(WitnessRefused) as refused:
        log.submit(url, 5, log.note(7), 7)
    assert (refused.value.status, refused.value.body) == (409, "10\n")
    log.known.clear()
    with pytest.raises(WitnessRefused) as refused:
        log.cosign(url, witness.vkey, size=7)
    assert refused.value.status == 409
    assert witness.state[ORIGIN]["size"] == 10


def test_the_witness_refuses_a_forked_root(log_and_witness):
    log, witness, url = log_and_witness
    log.cosign(url, witness.vkey, size=len(grown(log, 8).leaves))
    fork = Log(ORIGIN, log.signer)  # the same key signs another history
    grown(fork, 8)
    fork.leaves[3] = b"rewritten"
    grown(fork, 4)
    with pytest.raises(WitnessRefused) as refused:
        post(f"{url}/add-checkpoint", add_checkpoint_body(8, fork.proof(8, 12), fork.note()))
    assert refused.value.status == 422
    # Same size, another root: 422 too (tlog-witness v1.1.0).
    with pytest.raises(WitnessRefused) as refused:
        post(f"{url}/add-checkpoint", add_checkpoint_body(8, [], fork.note(8)))
    assert refused.value.status == 422
    # The genuine continuation still gets cosigned.
    log.cosign(url, witness.vkey, size=len(grown(log, 4).leaves))
    assert witness.state[ORIGIN]["size"] == 12


def test_the_witness_refuses_strangers_and_garbage(log_and_witness):
    log, witness, url = log_and_witness
    grown(log, 3)
    stranger = Log(ORIGIN, Signer(ORIGIN))  # the right origin, a key the witness never got
    grown(stranger, 3)
    forged = log.note().replace("\n3\n", "\n4\n")  # a known key's signature that fails
    cases = [
        (403, add_checkpoint_body(0, [], stranger.note())),
        (403, add_checkpoint_body(0, [], forged)),
        (404, add_checkpoint_body(0, [], grown(Log("other.test/log"), 1).note())),
        (400, b"old 0\nnot base64!\n\n" + log.note().encode()),
        (400, b"old 01\n\n" + log.note().encode()),
        (400, b"old 0\n" + log.note().encode()),
        (422, add_checkpoint_body(0, [bytes(32)], log.note())),
    ]
    for status, body in cases:
        with pytest.raises(WitnessRefused) as refused:
            post(f"{url}/add-checkpoint", body)
        assert refused.value.status == status, (body, refused.value)
    empty_wrong_root = f"{ORIGIN}\n0\n{b64(bytes(32))}\n"
    note = f"{empty_wrong_root}\n{log.signer.sign_line(empty_wrong_root)}"
    with pytest.raises(WitnessRefused) as refused:
        post(f"{url}/add-checkpoint", add_checkpoint_body(0, [], note))
    assert refused.value.status == 422
    assert ORIGIN not in witness.state


def test_the_witness_state_file_survives_a_restart(tmp_path):
    log = grown(Log(ORIGIN), 5)
    state = tmp_path / "witness.json"
    first = Witness("witness.test/w2", {ORIGIN: [log.signer.vkey()]}, state)
    with serving(first) as url:
        log.cosign(url, first.vkey)
    again = Witness("witness.test/w2", {ORIGIN: [log.signer.vkey()]}, state, first.signer)
    with serving(again) as url:
        with pytest.raises(WitnessRefused) as refused:
            log.submit(url, 0, log.note(2), 2)
        assert (refused.value.status, refused.value.body) == (409, "5\n")
        grown(log, 2)
        log.cosign(url, again.vkey)
    assert again.state[ORIGIN]["size"] == 7
