"""The HTML pages (SPEC section 7), rendered with Jinja and htmx."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("pages", __name__)
