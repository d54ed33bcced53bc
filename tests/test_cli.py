"""`fedmarket demo --json` and the bench commands end to end in a subprocess, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect.settings import PREFECT_API_URL

from tests.helpers import REPO_ROOT


def breast_cancer_csv(path: Path) -> Path:
    """scikit-learn's breast cancer table as an owner exports it: named columns, text labels."""
    from sklearn.datasets import load_breast_cancer

    frame = load_breast_cancer(as_frame=True).frame
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    frame.to_csv(path, index=False)
    return path


def test_short_commands_run_their_flows_without_heartbeats(monkeypatch):
    """Prefect joins a run's heartbeat thread, which sleeps in whole seconds, as the run ends: a
    command whose flows end with it turns heartbeats off, unless its user asked for them."""
    from prefect.settings import get_current_settings, temporary_settings

    from fedmarket_cli._common import HEARTBEAT_SETTINGS, short_runs

    heartbeat = short_runs(lambda: get_current_settings().flows.heartbeat_frequency)
    for name in HEARTBEAT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    with temporary_settings(updates={"flows.heartbeat_frequency": 180}):
        assert heartbeat() is None
        monkeypatch.setenv("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "180")
        assert heartbeat() == 180


def test_demo_json(tmp_path):
    """A market on a user's CSV file (`--data`, text labels) with a garbage trainer (`--attack
    garbage`): excluded every round with its reason, paid nothing, and the market still settles
    (the session's Prefect server records the runs)."""
    env = {**os.environ, "FEDMARKET_STORE_DIR": str(tmp_path / "blocks"), "PREFECT_API_URL": PREFECT_API_URL.value()}
    cli = Path(sys.executable).parent / "fedmarket"
    data = ["--data", str(breast_cancer_csv(tmp_path / "cancer.csv")), "--label-column", "diagnosis"]
    args = [
        *data,
        "--trainers",
        "4",
        "--malicious",
        "1",
        "--rounds",
        "2",
        "--seed",
        "3",
        "--attack",
        "garbage",
        "--json",
    ]
    proc = subprocess.run(
        [str(cli), "demo", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    for key in (
        "deposit",
        "refund",
        "payouts",
        "withdrawn_total",
        "attackers",
        "rounds",
        "final_accuracy",
        "contributions",
    ):
        assert key in out
    assert len(out["rounds"]) == 2
    assert out["final_accuracy"] >= 0.85  # majority class: 0.63; 30 named columns scaled from the profile
    (garbage,) = out["attackers"]
    assert out["attacks"] == {garbage: "garbage"} and out["market"].startswith("0x")
    for r in out["rounds"]:
        assert {"round", "accuracy", "flagged", "aggregate_cid", "gas_used", "verifier"} <= set(r)
        assert r["verifier"] is None
        assert r["flag_reasons"][garbage].startswith("excluded: DoesNotOpen") and r["gas_by_call"]["exclude"] > 0
    assert out["payouts"][garbage] == 0
    assert all(wei > 0 for account, wei in out["payouts"].items() if account != garbage)
    assert sum(out["payouts"].values()) + out["refund"] == out["deposit"] == out["withdrawn_total"] - out["bonds"]


def test_bench_gas_json(tmp_path):
    cli = Path(sys.executable).parent / "fedmarket"
    proc = subprocess.run(
        [str(cli), "bench", "gas", "--trainers", "3", "--params", "650,2000", "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    rows = out["rows"]
    assert all(set(r) == {"op", "trainers", "params", "gas"} for r in rows)
    ops = {r["op"] for r in rows}
    assert {"createMarket", "register", "reveal", "submit", "finalizeRound", "exclude", "settle", "withdraw"} <= ops
    assert {r["params"] for r in rows} == {650, 2000}
    # only commitments and CIDs reach the chain: the model size changes calldata bytes at most
    assert out["round_gas_spread"]["3"] < 0.001
    submit = [r["gas"] for r in rows if r["op"] == "submit"]
    assert all(21_000 < g < 100_000 for g in submit)
    # the secure-aggregation board's steps, measured with real bundles and reveals
    reveal = [r["gas"] for r in rows if r["op"] == "revealShares"]
    assert {"postKeys", "openReveals"} <= ops and reveal and all(21_000 < g < 60_000 for g in reveal)
    disputes = [r["gas"] for r in rows if r["op"] in ("complain", "answer")]
    assert len(disputes) == 2 * len({(r["trainers"], r["params"]) for r in rows}) and all(g < 80_000 for g in disputes)


def bench_run(*args) -> dict:
    cli = Path(sys.executable).parent / "fedmarket"
    proc = subprocess.run(
        [str(cli), "bench", *args, "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def bench_json(*args):
    return bench_run(*args)["rows"]


def test_bench_zk_layout_sizes_circuits_without_setting_them_up(tmp_path):
    cli = Path(sys.executable).parent / "fedmarket"
    args = [
        "bench",
        "zk",
        "--layout",
        "--trainers",
        "2,3",
        "--circuits",
        "round",
        "--commitment",
        "polycommit,poseidon",
    ]
    proc = subprocess.run(
        [str(cli), *args, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FEDMARKET_ZK_CACHE_DIR": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)["rows"]
    assert [(r["trainers"], r["commitment"]) for r in rows] == [
        (2, "polycommit"),
        (2, "poseidon"),
        (3, "polycommit"),
        (3, "poseidon"),
    ]
    for r in rows:
        assert r["rows"] == 2 ** r["logrows"] and 0 < r["arith_rows"] <= r["rows"] and r["hash_rows"] < r["rows"]
        assert (r["hash_rows"] > 0) == (r["commitment"] == "poseidon")
        assert r["setup_s"] is r["prove_s"] is r["verify_gas"] is None
    assert rows[2]["arith_rows"] > rows[0]["arith_rows"]  # a third slot adds rows
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]  # nothing was set up (no build, no SRS)


def test_bench_robustness_json():
    rows = bench_json(
        "robustness",
        "--models",
        "lr",
        "--splits",
        "iid",
        "--attacks",
        "none,noise",
        "--detectors",
        "two_stage,median",
        "--rounds",
        "2",
    )
    keys = {
        "model",
        "attack",
        "split",
        "trainers",
        "malicious",
        "detector",
        "cross_round_accuracy",
        "cross_trainer_accuracy",
        "final_accuracy",
    }
    assert len(rows) == 4 and all(keys <= set(r) for r in rows)
    noise = next(r for r in rows if r["attack"] == "noise" and r["detector"] == "two_stage")
    assert noise["malicious"] == 3 and noise["cross_trainer_accuracy"] == 1.0 and noise["cross_round_accuracy"] == 1.0
    clean = next(r for r in rows if r["attack"] == "none" and r["detector"] == "median")
    assert clean["cross_trainer_accuracy"] is None and clean["cross_round_accuracy"] is None
    assert clean["final_accuracy"] > 0.8


def test_bench_contribution_json():
    proc = bench_run(
        "contribution",
        "--scenarios",
        "rare_labels",
        "--methods",
        "update_loo,shapley",
        "--rounds",
        "2",
        "--trainers",
        "5",
        "--seeds",
        "0",
    )
    rows, fairness = proc["rows"], proc["fairness"]
    keys = {"scenario", "trainers", "seed", "method", "trainer", "contribution", "std_error", "evaluations"}
    assert all(set(r) == keys for r in rows)
    for method in ("update_loo", "shapley"):
        mine = [r for r in rows if r["method"] == method]
        assert sorted(r["trainer"] for r in mine) == [1, 2, 3, 4, 5]
        values = [r["contribution"] for r in mine]  # C_i / sum_j C_j, or / sum_j |C_j| when that sum is <= 0
        assert abs(sum(values) - 1.0) < 1e-9 or abs(sum(map(abs, values)) - 1.0) < 1e-9
    assert next(r for r in rows if r["method"] == "shapley")["evaluations"] == 2 * 2**5
    assert {(f["scenario"], f["trainers"], f["method"]) for f in fairness} == {
        ("rare_labels", 5, "update_loo"),
        ("rare_labels", 5, "shapley"),
    }
    rare = next(f for f in fairness if f["method"] == "update_loo")
    assert rare["meets"]  # the rare-label trainer is among the top two


def test_bench_secagg_json():
    rows = bench_json("secagg", "--trainers", "4,8", "--params", "64", "--rounds", "2")
    assert [(r["trainers"], r["dropped"]) for r in rows] == [(4, 1), (8, 2)]
    for r in rows:
        assert r["masked_bytes"] == 8 * 64 and r["bundle_bytes"] > 0 and r["reveal_bytes"] > 0
        assert r["max_abs_error"] <= 2.0**-9  # the survivors' mean, within the grid's rounding
