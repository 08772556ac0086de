"""JobSpecs for tests and benchmarks: one builder, unsigned (sign with portal.intake.signing)."""

from __future__ import annotations


def job_spec(
    models: list[str],
    regions: list[str],
    questions: list[str],
    *,
    job_id: str | None = None,
    runs: int = 1,
    name: str = "test",
) -> dict:
    """Returns an unsigned JobSpec asking `questions` (ids or literal prompts) of `models` in
    `regions`; the id is omitted (the portal derives one) unless `job_id` is given."""
    spec = {
        "version": "v1",
        "benchmark": {
            "name": name,
            "description": f"{name} job",
            "input": {"type": "prompt", "data": {"prompt": questions[0]}},
        },
        "constraints": {"regions": regions},
        "metadata": {"models": models},
        "questions": questions,
        "runs": runs,
    }
    if job_id is not None:
        spec = {"id": job_id, **spec}
    return spec
