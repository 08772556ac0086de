"""Intake: a signed JobSpec becomes a stored job (SPEC section 4).

`signing` verifies the signature schemes, `trust` decides whose keys may submit, `jobspec`
parses and normalizes a spec after it verified, and `submit` checks replays and stores the job
with its executions and answers in one transaction.

May import: the top-level modules (`db`, `models`, `status`, `errors`, `config`, `settings`...)
and `engine.wake` (a submission wakes this process's dispatcher). Never flask.
"""
