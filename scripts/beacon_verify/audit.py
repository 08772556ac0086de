"""The audit of the whole log (SPEC section 9, "Audit"), and consistency with a kept checkpoint.

The executions are listed before the checkpoint is read, so every execution that had ended by
then has its receipt inside the checkpoint's tree. Entries are read a page at a time and only
their leaf hashes and executions are kept, so a large log audits in little memory.
"""

from __future__ import annotations

import binascii
import json
import os

import rfc8785

from .common import FETCH_ERRORS, Checks, b64decode, fetch, verify_ed25519
from .notes import CHECKPOINT, check_witnesses, fetch_checkpoint, open_checkpoint
from .rfc9162 import consistent, leaf_hash, tree_root

RECEIPT_FORMAT = "beacon-receipt-v1"
MAX_PAGES = 100_000
SHOWN = 10


def pages(base: str, path: str, limit: int, **start):
    """Yields the items of a paged list, following `next` until it is null."""
    cursor, seen = None, set()
    for _ in range(MAX_PAGES):
        page = fetch(base, path, limit=limit, cursor=cursor, **({} if cursor else start))
        yield from page["items"]
        cursor = page["next"]
        if cursor is None:
            return
        if cursor in seen:
            raise ValueError(f"{path} served the cursor {cursor!r} twice")
        seen.add(cursor)
    raise ValueError(f"{path} did not end after {MAX_PAGES} pages")


def ended_executions(base: str, ended: tuple[str, ...], limit: int) -> set[int]:
    """Returns the ids of the executions the portal lists as ended."""
    items = pages(base, "/api/v1/executions", limit)
    return {item["id"] for item in items if item["status"] in ended}


def listed(problems: list[str]) -> str:
    """Returns the first problems, joined, and how many more there are."""
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return "; ".join(problems[:SHOWN]) + more


class Ledger:
    """What the audit keeps of each served entry: its leaf hash, its execution, its problems."""

    def __init__(self, size: int, origin: str, public_key: bytes):
        self.size, self.origin, self.public_key = size, origin, public_key
        self.leaves: dict[int, bytes] = {}
        self.beyond: set[int] = set()
        self.executions: set[int] = set()
        self.ends: dict[tuple, int] = {}
        self.index_problems: list[str] = []
        self.receipt_problems: list[str] = []

    def add(self, item: object) -> None:
        """Takes one served entry: its index, its receipt, and its leaf when the tree holds it."""
        index = item.get("index") if isinstance(item, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            self.index_problems.append(f"an entry has the index {index!r}")
        elif index in self.leaves or index in self.beyond:
            self.index_problems.append(f"index {index} is served twice")
        elif index >= self.size:
            self.receipt(index, item)
            self.beyond.add(index)
        else:
            self.leaves[index] = self.receipt(index, item)

    def receipt(self, index: int, item: dict) -> bytes:
        """Checks one receipt's form, log and signature; returns its leaf hash."""
        receipt = item.get("receipt")
        if not isinstance(receipt, dict) or receipt.get("format") != RECEIPT_FORMAT:
            self.receipt_problems.append(f"index {index} is not a {RECEIPT_FORMAT}")
            return b""
        try:
            body = rfc8785.dumps(receipt)
            signature = b64decode(item.get("signature"))
        except (rfc8785.CanonicalizationError, binascii.Error, ValueError):
            self.receipt_problems.append(f"index {index}: no JCS form or no base64 signature")
            return b""
        execution = receipt.get("execution_id")
        if not verify_ed25519(self.public_key, body, signature):
            self.receipt_problems.append(f"index {index}: the signature does not verify")
        elif receipt.get("log_origin") != self.origin:
            self.receipt_problems.append(f"index {index} names the log {receipt.get('log_origin')}")
        elif isinstance(execution, int):
            self.executions.add(execution)
        end = (repr(execution), repr(receipt.get("finished_at")))
        if end in self.ends:
            self.receipt_problems.append(
                f"index {index} repeats the receipt of index {self.ends[end]} (one end, two)"
            )
        self.ends.setdefault(end, index)
        return leaf_hash(body)

    def missing(self) -> list[int]:
        """Returns the indices below the checkpoint's size that were not served."""
        return [i for i in range(self.size) if i not in self.leaves]


def check_indices(checks: Checks, ledger: Ledger, base: str, public_key: bytes) -> None:
    """Checks that indices 0 to size-1 were served once each, and nothing the log lacks."""
    problems = [f"index {i} is missing" for i in ledger.missing()] + ledger.index_problems
    if ledger.beyond:
        # The log may have grown since its checkpoint was read: the newest must cover them.
        try:
            newest = open_checkpoint(fetch(base, CHECKPOINT), public_key)[1]
        except FETCH_ERRORS:
            newest = ledger.size
        problems += [
            f"index {i} is served beyond the log's size {newest}"
            for i in sorted(ledger.beyond)
            if i >= newest
        ]
    checks.check(
        "entries",
        not problems,
        listed(problems) or f"indices 0 to {ledger.size - 1} are each served once",
    )


def check_root(checks: Checks, ledger: Ledger, root: bytes) -> None:
    """Checks that the tree rebuilt from the served entries has the checkpoint's root."""
    missing = ledger.missing()
    if missing:
        checks.check("root", False, f"cannot rebuild the tree: {len(missing)} entries missing")
        return
    rebuilt = tree_root([ledger.leaves[i] for i in range(ledger.size)])
    checks.check(
        "root",
        rebuilt == root,
        f"the tree rebuilt from the {ledger.size} entries "
        + ("has the checkpoint's root" if rebuilt == root else "has another root"),
    )


def check_covered(checks: Checks, ended: set[int], ledger: Ledger) -> None:
    """Checks that every ended execution has a receipt in the log."""
    lacking = sorted(ended - ledger.executions)
    checks.check(
        "executions",
        not lacking,
        f"every one of the {len(ended)} ended executions has a receipt in the log"
        if not lacking
        else listed([f"execution {i} ended without a receipt in the log" for i in lacking]),
    )


def check_consistency(checks: Checks, path: str, public_key: bytes, base: str, tree) -> None:
    """Checks that the checkpoint (origin, size, root) extends the one saved in `path`."""
    try:
        with open(path, encoding="utf-8") as handle:
            old = open_checkpoint(json.load(handle), public_key)
    except (OSError, ValueError, binascii.Error) as exc:
        checks.check("old checkpoint signature", False, f"{path}: {exc}")
        return
    checks.check("old checkpoint signature", True, f"note for size {old[1]} signed by the key")
    if old[0] != tree[0]:
        checks.check("consistency", False, f"the old checkpoint is of another log, {old[0]!r}")
    elif old[1] > tree[1]:
        detail = f"the tree of {tree[1]} is smaller than the old tree of {old[1]}: rolled back"
        checks.check("consistency", False, detail)
    elif old[1] == tree[1] and old[2] != tree[2]:
        detail = f"the tree of {tree[1]} has a different root from the old tree of the same size"
        checks.check("consistency", False, detail)
    else:
        try:
            proof = fetch(base, "/api/v1/log/proof/consistency", old=old[1], new=tree[1])
            ok = consistent(
                old[1], tree[1], old[2], tree[2], [b64decode(h) for h in proof["hashes"]]
            )
        except FETCH_ERRORS:
            ok = False
        checks.check("consistency", ok, f"the tree of {tree[1]} extends the old tree of {old[1]}")


def save(path: str, checkpoint: dict) -> None:
    """Writes the checkpoint JSON to `path` through a new file renamed over it."""
    scratch = f"{path}.tmp"
    with open(scratch, "w", encoding="utf-8") as handle:
        json.dump(checkpoint, handle, indent=2)
    os.replace(scratch, path)


def audit(args, public_key: bytes, checks: Checks, ended: tuple[str, ...], witnesses) -> None:
    """Audits the whole log of the portal at `args.portal` (see the module's docstring)."""
    base = args.portal
    try:
        ended_ids = ended_executions(base, ended, args.page_size)
    except FETCH_ERRORS as exc:
        checks.check("executions", False, f"cannot list the executions: {exc}")
        return
    doc, tree = fetch_checkpoint(checks, base, public_key, cosigned=bool(witnesses))
    if tree is None:
        return
    if witnesses:
        check_witnesses(checks, doc, witnesses, args.witness_quorum)
    ledger = Ledger(tree[1], tree[0], public_key)
    try:
        # Read to the end, past the checkpoint: an index served that no tree holds is extra.
        for item in pages(base, "/api/v1/log/entries", args.page_size, start=0):
            ledger.add(item)
    except FETCH_ERRORS as exc:
        checks.check("entries", False, f"cannot read the log's entries: {exc}")
        return
    check_indices(checks, ledger, base, public_key)
    check_root(checks, ledger, tree[2])
    problems = ledger.receipt_problems
    detail = f"every receipt is a {RECEIPT_FORMAT} of {tree[0]!r}, signed by the given key"
    checks.check("receipts", not problems, listed(problems) or detail)
    check_covered(checks, ended_ids, ledger)
    if args.state and os.path.exists(args.state):
        check_consistency(checks, args.state, public_key, base, tree)
    elif args.state:
        print(f"NOTE state: {args.state} does not exist yet; this run starts it")
    if args.state and checks.failed == 0:
        save(args.state, doc)
        print(f"saved the checkpoint of size {tree[1]} to {args.state}")
