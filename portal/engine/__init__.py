"""The execution engine: claims executions, runs them in a bounded pool, derives job status.

`pool` claims executions with a lease and runs them, `execution` asks one execution's
questions in order, `answer_writes` holds its hot-path writes, `writer` commits the writes of
the answers that end together (one writer per process), `execution_end` ends an execution
(status, receipt, job status), `jobs` derives, cancels and retries a job's status,
`region_rate` spaces a region's calls, `wake` wakes this process's dispatcher, `metrics`
counts what the engine does.

May import: the top-level modules, `providers`, `compare` (an answer's class), `provenance`
(a receipt when an execution ends) and `judge` (its work runs in the same pool). Never flask.
"""
