"""The command line: `flask beacon ...` (keys, signing, the worker, the demo, the judge, the log).

May import: every wing except `portal.web`.
"""
