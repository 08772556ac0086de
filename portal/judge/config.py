"""The optional judge (SPEC sections 3 and 8): its `[judge]` table and its three labels.

Pure data and checks, no Flask or database: `portal.config` validates the table with
`parse_judge`, the models and pages use `expected_label` and `agrees` to set the judge's label
beside the rule-based class.
"""

from __future__ import annotations

from dataclasses import dataclass

COMPLETE, EVASIVE, DENIAL, ERROR = "complete", "evasive", "denial", "error"
LABELS = (COMPLETE, EVASIVE, DENIAL)
# The rule classes (portal.refusal_rules) seen as judge labels. A technical failure has no
# answer to judge, so it maps to nothing and is never compared (docs/comparison.md).
RULE_TO_LABEL = {"substantive": COMPLETE, "evasive": EVASIVE, "refusal": DENIAL}


class JudgeConfigError(ValueError):
    """The `[judge]` table is invalid; `key` is the dotted key, `problem` says why."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class JudgeSettings:
    """Which configured model in which configured region labels answers, and whether it also
    writes a summary of each job."""

    region: str
    model: str
    summary: bool = False


def parse_judge(entry, regions, models) -> JudgeSettings:
    """Validates a `[judge]` table against the configured region and model ids."""
    if not isinstance(entry, dict):
        raise JudgeConfigError("judge", "must be a table")
    allowed = {"region": str, "model": str, "summary": bool}
    for key, value in entry.items():
        if key not in allowed:
            raise JudgeConfigError(f"judge.{key}", f"unknown key (known: {', '.join(allowed)})")
        if not isinstance(value, allowed[key]):
            kind = "true or false" if allowed[key] is bool else "a string"
            raise JudgeConfigError(f"judge.{key}", f"must be {kind} (got {value!r})")
    for key, known, what in (("region", regions, "region"), ("model", models, "model")):
        if key not in entry:
            raise JudgeConfigError(f"judge.{key}", f"required: the id of a configured {what}")
        if entry[key] not in known:
            raise JudgeConfigError(
                f"judge.{key}",
                f"unknown {what} {entry[key]!r} (configured: {', '.join(sorted(known)) or 'none'})",
            )
    return JudgeSettings(entry["region"], entry["model"], entry.get("summary", False))


def expected_label(classification: str | None) -> str | None:
    """Returns the judge label that a rule class stands for, or None (technical failure)."""
    return RULE_TO_LABEL.get(classification or "")


def agrees(label: str | None, classification: str | None) -> bool | None:
    """Says whether the judge's label matches the rule class; None when they cannot be compared."""
    expected = expected_label(classification)
    if label not in LABELS or expected is None:
        return None
    return label == expected
