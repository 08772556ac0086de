"""The command line: `flask beacon ...` (keys, signing, the worker, the demo, the judge, the log,
the witness).

May import: every wing except `portal.web`.
"""
