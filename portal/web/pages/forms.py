"""The web forms (flask-wtf): a new job, the admin login, and the cancel and retry buttons.

Every form carries a CSRF token. The job form knows only the configured choices; turning its
data into a JobSpec is `job_spec`, and the spec then goes through the same intake as the API.
"""

from __future__ import annotations

import secrets

from flask_wtf import FlaskForm
from wtforms import (
    IntegerField,
    PasswordField,
    SelectMultipleField,
    TextAreaField,
)
from wtforms.validators import InputRequired, NumberRange, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from portal.config import BeaconConfig
from portal.errors import DomainError
from portal.intake import estimate
from portal.intake.jobspec import MAX_PROMPT_CHARS, MAX_RUNS
from portal.questions import bank_languages
from portal.times import iso, utcnow


class CheckboxesField(SelectMultipleField):
    """A multiple choice shown as one checkbox per option."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class JobForm(FlaskForm):
    """Questions (from the bank or typed), models, regions and runs of a new job."""

    questions = CheckboxesField("Questions from the bank", validate_choice=True)
    prompt = TextAreaField(
        "Or type a prompt",
        description="Sent as it is, after the questions picked above.",
    )
    languages = CheckboxesField(
        "Languages",
        validate_choice=True,
        description="Ask each question in every ticked language it has (its own first); "
        "none ticked asks each in its own language. Typed prompts are sent as written.",
    )
    models = CheckboxesField("Models", validate_choice=True)
    regions = CheckboxesField("Regions", validate_choice=True)
    runs = IntegerField(
        "Runs per region",
        validators=[Optional(), NumberRange(min=1, max=MAX_RUNS)],
        description=f"Repeats of each question in each region (1 to {MAX_RUNS}), "
        "so sampling noise is not read as a regional difference.",
    )

    def __init__(self, config: BeaconConfig, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.questions.choices = [(q.id, q.prompt) for q in config.questions.values()]
        self.languages.choices = [
            (lang, f"{lang} ({n} question{'s' if n != 1 else ''})")
            for lang, n in bank_languages(config.questions).items()
        ]
        self.models.choices = [(m.id, f"{m.icon} {m.name}") for m in config.models.values()]
        self.regions.choices = [(r.id, r.name) for r in config.regions.values()]
        if not self.is_submitted():
            # Defaults: every model, every region and the control questions (which should read
            # the same everywhere), so a form submitted untouched is already a useful job.
            self.questions.data = [
                q.id for q in config.questions.values() if q.category == "control"
            ]
            self.models.data = [m.id for m in config.models.values()]
            self.regions.data = [r.id for r in config.regions.values()]

    def validate_prompt(self, field) -> None:
        text = (field.data or "").strip()
        if len(text) > MAX_PROMPT_CHARS:
            raise ValidationError(f"At most {MAX_PROMPT_CHARS} characters.")
        if text and not any(c.isspace() for c in text):
            # The intake reads a single bare word as a question id, never as a prompt.
            raise ValidationError("A typed prompt needs at least two words.")
        if not text and not self.questions.data:
            raise ValidationError("Pick a question from the bank or type a prompt.")

    def validate_models(self, field) -> None:
        if not field.data:
            raise ValidationError("Pick at least one model.")

    def validate_regions(self, field) -> None:
        if not field.data:
            raise ValidationError("Pick at least one region.")

    def job_spec(self) -> dict:
        """Returns the unsigned JobSpec of this form, with a fresh nonce and timestamp."""
        prompt = (self.prompt.data or "").strip()
        questions = list(self.questions.data) + ([prompt] if prompt else [])
        benchmark = {"name": "web-form", "description": "Submitted through the portal's web form."}
        if prompt:
            benchmark["input"] = {"type": "prompt", "data": {"prompt": prompt}}
        spec = {
            "version": "v1",
            "benchmark": benchmark,
            "constraints": {"regions": list(self.regions.data)},
            "metadata": {
                "models": list(self.models.data),
                "nonce": secrets.token_hex(16),
                "timestamp": iso(utcnow()),
                "source": "web-form",
            },
            "questions": questions,
            "runs": self.runs.data or 1,
        }
        if self.languages.data:
            spec["languages"] = list(self.languages.data)
        return spec

    def estimate(self, config: BeaconConfig) -> dict:
        """Returns what the form's job would cost at most, for the form to show before submit:
        {answers, cost_usd, unpriced, limit, over}, or {problem} when it is no job yet."""
        try:
            found, limit = estimate.preview(self.job_spec(), config)
        except DomainError as exc:
            return {"problem": exc.message}
        over = limit is not None and (found.cost_usd is None or found.cost_usd > limit)
        return {
            "answers": found.answers,
            "cost_usd": found.cost_usd,
            "unpriced": [f"{model} in {region}" for model, region in found.unpriced],
            "limit": limit,
            "over": over,
        }


class LoginForm(FlaskForm):
    """The admin token, asked once per session when BEACON_ADMIN_TOKEN is set."""

    token = PasswordField("Admin token", validators=[InputRequired("Enter the admin token.")])


class ActionForm(FlaskForm):
    """A button that posts (cancel, retry): nothing but its CSRF token."""
