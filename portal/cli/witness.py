"""`flask beacon witness keygen | serve | log-vkey`: a C2SP tlog-witness anyone can host.

The witness's logic is portal/provenance/witness.py; its HTTP layer is the small WSGI app
here (`wsgi_app`: `POST /add-checkpoint`, and `GET /` saying what it is), served by gevent's
WSGI server. It needs nothing of the portal but this command line: its own key file, its own
database (SQLite by default) and the keys of the logs it witnesses.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
from flask.cli import AppGroup

from portal import settings
from portal.provenance import notes
from portal.provenance.witness import MAX_BODY, PLAIN, Refusal, Witness, WitnessStore

witness = AppGroup("witness", help="Run a C2SP tlog-witness, or give one this portal's log key.")


@witness.command("keygen", with_appcontext=False)
@click.option("--name", required=True, help="the witness's key name, e.g. witness.example.org/w1")
@click.option(
    "--key-file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="where to write the private key (owner-only); an existing file is kept",
)
def keygen_command(name: str, key_file: Path):
    """Writes a witness key file and prints its cosignature/v1 vkey (for logs to configure)."""
    if key_file.exists():
        found, seed = _read_key(key_file)
        if found != name:
            raise click.ClickException(f"{key_file} holds the key of {found!r}, not {name!r}")
        click.echo(f"# {key_file} exists: kept", err=True)
    else:
        try:
            seed = os.urandom(32)
            text = notes.private_key_text(name, seed)
        except notes.NoteError as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    click.echo(notes.witness_vkey(name, seed).text())


@witness.command("serve", with_appcontext=False)
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the key file `flask beacon witness keygen` wrote",
)
@click.option(
    "--db",
    "db_url",
    help="SQLAlchemy URL of the witness's own database (default: witness.sqlite3 beside the key)",
)
@click.option(
    "--log",
    "log_keys",
    multiple=True,
    help="a log's vkey, <origin>+<key ID>+<base64> (repeatable); `flask beacon witness "
    "log-vkey` prints this portal's",
)
@click.option(
    "--listen", default="127.0.0.1:8080", show_default=True, help="host:port (port 0: any)"
)
def serve_command(key_file: Path, db_url: str | None, log_keys: tuple[str, ...], listen: str):
    """Serves POST /add-checkpoint (c2sp.org/tlog-witness) until interrupted."""
    from gevent.pywsgi import WSGIServer

    name, seed = _read_key(key_file)
    try:
        keys = [notes.Vkey.parse(k, notes.ED25519) for k in log_keys]
    except notes.NoteError as exc:
        raise click.BadParameter(str(exc), param_hint="--log") from None
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("host:port", param_hint="--listen")
    store = WitnessStore(db_url or f"sqlite:///{key_file.resolve().parent / 'witness.sqlite3'}")
    the_witness = Witness(name, seed, keys, store)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = WSGIServer((host.strip("[]"), int(port)), wsgi_app(the_witness), log=None)
    server.start()
    bound_host, bound_port = server.address[:2]
    click.echo(f"witness {the_witness.vkey.text()}", err=True)
    for origin in sorted(the_witness.logs):
        click.echo(f"witnessing {origin}", err=True)
    click.echo(f"listening on http://{bound_host}:{bound_port}", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout=5)
        store.dispose()


@witness.command("log-vkey")
def log_vkey_command():
    """Prints this portal's log key as a vkey, to give to the witnesses that cosign it."""
    s = settings.current()
    public = notes.unb64(s.portal_public_key)
    click.echo(notes.log_vkey(s.log_origin, public).text())


def _read_key(path: Path) -> tuple[str, bytes]:
    try:
        return notes.read_private_key(path.read_text("utf-8"))
    except (OSError, notes.NoteError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None


def wsgi_app(the_witness: Witness):
    """Returns the witness's WSGI app: `POST /add-checkpoint`, and `GET /` describing it."""

    def app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/" and method in ("GET", "HEAD"):
            logs = "".join(f"witnessing {o}\n" for o in sorted(the_witness.logs))
            return _answer(start_response, 200, f"{the_witness.vkey.text()}\n{logs}")
        if path != "/add-checkpoint":
            return _answer(start_response, 404, "not found\n")
        if method != "POST":
            return _answer(start_response, 405, "POST only\n", [("Allow", "POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or -1)
        except ValueError:
            return _answer(start_response, 400, "bad Content-Length\n")
        if length > MAX_BODY:
            return _answer(start_response, 413, "too large\n")
        # Without a length (a chunked body), read one byte past the limit to see it exceeded.
        body = environ["wsgi.input"].read(length if length >= 0 else MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return _answer(start_response, 413, "too large\n")
        try:
            return _answer(start_response, 200, the_witness.add_checkpoint(body))
        except Refusal as refusal:
            text = str(refusal) if refusal.status == 409 else f"{refusal}\n"
            return _answer(start_response, refusal.status, text, kind=refusal.content_type)

    return app


REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    422: "Unprocessable Entity",
}


def _answer(start_response, status: int, text: str, headers=(), kind: str = PLAIN):
    data = text.encode("utf-8")
    start_response(
        f"{status} {REASONS.get(status, 'Error')}",
        [("Content-Type", kind), ("Content-Length", str(len(data))), *headers],
    )
    return [data]
