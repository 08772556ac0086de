"""htmx support: the one "partial or page" decision, its Vary header, redirects, the library.

htmx itself comes from the `django-js-lib-htmx` package (a registry package, found through
importlib) and is served by the app, so the portal works offline and with no CDN.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from flask import Response, make_response, redirect, request, send_file
from htmx_flask.requests import HtmxHeaders
from werkzeug.exceptions import NotFound

from portal.web import rendering

LIBRARY_PACKAGE = "js_lib_htmx"
LIBRARY_FILE = "htmx.min.js"
ONE_YEAR_S = 365 * 24 * 3600
MAX_PATH_CHARS = 2000


def is_partial() -> bool:
    """True for an htmx request that swaps a fragment (not boosted, not a history restore)."""
    headers = HtmxHeaders(request.headers)
    return bool(headers) and not headers.boosted and not headers.history_restore_request


def render(page: str, partial: str, context: dict, status: int = 200) -> Response:
    """Renders the fragment for htmx swaps and the full page otherwise, from one context (off
    the event loop: portal/web/rendering.py)."""
    response = make_response(rendering.template(partial if is_partial() else page, context))
    response.status_code = status
    add_vary(response)
    return response


def add_vary(response: Response) -> Response:
    """Marks a response as depending on HX-Request, so caches keep page and fragment apart."""
    response.vary.add("HX-Request")
    return response


def safe_path(raw: str | None) -> str | None:
    """Returns `raw` when it is a relative path on this site in printable ASCII, else None."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or len(raw) > MAX_PATH_CHARS:
        return None
    # No control, space, non-ASCII or backslash: a header cannot carry them, and browsers
    # read "/\\host" as another site.
    if not all("!" <= c <= "~" for c in raw) or "\\" in raw:
        return None
    parts = urlsplit(raw)
    return raw if not parts.scheme and not parts.netloc else None


def redirect_to(url: str) -> Response:
    """Sends htmx to `url` with HX-Redirect, and a browser without JavaScript with a 303."""
    # Only paths of this site: never a host taken from the request or from a parameter.
    url = safe_path(url) or "/"
    if HtmxHeaders(request.headers):
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url
    else:
        response = redirect(url, code=303)
    return add_vary(response)


@cache
def library_path() -> Path | None:
    """Returns the path of htmx.min.js inside the installed package, or None."""
    spec = importlib.util.find_spec(LIBRARY_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for candidate in sorted(Path(folder).glob(f"static/**/{LIBRARY_FILE}")):
            return candidate
    return None


@cache
def library_version() -> str:
    """Returns the version of the installed htmx package, used to bust long caches."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("django-js-lib-htmx")
    except PackageNotFoundError:
        return "0"


def send_library() -> Response:
    """Serves htmx.min.js with a one-year cache; the URL carries the version."""
    path = library_path()
    if path is None:
        raise NotFound("htmx is not installed (the django-js-lib-htmx package)")
    response = send_file(path, mimetype="text/javascript", max_age=ONE_YEAR_S, conditional=True)
    response.cache_control.public = True
    response.cache_control.immutable = True
    return response
