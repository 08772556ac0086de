"""Anthropic's Messages API wire format (SPEC section 13).

`POST {base_url}/v1/messages` (base_url `https://api.anthropic.com`), the key in `x-api-key`,
`anthropic-version: 2023-06-01`, `max_tokens` required. The text is every `text` block of
`content` joined, the tokens `usage.input_tokens` (plus any prompt-cache tokens, which are
prompt tokens too) and `usage.output_tokens`; `model` names what answered, as for the others.
"""

from __future__ import annotations

from portal.providers.common import Reply, count, dig

PATH = "/v1/messages"
VERSION = "2023-06-01"
HEADERS = {"anthropic-version": VERSION}
KEY_WORDS = "API key"
_CACHE_TOKENS = ("cache_creation_input_tokens", "cache_read_input_tokens")


def auth(token: str) -> dict[str, str]:
    """Returns the headers that carry the region's key."""
    return {"x-api-key": token}


def body(model: str, prompt: str, max_tokens: int, temperature: float) -> dict:
    """Returns the request body asking `model` one prompt."""
    return {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": temperature,
    }


def read(data: object) -> Reply:
    """Returns the answer's text and token counts, or the problem when it has no text."""
    blocks = dig(data, "content")
    texts = [
        b["text"]
        for b in (blocks if isinstance(blocks, list) else [])
        if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
    ]
    if not texts:
        return Reply(None, None, None, "no text block in content")
    usage = dig(data, "usage")
    usage = usage if isinstance(usage, dict) else {}
    prompt_tokens = count(usage.get("input_tokens"))
    if prompt_tokens is not None:
        prompt_tokens += sum(count(usage.get(k)) or 0 for k in _CACHE_TOKENS)
    return Reply("".join(texts), prompt_tokens, count(usage.get("output_tokens")))
