"""bench_workers.py's figures: per-repetition medians, and CPU shares of the whole
machine (every core), for echo repetitions (one method's figures) and fan-out ones."""

from __future__ import annotations

import pytest

from benchmarks.bench_workers import summary


def test_echo_and_fanout_repetitions_give_medians_and_shares_of_every_core() -> None:
    def rep(count: int, server_cpu_s: float, gen_cpu_s: float) -> dict[str, float]:
        return {
            "count": count,
            "seconds": 2.0,
            "rate": count / 2.0,
            "server_cpu_s": server_cpu_s,
            "gen_cpu_s": gen_cpu_s,
        }

    result = {
        "targets": {
            "echo": {"reps": [{"Echo": rep(1000, 1.0, 0.2)}, {"Echo": rep(3000, 3.0, 0.6)}]},
            "fanout": {"reps": [rep(4000, 0.4, 0.4), rep(2000, 0.6, 0.2), rep(6000, 1.2, 0.8)]},
        }
    }
    echo = summary(result, "echo", cores=2)
    assert echo == pytest.approx(
        {"rate": 1000.0, "cpu_us": 1000.0, "server_share": 0.5, "loadgen_share": 0.1}
    )
    fanout = summary(result, "fanout", cores=2)
    # Each figure's own median: the middle rate, the middle CPU per delivery.
    assert fanout == pytest.approx(
        {"rate": 2000.0, "cpu_us": 200.0, "server_share": 0.15, "loadgen_share": 0.1}
    )
