"""`fedmarket bench aggregation`: our Krum, multi-Krum, median and trimmed mean against byzfl's
and Flower's on the same inputs, with results checked for agreement, the two-stage rule's cost
per round after the first, and the floor: one pass reading all updates.

The peers run in their own venv (.venv/peers, benchmarks/peers-requirements.txt; flwr pins a fastapi
that prefect cannot run with), in a subprocess given the same matrix through an .npy file; every
implementation is timed the same way (best of 3 when one call takes under 2 s).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from fedmarket.algorithms.aggregators.median import median
from fedmarket.algorithms.aggregators.trimmed_mean import trimmed_mean_of
from fedmarket.algorithms.outliers import DETECTORS, History, RoundInput
from fedmarket.algorithms.outliers.krum import krum_model, multi_krum_average
from fedmarket.errors import ConfigError
from fedmarket_benchmarks.peers import timed  # the one timer both sides use

ROOT = Path(__file__).resolve().parent.parent
PEERS_PYTHON = ROOT / ".venv" / "peers" / "bin" / "python"
AGREEMENT_RTOL = 1e-9
TORCH_RTOL = 1e-5  # byzfl's torch path casts to float32 (`vectors.float()`)


class AggregationRow(BaseModel):
    impl: str
    op: str
    trainers: int
    params: int
    seconds: float
    agrees: bool | None = None  # peers: result equals ours (None: nothing to compare)


def byzantine(n: int) -> int:
    """f of the benchmark inputs: a quarter of the trainers attack (2f < n for every peer)."""
    return max(1, n // 4)


def make_inputs(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(models, previous models, start): an honest cluster around a shared update, and f
    Byzantine rows far away, so every rule's choice is clear-cut and results can be compared."""
    rng = np.random.default_rng(seed)
    start = rng.normal(size=d)
    update = rng.normal(size=d) / np.sqrt(d)
    models = start + update + rng.normal(scale=0.2 / np.sqrt(d), size=(n, d))
    f = byzantine(n)
    models[:f] = rng.normal(size=(f, d))  # random models (the paper's Byzantine attack)
    previous = start - 0.5 * update + rng.normal(scale=0.2 / np.sqrt(d), size=(n, d))
    return models, previous, start


def ours(models: np.ndarray, previous: np.ndarray, start: np.ndarray) -> dict[str, tuple[str, float, object]]:
    n, f = models.shape[0], byzantine(models.shape[0])
    names = [f"t{i}" for i in range(n)]
    history = History()
    history.update(RoundInput(previous, names, 1, start), names)
    round_two = RoundInput(models, names, 2, models.mean(axis=0))
    runs = {
        "floor.read": ("read", lambda: models.sum(axis=0)),
        "fedmarket.krum": ("krum", lambda: krum_model(models, f)),
        "fedmarket.multi_krum": ("multi_krum", lambda: multi_krum_average(models, n - f, f)),
        "fedmarket.median": ("median", lambda: median(models)),
        "fedmarket.trimmed_mean": ("trimmed_mean", lambda: trimmed_mean_of(models, f)),
    }
    for rule in ("two_stage", "two_stage_iterated"):
        runs[f"fedmarket.{rule}[round>1]"] = (rule, lambda rule=rule: DETECTORS.get(rule)(round_two, history))
    out = {}
    for impl, (op, fn) in runs.items():
        seconds, result = timed(fn)
        out[impl] = (op, seconds, result)
    return out


def expected_for_peers(models: np.ndarray) -> dict[str, np.ndarray]:
    """Our result under each peer's own definition (neighbour counts differ: byzfl's Krum uses
    n - f - 1 nearest, Blanchard's and Flower's n - f - 2)."""
    n, f = models.shape[0], byzantine(models.shape[0])
    ours_median = median(models)
    return {
        "byzfl.Krum": krum_model(models, f, neighbours=n - f - 1),
        "byzfl.MultiKrum": multi_krum_average(models, n - f, f, neighbours=n - f - 1),
        "byzfl.Median": ours_median,
        "byzfl.TrMean": trimmed_mean_of(models, f),
        "flwr.aggregate_krum": krum_model(models, f),
        "flwr.aggregate_krum[multi]": multi_krum_average(models, n - f, f),
        "flwr.aggregate_median": ours_median,
        "flwr.aggregate_trimmed_avg": trimmed_mean_of(models, f),
    }


PEER_OPS = {
    "Krum": "krum",
    "MultiKrum": "multi_krum",
    "Median": "median",
    "TrMean": "trimmed_mean",
    "aggregate_krum": "krum",
    "aggregate_krum[multi]": "multi_krum",
    "aggregate_median": "median",
    "aggregate_trimmed_avg": "trimmed_mean",
}


def peers(models: np.ndarray) -> dict[str, tuple[float, np.ndarray]]:
    if not PEERS_PYTHON.exists():
        raise ConfigError(f"peer venv missing: {PEERS_PYTHON} (run `make setup`)")
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "models.npy", Path(tmp) / "peers.npz"
        np.save(path, models)
        done = subprocess.run(
            [
                str(PEERS_PYTHON),
                str(Path(__file__).with_name("peers.py")),
                str(path),
                str(byzantine(len(models))),
                str(out),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigError(f"peer benchmark failed: {done.stderr.strip()[-2000:]}")
        seconds = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(out) as arrays:
            return {name: (seconds[name], arrays[name]) for name in seconds}


def peer_op(impl: str) -> str:
    name = impl.split(".", 1)[1].replace("[torch]", "")
    return PEER_OPS[name]


def run(trainers: list[int], params: list[int], with_peers: bool = True) -> list[AggregationRow]:
    rows: list[AggregationRow] = []
    for d in params:
        for n in trainers:
            models, previous, start = make_inputs(n, d)
            for impl, (op, seconds, _) in ours(models, previous, start).items():
                rows.append(AggregationRow(impl=impl, op=op, trainers=n, params=d, seconds=seconds))
            if not with_peers:
                continue
            expected = expected_for_peers(models)
            for impl, (seconds, result) in peers(models).items():
                reference = expected[impl.replace("[torch]", "")]
                rtol = TORCH_RTOL if impl.endswith("[torch]") else AGREEMENT_RTOL
                agrees = bool(np.allclose(result, reference, rtol=rtol, atol=rtol * float(np.abs(reference).max())))
                rows.append(
                    AggregationRow(impl=impl, op=peer_op(impl), trainers=n, params=d, seconds=seconds, agrees=agrees)
                )
            del models, previous
    return rows


def speedups(rows: list[AggregationRow]) -> list[dict]:
    """Per (op, L, d): our time, the fastest peer's, and the ratio; and rules' cost over the floor."""
    out = []
    keys = sorted({(r.op, r.trainers, r.params) for r in rows if r.impl.startswith("fedmarket.")})
    for op, n, d in keys:
        mine = next(r for r in rows if r.impl.startswith("fedmarket.") and (r.op, r.trainers, r.params) == (op, n, d))
        floor = next(r for r in rows if r.impl == "floor.read" and (r.trainers, r.params) == (n, d))
        others = [
            r
            for r in rows
            if not r.impl.startswith(("fedmarket.", "floor.")) and (r.op, r.trainers, r.params) == (op, n, d)
        ]
        fastest = min(others, key=lambda r: r.seconds, default=None)
        out.append(
            {
                "op": op,
                "trainers": n,
                "params": d,
                "ours_s": mine.seconds,
                "fastest_peer": fastest.impl if fastest else None,
                "speedup": fastest.seconds / mine.seconds if fastest else None,
                "over_floor": mine.seconds / floor.seconds,
            }
        )
    return out


if __name__ == "__main__":  # pragma: no cover - quick manual run
    print(json.dumps([r.model_dump() for r in run([10], [10_000])]), file=sys.stdout)
