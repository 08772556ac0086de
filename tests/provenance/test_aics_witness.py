"""Interoperability: the tests' own C2SP log client (tests/support/c2sp.py) gets cosignatures
from aics-witness, a tlog-witness written by others, for a growing log, and that witness
refuses a rollback and a fork. Skipped loudly when its Python 3.12 venv cannot be made.
"""

from __future__ import annotations

import hashlib
import urllib.request

import pytest

from tests.support.aics_witness import aics_witness
from tests.support.c2sp import (
    COSIGNATURE_V1,
    Log,
    WitnessRefused,
    add_checkpoint_body,
    cosignatures,
    open_checkpoint,
    post,
)

pytestmark = pytest.mark.live

ORIGIN = "beacon.test/aics-interop"
WITNESS = "witness.test/aics"


def grow(log: Log, count: int) -> None:
    start = len(log.leaves)
    log.append(*(f"receipt {start + i}".encode() for i in range(count)))


def test_aics_witness_cosigns_a_growing_log_and_refuses_rollback_and_fork(tmp_path):
    log = Log(ORIGIN)
    with aics_witness(tmp_path / "aics", WITNESS, {ORIGIN: log.signer.vkey()}) as (url, vkey):
        assert (vkey.name, vkey.kind) == (WITNESS, COSIGNATURE_V1)
        seen = []
        for count in (0, 5, 8):  # sizes 0, 5, 13
            grow(log, count)
            line, stamp = log.cosign(url, vkey)
            assert cosignatures(log.note() + line, [vkey]) == {WITNESS: stamp}
            seen.append((len(log.leaves), stamp))
        assert [size for size, _ in seen] == [0, 5, 13]
        assert seen == sorted(seen, key=lambda pair: pair[1])

        # Rolled back to 9 leaves: the witness names the size it holds.
        with pytest.raises(WitnessRefused) as refused:
            log.submit(url, 5, log.note(9), 9)
        assert (refused.value.status, refused.value.body) == (409, "13\n")
        assert refused.value.content_type == "text/x.tlog.size"
        log.known.clear()
        with pytest.raises(WitnessRefused) as refused:
            log.cosign(url, vkey, size=9)
        assert refused.value.status == 409

        # A fork: the same key signs a history with one leaf rewritten.
        fork = Log(ORIGIN, log.signer)
        fork.append(*log.leaves)
        fork.leaves[2] = b"rewritten"
        grow(fork, 2)
        with pytest.raises(WitnessRefused) as refused:
            post(f"{url}/add-checkpoint", add_checkpoint_body(13, fork.proof(13, 15), fork.note()))
        assert refused.value.status == 422

        # Its monitoring endpoint still serves the genuine size 13, cosigned.
        origin_hash = hashlib.sha256(ORIGIN.encode()).hexdigest()
        with urllib.request.urlopen(f"{url}/{origin_hash}/checkpoint", timeout=10) as response:
            note = response.read().decode()
        checkpoint, _ = open_checkpoint(note, [log.signer.vkey()])
        assert (checkpoint.size, checkpoint.root) == (13, log.root(13))
        assert WITNESS in cosignatures(note, [vkey])
