"""The echo scenarios keep every server's turn-taking pause under the client timeout."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks.bench import ALL, SILENCE_LIMIT_MS, Params, echo_config


def _bench(params: Params) -> Any:
    return SimpleNamespace(params=params, target=lambda running: {"name": running})


@pytest.mark.parametrize("params", [Params.full(), Params.quick()], ids=["full", "quick"])
def test_every_server_fits_in_a_round(params: Params) -> None:
    # echo-50 runs every server side by side, each stopped while the others
    # take their turns: with 3 s turns ten servers left each stopped ~30 s, the
    # servers closed the load generator's connections as silent, and the
    # scenario waited for echoes that never came until its timeout.
    config = echo_config(50)(_bench(params), list(ALL))
    assert config["rep_ms"] == params.echo_rep_ms
    assert len(config["targets"]) == len(ALL)


def test_too_long_a_round_is_refused_before_it_starts() -> None:
    params = dataclasses.replace(Params.full(), echo_rep_ms=3000)
    with pytest.raises(ValueError, match="stopped for ~30 s, past the 25 s"):
        echo_config(50)(_bench(params), list(ALL))
    assert SILENCE_LIMIT_MS < 30_000  # below the servers' 30 s client timeout
