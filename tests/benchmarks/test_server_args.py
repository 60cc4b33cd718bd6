"""The benchmark hands each server its verification key on the command line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from benchmarks.bench import Keys
from benchmarks.servers.common import jwt_key, parse_args


@pytest.fixture(autouse=True)
def _leave_logging_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # parse_args configures a server process's logging; not this one's.
    monkeypatch.setattr(logging, "basicConfig", lambda **_: None)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.mark.parametrize("secret", ["-starts-with-a-dash", "--key", "plain_secret", "a=b"])
def test_an_hs256_secret_reaches_the_server_whatever_it_begins_with(
    keys: Keys, secret: str
) -> None:
    # token_urlsafe() begins with "-" about one run in 32: argparse then took
    # the secret for an option and the server did not start (CI smoke run).
    keys.secret = secret
    args = parse_args("bench server", list(keys.server_args("HS256")))
    assert args.alg == "HS256"
    assert jwt_key(args) == secret


def test_the_rs256_key_is_read_from_its_file(keys: Keys) -> None:
    args = parse_args("bench server", list(keys.server_args("RS256")))
    assert args.alg == "RS256"
    assert jwt_key(args) == Path(keys.public_pem).read_bytes()
    assert b"BEGIN PUBLIC KEY" in Path(keys.public_pem).read_bytes()
