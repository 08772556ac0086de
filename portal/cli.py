"""Command line: `flask beacon keygen | sign FILE | verify FILE`."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup

from . import settings, signing, trust

beacon = AppGroup("beacon", help="Beacon portal commands.")


def register(app: Flask) -> None:
    """Adds the `beacon` command group to the app."""
    app.cli.add_command(beacon)


@beacon.command("keygen")
def keygen_command():
    """Prints a new Ed25519 key pair and the environment lines that use it."""
    seed = signing.generate_seed()
    public = signing.public_key_b64(seed)
    click.echo(
        f"# private seed: keep it secret\nexport BEACON_USER_KEY={base64.b64encode(seed).decode()}"
    )
    click.echo(f"# public key: give it to the portal operator\n# public_key: {public}")
    click.echo("# on the portal, trust it with:")
    entry = [{"kid": "me", "public_key": public, "status": "active"}]
    click.echo(f"export BEACON_TRUSTED_KEYS='{json.dumps(entry)}'")


@beacon.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="file holding the base64 seed (default: $BEACON_USER_KEY, else the portal key)",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="set metadata.nonce and metadata.timestamp to new values before signing",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write here instead of standard output",
)
def sign_command(file: Path, key_file: Path | None, fresh: bool, output: Path | None):
    """Signs a JobSpec with beacon-jcs-v1 and prints it."""
    spec = _read_spec(file)
    if fresh:
        import secrets

        metadata = spec.setdefault("metadata", {})
        metadata["nonce"] = secrets.token_urlsafe(12)
        metadata["timestamp"] = (
            datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
    signed = signing.sign(spec, _seed(key_file))
    text = json.dumps(signed, indent=2, ensure_ascii=False) + "\n"
    if output:
        output.write_text(text, "utf-8")
        click.echo(f"signed {file} -> {output} with key {signed['public_key']}", err=True)
    else:
        click.echo(text, nl=False)


@beacon.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def verify_command(file: Path):
    """Says which scheme verifies a signed JobSpec and whether its key is trusted here."""
    from .errors import ApiError
    from .jobspec import unwrap

    try:
        spec = unwrap(signing.load_json(file.read_bytes()))
        verified = signing.verify(spec, allow_legacy=True)
    except (ValueError, ApiError, signing.SignatureError) as exc:
        message = getattr(exc, "message", exc)
        raise click.ClickException(f"{file}: does not verify: {message}") from None
    s = settings.current()
    click.echo(f"{file}: verifies under {verified.scheme}; spec_hash {verified.spec_hash}")
    if verified.scheme != "beacon-jcs-v1" and not s.config.intake.legacy_signatures:
        click.echo("  note: legacy signatures are switched off in this portal's configuration")
    try:
        key = trust.check_trust(
            verified.public_key, s.trusted_keys, s.portal_public_key, datetime.now(UTC)
        )
        click.echo(f"  key {verified.public_key} is trusted here (kid {key.kid})")
    except trust.TrustError as exc:
        click.echo(f"  key {verified.public_key} is NOT trusted here: {exc.code}: {exc.message}")
        sys.exit(3)


def _read_spec(file: Path) -> dict:
    try:
        spec = signing.load_json(file.read_bytes())
    except ValueError as exc:
        raise click.ClickException(f"{file}: not valid JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise click.ClickException(f"{file}: a JobSpec must be a JSON object")
    spec.pop("signature", None)
    spec.pop("public_key", None)
    return spec


def _seed(key_file: Path | None) -> bytes:
    import os

    raw = key_file.read_text().strip() if key_file else os.environ.get("BEACON_USER_KEY")
    if not raw:
        return settings.current().signing_seed
    try:
        return signing.decode_seed(raw)
    except ValueError as exc:
        raise click.ClickException(f"bad signing key: {exc}") from None
