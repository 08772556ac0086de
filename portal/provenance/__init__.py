"""Provenance (SPEC section 9): signed receipts, the append-only Merkle log, its checkpoints.

`merkle` computes RFC 6962 hashes and proofs, `log_models` holds the log's tables, `tlog`
appends to the log and signs checkpoints, `receipts` issues an ended execution's receipt and
`waiting` keeps the receipts the log refused until the sweep appends them. Witnesses (C2SP):
`notes` reads and writes signed notes, vkeys and cosignatures; `witness_config` reads the
`[[witnesses]]` tables, `witness_client` talks to one witness, `cosigning` asks them all and
serves their cosignatures (`witness_models`); `witness` is the witness anyone can host.

May import: the top-level modules only. Never flask.
"""
