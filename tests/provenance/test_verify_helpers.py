"""scripts/beacon_verify (the verifier's helpers) against the tests' independent RFC 6962 and
C2SP code: the same roots, the same vkeys, and each side's cosignatures verified by the other.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from scripts.beacon_verify import notes, rfc9162
from tests.support import rfc9162 as reference
from tests.support.c2sp import COSIGNATURE_V1, ED25519, Checkpoint, Signer

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def top_level_imports(path: Path) -> set[str]:
    """Returns the top-level names of the absolute imports in a Python file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_verifier_imports_only_the_standard_library_pynacl_and_rfc8785():
    # The portal may be installed in the venv, so `python -I` alone cannot show this.
    allowed = set(sys.stdlib_module_names) | {"nacl", "rfc8785", "beacon_verify"}
    files = [SCRIPTS / "verify_receipt.py", *sorted((SCRIPTS / "beacon_verify").glob("*.py"))]
    assert len(files) > 2
    for path in files:
        assert top_level_imports(path) <= allowed, path


def test_tree_root_is_rfc6962_mth_for_every_size_to_70():
    leaves = [f"entry {i}".encode() for i in range(70)]
    tree = reference.Reference(leaves)
    assert rfc9162.tree_root([]) == reference.sha(b"")
    for size in range(1, 71):
        hashes = [rfc9162.leaf_hash(leaf) for leaf in leaves[:size]]
        assert rfc9162.tree_root(hashes) == tree.mth(0, size), size


def test_witness_keys_and_cosignatures_agree_with_the_independent_code():
    text = Checkpoint("beacon.test/helpers", 3, bytes(range(32))).text()
    witness = Signer("witness.test/helpers")
    key = notes.WitnessKey.parse(witness.vkey(COSIGNATURE_V1).text())
    assert key == notes.WitnessKey("witness.test/helpers", bytes(witness.key.verify_key))
    log = Signer("beacon.test/helpers")
    note = f"{text}\n{log.sign_line(text)}{witness.cosign_line(text, 1700000000)}"
    body, signatures = notes.split_note(note)
    assert body == text and key.timestamp(body, signatures) == 1700000000
    # The same key as a note signer (0x01) is another key ID: its signature is not a cosignature.
    plain = f"{text}\n{witness.sign_line(text)}"
    assert key.timestamp(*notes.split_note(plain)) is None
    with pytest.raises(ValueError, match="type 0x04"):
        notes.WitnessKey.parse(witness.vkey(ED25519).text())


def test_a_failing_line_of_the_log_key_rejects_the_checkpoint():
    log = Signer("beacon.test/helpers")
    text = Checkpoint("beacon.test/helpers", 3, bytes(range(32))).text()
    good = log.sign_line(text)
    other = log.sign_line(text.replace("\n3\n", "\n4\n"))  # the right key ID, a wrong signature
    doc = {"origin": "beacon.test/helpers", "size": 3, "root_hash": text.split("\n")[2]}
    public_key = bytes(log.key.verify_key)
    assert notes.open_checkpoint({**doc, "note": f"{text}\n{good}"}, public_key)[1] == 3
    with pytest.raises(ValueError, match="does not verify"):
        notes.open_checkpoint({**doc, "note": f"{text}\n{good}{other}"}, public_key)
