"""Responses built off the event loop: templates and JSON bodies (issue 20; docs/security.md
"Pages rendered off the loop").

A gevent worker runs every request, provider call and lease renewal of its process on one
event loop. Rendering a big page or encoding a big document is seconds of CPU for a big job,
and while it runs nothing else does, /health included. Views therefore do their database work
on the loop (it must: sessions and connections belong to it) and hand the CPU-heavy last step
to `portal.offload`'s OS thread, waiting for it cooperatively:

- `template(name, context)`: the context processors run on the loop (they read the session and
  the database); the template renders in the thread, inside a copy of this request's context (so
  `url_for`, `request` and the CSRF token work there) with this request's `g`. The context holds
  plain dicts (views build pages from `to_dict`), so nothing is loaded from the database there.
- `json_response(build, ...)`: `build()` returns the document from plain values (decoding stored
  JSON, if any, happens there too) and is encoded in the thread.

Outside gevent (tests, the CLI) `offload.run` calls the function in place.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Response, copy_current_request_context, current_app, g

from portal import offload


def template(name: str | list[str], context: dict) -> str:
    """Renders template `name` with `context` (and the context processors') off the loop."""
    app = current_app._get_current_object()
    app.update_template_context(context)
    values = dict(vars(g))

    @copy_current_request_context
    def render() -> str:
        # The thread has its own app context: give it this request's `g` (the CSRF token, the
        # admin-session lookup), so the template sees what the loop saw. A template's first
        # use compiles it, here too (Jinja's cache is shared and locked).
        vars(g).update(values)
        return app.jinja_env.get_or_select_template(name).render(context)

    return offload.run(render)


def json_response(build: Callable[[], object], status: int = 200) -> Response:
    """Answers with the JSON of `build()`, built and encoded off the loop."""
    dumps = current_app.json.dumps

    def encode() -> str:
        return dumps(build())

    body = offload.run(encode)
    return current_app.response_class(body + "\n", status=status, mimetype="application/json")
