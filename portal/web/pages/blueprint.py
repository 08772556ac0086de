"""The HTML pages' blueprint; each view module of `portal.web.pages` adds its routes."""

from flask import Blueprint

bp = Blueprint("pages", __name__)
