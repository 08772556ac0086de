"""The API's listing limits: the validators in `portal.api` and the OpenAPI document both use
these, so the document cannot drift from what the API accepts."""

from __future__ import annotations

import re

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# A cursor is a row id as `next` gave it; 18 digits keep it inside a signed 64-bit integer.
DIGITS = re.compile(r"[0-9]{1,18}")
