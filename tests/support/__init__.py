"""The test and benchmark harness, outside the shipped package: a loopback LLM provider
(`loopback`), subprocesses serving the portal (`live_server`) and engine workers (`workers`).
Tests and `scripts/bench.py` both import it."""
