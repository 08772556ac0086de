"""The portal's own tlog-witness (portal/provenance/witness.py behind the WSGI app of
`flask beacon witness serve`) cosigns any C2SP log: driven here over real HTTP by the tests' own
log client (tests/support/c2sp.py), written from the specifications apart from the portal's code,
and it refuses what c2sp.org/tlog-witness says to refuse, with the statuses it names.
"""

from __future__ import annotations

import os
import urllib.request

import pytest

from portal.cli.witness import wsgi_app
from portal.provenance import notes
from portal.provenance.witness import Witness, WitnessStore
from tests.support.c2sp import (
    COSIGNATURE_V1,
    SIZE_TYPE,
    Log,
    Signer,
    Vkey,
    WitnessRefused,
    add_checkpoint_body,
    cosignatures,
    open_checkpoint,
    post,
)
from tests.support.wsgi_thread import serving_wsgi

ORIGIN = "beacon.test/witnessed"
NAME = "witness.test/portal"


def grow(log: Log, count: int) -> None:
    start = len(log.leaves)
    log.append(*(f"leaf {start + i}".encode() for i in range(count)))


def witness_vkey(seed: bytes) -> Vkey:
    """The witness's vkey as the independent code reads it from the portal's text."""
    return Vkey.parse(notes.witness_vkey(NAME, seed).text())


@pytest.fixture
def store(tmp_path):
    store = WitnessStore(f"sqlite:///{tmp_path / 'witness.sqlite3'}")
    yield store
    store.dispose()


def refused(call) -> WitnessRefused:
    with pytest.raises(WitnessRefused) as caught:
        call()
    return caught.value


def test_portal_witness_cosigns_a_c2sp_log_and_refuses_what_the_protocol_refuses(store):
    log = Log(ORIGIN)
    seed = os.urandom(32)
    witness = Witness(NAME, seed, [notes.Vkey.parse(log.signer.vkey().text())], store)
    vkey = witness_vkey(seed)
    assert (vkey.name, vkey.kind) == (NAME, COSIGNATURE_V1)
    with serving_wsgi(wsgi_app(witness)) as url:
        stamps = []
        for count in (1, 4, 11):  # sizes 1, 5, 16: from 0, then with consistency proofs
            grow(log, count)
            line, stamp = log.cosign(url, vkey)
            assert cosignatures(log.note() + line, [vkey]) == {NAME: stamp}
            stamps.append(stamp)
        assert stamps == sorted(stamps)
        assert store.latest(ORIGIN)[:2] == (16, log.root(16))

        # Asked again for the tree it holds: cosigned again (old = size, same root).
        line, _ = log.cosign(url, vkey)
        assert NAME in cosignatures(log.note() + line, [vkey])

        # A rollback: the witness names the size it holds, as text/x.tlog.size.
        answer = refused(lambda: log.submit(url, 5, log.note(9), 9))
        assert (answer.status, answer.body, answer.content_type) == (409, "16\n", SIZE_TYPE)
        answer = refused(lambda: log.submit(url, 0, log.note(9), 9))
        assert (answer.status, answer.body) == (409, "16\n")

        # A fork: one leaf rewritten, the same key signing; then the same size, another root.
        fork = Log(ORIGIN, log.signer)
        fork.append(*log.leaves)
        fork.leaves[3] = b"rewritten"
        grow(fork, 2)
        body = add_checkpoint_body(16, fork.proof(16, 18), fork.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 422
        body = add_checkpoint_body(16, [], fork.note(16))
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 422
        # A consistency proof cut short, and a proof from size 0.
        grow(log, 3)
        short = add_checkpoint_body(16, log.proof(16, 19)[:-1], log.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", short)).status == 422

        # An unknown origin (404), a key it does not trust for the origin (403), a failing
        # signature by a trusted key (403), an old size beyond the checkpoint and garbage (400).
        stranger = Log("beacon.test/stranger")
        grow(stranger, 1)
        body = add_checkpoint_body(0, [], stranger.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 404
        impostor = Log(ORIGIN, Signer(ORIGIN))
        grow(impostor, 20)
        body = add_checkpoint_body(16, impostor.proof(16, 20), impostor.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 403
        broken = log.note().replace(log.note().split("\n")[2], notes.b64(b"\x01" * 32))
        body = add_checkpoint_body(16, log.proof(16, 19), broken)
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 403
        body = add_checkpoint_body(20, [], log.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 400
        assert refused(lambda: post(f"{url}/add-checkpoint", b"old 01\n\n")).status == 400
        assert store.latest(ORIGIN)[:2] == (16, log.root(16))  # nothing refused moved it

        # The genuine tree goes on, from what it holds.
        line, _ = log.cosign(url, vkey)
        assert NAME in cosignatures(log.note() + line, [vkey])

    # Its state outlives the process: a new witness on the same store still says 19.
    again = Witness(NAME, seed, witness.logs[ORIGIN], store)
    with serving_wsgi(wsgi_app(again)) as url:
        answer = refused(lambda: log.submit(url, 0, log.note(), 19))
        assert (answer.status, answer.body) == (409, "19\n")
    note = store.latest(ORIGIN)[2]
    checkpoint, _ = open_checkpoint(note, [log.signer.vkey()])
    assert checkpoint.size == 19 and NAME in cosignatures(note, [vkey])


def test_empty_tree_rules(store):
    log = Log(ORIGIN)
    witness = Witness(NAME, os.urandom(32), [notes.Vkey.parse(log.signer.vkey().text())], store)
    with serving_wsgi(wsgi_app(witness)) as url:
        # A size-0 checkpoint must carry the empty tree's root.
        wrong_root = notes.b64(b"\x02" * 32)
        text = f"{ORIGIN}\n0\n{wrong_root}\n"
        note = f"{text}\n{log.signer.sign_line(text)}"
        body = add_checkpoint_body(0, [], note)
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 422
        line = post(f"{url}/add-checkpoint", add_checkpoint_body(0, [], log.note()))
        assert line.startswith(f"\u2014 {NAME} ")
        # A proof from size 0 must be empty.
        grow(log, 2)
        body = add_checkpoint_body(0, [b"\x03" * 32], log.note())
        assert refused(lambda: post(f"{url}/add-checkpoint", body)).status == 422
        # Only POST /add-checkpoint is the protocol; GET / names the witness.
        with urllib.request.urlopen(f"{url}/", timeout=10) as response:
            assert response.read().decode().startswith(f"{NAME}+")


def test_witness_keys_are_type_04_and_a_log_key_type_01(store):
    seed = os.urandom(32)
    text = notes.private_key_text(NAME, seed)
    assert text.startswith(f"PRIVATE+KEY+{NAME}+") and notes.read_private_key(text) == (NAME, seed)
    vkey = notes.witness_vkey(NAME, seed)
    assert Vkey.parse(vkey.text()) == Vkey(NAME, COSIGNATURE_V1, vkey.public_key)
    with pytest.raises(notes.NoteError):
        notes.read_private_key(text.replace(NAME, "witness.test/other"))
    with pytest.raises(notes.NoteError):
        Witness(NAME, seed, [vkey], store)  # a cosignature key is no log key
