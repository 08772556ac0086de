"""Command line for the judge: `flask beacon judge JOB_ID` and `flask beacon judge-agreement`."""

from __future__ import annotations

import os
from pathlib import Path

import click
from flask.cli import with_appcontext

from portal import settings
from portal.db import db
from portal.judge import (
    agreement as judge_agreement,
)
from portal.judge import (
    labels as judge,
)
from portal.judge import (
    queue as judge_queue,
)
from portal.judge import (
    summary,
)
from portal.judge.config import agrees
from portal.judge.models import Judgement
from portal.models import Answer, Execution, Job

EXAMPLES = Path(__file__).resolve().parents[2] / "tests" / "compare" / "test_classify_examples.py"


def _judge_settings():
    config = settings.current().config
    if config.judge is None:
        raise click.ClickException(
            f"no [judge] table in the configuration ({config.source}): name a region and a model"
        )
    return config


@click.command("judge")
@click.argument("job_id")
@click.option("--queue-only", is_flag=True, help="queue the work for the running workers")
@with_appcontext
def judge_command(job_id: str, queue_only: bool):
    """Judges (again) every completed answer of an ended job, and writes its summary."""
    config = _judge_settings()
    job = db.session.get(Job, db.session.scalar(db.select(Job.pk).where(Job.id == job_id)) or -1)
    if job is None:
        raise click.ClickException(f"no job with id {job_id!r}")
    if not job.ended:
        raise click.ClickException(f"job {job_id} is still {job.status}; judge it once it ends")
    queued = judge_queue.requeue_job(job_id, config.judge)
    owner = f"cli:{os.getpid()}:{os.urandom(4).hex()}"
    lease = judge.lease_s(config.execution)
    mine = (
        []
        if queue_only
        else judge.claim(Judgement, queued, owner, lease, Judgement.job_id == job_id)
    )
    db.session.commit()
    click.echo(
        f"job {job_id}: {queued} answers to judge with {config.judge.model}"
        f" in {config.judge.region}"
    )
    if queue_only:
        return
    for judgement_id in mine:
        judge.run_judgement(judgement_id, owner, config)
    _print_labels(job_id)
    if config.judge.summary:
        for summary_id in summary.claim_summaries(1, owner, lease, job_id):
            db.session.commit()
            summary.run_summary(summary_id, owner, config)
        try:
            doc = summary.summary_doc(job_id)
            click.echo(f"machine-written summary: {doc['text']}")
        except Exception as exc:  # an ApiError saying why there is none
            click.echo(f"no summary: {exc}")


def _print_labels(job_id: str) -> None:
    rows = db.session.execute(
        db.select(Answer, Execution.model_id, Execution.region, Judgement)
        .join(Execution, Execution.id == Answer.execution_id)
        .join(Judgement, Judgement.answer_id == Answer.id)
        .where(Execution.job_id == job_id)
        .order_by(Answer.id)
    ).all()
    disagreements = 0
    for answer, model_id, region, judgement in rows:
        agree = agrees(judgement.label, answer.classification)
        disagreements += agree is False
        mark = {True: "", False: "  <- disagrees with the rules", None: ""}[agree]
        detail = f" ({judgement.error})" if judgement.error else ""
        click.echo(
            f"  answer {answer.id} {model_id} @ {region}"
            f" {answer.question_id or answer.question_index}: rules {answer.classification},"
            f" judge {judgement.label}{detail}{mark}"
        )
    click.echo(f"{len(rows)} judged, {disagreements} disagreements with the rules")


@click.command("judge-agreement")
@click.option(
    "--examples",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=EXAMPLES,
    show_default=True,
    help="a file whose EXAMPLES are the written classification examples",
)
@click.option("--limit", type=click.IntRange(min=1), help="judge only the first N examples")
@with_appcontext
def judge_agreement_command(examples: Path, limit: int | None):
    """Runs the judge over the written examples; prints agreement and Cohen's kappa."""
    config = _judge_settings()
    loaded = judge_agreement.load_examples(examples)
    click.echo(f"judge: {config.judge.model} in {config.judge.region} ({judge.PROMPT_VERSION})")

    def progress(row: dict) -> None:
        reply = " ".join((row["reply"] or "").split())[:60]
        click.echo(f"  judge {row['judge']:<8} rules {row['rules']:<8} reply {reply!r}")

    result = judge_agreement.run(config, loaded, limit, progress)
    click.echo(f"examples judged: {result['examples']}; judge labels: {result['judge_labels']}")
    for other, numbers in result["against"].items():
        kappa = "undefined" if numbers["kappa"] is None else f"{numbers['kappa']:.3f}"
        share = numbers["agreement"]
        share = "-" if share is None else f"{share:.3f}"
        click.echo(f"against the {other}: agreement {share}, Cohen's kappa {kappa}")
        for row in numbers["differ"]:
            text = " ".join((row["output"] or "").split())[:70]
            click.echo(f"  judge {row['judge']:<8} {other} {row[other]:<8} {text!r}")
