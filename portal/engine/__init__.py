"""The execution engine: `pool` claims executions and runs them, `execution` asks one
execution's questions, `jobs` derives, cancels and retries a job's status."""
