#!/usr/bin/env python
"""Benchmarks the transparency log at scale: proofs and appends on a log of N entries.

The log's stored subtree hashes for N synthetic leaves are computed in memory
(`merkle.MemoryTree`, the same structure appends write) and bulk-inserted into a fresh database;
then it times, through the portal's own code and through the API, inclusion and consistency
proofs at random places, the checkpoint, and real appends (`tlog.append`) at that size.

    .venv/bin/python scripts/bench_log.py                         # 1,000,000 entries, SQLite
    .venv/bin/python scripts/bench_log.py --size 100000 --database-url postgresql://...

Results on the reference machine: docs/benchmarks.md ("Transparency log").
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, text  # noqa: E402

from portal import create_app  # noqa: E402
from portal.db import db  # noqa: E402
from portal.provenance import merkle, tlog  # noqa: E402
from portal.provenance.log_models import LogHead, LogNode  # noqa: E402
from portal.settings import ENV_NAMES  # noqa: E402

BATCH = 20_000


def timed(fn, runs: int) -> list[float]:
    """Returns the milliseconds each of `runs` calls took."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {p99:.2f} | {ms[-1]:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-log-"))
    url = args.database_url or f"sqlite:///{folder / 'log.sqlite3'}"
    config = {name: "" for name in ENV_NAMES}
    config.update(
        INSTANCE_PATH=str(folder / "instance"),
        DATABASE_URL=url,
        SECRET_KEY="bench",
        BEACON_SIGNING_KEY=base64.b64encode(os.urandom(32)).decode(),
        BEACON_LOG_ORIGIN="bench.example/log",
    )
    app = create_app(config)
    rng = random.Random(1)
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("DROP TABLE IF EXISTS log_nodes, log_head CASCADE"))
            db.session.commit()
        db.metadata.create_all(db.engine, tables=[LogNode.__table__, LogHead.__table__])
        start = time.perf_counter()
        tree = merkle.MemoryTree()
        for i in range(args.size):
            tree.append(merkle.leaf_hash(i.to_bytes(8, "big")))
        built = time.perf_counter() - start
        rows = [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in tree.nodes.items()]
        start = time.perf_counter()
        for offset in range(0, len(rows), BATCH):
            db.session.execute(insert(LogNode), rows[offset : offset + BATCH])
        db.session.execute(
            insert(LogHead),
            [{"id": tlog.HEAD_ID, "size": tree.size, "root_hash": tree.root()}],
        )
        db.session.commit()
        loaded = time.perf_counter() - start
        print(f"{db.engine.dialect.name}: {args.size} entries, {len(rows)} stored nodes")
        print(f"built in memory in {built:.1f} s, loaded in {loaded:.1f} s\n")
        n = args.size

        def inclusion():
            size = rng.randint(1, n)
            tlog.inclusion(rng.randrange(size), size)
            db.session.rollback()

        def consistency():
            new = rng.randint(1, n)
            tlog.consistency(rng.randint(0, new), new)
            db.session.rollback()

        client = app.test_client()

        def api_inclusion():
            size = rng.randint(1, n)
            query = {"index": rng.randrange(size), "size": size}
            assert client.get("/api/v1/log/proof/inclusion", query_string=query).status_code == 200

        def api_checkpoint():
            assert client.get("/api/v1/log/checkpoint").status_code == 200

        def append():
            tlog.lock()
            tlog.append(merkle.leaf_hash(os.urandom(16)))
            db.session.commit()

        print("| operation | runs | median ms | p99 ms | max ms |")
        print("|---|---|---|---|---|")
        print(summary("inclusion proof (tlog)", timed(inclusion, args.runs)))
        print(summary("consistency proof (tlog)", timed(consistency, args.runs)))
        print(summary("GET inclusion proof (API)", timed(api_inclusion, args.runs)))
        print(summary("GET checkpoint (API)", timed(api_checkpoint, args.runs)))
        print(summary("append (lock, nodes, head, commit)", timed(append, args.runs)))


if __name__ == "__main__":
    main()
