"""Runs inside .venv/peers (benchmarks/peers-requirements.txt), not in fedmarket's venv: times the peer
implementations of `fedmarket bench aggregation` on the inputs the benchmark saved, and writes
their results and timings back. Usage: python benchmarks/peers.py INPUT.npy F OUT.npz

`timed` is also fedmarket's timer (benchmarks/aggregation.py imports it), so both sides are
measured the same way. byzfl is imported without its package __init__, which pulls in torchvision for its training
benchmark; the aggregators themselves need only numpy, scipy and torch.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types

import numpy as np
import torch

REPEAT_BELOW_S = 2.0  # repeat a call (best of 3) only when one run is this fast


def _byzfl_aggregators():
    spec = importlib.util.find_spec("byzfl")
    package = types.ModuleType("byzfl")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["byzfl"] = package
    from byzfl.aggregators import aggregators

    return aggregators


def timed(fn) -> tuple[float, object]:
    """Best wall time of fn() (of 3 when one call takes under 2 s) and its result."""
    start = time.perf_counter()
    result = fn()
    best = time.perf_counter() - start
    if best < REPEAT_BELOW_S:
        for _ in range(2):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
    return best, result


def main(path: str, f: int, out: str) -> None:
    from flwr.server.strategy import aggregate as flwr

    byzfl = _byzfl_aggregators()
    x = np.load(path)
    n = x.shape[0]
    as_torch = torch.from_numpy(x)
    results = [([row], 1) for row in x]  # flwr: (list of layer arrays, num_examples)
    cut = (f + 0.5) / n  # flwr trims int(cut * n) = f from each side
    runs = {
        "byzfl.Krum": lambda: byzfl.Krum(f=f)(x),
        "byzfl.Krum[torch]": lambda: byzfl.Krum(f=f)(as_torch).numpy(),
        "byzfl.MultiKrum": lambda: byzfl.MultiKrum(f=f)(x),
        "byzfl.MultiKrum[torch]": lambda: byzfl.MultiKrum(f=f)(as_torch).numpy(),
        "byzfl.Median": lambda: byzfl.Median()(x),
        "byzfl.Median[torch]": lambda: byzfl.Median()(as_torch).numpy(),
        "byzfl.TrMean": lambda: byzfl.TrMean(f=f)(x),
        "byzfl.TrMean[torch]": lambda: byzfl.TrMean(f=f)(as_torch).numpy(),
        "flwr.aggregate_krum": lambda: flwr.aggregate_krum(results, num_malicious=f, to_keep=0)[0],
        "flwr.aggregate_krum[multi]": lambda: flwr.aggregate_krum(results, num_malicious=f, to_keep=n - f)[0],
        "flwr.aggregate_median": lambda: flwr.aggregate_median(results)[0],
        "flwr.aggregate_trimmed_avg": lambda: flwr.aggregate_trimmed_avg(results, cut)[0],
    }
    seconds, arrays = {}, {}
    for name, fn in runs.items():
        seconds[name], result = timed(fn)
        arrays[name] = np.asarray(result, dtype=np.float64)
    np.savez(out, **arrays)
    sys.stdout.write(json.dumps(seconds) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
