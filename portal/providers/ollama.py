"""Ollama's chat wire format (SPEC section 3).

`POST {base_url}/api/chat` with `stream: false`, the sampling limits under `options`; the text is
at `message.content`, the tokens at `prompt_eval_count` and `eval_count`.
"""

from __future__ import annotations

from portal.providers.common import Reply, count, dig

PATH = "/api/chat"
HEADERS: dict[str, str] = {}
KEY_WORDS = "bearer token"


def auth(token: str) -> dict[str, str]:
    """Returns the headers that carry the region's key (a proxy in front of Ollama reads it)."""
    return {"Authorization": f"Bearer {token}"}


def body(model: str, prompt: str, max_tokens: int, temperature: float) -> dict:
    """Returns the request body asking `model` one prompt, in one JSON answer."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "stream": False,
        "options": {"temperature": temperature, "num_predict": max_tokens},
    }


def read(data: object) -> Reply:
    """Returns the answer's text and token counts, or the problem when it has no text."""
    content = dig(data, "message", "content")
    if not isinstance(content, str):
        return Reply(None, None, None, "no text at message.content")
    return Reply(content, count(dig(data, "prompt_eval_count")), count(dig(data, "eval_count")))
