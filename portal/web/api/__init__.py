"""The JSON API under /api/v1 (SPEC sections 6 and 9) and its OpenAPI document: one blueprint.

`jobs` submits, lists, cancels and retries jobs and serves executions, comparisons and the
bank; `answers` pages a big job's answers; `history` a question's answers across jobs;
`provenance` receipts, the log and evidence; `watch` schedules and changes; `openapi` the
document that describes them all.

May import: every wing and `portal.web`'s shared modules; never `portal.web.pages`.
"""

# Importing the view modules attaches their routes to the blueprint.
from portal.web.api import answers, history, jobs, provenance, watch  # noqa: F401
from portal.web.api.blueprint import bp as bp
