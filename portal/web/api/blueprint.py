"""The JSON API's blueprint; each view module of `portal.web.api` adds its routes."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
