"""The web edge: the JSON API (`web.api`), the HTML pages (`web.pages`) and what both share.

Shared here: `errors` (the app's error handlers), `params` and `paging` (query input, parsed
and bounded once), `url_text` (the one rule for text and numbers a URL brings), `body_deadline`
(request bodies against a deadline), `rendering` (templates and JSON bodies built off the event
loop), `admin` (the admin token, its throttle and sign-in), `security` (response headers) and
`ops` (`/health`, `/ready`, `/metrics`, outside both blueprints because platforms probe them at
fixed paths).

May import: every wing. `web.pages` never imports `web.api`, nor the reverse.
"""
