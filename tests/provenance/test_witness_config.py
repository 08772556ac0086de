"""`[[witnesses]]` in the TOML (SPEC section 9): read into the configuration, and every mistake
stops start-up naming the file, the key and what is wrong."""

from __future__ import annotations

import os

import pytest

from portal.config import ConfigError, load_config
from portal.provenance import notes

REGION = '[regions.r]\nname = "R"\nprovider = "ollama"\nbase_url = "http://127.0.0.1:9"\n'
VKEY = notes.witness_vkey("witness.example.org/w1", os.urandom(32)).text()
LOG_KEY = notes.log_vkey("beacon.example.org", os.urandom(32)).text()


def witness(**entry) -> str:
    fields = {"name": "witness.example.org/w1", "url": "https://w.example.org", "public_key": VKEY}
    fields.update(entry)
    return "[[witnesses]]\n" + "".join(f'{k} = "{v}"\n' for k, v in fields.items() if v)


def test_witnesses_are_read(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(REGION + witness())
    (found,) = load_config(path).witnesses
    assert (found.name, found.url) == ("witness.example.org/w1", "https://w.example.org")
    assert found.vkey.text() == VKEY and found.add_checkpoint_url.endswith("/add-checkpoint")
    assert load_config(None).witnesses == ()


@pytest.mark.parametrize(
    "text, key, problem",
    [
        (witness(url=""), "witnesses[0].url", "required"),
        (witness(url="ftp://w.example.org"), "witnesses[0].url", "http(s) URL"),
        (witness(name="witness.example.org/w2"), "witnesses[0].name", "is not the key's name"),
        (witness(public_key=LOG_KEY), "witnesses[0].public_key", "type 0x04"),
        (witness(public_key=VKEY[:-2] + "AA"), "witnesses[0].public_key", "key ID"),
        (witness(colour="red"), "witnesses[0].colour", "unknown key"),
        (witness() + witness(), "witnesses", "given twice"),
        ('witnesses = "w"\n', "witnesses", "array of tables"),
    ],
)
def test_bad_witnesses_name_the_key(tmp_path, text, key, problem):
    path = tmp_path / "c.toml"
    path.write_text(text + REGION)  # a bare key after [regions.r] would belong to it
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key and problem in caught.value.problem, caught.value
