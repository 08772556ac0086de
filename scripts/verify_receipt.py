#!/usr/bin/env python3
"""Verify a Beacon portal receipt, or audit its whole log, without trusting the portal (SPEC 9).

Online:
    verify_receipt.py --portal URL --execution ID --public-key B64
                      [--old-checkpoint FILE] [--save-checkpoint FILE]
Offline, from the file GET /api/v1/jobs/<id>/evidence served:
    verify_receipt.py --evidence FILE --public-key B64
The whole log, as a monitor run on a schedule (docs/provenance.md):
    verify_receipt.py --audit --portal URL --public-key B64 [--state FILE]
Any of them, requiring cosignatures by independent witnesses on the checkpoint used:
    ... --witness VKEY [--witness VKEY ...] [--witness-quorum N]

--public-key is the portal's Ed25519 public key (standard base64) as you obtained it
independently; the key the portal serves is never used, and so are the witness vkeys. Prints
one line per check and exits 0 only when every check passes. Needs only PyNaCl, rfc8785 and
the standard library, on purpose: read it and its helpers in beacon_verify/, and run it alone.
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import json
import sys
from pathlib import Path

import rfc8785

# `python -I` leaves the script's own folder off the path; the helpers live beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from beacon_verify.audit import RECEIPT_FORMAT, audit, check_consistency  # noqa: E402
from beacon_verify.common import (  # noqa: E402
    FETCH_ERRORS,
    Checks,
    b64decode,
    fetch,
    sha256,
    verify_ed25519,
)
from beacon_verify.notes import (  # noqa: E402
    WitnessKey,
    check_witnesses,
    fetch_checkpoint,
    open_checkpoint,
)
from beacon_verify.rfc9162 import root_from_inclusion  # noqa: E402

ENDED = ("completed", "failed", "cancelled")


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


def online(args, public_key: bytes, checks: Checks, witnesses: list[WitnessKey]) -> None:
    """Verifies one execution's receipt against the live portal (SPEC section 9, Verifier)."""
    base, eid = args.portal, args.execution
    try:
        execution = fetch(base, f"/api/v1/executions/{eid}")["execution"]
        entry = fetch(base, f"/api/v1/executions/{eid}/receipt")
    except FETCH_ERRORS as exc:
        checks.check("fetch", False, f"cannot read the execution or its receipt: {exc}")
        return
    found = check_receipt(checks, entry, public_key, eid)
    answers = {a.get("id"): a for a in execution.get("answers", [])}
    checkpoint, tree = fetch_checkpoint(checks, base, public_key, cosigned=bool(witnesses))
    if tree is None:
        return
    if witnesses:
        check_witnesses(checks, checkpoint, witnesses, args.witness_quorum)
    if found is None:
        return
    receipt, leaf = found
    check_outputs(checks, receipt, answers)
    log_index = entry.get("log_index")
    if not isinstance(log_index, int) or not 0 <= log_index < tree[1]:
        later = " (not yet cosigned: try again later)" if witnesses else ""
        detail = f"entry {log_index} is outside the checkpoint's tree of {tree[1]}{later}"
        checks.check("inclusion", False, detail)
        return
    try:
        proof = fetch(base, "/api/v1/log/proof/inclusion", index=log_index, size=tree[1])
        listed = fetch(base, "/api/v1/log/entries", start=log_index, limit=1)["items"]
    except FETCH_ERRORS as exc:
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


def offline(args, public_key: bytes, checks: Checks, witnesses: list[WitnessKey]) -> None:
    """Verifies a job from its evidence file alone, cosignatures included when asked."""
    try:
        with open(args.evidence, encoding="utf-8") as handle:
            evidence = json.load(handle)
        job, receipts = evidence["job"], evidence["receipts"]
        tree = open_checkpoint(evidence["checkpoint"], public_key)
        checks.check("checkpoint signature", True, f"note for size {tree[1]} signed by the key")
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        checks.check("evidence", False, f"{args.evidence}: {exc}")
        return
    if witnesses:
        check_witnesses(checks, evidence["checkpoint"], witnesses, args.witness_quorum)
    check_spec(checks, job)
    answers = {a.get("id"): a for e in evidence.get("executions", []) for a in e.get("answers", [])}
    checks.check("receipts", bool(receipts), f"{len(receipts)} receipt(s) in the file")
    covered = {e.get("receipt", {}).get("execution_id") for e in receipts if isinstance(e, dict)}
    for execution in evidence.get("executions", []):
        if execution.get("status") in ENDED:
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


def arguments(argv: list[str] | None) -> argparse.Namespace:
    """Returns the parsed command line, with the witness keys read and the quorum set."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--portal", help="the portal's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--execution", type=int, help="execution id")
    parser.add_argument("--public-key", required=True, help="the portal's key, base64")
    parser.add_argument("--old-checkpoint", help="a checkpoint JSON saved earlier (online)")
    parser.add_argument("--save-checkpoint", help="save the verified checkpoint JSON here")
    parser.add_argument("--evidence", help="an evidence file: verify offline")
    parser.add_argument("--audit", action="store_true", help="check the whole log (--portal)")
    parser.add_argument("--state", help="audit: the checkpoint JSON kept from the last audit")
    parser.add_argument(
        "--page-size", type=int, default=200, help="audit: items per request (1-200, 200)"
    )
    parser.add_argument(
        "--witness", action="append", default=[], metavar="VKEY", help="a witness's vkey"
    )
    parser.add_argument("--witness-quorum", type=int, help="cosignatures needed (default: all)")
    args = parser.parse_args(argv)
    modes = [bool(args.evidence), args.audit, args.execution is not None]
    if sum(modes) != 1 or (not args.evidence and args.portal is None):
        parser.error("give --portal and --execution, or --portal and --audit, or --evidence")
    if args.state and not args.audit:
        parser.error("--state goes with --audit")
    if not 1 <= args.page_size <= 200:
        parser.error("--page-size must be 1 to 200, what the portal's lists accept")
    if args.audit and (args.old_checkpoint or args.save_checkpoint):
        parser.error("--audit keeps its checkpoint with --state")
    if args.evidence and args.old_checkpoint:
        parser.error("--old-checkpoint needs --portal: the consistency proof comes from the log")
    try:
        args.public_key = b64decode(args.public_key)
        if len(args.public_key) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        parser.error("--public-key must be 32 bytes in standard base64")
    try:
        args.witness = [WitnessKey.parse(vkey) for vkey in args.witness]
    except (ValueError, binascii.Error) as exc:
        parser.error(f"--witness: {exc}")
    if args.witness_quorum is None:
        args.witness_quorum = len(set(args.witness))
    elif not 1 <= args.witness_quorum <= len(set(args.witness)):
        parser.error("--witness-quorum must be 1 to the number of distinct --witness keys")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the checks the command line asks for; returns the exit status."""
    args = arguments(argv)
    checks = Checks()
    if args.evidence:
        offline(args, args.public_key, checks, args.witness)
    elif args.audit:
        audit(args, args.public_key, checks, ENDED, args.witness)
    else:
        online(args, args.public_key, checks, args.witness)
    verdict = "all checks passed" if checks.failed == 0 else f"{checks.failed} check(s) FAILED"
    print(verdict)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
