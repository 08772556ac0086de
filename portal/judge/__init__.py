"""The optional judge (SPEC section 8): a configured model labels answers and summarizes jobs.

`config` reads the `[judge]` table and names the labels, `queue` queues the judge's work when a
job ends, `labels` asks the judge model for each answer's label, `summary` writes a job's
machine-written summary, `dispatch` runs both in a dispatcher's pool, and `agreement`
measures how often the judge agrees with the rules.

May import: the top-level modules, `providers`, `compare` and `engine`. Never flask.
"""
