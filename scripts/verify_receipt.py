#!/usr/bin/env python3
"""Verify a Beacon portal receipt without trusting the portal (SPEC section 9).

Online:
    verify_receipt.py --portal URL --execution ID --public-key B64
                      [--old-checkpoint FILE] [--save-checkpoint FILE]
Offline, from the file GET /api/v1/jobs/<id>/evidence served:
    verify_receipt.py --evidence FILE --public-key B64

--public-key is the portal's Ed25519 public key (standard base64) as you obtained it
independently; the key the portal serves is never used. Prints one line per check and exits 0
only when every check passes. Needs only PyNaCl, rfc8785 and the standard library, on purpose:
read it, and run it alone.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

import nacl.exceptions
import nacl.signing
import rfc8785

RECEIPT_FORMAT = "beacon-receipt-v1"
EM_DASH = "\u2014"


class Checks:
    """Prints one line per check and remembers whether any failed."""

    def __init__(self) -> None:
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str) -> bool:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        self.failed += not ok
        return ok


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b64decode(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a base64 string")
    return base64.b64decode(text, validate=True)


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


# --- RFC 9162 verification (sections 2.1.3.2 and 2.1.4.2) -----------------------------------


def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """Returns the root that the inclusion path leads to, or None when it cannot."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = sha256(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def consistent(first: int, second: int, first_hash: bytes, second_hash: bytes, path) -> bool:
    """Says whether `path` proves the tree (second, second_hash) extends (first, first_hash)."""
    if first == second:
        return not path and first_hash == second_hash
    if first == 0:
        return not path
    if first > second or not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha256(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


# --- checkpoints (C2SP tlog-checkpoint in a signed note) --------------------------------------


def open_checkpoint(doc: object, public_key: bytes) -> tuple[str, int, bytes]:
    """Returns (origin, size, root) of a checkpoint whose note `public_key` signed; else raises."""
    if not isinstance(doc, dict) or not isinstance(doc.get("note"), str):
        raise ValueError("no signed note")
    text = doc["note"]
    body, sep, signatures = text.partition("\n\n")
    if not sep or not body:
        raise ValueError("the note has no blank line before its signatures")
    body += "\n"
    lines = body.split("\n")[:-1]
    if len(lines) < 3:
        raise ValueError("the note body needs origin, size and root hash lines")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise ValueError(f"bad tree size {size_text!r}")
    root = b64decode(root_text)
    if len(root) != 32:
        raise ValueError("the root hash is not 32 bytes")
    key_hash = sha256(origin.encode() + b"\n\x01" + public_key)[:4]
    signed = False
    if not signatures.endswith("\n"):
        raise ValueError("the note does not end with a newline")
    for line in signatures[:-1].split("\n"):
        prefix = f"{EM_DASH} {origin} "
        if not line.startswith(prefix):
            continue
        try:
            blob = b64decode(line[len(prefix) :])
        except (binascii.Error, ValueError):
            continue
        if len(blob) == 68 and blob[:4] == key_hash:
            signed = signed or verify_ed25519(public_key, body.encode(), blob[4:])
    if not signed:
        raise ValueError("no signature line verifies under the given public key")
    size = int(size_text)
    if (doc.get("origin"), doc.get("size"), doc.get("root_hash")) != (origin, size, root_text):
        raise ValueError("origin, size or root_hash disagree with the signed note")
    return origin, size, root


# --- the checks --------------------------------------------------------------------------------


def check_receipt(checks: Checks, entry: dict, public_key: bytes, execution_id=None):
    """Checks a receipt's form and signature; returns (receipt, leaf hash) or None."""
    receipt = entry.get("receipt") if isinstance(entry, dict) else None
    if not checks.check(
        "receipt format",
        isinstance(receipt, dict) and receipt.get("format") == RECEIPT_FORMAT,
        f"format is {RECEIPT_FORMAT}" if isinstance(receipt, dict) else "no receipt object",
    ):
        return None
    if execution_id is not None:
        checks.check(
            "receipt execution",
            receipt.get("execution_id") == execution_id,
            f"the receipt names execution {receipt.get('execution_id')}",
        )
    body = rfc8785.dumps(receipt)
    try:
        signature = b64decode(entry.get("signature"))
    except (binascii.Error, ValueError):
        signature = b""
    checks.check(
        "receipt signature",
        verify_ed25519(public_key, body, signature),
        f"Ed25519 over the receipt's JCS bytes ({len(body)} bytes), by the given key",
    )
    return receipt, sha256(b"\x00" + body)


def check_outputs(checks: Checks, receipt: dict, answers: dict) -> None:
    """Checks every completed answer's served output against the receipt's output_sha256."""
    for item in receipt.get("answers") or []:
        if item.get("status") != "completed":
            continue
        served = answers.get(item.get("answer_id"))
        output = served.get("output") if isinstance(served, dict) else None
        digest = hashlib.sha256(output.encode("utf-8")).hexdigest() if output is not None else None
        checks.check(
            f"output of answer {item.get('answer_id')}",
            digest is not None and digest == item.get("output_sha256"),
            "SHA-256 of the served output matches the receipt"
            if digest == item.get("output_sha256")
            else f"served output hashes to {digest}, the receipt says {item.get('output_sha256')}",
        )


def check_inclusion(checks, receipt, leaf, log_index, proof, tree) -> None:
    """Checks the receipt's inclusion proof against a verified checkpoint (origin, size, root)."""
    origin, size, root = tree
    checks.check(
        "log origin",
        receipt.get("log_origin") == origin,
        f"receipt and checkpoint name the log {origin!r}",
    )
    try:
        path = [b64decode(h) for h in proof.get("hashes", [])]
        leaf_given = b64decode(proof.get("leaf_hash"))
        index, proof_size = proof.get("index"), proof.get("size")
    except (AttributeError, binascii.Error, ValueError):
        checks.check("inclusion", False, "the inclusion proof is malformed")
        return
    ok = (
        index == log_index
        and proof_size == size
        and leaf_given == leaf
        and root_from_inclusion(index, size, leaf, path) == root
    )
    checks.check("inclusion", ok, f"entry {log_index} is in the checkpoint's tree of {size}")


def fetch(base: str, path: str, **params) -> object:
    url = base.rstrip("/") + path + ("?" + urllib.parse.urlencode(params) if params else "")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def online(args, public_key: bytes, checks: Checks) -> None:
    base, eid = args.portal, args.execution
    try:
        execution = fetch(base, f"/api/v1/executions/{eid}")["execution"]
        entry = fetch(base, f"/api/v1/executions/{eid}/receipt")
        checkpoint = fetch(base, "/api/v1/log/checkpoint")
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        checks.check("fetch", False, f"cannot read the execution, receipt or checkpoint: {exc}")
        return
    found = check_receipt(checks, entry, public_key, eid)
    answers = {a.get("id"): a for a in execution.get("answers", [])}
    try:
        tree = open_checkpoint(checkpoint, public_key)
        checks.check("checkpoint signature", True, f"note for size {tree[1]} signed by the key")
    except (ValueError, binascii.Error) as exc:
        checks.check("checkpoint signature", False, str(exc))
        return
    if found is None:
        return
    receipt, leaf = found
    check_outputs(checks, receipt, answers)
    log_index = entry.get("log_index")
    try:
        proof = fetch(base, "/api/v1/log/proof/inclusion", index=log_index, size=tree[1])
        listed = fetch(base, "/api/v1/log/entries", start=log_index, limit=1)["items"]
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
        checks.check("inclusion", False, f"cannot read the proof or the log entry: {exc}")
        return
    check_inclusion(checks, receipt, leaf, log_index, proof, tree)
    same = bool(listed) and listed[0] == {
        "index": log_index,
        "receipt": receipt,
        "signature": entry.get("signature"),
    }
    checks.check("log entry", same, f"the log lists this receipt at index {log_index}")
    if args.old_checkpoint:
        check_consistency(checks, args.old_checkpoint, public_key, base, tree)
    if args.save_checkpoint and checks.failed == 0:
        with open(args.save_checkpoint, "w", encoding="utf-8") as handle:
            json.dump(checkpoint, handle, indent=2)
        print(f"saved the checkpoint of size {tree[1]} to {args.save_checkpoint}")


def check_consistency(checks, path: str, public_key: bytes, base: str, tree) -> None:
    try:
        with open(path, encoding="utf-8") as handle:
            old = open_checkpoint(json.load(handle), public_key)
    except (OSError, ValueError, binascii.Error) as exc:
        checks.check("old checkpoint signature", False, f"{path}: {exc}")
        return
    checks.check("old checkpoint signature", True, f"note for size {old[1]} signed by the key")
    ok = old[0] == tree[0] and old[1] <= tree[1]
    if ok:
        try:
            proof = fetch(base, "/api/v1/log/proof/consistency", old=old[1], new=tree[1])
            hashes = [b64decode(h) for h in proof["hashes"]]
            ok = consistent(old[1], tree[1], old[2], tree[2], hashes)
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
            ok = False
    checks.check("consistency", ok, f"the tree of {tree[1]} extends the old tree of {old[1]}")


def offline(args, public_key: bytes, checks: Checks) -> None:
    try:
        with open(args.evidence, encoding="utf-8") as handle:
            evidence = json.load(handle)
        job, receipts = evidence["job"], evidence["receipts"]
        tree = open_checkpoint(evidence["checkpoint"], public_key)
        checks.check("checkpoint signature", True, f"note for size {tree[1]} signed by the key")
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        checks.check("evidence", False, f"{args.evidence}: {exc}")
        return
    check_spec(checks, job)
    answers = {a.get("id"): a for e in evidence.get("executions", []) for a in e.get("answers", [])}
    checks.check("receipts", bool(receipts), f"{len(receipts)} receipt(s) in the file")
    covered = {e.get("receipt", {}).get("execution_id") for e in receipts if isinstance(e, dict)}
    for execution in evidence.get("executions", []):
        if execution.get("status") in ("completed", "failed", "cancelled"):
            checks.check(
                f"receipt of execution {execution.get('id')}",
                execution.get("id") in covered,
                "the ended execution has a receipt in the file",
            )
    for entry in receipts:
        found = check_receipt(checks, entry, public_key)
        if found is None:
            continue
        receipt, leaf = found
        checks.check(
            "receipt job",
            (receipt.get("job_id"), receipt.get("spec_hash")) == (job["id"], job["spec_hash"]),
            f"execution {receipt.get('execution_id')} belongs to job {job['id']}",
        )
        check_outputs(checks, receipt, answers)
        proof = entry.get("inclusion") or {}
        check_inclusion(checks, receipt, leaf, entry.get("log_index"), proof, tree)


def check_spec(checks: Checks, job: dict) -> None:
    """Checks the signed JobSpec and its spec_hash when it uses the portal's own scheme."""
    if job.get("signature_scheme") != "beacon-jcs-v1":
        print(f"NOTE spec: scheme {job.get('signature_scheme')} is not re-verified here")
        return
    try:
        spec = json.loads(job["spec"])
        if "jobspec" in spec and "signature" not in spec:
            spec = spec["jobspec"]
        body = {k: v for k, v in spec.items() if k not in ("signature", "public_key")}
        signed = rfc8785.dumps(body)
        ok = verify_ed25519(b64decode(spec["public_key"]), signed, b64decode(spec["signature"]))
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        binascii.Error,
        rfc8785.CanonicalizationError,
    ):
        ok, signed = False, b""
    checks.check("spec signature", ok, "the JobSpec verifies under its own public_key")
    digest = hashlib.sha256(signed).hexdigest()
    checks.check(
        "spec hash", digest == job.get("spec_hash"), f"SHA-256 of the signed bytes is {digest}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portal", help="the portal's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--execution", type=int, help="execution id")
    parser.add_argument("--public-key", required=True, help="the portal's key, base64")
    parser.add_argument("--old-checkpoint", help="a checkpoint JSON saved earlier (online)")
    parser.add_argument("--save-checkpoint", help="save the verified checkpoint JSON here")
    parser.add_argument("--evidence", help="an evidence file: verify offline")
    args = parser.parse_args(argv)
    if not args.evidence and (args.portal is None or args.execution is None):
        parser.error("give --portal and --execution, or --evidence")
    if args.evidence and args.old_checkpoint:
        parser.error("--old-checkpoint needs --portal: the consistency proof comes from the log")
    try:
        public_key = b64decode(args.public_key)
        if len(public_key) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        parser.error("--public-key must be 32 bytes in standard base64")
    checks = Checks()
    if args.evidence:
        offline(args, public_key, checks)
    else:
        online(args, public_key, checks)
    verdict = "all checks passed" if checks.failed == 0 else f"{checks.failed} check(s) FAILED"
    print(verdict)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
