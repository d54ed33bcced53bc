"""Light trainers for the load test: this process follows one market for many trainers, each with
its own key file and data file, one thread each, through the trainer daemon's own code
(`fedmarket_flows.trainer.follow_market`, what `fedmarket trainer run` runs).

Usage: python -m tests.load_swarm SPEC.json, SPEC = {"market": ..., "trainers": [[key, data], ...]};
prints each trainer's final phase as JSON and exits 1 if any thread failed."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import torch

from fedmarket.context import Platform, use_platform
from fedmarket.settings import load_settings
from fedmarket_flows.trainer import follow_market


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(1)  # many trainers share two cores
    settings = load_settings()
    phases: dict[str, str] = {}

    def follow(key_file: str, data_file: str) -> None:
        platform = Platform.from_settings(settings.model_copy(update={"key_file": Path(key_file)}))
        me = platform.me.address
        with use_platform(platform):
            try:
                phases[me] = follow_market(
                    spec["market"],
                    Path(data_file),
                    poll_s=settings.poll_interval_s,
                    log=lambda m: print(me, m, flush=True),
                )
            except Exception as exc:  # noqa: BLE001 - reported per trainer, the others go on
                print(me, "FAILED", type(exc).__name__, exc, flush=True)
                phases[me] = f"failed: {exc}"

    threads = [threading.Thread(target=follow, args=pair, daemon=True) for pair in spec["trainers"]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(phases))
    return 0 if all(not p.startswith("failed") for p in phases.values()) and len(phases) == len(threads) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
