"""The OpenAI chat-completions wire format: vLLM, llama.cpp's server, Together, DeepInfra, Groq,
DashScope, DeepSeek, OpenRouter and most hosts speak it (SPEC section 3).

`POST {base_url}/chat/completions`, the key as a bearer token; the text is at
`choices[0].message.content`, the tokens at `usage.prompt_tokens` and `usage.completion_tokens`.
"""

from __future__ import annotations

from portal.providers.common import Reply, count, dig

PATH = "/chat/completions"
HEADERS: dict[str, str] = {}
KEY_WORDS = "bearer token"


def auth(token: str) -> dict[str, str]:
    """Returns the headers that carry the region's key."""
    return {"Authorization": f"Bearer {token}"}


def body(model: str, prompt: str, max_tokens: int, temperature: float) -> dict:
    """Returns the request body asking `model` one prompt."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    }


def read(data: object) -> Reply:
    """Returns the answer's text and token counts, or the problem when it has no text."""
    content = dig(data, "choices", 0, "message", "content")
    if not isinstance(content, str):
        return Reply(None, None, None, "no text at choices[0].message.content")
    usage = dig(data, "usage")
    usage = usage if isinstance(usage, dict) else {}
    return Reply(content, count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")))
