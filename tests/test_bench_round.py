"""`fedmarket bench round` at a small size: the whole flow, each step and the floor, from one run."""

from __future__ import annotations

import pytest

from fedmarket_benchmarks.round import run


def test_the_round_bench_times_the_flow_its_steps_and_the_floor():
    whole, *steps = run([3], [2_000])
    assert whole.step == "round" and (whole.trainers, whole.calls) == (3, 1)
    assert whole.ratio == pytest.approx(whole.seconds / whole.floor_s) and whole.floor_s > 0
    # the run as Prefect recorded it ends before the call returns (the engine's teardown)
    assert 0 < whole.run_s <= whole.seconds
    names = {r.step for r in steps}
    assert {"fetch-updates", "detect-outliers", "aggregate", "evaluate"} <= names
    assert all(0 < r.seconds <= whole.run_s for r in steps)
    assert whole.ciphertext_mb > 3 * whole.params * 4 / 1e6  # three float32 updates, sealed
    assert whole.peak_rss_gb > 0 and whole.disk_written_mb > 0
