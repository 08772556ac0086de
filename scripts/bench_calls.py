"""CPU per provider call, per wire format, for scripts/bench.py's `calls` section.

`portal.providers.call` against a loopback provider run as a separate process (so its CPU is
not counted), after a warm-up over kept-alive connections: the client's own user + system time
per call, for each wire format the portal speaks, for an OpenAI-compatible region with headers
and extra_body, and, when the `openai` package is installed, for the OpenAI SDK's client doing
the same call: the library a wire format could have been built on instead of http.client.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from portal.config import Model, Region, load_config
from portal.providers import call

PROMPT = "What is the capital of Australia?"
WARM_UP = 200
OPTIONS_TOML = """
[regions.r]
provider = "openai"
base_url = "{url}"
extra_body = {{provider = {{order = ["deepinfra"], allow_fallbacks = false}}}}
temperature = 0.2
max_tokens = 64

[regions.r.headers]
HTTP-Referer = "https://beacon.example"
X-Title = "Beacon"
X-K = {{env = "BENCH_CALLS_HEADER"}}

[models.m]
provider_model = "m"
"""


@contextmanager
def loopback(root: Path):
    """Yields the OpenAI base_url of a loopback provider running in its own process."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.loopback", "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process.stdout.readline().split()[-1]
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_per_call(send, count: int) -> float:
    """Returns the microseconds of this process's CPU time per `send()`, after a warm-up."""
    for _ in range(WARM_UP):
        send()
    start = time.process_time()
    for _ in range(count):
        send()
    return (time.process_time() - start) / count * 1e6


def senders(url: str) -> dict:
    """Returns {label: a function making one call} for each way of calling measured."""
    host = url.removesuffix("/v1")
    model = Model(id="m", name="M", provider_model="m")
    regions = {
        "openai": Region(id="r", name="R", provider="openai", base_url=url),
        "ollama": Region(id="r", name="R", provider="ollama", base_url=host),
        "anthropic": Region(id="r", name="R", provider="anthropic", base_url=host),
    }
    os.environ["BENCH_CALLS_HEADER"] = "bench-secret"
    path = Path(tempfile.mkdtemp(prefix="bench-calls-")) / "beacon.toml"
    path.write_text(OPTIONS_TOML.format(url=url), "utf-8")
    regions["openai, 3 headers and extra_body"] = load_config(path).regions["r"]
    found = {
        label: (lambda region=region: call(region, model, PROMPT, timeout_s=5))
        for label, region in regions.items()
    }
    try:
        import openai
    except ImportError:
        return found
    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0)

    def sdk():
        reply = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=512,
            temperature=0,
            timeout=5,
        )
        return reply.choices[0].message.content, reply.usage

    found[f"openai SDK {openai.__version__} (httpx), for comparison"] = sdk
    return found
