"""The `[[witnesses]]` tables of the TOML (SPEC section 9): who the portal asks to cosign.

Pure data and checks, like the judge's table: `portal.config` validates the array with
`parse_witnesses`; `portal/provenance/cosigning.py` asks each witness.

```toml
[[witnesses]]
name = "witness.example.org/w1"    # the witness's key name
url = "https://witness.example.org"
public_key = "witness.example.org/w1+1a2b3c4d+BA..."   # its cosignature/v1 vkey
```
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from portal.provenance.notes import COSIGNATURE_V1, NoteError, Vkey


class WitnessConfigError(ValueError):
    """A `[[witnesses]]` entry is invalid; `key` is the dotted key, `problem` says why."""

    def __init__(self, key: str, problem: str):
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


@dataclass(frozen=True)
class WitnessSettings:
    """One witness: its key name, its submission URL prefix and its cosignature/v1 key."""

    name: str
    url: str
    vkey: Vkey

    @property
    def add_checkpoint_url(self) -> str:
        """Returns `<url>/add-checkpoint` (tlog-witness's one write endpoint)."""
        return self.url.rstrip("/") + "/add-checkpoint"


def parse_witnesses(entries) -> tuple[WitnessSettings, ...]:
    """Validates the `[[witnesses]]` array of tables: unique names, http(s) URLs, 0x04 vkeys."""
    if not isinstance(entries, list):
        raise WitnessConfigError("witnesses", "must be an array of tables: [[witnesses]]")
    found: list[WitnessSettings] = []
    for number, entry in enumerate(entries):
        where = f"witnesses[{number}]"
        if not isinstance(entry, dict):
            raise WitnessConfigError(where, "must be a table")
        for key in entry:
            if key not in ("name", "url", "public_key"):
                raise WitnessConfigError(
                    f"{where}.{key}", "unknown key (known: name, url, public_key)"
                )
        for key in ("name", "url", "public_key"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise WitnessConfigError(f"{where}.{key}", "required: a non-empty string")
        found.append(_witness(where, entry))
    names = [w.name for w in found]
    for name in names:
        if names.count(name) > 1:
            raise WitnessConfigError("witnesses", f"the name {name!r} is given twice")
    return tuple(found)


def _witness(where: str, entry: dict) -> WitnessSettings:
    try:
        vkey = Vkey.parse(entry["public_key"], COSIGNATURE_V1)
    except NoteError as exc:
        raise WitnessConfigError(
            f"{where}.public_key", f"{exc} (a witness's cosignature/v1 vkey: type 0x04)"
        ) from None
    if vkey.name != entry["name"]:
        raise WitnessConfigError(
            f"{where}.name", f"{entry['name']!r} is not the key's name {vkey.name!r}"
        )
    url = entry["url"].strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WitnessConfigError(f"{where}.url", f"must be an http(s) URL (got {url!r})")
    return WitnessSettings(vkey.name, url, vkey)
