"""Secrets kept out of everything the portal shows, stores or logs (docs/security.md).

- `safe_url`, `secrets_of`, `scrub`: a `base_url` may carry credentials
  (`http://svc:PASSWORD@host/v1?api_key=KEY`); configuration errors show it without them.
- `Secrets`: the set of every secret the portal knows, built once at start-up
  (`portal.settings.known_secrets`: each region's key, the secrets inside each `base_url`, the
  admin token, `SECRET_KEY`, the signing seed; config code that reads another secret from the
  environment adds it there). Provider-controlled text (errors, what a provider says about
  itself, answers) is scrubbed with it before it is stored, and log records by `SecretFilter`.
  A provider may echo the key it was sent, whole, clipped or escaped: every form of each secret,
  and any `FRAGMENT` characters of one in a row, become `***`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

HIDDEN = "***"
# Shorter values are not treated as secrets: hiding every "abc" in a message helps nobody.
MIN_CHARS = 6
# Any run this long of a secret's characters is hidden, wherever it stands: a key clipped in the
# middle, or quoted in part, is still the key.
FRAGMENT = 8


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


def password_of(url: str | None) -> str | None:
    """Returns the password inside `url` (`redis://:PASSWORD@host`), if it holds one."""
    try:
        return unquote(urlsplit(url).password or "") or None if url else None
    except ValueError:
        return None


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


class Secrets:
    """The secret strings the portal knows; `scrub` hides them in untrusted text.

    Values are added once (`add`, `add_url`), or as the name of an environment variable read
    at each scrub (`add_env`), so a key the providers read from the environment is the one
    hidden."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._env_names: set[str] = set()
        self._cached: tuple[frozenset, list[str], dict[str, list[str]]] | None = None

    def add(self, value: str | bytes | None) -> None:
        """Adds a secret (bytes: also as base64, URL-safe base64 and hex)."""
        if isinstance(value, bytes):
            for text in (
                base64.b64encode(value).decode(),
                base64.urlsafe_b64encode(value).decode(),
                value.hex(),
            ):
                self.add(text)
            return
        if value and len(value.strip()) >= MIN_CHARS:
            self._values.add(value.strip())

    def add_url(self, url: str | None) -> None:
        """Adds the secrets inside a URL: its userinfo, password, query and its values."""
        for secret in secrets_of(url):
            self.add(secret)

    def add_env(self, name: str | None) -> None:
        """Adds the value of environment variable `name`, read whenever text is scrubbed."""
        if name:
            self._env_names.add(name)

    def values(self) -> frozenset[str]:
        """Every secret, environment variables read now."""
        found = set(self._values)
        for name in self._env_names:
            value = (os.environ.get(name) or "").strip()
            if len(value) >= MIN_CHARS:
                found.add(value)
        return frozenset(found)

    def _forms(self) -> tuple[list[str], dict[str, list[str]]]:
        """(every written form of every secret, longest first; {FRAGMENT chars: forms})."""
        values = self.values()
        if self._cached is None or self._cached[0] != values:
            forms: set[str] = set()
            for value in values:
                forms |= {
                    value,
                    quote(value, safe=""),
                    json.dumps(value)[1:-1],
                    " ".join(value.split()),
                }
            ordered = sorted((f for f in forms if len(f) >= MIN_CHARS), key=len, reverse=True)
            grams: dict[str, list[str]] = {}
            for form in ordered:
                for i in range(len(form) - FRAGMENT + 1):
                    grams.setdefault(form[i : i + FRAGMENT], []).append(form)
            self._cached = (values, ordered, grams)
        return self._cached[1], self._cached[2]

    def scrub(self, text: str | None, *, fragments: bool = True) -> str | None:
        """Returns `text` with every secret hidden: each whole form, then (unless `fragments`
        is False, for long texts such as answers) any FRAGMENT characters of one in a row."""
        if not text:
            return text
        forms, grams = self._forms()
        for form in forms:
            if form in text:
                text = text.replace(form, HIDDEN)
        if fragments and grams and len(text) >= FRAGMENT:
            text = _hide_fragments(text, grams)
        return text

    def scrub_value(self, value):
        """Scrubs every string inside a JSON-like value (dicts, lists), keys included."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_value(v) for v in value]
        return value


def _hide_fragments(text: str, grams: dict[str, list[str]]) -> str:
    """Hides each maximal run of `text` that lies inside one secret and is FRAGMENT long."""
    spans: list[tuple[int, int]] = []
    i = 0
    while i <= len(text) - FRAGMENT:
        forms = grams.get(text[i : i + FRAGMENT])
        if forms is None:
            i += 1
            continue
        end = i + FRAGMENT
        while end < len(text) and any(text[i : end + 1] in form for form in forms):
            end += 1
        spans.append((i, end))
        i = end
    for start, end in reversed(spans):
        text = text[:start] + HIDDEN + text[end:]
    return text


class SecretFilter(logging.Filter):
    """Scrubs a log record's message and exception text of every secret in `secrets`."""

    def __init__(self, secrets: Secrets):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = self.secrets.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.secrets.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.secrets.scrub(record.stack_info)
        return True
