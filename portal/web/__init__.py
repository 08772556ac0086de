"""The web edge: the JSON API (`web.api`), the HTML pages (`web.pages`) and what both share.

Shared here: `errors` (the app's error handlers), `params`, `paging` and `bounds` (query
and path input, parsed and bounded once), `admin` (the admin token and sign-in), `security`
(response headers) and `ops` (`/health`, `/ready`, `/metrics`, outside both blueprints
because platforms probe them at fixed paths).

May import: every wing. `web.pages` never imports `web.api`, nor the reverse.
"""
