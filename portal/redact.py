"""Provider addresses without their secrets: no user, password, query string or fragment.

A `base_url` may carry credentials (`http://svc:PASSWORD@host/v1?api_key=KEY`). Whatever the
portal shows or stores about a provider call (answer errors, pages, CSV, logs) goes through
`scrub` first, so those parts never leave the configuration (docs/security.md).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

HIDDEN = "***"


def safe_url(url: str | None) -> str:
    """Returns `url` with its userinfo, query string and fragment removed."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return HIDDEN
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def secrets_of(url: str | None) -> list[str]:
    """Returns the secret parts of `url` (userinfo, password, query and its values)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found: list[str] = []
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and userinfo:
        found += [userinfo, unquote(userinfo)]
        user, colon, password = userinfo.partition(":")
        if colon and password:
            found += [password, unquote(password)]
    if parts.query:
        found.append(parts.query)
        found += [value for _, value in parse_qsl(parts.query, keep_blank_values=False)]
    if parts.fragment:
        found.append(parts.fragment)
    # Longest first, so a whole query string goes before the values inside it.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(text: str | None, *urls: str | None) -> str | None:
    """Returns `text` with every one of `urls` shown safely and their secrets hidden."""
    if not text:
        return text
    for url in urls:
        if not url:
            continue
        text = text.replace(url, safe_url(url))
        for secret in secrets_of(url):
            text = text.replace(secret, HIDDEN)
    return text
