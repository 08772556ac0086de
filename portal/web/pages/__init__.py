"""The HTML pages (SPEC section 7): one blueprint, its views, view models, forms, htmx helpers.

Views: `jobs` (the job list, the form, a job, an execution, cancel and retry, sign-in),
`findings` (a cell's page, a question's history), `provenance` (receipts and the log's head as
the pages show them), `regions` (each region's health), `watch` (schedules, the changes
feed, webhook deliveries). View models: `job_view`,
`answer_views`, `cell_view`, `findings_view`, `charts`. `forms` and `htmx` serve them all.

May import: every wing and `portal.web`'s shared modules; never `portal.web.api`.
"""

# Importing the view modules attaches their routes to the blueprint.
from portal.web.pages import findings, jobs, provenance, regions, watch  # noqa: F401
from portal.web.pages.blueprint import bp as bp
