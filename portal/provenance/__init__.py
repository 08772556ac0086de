"""Provenance (SPEC section 9): signed receipts, the append-only Merkle log, its checkpoints.

`merkle` computes RFC 6962 hashes and proofs, `log_models` holds the log's tables, `tlog`
appends to the log and signs checkpoints, `receipts` issues an ended execution's receipt.

May import: the top-level modules only. Never flask.
"""
