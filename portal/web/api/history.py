"""A question's answers across jobs (SPEC section 6: `/api/v1/questions/<id>/history`)."""

from __future__ import annotations

from flask import jsonify, request

from portal import settings
from portal.compare import history
from portal.web import params
from portal.web.api.blueprint import bp


@bp.get("/questions/<question_id>/history")
def question_history_api(question_id: str):
    """A question's answers across jobs, newest job first, with changes marked."""
    query = params.history_query(request.args)
    history.find_question(question_id, settings.current().config.questions)
    items, next_cursor = history.history(question_id, **query)
    return jsonify(items=items, next=next_cursor)
